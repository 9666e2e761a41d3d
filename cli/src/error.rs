//! What a run can fail with, and the exit code each failure gives: scripts
//! branch on these (`sb --help` lists them), so they are a contract.

use std::process::ExitCode;

use second_brain_client::Error as ApiError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A flag, an argument or the config file is wrong; or a confirmation
    /// was refused or could not be asked.
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// An input file holds something `sb` cannot import.
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Unexpected(String),
}

/// An error and every cause under it, `: `-separated: what a message for
/// people needs when the error is turned into text.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // An error that prints its cause already (`transport: {0}`).
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    text
}

/// The exit codes, as `sb --help` states them.
pub mod code {
    pub const UNEXPECTED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const CONFLICT: u8 = 4;
    pub const UNAUTHORIZED: u8 = 5;
    pub const REFUSED: u8 = 6;
    pub const UNAVAILABLE: u8 = 7;
}

impl CliError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    fn code(&self) -> u8 {
        match self {
            Self::Api(error) => api_code(error),
            Self::Usage(_) => code::USAGE,
            Self::Input(_) => code::REFUSED,
            Self::Io { .. } | Self::Unexpected(_) => code::UNEXPECTED,
        }
    }
}

fn api_code(error: &ApiError) -> u8 {
    match error {
        ApiError::Problem(problem) => match problem.status {
            404 | 410 => code::NOT_FOUND,
            409 | 412 => code::CONFLICT,
            401 | 403 => code::UNAUTHORIZED,
            400 | 413 | 415 | 422 => code::REFUSED,
            429 | 500..=599 => code::UNAVAILABLE,
            _ => code::UNEXPECTED,
        },
        ApiError::Transport(_) => code::UNAVAILABLE,
        ApiError::BaseUrl(_) => code::USAGE,
        ApiError::Decode { .. } => code::UNEXPECTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use second_brain_client::Problem;

    fn problem(status: u16) -> CliError {
        CliError::Api(ApiError::Problem(Box::new(Problem {
            status,
            code: "x".into(),
            title: String::new(),
            detail: None,
            kind: None,
            errors: None,
        })))
    }

    #[test]
    fn each_kind_of_answer_has_its_exit_code() {
        assert_eq!(problem(404).code(), code::NOT_FOUND);
        assert_eq!(problem(410).code(), code::NOT_FOUND);
        assert_eq!(problem(412).code(), code::CONFLICT);
        assert_eq!(problem(409).code(), code::CONFLICT);
        assert_eq!(problem(401).code(), code::UNAUTHORIZED);
        assert_eq!(problem(422).code(), code::REFUSED);
        assert_eq!(problem(429).code(), code::UNAVAILABLE);
        assert_eq!(problem(503).code(), code::UNAVAILABLE);
        assert_eq!(CliError::Usage(String::new()).code(), code::USAGE);
    }
}

//! Settings come from `SB_*` environment variables only, read once at start-up
//! into a typed struct that each service defines, and validated before anything
//! listens. A field `event_store_url` is read from `SB_EVENT_STORE_URL`. An
//! empty variable counts as unset, so a compose file or manifest can pass
//! `${VAR}` through unconditionally and an empty one leaves the default.
//!
//! Secrets are `secrecy::SecretString`, so they never reach a log line through
//! `Debug`.

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The prefix of every variable the services read.
pub const ENV_PREFIX: &str = "SB";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid settings in the environment: {0}")]
    Source(#[from] config::ConfigError),
    #[error("invalid setting SB_{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The `SB_*` variables a settings struct reads, from its field names: the
/// source of the configuration tables and env templates that `deploy/check`
/// compares with the code.
pub fn variables<T: DeserializeOwned>() -> Vec<String> {
    serde_aux::serde_introspection::serde_introspect::<T>()
        .iter()
        .map(|field| format!("{ENV_PREFIX}_{}", field.to_uppercase()))
        .collect()
}

/// Prints `variables` of every settings struct a binary reads, plus the ones
/// read outside them (`RUST_LOG`), sorted and once each: the hidden `env-vars`
/// subcommand of every binary.
pub fn print_variables(lists: &[Vec<String>]) {
    let mut all: Vec<&str> = lists
        .iter()
        .flatten()
        .map(String::as_str)
        .chain(crate::telemetry::VARIABLES.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    for name in all {
        println!("{name}");
    }
}

/// Reads a settings struct from the process environment.
pub fn from_env<T: DeserializeOwned>() -> Result<T, SettingsError> {
    from_source(config::Environment::with_prefix(ENV_PREFIX).ignore_empty(true))
}

/// Reads a settings struct from the given variables instead of the process
/// environment; tests use it so they never mutate global state.
pub fn from_vars<T: DeserializeOwned>(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, SettingsError> {
    let source = config::Environment::with_prefix(ENV_PREFIX)
        .ignore_empty(true)
        .source(Some(vars.into_iter().collect()));
    from_source(source)
}

fn from_source<T: DeserializeOwned>(source: config::Environment) -> Result<T, SettingsError> {
    Ok(config::Config::builder()
        .add_source(source)
        .build()?
        .try_deserialize()?)
}

/// Log output format, `SB_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for machines (the default).
    #[default]
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Rejects a secret that is too short to resist guessing.
pub fn require_min_len(
    name: &'static str,
    value: &secrecy::SecretString,
    min: usize,
) -> Result<(), SettingsError> {
    use secrecy::ExposeSecret;
    if value.expose_secret().len() < min {
        return Err(SettingsError::Invalid {
            name,
            reason: format!("must be at least {min} bytes long"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Example {
        event_store_url: String,
        #[serde(default)]
        log_format: LogFormat,
        #[serde(default = "default_max")]
        max_connections: u32,
    }

    fn default_max() -> u32 {
        7
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_variables_of_a_struct_are_its_fields() {
        assert_eq!(
            variables::<Example>(),
            ["SB_EVENT_STORE_URL", "SB_LOG_FORMAT", "SB_MAX_CONNECTIONS"]
        );
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let settings: Example = from_vars(vars(&[
            ("SB_EVENT_STORE_URL", "postgres://x"),
            ("SB_MAX_CONNECTIONS", ""),
            ("SB_LOG_FORMAT", ""),
        ]))
        .expect("valid");
        assert_eq!(settings.max_connections, 7);
        assert!(from_vars::<Example>(vars(&[("SB_EVENT_STORE_URL", "")])).is_err());
    }

    #[test]
    fn variables_map_to_fields_and_defaults_apply() {
        let settings: Example = from_vars(vars(&[
            ("SB_EVENT_STORE_URL", "postgres://x"),
            ("SB_LOG_FORMAT", "pretty"),
        ]))
        .expect("valid");
        assert_eq!(settings.event_store_url, "postgres://x");
        assert_eq!(settings.log_format, LogFormat::Pretty);
        assert_eq!(settings.max_connections, 7);
    }

    #[test]
    fn numbers_are_parsed_and_bad_ones_rejected() {
        let ok: Example = from_vars(vars(&[
            ("SB_EVENT_STORE_URL", "u"),
            ("SB_MAX_CONNECTIONS", "12"),
        ]))
        .expect("valid");
        assert_eq!(ok.max_connections, 12);
        let bad = from_vars::<Example>(vars(&[
            ("SB_EVENT_STORE_URL", "u"),
            ("SB_MAX_CONNECTIONS", "many"),
        ]));
        assert!(bad.is_err());
    }

    #[test]
    fn a_missing_required_variable_is_an_error() {
        assert!(from_vars::<Example>(vars(&[])).is_err());
    }
}

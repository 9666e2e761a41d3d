//! What a tool call can fail with, and how each failure reaches the agent:
//! as a tool result with `isError` (never a protocol error), whose text is
//! a JSON object with a stable `code` and a `detail` the agent can act on.
//! A protocol error would end the agent's turn; a tool error lets it fix the
//! argument or tell its user what the service said.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult};
use second_brain_client::{Error as ClientError, Problem};
use serde::Serialize;
use serde_json::Value;

/// The code of an argument the tool itself refused (the services' own
/// refusals keep their codes: `validation_failed`, `not_found`, …).
pub const BAD_ARGUMENT: &str = "bad_argument";

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// An argument the tool cannot send as it is (nothing to change, two
    /// that contradict each other); the services judge everything else.
    #[error("bad argument `{field}`: {reason}")]
    BadArgument { field: &'static str, reason: String },
    /// The arguments did not match the tool's schema (rmcp's message).
    #[error("bad arguments: {0}")]
    Arguments(String),
    /// What the services answered, or that they could not be reached.
    #[error(transparent)]
    Service(#[from] ClientError),
    /// An answer that did not turn into JSON (it always should).
    #[error("the answer does not serialise")]
    Encode(#[source] serde_json::Error),
}

impl ToolError {
    pub fn bad_argument(field: &'static str, reason: impl Into<String>) -> Self {
        Self::BadArgument {
            field,
            reason: reason.into(),
        }
    }

    /// The stable code the agent matches on.
    pub fn code(&self) -> &str {
        match self {
            Self::BadArgument { .. } | Self::Arguments(_) => BAD_ARGUMENT,
            Self::Service(error) => match error {
                ClientError::Problem(problem) => &problem.code,
                ClientError::Transport(_) => "service_unreachable",
                ClientError::Decode { .. } => "unexpected_answer",
                ClientError::BaseUrl(_) => "misconfigured",
            },
            Self::Encode(_) => "internal_error",
        }
    }

    /// The body of the error result. A problem is passed on whole (its
    /// field errors tell the agent what to fix); the text of a transport or
    /// internal failure is logged, not sent, as the services do.
    pub fn body(&self) -> ErrorBody<'_> {
        let code = self.code();
        match self {
            Self::BadArgument { field, reason } => ErrorBody {
                code,
                status: None,
                detail: format!("`{field}`: {reason}"),
                errors: None,
            },
            Self::Arguments(message) => ErrorBody {
                code,
                status: None,
                detail: message.clone(),
                errors: None,
            },
            Self::Service(ClientError::Problem(problem)) => problem_body(problem),
            Self::Service(
                ClientError::Transport(_) | ClientError::Decode { .. } | ClientError::BaseUrl(_),
            ) => ErrorBody {
                code,
                status: None,
                detail: "the Second Brain services could not be reached or answered \
                             unexpectedly; try again later"
                    .to_owned(),
                errors: None,
            },
            Self::Encode(_) => ErrorBody {
                code,
                status: None,
                detail: "the server failed to encode its answer".to_owned(),
                errors: None,
            },
        }
    }

    /// The tool result: `isError`, the body as structured content and as
    /// its text.
    pub fn into_result(self) -> CallToolResult {
        match &self {
            Self::Service(
                ClientError::Transport(_) | ClientError::Decode { .. } | ClientError::BaseUrl(_),
            )
            | Self::Encode(_) => {
                // Debug keeps the whole cause chain (reqwest's included).
                tracing::error!(error = ?self, "a tool call failed inside the server");
            }
            Self::BadArgument { .. }
            | Self::Arguments(_)
            | Self::Service(ClientError::Problem(_)) => {}
        }
        match serde_json::to_value(self.body()) {
            Ok(body) => CallToolResult::structured_error(body),
            // Only strings and numbers are in the body: this cannot happen,
            // and the code alone is still an answer the agent can act on.
            Err(_) => CallToolResult::error(vec![rmcp::model::ContentBlock::text(
                self.code().to_owned(),
            )]),
        }
    }
}

fn problem_body(problem: &Problem) -> ErrorBody<'_> {
    let detail = match &problem.detail {
        Some(detail) => detail.clone(),
        None => problem.title.clone(),
    };
    ErrorBody {
        code: &problem.code,
        status: Some(problem.status),
        detail,
        errors: problem.errors.as_ref(),
    }
}

/// The JSON an error result carries.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    /// The services' HTTP status, when they answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub detail: String,
    /// A 422's field errors, as the service listed them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<&'a Value>,
}

/// Lets a tool return `Result<CallToolResult, ToolError>`: rmcp marks the
/// error branch's result `isError`.
impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        Ok(self.into_result().into())
    }
}

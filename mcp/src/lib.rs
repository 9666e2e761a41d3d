//! Second Brain's MCP server: twelve tools an agent calls to remember,
//! recall and curate notes, spoken over stdio or streamable HTTP.
//!
//! It reaches the services only through [`second_brain_client::Client`],
//! one per call with the caller's bearer token, so every tool call is
//! scoped to that user exactly as the HTTP APIs scope it (ADR 19).
//!
//! - [`server`]: the handler, [`SecondBrain`], and its tools.
//! - [`args`]: what each tool takes, with the JSON schema agents read.
//! - [`answers`]: what each tool returns (ids and versions included).
//! - [`error`]: a problem from the services or a bad argument as a tool error.
//! - [`callers`]: whose call this is (the bearer token) and each caller's
//!   last write, which that caller's next `recall` waits for.
//! - [`stdio`]: [`serve_stdio`], one user's server on stdin/stdout.
//! - [`startup`], [`settings`], [`telemetry`]: the `mcp-service` binary's
//!   streamable HTTP application at `/mcp`.

pub mod answers;
pub mod args;
pub mod callers;
pub mod error;
pub mod server;
pub mod settings;
pub mod startup;
pub mod stdio;
pub mod telemetry;

pub use callers::Credentials;
pub use secrecy::SecretString;
pub use server::{SecondBrain, Services, ServicesError};
pub use stdio::{StdioError, serve_stdio, serve_transport};

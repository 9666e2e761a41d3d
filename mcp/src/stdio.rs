//! One user's server on stdin and stdout, for an agent that starts it as a
//! child process (`sb mcp`). Every call uses the token it was started with.
//! Nothing may write to stdout but the protocol: logs go to stderr.

use rmcp::service::ServerInitializeError;
use rmcp::transport::IntoTransport;
use rmcp::{RoleServer, ServiceExt};
use secrecy::SecretString;

use crate::callers::Credentials;
use crate::server::{SecondBrain, Services};

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("the MCP client did not complete the handshake")]
    Handshake(#[source] Box<ServerInitializeError>),
    #[error("the MCP server stopped unexpectedly")]
    Stopped(#[source] tokio::task::JoinError),
}

/// Serves MCP on stdin/stdout until the client closes stdin. `token` (an
/// API key or a JWT) goes with every call to the services; `None` sends
/// none, and each tool call is then a tool error `unauthorized`.
pub async fn serve_stdio(
    services: Services,
    token: Option<SecretString>,
) -> Result<(), StdioError> {
    serve_transport(services, token, rmcp::transport::stdio()).await
}

/// [`serve_stdio`] on any byte stream rmcp takes (a pair of pipes, a
/// socket, an in-memory duplex in tests), until the other side closes it.
pub async fn serve_transport<T, E, A>(
    services: Services,
    token: Option<SecretString>,
    transport: T,
) -> Result<(), StdioError>
where
    T: IntoTransport<RoleServer, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let server = SecondBrain::new(services, Credentials::Fixed(token));
    let running = server
        .serve(transport)
        .await
        .map_err(|e| StdioError::Handshake(Box::new(e)))?;
    let reason = running.waiting().await.map_err(StdioError::Stopped)?;
    tracing::debug!(?reason, "the MCP client closed the connection");
    Ok(())
}

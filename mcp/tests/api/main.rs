#![allow(clippy::unwrap_used)]
//! The MCP server against the real stack (command service, relay,
//! projector and query service on real Postgres, RabbitMQ and Redis),
//! served over streamable HTTP in this process and called by rmcp's own
//! client with each user's bearer token.

mod http;
mod memories;
mod sessions;
mod stdio;
mod tools;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use second_brain_mcp::settings::Settings;
use second_brain_mcp::startup::Application;
use serde_json::Value;
use test_kit::stack::Stack;

/// An MCP client session of one caller.
pub type Agent = RunningService<RoleClient, ()>;

/// The MCP server on a free port, talking to `command` and `query`;
/// answers its `/mcp` URL.
pub async fn spawn_mcp(command: &str, query: &str) -> String {
    let settings = Settings::from_vars([
        ("SB_MCP_BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("SB_COMMAND_URL".to_owned(), command.to_owned()),
        ("SB_QUERY_URL".to_owned(), query.to_owned()),
    ])
    .unwrap();
    let app = Application::build(&settings).await.unwrap();
    let url = format!("http://127.0.0.1:{}/mcp", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    url
}

/// The MCP server in front of `stack`.
pub async fn spawn_mcp_for(stack: &Stack) -> String {
    spawn_mcp(&stack.command, stack.query()).await
}

/// An agent connected to `url` with `token` as its bearer (none: `None`).
pub async fn connect(url: &str, token: Option<String>) -> Agent {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap()
}

/// `user`'s agent on the server at `url`.
pub async fn agent(url: &str, stack: &Stack, user: &str) -> Agent {
    connect(url, Some(stack.token(user))).await
}

/// Calls `tool` with `arguments` (a JSON object).
pub async fn call(agent: &Agent, tool: &'static str, arguments: Value) -> CallToolResult {
    let arguments = arguments.as_object().cloned().unwrap();
    agent
        .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        .await
        .unwrap()
}

/// The answer of a call that must succeed.
pub async fn ok(agent: &Agent, tool: &'static str, arguments: Value) -> Value {
    let result = call(agent, tool, arguments).await;
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    result.structured_content.unwrap()
}

/// The error body of a call that must be a tool error (not a protocol
/// error: `call` unwraps that); its text is the same JSON.
pub async fn refused(agent: &Agent, tool: &'static str, arguments: Value) -> Value {
    let result = call(agent, tool, arguments).await;
    assert_eq!(result.is_error, Some(true), "{tool}: {result:?}");
    let text = &result.content[0].as_text().unwrap().text;
    let body: Value = serde_json::from_str(text).unwrap();
    assert_eq!(Some(&body), result.structured_content.as_ref());
    body
}

/// The ids of a `recall` answer's hits.
pub fn hit_ids(answer: &Value) -> Vec<String> {
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["id"].as_str().unwrap().to_owned())
        .collect()
}

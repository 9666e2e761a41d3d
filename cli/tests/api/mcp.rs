//! `sb mcp` started as a child process by rmcp's own client, as an agent's
//! host starts it: the key from the environment, tools over stdin/stdout.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use test_kit::stack::spawn_query_stack;

#[tokio::test]
async fn an_agent_starts_sb_mcp_remembers_and_recalls_at_once() {
    let stack = spawn_query_stack().await;
    let home = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sb"));
    command
        .arg("mcp")
        .env_clear()
        .env("HOME", home.path())
        .env("SB_COMMAND_URL", &stack.command)
        .env("SB_QUERY_URL", stack.query())
        .env("SB_API_KEY", stack.token("agent-alice"));
    let agent = ().serve(TokioChildProcess::new(command).unwrap()).await.unwrap();

    let tools = agent.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 12, "{tools:?}");

    let call = |tool: &'static str, arguments: Value| {
        let agent = &agent;
        async move {
            let params = CallToolRequestParams::new(tool)
                .with_arguments(arguments.as_object().cloned().unwrap());
            agent.call_tool(params).await.unwrap()
        }
    };
    let written = call(
        "remember",
        json!({"content": "The spare key is under the blue flowerpot", "tags": ["house"]}),
    )
    .await;
    assert_ne!(written.is_error, Some(true), "{written:?}");
    let id = written.structured_content.unwrap()["id"].clone();
    let recalled = call("recall", json!({"query": "where is the spare key"})).await;
    let hits = recalled.structured_content.unwrap();
    assert_eq!(hits["hits"][0]["id"], id, "{hits}");

    let bad = call("get_memory", json!({"id": "not-a-uuid"})).await;
    assert_eq!(bad.is_error, Some(true), "{bad:?}");
    agent.cancel().await.unwrap();
}

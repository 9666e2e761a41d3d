//! The stdio server (`sb mcp`): one user's token for every call, whatever
//! the calls carry. Served here over an in-memory pipe, as over stdin and
//! stdout.

use rmcp::ServiceExt;
use second_brain_mcp::{SecretString, Services, serve_transport};
use serde_json::json;
use test_kit::stack::spawn_query_stack;
use uuid::Uuid;

use crate::{hit_ids, ok, refused};

#[tokio::test]
async fn a_stdio_server_acts_as_the_user_it_was_started_for() {
    let stack = spawn_query_stack().await;
    let services = Services::new(stack.command.clone(), stack.query()).unwrap();
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    let token = SecretString::from(stack.token("mcp-stdio-user"));
    let server = tokio::spawn(serve_transport(services, Some(token), server_end));
    let agent = ().serve(client_end).await.unwrap();

    let word = format!("okapi{}", Uuid::new_v4().simple());
    let written = ok(
        &agent,
        "remember",
        json!({"content": format!("The {word} sleeps")}),
    )
    .await;
    let found = ok(&agent, "recall", json!({"query": word, "mode": "keyword"})).await;
    assert_eq!(
        hit_ids(&found),
        [written["id"].as_str().unwrap()],
        "{found}"
    );
    let memory = ok(&agent, "get_memory", json!({"id": written["id"]})).await;
    assert_eq!(memory["owner_id"], "mcp-stdio-user");

    agent.cancel().await.unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_stdio_server_started_without_a_token_answers_unauthorized() {
    let stack = spawn_query_stack().await;
    let services = Services::new(stack.command.clone(), stack.query()).unwrap();
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve_transport(services, None, server_end));
    let agent = ().serve(client_end).await.unwrap();
    let refusal = refused(&agent, "list_sessions", json!({})).await;
    assert_eq!(refusal["code"], "unauthorized", "{refusal}");
}

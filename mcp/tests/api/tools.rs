//! What an agent sees before it calls anything.

use serde_json::json;

use crate::{connect, refused, spawn_mcp};

/// No stack needed: listing tools and refusing a bad argument happen before
/// any call reaches a service.
async fn unreachable_services() -> String {
    spawn_mcp("http://127.0.0.1:9", "http://127.0.0.1:9").await
}

#[tokio::test]
async fn all_twelve_tools_are_listed_each_with_a_description_and_an_object_schema() {
    let url = unreachable_services().await;
    let agent = connect(&url, None).await;
    let tools = agent.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "end_session",
            "forget_memory",
            "get_memory",
            "list_memories",
            "list_sessions",
            "memory_history",
            "recall",
            "remember",
            "restore_memory",
            "start_session",
            "tag_memory",
            "update_memory",
        ]
    );
    for tool in &tools {
        let description = tool.description.as_deref().unwrap_or("");
        assert!(description.len() > 40, "{}: {description:?}", tool.name);
        assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
        let properties = tool.input_schema["properties"].as_object().unwrap();
        assert!(!properties.is_empty(), "{}", tool.name);
    }
    let recall = tools.iter().find(|t| t.name == "recall").unwrap();
    assert_eq!(recall.input_schema["required"], json!(["query"]));
    let info = agent.peer_info().unwrap();
    assert!(
        info.instructions
            .as_deref()
            .unwrap_or("")
            .contains("remember")
    );
}

#[tokio::test]
async fn arguments_outside_the_schema_are_tool_errors_and_the_connection_goes_on() {
    let url = unreachable_services().await;
    let agent = connect(&url, None).await;
    let not_a_uuid = refused(&agent, "get_memory", json!({"id": "not-a-uuid"})).await;
    assert_eq!(not_a_uuid["code"], "bad_argument", "{not_a_uuid}");
    let missing = refused(&agent, "remember", json!({"title": "no content"})).await;
    assert_eq!(missing["code"], "bad_argument", "{missing}");
    let misspelt = refused(&agent, "recall", json!({"query": "x", "tag": ["a"]})).await;
    assert_eq!(misspelt["code"], "bad_argument", "{misspelt}");
    let negative = refused(&agent, "recall", json!({"query": "x", "k": -1})).await;
    assert_eq!(negative["code"], "bad_argument", "{negative}");
    let nothing = refused(&agent, "update_memory", json!({"id": uuid::Uuid::nil()})).await;
    assert_eq!(nothing["code"], "bad_argument", "{nothing}");
    // A service that cannot be reached is a tool error too, without its
    // address or the transport's words.
    let down = refused(&agent, "get_memory", json!({"id": uuid::Uuid::nil()})).await;
    assert_eq!(down["code"], "service_unreachable", "{down}");
    assert!(!down.to_string().contains("127.0.0.1"), "{down}");
}

//! The client has a method for every operation both services document, and
//! for nothing they do not: an endpoint added to a service without a client
//! method (or removed from it) fails here.

use std::collections::BTreeSet;

use second_brain_client::OPERATIONS;
use serde_json::Value;
use test_kit::stack::spawn_query_stack;

async fn documented(base: &str) -> BTreeSet<(String, String)> {
    let url = format!("{}/v1/openapi.json", base.trim_end_matches('/'));
    let document: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[tokio::test]
async fn the_client_covers_every_documented_operation_and_no_other() {
    let stack = spawn_query_stack().await;
    let mut documented_ops = documented(&stack.command).await;
    documented_ops.extend(documented(stack.query()).await);
    // Health and metrics are for operators, not the client.
    documented_ops.retain(|(_, path)| path.starts_with("/v1/") && path != "/v1/openapi.json");
    let ours: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let missing: Vec<_> = documented_ops.difference(&ours).collect();
    let extra: Vec<_> = ours.difference(&documented_ops).collect();
    assert!(
        missing.is_empty(),
        "documented, no client method: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "a client method for an undocumented operation: {extra:?}"
    );
}

use std::time::{Duration, Instant};

use second_brain_client::RetryPolicy;
use test_kit::stack::spawn_query_stack_with;
use uuid::Uuid;

use crate::client_for;

/// The query service's per-user bucket holds one request and refills one in
/// five seconds, so a second read soon after is a real 429 with a
/// `Retry-After` of a few seconds, however slow the machine is.
#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_without_retries_is_a_typed_problem() {
    let stack = spawn_query_stack_with(&[
        ("SB_RATE_LIMIT_USER_PER_SECOND", "0.2"),
        ("SB_RATE_LIMIT_USER_BURST", "1"),
    ])
    .await;
    let patient = client_for(&stack, "client-patient", RetryPolicy::default());
    let id = Uuid::new_v4();
    let first = patient.get_memory(id, None).await.unwrap_err();
    assert_eq!(first.code(), Some("not_found"), "{first}");
    let started = Instant::now();
    let second = patient.get_memory(id, None).await.unwrap_err();
    assert_eq!(
        second.code(),
        Some("not_found"),
        "retried past the 429: {second}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited only {:?}: Retry-After was not honoured",
        started.elapsed()
    );

    let impatient = client_for(&stack, "client-impatient", RetryPolicy::none());
    impatient.get_memory(id, None).await.unwrap_err();
    let refused = impatient.get_memory(id, None).await.unwrap_err();
    assert_eq!(refused.code(), Some("rate_limited"), "{refused}");
    assert_eq!(refused.status(), Some(429));
}

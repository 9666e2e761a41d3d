#![allow(clippy::unwrap_used)]
//! The client against the real stack (command service, relay, projector,
//! query service on real Postgres, RabbitMQ and Redis): every operation,
//! problems as typed errors, and retries that honour `Retry-After`.

mod coverage;
mod idempotency;
mod operations;
mod retries;

use second_brain_client::{Client, RetryPolicy};
use test_kit::stack::Stack;

/// A client of `stack` as `user`.
pub fn client_for(stack: &Stack, user: &str, retry: RetryPolicy) -> Client {
    Client::builder(stack.command.clone(), stack.query())
        .token(stack.token(user))
        .retry(retry)
        .build()
        .expect("client")
}

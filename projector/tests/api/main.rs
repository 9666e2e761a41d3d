//! The projector against real Postgres, RabbitMQ and Redis: the command
//! service (with its relay) writes, the projector builds the read models, and
//! `verify` compares them with the fold of the event store. Each test has its
//! own databases, exchange, queues and Redis key prefix.

// A failed unwrap is a failed test, with its location; that is the point here.
#![allow(clippy::unwrap_used)]

mod batches;
mod broker;
mod context;
mod crash;
mod dead_letter_queue;
mod dead_letters;
mod deliveries;
mod operations;
mod partitions;
mod pending;
mod projection;
mod rebuild;

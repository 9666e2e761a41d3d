//! The event log as the services share it, after the command service has
//! appended to it:
//!
//! - [`store`]: reading the event store. One select of an event row, one
//!   mapping to a [`StoredEvent`](event_schema::StoredEvent), and the two
//!   orders events are read in: one aggregate's by `sequence` (history, the
//!   projector's gap fill, dead letters, verification) and all of them in
//!   commit-safe order (the relay, a rebuild).
//! - [`broker`]: how events are named on RabbitMQ. The exchange, the routing
//!   key of each event and its partition, the projections' queues and the
//!   dead-letter queue, with their defaults. The relay publishes by it, the
//!   projector and `projector migrate` declare and consume by it.
//!
//! The command service writes the events table through cqrs-es; nothing here
//! writes. The crate knows no service: each service depends on it, not on
//! each other (see the README, "How the crates depend on each other").

pub mod broker;
pub mod store;

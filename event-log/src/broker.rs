//! How events are named on RabbitMQ: the contract between the relay, which
//! publishes, and the projector (and `projector migrate`), which declares the
//! queues and consumes.
//!
//! - The relay publishes each event to one durable topic exchange
//!   ([`DEFAULT_EXCHANGE`]) with the routing key `<aggregate>.<event>`
//!   ([`routing_key`]), suffixed with `.p<partition>` when events are split
//!   into partitions ([`partition_of`]: all of one aggregate's events go to
//!   one partition, so they stay in order).
//! - Each projection has a queue `<prefix>.<projection>` bound with `#`, or
//!   per partition `<prefix>.<projection>.p<i>` bound with `#.p<i>`
//!   ([`Queues`]); what cannot be projected goes to `<prefix>.dead_letter`.
//!
//! Nothing here talks to a broker: the names are plain strings, so the
//! crates that only read events need no AMQP client.

use event_schema::StoredEvent;

/// The topic exchange events are published to, unless configured otherwise
/// (`SB_RABBITMQ_EXCHANGE`). It also names the relay's checkpoint and leader
/// lock.
pub const DEFAULT_EXCHANGE: &str = "second_brain.events";

/// The prefix of the projector's queues, unless configured otherwise
/// (`SB_PROJECTOR_QUEUE_PREFIX`).
pub const DEFAULT_QUEUE_PREFIX: &str = "second_brain.projector";

/// [`DEFAULT_EXCHANGE`] as a serde default.
pub fn default_exchange() -> String {
    DEFAULT_EXCHANGE.to_owned()
}

/// [`DEFAULT_QUEUE_PREFIX`] as a serde default.
pub fn default_queue_prefix() -> String {
    DEFAULT_QUEUE_PREFIX.to_owned()
}

/// Why an exchange name is refused: RabbitMQ's own rules (at most 255
/// bytes, `amq.` reserved) and a character set that needs no quoting in
/// logs, URLs or the management UI.
pub const EXCHANGE_RULE: &str = "must be 1 to 255 of [A-Za-z0-9-_.:], not starting with amq.";

/// Whether `name` may name the events' exchange ([`EXCHANGE_RULE`]).
pub fn is_valid_exchange(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with("amq.")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// `<aggregate>.<event>`: the event type's registered routing name
/// (`memory.captured`), or for a type this build does not know,
/// `<aggregate_type lowercased>.<event_type>`.
pub fn routing_key(aggregate_type: &str, event_type: &str) -> String {
    match event_schema::upcast::kind(aggregate_type, event_type) {
        Some(kind) => kind.routing_name.to_owned(),
        None => format!("{}.{event_type}", aggregate_type.to_lowercase()),
    }
}

/// Which of `partitions` partitions an aggregate's events go to: the first
/// eight bytes of the SHA-256 of its id, modulo the count. Stable across
/// processes and releases, and spread evenly whatever the ids look like
/// (UUIDv7s begin with a timestamp).
pub fn partition_of(aggregate_id: &str, partitions: u32) -> u32 {
    use sha2::{Digest, Sha256};
    if partitions <= 1 {
        return 0;
    }
    let digest = Sha256::digest(aggregate_id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u32::try_from(u64::from_be_bytes(head) % u64::from(partitions)).unwrap_or(0)
}

/// The routing key `event` is published with among `partitions` partitions:
/// [`routing_key`], and with more than one partition `.p<partition>`
/// (`memory.captured.p3`), which that partition's queues are bound to.
pub fn published_routing_key(event: &StoredEvent, partitions: u32) -> String {
    let key = routing_key(&event.aggregate_type, &event.event_type);
    if partitions > 1 {
        format!("{key}.p{}", partition_of(&event.aggregate_id, partitions))
    } else {
        key
    }
}

/// The projector's queues under one prefix, for one partition of
/// `partitions`.
#[derive(Debug, Clone, Copy)]
pub struct Queues<'a> {
    pub prefix: &'a str,
    pub partitions: u32,
    pub partition: u32,
}

impl Queues<'_> {
    /// The queue `projection` consumes.
    pub fn projection(&self, projection: &str) -> String {
        if self.partitions > 1 {
            format!("{}.{projection}.p{}", self.prefix, self.partition)
        } else {
            format!("{}.{projection}", self.prefix)
        }
    }

    /// The key this partition's queues are bound to the exchange with.
    pub fn binding_key(&self) -> String {
        if self.partitions > 1 {
            format!("#.p{}", self.partition)
        } else {
            "#".to_owned()
        }
    }

    /// The dead-letter exchange and its queue (one for every partition).
    pub fn dead_letter(&self) -> String {
        format!("{}.dead_letter", self.prefix)
    }
}

/// The projection a projection queue's name names (`<prefix>.<projection>`
/// or `<prefix>.<projection>.p<i>`), or `None` for a name of another shape.
pub fn projection_of_queue(queue: &str) -> Option<&str> {
    queue.rsplit('.').find(|part| !is_partition(part))
}

fn is_partition(part: &str) -> bool {
    part.strip_prefix('p')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    fn event(aggregate_id: &str) -> StoredEvent {
        StoredEvent {
            event_id: Uuid::from_u128(1),
            aggregate_type: "Memory".into(),
            aggregate_id: aggregate_id.into(),
            sequence: 1,
            global_position: 1,
            event_type: "MemoryCaptured".into(),
            event_version: "2".into(),
            recorded_at: Utc::now(),
            payload: json!({}),
            metadata: json!({}),
        }
    }

    #[test]
    fn known_types_route_by_their_registered_name_and_unknown_ones_by_convention() {
        assert_eq!(routing_key("Memory", "MemoryCaptured"), "memory.captured");
        assert_eq!(routing_key("Session", "SessionEnded"), "session.ended");
        assert_eq!(routing_key("Widget", "WidgetSpun"), "widget.WidgetSpun");
    }

    #[test]
    fn a_partitioned_event_is_routed_to_the_queues_of_its_partition() {
        let e = event("0190b6a4-0000-7000-8000-000000000001");
        let partition = partition_of(&e.aggregate_id, 4);
        let key = published_routing_key(&e, 4);
        assert_eq!(key, format!("memory.captured.p{partition}"));
        let queues = Queues {
            prefix: "sb",
            partitions: 4,
            partition,
        };
        assert_eq!(queues.binding_key(), format!("#.p{partition}"));
        assert_eq!(
            queues.projection("search"),
            format!("sb.search.p{partition}")
        );
        assert_eq!(published_routing_key(&e, 1), "memory.captured");
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed: a change would send an aggregate's later events to another
        // partition than its earlier ones across an upgrade.
        assert_eq!(partition_of("a", 8), partition_of("a", 8));
        assert_eq!(partition_of("anything", 1), 0);
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[partition_of(&Uuid::from_u128(i).to_string(), 4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_partition_suffix_is_recognised() {
        assert!(is_partition("p0"));
        assert!(is_partition("p12"));
        assert!(!is_partition("p"));
        assert!(!is_partition("projector"));
        assert!(!is_partition("search"));
    }

    #[test]
    fn a_queue_name_says_its_projection() {
        assert_eq!(
            projection_of_queue("second_brain.projector.search"),
            Some("search")
        );
        assert_eq!(
            projection_of_queue("second_brain.projector.search.p12"),
            Some("search")
        );
        assert_eq!(projection_of_queue("x.p"), Some("p"));
    }

    #[test]
    fn exchange_names_follow_rabbitmq_rules() {
        assert!(is_valid_exchange(DEFAULT_EXCHANGE));
        assert!(!is_valid_exchange(""));
        assert!(!is_valid_exchange("amq.topic"));
        assert!(!is_valid_exchange("with space"));
        assert!(!is_valid_exchange(&"x".repeat(256)));
    }
}

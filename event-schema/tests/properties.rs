//! Property tests of the stored formats: every event, envelope and metadata
//! survives a round trip, erasure leaves nothing private behind, and old
//! payloads upcast to the current shape.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use event_schema::{
    EventEnvelope, EventMetadata, MEMORY_PRIVATE_FIELDS, MemoryEvent, SessionEvent, StoredEvent,
    needs_upcast, upcast,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

fn text() -> impl Strategy<Value = String> {
    // Any unicode (control characters, quotes and backslashes included) and a
    // readable alphabet, so that both odd and ordinary strings are common.
    prop_oneof![any::<String>(), "\\PC{0,16}", "[a-z ]{0,8}"]
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // Year 1 to 9999: what RFC 3339 (and so chrono's serde) can write.
    (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap())
}

fn json_value() -> impl Strategy<Value = Value> {
    // No arbitrary floats: serde_json does not promise to read back every f64
    // bit-exactly without its `float_roundtrip` feature, and metadata values
    // are not where that would matter.
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i32..1000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn metadata_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text(), json_value(), 0..4).prop_map(|m| m.into_iter().collect())
}

fn tags() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..5)
}

fn memory_event() -> impl Strategy<Value = MemoryEvent> {
    prop_oneof![
        (
            text(),
            prop::option::of(text()),
            tags(),
            metadata_object(),
            prop::option::of(uuid()),
            prop::option::of(time()),
        )
            .prop_map(
                |(content, title, tags, metadata, session_id, occurred_at)| {
                    MemoryEvent::MemoryCaptured {
                        content,
                        title,
                        tags,
                        metadata,
                        session_id,
                        occurred_at,
                    }
                }
            ),
        (
            prop::option::of(text()),
            prop::option::of(prop::option::of(text()))
        )
            .prop_map(|(content, title)| MemoryEvent::MemoryRevised { content, title }),
        tags().prop_map(|tags| MemoryEvent::MemoryTagged { tags }),
        tags().prop_map(|tags| MemoryEvent::MemoryUntagged { tags }),
        metadata_object().prop_map(|metadata| MemoryEvent::MemoryMetadataChanged { metadata }),
        prop::option::of(uuid()).prop_map(|session_id| MemoryEvent::MemoryMoved { session_id }),
        Just(MemoryEvent::MemoryDeleted {}),
        Just(MemoryEvent::MemoryRestored {}),
        Just(MemoryEvent::MemoryErased {}),
    ]
}

fn session_event() -> impl Strategy<Value = SessionEvent> {
    prop_oneof![
        (text(), metadata_object())
            .prop_map(|(title, metadata)| SessionEvent::SessionStarted { title, metadata }),
        text().prop_map(|title| SessionEvent::SessionRenamed { title }),
        Just(SessionEvent::SessionEnded {}),
        Just(SessionEvent::SessionReopened {}),
    ]
}

fn event_metadata() -> impl Strategy<Value = EventMetadata> {
    let required = prop_oneof!["[a-z0-9-]{1,36}", "\\PC{1,12}"];
    let optional = || prop::option::of(text());
    (
        (required.clone(), required.clone(), required),
        (optional(), optional(), optional(), optional()),
        prop::option::of(any::<u16>()),
    )
        .prop_map(
            |(
                (owner_id, actor_id, correlation_id),
                (causation_id, request_id, idempotency_key, request_hash),
                response_status,
            )| EventMetadata {
                owner_id,
                actor_id,
                correlation_id,
                causation_id,
                request_id,
                idempotency_key,
                request_hash,
                response_status,
            },
        )
}

fn envelope<E: std::fmt::Debug>(
    payload: impl Strategy<Value = E>,
    kind: fn(&E) -> event_schema::EventKind,
) -> impl Strategy<Value = EventEnvelope<E>> {
    (
        (uuid(), uuid(), 1..=i64::MAX as u64, any::<i64>()),
        time(),
        event_metadata(),
        payload,
    )
        .prop_map(
            move |(
                (event_id, aggregate_id, sequence, global_position),
                recorded_at,
                metadata,
                payload,
            )| {
                let kind = kind(&payload);
                EventEnvelope {
                    event_id,
                    aggregate_type: kind.aggregate_type.to_owned(),
                    aggregate_id,
                    sequence,
                    global_position,
                    event_type: kind.event_type.to_owned(),
                    schema_version: kind.schema_version,
                    recorded_at,
                    metadata,
                    payload,
                }
            },
        )
}

/// How a stored row of `envelope` looks.
fn stored<E: serde::Serialize>(envelope: &EventEnvelope<E>) -> StoredEvent {
    StoredEvent {
        event_id: envelope.event_id,
        aggregate_type: envelope.aggregate_type.clone(),
        aggregate_id: envelope.aggregate_id.to_string(),
        sequence: i64::try_from(envelope.sequence).unwrap(),
        global_position: envelope.global_position,
        event_type: envelope.event_type.clone(),
        event_version: envelope.schema_version.to_string(),
        recorded_at: envelope.recorded_at,
        payload: serde_json::to_value(&envelope.payload).unwrap(),
        metadata: serde_json::to_value(envelope.metadata.to_map()).unwrap(),
    }
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
}

/// A tag as the v1 writer kept it: no comma, no surrounding whitespace.
fn v1_tag() -> impl Strategy<Value = String> {
    prop_oneof!["[^,\\s]", "[^,\\s][^,]{0,8}[^,\\s]"]
}

proptest! {
    #[test]
    fn every_memory_event_round_trips(event in memory_event()) {
        prop_assert_eq!(round_trip(&event), event);
    }

    #[test]
    fn every_session_event_round_trips(event in session_event()) {
        prop_assert_eq!(round_trip(&event), event);
    }

    #[test]
    fn every_memory_envelope_round_trips(e in envelope(memory_event(), MemoryEvent::kind)) {
        prop_assert_eq!(&round_trip(&e), &e);
        prop_assert_eq!(stored(&e).decode::<MemoryEvent>().unwrap(), e);
    }

    #[test]
    fn every_session_envelope_round_trips(e in envelope(session_event(), SessionEvent::kind)) {
        prop_assert_eq!(&round_trip(&e), &e);
        prop_assert_eq!(stored(&e).decode::<SessionEvent>().unwrap(), e);
    }

    #[test]
    fn metadata_round_trips_through_the_flat_map(m in event_metadata()) {
        let map: HashMap<String, String> = m.to_map();
        prop_assert_eq!(EventMetadata::from_map(&map).unwrap(), m.clone());
        prop_assert_eq!(EventMetadata::from_json(&serde_json::to_value(&map).unwrap()).unwrap(), m);
    }

    #[test]
    fn a_redacted_memory_event_deserialises_with_nothing_private_left(event in memory_event()) {
        let mut payload = serde_json::to_value(&event).unwrap();
        let inner = payload.get_mut(event.event_type()).unwrap().as_object_mut().unwrap();
        for key in MEMORY_PRIVATE_FIELDS {
            inner.remove(key);
        }
        let redacted: MemoryEvent = serde_json::from_value(payload).unwrap();
        prop_assert_eq!(redacted.event_type(), event.event_type());
        let again = serde_json::to_value(&redacted).unwrap();
        for key in MEMORY_PRIVATE_FIELDS {
            let left = again[event.event_type()].get(key);
            let empty = match left {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(o)) => o.is_empty(),
                Some(_) => false,
            };
            prop_assert!(empty, "{} kept {:?}", key, left);
        }
    }

    #[test]
    fn a_v1_capture_upcasts_to_v2_with_the_same_content_title_and_tags(
        content in text(),
        title in prop::option::of(prop::option::of(text())),
        tags in prop::collection::vec(v1_tag(), 0..5),
        separators in prop::collection::vec(prop_oneof![",", ", ", " ,", ",,", " , "], 5),
        wrap in prop_oneof!["", " ", ",", " , "],
    ) {
        let mut joined = String::new();
        for (i, tag) in tags.iter().enumerate() {
            if i > 0 {
                joined.push_str(&separators[i]);
            }
            joined.push_str(tag);
        }
        let joined = format!("{wrap}{joined}{wrap}");
        let mut inner = json!({"content": content, "tags": joined});
        // v1 may have left the title out or written it as null.
        if let Some(title) = &title {
            inner["title"] = json!(title);
        }
        let v1 = json!({"MemoryCaptured": inner});

        prop_assert!(needs_upcast("Memory", "MemoryCaptured", "1"));
        let (version, v2) = upcast("Memory", "MemoryCaptured", "1", v1).unwrap();
        prop_assert_eq!(version, "2");
        let event: MemoryEvent = serde_json::from_value(v2).unwrap();
        prop_assert_eq!(event, MemoryEvent::MemoryCaptured {
            content,
            title: title.flatten(),
            tags,
            metadata: Map::new(),
            session_id: None,
            occurred_at: None,
        });
    }

    #[test]
    fn upcasting_a_current_memory_payload_is_the_identity(event in memory_event()) {
        let kind = event.kind();
        let payload = serde_json::to_value(&event).unwrap();
        prop_assert!(!needs_upcast(kind.aggregate_type, kind.event_type, &kind.version_string()));
        let out = upcast(kind.aggregate_type, kind.event_type, &kind.version_string(), payload.clone());
        prop_assert_eq!(out.unwrap(), (kind.version_string(), payload));
    }

    #[test]
    fn upcasting_a_current_session_payload_is_the_identity(event in session_event()) {
        let kind = event.kind();
        let payload = serde_json::to_value(&event).unwrap();
        let out = upcast(kind.aggregate_type, kind.event_type, &kind.version_string(), payload.clone());
        prop_assert_eq!(out.unwrap(), (kind.version_string(), payload));
    }
}

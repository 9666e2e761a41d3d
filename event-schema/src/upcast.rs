//! Event type names, their schema versions, and the upcasters that bring an
//! old stored payload to the current shape on read.
//!
//! Stored events are never rewritten: a payload keeps the version it was
//! written with, and each reader upcasts it step by step (v1 → v2 → v3 …), so
//! adding a version means adding one step, never editing the older ones.

use serde_json::{Map, Value};

use crate::error::UpcastError;
use crate::memory::{self, MemoryEvent};
use crate::session::{self, SessionEvent};

/// What the event store and the broker know about one event type.
///
/// `event_type` and `routing_name` are stored and bound to queues, so they
/// never change once released; only `schema_version` moves, and only upward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventKind {
    pub aggregate_type: &'static str,
    /// The stable type name, equal to the serde tag of the payload.
    pub event_type: &'static str,
    /// The version this crate writes and every upcast ends at.
    pub schema_version: u32,
    /// `<aggregate>.<event>` in snake case: the broker routing key.
    pub routing_name: &'static str,
}

impl EventKind {
    /// The version as the event store keeps it (a text column).
    pub fn version_string(&self) -> String {
        self.schema_version.to_string()
    }
}

/// Looks an event type up by the names the event store keeps.
pub fn kind(aggregate_type: &str, event_type: &str) -> Option<EventKind> {
    let kinds: &[EventKind] = match aggregate_type {
        memory::AGGREGATE_TYPE => &MemoryEvent::KINDS,
        session::AGGREGATE_TYPE => &SessionEvent::KINDS,
        _ => return None,
    };
    kinds.iter().find(|k| k.event_type == event_type).copied()
}

/// One step of a chain: rewrites the inner object of `event_type` at
/// `from_version` into the shape of `from_version + 1`.
struct Step {
    aggregate_type: &'static str,
    event_type: &'static str,
    from_version: u32,
    apply: fn(&mut Map<String, Value>) -> Result<(), String>,
}

const STEPS: &[Step] = &[Step {
    aggregate_type: memory::AGGREGATE_TYPE,
    event_type: "MemoryCaptured",
    from_version: 1,
    apply: memory_captured_v1_to_v2,
}];

/// Whether [`upcast`] would change a payload stored with this version.
///
/// Unknown types and unreadable versions answer `false`: there is nothing to
/// upcast them to, and deserialising them reports the problem.
pub fn needs_upcast(aggregate_type: &str, event_type: &str, version: &str) -> bool {
    match (kind(aggregate_type, event_type), parse_version(version)) {
        (Some(kind), Ok(version)) => version < kind.schema_version,
        _ => false,
    }
}

/// Brings a stored payload (the whole externally tagged object,
/// `{"<EventType>": {...}}`) to the current schema version of its type.
///
/// Returns the new version string and payload; a payload already at the
/// current version is returned unchanged.
pub fn upcast(
    aggregate_type: &str,
    event_type: &str,
    version: &str,
    mut payload: Value,
) -> Result<(String, Value), UpcastError> {
    let kind = kind(aggregate_type, event_type).ok_or_else(|| UpcastError::UnknownEventType {
        aggregate_type: aggregate_type.to_owned(),
        event_type: event_type.to_owned(),
    })?;
    let mut current = parse_version(version)?;
    if current > kind.schema_version {
        return Err(UpcastError::VersionTooNew {
            event_type: event_type.to_owned(),
            version: current,
            current: kind.schema_version,
        });
    }
    while current < kind.schema_version {
        let step = STEPS
            .iter()
            .find(|s| {
                s.aggregate_type == kind.aggregate_type
                    && s.event_type == kind.event_type
                    && s.from_version == current
            })
            .ok_or_else(|| UpcastError::MissingUpcaster {
                event_type: event_type.to_owned(),
                from_version: current,
            })?;
        let malformed = |reason: String| UpcastError::MalformedPayload {
            event_type: event_type.to_owned(),
            version: current,
            reason,
        };
        let inner = payload
            .get_mut(kind.event_type)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| malformed(format!("expected an object under `{event_type}`")))?;
        (step.apply)(inner).map_err(malformed)?;
        current += 1;
    }
    Ok((current.to_string(), payload))
}

fn parse_version(version: &str) -> Result<u32, UpcastError> {
    match version.parse::<u32>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(UpcastError::InvalidVersion {
            version: version.to_owned(),
        }),
    }
}

/// v1 kept tags as one comma-separated string and had no metadata, session or
/// occurrence time.
fn memory_captured_v1_to_v2(inner: &mut Map<String, Value>) -> Result<(), String> {
    // Erasure may have stripped `tags` from a v1 payload too, hence the default.
    let tags = match inner.remove("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(joined)) => joined
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Value::String(t.to_owned()))
            .collect(),
        // The value itself stays out of the message: tags are private.
        Some(_) => return Err("`tags` should be a comma-separated string".to_owned()),
    };
    inner.insert("tags".to_owned(), Value::Array(tags));
    inner.insert("metadata".to_owned(), Value::Object(Map::new()));
    inner.insert("session_id".to_owned(), Value::Null);
    inner.insert("occurred_at".to_owned(), Value::Null);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_v1_capture_gets_split_tags_and_the_new_fields() {
        let v1 = json!({"MemoryCaptured": {"content": "c", "title": "t", "tags": " a, b ,,c "}});
        let (version, v2) = upcast("Memory", "MemoryCaptured", "1", v1).unwrap();
        assert_eq!(version, "2");
        assert_eq!(
            v2,
            json!({"MemoryCaptured": {
                "content": "c", "title": "t", "tags": ["a", "b", "c"],
                "metadata": {}, "session_id": null, "occurred_at": null
            }})
        );
    }

    #[test]
    fn a_redacted_v1_capture_upcasts_to_an_empty_v2_capture() {
        let v1 = json!({"MemoryCaptured": {}});
        let (_, v2) = upcast("Memory", "MemoryCaptured", "1", v1).unwrap();
        assert_eq!(
            v2,
            json!({"MemoryCaptured": {
                "tags": [], "metadata": {}, "session_id": null, "occurred_at": null
            }})
        );
        let event: MemoryEvent = serde_json::from_value(v2).unwrap();
        assert!(matches!(event, MemoryEvent::MemoryCaptured { content, .. } if content.is_empty()));
    }

    #[test]
    fn a_current_payload_is_returned_unchanged() {
        let payload = json!({"MemoryTagged": {"tags": ["x"]}});
        let out = upcast("Memory", "MemoryTagged", "1", payload.clone()).unwrap();
        assert_eq!(out, ("1".to_owned(), payload));
    }

    #[test]
    fn unknown_types_bad_versions_and_future_versions_are_errors() {
        let p = json!({});
        assert!(matches!(
            upcast("Memory", "MemoryExploded", "1", p.clone()),
            Err(UpcastError::UnknownEventType { .. })
        ));
        assert!(matches!(
            upcast("Session", "MemoryCaptured", "1", p.clone()),
            Err(UpcastError::UnknownEventType { .. })
        ));
        for bad in ["", "0", "v1", "1.0", "-1"] {
            assert!(matches!(
                upcast("Memory", "MemoryCaptured", bad, p.clone()),
                Err(UpcastError::InvalidVersion { .. })
            ));
        }
        assert_eq!(
            upcast("Memory", "MemoryCaptured", "3", p),
            Err(UpcastError::VersionTooNew {
                event_type: "MemoryCaptured".into(),
                version: 3,
                current: 2
            })
        );
    }

    #[test]
    fn a_payload_without_its_tag_is_malformed() {
        let p = json!({"MemoryRevised": {"content": "c", "tags": "a"}});
        assert!(matches!(
            upcast("Memory", "MemoryCaptured", "1", p),
            Err(UpcastError::MalformedPayload { .. })
        ));
        let p = json!({"MemoryCaptured": {"content": "c", "tags": 3}});
        assert!(matches!(
            upcast("Memory", "MemoryCaptured", "1", p),
            Err(UpcastError::MalformedPayload { .. })
        ));
    }

    #[test]
    fn needs_upcast_is_true_only_for_known_older_versions() {
        assert!(needs_upcast("Memory", "MemoryCaptured", "1"));
        assert!(!needs_upcast("Memory", "MemoryCaptured", "2"));
        assert!(!needs_upcast("Memory", "MemoryCaptured", "3"));
        assert!(!needs_upcast("Memory", "MemoryCaptured", "x"));
        assert!(!needs_upcast("Memory", "MemoryTagged", "1"));
        assert!(!needs_upcast("Session", "SessionStarted", "1"));
        assert!(!needs_upcast("Nope", "SessionStarted", "1"));
    }

    #[test]
    fn every_version_below_the_current_one_has_a_step() {
        for kind in MemoryEvent::KINDS.iter().chain(SessionEvent::KINDS.iter()) {
            for from in 1..kind.schema_version {
                assert!(
                    STEPS.iter().any(|s| s.aggregate_type == kind.aggregate_type
                        && s.event_type == kind.event_type
                        && s.from_version == from),
                    "{} has no step from v{from}",
                    kind.event_type
                );
            }
        }
        for step in STEPS {
            assert!(kind(step.aggregate_type, step.event_type).is_some());
        }
    }
}

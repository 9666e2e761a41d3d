//! Memory events and the state they fold into.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::upcast::EventKind;

/// The aggregate type the event store keeps for memories.
pub const AGGREGATE_TYPE: &str = "Memory";

/// The keys the event store strips from the inner object of every earlier
/// event of a memory when it is erased. Every memory event therefore
/// deserialises without them, falling back to empty values.
pub const MEMORY_PRIVATE_FIELDS: [&str; 4] = ["content", "title", "tags", "metadata"];

/// Something that happened to a memory.
///
/// Stored externally tagged, `{"MemoryCaptured": {...}}`; the variant name is
/// the stored type name, so a variant is never renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MemoryEvent {
    /// Schema version 2 (v1 kept tags as one comma-separated string).
    MemoryCaptured {
        #[serde(default)]
        content: String,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        metadata: Map<String, Value>,
        session_id: Option<Uuid>,
        /// When the remembered thing happened, if the client said so; the
        /// envelope's `recorded_at` is when it was written down.
        occurred_at: Option<DateTime<Utc>>,
    },
    /// A new content and/or title. `title: Some(None)` clears the title and
    /// is stored as `null`; `None` leaves it alone and is not stored at all.
    MemoryRevised {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present_or_null"
        )]
        title: Option<Option<String>>,
    },
    /// The tags actually added (none of them was already present).
    MemoryTagged {
        #[serde(default)]
        tags: Vec<String>,
    },
    /// The tags actually removed (all of them were present).
    MemoryUntagged {
        #[serde(default)]
        tags: Vec<String>,
    },
    /// The whole new metadata object, replacing the old one.
    MemoryMetadataChanged {
        #[serde(default)]
        metadata: Map<String, Value>,
    },
    /// `session_id: None` detaches the memory from its session.
    MemoryMoved {
        session_id: Option<Uuid>,
    },
    MemoryDeleted {},
    MemoryRestored {},
    /// Irreversible: private fields of every earlier event are stripped too.
    MemoryErased {},
}

/// Reads a field that is present (absent fields never reach a
/// `deserialize_with`, `default` covers them), so `null` becomes `Some(None)`.
fn present_or_null<'de, D>(deserializer: D) -> Result<Option<Option<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    Option::<String>::deserialize(deserializer).map(Some)
}

const CAPTURED: EventKind = kind("MemoryCaptured", 2, "memory.captured");
const REVISED: EventKind = kind("MemoryRevised", 1, "memory.revised");
const TAGGED: EventKind = kind("MemoryTagged", 1, "memory.tagged");
const UNTAGGED: EventKind = kind("MemoryUntagged", 1, "memory.untagged");
const METADATA_CHANGED: EventKind = kind("MemoryMetadataChanged", 1, "memory.metadata_changed");
const MOVED: EventKind = kind("MemoryMoved", 1, "memory.moved");
const DELETED: EventKind = kind("MemoryDeleted", 1, "memory.deleted");
const RESTORED: EventKind = kind("MemoryRestored", 1, "memory.restored");
const ERASED: EventKind = kind("MemoryErased", 1, "memory.erased");

const fn kind(
    event_type: &'static str,
    schema_version: u32,
    routing_name: &'static str,
) -> EventKind {
    EventKind {
        aggregate_type: AGGREGATE_TYPE,
        event_type,
        schema_version,
        routing_name,
    }
}

impl MemoryEvent {
    pub const AGGREGATE_TYPE: &'static str = AGGREGATE_TYPE;

    /// Every memory event type, with its current version and routing name.
    pub const KINDS: [EventKind; 9] = [
        CAPTURED,
        REVISED,
        TAGGED,
        UNTAGGED,
        METADATA_CHANGED,
        MOVED,
        DELETED,
        RESTORED,
        ERASED,
    ];

    pub fn kind(&self) -> EventKind {
        match self {
            Self::MemoryCaptured { .. } => CAPTURED,
            Self::MemoryRevised { .. } => REVISED,
            Self::MemoryTagged { .. } => TAGGED,
            Self::MemoryUntagged { .. } => UNTAGGED,
            Self::MemoryMetadataChanged { .. } => METADATA_CHANGED,
            Self::MemoryMoved { .. } => MOVED,
            Self::MemoryDeleted {} => DELETED,
            Self::MemoryRestored {} => RESTORED,
            Self::MemoryErased {} => ERASED,
        }
    }

    /// The stable stored type name, equal to the serde tag.
    pub fn event_type(&self) -> &'static str {
        self.kind().event_type
    }

    /// The current schema version of this event's type.
    pub fn schema_version(&self) -> u32 {
        self.kind().schema_version
    }

    /// The broker routing key, e.g. `memory.metadata_changed`.
    pub fn routing_name(&self) -> &'static str {
        self.kind().routing_name
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryStatus {
    #[default]
    Active,
    Deleted,
    Erased,
}

/// What the events say about a memory, without who, when or which version:
/// all the write-side aggregate needs, and the core of [`MemoryState`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MemoryFacts {
    pub content: String,
    pub title: Option<String>,
    /// In the order they were added, without duplicates.
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    pub session_id: Option<Uuid>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub status: MemoryStatus,
}

impl MemoryFacts {
    /// Folds one event in. Never fails and never decides: whether an event
    /// was allowed is the aggregate's business when it emits it.
    pub fn apply(&mut self, event: &MemoryEvent) {
        match event {
            MemoryEvent::MemoryCaptured {
                content,
                title,
                tags,
                metadata,
                session_id,
                occurred_at,
            } => {
                *self = Self {
                    content: content.clone(),
                    title: title.clone(),
                    tags: Vec::new(),
                    metadata: metadata.clone(),
                    session_id: *session_id,
                    occurred_at: *occurred_at,
                    status: MemoryStatus::Active,
                };
                self.add_tags(tags);
            }
            MemoryEvent::MemoryRevised { content, title } => {
                if let Some(content) = content {
                    self.content.clone_from(content);
                }
                if let Some(title) = title {
                    self.title.clone_from(title);
                }
            }
            MemoryEvent::MemoryTagged { tags } => self.add_tags(tags),
            MemoryEvent::MemoryUntagged { tags } => self.tags.retain(|t| !tags.contains(t)),
            MemoryEvent::MemoryMetadataChanged { metadata } => self.metadata.clone_from(metadata),
            MemoryEvent::MemoryMoved { session_id } => self.session_id = *session_id,
            MemoryEvent::MemoryDeleted {} => self.status = MemoryStatus::Deleted,
            MemoryEvent::MemoryRestored {} => self.status = MemoryStatus::Active,
            MemoryEvent::MemoryErased {} => {
                self.content.clear();
                self.title = None;
                self.tags.clear();
                self.metadata.clear();
                self.status = MemoryStatus::Erased;
            }
        }
    }

    fn add_tags(&mut self, tags: &[String]) {
        for tag in tags {
            if !self.tags.contains(tag) {
                self.tags.push(tag.clone());
            }
        }
    }
}

/// A memory as the read side shows it: the facts plus identity, owner and
/// version. Built by the folds in [`crate::fold`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryState {
    pub id: Uuid,
    pub owner_id: String,
    #[serde(flatten)]
    pub facts: MemoryFacts,
    /// The sequence of the last event folded in.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    fn captured() -> MemoryEvent {
        MemoryEvent::MemoryCaptured {
            content: s("secret content"),
            title: Some(s("secret title")),
            tags: vec![s("a"), s("b"), s("a")],
            metadata: json!({"secret": {"nested": [1, 2]}})
                .as_object()
                .unwrap()
                .clone(),
            session_id: Some(Uuid::from_u128(7)),
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0),
        }
    }

    /// One of each variant, carrying private text wherever a variant can.
    fn every_variant() -> Vec<MemoryEvent> {
        let all = vec![
            captured(),
            MemoryEvent::MemoryRevised {
                content: Some(s("secret revision")),
                title: Some(Some(s("secret retitle"))),
            },
            MemoryEvent::MemoryTagged {
                tags: vec![s("secret-tag")],
            },
            MemoryEvent::MemoryUntagged {
                tags: vec![s("secret-untag")],
            },
            MemoryEvent::MemoryMetadataChanged {
                metadata: json!({"secret": "meta"}).as_object().unwrap().clone(),
            },
            MemoryEvent::MemoryMoved { session_id: None },
            MemoryEvent::MemoryDeleted {},
            MemoryEvent::MemoryRestored {},
            MemoryEvent::MemoryErased {},
        ];
        for event in &all {
            // Adding a variant breaks this match, so it cannot be left out here.
            match event {
                MemoryEvent::MemoryCaptured { .. }
                | MemoryEvent::MemoryRevised { .. }
                | MemoryEvent::MemoryTagged { .. }
                | MemoryEvent::MemoryUntagged { .. }
                | MemoryEvent::MemoryMetadataChanged { .. }
                | MemoryEvent::MemoryMoved { .. }
                | MemoryEvent::MemoryDeleted {}
                | MemoryEvent::MemoryRestored {}
                | MemoryEvent::MemoryErased {} => {}
            }
        }
        all
    }

    fn facts_after(events: &[MemoryEvent]) -> MemoryFacts {
        let mut facts = MemoryFacts::default();
        for event in events {
            facts.apply(event);
        }
        facts
    }

    #[test]
    fn each_event_type_is_its_serde_tag_and_is_listed_once() {
        let all = every_variant();
        assert_eq!(all.len(), MemoryEvent::KINDS.len());
        for event in &all {
            let json = serde_json::to_value(event).unwrap();
            let tag = json.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(tag, event.event_type());
            assert_eq!(
                MemoryEvent::KINDS
                    .iter()
                    .filter(|k| **k == event.kind())
                    .count(),
                1
            );
        }
    }

    #[test]
    fn routing_names_are_the_snake_case_aggregate_and_event() {
        for kind in MemoryEvent::KINDS {
            let event = kind.event_type.strip_prefix(AGGREGATE_TYPE).unwrap();
            let mut snake = String::new();
            for (i, c) in event.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.extend(c.to_lowercase());
            }
            assert_eq!(kind.routing_name, format!("memory.{snake}"));
        }
    }

    #[test]
    fn empty_variants_serialise_as_empty_objects() {
        assert_eq!(
            serde_json::to_value(MemoryEvent::MemoryDeleted {}).unwrap(),
            json!({"MemoryDeleted": {}})
        );
    }

    #[test]
    fn a_redacted_payload_of_every_variant_deserialises_without_private_text() {
        for event in every_variant() {
            let mut payload = serde_json::to_value(&event).unwrap();
            let inner = payload.get_mut(event.event_type()).unwrap();
            for key in MEMORY_PRIVATE_FIELDS {
                inner.as_object_mut().unwrap().remove(key);
            }
            let redacted: MemoryEvent = serde_json::from_value(payload).unwrap();
            assert_eq!(redacted.event_type(), event.event_type());
            let text = serde_json::to_string(&redacted).unwrap();
            assert!(!text.contains("secret"), "{text}");
        }
    }

    #[test]
    fn revise_tells_a_cleared_title_from_an_untouched_one() {
        let cleared = MemoryEvent::MemoryRevised {
            content: None,
            title: Some(None),
        };
        let untouched = MemoryEvent::MemoryRevised {
            content: Some(s("new")),
            title: None,
        };
        assert_eq!(
            serde_json::to_value(&cleared).unwrap(),
            json!({"MemoryRevised": {"title": null}})
        );
        assert_eq!(
            serde_json::to_value(&untouched).unwrap(),
            json!({"MemoryRevised": {"content": "new"}})
        );
        for event in [&cleared, &untouched] {
            let back: MemoryEvent =
                serde_json::from_str(&serde_json::to_string(event).unwrap()).unwrap();
            assert_eq!(&back, event);
        }

        let titled = facts_after(&[captured(), untouched]);
        assert_eq!(titled.title.as_deref(), Some("secret title"));
        assert_eq!(titled.content, "new");
        let untitled = facts_after(&[captured(), cleared]);
        assert_eq!(untitled.title, None);
        assert_eq!(untitled.content, "secret content");
    }

    #[test]
    fn capture_sets_everything_and_keeps_tags_unique_in_order() {
        let facts = facts_after(&[captured()]);
        assert_eq!(facts.content, "secret content");
        assert_eq!(facts.tags, vec![s("a"), s("b")]);
        assert_eq!(facts.session_id, Some(Uuid::from_u128(7)));
        assert_eq!(facts.status, MemoryStatus::Active);
        assert!(facts.occurred_at.is_some());
    }

    #[test]
    fn tagging_adds_only_new_tags_and_untagging_removes_them() {
        let facts = facts_after(&[
            captured(),
            MemoryEvent::MemoryTagged {
                tags: vec![s("c"), s("a"), s("c")],
            },
        ]);
        assert_eq!(facts.tags, vec![s("a"), s("b"), s("c")]);
        let facts = facts_after(&[
            captured(),
            MemoryEvent::MemoryUntagged {
                tags: vec![s("a"), s("zzz")],
            },
        ]);
        assert_eq!(facts.tags, vec![s("b")]);
    }

    #[test]
    fn metadata_is_replaced_and_moves_change_the_session() {
        let facts = facts_after(&[
            captured(),
            MemoryEvent::MemoryMetadataChanged {
                metadata: json!({"k": 1}).as_object().unwrap().clone(),
            },
            MemoryEvent::MemoryMoved { session_id: None },
        ]);
        assert_eq!(Value::Object(facts.metadata), json!({"k": 1}));
        assert_eq!(facts.session_id, None);
    }

    #[test]
    fn delete_and_restore_flip_the_status_and_keep_the_content() {
        let deleted = facts_after(&[captured(), MemoryEvent::MemoryDeleted {}]);
        assert_eq!(deleted.status, MemoryStatus::Deleted);
        assert_eq!(deleted.content, "secret content");
        let restored = facts_after(&[
            captured(),
            MemoryEvent::MemoryDeleted {},
            MemoryEvent::MemoryRestored {},
        ]);
        assert_eq!(restored.status, MemoryStatus::Active);
        assert_eq!(restored, facts_after(&[captured()]));
    }

    #[test]
    fn erase_clears_every_private_field() {
        let facts = facts_after(&[
            captured(),
            MemoryEvent::MemoryDeleted {},
            MemoryEvent::MemoryErased {},
        ]);
        assert_eq!(facts.status, MemoryStatus::Erased);
        assert_eq!(facts.content, "");
        assert_eq!(facts.title, None);
        assert!(facts.tags.is_empty());
        assert!(facts.metadata.is_empty());
        let text = serde_json::to_string(&facts).unwrap();
        assert!(!text.contains("secret"), "{text}");
    }
}

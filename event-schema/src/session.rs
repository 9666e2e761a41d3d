//! Session events and the state they fold into.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::upcast::EventKind;

/// The aggregate type the event store keeps for sessions.
pub const AGGREGATE_TYPE: &str = "Session";

/// Something that happened to a session.
///
/// Stored externally tagged, `{"SessionStarted": {...}}`; the variant name is
/// the stored type name, so a variant is never renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionEvent {
    SessionStarted {
        title: String,
        #[serde(default)]
        metadata: Map<String, Value>,
    },
    SessionRenamed {
        title: String,
    },
    SessionEnded {},
    SessionReopened {},
}

const STARTED: EventKind = kind("SessionStarted", 1, "session.started");
const RENAMED: EventKind = kind("SessionRenamed", 1, "session.renamed");
const ENDED: EventKind = kind("SessionEnded", 1, "session.ended");
const REOPENED: EventKind = kind("SessionReopened", 1, "session.reopened");

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

impl SessionEvent {
    pub const AGGREGATE_TYPE: &'static str = AGGREGATE_TYPE;

    /// Every session event type, with its current version and routing name.
    pub const KINDS: [EventKind; 4] = [STARTED, RENAMED, ENDED, REOPENED];

    pub fn kind(&self) -> EventKind {
        match self {
            Self::SessionStarted { .. } => STARTED,
            Self::SessionRenamed { .. } => RENAMED,
            Self::SessionEnded {} => ENDED,
            Self::SessionReopened {} => REOPENED,
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

    /// The broker routing key, e.g. `session.started`.
    pub fn routing_name(&self) -> &'static str {
        self.kind().routing_name
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    #[default]
    Open,
    Ended,
}

/// What the events say about a session, without who, when or which version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionFacts {
    pub title: String,
    pub metadata: Map<String, Value>,
    pub status: SessionStatus,
}

impl SessionFacts {
    /// Folds one event in; deciding whether it was allowed is the aggregate's
    /// business when it emits it.
    pub fn apply(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::SessionStarted { title, metadata } => {
                *self = Self {
                    title: title.clone(),
                    metadata: metadata.clone(),
                    status: SessionStatus::Open,
                };
            }
            SessionEvent::SessionRenamed { title } => self.title.clone_from(title),
            SessionEvent::SessionEnded {} => self.status = SessionStatus::Ended,
            SessionEvent::SessionReopened {} => self.status = SessionStatus::Open,
        }
    }
}

/// A session as the read side shows it. Built by the folds in [`crate::fold`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub id: Uuid,
    pub owner_id: String,
    #[serde(flatten)]
    pub facts: SessionFacts,
    /// The sequence of the last event folded in.
    pub version: u64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the session was last ended; `None` while it is open.
    pub ended_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn every_variant() -> Vec<SessionEvent> {
        let all = vec![
            SessionEvent::SessionStarted {
                title: "Monday".to_owned(),
                metadata: json!({"k": ["v"]}).as_object().unwrap().clone(),
            },
            SessionEvent::SessionRenamed {
                title: "Tuesday".to_owned(),
            },
            SessionEvent::SessionEnded {},
            SessionEvent::SessionReopened {},
        ];
        for event in &all {
            // Adding a variant breaks this match, so it cannot be left out here.
            match event {
                SessionEvent::SessionStarted { .. }
                | SessionEvent::SessionRenamed { .. }
                | SessionEvent::SessionEnded {}
                | SessionEvent::SessionReopened {} => {}
            }
        }
        all
    }

    #[test]
    fn each_event_type_is_its_serde_tag_and_is_listed_once() {
        let all = every_variant();
        assert_eq!(all.len(), SessionEvent::KINDS.len());
        for event in &all {
            let json = serde_json::to_value(event).unwrap();
            let tag = json.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(tag, event.event_type());
            assert!(event.routing_name().starts_with("session."));
            assert_eq!(
                SessionEvent::KINDS
                    .iter()
                    .filter(|k| **k == event.kind())
                    .count(),
                1
            );
        }
    }

    #[test]
    fn start_rename_end_and_reopen_fold_in_order() {
        let mut facts = SessionFacts::default();
        let events = every_variant();
        facts.apply(&events[0]);
        assert_eq!(facts.title, "Monday");
        assert_eq!(facts.status, SessionStatus::Open);
        facts.apply(&events[1]);
        assert_eq!(facts.title, "Tuesday");
        assert_eq!(Value::Object(facts.metadata.clone()), json!({"k": ["v"]}));
        facts.apply(&events[2]);
        assert_eq!(facts.status, SessionStatus::Ended);
        facts.apply(&events[3]);
        assert_eq!(facts.status, SessionStatus::Open);
    }
}

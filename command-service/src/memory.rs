//! The Memory aggregate: decides which event, if any, a command produces.
//! Pure: no I/O; anything the decision needs from elsewhere (a target
//! session's state) is resolved beforehand and carried in the command.

use crate::domain::{Content, Metadata, TagSet, Title};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use event_schema::{MemoryEvent, MemoryFacts, MemoryStatus, SessionStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The event type the event store handles for this aggregate: the schema's
/// event, wrapped so cqrs-es's trait can be implemented here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemoryRecord(pub MemoryEvent);

impl DomainEvent for MemoryRecord {
    fn event_type(&self) -> String {
        self.0.event_type().to_owned()
    }

    fn event_version(&self) -> String {
        self.0.schema_version().to_string()
    }
}

/// A session a command points a memory at, looked up before the command runs.
/// `None` for the status means it does not exist or belongs to someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSession {
    pub id: Uuid,
    pub status: Option<SessionStatus>,
}

#[derive(Debug, Clone)]
pub enum MemoryCommand {
    Capture {
        content: Content,
        title: Option<Title>,
        tags: TagSet,
        metadata: Metadata,
        session: Option<TargetSession>,
        occurred_at: Option<DateTime<Utc>>,
    },
    /// `title: Some(None)` clears the title.
    Revise {
        content: Option<Content>,
        title: Option<Option<Title>>,
    },
    AddTags(TagSet),
    RemoveTags(TagSet),
    SetMetadata(Metadata),
    /// `None` detaches the memory from its session.
    Move(Option<TargetSession>),
    Delete,
    Restore,
    Erase,
}

impl MemoryCommand {
    /// A short, bounded name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Capture { .. } => "capture",
            Self::Revise { .. } => "revise",
            Self::AddTags(_) => "add_tags",
            Self::RemoveTags(_) => "remove_tags",
            Self::SetMetadata(_) => "set_metadata",
            Self::Move(_) => "move",
            Self::Delete => "delete",
            Self::Restore => "restore",
            Self::Erase => "erase",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("the memory already exists")]
    AlreadyExists,
    #[error("the memory does not exist")]
    NotFound,
    #[error("the memory is deleted; restore it first")]
    Deleted,
    #[error("the memory is not deleted")]
    NotDeleted,
    #[error("the memory has been erased")]
    Erased,
    #[error("a memory carries at most {max} tags")]
    TooManyTags { max: usize },
    #[error("the session does not exist")]
    SessionNotFound,
    #[error("the session has ended; reopen it first")]
    SessionEnded,
    #[error("a revision must change the content or the title")]
    EmptyRevision,
}

/// The write-side state of a memory; `None` until it is captured.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    facts: Option<MemoryFacts>,
}

impl Memory {
    pub fn facts(&self) -> Option<&MemoryFacts> {
        self.facts.as_ref()
    }

    /// The memory as a command other than capture or erase may change it.
    fn active(&self) -> Result<&MemoryFacts, MemoryError> {
        let facts = self.existing()?;
        match facts.status {
            MemoryStatus::Active => Ok(facts),
            MemoryStatus::Deleted => Err(MemoryError::Deleted),
            MemoryStatus::Erased => Err(MemoryError::Erased),
        }
    }

    fn existing(&self) -> Result<&MemoryFacts, MemoryError> {
        let facts = self.facts.as_ref().ok_or(MemoryError::NotFound)?;
        if facts.status == MemoryStatus::Erased {
            return Err(MemoryError::Erased);
        }
        Ok(facts)
    }

    /// Decides the event of a command; `Ok(None)` when it changes nothing.
    pub fn decide(&self, command: MemoryCommand) -> Result<Option<MemoryEvent>, MemoryError> {
        let event = match command {
            MemoryCommand::Capture {
                content,
                title,
                tags,
                metadata,
                session,
                occurred_at,
            } => {
                if self.facts.is_some() {
                    return Err(MemoryError::AlreadyExists);
                }
                Some(MemoryEvent::MemoryCaptured {
                    content: content.into_inner(),
                    title: title.map(Title::into_inner),
                    tags: tags.into_strings(),
                    metadata: metadata.into_inner(),
                    session_id: session.map(open_session).transpose()?,
                    occurred_at,
                })
            }
            MemoryCommand::Revise { content, title } => self.revise(content, title)?,
            MemoryCommand::AddTags(tags) => self.add_tags(tags)?,
            MemoryCommand::RemoveTags(tags) => {
                let facts = self.active()?;
                let removed: Vec<String> = tags
                    .into_strings()
                    .into_iter()
                    .filter(|t| facts.tags.contains(t))
                    .collect();
                (!removed.is_empty()).then_some(MemoryEvent::MemoryUntagged { tags: removed })
            }
            MemoryCommand::SetMetadata(metadata) => {
                let facts = self.active()?;
                let metadata = metadata.into_inner();
                (metadata != facts.metadata)
                    .then_some(MemoryEvent::MemoryMetadataChanged { metadata })
            }
            MemoryCommand::Move(target) => {
                let facts = self.active()?;
                let session_id = target.map(open_session).transpose()?;
                (session_id != facts.session_id).then_some(MemoryEvent::MemoryMoved { session_id })
            }
            MemoryCommand::Delete => {
                self.active()?;
                Some(MemoryEvent::MemoryDeleted {})
            }
            MemoryCommand::Restore => match self.existing()?.status {
                MemoryStatus::Deleted => Some(MemoryEvent::MemoryRestored {}),
                _ => return Err(MemoryError::NotDeleted),
            },
            MemoryCommand::Erase => {
                self.existing()?;
                Some(MemoryEvent::MemoryErased {})
            }
        };
        Ok(event)
    }

    /// Only what differs from the memory is revised.
    fn revise(
        &self,
        content: Option<Content>,
        title: Option<Option<Title>>,
    ) -> Result<Option<MemoryEvent>, MemoryError> {
        let facts = self.active()?;
        if content.is_none() && title.is_none() {
            return Err(MemoryError::EmptyRevision);
        }
        let content = content
            .map(Content::into_inner)
            .filter(|c| *c != facts.content);
        let title = title
            .map(|t| t.map(Title::into_inner))
            .filter(|t| *t != facts.title);
        Ok((content.is_some() || title.is_some())
            .then_some(MemoryEvent::MemoryRevised { content, title }))
    }

    /// Only tags the memory lacks are added, and never beyond the limit.
    fn add_tags(&self, tags: TagSet) -> Result<Option<MemoryEvent>, MemoryError> {
        let facts = self.active()?;
        let added: Vec<String> = tags
            .into_strings()
            .into_iter()
            .filter(|t| !facts.tags.contains(t))
            .collect();
        if facts.tags.len() + added.len() > TagSet::MAX_TAGS {
            return Err(MemoryError::TooManyTags {
                max: TagSet::MAX_TAGS,
            });
        }
        Ok((!added.is_empty()).then_some(MemoryEvent::MemoryTagged { tags: added }))
    }
}

/// Memories go only into sessions that exist, are the caller's, and are open.
fn open_session(target: TargetSession) -> Result<Uuid, MemoryError> {
    match target.status {
        Some(SessionStatus::Open) => Ok(target.id),
        Some(SessionStatus::Ended) => Err(MemoryError::SessionEnded),
        None => Err(MemoryError::SessionNotFound),
    }
}

impl Aggregate for Memory {
    const TYPE: &'static str = event_schema::memory::AGGREGATE_TYPE;
    type Command = MemoryCommand;
    type Event = MemoryRecord;
    type Error = MemoryError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(MemoryRecord(event), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.facts
            .get_or_insert_with(MemoryFacts::default)
            .apply(&event.0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use serde_json::{Map, json};

    type Given = TestFramework<Memory>;

    fn tags(values: &[&str]) -> TagSet {
        let raw: Vec<String> = values.iter().map(|s| (*s).to_owned()).collect();
        TagSet::parse("tags", &raw).unwrap()
    }

    fn content(text: &str) -> Content {
        Content::parse("content", text).unwrap()
    }

    fn metadata(value: serde_json::Value) -> Metadata {
        Metadata::parse("metadata", value.as_object().unwrap().clone()).unwrap()
    }

    fn captured(session_id: Option<Uuid>) -> MemoryRecord {
        MemoryRecord(MemoryEvent::MemoryCaptured {
            content: "milk".to_owned(),
            title: Some("Groceries".to_owned()),
            tags: vec!["errand".to_owned()],
            metadata: Map::new(),
            session_id,
            occurred_at: None,
        })
    }

    fn record(event: MemoryEvent) -> MemoryRecord {
        MemoryRecord(event)
    }

    fn open(id: Uuid) -> TargetSession {
        TargetSession {
            id,
            status: Some(SessionStatus::Open),
        }
    }

    fn capture(session: Option<TargetSession>) -> MemoryCommand {
        MemoryCommand::Capture {
            content: content("milk"),
            title: Some(Title::parse("title", "Groceries").unwrap()),
            tags: tags(&["errand"]),
            metadata: Metadata::default(),
            session,
            occurred_at: None,
        }
    }

    #[test]
    fn capture_records_the_memory() {
        Given::with(())
            .given_no_previous_events()
            .when(capture(None))
            .then_expect_events(vec![captured(None)]);
    }

    #[test]
    fn capture_into_an_open_session() {
        let session = Uuid::now_v7();
        Given::with(())
            .given_no_previous_events()
            .when(capture(Some(open(session))))
            .then_expect_events(vec![captured(Some(session))]);
    }

    #[test]
    fn capture_into_an_ended_or_missing_session_is_refused() {
        let id = Uuid::now_v7();
        Given::with(())
            .given_no_previous_events()
            .when(capture(Some(TargetSession {
                id,
                status: Some(SessionStatus::Ended),
            })))
            .then_expect_error(MemoryError::SessionEnded);
        Given::with(())
            .given_no_previous_events()
            .when(capture(Some(TargetSession { id, status: None })))
            .then_expect_error(MemoryError::SessionNotFound);
    }

    #[test]
    fn capture_twice_is_refused() {
        Given::with(())
            .given(vec![captured(None)])
            .when(capture(None))
            .then_expect_error(MemoryError::AlreadyExists);
    }

    #[test]
    fn revise_changes_content_and_clears_title() {
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::Revise {
                content: Some(content("oat milk")),
                title: Some(None),
            })
            .then_expect_events(vec![record(MemoryEvent::MemoryRevised {
                content: Some("oat milk".to_owned()),
                title: Some(None),
            })]);
    }

    #[test]
    fn revise_to_the_same_text_changes_nothing() {
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::Revise {
                content: Some(content("milk")),
                title: None,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn revise_without_fields_is_refused() {
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::Revise {
                content: None,
                title: None,
            })
            .then_expect_error(MemoryError::EmptyRevision);
    }

    #[test]
    fn revise_of_a_missing_memory_is_not_found() {
        Given::with(())
            .given_no_previous_events()
            .when(MemoryCommand::Revise {
                content: Some(content("x")),
                title: None,
            })
            .then_expect_error(MemoryError::NotFound);
    }

    #[test]
    fn revise_of_a_deleted_memory_is_refused() {
        Given::with(())
            .given(vec![captured(None), record(MemoryEvent::MemoryDeleted {})])
            .when(MemoryCommand::Revise {
                content: Some(content("x")),
                title: None,
            })
            .then_expect_error(MemoryError::Deleted);
    }

    #[test]
    fn add_tags_records_only_new_tags() {
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::AddTags(tags(&["errand", "home"])))
            .then_expect_events(vec![record(MemoryEvent::MemoryTagged {
                tags: vec!["home".to_owned()],
            })]);
    }

    #[test]
    fn add_tags_beyond_the_limit_is_refused() {
        let many: Vec<String> = (0..32).map(|i| format!("t{i}")).collect();
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::AddTags(
                TagSet::parse("tags", &many).unwrap(),
            ))
            .then_expect_error(MemoryError::TooManyTags { max: 32 });
    }

    #[test]
    fn remove_tags_records_only_present_tags() {
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::RemoveTags(tags(&["errand", "absent"])))
            .then_expect_events(vec![record(MemoryEvent::MemoryUntagged {
                tags: vec!["errand".to_owned()],
            })]);
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::RemoveTags(tags(&["absent"])))
            .then_expect_events(vec![]);
    }

    #[test]
    fn set_metadata_replaces_it() {
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::SetMetadata(metadata(
                json!({"source": "chat"}),
            )))
            .then_expect_events(vec![record(MemoryEvent::MemoryMetadataChanged {
                metadata: json!({"source": "chat"}).as_object().unwrap().clone(),
            })]);
    }

    #[test]
    fn move_into_a_session_and_detach() {
        let session = Uuid::now_v7();
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::Move(Some(open(session))))
            .then_expect_events(vec![record(MemoryEvent::MemoryMoved {
                session_id: Some(session),
            })]);
        Given::with(())
            .given(vec![captured(Some(session))])
            .when(MemoryCommand::Move(None))
            .then_expect_events(vec![record(MemoryEvent::MemoryMoved { session_id: None })]);
        Given::with(())
            .given(vec![captured(Some(session))])
            .when(MemoryCommand::Move(Some(open(session))))
            .then_expect_events(vec![]);
    }

    #[test]
    fn delete_and_restore() {
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::Delete)
            .then_expect_events(vec![record(MemoryEvent::MemoryDeleted {})]);
        Given::with(())
            .given(vec![captured(None), record(MemoryEvent::MemoryDeleted {})])
            .when(MemoryCommand::Delete)
            .then_expect_error(MemoryError::Deleted);
        Given::with(())
            .given(vec![captured(None), record(MemoryEvent::MemoryDeleted {})])
            .when(MemoryCommand::Restore)
            .then_expect_events(vec![record(MemoryEvent::MemoryRestored {})]);
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::Restore)
            .then_expect_error(MemoryError::NotDeleted);
    }

    #[test]
    fn erase_works_on_active_and_deleted_memories() {
        Given::with(())
            .given(vec![captured(None)])
            .when(MemoryCommand::Erase)
            .then_expect_events(vec![record(MemoryEvent::MemoryErased {})]);
        Given::with(())
            .given(vec![captured(None), record(MemoryEvent::MemoryDeleted {})])
            .when(MemoryCommand::Erase)
            .then_expect_events(vec![record(MemoryEvent::MemoryErased {})]);
    }

    #[test]
    fn every_command_on_an_erased_memory_is_refused() {
        let erased = vec![captured(None), record(MemoryEvent::MemoryErased {})];
        for command in [
            MemoryCommand::Revise {
                content: Some(content("x")),
                title: None,
            },
            MemoryCommand::AddTags(tags(&["a"])),
            MemoryCommand::RemoveTags(tags(&["a"])),
            MemoryCommand::SetMetadata(Metadata::default()),
            MemoryCommand::Move(None),
            MemoryCommand::Delete,
            MemoryCommand::Restore,
            MemoryCommand::Erase,
        ] {
            Given::with(())
                .given(erased.clone())
                .when(command)
                .then_expect_error(MemoryError::Erased);
        }
    }

    #[test]
    fn the_record_reports_the_schema_type_and_version() {
        let event = captured(None);
        assert_eq!(event.event_type(), "MemoryCaptured");
        assert_eq!(event.event_version(), "2");
        let json = serde_json::to_value(&event).unwrap();
        assert!(json.get("MemoryCaptured").is_some());
    }
}

//! The Session aggregate: a conversation, a working session, a project day.

use crate::domain::{Metadata, Title};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use event_schema::{SessionEvent, SessionFacts, SessionStatus};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionRecord(pub SessionEvent);

impl DomainEvent for SessionRecord {
    fn event_type(&self) -> String {
        self.0.event_type().to_owned()
    }

    fn event_version(&self) -> String {
        self.0.schema_version().to_string()
    }
}

#[derive(Debug, Clone)]
pub enum SessionCommand {
    Start { title: Title, metadata: Metadata },
    Rename(Title),
    End,
    Reopen,
}

impl SessionCommand {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Rename(_) => "rename",
            Self::End => "end",
            Self::Reopen => "reopen",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session already exists")]
    AlreadyExists,
    #[error("the session does not exist")]
    NotFound,
    #[error("the session has already ended")]
    AlreadyEnded,
    #[error("the session is open")]
    NotEnded,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    facts: Option<SessionFacts>,
}

impl Session {
    pub fn status(&self) -> Option<SessionStatus> {
        self.facts.as_ref().map(|f| f.status)
    }

    pub fn decide(&self, command: SessionCommand) -> Result<Option<SessionEvent>, SessionError> {
        if let SessionCommand::Start { title, metadata } = command {
            if self.facts.is_some() {
                return Err(SessionError::AlreadyExists);
            }
            return Ok(Some(SessionEvent::SessionStarted {
                title: title.into_inner(),
                metadata: metadata.into_inner(),
            }));
        }
        let facts = self.facts.as_ref().ok_or(SessionError::NotFound)?;
        let event = match command {
            SessionCommand::Start { .. } => unreachable!("handled above"),
            SessionCommand::Rename(title) => {
                let title = title.into_inner();
                (title != facts.title).then_some(SessionEvent::SessionRenamed { title })
            }
            SessionCommand::End => match facts.status {
                SessionStatus::Open => Some(SessionEvent::SessionEnded {}),
                SessionStatus::Ended => return Err(SessionError::AlreadyEnded),
            },
            SessionCommand::Reopen => match facts.status {
                SessionStatus::Ended => Some(SessionEvent::SessionReopened {}),
                SessionStatus::Open => return Err(SessionError::NotEnded),
            },
        };
        Ok(event)
    }
}

impl Aggregate for Session {
    const TYPE: &'static str = event_schema::session::AGGREGATE_TYPE;
    type Command = SessionCommand;
    type Event = SessionRecord;
    type Error = SessionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(SessionRecord(event), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.facts
            .get_or_insert_with(SessionFacts::default)
            .apply(&event.0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use serde_json::Map;

    type Given = TestFramework<Session>;

    fn title(text: &str) -> Title {
        Title::parse("title", text).unwrap()
    }

    fn started() -> SessionRecord {
        SessionRecord(SessionEvent::SessionStarted {
            title: "Standup".to_owned(),
            metadata: Map::new(),
        })
    }

    fn ended() -> SessionRecord {
        SessionRecord(SessionEvent::SessionEnded {})
    }

    #[test]
    fn start_records_the_session() {
        Given::with(())
            .given_no_previous_events()
            .when(SessionCommand::Start {
                title: title("Standup"),
                metadata: Metadata::default(),
            })
            .then_expect_events(vec![started()]);
    }

    #[test]
    fn start_twice_is_refused() {
        Given::with(())
            .given(vec![started()])
            .when(SessionCommand::Start {
                title: title("Again"),
                metadata: Metadata::default(),
            })
            .then_expect_error(SessionError::AlreadyExists);
    }

    #[test]
    fn rename_changes_the_title_and_same_title_is_a_no_op() {
        Given::with(())
            .given(vec![started()])
            .when(SessionCommand::Rename(title("Retro")))
            .then_expect_events(vec![SessionRecord(SessionEvent::SessionRenamed {
                title: "Retro".to_owned(),
            })]);
        Given::with(())
            .given(vec![started()])
            .when(SessionCommand::Rename(title("Standup")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn commands_on_a_missing_session_are_not_found() {
        for command in [
            SessionCommand::Rename(title("x")),
            SessionCommand::End,
            SessionCommand::Reopen,
        ] {
            Given::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(SessionError::NotFound);
        }
    }

    #[test]
    fn end_and_reopen() {
        Given::with(())
            .given(vec![started()])
            .when(SessionCommand::End)
            .then_expect_events(vec![ended()]);
        Given::with(())
            .given(vec![started(), ended()])
            .when(SessionCommand::End)
            .then_expect_error(SessionError::AlreadyEnded);
        Given::with(())
            .given(vec![started(), ended()])
            .when(SessionCommand::Reopen)
            .then_expect_events(vec![SessionRecord(SessionEvent::SessionReopened {})]);
        Given::with(())
            .given(vec![started()])
            .when(SessionCommand::Reopen)
            .then_expect_error(SessionError::NotEnded);
    }
}

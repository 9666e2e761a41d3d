//! Pure folds from one aggregate's envelopes to its state: the whole history,
//! up to a version, or as of a time.
//!
//! The envelopes must be one aggregate's events in sequence order starting at
//! 1, as the event store returns them for `ORDER BY sequence`. Anything else
//! is a caller bug, reported as a [`FoldError`] rather than a debug assertion:
//! the input comes from storage, release builds would otherwise fold a wrong
//! history silently, and the check costs one comparison per event.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::envelope::EventEnvelope;
use crate::error::FoldError;
use crate::memory::{MemoryEvent, MemoryFacts, MemoryState};
use crate::session::{SessionEvent, SessionFacts, SessionState};

impl MemoryState {
    /// Starts a state from the aggregate's first event (sequence 1).
    pub fn start(first: &EventEnvelope<MemoryEvent>) -> Result<Self, FoldError> {
        check_first(first.sequence)?;
        let mut facts = MemoryFacts::default();
        facts.apply(&first.payload);
        Ok(Self {
            id: first.aggregate_id,
            owner_id: first.metadata.owner_id.clone(),
            facts,
            version: first.sequence,
            created_at: first.recorded_at,
            updated_at: first.recorded_at,
        })
    }

    /// Folds in the next event, which must be this memory's `version + 1`.
    /// A projection holding a state can use this to apply events one by one.
    pub fn apply(&mut self, next: &EventEnvelope<MemoryEvent>) -> Result<(), FoldError> {
        check_next(self.id, self.version, next)?;
        self.facts.apply(&next.payload);
        self.version = next.sequence;
        self.updated_at = next.recorded_at;
        Ok(())
    }
}

impl SessionState {
    /// Starts a state from the aggregate's first event (sequence 1).
    pub fn start(first: &EventEnvelope<SessionEvent>) -> Result<Self, FoldError> {
        check_first(first.sequence)?;
        let mut state = Self {
            id: first.aggregate_id,
            owner_id: first.metadata.owner_id.clone(),
            facts: SessionFacts::default(),
            version: 0,
            started_at: first.recorded_at,
            updated_at: first.recorded_at,
            ended_at: None,
        };
        state.absorb(first);
        Ok(state)
    }

    /// Folds in the next event, which must be this session's `version + 1`.
    pub fn apply(&mut self, next: &EventEnvelope<SessionEvent>) -> Result<(), FoldError> {
        check_next(self.id, self.version, next)?;
        self.absorb(next);
        Ok(())
    }

    fn absorb(&mut self, envelope: &EventEnvelope<SessionEvent>) {
        self.facts.apply(&envelope.payload);
        match envelope.payload {
            SessionEvent::SessionEnded {} => self.ended_at = Some(envelope.recorded_at),
            SessionEvent::SessionReopened {} => self.ended_at = None,
            SessionEvent::SessionStarted { .. } | SessionEvent::SessionRenamed { .. } => {}
        }
        self.version = envelope.sequence;
        self.updated_at = envelope.recorded_at;
    }
}

fn check_first(sequence: u64) -> Result<(), FoldError> {
    if sequence == 1 {
        Ok(())
    } else {
        Err(FoldError::OutOfSequence {
            expected: 1,
            found: sequence,
        })
    }
}

fn check_next<E>(id: Uuid, version: u64, next: &EventEnvelope<E>) -> Result<(), FoldError> {
    if next.aggregate_id != id {
        return Err(FoldError::MixedAggregates {
            expected: id,
            found: next.aggregate_id,
        });
    }
    if next.sequence != version + 1 {
        return Err(FoldError::OutOfSequence {
            expected: version + 1,
            found: next.sequence,
        });
    }
    Ok(())
}

/// The fold shared by all six entry points: validates every envelope it looks
/// at, and stops before the first one `past_cutoff` (so the result is always a
/// prefix of the history, even if clocks made `recorded_at` go backwards).
fn fold<'a, E: 'a, S>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<E>>,
    past_cutoff: impl Fn(&EventEnvelope<E>) -> bool,
    start: impl FnOnce(&EventEnvelope<E>) -> Result<S, FoldError>,
    mut apply: impl FnMut(&mut S, &EventEnvelope<E>) -> Result<(), FoldError>,
    version: impl Fn(&S) -> (Uuid, u64),
) -> Result<Option<S>, FoldError> {
    let mut envelopes = envelopes.into_iter();
    let Some(first) = envelopes.next() else {
        return Ok(None);
    };
    check_first(first.sequence)?;
    if past_cutoff(first) {
        return Ok(None);
    }
    let mut state = start(first)?;
    for next in envelopes {
        let (id, at) = version(&state);
        check_next(id, at, next)?;
        if past_cutoff(next) {
            break;
        }
        apply(&mut state, next)?;
    }
    Ok(Some(state))
}

/// The memory after all its events; `None` for an empty stream.
pub fn fold_memory<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<MemoryEvent>>,
) -> Result<Option<MemoryState>, FoldError> {
    fold_memory_where(envelopes, |_| false)
}

/// The memory as it was at `version` (the events with `sequence <= version`);
/// `None` for version 0. Asking beyond the last event gives the latest state.
pub fn fold_memory_until_version<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<MemoryEvent>>,
    version: u64,
) -> Result<Option<MemoryState>, FoldError> {
    fold_memory_where(envelopes, |e| e.sequence > version)
}

/// The memory as it was at `at` (the events with `recorded_at <= at`);
/// `None` if it did not exist yet.
pub fn fold_memory_as_of<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<MemoryEvent>>,
    at: DateTime<Utc>,
) -> Result<Option<MemoryState>, FoldError> {
    fold_memory_where(envelopes, |e| e.recorded_at > at)
}

/// The memory after the events at or below `version` that were recorded at
/// or before `at`: both bounds apply, either may be absent, and with neither
/// it is the memory now. `None` if it did not exist yet.
pub fn fold_memory_at<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<MemoryEvent>>,
    version: Option<u64>,
    at: Option<DateTime<Utc>>,
) -> Result<Option<MemoryState>, FoldError> {
    fold_memory_where(envelopes, |e| {
        version.is_some_and(|v| e.sequence > v) || at.is_some_and(|t| e.recorded_at > t)
    })
}

fn fold_memory_where<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<MemoryEvent>>,
    past_cutoff: impl Fn(&EventEnvelope<MemoryEvent>) -> bool,
) -> Result<Option<MemoryState>, FoldError> {
    fold(
        envelopes,
        past_cutoff,
        MemoryState::start,
        MemoryState::apply,
        |s| (s.id, s.version),
    )
}

/// The session after all its events; `None` for an empty stream.
pub fn fold_session<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<SessionEvent>>,
) -> Result<Option<SessionState>, FoldError> {
    fold_session_where(envelopes, |_| false)
}

/// The session as it was at `version`; `None` for version 0.
pub fn fold_session_until_version<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<SessionEvent>>,
    version: u64,
) -> Result<Option<SessionState>, FoldError> {
    fold_session_where(envelopes, |e| e.sequence > version)
}

/// The session as it was at `at`; `None` if it had not started yet.
pub fn fold_session_as_of<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<SessionEvent>>,
    at: DateTime<Utc>,
) -> Result<Option<SessionState>, FoldError> {
    fold_session_where(envelopes, |e| e.recorded_at > at)
}

/// The session after the events at or below `version` that were recorded at
/// or before `at`, as [`fold_memory_at`].
pub fn fold_session_at<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<SessionEvent>>,
    version: Option<u64>,
    at: Option<DateTime<Utc>>,
) -> Result<Option<SessionState>, FoldError> {
    fold_session_where(envelopes, |e| {
        version.is_some_and(|v| e.sequence > v) || at.is_some_and(|t| e.recorded_at > t)
    })
}

fn fold_session_where<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope<SessionEvent>>,
    past_cutoff: impl Fn(&EventEnvelope<SessionEvent>) -> bool,
) -> Result<Option<SessionState>, FoldError> {
    fold(
        envelopes,
        past_cutoff,
        SessionState::start,
        SessionState::apply,
        |s| (s.id, s.version),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeDelta;
    use serde_json::Map;

    use super::*;
    use crate::envelope::EventMetadata;
    use crate::memory::MemoryStatus;
    use crate::session::SessionStatus;

    const MEMORY: Uuid = Uuid::from_u128(0xA);

    fn t(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + TimeDelta::minutes(minute)
    }

    /// Envelopes for `events`, with sequences from 1 and one minute apart.
    fn stream<E: crate::envelope::Event + Clone>(id: Uuid, events: &[E]) -> Vec<EventEnvelope<E>> {
        events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let n = i as u64 + 1;
                let kind = event.kind();
                EventEnvelope {
                    event_id: Uuid::from_u128(u128::from(n)),
                    aggregate_type: kind.aggregate_type.to_owned(),
                    aggregate_id: id,
                    sequence: n,
                    global_position: 100 + n as i64,
                    event_type: kind.event_type.to_owned(),
                    schema_version: kind.schema_version,
                    recorded_at: t(n as i64),
                    metadata: EventMetadata::new(format!("owner-{n}"), "corr"),
                    payload: event.clone(),
                }
            })
            .collect()
    }

    fn captured(content: &str) -> MemoryEvent {
        MemoryEvent::MemoryCaptured {
            content: content.to_owned(),
            title: Some("title".to_owned()),
            tags: vec!["a".to_owned()],
            metadata: Map::new(),
            session_id: None,
            occurred_at: None,
        }
    }

    fn revised(content: &str) -> MemoryEvent {
        MemoryEvent::MemoryRevised {
            content: Some(content.to_owned()),
            title: None,
        }
    }

    #[test]
    fn an_empty_stream_folds_to_nothing() {
        assert_eq!(fold_memory([]), Ok(None));
        assert_eq!(fold_session([]), Ok(None));
    }

    #[test]
    fn the_fold_takes_owner_and_creation_from_the_first_event_and_version_from_the_last() {
        let events = stream(MEMORY, &[captured("one"), revised("two"), revised("three")]);
        let state = fold_memory(&events).unwrap().unwrap();
        assert_eq!(state.id, MEMORY);
        assert_eq!(state.owner_id, "owner-1");
        assert_eq!(state.version, 3);
        assert_eq!(state.created_at, t(1));
        assert_eq!(state.updated_at, t(3));
        assert_eq!(state.facts.content, "three");
        assert_eq!(state.facts.title.as_deref(), Some("title"));
    }

    #[test]
    fn folding_until_a_version_stops_there() {
        let events = stream(MEMORY, &[captured("one"), revised("two"), revised("three")]);
        let state = fold_memory_until_version(&events, 2).unwrap().unwrap();
        assert_eq!((state.version, state.facts.content.as_str()), (2, "two"));
        assert_eq!(state.updated_at, t(2));
        assert_eq!(fold_memory_until_version(&events, 0), Ok(None));
        let latest = fold_memory_until_version(&events, 99).unwrap().unwrap();
        assert_eq!(latest.version, 3);
    }

    #[test]
    fn folding_as_of_a_time_includes_events_recorded_at_that_instant() {
        let events = stream(MEMORY, &[captured("one"), revised("two"), revised("three")]);
        let state = fold_memory_as_of(&events, t(2)).unwrap().unwrap();
        assert_eq!((state.version, state.facts.content.as_str()), (2, "two"));
        let between = fold_memory_as_of(&events, t(2) + TimeDelta::seconds(30)).unwrap();
        assert_eq!(between.unwrap().version, 2);
        assert_eq!(fold_memory_as_of(&events, t(0)), Ok(None));
    }

    #[test]
    fn an_erased_memory_folds_to_an_empty_erased_state() {
        let events = stream(MEMORY, &[captured("private"), MemoryEvent::MemoryErased {}]);
        let state = fold_memory(&events).unwrap().unwrap();
        assert_eq!(state.facts.status, MemoryStatus::Erased);
        assert_eq!(
            state.facts,
            MemoryFacts {
                status: MemoryStatus::Erased,
                ..MemoryFacts::default()
            }
        );
        assert_eq!(state.version, 2);
    }

    #[test]
    fn a_stream_not_starting_at_one_or_with_a_gap_is_an_error() {
        let mut events = stream(MEMORY, &[captured("one"), revised("two"), revised("three")]);
        assert_eq!(
            fold_memory(&events[1..]),
            Err(FoldError::OutOfSequence {
                expected: 1,
                found: 2
            })
        );
        events.swap(1, 2);
        assert_eq!(
            fold_memory(&events),
            Err(FoldError::OutOfSequence {
                expected: 2,
                found: 3
            })
        );
        // The check runs even where the cutoff would have hidden the problem.
        assert_eq!(
            fold_memory_until_version(&events, 2),
            Err(FoldError::OutOfSequence {
                expected: 2,
                found: 3
            })
        );
    }

    #[test]
    fn a_stream_mixing_two_memories_is_an_error() {
        let mut events = stream(MEMORY, &[captured("one"), revised("two")]);
        events[1].aggregate_id = Uuid::from_u128(0xB);
        assert_eq!(
            fold_memory(&events),
            Err(FoldError::MixedAggregates {
                expected: MEMORY,
                found: Uuid::from_u128(0xB)
            })
        );
    }

    #[test]
    fn a_held_state_applies_only_its_next_event() {
        let events = stream(MEMORY, &[captured("one"), revised("two"), revised("three")]);
        let mut state = MemoryState::start(&events[0]).unwrap();
        assert_eq!(
            state.apply(&events[2]),
            Err(FoldError::OutOfSequence {
                expected: 2,
                found: 3
            })
        );
        state.apply(&events[1]).unwrap();
        state.apply(&events[2]).unwrap();
        assert_eq!(Some(state), fold_memory(&events).unwrap());
    }

    #[test]
    fn a_session_records_when_it_ended_and_forgets_it_when_reopened() {
        let id = Uuid::from_u128(0xC);
        let events = stream(
            id,
            &[
                SessionEvent::SessionStarted {
                    title: "day".to_owned(),
                    metadata: Map::new(),
                },
                SessionEvent::SessionEnded {},
                SessionEvent::SessionRenamed {
                    title: "long day".to_owned(),
                },
                SessionEvent::SessionReopened {},
            ],
        );
        let ended = fold_session_until_version(&events, 3).unwrap().unwrap();
        assert_eq!(ended.facts.status, SessionStatus::Ended);
        assert_eq!(ended.ended_at, Some(t(2)));
        assert_eq!(ended.facts.title, "long day");
        assert_eq!(ended.started_at, t(1));
        assert_eq!(ended.updated_at, t(3));

        let reopened = fold_session(&events).unwrap().unwrap();
        assert_eq!(reopened.facts.status, SessionStatus::Open);
        assert_eq!(reopened.ended_at, None);
        assert_eq!(reopened.version, 4);
        assert_eq!(reopened.owner_id, "owner-1");

        let as_of = fold_session_as_of(&events, t(1)).unwrap().unwrap();
        assert_eq!((as_of.version, as_of.ended_at), (1, None));
    }
}

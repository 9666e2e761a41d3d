//! Projections: each turns the event stream into one read model, and each is
//! idempotent and order-safe on its own. Every row or document keeps the
//! sequence of the last event of its aggregate it reflects, so:
//!
//! - sequence ≤ stored: a duplicate, skipped;
//! - sequence = stored + 1: applied;
//! - sequence > stored + 1: a gap, filled from the event store first.
//!
//! The new state is always computed with `event_schema`'s fold, the same code
//! the history and `verify` use, so a read model equals the fold of the store.

pub mod documents;
pub mod search;

use crate::redact::Redactor;
use crate::source::EventSource;
use event_schema::{
    EventEnvelope, MemoryEvent, MemoryState, SessionEvent, SessionState, StoredEvent,
};

/// Why a batch could not be applied. The consumer settles each kind its own
/// way (see [`crate::broker`]): poison is dead-lettered at once, a transient
/// failure is an attempt that counts towards `SB_PROJECTOR_MAX_ATTEMPTS`, an
/// unavailable dependency is waited for without counting, fatal stops.
#[derive(Debug)]
pub enum ProjectionError {
    /// This event cannot be applied, and trying again will not change that.
    Poison(Cause),
    /// The attempt failed while applying (a statement failed, the database
    /// connection dropped, Redis refused a write); trying again may pass, but
    /// an event that fails this way every time is parked after the last try.
    Transient(Cause),
    /// A dependency could not be reached, so the event was not really tried
    /// (no database connection to be had, the embedding provider down or
    /// rate-limiting): wait for it, however long, and count nothing.
    Unavailable(Cause),
    /// The projector is misconfigured for this read model; it must stop.
    Fatal(Cause),
}

/// What a [`ProjectionError`] says, and the error it came from.
///
/// The message is rendered when the error is made (with the source's causes
/// spelled out), because it is what gets redacted: a source's own text may
/// quote memory text, so [`ProjectionError::redacted`] keeps only the
/// redacted message and lets the source go. Until then the source is there
/// to be inspected (`std::error::Error::source`) and chained by `anyhow`.
#[derive(Debug)]
pub struct Cause {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Cause {
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self {
            message,
            source: None,
        }
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::fmt::Display for ProjectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Poison(c) => write!(f, "unprocessable event: {c}"),
            Self::Transient(c) => write!(f, "transient failure: {c}"),
            Self::Unavailable(c) => write!(f, "dependency unavailable: {c}"),
            Self::Fatal(c) => write!(f, "{c}"),
        }
    }
}

impl std::error::Error for ProjectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source = self.cause().source.as_deref()?;
        Some(source)
    }
}

impl ProjectionError {
    /// The kind as a short stable word: dead-letter headers and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Poison(_) => "poison",
            Self::Transient(_) => "transient",
            Self::Unavailable(_) => "unavailable",
            Self::Fatal(_) => "fatal",
        }
    }

    pub fn cause(&self) -> &Cause {
        match self {
            Self::Poison(c) | Self::Transient(c) | Self::Unavailable(c) | Self::Fatal(c) => c,
        }
    }

    /// The message without the kind's prefix.
    pub fn message(&self) -> &str {
        self.cause().message()
    }

    /// The same error with `redactor`'s texts taken out of its message,
    /// before it is logged, counted in the ledger or put on a dead letter;
    /// its source goes (see [`Cause`]).
    #[must_use]
    pub fn redacted(self, redactor: &Redactor) -> Self {
        let redact = |c: Cause| Cause::from(redactor.redact(&c.message));
        match self {
            Self::Poison(c) => Self::Poison(redact(c)),
            Self::Transient(c) => Self::Transient(redact(c)),
            Self::Unavailable(c) => Self::Unavailable(redact(c)),
            Self::Fatal(c) => Self::Fatal(redact(c)),
        }
    }
}

impl From<sqlx::Error> for ProjectionError {
    fn from(error: sqlx::Error) -> Self {
        let text = format!("database: {}", sqlx_text(&error));
        let unavailable = match &error {
            // No connection could be had: the event was never sent.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
            // Out of connections, memory or disk (class 53), or the server
            // still starting up (57P03): nothing about this event.
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("53") || code == "57P03"),
            // A connection that drops during the event (I/O error, or 57P01
            // "terminating connection" from a restart or a crash) counts as
            // an attempt: an event that kills its connection every time is
            // poison, and the consumer only tries once the database answers.
            _ => false,
        };
        let cause = Cause::with_source(text, error);
        if unavailable {
            Self::Unavailable(cause)
        } else {
            Self::Transient(cause)
        }
    }
}

impl From<redis::RedisError> for ProjectionError {
    fn from(error: redis::RedisError) -> Self {
        let text = format!("redis: {}", with_causes(&error));
        let refused = error.is_connection_refusal();
        let cause = Cause::with_source(text, error);
        if refused {
            Self::Unavailable(cause)
        } else {
            Self::Transient(cause)
        }
    }
}

/// A database error with its SQLSTATE (the error's kind, stable across
/// server languages) and its causes.
fn sqlx_text(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => format!(
            "error {} from the database: {}",
            db.code().as_deref().unwrap_or("?????"),
            db.message()
        ),
        other => with_causes(other),
    }
}

/// `error`, then each cause not already spelled out in the text before it.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub applied: u64,
    pub duplicates: u64,
    /// Events read from the event store to fill gaps.
    pub gap_filled: u64,
}

impl Applied {
    pub fn add(&mut self, other: Applied) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.gap_filled += other.gap_filled;
    }
}

/// One read model, fed events in delivery order.
#[async_trait::async_trait]
pub trait Projection: Send + Sync + std::fmt::Debug {
    /// A short, stable name: queue suffix and metric label.
    fn name(&self) -> &'static str;

    /// Applies `events` in order; duplicates are skipped, gaps filled.
    async fn apply(&self, events: &[StoredEvent]) -> Result<Applied, ProjectionError>;

    /// Readies what applying `events` will need without changing the read
    /// model, while the batch before them is still being applied: the search
    /// projection embeds their texts into the embedding cache, so their own
    /// `apply` only writes. It may run ahead of parks, duplicates and
    /// failures that `apply` will meet; whatever it does must be harmless
    /// then, and its errors are met again (and settled) by `apply`.
    async fn prepare(&self, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        let _ = events;
        Ok(())
    }
}

/// Events of one aggregate to fold onto a state at `version`, gaps filled from
/// the store. Returns the events to apply, in order, or none for a duplicate.
pub(crate) async fn pending(
    source: &EventSource,
    version: u64,
    event: &StoredEvent,
    applied: &mut Applied,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    let sequence = u64::try_from(event.sequence).map_err(|_| poison(event, "negative sequence"))?;
    if sequence <= version {
        applied.duplicates += 1;
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    if sequence > version + 1 {
        let missing = source
            .between(
                &event.aggregate_type,
                &event.aggregate_id,
                version as i64,
                event.sequence,
            )
            .await?;
        let expected = sequence - version - 1;
        if missing.len() as u64 != expected {
            // The store must hold every earlier event of an event it published.
            return Err(poison(
                event,
                &format!(
                    "the store has {} of the {expected} earlier events",
                    missing.len()
                ),
            ));
        }
        applied.gap_filled += expected;
        events.extend(missing);
    }
    events.push(event.clone());
    applied.applied += 1;
    Ok(events)
}

pub(crate) fn poison(event: &StoredEvent, why: &str) -> ProjectionError {
    ProjectionError::Poison(where_in(event, why).into())
}

/// [`poison`] because of `error`, which it keeps as its source.
fn poison_by(
    event: &StoredEvent,
    error: impl std::error::Error + Send + Sync + 'static,
) -> ProjectionError {
    ProjectionError::Poison(Cause::with_source(
        where_in(event, &error.to_string()),
        error,
    ))
}

fn where_in(event: &StoredEvent, why: &str) -> String {
    format!(
        "{} {} #{} ({}): {why}",
        event.aggregate_type, event.aggregate_id, event.sequence, event.event_id
    )
}

fn decode<E: event_schema::Event>(
    event: &StoredEvent,
) -> Result<EventEnvelope<E>, ProjectionError> {
    event.clone().decode::<E>().map_err(|e| poison_by(event, e))
}

/// Folds `events` onto a memory state (`None` before its first event).
pub(crate) fn fold_memory(
    mut state: Option<MemoryState>,
    events: &[StoredEvent],
) -> Result<Option<MemoryState>, ProjectionError> {
    for event in events {
        let envelope = decode::<MemoryEvent>(event)?;
        match &mut state {
            None => state = Some(MemoryState::start(&envelope).map_err(|e| poison_by(event, e))?),
            Some(current) => current.apply(&envelope).map_err(|e| poison_by(event, e))?,
        }
    }
    Ok(state)
}

/// Folds `events` onto a session state.
pub(crate) fn fold_session(
    mut state: Option<SessionState>,
    events: &[StoredEvent],
) -> Result<Option<SessionState>, ProjectionError> {
    for event in events {
        let envelope = decode::<SessionEvent>(event)?;
        match &mut state {
            None => state = Some(SessionState::start(&envelope).map_err(|e| poison_by(event, e))?),
            Some(current) => current.apply(&envelope).map_err(|e| poison_by(event, e))?,
        }
    }
    Ok(state)
}

/// The text a memory is embedded from: its title, if any, then its content.
pub fn embedding_text(state: &MemoryState) -> String {
    match &state.facts.title {
        Some(title) => format!("{title}\n\n{}", state.facts.content),
        None => state.facts.content.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_error_keeps_its_source_until_it_is_redacted() {
        let error = ProjectionError::from(sqlx::Error::PoolTimedOut);
        assert_eq!(error.kind(), "unavailable");
        assert!(
            error
                .source()
                .and_then(|s| s.downcast_ref::<sqlx::Error>())
                .is_some_and(|s| matches!(s, sqlx::Error::PoolTimedOut))
        );
        assert!(error.message().contains("timed out"), "{error}");

        let redacted = error.redacted(&Redactor::default().with(["timed".to_owned()]));
        assert_eq!(redacted.kind(), "unavailable");
        assert!(redacted.message().contains(crate::redact::REDACTED));
        assert!(!redacted.message().contains("timed"));
        // The source's own text is not redacted, so it goes.
        assert!(redacted.source().is_none());
    }
}

//! Running a command against the event store: load the aggregate, check its
//! owner and the client's expected version, decide, append — with idempotency
//! keys and retries on concurrent appends.
//!
//! The append itself is postgres-es's: one transaction, and a unique violation
//! on `(aggregate_type, aggregate_id, sequence)` when another writer got there
//! first. The idempotency key rides in the event's metadata and is unique per
//! owner (see the migration), so the record of a command and its effect are
//! one row, committed or not together.
//!
//! A connection that dies under a command (a Postgres restart kills them all)
//! costs the client nothing when Postgres is back (`service_kit::pg`): reads
//! run again once on a fresh connection, and so does the append, in the one way
//! that is safe when its outcome is unknown; see [`EventStore::append`].

use crate::memory::Memory;
use crate::session::Session;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    EventStoreAggregateContext, EventUpcaster, PersistedEventStore, SerializedEvent,
};
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventStore as _};
use event_schema::envelope::keys;
use event_schema::{EventMetadata, SessionStatus};
use postgres_es::PostgresEventRepository;
use rand::Rng;
use service_kit::auth::UserId;
use service_kit::http::RequestContext;
use service_kit::pg;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// How often a command without `If-Match` is re-run after losing a race on
/// its aggregate before the client is told to retry. Contention on one memory
/// is rare and short; this bounds the work of a pathological hot spot.
const MAX_ATTEMPTS: u32 = 64;

/// What the client asked for beyond the command itself.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    pub caller: UserId,
    pub request: RequestContext,
    /// The version the client read (`If-Match`); a different current version
    /// refuses the command.
    pub expected_version: Option<u64>,
    pub idempotency: Option<Idempotency>,
    /// The status a successful command answers with, stored so a replay
    /// answers the same.
    pub success_status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    /// SHA-256 of the method, route, target id and body.
    pub request_hash: String,
}

/// A command that was carried out (or had been, for a replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub aggregate_id: Uuid,
    pub version: u64,
    pub status: u16,
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    #[error(transparent)]
    Domain(E),
    /// Missing, or another user's: the two answer alike so ids leak nothing.
    #[error("not found")]
    NotFound,
    #[error("expected version {expected}, current version is {current}")]
    VersionMismatch { expected: u64, current: u64 },
    #[error("the idempotency key was used for a different request")]
    IdempotencyKeyReused,
    #[error("too many concurrent writes to one aggregate")]
    Contention,
    /// The database cannot be reached, or dropped the connection twice.
    #[error("event store unavailable: {0}")]
    Unavailable(#[source] StoreFailure),
    #[error("event store failure: {0}")]
    Store(#[source] StoreFailure),
}

/// Why the event store failed a command, with its cause kept for the log.
/// Each variant displays as its cause does, so the logged text is the
/// cause's own.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// postgres-es's error, boxed as postgres-es boxes it.
    #[error(transparent)]
    EventStore(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A conflict where none can be handled (cqrs-es's own words).
    #[error("aggregate conflict")]
    Conflict,
    /// A recorded idempotency key names an aggregate id that is not a UUID.
    #[error(transparent)]
    AggregateId(#[from] uuid::Error),
}

/// Runs old event payloads through the schema's upcasters as they are read.
struct SchemaUpcaster;

impl EventUpcaster for SchemaUpcaster {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        // The aggregate type is not passed here; event type names are unique
        // across aggregates, so either aggregate's table answers.
        [Memory::TYPE, Session::TYPE]
            .iter()
            .any(|aggregate| event_schema::needs_upcast(aggregate, event_type, event_version))
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        let payload = std::mem::take(&mut event.payload);
        match event_schema::upcast(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            payload.clone(),
        ) {
            Ok((version, upcast)) => {
                event.event_version = version;
                event.payload = upcast;
            }
            Err(error) => {
                // Left as stored: deserialising it then fails with a clear error.
                tracing::error!(%error, event_type = %event.event_type, "upcast failed");
                event.payload = payload;
            }
        }
        event
    }
}

type Store<A> = PersistedEventStore<PostgresEventRepository, A>;

fn store<A: Aggregate>(pool: &PgPool) -> Store<A> {
    PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()))
        .with_upcasters(vec![Box::new(SchemaUpcaster)])
}

/// The event store as the command handlers use it.
pub struct EventStore {
    pool: PgPool,
    memories: Store<Memory>,
    sessions: Store<Session>,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore").finish_non_exhaustive()
    }
}

/// The aggregates this store runs commands for.
pub trait Decides: Aggregate<Services = ()> {
    fn store(events: &EventStore) -> &Store<Self>;
}

impl Decides for Memory {
    fn store(events: &EventStore) -> &Store<Self> {
        &events.memories
    }
}

impl Decides for Session {
    fn store(events: &EventStore) -> &Store<Self> {
        &events.sessions
    }
}

/// How one attempt at a command ended, when it did not fail.
enum Attempt {
    Done(Accepted),
    /// Another command appended first; decide again on the new state.
    LostRace,
}

/// Refuses a command on another user's aggregate, on a missing one (unless
/// the command creates it), or on a version other than the client read.
fn admit<A: Decides>(
    loaded: &Loaded<A>,
    creates: bool,
    meta: &CommandMeta,
) -> Result<(), CommandError<A::Error>> {
    match &loaded.owner {
        Some(owner) if owner != meta.caller.as_str() => return Err(CommandError::NotFound),
        None if !creates => return Err(CommandError::NotFound),
        _ => {}
    }
    match meta.expected_version {
        Some(expected) if expected != loaded.version => Err(CommandError::VersionMismatch {
            expected,
            current: loaded.version,
        }),
        _ => Ok(()),
    }
}

/// An aggregate as loaded for one attempt.
struct Loaded<A: Aggregate> {
    aggregate: A,
    version: u64,
    owner: Option<String>,
}

impl EventStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            memories: store(&pool),
            sessions: store(&pool),
            pool,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Loads aggregate `id`, again on a fresh connection if the first one
    /// was dead: a read may run twice.
    async fn load<A: Decides>(&self, id: Uuid) -> Result<Loaded<A>, AggregateError<A::Error>> {
        match self.load_once::<A>(id).await {
            Err(error) if connection_lost(&error) => {
                tracing::warn!(%error, "database connection lost; loading again on a new one");
                pg::before_retry(&self.pool);
                self.load_once::<A>(id).await
            }
            other => other,
        }
    }

    async fn load_once<A: Decides>(&self, id: Uuid) -> Result<Loaded<A>, AggregateError<A::Error>> {
        let envelopes = A::store(self).load_events(&id.to_string()).await?;
        let owner = envelopes
            .first()
            .and_then(|first| first.metadata.get(keys::OWNER_ID).cloned());
        let mut aggregate = A::default();
        let mut version = 0;
        for envelope in envelopes {
            version = envelope.sequence as u64;
            aggregate.apply(envelope.payload);
        }
        Ok(Loaded {
            aggregate,
            version,
            owner,
        })
    }

    /// The status of the caller's session `id`; `None` when it does not
    /// exist or is someone else's.
    pub async fn session_status(
        &self,
        caller: &UserId,
        id: Uuid,
    ) -> Result<Option<SessionStatus>, CommandError<<Session as Aggregate>::Error>> {
        let loaded = self.load::<Session>(id).await.map_err(store_error)?;
        if loaded.owner.as_deref() != Some(caller.as_str()) {
            return Ok(None);
        }
        Ok(loaded.aggregate.status())
    }

    /// The first result of an idempotency key, if it has one: stored as
    /// sent, or as [`redacted_idempotency_key`] once its memory was erased.
    async fn recorded(
        &self,
        caller: &UserId,
        idempotency: &Idempotency,
    ) -> Result<Option<Accepted>, CommandError<std::convert::Infallible>> {
        let row: Option<(String, i64, Option<String>, Option<String>)> =
            pg::retry_once(&self.pool, || {
                sqlx::query_as(
                    "SELECT aggregate_id, sequence, metadata ->> 'request_hash', metadata ->> 'response_status'
                       FROM events
                      WHERE metadata ? 'idempotency_key'
                        AND metadata ->> 'owner_id' = $1
                        AND metadata ->> 'idempotency_key' IN ($2, $3)",
                )
                .bind(caller.as_str())
                .bind(&idempotency.key)
                .bind(redacted_idempotency_key(&idempotency.key))
                .fetch_optional(&self.pool)
            })
            .await
            .map_err(sqlx_error)?;
        let Some((aggregate_id, sequence, hash, status)) = row else {
            return Ok(None);
        };
        // Erasure removes the hash of earlier requests; the key still stands
        // for its first result.
        if hash.is_some_and(|hash| hash != idempotency.request_hash) {
            return Err(CommandError::IdempotencyKeyReused);
        }
        let aggregate_id =
            Uuid::parse_str(&aggregate_id).map_err(|e| CommandError::Store(e.into()))?;
        Ok(Some(Accepted {
            aggregate_id,
            version: sequence as u64,
            status: status.and_then(|s| s.parse().ok()).unwrap_or(200),
            replayed: true,
        }))
    }

    /// The first answer to this request's idempotency key, if it has one.
    async fn replay<E: std::error::Error>(
        &self,
        meta: &CommandMeta,
    ) -> Result<Option<Accepted>, CommandError<E>> {
        match &meta.idempotency {
            Some(idempotency) => self
                .recorded(&meta.caller, idempotency)
                .await
                .map_err(widen),
            None => Ok(None),
        }
    }

    /// Runs `command` on aggregate `id`. `creates` marks a command that
    /// brings the aggregate into being, which is the only kind allowed on an
    /// empty stream (the others answer not found, never the aggregate's own
    /// "does not exist", so missing and foreign ids look alike).
    // No `err`: a missing aggregate or a refused command is an answer, not a
    // failure; store failures are logged where they become a problem (http::error).
    #[tracing::instrument(skip_all, fields(aggregate = A::TYPE, aggregate_id = %id))]
    pub async fn execute<A>(
        &self,
        id: Uuid,
        command: A::Command,
        creates: bool,
        meta: &CommandMeta,
    ) -> Result<Accepted, CommandError<A::Error>>
    where
        A: Decides,
        A::Command: Clone,
        A::Error: Clone,
    {
        if let Some(first) = self.replay(meta).await? {
            return Ok(first);
        }
        let metadata = event_metadata(meta);
        for attempt in 0..MAX_ATTEMPTS {
            // A creation's first attempt targets a fresh server-made id, whose
            // stream is empty: skip the read. Should the id exist after all,
            // the append conflicts and the retry loads it.
            let loaded = if creates && attempt == 0 {
                Loaded {
                    aggregate: A::default(),
                    version: 0,
                    owner: None,
                }
            } else {
                self.load::<A>(id).await.map_err(store_error)?
            };
            admit(&loaded, creates, meta)?;
            match self
                .decide_and_append(id, loaded, command.clone(), meta, &metadata)
                .await?
            {
                Attempt::Done(accepted) => return Ok(accepted),
                Attempt::LostRace => {
                    tracing::debug!(attempt, "append lost a race; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Err(CommandError::Contention)
    }

    /// Decides `command` on the loaded aggregate and appends what it
    /// decided; a lost race is for the caller to run again.
    async fn decide_and_append<A: Decides>(
        &self,
        id: Uuid,
        loaded: Loaded<A>,
        command: A::Command,
        meta: &CommandMeta,
        metadata: &HashMap<String, String>,
    ) -> Result<Attempt, CommandError<A::Error>> {
        let mut aggregate = loaded.aggregate;
        let sink = EventSink::default();
        aggregate
            .handle(command, &(), &sink)
            .await
            .map_err(CommandError::Domain)?;
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok(Attempt::Done(Accepted {
                aggregate_id: id,
                version: loaded.version,
                status: 200,
                replayed: false,
            }));
        }
        // The idempotency index keys one event per command.
        debug_assert_eq!(events.len(), 1, "a command appends at most one event");
        let event_types: Vec<String> = events.iter().map(DomainEvent::event_type).collect();
        let count = events.len() as u64;
        match self.append::<A>(id, loaded.version, events, metadata).await {
            Ok(()) => {
                for event_type in event_types {
                    metrics::counter!("events_appended_total", "aggregate" => A::TYPE, "event_type" => event_type)
                        .increment(1);
                }
                Ok(Attempt::Done(Accepted {
                    aggregate_id: id,
                    version: loaded.version + count,
                    status: meta.success_status,
                    replayed: false,
                }))
            }
            Err(AggregateError::AggregateConflict) => self.after_conflict::<A>(id, meta).await,
            Err(other) => Err(store_error(other)),
        }
    }

    /// After an append lost to another: either another command appended
    /// first, or a duplicate of this request (same idempotency key) did.
    async fn after_conflict<A: Decides>(
        &self,
        id: Uuid,
        meta: &CommandMeta,
    ) -> Result<Attempt, CommandError<A::Error>> {
        if let Some(first) = self.replay(meta).await? {
            return Ok(Attempt::Done(first));
        }
        if let Some(expected) = meta.expected_version {
            let current = self.load::<A>(id).await.map_err(store_error)?.version;
            return Err(CommandError::VersionMismatch { expected, current });
        }
        Ok(Attempt::LostRace)
    }

    /// Appends `events` to aggregate `id` after `version`, in one transaction.
    ///
    /// When the connection dies on the way (a Postgres restart), the outcome
    /// may be unknown: the transaction may have been lost before `COMMIT`, or
    /// committed with the answer lost. Deciding the command again would be
    /// wrong in the second case (a second "add tag", a second creation on a
    /// fresh id), so the very same events are appended again, once, on a
    /// fresh connection, at the very same sequence:
    /// - nothing was committed: the append succeeds now, once;
    /// - the first append committed: the sequence is taken, the append is
    ///   refused as a conflict, and the events at that sequence are ours
    ///   (same type, payload and metadata, request id included), so the command
    ///   succeeded: it answers as such and nothing is written twice;
    /// - another writer took the sequence: a plain conflict, which the caller
    ///   handles as any other (an idempotency key is looked up, `If-Match` is
    ///   refused, otherwise the command is decided again on the new state).
    ///
    /// A server that outlives its client's connection may still be committing
    /// the first append when the second runs; the sequence's primary key makes
    /// one of the two lose, and the rule above still holds.
    async fn append<A: Decides>(
        &self,
        id: Uuid,
        version: u64,
        events: Vec<A::Event>,
        metadata: &HashMap<String, String>,
    ) -> Result<(), AggregateError<A::Error>> {
        match A::store(self)
            .commit(events.clone(), after::<A>(id, version), metadata.clone())
            .await
        {
            Err(error) if connection_lost(&error) => {
                tracing::warn!(%error, "database connection lost during an append; appending the same events again");
                pg::before_retry(&self.pool);
            }
            other => return other.map(drop),
        }
        match A::store(self)
            .commit(events.clone(), after::<A>(id, version), metadata.clone())
            .await
        {
            Err(AggregateError::AggregateConflict)
                if self
                    .appended_already::<A>(id, version, &events, metadata)
                    .await
                    .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))? =>
            {
                tracing::info!("the first append had committed");
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// Whether the events after `version` of aggregate `id` are exactly
    /// `events` with `metadata`, i.e. an earlier attempt of this request.
    async fn appended_already<A: Decides>(
        &self,
        id: Uuid,
        version: u64,
        events: &[A::Event],
        metadata: &HashMap<String, String>,
    ) -> Result<bool, sqlx::Error> {
        let stored: Vec<(String, serde_json::Value, serde_json::Value)> =
            pg::retry_once(&self.pool, || {
                sqlx::query_as(
                    "SELECT event_type, payload::jsonb, metadata::jsonb FROM events
                      WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
                      ORDER BY sequence LIMIT $4",
                )
                .bind(A::TYPE)
                .bind(id.to_string())
                .bind(i64::try_from(version).unwrap_or(i64::MAX))
                .bind(i64::try_from(events.len()).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
            })
            .await?;
        let ours = serde_json::to_value(metadata).map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(stored.len() == events.len()
            && stored
                .iter()
                .zip(events)
                .all(|((event_type, payload, stored_metadata), event)| {
                    *event_type == event.event_type()
                        && *stored_metadata == ours
                        && serde_json::to_value(event).is_ok_and(|event| *payload == event)
                }))
    }
}

/// The context an append after `version` of aggregate `id` needs. The store
/// keeps no snapshots, so it reads only the id and the sequence; the
/// aggregate itself is serialised only for a snapshot and may be a blank one.
fn after<A: Aggregate>(id: Uuid, version: u64) -> EventStoreAggregateContext<A> {
    EventStoreAggregateContext {
        aggregate_id: id.to_string(),
        aggregate: A::default(),
        current_sequence: usize::try_from(version).unwrap_or(usize::MAX),
        current_snapshot: None,
    }
}

/// Whether a failure of the event store was its connection dying; postgres-es
/// boxes the sqlx error.
fn connection_lost<E: std::error::Error>(error: &AggregateError<E>) -> bool {
    match error {
        AggregateError::DatabaseConnectionError(cause) | AggregateError::UnexpectedError(cause) => {
            cause
                .downcast_ref::<sqlx::Error>()
                .is_some_and(pg::connection_lost)
        }
        _ => false,
    }
}

/// Full jitter over a window that doubles up to 64 ms, so racing writers
/// spread out instead of colliding again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let window_ms = 1u64 << attempt.min(6);
    Duration::from_micros(rand::rng().random_range(0..=window_ms * 1000))
}

fn event_metadata(meta: &CommandMeta) -> std::collections::HashMap<String, String> {
    let mut metadata =
        EventMetadata::new(meta.caller.as_str(), meta.request.correlation_id.clone());
    metadata.actor_id = meta.caller.as_str().to_owned();
    metadata.request_id = Some(meta.request.request_id.clone());
    // The request is the cause of the command's events.
    metadata.causation_id = Some(meta.request.request_id.clone());
    if let Some(idempotency) = &meta.idempotency {
        metadata.idempotency_key = Some(idempotency.key.clone());
        metadata.request_hash = Some(idempotency.request_hash.clone());
        metadata.response_status = Some(meta.success_status);
    }
    metadata.to_map()
}

fn widen<E: std::error::Error>(error: CommandError<std::convert::Infallible>) -> CommandError<E> {
    match error {
        CommandError::Domain(never) => match never {},
        CommandError::NotFound => CommandError::NotFound,
        CommandError::VersionMismatch { expected, current } => {
            CommandError::VersionMismatch { expected, current }
        }
        CommandError::IdempotencyKeyReused => CommandError::IdempotencyKeyReused,
        CommandError::Contention => CommandError::Contention,
        CommandError::Unavailable(e) => CommandError::Unavailable(e),
        CommandError::Store(e) => CommandError::Store(e),
    }
}

fn store_error<E: std::error::Error>(error: AggregateError<E>) -> CommandError<E> {
    match error {
        AggregateError::UserError(e) => CommandError::Domain(e),
        AggregateError::DatabaseConnectionError(cause) | AggregateError::UnexpectedError(cause)
            if unreachable_cause(cause.as_ref()) =>
        {
            CommandError::Unavailable(StoreFailure::EventStore(cause))
        }
        AggregateError::AggregateConflict => CommandError::Store(StoreFailure::Conflict),
        AggregateError::DatabaseConnectionError(cause)
        | AggregateError::DeserializationError(cause)
        | AggregateError::UnexpectedError(cause) => {
            CommandError::Store(StoreFailure::EventStore(cause))
        }
    }
}

fn sqlx_error<E: std::error::Error>(error: sqlx::Error) -> CommandError<E> {
    if pg::unavailable(&error) {
        CommandError::Unavailable(error.into())
    } else {
        CommandError::Store(error.into())
    }
}

/// Whether a store error comes from not reaching the database, wherever in
/// its cause chain the driver's error sits (postgres-es wraps it in errors
/// of its own, depending on the call).
fn unreachable_cause(cause: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(cause), |e| e.source()).any(|e| {
        e.downcast_ref::<sqlx::Error>().is_some_and(pg::unavailable) || e.is::<std::io::Error>()
    })
}

/// What erase leaves of an idempotency key in the event store (the
/// `events_redact_erased_memory` trigger computes the same): a client may
/// have built the key from the note's words, so its text goes, and a retry
/// with it still finds its first answer.
pub fn redacted_idempotency_key(key: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

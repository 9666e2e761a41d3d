//! `/v1/memories`: one memory by id, and lists with filters and cursors.

use super::params::{Checks, limit, position, with_filters};
use super::{AppState, from_sqlx, not_yet_consistent};
use crate::documents::{RawMemory, Stored};
use crate::history::Aggregate;
use crate::rows::Order;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use event_schema::{MemoryState, MemoryStatus};
use regex::Regex;
use serde::Deserialize;
use service_kit::Problem;
use service_kit::auth::Caller;
use service_kit::problem::Code;
use service_kit::rate_limit::{ConcurrencyCap, Slot};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::time::Instant;
use utoipa::IntoParams;
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/memories", web::get().to(list))
        .route("/memories/{id}", web::get().to(get));
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// Return the memory even if it is deleted.
    #[serde(default)]
    pub include_deleted: bool,
    /// Read-your-writes: wait (boundedly) until the read model holds at least
    /// this version, the one a command returned.
    #[param(maximum = 9223372036854775807_i64)]
    pub min_version: Option<u64>,
}

with_filters! {
    pub struct ListParams {
        /// Include deleted memories.
        #[serde(default)]
        pub include_deleted: bool,
        /// Read your writes: `<memory id>@<version>`, as a command
        /// answered it; the list waits until it holds that write.
        #[param(schema_with = wait_for_schema, value_type = Option<String>)]
        pub wait_for: Option<WaitFor>,
        /// By creation time: `desc` (newest first, the default) or `asc`.
        #[serde(default)]
        #[param(value_type = Option<Order>)]
        pub order: Order,
        /// Page size, 1 to 200 (default 50).
        #[param(minimum = 1, maximum = 200)]
        pub limit: Option<u32>,
        /// From the previous page's `next_cursor`: the page after it, in
        /// `order`.
        #[param(schema_with = crate::cursor::schema)]
        pub cursor: Option<String>,
    }
}

/// A read by id with read-your-writes: `read` until it finds the caller's
/// document at `min_version` or later (at once without `min_version`),
/// waiting with a short backoff up to `timeout`. A read that has to wait
/// first takes one of the caller's slots in `waits`: 429 when they are all
/// taken.
///
/// Only the owner of a live aggregate ever waits. When the read side holds
/// nothing of the caller's, `owns` asks the event store: another user's id,
/// an erased memory and an id that never existed are all the same 404, at
/// once, so neither the status nor the time tells them apart; the owner of a
/// write the projection has not reached yet waits for it.
pub(super) async fn read_your_writes<T>(
    waits: &ConcurrencyCap,
    owner: &str,
    timeout: Duration,
    min_version: Option<u64>,
    version: impl Fn(&T) -> u64,
    mut read: impl AsyncFnMut() -> Result<Found<T>, Problem>,
    owns: impl AsyncFnOnce() -> Result<bool, Problem>,
) -> Result<T, Problem> {
    let Some(min) = min_version else {
        return match read().await? {
            Found::Mine(doc) => Ok(doc),
            Found::Absent | Found::Gone => Err(Problem::not_found()),
        };
    };
    let mut wait = Wait::new(timeout);
    let mut slot: Option<Slot> = None;
    let mut owns = Some(owns);
    loop {
        let seen = match read().await? {
            Found::Mine(doc) if version(&doc) >= min => return Ok(doc),
            Found::Mine(doc) => Some(version(&doc)),
            other => {
                // Every read of an id that is not the caller's comes here
                // and asks the same question, whatever the id names.
                if let Some(owns) = owns.take()
                    && !owns().await?
                {
                    return Err(Problem::not_found());
                }
                // The caller's, yet gone: erased while this read waited.
                if matches!(other, Found::Gone) {
                    return Err(Problem::not_found());
                }
                None
            }
        };
        // Only a read that has to wait takes a slot, and keeps it.
        if slot.is_none() {
            slot = Some(waits.try_acquire(owner)?);
        }
        wait.again(min, seen).await?;
    }
}

/// Polls a read until it reaches `min_version`, with a short backoff, up to
/// the configured timeout. Projections usually catch up within milliseconds.
struct Wait {
    started: Instant,
    deadline: Instant,
    pause: Duration,
}

impl Wait {
    fn new(timeout: Duration) -> Self {
        let started = Instant::now();
        Self {
            started,
            deadline: started + timeout,
            pause: Duration::from_millis(2),
        }
    }

    /// Sleeps before the next attempt; `Err` once the time is up.
    async fn again(&mut self, requested: u64, seen: Option<u64>) -> Result<(), Problem> {
        let now = Instant::now();
        if now >= self.deadline {
            metrics::counter!("read_your_writes_timeouts_total").increment(1);
            return Err(not_yet_consistent(requested, seen, now - self.started));
        }
        tokio::time::sleep(self.pause.min(self.deadline - now)).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(50));
        Ok(())
    }
}

/// What a read by id finds for the caller.
pub(super) enum Found<T> {
    Mine(T),
    /// Nothing of the caller's: it may not exist, be another user's, or not
    /// be projected yet.
    Absent,
    /// Erased, or another user's: never the caller's to read.
    Gone,
}

/// A memory as the read side sees it: the Redis document, or else the read
/// database's row, which is then put back into Redis.
async fn lookup(
    state: &AppState,
    owner: &str,
    id: Uuid,
    at_least: Option<u64>,
) -> Result<Found<RawMemory>, Problem> {
    let (g, stored) = state.documents.memory(id, at_least).await?;
    match stored {
        Stored::Found(doc) if doc.owner_id == owner => Ok(Found::Mine(doc)),
        Stored::Found(_) | Stored::Erased(_) => Ok(Found::Gone),
        Stored::Missing => {
            let Some(row) = state.rows.memory(owner, id).await.map_err(from_sqlx)? else {
                return Ok(Found::Absent);
            };
            match state.documents.repair_memory(g, &row).await {
                Ok(true) => {
                    metrics::counter!("document_repairs_total", "kind" => "memory").increment(1);
                    tracing::info!(memory = %id, version = row.version, "repaired a missing memory document");
                }
                Ok(false) => {}
                // The read still succeeds; the next one tries again.
                Err(error) => {
                    tracing::warn!(memory = %id, %error, "repairing a memory document failed");
                }
            }
            let raw =
                RawMemory::of(&row).map_err(|e| super::internal("serialising a memory", &e))?;
            Ok(Found::Mine(raw))
        }
    }
}

/// Get one memory.
#[utoipa::path(get, path = "/v1/memories/{id}", tag = "memories",
    params(("id" = Uuid, Path), GetParams),
    responses((status = 200, description = "The memory document, with its version as the ETag", body = Object,
               headers(("ETag" = String))),
              (status = 404, description = "`not_found`: no memory of the caller's by this id, or a deleted one without `include_deleted`"),
              (status = 429, description = "`rate_limited`: too many requests, or every one of the caller's `min_version` waits is taken"),
              (status = 503, description = "`not_yet_consistent`: `min_version` was not reached in time; or `service_unavailable`")),
    security(("bearer" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<GetParams>,
) -> Result<HttpResponse, Problem> {
    let id = path.into_inner();
    let owner = caller.user_id.as_str();
    let memory = read_your_writes(
        &state.min_version_waits,
        owner,
        state.consistency_timeout,
        query.min_version,
        |m: &RawMemory| m.version,
        async || lookup(&state, owner, id, query.min_version).await,
        async || {
            state
                .history
                .owns_live(Aggregate::Memory, owner, id)
                .await
                .map_err(from_sqlx)
        },
    )
    .await?;
    if memory.status == MemoryStatus::Deleted && !query.include_deleted {
        return Err(Problem::not_found()
            .with_detail("the memory is deleted; pass include_deleted=true to read it"));
    }
    // The stored document is the answer, byte for byte.
    Ok(HttpResponse::Ok()
        .insert_header(header::ContentType::json())
        .insert_header((header::ETAG, format!("\"{}\"", memory.version)))
        .body(memory.json))
}

/// List memories: by creation time, filtered, a page at a time.
#[utoipa::path(get, path = "/v1/memories", tag = "memories",
    params(ListParams),
    responses((status = 200, description = "`{items, next_cursor}` of memory documents", body = Object),
              (status = 422, description = "`validation_failed`: a filter, `limit` or `cursor` is invalid"),
              (status = 429, description = "`rate_limited`: too many requests, or every one of the caller's `min_version` waits is taken"),
              (status = 503, description = "`not_yet_consistent`: the list did not reach the `wait_for` write in time")),
    security(("bearer" = [])))]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ListParams>,
) -> Result<HttpResponse, Problem> {
    let mut checks = Checks::default();
    let mut filters = query.filter_params().to_filters(&mut checks);
    filters.include_deleted = query.include_deleted;
    let limit = limit(query.limit, &mut checks);
    let after = position(query.cursor.as_deref(), &mut checks);
    checks.finish()?;
    let owner = caller.user_id.as_str();
    if let Some(write) = query.wait_for {
        wait_for_memory(&state, owner, write).await?;
    }
    let (items, more) = state
        .rows
        .memories(owner, &filters, query.order, after, limit)
        .await
        .map_err(from_sqlx)?;
    let next_cursor = more
        .then(|| items.last())
        .flatten()
        .map(|last| crate::cursor::encode(last.created_at.timestamp_micros(), last.id));
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "items": items,
        "next_cursor": next_cursor,
    })))
}

/// `wait_for`: the memory write (`<id>@<version>`) a list or search waits
/// for. One parameter, so it cannot come half; checked against the same
/// pattern the OpenAPI document states, so what the document allows parses.
#[derive(Debug, Clone, Copy)]
pub struct WaitFor {
    id: Uuid,
    version: u64,
}

/// A hyphenated UUID, `@`, and a version that fits in 64 bits.
pub const WAIT_FOR_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}@[0-9]{1,19}$";

static WAIT_FOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(WAIT_FOR_PATTERN).expect("a valid pattern"));

impl std::str::FromStr for WaitFor {
    type Err = &'static str;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        const SHAPE: &str = "`wait_for` is `<memory id>@<version>`";
        if !WAIT_FOR.is_match(raw) {
            return Err(SHAPE);
        }
        let (id, version) = raw.split_once('@').ok_or(SHAPE)?;
        Ok(Self {
            id: id.parse().map_err(|_| SHAPE)?,
            version: version.parse().map_err(|_| SHAPE)?,
        })
    }
}

impl<'de> Deserialize<'de> for WaitFor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

pub(super) fn wait_for_schema() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(WAIT_FOR_PATTERN))
        .description(Some(
            "Read your writes: `<memory id>@<version>` as a command answered them; \
             answered once the read model holds that write",
        ))
}

/// Waits until the search read model (lists and search) holds the caller's memory `id` at version
/// `min` or later. A memory that is not the caller's, was erased or never
/// existed is nothing to wait for: the search runs at once, and answers what
/// it would have answered anyway, so `wait_for` tells no one whether an id
/// exists.
pub(super) async fn wait_for_memory(
    state: &AppState,
    owner: &str,
    write: WaitFor,
) -> Result<(), Problem> {
    let WaitFor { id, version: min } = write;
    // A row that was there and is gone was erased while this waited: there
    // is nothing left to wait for (the event store is asked only once).
    let seen = std::cell::Cell::new(false);
    let waited = read_your_writes(
        &state.min_version_waits,
        owner,
        state.consistency_timeout,
        Some(min),
        |row: &MemoryState| row.version,
        async || {
            let row = state.rows.memory(owner, id).await.map_err(from_sqlx)?;
            Ok(match row {
                Some(row) => {
                    seen.set(true);
                    Found::Mine(row)
                }
                None if seen.get() => Found::Gone,
                None => Found::Absent,
            })
        },
        async || {
            state
                .history
                .owns_live(Aggregate::Memory, owner, id)
                .await
                .map_err(from_sqlx)
        },
    )
    .await;
    match waited {
        Ok(_) => Ok(()),
        Err(problem) if problem.code == Code::NotFound => Ok(()),
        Err(problem) => Err(problem),
    }
}

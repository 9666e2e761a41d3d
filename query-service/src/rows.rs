//! The read database's memories and sessions (the views over the active
//! generation): lists with filters and keyset pagination, single rows for
//! repairing a missing document. Every query is scoped to an owner.
//!
//! The rows and their mapping to states are the read-model contract's
//! ([`read_model::tables`]).

use chrono::{DateTime, Utc};
use event_schema::{MemoryState, SessionState, SessionStatus};
use read_model::tables::{
    MEMORIES, MEMORY_COLUMNS, MemoryRow, SESSION_COLUMNS, SESSIONS, SessionRow, session_status_text,
};
use serde::{Deserialize, Serialize};
use service_kit::pg::retry_once;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// Which memories a list or a search considers, beside the owner.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub session: Option<Uuid>,
    /// At least one of these tags (normalised).
    pub tags_any: Vec<String>,
    /// Every one of these tags (normalised).
    pub tags_all: Vec<String>,
    /// Inclusive lower and exclusive upper bounds.
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    /// Deleted memories are left out unless asked for.
    pub include_deleted: bool,
}

impl Filters {
    /// Appends ` AND …` for the owner and every filter set.
    pub fn push_where(&self, owner: &str, query: &mut QueryBuilder<'_, Postgres>) {
        query.push(" owner_id = ").push_bind(owner.to_owned());
        if !self.include_deleted {
            query.push(" AND NOT deleted");
        }
        if let Some(session) = self.session {
            query.push(" AND session_id = ").push_bind(session);
        }
        if !self.tags_any.is_empty() {
            query.push(" AND tags && ").push_bind(self.tags_any.clone());
        }
        if !self.tags_all.is_empty() {
            query.push(" AND tags @> ").push_bind(self.tags_all.clone());
        }
        let bounds = [
            ("created_at >= ", self.created_after),
            ("created_at < ", self.created_before),
            ("updated_at >= ", self.updated_after),
            ("updated_at < ", self.updated_before),
        ];
        for (condition, bound) in bounds {
            if let Some(at) = bound {
                query.push(" AND ").push(condition).push_bind(at);
            }
        }
    }
}

/// Newest first (the default) or oldest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

impl Order {
    fn sql(self) -> &'static str {
        match self {
            Self::Desc => "DESC",
            Self::Asc => "ASC",
        }
    }

    fn after(self) -> &'static str {
        match self {
            Self::Desc => "<",
            Self::Asc => ">",
        }
    }
}

/// Where the previous page of a list ended: the `(time, id)` of its last
/// item and the order it was read in. Items are ordered by a time that never
/// changes (creation, start), with the id breaking ties, so a walk sees each
/// item once even while others are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// Session list filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionFilter {
    Open,
    Ended,
}

/// The read database.
#[derive(Debug, Clone)]
pub struct ReadModel {
    pool: PgPool,
}

impl ReadModel {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// One memory of `owner`, deleted or not.
    pub async fn memory(&self, owner: &str, id: Uuid) -> Result<Option<MemoryState>, sqlx::Error> {
        let sql =
            format!("SELECT {MEMORY_COLUMNS} FROM {MEMORIES} WHERE id = $1 AND owner_id = $2");
        let row: Option<MemoryRow> = retry_once(&self.pool, || {
            sqlx::query_as(&sql)
                .bind(id)
                .bind(owner)
                .fetch_optional(&self.pool)
        })
        .await?;
        Ok(row.map(Into::into))
    }

    /// One session of `owner`.
    pub async fn session(
        &self,
        owner: &str,
        id: Uuid,
    ) -> Result<Option<SessionState>, sqlx::Error> {
        let sql =
            format!("SELECT {SESSION_COLUMNS} FROM {SESSIONS} WHERE id = $1 AND owner_id = $2");
        let row: Option<SessionRow> = retry_once(&self.pool, || {
            sqlx::query_as(&sql)
                .bind(id)
                .bind(owner)
                .fetch_optional(&self.pool)
        })
        .await?;
        Ok(row.map(Into::into))
    }

    /// Up to `limit` memories after `after`, by creation time then id, and
    /// whether more follow.
    pub async fn memories(
        &self,
        owner: &str,
        filters: &Filters,
        order: Order,
        after: Option<Position>,
        limit: u32,
    ) -> Result<(Vec<MemoryState>, bool), sqlx::Error> {
        // Built again for a retry: a built query gives its arguments away.
        let build = || {
            let mut query =
                QueryBuilder::new(format!("SELECT {MEMORY_COLUMNS} FROM {MEMORIES} WHERE"));
            filters.push_where(owner, &mut query);
            if let Some(after) = after {
                query
                    .push(format!(" AND (created_at, id) {} (", order.after()))
                    .push_bind(after.at)
                    .push(", ")
                    .push_bind(after.id)
                    .push(")");
            }
            query.push(format!(
                " ORDER BY created_at {0}, id {0} LIMIT ",
                order.sql()
            ));
            query.push_bind(i64::from(limit) + 1);
            query
        };
        let rows: Vec<MemoryRow> = retry_once(&self.pool, || {
            let mut query = build();
            async move { query.build_query_as().fetch_all(&self.pool).await }
        })
        .await?;
        Ok(page(rows, limit))
    }

    /// Up to `limit` sessions after `after`, by start time then id.
    pub async fn sessions(
        &self,
        owner: &str,
        status: Option<SessionFilter>,
        order: Order,
        after: Option<Position>,
        limit: u32,
    ) -> Result<(Vec<SessionState>, bool), sqlx::Error> {
        // Built again for a retry: a built query gives its arguments away.
        let build = || {
            let mut query = QueryBuilder::new(format!(
                "SELECT {SESSION_COLUMNS} FROM {SESSIONS} WHERE owner_id = "
            ));
            query.push_bind(owner.to_owned());
            if let Some(status) = status {
                query
                    .push(" AND status = ")
                    .push_bind(session_status_text(match status {
                        SessionFilter::Open => SessionStatus::Open,
                        SessionFilter::Ended => SessionStatus::Ended,
                    }));
            }
            if let Some(after) = after {
                query
                    .push(format!(" AND (started_at, id) {} (", order.after()))
                    .push_bind(after.at)
                    .push(", ")
                    .push_bind(after.id)
                    .push(")");
            }
            query.push(format!(
                " ORDER BY started_at {0}, id {0} LIMIT ",
                order.sql()
            ));
            query.push_bind(i64::from(limit) + 1);
            query
        };
        let rows: Vec<SessionRow> = retry_once(&self.pool, || {
            let mut query = build();
            async move { query.build_query_as().fetch_all(&self.pool).await }
        })
        .await?;
        Ok(page(rows, limit))
    }
}

/// Keeps the first `limit` of `limit + 1` rows, and says whether there were more.
fn page<R, T: From<R>>(mut rows: Vec<R>, limit: u32) -> (Vec<T>, bool) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows.into_iter().map(Into::into).collect(), more)
}

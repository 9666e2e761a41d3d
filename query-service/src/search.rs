//! Search over the read database: `semantic` (pgvector cosine distance on the
//! HNSW index, and exactly for the vectors still pending it: ADR 21), `keyword` (Postgres full text with stemming and phrases, and
//! pg_trgm word similarity for typos) and `hybrid`, the default: reciprocal
//! rank fusion of the two rankings, the semantic one ordered also by each
//! memory's context vector (the memory between its neighbours in its
//! session; ADR 17).
//!
//! Every query carries the caller as `owner_id = $n`; the vector search runs
//! with pgvector's iterative index scan, so a filter that discards most
//! neighbours still fills the page instead of returning fewer hits.

use crate::rows::Filters;
use chrono::{DateTime, Utc};
use embeddings::{EmbedError, Embedder};
use lru::LruCache;
use pgvector::Vector;
use read_model::tables::{KEYWORD_OWNERS, KEYWORD_TERMS, MEMORIES};
use serde::{Deserialize, Serialize};
use service_kit::pg::retry_once;
use sqlx::{PgPool, QueryBuilder, Row};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use utoipa::ToSchema;
use uuid::Uuid;

/// The `k` of reciprocal rank fusion: a hit's fused score is the sum over
/// the rankings it is in of `1 / (RRF_K + rank)`. 60 is the value of the
/// original paper (Cormack et al., 2009) and the common default; it keeps a
/// single first place from outweighing agreement further down.
const RRF_K: f64 = 60.0;

/// How much hybrid's semantic ranking counts a memory's context vector (the
/// memory between its neighbours in its session; ADR 17) beside its own:
/// the ranking is by `own + CONTEXT_WEIGHT × context` cosine similarity.
/// Chosen on the tuning half of the conversation fixture (0, 0.25, 0.5,
/// 0.75, 1 and 1.5 tried: 1 was best there, 0.780 against 0.728 at 0; the
/// held-back half's 0.765 against 0.726 is the report; docs/benchmarks.md).
/// A memory without a context vector (not in a session, or not made yet)
/// counts its own vector twice over, which leaves the order among such
/// memories as semantic mode's.
const CONTEXT_WEIGHT: f64 = 1.0;

/// How many candidates hybrid takes from each ranking, at least: enough that
/// a memory ranked modestly by both still reaches the fusion.
const MIN_HYBRID_CANDIDATES: u32 = 50;

/// Marks around matched words in a snippet, as Postgres emits them: private
/// use characters, stripped from the text first, so that after HTML escaping
/// they can only be ours.
const MARK_START: char = '\u{E000}';
const MARK_END: char = '\u{E001}';

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Semantic,
    Keyword,
    #[default]
    Hybrid,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub q: String,
    pub mode: Mode,
    pub k: u32,
    pub filters: Filters,
    pub explain: bool,
}

/// One hit's place in one ranking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Ranked {
    /// 1-based. In hybrid, the rank by `score + context`.
    pub rank: u32,
    /// Cosine similarity of the query and the memory.
    pub score: f64,
    /// Hybrid only: cosine similarity of the query and the memory between
    /// the turns before and after it in its session (its own `score` while
    /// it has no such context).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<f64>,
    /// Hybrid only: what this ranking adds to the hit's fused score,
    /// `1 / (60 + rank)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contribution: Option<f64>,
}

/// One hit's place in the keyword ranking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct KeywordRanked {
    /// 1-based.
    pub rank: u32,
    /// The BM25 score for a full-text match; the trigram word similarity
    /// for a typo match (`fuzzy`). Memories with every word of the query
    /// rank above those with some, and those above typo matches, whatever
    /// the scores. In hybrid mode only the first and the last take part,
    /// and `rank` is within them.
    pub score: f64,
    pub fuzzy: bool,
    /// Hybrid only: what this ranking adds to the hit's fused score,
    /// `1 / (60 + rank)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contribution: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Explanation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic: Option<Ranked>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<KeywordRanked>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Hit {
    pub id: Uuid,
    /// The session the memory is in, if any.
    pub session_id: Option<Uuid>,
    /// When what the memory records happened, as its writer said; `null`
    /// when they did not. What a "when…" question is answered from.
    pub occurred_at: Option<DateTime<Utc>>,
    /// When the memory was captured.
    pub created_at: DateTime<Utc>,
    pub title: Option<String>,
    /// Plain text, HTML-escaped, with the matched words in `<mark>…</mark>`.
    pub snippet: String,
    /// Semantic: cosine similarity. Keyword: see [`KeywordRanked::score`].
    /// Hybrid: the reciprocal-rank-fusion score.
    pub score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<Explanation>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("embedding the query: {0}")]
    Embedding(#[from] EmbedError),
    #[error("the stored vectors were made by {stored}, this service embeds with {ours}")]
    ModelMismatch { stored: String, ours: String },
}

/// Query embeddings, with a small LRU cache in front of the embedder (agents
/// repeat queries; the model is the slowest step of a search).
#[derive(Debug)]
pub struct QueryEmbedder {
    embedder: Arc<dyn Embedder>,
    cache: Mutex<LruCache<String, Arc<Vector>>>,
}

impl QueryEmbedder {
    pub fn new(embedder: Arc<dyn Embedder>, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            embedder,
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn model_id(&self) -> &str {
        self.embedder.model_id()
    }

    pub async fn embed(&self, q: &str) -> Result<Arc<Vector>, EmbedError> {
        if let Some(hit) = self.lock().get(q).cloned() {
            metrics::counter!("query_embedding_cache_total", "outcome" => "hit").increment(1);
            return Ok(hit);
        }
        metrics::counter!("query_embedding_cache_total", "outcome" => "miss").increment(1);
        let started = std::time::Instant::now();
        let mut vectors = self.embedder.embed(&[q.to_owned()]).await?;
        metrics::histogram!("query_embedding_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let vector = Arc::new(Vector::from(vectors.pop().unwrap_or_default()));
        self.lock().put(q.to_owned(), vector.clone());
        Ok(vector)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Arc<Vector>>> {
        // A panic while holding the lock leaves a consistent cache behind.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long the stored vectors' model is taken as read: a rebuild that
/// changes the model reaches searches within this, and until then the old
/// generation's table still answers.
const STORED_MODEL_TTL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Search {
    pool: PgPool,
    embedder: QueryEmbedder,
    /// The model that made the stored vectors, and when it was read.
    stored_model: Mutex<Option<(Option<String>, Instant)>>,
}

struct Candidate {
    id: Uuid,
    score: f64,
    /// Semantic in hybrid only: the similarity with the context vector.
    context: Option<f64>,
    /// Keyword only: 2 every word matched, 1 some, 0 a typo match.
    tier: i32,
}

/// Keyword tiers (see [`Search::keyword`]).
const EVERY_WORD: i32 = 2;
const SOME_WORDS: i32 = 1;
const TYPO: i32 = 0;

/// Which memories the keyword leg takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matches {
    /// Every word (or phrase) of the query: what hybrid fuses. Memories
    /// sharing only some words of a question are what the semantic ranking
    /// finds better; fused, they crowd it out (on both labelled fixtures,
    /// every weight and `k` tried put hybrid below semantic alone; see
    /// docs/benchmarks.md, "Search quality").
    EveryWord,
    /// Any word: keyword mode, where a question in plain language should
    /// still find the notes that share part of its words.
    AnyWord,
}

/// BM25's term-frequency saturation (the usual value: Robertson and
/// Zaragoza, 2009) and length normalisation. `B` is 0, chosen on the tuning
/// half of the conversation fixture: memories are short, and at every `B`
/// tried above 0 (0.3, 0.5, 0.75) the shortest turns ("Oh no, is she ok??"),
/// which share one common word with a question, outranked the answer
/// (recall@10 of the keyword mode 0.24–0.25 against 0.33 at 0; the notes
/// fixture's keyword nDCG@10 0.626–0.627 against 0.631).
const K1: f64 = 1.2;
const B: f64 = 0.0;

/// Typo matching runs for queries of at most this many words: typos in the
/// rare words of short keyword queries are what it is for, and the trigram
/// similarity of a long query against every note is costly and says little.
const MAX_TYPO_WORDS: usize = 3;

impl Search {
    pub fn new(pool: PgPool, embedder: QueryEmbedder) -> Self {
        Self {
            pool,
            embedder,
            stored_model: Mutex::new(None),
        }
    }

    /// The model that made the stored vectors (`None` before the first
    /// embedding), read at most once per [`STORED_MODEL_TTL`].
    async fn stored_model(&self) -> Result<Option<String>, SearchError> {
        let cached = self
            .stored_model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((model, read_at)) = cached
            && read_at.elapsed() < STORED_MODEL_TTL
        {
            return Ok(model);
        }
        let generation = retry_once(&self.pool, || {
            read_model::tables::active_generation(&self.pool)
        })
        .await?;
        let model = generation.and_then(|g| g.embedding_model);
        *self
            .stored_model
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((model.clone(), Instant::now()));
        Ok(model)
    }

    pub async fn run(&self, owner: &str, request: &SearchRequest) -> Result<Vec<Hit>, SearchError> {
        let k = request.k;
        let (semantic, keyword) = match request.mode {
            Mode::Semantic => (Some(self.semantic(owner, request, k, false).await?), None),
            Mode::Keyword => (
                None,
                Some(self.keyword(owner, request, k, Matches::AnyWord, k).await?),
            ),
            Mode::Hybrid => {
                let n = (k * 3).max(MIN_HYBRID_CANDIDATES);
                // Fusion takes the strict keyword ranking: every word, or a
                // typo of one. Notes sharing only some words of a question
                // are what the semantic ranking finds better; fused at equal
                // weight they crowd it out (on the search-quality fixture,
                // nDCG@10 of semantic-kind queries fell from 0.88 to 0.59).
                let (semantic, keyword) = tokio::try_join!(
                    self.semantic(owner, request, n, true),
                    // Typo matches only for a query whose words match
                    // fewer than k memories: they rank below every word
                    // match, so past k they add little to the fusion and
                    // cost a trigram scan of the owner's memories.
                    self.keyword(owner, request, n, Matches::EveryWord, k)
                )?;
                (Some(semantic), Some(keyword))
            }
        };
        let fused = fuse(request.mode, semantic.as_deref(), keyword.as_deref(), k);
        let ids: Vec<Uuid> = fused.iter().map(|(id, _, _)| *id).collect();
        let mut snippets = self.snippets(owner, &request.q, &ids).await?;
        Ok(fused
            .into_iter()
            .filter_map(|(id, score, explanation)| {
                // A memory deleted between the ranking and this read drops out.
                let text = snippets.remove(&id)?;
                Some(Hit {
                    id,
                    session_id: text.session_id,
                    occurred_at: text.occurred_at,
                    created_at: text.created_at,
                    title: text.title,
                    snippet: text.snippet,
                    score,
                    explain: request.explain.then_some(explanation),
                })
            })
            .collect())
    }

    async fn semantic(
        &self,
        owner: &str,
        request: &SearchRequest,
        n: u32,
        in_context: bool,
    ) -> Result<Vec<Candidate>, SearchError> {
        if let Some(stored) = self.stored_model().await?
            && stored != self.embedder.model_id()
        {
            return Err(SearchError::ModelMismatch {
                stored,
                ours: self.embedder.model_id().to_owned(),
            });
        }
        let vector = self.embedder.embed(&request.q).await?;
        // Built again for a retry: a built query gives its arguments away.
        // Two legs: the nearest neighbours by the HNSW index over the
        // indexed vectors, and every vector still pending (ADR 21: left out
        // of the index while a backlog drained; usually none) compared
        // exactly; the nearest `n` of both.
        let build = || {
            let mut query = QueryBuilder::new("SELECT id, distance, context_distance FROM (");
            for (leg, column) in ["embedding", "pending_embedding"].into_iter().enumerate() {
                if leg > 0 {
                    query.push(" UNION ALL ");
                }
                query.push(format!("(SELECT id, ({column} <=> "));
                query.push_bind(vector.as_ref().clone());
                // Semantic mode has no use for the context distance.
                if in_context {
                    query
                        .push(format!(
                            ")::float8 AS distance, (coalesce(context_embedding, {column}) <=> "
                        ))
                        .push_bind(vector.as_ref().clone());
                } else {
                    query.push(")::float8 AS distance, (0");
                }
                query.push(format!(
                    ")::float8 AS context_distance FROM {MEMORIES} WHERE"
                ));
                request.filters.push_where(owner, &mut query);
                query
                    .push(format!(" AND {column} IS NOT NULL ORDER BY {column} <=> "))
                    .push_bind(vector.as_ref().clone())
                    .push(" LIMIT ")
                    .push_bind(i64::from(n))
                    .push(")");
            }
            query
                .push(") legs ORDER BY distance LIMIT ")
                .push_bind(i64::from(n));
            query
        };
        let rows: Vec<(Uuid, f64, f64)> = retry_once(&self.pool, || {
            let mut query = build();
            async move { query.build_query_as().fetch_all(&self.pool).await }
        })
        .await?;
        let mut candidates: Vec<Candidate> = rows
            .into_iter()
            .map(|(id, distance, context_distance)| Candidate {
                id,
                score: 1.0 - distance,
                context: in_context.then_some(1.0 - context_distance),
                tier: EVERY_WORD,
            })
            .collect();
        // The iterative index scan may return neighbours slightly out of
        // order; in hybrid, the context reorders them.
        let rank_score = |c: &Candidate| c.score + CONTEXT_WEIGHT * c.context.unwrap_or(0.0);
        candidates.sort_by(|a, b| {
            rank_score(b)
                .total_cmp(&rank_score(a))
                .then(a.id.cmp(&b.id))
        });
        Ok(candidates)
    }

    /// The keyword ranking: memories that hold the query's words (see
    /// [`Matches`]), those with every word (or phrase) before those with
    /// only some, each ranked by BM25 over the owner's own statistics
    /// ([`Search::bm25`]). Then, while fewer than
    /// `typo_below` matched and the query is short, memories that match no
    /// word but resemble the query by trigrams (a typo), ranked last: the
    /// trigram scan of a long query over a large corpus is costly and says
    /// little.
    async fn keyword(
        &self,
        owner: &str,
        request: &SearchRequest,
        n: u32,
        matches: Matches,
        typo_below: u32,
    ) -> Result<Vec<Candidate>, SearchError> {
        let mut found = self.bm25(owner, request, n, matches).await?;
        if found.len() < usize::try_from(typo_below).unwrap_or(usize::MAX)
            && request.q.split_whitespace().count() <= MAX_TYPO_WORDS
        {
            let rest = n - u32::try_from(found.len()).unwrap_or(n);
            found.extend(self.typos(owner, request, rest).await?);
        }
        Ok(found)
    }

    /// Okapi BM25 of the memories holding any word of the query, with the
    /// statistics of the owner's own searchable memories (`keyword_terms`,
    /// `keyword_owners`, kept exact by triggers; ADR 16): a word is worth
    /// more the fewer of the owner's memories hold it (inverse document
    /// frequency), a repeated word adds less each time (`K1`), and a long
    /// memory needs more matches than a short one (`B`).
    async fn bm25(
        &self,
        owner: &str,
        request: &SearchRequest,
        n: u32,
        matches: Matches,
    ) -> Result<Vec<Candidate>, SearchError> {
        // Built again for a retry: a built query gives its arguments away.
        let build = || {
            let mut query = QueryBuilder::new(
                "WITH q AS (SELECT all_terms, \
                                   CASE WHEN strpos(all_terms::text, '!') > 0 THEN all_terms \
                                        ELSE to_tsquery('simple', replace(all_terms::text, ' & ', ' | ')) \
                                   END AS any_terms, \
                                   tsvector_to_array(to_tsvector('english', input.text)) AS terms \
                              FROM (SELECT websearch_to_tsquery('english', ",
            );
            query
                .push_bind(request.q.clone())
                .push(") AS all_terms, ")
                .push_bind(request.q.clone())
                .push(format!(
                    "::text AS text) AS input), \
                     st AS (SELECT documents::float8 AS n, \
                                   greatest(terms::float8 / greatest(documents, 1), 1) AS avgdl \
                              FROM {KEYWORD_OWNERS} WHERE owner_id = "
                ))
                .push_bind(owner.to_owned())
                .push(format!(
                    "), \
                     idf AS (SELECT t.term, ln(1 + (st.n - t.documents + 0.5) / (t.documents + 0.5)) AS idf \
                               FROM {KEYWORD_TERMS} t, st, q \
                              WHERE t.documents > 0 AND t.term = ANY(q.terms) AND t.owner_id = "
                ))
                .push_bind(owner.to_owned())
                .push(format!(
                    "), \
                     c AS (SELECT id, search, search @@ q.all_terms AS every FROM {MEMORIES}, q WHERE"
                ));
            request.filters.push_where(owner, &mut query);
            query.push(format!(
                " AND search @@ q.{}) \
                 SELECT c.id, c.every, \
                        sum(idf.idf * x.tf * ({K1} + 1) \
                            / (x.tf + {K1} * (1 - {B} + {B} * length(c.search) / st.avgdl)))::float8 AS score \
                   FROM c \
                   CROSS JOIN LATERAL (SELECT lexeme, cardinality(positions)::float8 AS tf FROM unnest(c.search)) AS x \
                   JOIN idf ON idf.term = x.lexeme \
                   CROSS JOIN st \
                  GROUP BY c.id, c.every \
                  ORDER BY c.every DESC, score DESC, c.id LIMIT ",
                match matches {
                    Matches::EveryWord => "all_terms",
                    Matches::AnyWord => "any_terms",
                }
            ));
            query.push_bind(i64::from(n));
            query
        };
        let rows: Vec<(Uuid, bool, f64)> = retry_once(&self.pool, || {
            let mut query = build();
            async move { query.build_query_as().fetch_all(&self.pool).await }
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, every, score)| Candidate {
                id,
                score,
                context: None,
                tier: if every { EVERY_WORD } else { SOME_WORDS },
            })
            .collect())
    }

    /// Memories that match no word of the query but resemble it by
    /// trigrams (`word_similarity`): a typo of a rare word.
    async fn typos(
        &self,
        owner: &str,
        request: &SearchRequest,
        n: u32,
    ) -> Result<Vec<Candidate>, SearchError> {
        // Built again for a retry: a built query gives its arguments away.
        let build = || {
            let mut query = QueryBuilder::new("SELECT id, word_similarity(");
            query
                .push_bind(request.q.clone())
                .push(format!(
                    ", content)::float8 AS score \
                     FROM {MEMORIES}, \
                          (SELECT CASE WHEN strpos(all_terms::text, '!') > 0 THEN all_terms \
                                       ELSE to_tsquery('simple', replace(all_terms::text, ' & ', ' | ')) \
                                  END AS any_terms \
                             FROM websearch_to_tsquery('english', "
                ))
                .push_bind(request.q.clone())
                .push(") AS all_terms) AS q WHERE");
            request.filters.push_where(owner, &mut query);
            query
                .push(" AND ")
                .push_bind(request.q.clone())
                .push(" <% content AND NOT search @@ q.any_terms ORDER BY score DESC, id LIMIT ")
                .push_bind(i64::from(n));
            query
        };
        let rows: Vec<(Uuid, f64)> = retry_once(&self.pool, || {
            let mut query = build();
            async move { query.build_query_as().fetch_all(&self.pool).await }
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, score)| Candidate {
                id,
                score,
                context: None,
                tier: TYPO,
            })
            .collect())
    }

    /// Title, marked snippet, session and times of each hit, from the same
    /// read.
    async fn snippets(
        &self,
        owner: &str,
        q: &str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, HitText>, SearchError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let options = format!(
            "StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=35, MinWords=15, \
             MaxFragments=2, FragmentDelimiter=\" … \""
        );
        let sql = format!(
            "SELECT id, title, ts_headline('english', translate(content, $4, ''), \
                                           websearch_to_tsquery('english', $3), $5) AS snippet, \
                    session_id, occurred_at, created_at \
               FROM {MEMORIES} WHERE id = ANY($1) AND owner_id = $2 AND NOT deleted"
        );
        let rows = retry_once(&self.pool, || {
            sqlx::query(&sql)
                .bind(ids)
                .bind(owner)
                .bind(q)
                .bind(format!("{MARK_START}{MARK_END}"))
                .bind(&options)
                .fetch_all(&self.pool)
        })
        .await?;
        let text = |row: &sqlx::postgres::PgRow| -> Result<(Uuid, HitText), sqlx::Error> {
            let snippet: String = row.try_get("snippet")?;
            Ok((
                row.try_get("id")?,
                HitText {
                    title: row.try_get("title")?,
                    snippet: mark(&snippet),
                    session_id: row.try_get("session_id")?,
                    occurred_at: row.try_get("occurred_at")?,
                    created_at: row.try_get("created_at")?,
                },
            ))
        };
        Ok(rows.iter().map(text).collect::<Result<_, _>>()?)
    }
}

/// What a hit shows of its memory besides the ranking.
struct HitText {
    title: Option<String>,
    snippet: String,
    session_id: Option<Uuid>,
    occurred_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

/// The final ranking: one mode's candidates as they are, or both fused by
/// reciprocal rank. Ties break on the id so a ranking is reproducible.
fn fuse(
    mode: Mode,
    semantic: Option<&[Candidate]>,
    keyword: Option<&[Candidate]>,
    k: u32,
) -> Vec<(Uuid, f64, Explanation)> {
    let mut by_id: HashMap<Uuid, (f64, Explanation)> = HashMap::new();
    let rank_of = |i: usize| u32::try_from(i + 1).unwrap_or(u32::MAX);
    // In hybrid, each ranking adds `1 / (RRF_K + rank)` to a hit's score.
    let contribution = |rank: u32| (mode == Mode::Hybrid).then(|| 1.0 / (RRF_K + f64::from(rank)));
    for (i, c) in semantic.unwrap_or_default().iter().enumerate() {
        let entry = by_id.entry(c.id).or_default();
        entry.1.semantic = Some(Ranked {
            rank: rank_of(i),
            score: c.score,
            context: c.context,
            contribution: contribution(rank_of(i)),
        });
    }
    for (i, c) in keyword.unwrap_or_default().iter().enumerate() {
        let entry = by_id.entry(c.id).or_default();
        entry.1.keyword = Some(KeywordRanked {
            rank: rank_of(i),
            score: c.score,
            fuzzy: c.tier == TYPO,
            contribution: contribution(rank_of(i)),
        });
    }
    let mut fused: Vec<(Uuid, f64, Explanation)> = by_id
        .into_iter()
        .map(|(id, (_, explanation))| {
            let score = match mode {
                Mode::Semantic => explanation.semantic.map_or(0.0, |r| r.score),
                Mode::Keyword => explanation.keyword.map_or(0.0, |r| r.score),
                Mode::Hybrid => {
                    explanation
                        .semantic
                        .and_then(|r| r.contribution)
                        .unwrap_or(0.0)
                        + explanation
                            .keyword
                            .and_then(|r| r.contribution)
                            .unwrap_or(0.0)
                }
            };
            (id, score, explanation)
        })
        .collect();
    match mode {
        // Keep each mode's own order: keyword puts every full-text match
        // above every typo match, whatever their scores.
        Mode::Semantic => fused.sort_by_key(|(id, _, e)| (e.semantic.map(|r| r.rank), *id)),
        Mode::Keyword => fused.sort_by_key(|(id, _, e)| (e.keyword.map(|r| r.rank), *id)),
        Mode::Hybrid => fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))),
    }
    fused.truncate(usize::try_from(k).unwrap_or(usize::MAX));
    fused
}

/// HTML-escapes a headline and turns Postgres's marks into `<mark>` tags.
fn mark(headline: &str) -> String {
    let mut out = String::with_capacity(headline.len() + 16);
    for c in headline.chars() {
        match c {
            MARK_START => out.push_str("<mark>"),
            MARK_END => out.push_str("</mark>"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(ids: &[u128]) -> Vec<Candidate> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Candidate {
                id: Uuid::from_u128(*id),
                score: 1.0 / (i as f64 + 1.0),
                context: None,
                tier: EVERY_WORD,
            })
            .collect()
    }

    #[test]
    fn fusion_rewards_agreement_between_the_rankings() {
        // 3 is second in both; 1 and 4 each top one ranking only.
        let semantic = candidates(&[1, 3, 2]);
        let keyword = candidates(&[4, 3, 5]);
        let fused = fuse(Mode::Hybrid, Some(&semantic), Some(&keyword), 10);
        let order: Vec<u128> = fused.iter().map(|(id, _, _)| id.as_u128()).collect();
        assert_eq!(order, vec![3, 1, 4, 2, 5]);
        let (_, score, explanation) = &fused[0];
        assert!((score - 2.0 / 62.0).abs() < 1e-12);
        assert_eq!(explanation.semantic.map(|r| r.rank), Some(2));
        assert_eq!(explanation.keyword.map(|r| r.rank), Some(2));
    }

    #[test]
    fn a_single_mode_keeps_its_own_order_and_k_bounds_the_result() {
        let keyword = candidates(&[9, 8, 7]);
        let fused = fuse(Mode::Keyword, None, Some(&keyword), 2);
        let order: Vec<u128> = fused.iter().map(|(id, _, _)| id.as_u128()).collect();
        assert_eq!(order, vec![9, 8]);
    }

    #[test]
    fn snippets_escape_the_text_and_keep_only_our_marks() {
        assert_eq!(
            mark("a <b> & \u{E000}word\u{E001} \"q\""),
            "a &lt;b&gt; &amp; <mark>word</mark> &quot;q&quot;"
        );
    }
}

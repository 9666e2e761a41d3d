//! The query-path benchmark (run by `bench/query-path`, which builds this in
//! release and passes the environment). In one process and one run:
//!
//! 1. makes `BENCH_LARGE` distinct texts from pieces of the search-quality
//!    fixture's memories and embeds them with the real model (about 100
//!    texts/s; cached under `BENCH_CACHE_DIR` by a hash of the texts, so only
//!    the first run pays), creates a fresh read database, seeds the first
//!    `BENCH_SMALL` for one user, builds the indexes, and writes 1,000 of them
//!    as Redis documents;
//! 2. starts the query service in-process (release, JSON logs at warn) and
//!    measures, at that size: GET `/v1/memories/{id}` against `/health/live`
//!    with wrk (throughput and p99; the headline is their ratio), with a JWT
//!    and with an API key (from an event-store database of its own, so the
//!    key is looked up and cached as in production) side by side, with the
//!    document cache on (the default) and, on a second instance, off; search
//!    latency over HTTP in each mode with distinct queries (so every query is
//!    embedded), beside the embedding alone and `/health/live` from the same
//!    client; and HNSW recall@10 against an exact scan for several
//!    `ef_search` values;
//! 3. grows the corpus to `BENCH_LARGE`, rebuilds the indexes, and measures
//!    search latency and recall again;
//! 4. moves the newest `BENCH_PENDING` vectors out of the HNSW index into
//!    `pending_embedding`, as a projector draining a backlog leaves them
//!    (ADR 21), and measures search latency again: the exact leg's cost at
//!    that many pending vectors of one user;
//! 5. drops the databases and the Redis keys.
//!
//! Environment: `BENCH_ADMIN_URL` (a Postgres with pgvector, as superuser),
//! `BENCH_REDIS_URL`, `SB_EMBEDDING_MODEL_DIR`, `BENCH_SMALL` (10000),
//! `BENCH_LARGE` (100000), `BENCH_QUERIES` (200), `BENCH_DURATION` (10 s per
//! wrk phase), `BENCH_ROUNDS` (3 rounds of the three wrk phases),
//! `BENCH_CONNECTIONS` (8), `BENCH_EF_SEARCH` (the service's
//! setting, 200), `BENCH_PENDING` (10000, the projector's default bound;
//! 0 skips step 4), `BENCH_WRK` (wrk's path).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use embeddings::Embedder;
use event_schema::{MemoryFacts, MemoryState, MemoryStatus};
use query_service::settings::Settings;
use query_service::startup::Application;
use read_model::documents::{Keys, Write, write_if_absent};
use second_brain_client::Mode;
use serde::Deserialize;
use service_kit::auth::{ApiKeyStore, UserId, issue_jwt};
use sqlx::{Connection, PgConnection, PgPool};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

const OWNER: &str = "bench-user";
const SECRET: &str = "a-bench-secret-that-is-long-enough-for-hs256";
const DOCUMENTS: usize = 1000;
const EF_SEARCH_SWEEP: &[u32] = &[40, 100, 200, 400];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Deserialize)]
struct Fixture {
    memories: Vec<FixtureMemory>,
    queries: Vec<FixtureQuery>,
}

#[derive(Deserialize)]
struct FixtureMemory {
    content: String,
}

#[derive(Deserialize)]
struct FixtureQuery {
    q: String,
}

/// xorshift64*: a reproducible stream without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A synthetic memory: three short runs of words from three random fixture
/// memories. Every text is about the fixture's topics, yet no two are near
/// copies of each other (pieces of the same few memories repeated over 100k
/// texts would make clusters of near-identical vectors that no index, nor
/// real notes, has).
fn synthesise(rng: &mut Rng, texts: &[String]) -> String {
    let mut words: Vec<&str> = Vec::with_capacity(20);
    for take in [4 + rng.below(5), 4 + rng.below(5), 3 + rng.below(4)] {
        let source: Vec<&str> = texts[rng.below(texts.len())].split_whitespace().collect();
        let start = rng.below(source.len().saturating_sub(take).max(1));
        words.extend(source.iter().skip(start).take(take));
    }
    words.join(" ")
}

/// Real embeddings of `texts`, cached on disk by a hash of the texts: the
/// first run embeds them all (about 100 texts/s here), later runs read them.
async fn embed_all(
    embedder: &Arc<dyn Embedder>,
    texts: &[String],
    cache_dir: &str,
) -> Vec<Vec<f32>> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(embedder.model_id().as_bytes());
    for text in texts {
        hasher.update(text.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hex::encode(&hasher.finalize()[..8]);
    let dim = embedder.dimension();
    let path =
        std::path::Path::new(cache_dir).join(format!("query-bench-{}-{digest}.f32", texts.len()));
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() == texts.len() * dim * 4
    {
        println!(
            "  vectors: {} from the cache {}",
            texts.len(),
            path.display()
        );
        return bytes
            .chunks_exact(dim * 4)
            .map(|row| {
                row.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            })
            .collect();
    }
    let started = Instant::now();
    let mut vectors = Vec::with_capacity(texts.len());
    for (i, chunk) in texts.chunks(64).enumerate() {
        vectors.extend(embedder.embed(chunk).await.unwrap());
        if (i + 1) % 160 == 0 {
            println!(
                "  embedded {} of {} ({:.0} texts/s)",
                vectors.len(),
                texts.len(),
                vectors.len() as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "  vectors: embedded {} in {:.0} s",
        texts.len(),
        started.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(cache_dir).unwrap();
    let bytes: Vec<u8> = vectors
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&path, bytes).unwrap();
    vectors
}

fn vector_text(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
    format!("[{}]", parts.join(","))
}

/// Inserts the corpus rows `range` for the bench user, 1,000 per statement.
async fn seed(
    pool: &PgPool,
    texts: &[String],
    vectors: &[Vec<f32>],
    range: std::ops::Range<usize>,
    model: &str,
) -> Vec<Uuid> {
    let count = range.len();
    let mut ids = Vec::with_capacity(count);
    let started = Instant::now();
    let base = chrono::Utc::now() - chrono::Duration::days(365);
    for chunk_start in range.clone().step_by(1000) {
        let n = (range.end - chunk_start).min(1000);
        let mut chunk_ids = Vec::with_capacity(n);
        let mut contents = Vec::with_capacity(n);
        let mut embeddings = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            chunk_ids.push(Uuid::now_v7());
            contents.push(texts[chunk_start + i].clone());
            embeddings.push(vector_text(&vectors[chunk_start + i]));
            times.push(base + chrono::Duration::seconds((chunk_start + i) as i64 * 60));
        }
        sqlx::query(
            "INSERT INTO memories (id, owner_id, content, tags, created_at, updated_at, version, embedding, embedding_model)
             SELECT id, $2, content, ARRAY['bench'], at, at, 1, embedding::vector, $3
               FROM unnest($1::uuid[], $4::text[], $5::timestamptz[], $6::text[]) AS t(id, content, at, embedding)",
        )
        .bind(&chunk_ids)
        .bind(OWNER)
        .bind(model)
        .bind(&contents)
        .bind(&times)
        .bind(&embeddings)
        .execute(pool)
        .await
        .unwrap();
        ids.extend(chunk_ids);
    }
    println!(
        "  seeded {count} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    ids
}

async fn build_indexes(pool: &PgPool, g: i32) {
    let started = Instant::now();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET maintenance_work_mem = '1GB'")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SELECT create_search_indexes($1)")
        .bind(g)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("ANALYZE memories_g2")
        .execute(&mut *conn)
        .await
        .unwrap();
    println!(
        "  indexes built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn drop_vector_index(pool: &PgPool) {
    sqlx::query(
        "DROP INDEX IF EXISTS memories_g2_embedding, memories_g2_search, memories_g2_content_trgm",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// Moves the newest `n` vectors to `pending_embedding`, where a full batch
/// writes them (ADR 21): outside the HNSW index, compared exactly by every
/// semantic and hybrid search. No projector runs here, so they stay pending.
async fn make_pending(pool: &PgPool, n: usize) {
    let started = Instant::now();
    let moved = sqlx::query(
        "UPDATE memories_g2 SET pending_embedding = embedding, embedding = NULL
          WHERE id IN (SELECT id FROM memories_g2 ORDER BY id DESC LIMIT $1)",
    )
    .bind(i64::try_from(n).unwrap())
    .execute(pool)
    .await
    .unwrap()
    .rows_affected();
    // The update leaves a dead version of every row it moved; vacuumed here,
    // so that the searches below do not meet them or an autovacuum worker.
    sqlx::query("VACUUM (ANALYZE) memories_g2")
        .execute(pool)
        .await
        .unwrap();
    println!(
        "  moved {moved} vectors to pending in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sequential requests, one at a time: milliseconds, sorted.
async fn latencies(client: &reqwest::Client, urls: &[String], token: &str) -> Vec<f64> {
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let started = Instant::now();
        let response = client.get(url).bearer_auth(token).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.bytes().await.unwrap();
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// The search-quality fixture's labelled queries in turn, `n` of them. The
/// service under test keeps one query embedding (`SB_QUERY_EMBEDDING_CACHE_SIZE`
/// = 1) and no query follows itself, so every one is embedded: the latency
/// of real queries, without the cache. (An earlier version appended a made-up
/// word to each query to defeat the cache; that added word pieces to every
/// embedding and a word no memory has to every keyword search.)
fn labelled_queries(fixture: &Fixture, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| fixture.queries[i % fixture.queries.len()].q.clone())
        .collect()
}

/// Distinct queries, the fixture's each with a varying word: probe vectors
/// for recall, where repeats would weigh some queries more.
fn distinct_queries(fixture: &Fixture, n: usize, salt: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let q = &fixture.queries[i % fixture.queries.len()].q;
            format!("{q} {salt}{i}")
        })
        .collect()
}

/// Search latency over HTTP through the client, one request at a time, each mode over the
/// labelled queries (every semantic and hybrid one embedded), beside the
/// query embedding alone and `/health/live` from the same client.
async fn search_latency(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    embedder: &Arc<dyn Embedder>,
    fixture: &Fixture,
    n: usize,
) {
    let report = |what: &str, sorted: &[f64]| {
        println!(
            "  {what:<44} p50 {:>6.1} ms, p95 {:>6.1} ms, p99 {:>6.1} ms",
            percentile(sorted, 0.5),
            percentile(sorted, 0.95),
            percentile(sorted, 0.99)
        );
    };
    let health: Vec<String> = (0..n).map(|_| format!("{base}/health/live")).collect();
    // Searches go through the typed client, as callers make them; no
    // retries, so a refusal fails the run instead of hiding in a latency.
    let api = second_brain_client::Client::builder(base, base)
        .token(token)
        .retry(second_brain_client::RetryPolicy::none())
        .build()
        .unwrap();
    searches(&api, labelled_queries(fixture, 5), Mode::Hybrid).await;
    report(
        "/health/live (baseline)",
        &latencies(client, &health, token).await,
    );
    let mut embedding = Vec::with_capacity(n);
    for q in labelled_queries(fixture, n) {
        let started = Instant::now();
        embedder.embed(&[q]).await.unwrap();
        embedding.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    embedding.sort_by(f64::total_cmp);
    report("query embedding alone (in-process)", &embedding);
    for mode in [Mode::Keyword, Mode::Semantic, Mode::Hybrid] {
        report(
            &format!("search mode={}, k=10", mode.as_str()),
            &searches(&api, labelled_queries(fixture, n), mode).await,
        );
    }
}

/// Sequential searches, one at a time: milliseconds, sorted.
async fn searches(api: &second_brain_client::Client, queries: Vec<String>, mode: Mode) -> Vec<f64> {
    let mut out = Vec::with_capacity(queries.len());
    for q in queries {
        let search = second_brain_client::Search {
            mode,
            k: Some(10),
            ..second_brain_client::Search::new(q)
        };
        let started = Instant::now();
        api.search(&search).await.unwrap();
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// recall@10 of the HNSW index against an exact scan, per `ef_search`.
async fn recall(url: &str, query_vectors: &[Vec<f32>], efs: &[u32]) {
    // Exact: the index disabled, on its own connection (a prepared plan
    // keeps the settings it was planned under).
    let mut exact_conn = PgConnection::connect(url).await.unwrap();
    sqlx::query("SET enable_indexscan = off")
        .execute(&mut exact_conn)
        .await
        .unwrap();
    let sql = "SELECT id FROM memories WHERE owner_id = $1 AND NOT deleted AND embedding IS NOT NULL \
               ORDER BY embedding <=> $2::text::vector LIMIT 10";
    let mut exact: Vec<Vec<Uuid>> = Vec::new();
    let started = Instant::now();
    for v in query_vectors {
        exact.push(
            sqlx::query_scalar(sql)
                .bind(OWNER)
                .bind(vector_text(v))
                .fetch_all(&mut exact_conn)
                .await
                .unwrap(),
        );
    }
    let exact_ms = started.elapsed().as_secs_f64() * 1000.0 / query_vectors.len() as f64;
    println!("  exact scan: {exact_ms:.1} ms per query");
    for &ef in efs {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::query(&format!("SET hnsw.ef_search = {ef}"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("SET hnsw.iterative_scan = relaxed_order")
            .execute(&mut conn)
            .await
            .unwrap();
        let mut found = 0usize;
        let mut times = Vec::new();
        for (v, truth) in query_vectors.iter().zip(&exact) {
            let started = Instant::now();
            let got: Vec<Uuid> = sqlx::query_scalar(sql)
                .bind(OWNER)
                .bind(vector_text(v))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            found += got.iter().filter(|id| truth.contains(id)).count();
        }
        times.sort_by(f64::total_cmp);
        let total: usize = exact.iter().map(Vec::len).sum();
        println!(
            "  ef_search {ef:>3}: recall@10 {:.3}, p50 {:.1} ms, p95 {:.1} ms (SQL only)",
            found as f64 / total as f64,
            percentile(&times, 0.5),
            percentile(&times, 0.95)
        );
    }
}

/// wrk against one URL: (requests/s, p99 ms).
fn wrk(wrk: &str, url: &str, script: &str, duration: u64, connections: u32) -> (f64, f64) {
    let output = Command::new(wrk)
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{duration}s"),
            "--latency",
            "-s",
            script,
            url,
        ])
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "wrk: {text}");
    assert!(!text.contains("Non-2xx"), "wrk saw errors: {text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .map(|v| v.trim().parse::<f64>().unwrap())
        .unwrap();
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| {
            let v = v.trim();
            if let Some(ms) = v.strip_suffix("ms") {
                ms.parse::<f64>().unwrap()
            } else if let Some(us) = v.strip_suffix("us") {
                us.parse::<f64>().unwrap() / 1000.0
            } else {
                v.trim_end_matches('s').parse::<f64>().unwrap() * 1000.0
            }
        })
        .unwrap();
    (rps, p99)
}

#[tokio::main]
async fn main() {
    let admin_url = std::env::var("BENCH_ADMIN_URL").expect("BENCH_ADMIN_URL");
    let redis_url = std::env::var("BENCH_REDIS_URL").expect("BENCH_REDIS_URL");
    let small: usize = env_or("BENCH_SMALL", 10_000);
    let large: usize = env_or("BENCH_LARGE", 100_000);
    let n_queries: usize = env_or("BENCH_QUERIES", 200);
    let duration: u64 = env_or("BENCH_DURATION", 10);
    let rounds: usize = env_or("BENCH_ROUNDS", 3usize).max(1);
    let connections: u32 = env_or("BENCH_CONNECTIONS", 8);
    let ef_search: u32 = env_or("BENCH_EF_SEARCH", 200);
    let pending: usize = env_or("BENCH_PENDING", 10_000);
    let wrk_bin = std::env::var("BENCH_WRK").unwrap_or_else(|_| "wrk".to_owned());
    let work = std::env::var("BENCH_WORK").unwrap_or_else(|_| "/tmp".to_owned());
    let cache_dir = std::env::var("BENCH_CACHE_DIR")
        .unwrap_or_else(|_| "/var/tmp/second-brain-bench".to_owned());

    let fixture: Fixture =
        serde_json::from_str(include_str!("../tests/fixtures/search-quality.json")).unwrap();
    let texts: Vec<String> = fixture.memories.iter().map(|m| m.content.clone()).collect();
    // The model, runtime, graph and library as the services read them (the
    // native stack's environment: ONNX Runtime).
    let settings: embeddings::EmbeddingSettings =
        service_kit::settings::from_env().expect("the SB_EMBEDDING_* variables are valid");
    let embedder: Arc<dyn Embedder> = embeddings::build(&settings.to_config().unwrap())
        .await
        .unwrap();
    let model = embedder.model_id().to_owned();
    let dimension = embedder.dimension();
    println!("embedder: {embedder:?}");
    let mut rng = Rng(0x5EED_CAFE_F00D_u64);
    let corpus: Vec<String> = (0..large.max(small))
        .map(|_| synthesise(&mut rng, &texts))
        .collect();
    let vectors = embed_all(&embedder, &corpus, &cache_dir).await;
    let recall_queries = distinct_queries(&fixture, n_queries, "recall");
    let query_vectors = embedder.embed(&recall_queries).await.unwrap();

    // A fresh database with the read-model migrations, generation 2 loaded
    // without its indexes, then indexed.
    let db = format!("bench_query_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let db_url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&db_url)
        .await
        .unwrap();
    read_model::MIGRATOR.run(&pool).await.unwrap();
    sqlx::query("SELECT drop_search_generation(1), create_search_generation(2, $1), activate_search_generation(2)")
        .bind(i32::try_from(dimension).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO projection_state (projection, generation, embedding_model, dimension)
         VALUES ('search', 2, $1, $2)
         ON CONFLICT (projection) DO UPDATE SET generation = 2, embedding_model = $1, dimension = $2",
    )
    .bind(&model)
    .bind(i32::try_from(dimension).unwrap())
    .execute(&pool)
    .await
    .unwrap();

    println!(
        "query-path benchmark: {small} then {large} memories, model {model}, ef_search {ef_search}"
    );
    println!("phase 1: {small} memories");
    let ids = seed(&pool, &corpus, &vectors, 0..small, &model).await;
    build_indexes(&pool, 2).await;

    // The event store, for the API key: the key is looked up there (and then
    // cached) as it would be in production.
    let events_db = format!("bench_events_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {events_db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let events_url = format!("{}/{events_db}", admin_url.rsplit_once('/').unwrap().0);
    let events_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&events_url)
        .await
        .unwrap();
    command_service::startup::MIGRATOR
        .run(&events_pool)
        .await
        .unwrap();
    let (_, api_key) = ApiKeyStore::new(events_pool.clone())
        .create(&UserId::parse(OWNER).unwrap(), "bench")
        .await
        .unwrap();

    // Redis documents for the GET-by-id load, under a bench prefix.
    let prefix = format!("bench:{}:", Uuid::new_v4().simple());
    let keys = Keys::new(prefix.clone());
    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let now = chrono::Utc::now();
    for id in ids.iter().take(DOCUMENTS) {
        let state = MemoryState {
            id: *id,
            owner_id: OWNER.to_owned(),
            facts: MemoryFacts {
                content: "A memory of about the usual size, read back by id over and over by the benchmark to measure the read path.".to_owned(),
                title: Some("Benchmark".to_owned()),
                tags: vec!["bench".to_owned()],
                metadata: serde_json::Map::new(),
                session_id: None,
                occurred_at: None,
                status: MemoryStatus::Active,
            },
            version: 1,
            created_at: now,
            updated_at: now,
        };
        write_if_absent(&mut redis, &keys, 1, Write::Memory(&state))
            .await
            .unwrap();
    }

    // The service, in-process, on a free port; and a second one without the
    // document cache, to measure reads that all go to Redis.
    let service = |cache_size: usize| -> Settings {
        service_kit::settings::from_vars([
            ("SB_QUERY_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("SB_READ_DATABASE_URL".to_owned(), db_url.clone()),
            // Only API keys and history read the event store; JWTs do not.
            ("SB_EVENT_STORE_READ_URL".to_owned(), events_url.clone()),
            ("SB_REDIS_URL".to_owned(), redis_url.clone()),
            ("SB_REDIS_KEY_PREFIX".to_owned(), prefix.clone()),
            ("SB_JWT_SECRET".to_owned(), SECRET.to_owned()),
            ("SB_QUERY_HNSW_EF_SEARCH".to_owned(), ef_search.to_string()),
            (
                "SB_QUERY_MAX_CONNECTIONS".to_owned(),
                connections.max(4).to_string(),
            ),
            (
                "SB_QUERY_DOCUMENT_CACHE_SIZE".to_owned(),
                cache_size.to_string(),
            ),
            // One entry: every search embeds its query (see labelled_queries).
            ("SB_QUERY_EMBEDDING_CACHE_SIZE".to_owned(), "1".to_owned()),
            // The load comes from one user at one address: measure the
            // read path, not the limiter's refusals.
            ("SB_RATE_LIMIT_USER_PER_SECOND".to_owned(), "0".to_owned()),
            ("SB_RATE_LIMIT_IP_PER_SECOND".to_owned(), "0".to_owned()),
        ])
        .unwrap()
    };
    let app = Application::build(&service(10_000), embedder.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let uncached = Application::build(&service(0), embedder.clone())
        .await
        .unwrap();
    let uncached_base = format!("http://127.0.0.1:{}", uncached.port());
    tokio::spawn(uncached.run_until_stopped());
    let token = issue_jwt(
        &secrecy::SecretString::from(SECRET),
        &UserId::parse(OWNER).unwrap(),
        chrono::Utc::now() + chrono::Duration::hours(2),
    )
    .unwrap();

    // GET by id against /health/live, both through wrk with the same script
    // shape: the id list and the header cost the baseline nothing extra.
    let id_list: Vec<String> = ids
        .iter()
        .take(DOCUMENTS)
        .map(|id| format!("\"{id}\""))
        .collect();
    let by_id_script = |name: &str, credential: &str| {
        let path = format!("{work}/{name}.lua");
        std::fs::write(
            &path,
            format!(
                "local ids = {{{}}}\nlocal n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format('GET', '/v1/memories/' .. ids[(n % #ids) + 1], {{['Authorization'] = 'Bearer {credential}'}})\nend\n",
                id_list.join(",")
            ),
        )
        .unwrap();
        path
    };
    let by_id = by_id_script("get-by-id", &token);
    let by_id_with_key = by_id_script("get-by-id-api-key", &api_key);
    let live = format!("{work}/health-live.lua");
    std::fs::write(
        &live,
        format!("request = function()\n  return wrk.format('GET', '/health/live', {{['Authorization'] = 'Bearer {token}'}})\nend\n"),
    )
    .unwrap();
    let client = reqwest::Client::new();
    latencies(&client, &[format!("{base}/v1/memories/{}", ids[0])], &token).await;
    // The API key, once verified, is served from the key cache; the wrk
    // phases below run long enough that the few lookups before its listener
    // subscribed do not show.
    latencies(
        &client,
        &[format!("{base}/v1/memories/{}", ids[0])],
        &api_key,
    )
    .await;
    // Rounds of the four, back to back, so that each ratio compares phases
    // that ran under the same conditions; the headline is the median.
    let (mut cached_ratios, mut key_ratios, mut uncached_ratios) =
        (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (live_rps, live_p99) = wrk(&wrk_bin, &base, &live, duration, connections);
        let (get_rps, get_p99) = wrk(&wrk_bin, &base, &by_id, duration, connections);
        let (key_rps, key_p99) = wrk(&wrk_bin, &base, &by_id_with_key, duration, connections);
        let (cold_rps, cold_p99) = wrk(&wrk_bin, &uncached_base, &by_id, duration, connections);
        cached_ratios.push(get_rps / live_rps);
        key_ratios.push(key_rps / live_rps);
        uncached_ratios.push(cold_rps / live_rps);
        println!(
            "  round {round}: /health/live {live_rps:.0} req/s (p99 {live_p99:.2} ms); GET by id, cache on: JWT {get_rps:.0} req/s (p99 {get_p99:.2} ms), ratio {:.2}; API key {key_rps:.0} req/s (p99 {key_p99:.2} ms), ratio {:.2}; cache off (JWT) {cold_rps:.0} req/s (p99 {cold_p99:.2} ms), ratio {:.2}",
            get_rps / live_rps,
            key_rps / live_rps,
            cold_rps / live_rps
        );
    }
    let median = |ratios: &mut Vec<f64>| {
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    println!(
        "  GET /v1/memories/{{id}} / /health/live, median of {rounds}: document cache on (the default) with a JWT {:.2}, with an API key {:.2}; cache off (every read from Redis, JWT) {:.2}",
        median(&mut cached_ratios),
        median(&mut key_ratios),
        median(&mut uncached_ratios)
    );

    search_latency(&client, &base, &token, &embedder, &fixture, n_queries).await;
    recall(&db_url, &query_vectors, EF_SEARCH_SWEEP).await;

    println!("phase 2: {large} memories");
    drop_vector_index(&pool).await;
    seed(&pool, &corpus, &vectors, small..large.max(small), &model).await;
    build_indexes(&pool, 2).await;
    search_latency(&client, &base, &token, &embedder, &fixture, n_queries).await;
    recall(&db_url, &query_vectors, EF_SEARCH_SWEEP).await;

    if pending > 0 {
        println!("phase 3: {large} memories, the newest {pending} of them pending");
        make_pending(&pool, pending).await;
        search_latency(&client, &base, &token, &embedder, &fixture, n_queries).await;
    }

    // Clean up.
    pool.close().await;
    events_pool.close().await;
    for db in [&db, &events_db] {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
    test_kit::redis::unlink_prefix(&mut redis, &prefix).await;
}

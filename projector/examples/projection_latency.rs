//! Client of `bench/projection-latency`: creates memories over HTTP at a fixed
//! rate and measures, for each, the time from the 201 response until
//! (a) its Redis document (version >= 1) exists and (b) its row is in the
//! `memories` view of the read database. Same-run baselines: a bare Redis
//! SET+GET, a Postgres INSERT+SELECT on the same servers, and one local
//! embedding of a single sentence.
//!
//! Environment (the script sets it):
//!   BENCH_COMMAND_URL  e.g. http://127.0.0.1:40123
//!   BENCH_API_KEY      an API key of the command service
//!   BENCH_COUNT        memories to create              (default 300)
//!   BENCH_RATE         creates per second              (default 20)
//!   BENCH_DEADLINE_MS  give up on one memory after it  (default 30000)
//!   BENCH_POLL_US      poll interval, microseconds      (default 1000)
//!   BENCH_EMBED=0      skip the embedding baseline
//!   SB_REDIS_URL, SB_REDIS_KEY_PREFIX, SB_READ_DATABASE_URL, SB_EMBEDDING_*
//!
//! Prints a table and `BENCH <name> n=.. missed=.. p50_us=.. p95_us=.. p99_us=.. max_us=..` lines.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use anyhow::Context;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

/// Summary of a set of durations, in microseconds.
struct Summary {
    n: usize,
    missed: usize,
    p50: u128,
    p95: u128,
    p99: u128,
    max: u128,
}

fn summarise(mut samples: Vec<Duration>, missed: usize) -> Summary {
    samples.sort();
    let at = |q: f64| -> u128 {
        if samples.is_empty() {
            return 0;
        }
        let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_micros()
    };
    Summary {
        n: samples.len(),
        missed,
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: samples.last().map_or(0, |d| d.as_micros()),
    }
}

fn report(name: &str, label: &str, s: &Summary) {
    println!(
        "BENCH {name} n={} missed={} p50_us={} p95_us={} p99_us={} max_us={}",
        s.n, s.missed, s.p50, s.p95, s.p99, s.max
    );
    let ms = |us: u128| us as f64 / 1000.0;
    eprintln!(
        "| {label:<44} | {:>5} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8.2} |",
        s.n,
        ms(s.p50),
        ms(s.p95),
        ms(s.p99),
        ms(s.max)
    );
}

async fn generation(redis: &mut ConnectionManager, prefix: &str) -> anyhow::Result<i64> {
    let g: Option<i64> = redis.get(format!("{prefix}documents:generation")).await?;
    Ok(g.unwrap_or(1))
}

/// Polls until the memory's Redis document has version >= 1.
async fn redis_visible(
    mut redis: ConnectionManager,
    key: String,
    poll: Duration,
    deadline: Instant,
) -> anyhow::Result<Option<Instant>> {
    loop {
        let doc: Option<String> = redis.get(&key).await?;
        if let Some(doc) = doc {
            let value: serde_json::Value = serde_json::from_str(&doc)?;
            if value.get("version").and_then(|v| v.as_u64()).unwrap_or(0) >= 1 {
                return Ok(Some(Instant::now()));
            }
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(poll).await;
    }
}

/// Polls until the memory's row is in the `memories` view.
async fn search_visible(
    pool: PgPool,
    id: Uuid,
    poll: Duration,
    deadline: Instant,
) -> anyhow::Result<Option<Instant>> {
    loop {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM memories WHERE id = $1")
            .bind(id)
            .fetch_optional(&pool)
            .await?;
        if found.is_some() {
            return Ok(Some(Instant::now()));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(poll).await;
    }
}

const WORDS: [&str; 24] = [
    "project", "meeting", "notes", "rust", "database", "latency", "coffee", "garden", "budget",
    "travel", "design", "review", "invoice", "kernel", "paper", "music", "dinner", "backup",
    "release", "draft", "idea", "question", "answer", "summary",
];

/// A unique sentence of ~18 words.
fn sentence(i: usize, salt: u64) -> String {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    let mut words = Vec::with_capacity(18);
    for _ in 0..16 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        words.push(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    format!("Memory {i} of run {salt:x}: {}.", words.join(" "))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command_url = env("BENCH_COMMAND_URL")?;
    let api_key = env("BENCH_API_KEY")?;
    let count: usize = env_or("BENCH_COUNT", 300);
    let rate: f64 = env_or("BENCH_RATE", 20.0);
    let deadline_ms: u64 = env_or("BENCH_DEADLINE_MS", 30_000);
    let poll = Duration::from_micros(env_or("BENCH_POLL_US", 1000));
    let prefix = std::env::var("SB_REDIS_KEY_PREFIX").unwrap_or_else(|_| "sb:".to_owned());
    let redis_client = redis::Client::open(env("SB_REDIS_URL")?)?;
    let mut redis = ConnectionManager::new(redis_client).await?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&env("SB_READ_DATABASE_URL")?)
        .await?;
    let http = reqwest::Client::new();
    let salt = std::process::id() as u64 ^ 0x5eed;

    eprintln!(
        "| {:<44} | {:>5} | {:>8} | {:>8} | {:>8} | {:>8} |",
        "measure (ms)", "n", "p50", "p95", "p99", "max"
    );
    eprintln!(
        "| {:-<44} | ----: | -------: | -------: | -------: | -------: |",
        ""
    );

    // Baselines -----------------------------------------------------------------
    let baseline_rounds = 1000;
    let mut samples = Vec::with_capacity(baseline_rounds);
    for i in 0..baseline_rounds + 100 {
        let key = format!("{prefix}bench:baseline:{i}");
        let body = sentence(i, salt);
        let t = Instant::now();
        let () = redis.set(&key, &body).await?;
        let back: Option<String> = redis.get(&key).await?;
        let elapsed = t.elapsed();
        anyhow::ensure!(back.as_deref() == Some(body.as_str()), "Redis lost a value");
        if i >= 100 {
            samples.push(elapsed);
        }
        let () = redis.del(&key).await?;
    }
    report(
        "redis_set_get",
        "baseline: Redis SET + GET (one round trip each)",
        &summarise(samples, 0),
    );

    let mut conn = pool.acquire().await?;
    sqlx::query("CREATE TEMP TABLE IF NOT EXISTS bench_baseline (id uuid PRIMARY KEY, content text NOT NULL)")
        .execute(&mut *conn)
        .await?;
    let mut samples = Vec::with_capacity(baseline_rounds);
    for i in 0..baseline_rounds + 100 {
        let id = Uuid::new_v4();
        let t = Instant::now();
        sqlx::query("INSERT INTO bench_baseline (id, content) VALUES ($1, $2)")
            .bind(id)
            .bind(sentence(i, salt))
            .execute(&mut *conn)
            .await?;
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM bench_baseline WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let elapsed = t.elapsed();
        anyhow::ensure!(found.is_some(), "Postgres lost a row");
        if i >= 100 {
            samples.push(elapsed);
        }
    }
    drop(conn);
    report(
        "pg_insert_select",
        "baseline: Postgres INSERT (autocommit) + SELECT",
        &summarise(samples, 0),
    );

    if std::env::var("BENCH_EMBED").as_deref() != Ok("0") {
        let settings: embeddings::EmbeddingSettings =
            service_kit::settings::from_env().context("embedding settings")?;
        let embedder = projector::cli::embedder(&settings).await?;
        let mut samples = Vec::new();
        for i in 0..60 {
            let text = vec![sentence(100_000 + i, salt)];
            let t = Instant::now();
            let vectors = embedder
                .embed(&text)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let elapsed = t.elapsed();
            anyhow::ensure!(vectors.len() == 1, "no vector");
            if i >= 10 {
                samples.push(elapsed);
            }
        }
        report(
            "embed_one",
            "baseline: local embedding of one sentence",
            &summarise(samples, 0),
        );
    }

    // Pipeline ------------------------------------------------------------------
    let g = generation(&mut redis, &prefix).await?;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut http_samples = Vec::with_capacity(count);
    let mut waiters = Vec::with_capacity(count);
    for i in 0..count {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let body = serde_json::json!({
            "content": sentence(i, salt),
            "tags": ["bench", format!("t{}", i % 7)],
            "metadata": {"source": "bench-projection-latency"}
        });
        let sent = Instant::now();
        let response = http
            .post(format!("{command_url}/v1/memories"))
            .bearer_auth(&api_key)
            .json(&body)
            .send()
            .await?;
        let answered = Instant::now();
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.as_u16() == 201, "create answered {status}: {text}");
        http_samples.push(answered - sent);
        let value: serde_json::Value = serde_json::from_str(&text)?;
        let id: Uuid = value
            .get("id")
            .and_then(|v| v.as_str())
            .context("no id in the 201 body")?
            .parse()?;
        let deadline = answered + Duration::from_millis(deadline_ms);
        let doc = tokio::spawn(redis_visible(
            redis.clone(),
            format!("{prefix}g{g}:memory:{id}"),
            poll,
            deadline,
        ));
        let row = tokio::spawn(search_visible(pool.clone(), id, poll, deadline));
        waiters.push((answered, doc, row));
    }
    let sending = started.elapsed();

    let (mut docs, mut rows) = (Vec::new(), Vec::new());
    let (mut docs_missed, mut rows_missed) = (0, 0);
    let mut doc_before_row = 0usize;
    for (answered, doc, row) in waiters {
        let doc = doc.await??;
        let row = row.await??;
        match doc {
            Some(at) => docs.push(at - answered),
            None => docs_missed += 1,
        }
        match row {
            Some(at) => rows.push(at - answered),
            None => rows_missed += 1,
        }
        if let (Some(d), Some(r)) = (doc, row)
            && d <= r
        {
            doc_before_row += 1;
        }
    }
    report(
        "http_create",
        "HTTP POST /v1/memories (201)",
        &summarise(http_samples, 0),
    );
    report(
        "redis_document",
        "201 -> Redis document visible",
        &summarise(docs, docs_missed),
    );
    report(
        "search_row",
        "201 -> search row visible (memories view)",
        &summarise(rows, rows_missed),
    );
    println!(
        "BENCH run count={count} rate={rate} achieved_rate={:.1} poll_us={} generation={g} doc_before_row={doc_before_row}",
        count as f64 / sending.as_secs_f64(),
        poll.as_micros()
    );
    // Leave nothing of ours behind in Redis (the script deletes the prefix too).
    Ok(())
}

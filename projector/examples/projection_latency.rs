//! Client of `bench/projection-latency`: creates memories over HTTP and
//! measures how soon the read models show them, and how fast the search
//! projection drains a backlog against the embedder's own batch rate.
//!
//! Same-run baselines: a bare Redis SET+GET, a Postgres INSERT+SELECT on the
//! same servers, one local embedding of a single sentence, and the batch
//! embedder's texts/s (calls of `SB_EMBEDDING_MAX_BATCH` texts and of
//! `BENCH_PROJECTOR_BATCH` texts, the most one projector batch can ask for;
//! the higher of the two is the throughput baseline).
//!
//! Phases:
//! - paced (`BENCH_COUNT` > 0): creates memories one at a time at
//!   `BENCH_RATE`/s and, for each, times the 201 until (a) its Redis document
//!   (version >= 1) exists and (b) its row is in the `memories` view; then
//!   compares the search lag of the first and last 10 % of creates, and
//!   samples the search queue's ready messages each second (growing backlog?);
//! - burst (`BENCH_BURST` = N > 0): creates N memories as fast as
//!   `BENCH_BURST_CLIENTS` concurrent HTTP clients can, then counts the rows
//!   in `memories` every 200 ms until all N are there; search-projection
//!   events/s = N / (last visible - first 201), and its ratio to the batch
//!   embedder's texts/s;
//! - backlog (`BENCH_PHASE`, run twice by the script around a projector
//!   restart): with the projector stopped, `backlog-write` creates
//!   `BENCH_BACKLOG` memories and waits until all are in the search queue;
//!   started with the projector, `backlog-drain` counts their rows until all
//!   are there: the search projection's own rate, nothing else writing;
//!   then waits until no vector is pending the index (ADR 21) and vacuums
//!   the table (*settled*: the deferred work done too).
//!
//! Environment (the script sets it):
//!   BENCH_COMMAND_URL     e.g. http://127.0.0.1:40123
//!   BENCH_API_KEY         an API key of the command service
//!   BENCH_COUNT           paced creates (0: no paced phase)  (default 300)
//!   BENCH_RATE            paced creates per second           (default 20)
//!   BENCH_DEADLINE_MS     give up on one memory after it     (default 30000)
//!   BENCH_POLL_US         poll interval, microseconds         (default 1000): one
//!                         query for all outstanding creates per interval
//!   BENCH_BURST           burst creates (0: no burst)         (default 0)
//!   BENCH_BURST_CLIENTS   concurrent clients of the burst     (default 4)
//!   BENCH_BURST_DEADLINE_S give up on the burst's drain after (default 900)
//!   BENCH_PHASE           `backlog-write` or `backlog-drain`: one half of
//!                         the backlog phase instead of the above
//!   BENCH_BACKLOG         the backlog's memories
//!   BENCH_EMBED_RATE      backlog-drain: the embedder's texts/s before the
//!                         phase; measured again after the drain, the ratio
//!                         is to the mean of the two
//!   BENCH_PROJECTOR_BATCH texts per call of the 2nd embedder baseline (default 64)
//!   BENCH_SEARCH_QUEUE    the search queue, sampled for its depth (optional)
//!   BENCH_PROJECTOR_URL   the projector, scraped for batch metrics (optional)
//!   BENCH_EMBED=0         skip the embedding baselines
//!   SB_REDIS_URL, SB_REDIS_KEY_PREFIX, SB_READ_DATABASE_URL, SB_RABBITMQ_URL,
//!   SB_EMBEDDING_*
//!
//! Prints a table and `BENCH <name> key=value ...` lines.
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

/// What one watched create resolves to: when it became visible, or `None`
/// past its deadline.
type Seen = tokio::sync::oneshot::Receiver<Option<Instant>>;

/// Where a watcher looks, for many creates at once.
#[derive(Clone)]
enum Target {
    /// Each memory's Redis document at version >= 1 (`MGET` of the keys).
    Documents {
        redis: ConnectionManager,
        prefix: String,
        generation: i64,
    },
    /// Each memory's row in the `memories` view (one `= ANY` query).
    Rows(PgPool),
}

impl Target {
    /// Which of `ids` are visible now.
    async fn visible(&self, ids: &[Uuid]) -> anyhow::Result<Vec<Uuid>> {
        match self {
            Self::Rows(pool) => Ok(sqlx::query_scalar(
                "SELECT id FROM memories WHERE id = ANY($1)",
            )
            .bind(ids)
            .fetch_all(pool)
            .await?),
            Self::Documents {
                redis,
                prefix,
                generation,
            } => {
                let keys: Vec<String> = ids
                    .iter()
                    .map(|id| format!("{prefix}g{generation}:memory:{id}"))
                    .collect();
                let docs: Vec<Option<String>> = redis.clone().mget(&keys).await?;
                let mut seen = Vec::new();
                for (id, doc) in ids.iter().zip(docs) {
                    let Some(doc) = doc else { continue };
                    let value: serde_json::Value = serde_json::from_str(&doc)?;
                    if value.get("version").and_then(|v| v.as_u64()).unwrap_or(0) >= 1 {
                        seen.push(*id);
                    }
                }
                Ok(seen)
            }
        }
    }
}

/// Watches every outstanding create with one query per `poll`, whatever
/// their number: a task polling per create would make the client's load
/// grow with the lag it measures (at 300 outstanding and 10 ms, 30,000
/// queries a second), and the lag feed itself.
struct Watcher {
    sender: tokio::sync::mpsc::UnboundedSender<(
        Uuid,
        Instant,
        tokio::sync::oneshot::Sender<Option<Instant>>,
    )>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Watcher {
    fn start(target: Target, poll: Duration) -> Self {
        let (sender, mut incoming) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut waiting: std::collections::HashMap<
                Uuid,
                (Instant, tokio::sync::oneshot::Sender<Option<Instant>>),
            > = std::collections::HashMap::new();
            loop {
                while let Ok((id, deadline, seen)) = incoming.try_recv() {
                    waiting.insert(id, (deadline, seen));
                }
                if waiting.is_empty() {
                    match incoming.recv().await {
                        Some((id, deadline, seen)) => {
                            waiting.insert(id, (deadline, seen));
                        }
                        None => return Ok(()),
                    }
                }
                let ids: Vec<Uuid> = waiting.keys().copied().collect();
                let visible = target.visible(&ids).await?;
                let now = Instant::now();
                for id in visible {
                    if let Some((_, seen)) = waiting.remove(&id) {
                        let _ = seen.send(Some(now));
                    }
                }
                let late: Vec<Uuid> = waiting
                    .iter()
                    .filter(|(_, (deadline, _))| now >= *deadline)
                    .map(|(id, _)| *id)
                    .collect();
                for id in late {
                    if let Some((_, seen)) = waiting.remove(&id) {
                        let _ = seen.send(None);
                    }
                }
                tokio::time::sleep(poll).await;
            }
        });
        Self { sender, task }
    }

    fn watch(&self, id: Uuid, deadline: Instant) -> Seen {
        let (seen, receiver) = tokio::sync::oneshot::channel();
        // A closed watcher (its task failed) resolves the receiver to an
        // error, which `finish` reports.
        let _ = self.sender.send((id, deadline, seen));
        receiver
    }

    /// Stops the watcher once every watched create is resolved.
    async fn finish(self) -> anyhow::Result<()> {
        drop(self.sender);
        self.task.await?
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

/// Samples the depth of the search queue (ready messages) once a second, and
/// the 1-minute load average, until dropped.
struct Sampler {
    samples: std::sync::Arc<std::sync::Mutex<Vec<(f64, u32, f64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    async fn start(queue: Option<String>, origin: Instant) -> anyhow::Result<Option<Self>> {
        let Some(queue) = queue else {
            return Ok(None);
        };
        let connection = lapin::Connection::connect(
            &env("SB_RABBITMQ_URL")?,
            lapin::ConnectionProperties::default(),
        )
        .await?;
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                // A passive declare answers the ready count; a failed one
                // closes its channel, so each sample takes a fresh one.
                let Ok(channel) = connection.create_channel().await else {
                    return;
                };
                let options = lapin::options::QueueDeclareOptions {
                    passive: true,
                    durable: true,
                    ..Default::default()
                };
                let Ok(declared) = channel
                    .queue_declare(
                        queue.as_str().into(),
                        options,
                        lapin::types::FieldTable::default(),
                    )
                    .await
                else {
                    return;
                };
                let _ = channel.close(200, "sampled".into()).await;
                let load = std::fs::read_to_string("/proc/loadavg")
                    .ok()
                    .and_then(|l| l.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0.0);
                out.lock().unwrap().push((
                    origin.elapsed().as_secs_f64(),
                    declared.message_count(),
                    load,
                ));
            }
        });
        Ok(Some(Self { samples, task }))
    }

    /// The samples taken since `from` seconds, and stops.
    fn finish(self, from: f64) -> Vec<(f64, u32, f64)> {
        self.task.abort();
        let samples = self.samples.lock().unwrap();
        samples.iter().copied().filter(|s| s.0 >= from).collect()
    }
}

/// Prints the queue-depth samples of a phase: first, max, last, the mean of
/// each half (a backlog that grows shows in the second), the load average.
fn report_queue(name: &str, samples: &[(f64, u32, f64)]) {
    if samples.is_empty() {
        return;
    }
    let half = samples.len() / 2;
    let mean = |s: &[(f64, u32, f64)]| {
        if s.is_empty() {
            0.0
        } else {
            s.iter().map(|x| f64::from(x.1)).sum::<f64>() / s.len() as f64
        }
    };
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let load_max = samples.iter().map(|s| s.2).fold(0.0, f64::max);
    println!(
        "BENCH {name}_queue samples={} first={} max={max} last={} mean_first_half={:.1} mean_second_half={:.1} load1_max={load_max:.2}",
        samples.len(),
        samples[0].1,
        samples[samples.len() - 1].1,
        mean(&samples[..half]),
        mean(&samples[half..]),
    );
}

struct Client {
    /// The typed client, without retries: a refused create is a failed
    /// run, not a delay folded into the latency.
    api: second_brain_client::Client,
    salt: u64,
}

impl Client {
    /// Creates memory `i`; its id and when the 201 arrived, with the time the
    /// request took.
    async fn create(&self, i: usize) -> anyhow::Result<(Uuid, Instant, Duration)> {
        self.create_tagged(i, &format!("t{}", i % 7)).await
    }

    /// Creates memory `i` with the tags `bench` and `tag`.
    async fn create_tagged(
        &self,
        i: usize,
        tag: &str,
    ) -> anyhow::Result<(Uuid, Instant, Duration)> {
        let mut memory = second_brain_client::NewMemory::new(sentence(i, self.salt));
        memory.tags = vec!["bench".into(), tag.into()];
        memory
            .metadata
            .insert("source".into(), "bench-projection-latency".into());
        let sent = Instant::now();
        let written = self.api.create_memory(&memory).await?;
        let answered = Instant::now();
        Ok((written.id, answered, answered - sent))
    }
}

/// Creates `n` memories (numbered from `first`, tagged `tag`) as fast as
/// `clients` concurrent clients can; when each 201 arrived.
async fn create_concurrently(
    client: &std::sync::Arc<Client>,
    clients: usize,
    n: usize,
    first: usize,
    tag: &'static str,
) -> anyhow::Result<Vec<Instant>> {
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            let mut i = c;
            while i < n {
                answered.push(client.create_tagged(first + i, tag).await?.1);
                i += clients;
            }
            anyhow::Ok(answered)
        }));
    }
    let mut answered = Vec::with_capacity(n);
    for task in tasks {
        answered.extend(task.await??);
    }
    Ok(answered)
}

/// The ready messages of `queue`.
async fn ready_messages(connection: &lapin::Connection, queue: &str) -> anyhow::Result<u32> {
    // A passive declare answers the count; a failed one closes its channel.
    let channel = connection.create_channel().await?;
    let options = lapin::options::QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(queue.into(), options, lapin::types::FieldTable::default())
        .await?;
    let _ = channel.close(200, "counted".into()).await;
    Ok(declared.message_count())
}

/// Backlog, first half (the projector stopped): creates `n` memories tagged
/// `backlog`, then waits until the relay has put every one in the search
/// queue.
async fn backlog_write(
    client: &std::sync::Arc<Client>,
    clients: usize,
    n: usize,
    queue: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    create_concurrently(client, clients, n, 2_000_000, "backlog").await?;
    let created = started.elapsed().as_secs_f64();
    let connection = lapin::Connection::connect(
        &env("SB_RABBITMQ_URL")?,
        lapin::ConnectionProperties::default(),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let ready = loop {
        let ready = ready_messages(&connection, queue).await?;
        if ready as usize >= n {
            break ready;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "backlog: only {ready} of {n} events reached {queue}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "BENCH backlog_written n={n} create_s={created:.2} queued_s={:.2} ready={ready}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Backlog, second half (started with the projector): counts the backlog's
/// rows in `memories` every 100 ms until all `n` are there. Events/s from
/// this client's start (the projector's start-up included) and from the
/// first row seen (consuming: what the projection does once it has work).
async fn backlog_drain(
    pool: &PgPool,
    n: usize,
    deadline: Duration,
    embed_rate: Option<f64>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut first: Option<(Instant, i64)> = None;
    let mut timeline = Vec::new();
    let last = loop {
        let visible: i64 =
            sqlx::query_scalar("SELECT count(*) FROM memories WHERE 'backlog' = ANY(tags)")
                .fetch_one(pool)
                .await?;
        let at = Instant::now();
        if visible > 0 && first.is_none() {
            first = Some((at, visible));
        }
        timeline.push(((at - started).as_secs_f64(), visible));
        if visible >= n as i64 {
            break at;
        }
        anyhow::ensure!(
            at - started < deadline,
            "backlog: only {visible} of {n} rows after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total = n as f64 / (last - started).as_secs_f64();
    let (first_at, first_rows) = first.context("no row seen")?;
    let consuming = (n as f64 - first_rows as f64) / (last - first_at).as_secs_f64().max(1e-9);
    eprintln!("backlog drain (s since the projector's start, rows visible):");
    let mut shown = -10.0;
    for &(t, visible) in &timeline {
        if t - shown >= 2.0 || visible >= n as i64 {
            eprintln!("  {t:7.1} {visible:7}");
            shown = t;
        }
    }
    // Searchable now; the vectors the backlog's batches left pending
    // (ADR 21) are indexed once the projection is idle. Waited for, and
    // timed, before the embedder is measured again: the indexer's work
    // would slow the embedder and flatter the ratio.
    let indexed_at = loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM memories WHERE pending_embedding IS NOT NULL")
                .fetch_one(pool)
                .await?;
        let at = Instant::now();
        if pending == 0 {
            break at;
        }
        anyhow::ensure!(
            at - started < deadline,
            "backlog: {pending} vectors still pending after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Indexing made a new version of each row it moved; the old ones are
    // vacuumed here, timed, rather than by an autovacuum worker in the
    // middle of the next measurement. (With every batch indexing at once,
    // this vacuum has little to do: the backlog only inserted.)
    let g: i32 =
        sqlx::query_scalar("SELECT generation FROM projection_state WHERE projection = 'search'")
            .fetch_one(pool)
            .await?;
    sqlx::query(&format!("VACUUM (ANALYZE) memories_g{g}"))
        .execute(pool)
        .await?;
    let vacuumed_at = Instant::now();
    // The embedder again, once the projector and Postgres are idle: the
    // machine's speed drifts over a run, so the ratio is to the mean of
    // the rate before the phase and this one.
    let embed_rate = match embed_rate {
        Some(before) if std::env::var("BENCH_EMBED").as_deref() != Ok("0") => {
            let settings: embeddings::EmbeddingSettings =
                service_kit::settings::from_env().context("embedding settings")?;
            let embedder = projector::cli::embedder(&settings).await?;
            let size = env_or("BENCH_PROJECTOR_BATCH", 64);
            let after = embed_batches(&*embedder, size, 7).await?;
            println!("BENCH embed_after texts_per_s={after:.1} before={before:.1}");
            Some((before + after) / 2.0)
        }
        other => other,
    };
    // From the start to the end of the deferred work too: every vector
    // indexed and the old row versions vacuumed.
    let settled = n as f64 / (vacuumed_at - started).as_secs_f64();
    let ratio =
        |rate: f64| embed_rate.map_or_else(|| "n/a".to_owned(), |r| format!("{:.2}", rate / r));
    println!(
        "BENCH backlog n={n} first_row_s={:.2} drain_s={:.2} indexed_s={:.2} vacuumed_s={:.2} events_per_s={total:.1} consuming_events_per_s={consuming:.1} settled_events_per_s={settled:.1} ratio_to_embedder={} consuming_ratio_to_embedder={} settled_ratio_to_embedder={}",
        (first_at - started).as_secs_f64(),
        (last - started).as_secs_f64(),
        (indexed_at - started).as_secs_f64(),
        (vacuumed_at - started).as_secs_f64(),
        ratio(total),
        ratio(consuming),
        ratio(settled),
    );
    if let Ok(url) = std::env::var("BENCH_PROJECTOR_URL")
        && let Some(metrics) = scrape(&url).await
    {
        for line in metrics.lines() {
            println!("METRIC {line}");
        }
    }
    Ok(())
}

/// The batch embedder's texts/s on calls of `size` texts of the same kind as
/// the bench's memories, after one warm-up call.
async fn embed_batches(
    embedder: &dyn embeddings::Embedder,
    size: usize,
    salt: u64,
) -> anyhow::Result<f64> {
    let texts = |call: usize| -> Vec<String> {
        (0..size)
            .map(|j| sentence(200_000 + call * size + j, salt))
            .collect()
    };
    embedder
        .embed(&texts(0))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let calls = (1536 / size).max(3);
    let started = Instant::now();
    for call in 1..=calls {
        let vectors = embedder
            .embed(&texts(call))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(vectors.len() == size, "too few vectors");
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = (calls * size) as f64 / secs;
    println!(
        "BENCH embed_batch size={size} texts={} secs={secs:.3} texts_per_s={rate:.1}",
        calls * size
    );
    Ok(rate)
}

/// The projector's batch metrics, if it exposes them: (sum, count) of each
/// `<metric>_sum` / `_count` line for the search projection.
async fn scrape(url: &str) -> Option<String> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let wanted = [
        "projector_batch_events",
        "projector_batch_stage_seconds",
        "embedding_duration_seconds",
        "embedding_texts",
        "embedding_cache_store_seconds",
        "events_projected_total",
    ];
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| wanted.iter().any(|w| l.starts_with(w)))
        .filter(|l| !l.contains("_bucket"))
        .collect();
    Some(lines.join("\n"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = env_or("BENCH_COUNT", 300);
    let rate: f64 = env_or("BENCH_RATE", 20.0);
    let deadline_ms: u64 = env_or("BENCH_DEADLINE_MS", 30_000);
    let poll = Duration::from_micros(env_or("BENCH_POLL_US", 1000));
    let burst: usize = env_or("BENCH_BURST", 0);
    let burst_clients: usize = env_or::<usize>("BENCH_BURST_CLIENTS", 4).max(1);
    let burst_deadline = Duration::from_secs(env_or("BENCH_BURST_DEADLINE_S", 900));
    let projector_batch: usize = env_or("BENCH_PROJECTOR_BATCH", 64);
    let search_queue = std::env::var("BENCH_SEARCH_QUEUE").ok();
    let projector_url = std::env::var("BENCH_PROJECTOR_URL").ok();
    let prefix = std::env::var("SB_REDIS_KEY_PREFIX").unwrap_or_else(|_| "sb:".to_owned());
    let redis_client = redis::Client::open(env("SB_REDIS_URL")?)?;
    let mut redis = ConnectionManager::new(redis_client).await?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&env("SB_READ_DATABASE_URL")?)
        .await?;
    let command_url = env("BENCH_COMMAND_URL")?;
    let client = std::sync::Arc::new(Client {
        // Only commands go through it: the query URL is never called.
        api: second_brain_client::Client::builder(command_url.clone(), command_url)
            .token(env("BENCH_API_KEY")?)
            .retry(second_brain_client::RetryPolicy::none())
            .build()?,
        salt: std::process::id() as u64 ^ 0x5eed,
    });
    let salt = client.salt;
    match std::env::var("BENCH_PHASE").as_deref() {
        Ok("backlog-write") => {
            let queue = search_queue.context("BENCH_SEARCH_QUEUE names the search queue")?;
            return backlog_write(&client, burst_clients, env_or("BENCH_BACKLOG", 0), &queue).await;
        }
        Ok("backlog-drain") => {
            let rate = std::env::var("BENCH_EMBED_RATE")
                .ok()
                .and_then(|r| r.parse().ok());
            return backlog_drain(&pool, env_or("BENCH_BACKLOG", 0), burst_deadline, rate).await;
        }
        _ => {}
    }

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

    let mut embed_rate = None;
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
        let mut best: f64 = 0.0;
        let mut sizes = vec![settings.embedding_max_batch, projector_batch];
        sizes.dedup();
        for size in sizes {
            best = best.max(embed_batches(&*embedder, size, salt).await?);
        }
        println!("BENCH embed_baseline texts_per_s={best:.1}");
        embed_rate = Some(best);
        // The model's sessions go before the projector needs the cores.
        drop(embedder);
    }

    let origin = Instant::now();
    let sampler = Sampler::start(search_queue, origin).await?;

    // Paced phase ---------------------------------------------------------------
    if count > 0 {
        let phase_start = origin.elapsed().as_secs_f64();
        let g = generation(&mut redis, &prefix).await?;
        let interval = Duration::from_secs_f64(1.0 / rate);
        let started = Instant::now();
        let mut http_samples = Vec::with_capacity(count);
        let mut waiters = Vec::with_capacity(count);
        let documents = Watcher::start(
            Target::Documents {
                redis: redis.clone(),
                prefix: prefix.clone(),
                generation: g,
            },
            poll,
        );
        let search_rows = Watcher::start(Target::Rows(pool.clone()), poll);
        for i in 0..count {
            let due = started + interval * i as u32;
            tokio::time::sleep_until(due.into()).await;
            let (id, answered, took) = client.create(i).await?;
            http_samples.push(took);
            let deadline = answered + Duration::from_millis(deadline_ms);
            let doc = documents.watch(id, deadline);
            let row = search_rows.watch(id, deadline);
            waiters.push((answered, doc, row));
        }
        let sending = started.elapsed();

        let (mut docs, mut rows) = (Vec::new(), Vec::new());
        let (mut docs_missed, mut rows_missed) = (0, 0);
        let mut doc_before_row = 0usize;
        // The search lag of each create, in order (a miss counts as the deadline).
        let mut lags = Vec::with_capacity(count);
        for (answered, doc, row) in waiters {
            let (doc, row) = match (doc.await, row.await) {
                (Ok(doc), Ok(row)) => (doc, row),
                // A watcher stopped early: its error says why.
                _ => break,
            };
            match doc {
                Some(at) => docs.push(at - answered),
                None => docs_missed += 1,
            }
            match row {
                Some(at) => {
                    rows.push(at - answered);
                    lags.push(at - answered);
                }
                None => {
                    rows_missed += 1;
                    lags.push(Duration::from_millis(deadline_ms));
                }
            }
            if let (Some(d), Some(r)) = (doc, row)
                && d <= r
            {
                doc_before_row += 1;
            }
        }
        documents.finish().await.context("watching the documents")?;
        search_rows
            .finish()
            .await
            .context("watching the search rows")?;
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
        let tenth = (count / 10).max(1);
        let first = summarise(lags[..tenth].to_vec(), 0);
        let last = summarise(lags[count - tenth..].to_vec(), 0);
        println!(
            "BENCH search_lag_tenths first_p50_us={} first_p99_us={} last_p50_us={} last_p99_us={}",
            first.p50, first.p99, last.p50, last.p99
        );
        // Every tenth, in order: a backlog that grows shows as a lag that
        // keeps rising from tenth to tenth, where a steady state levels off.
        let by_tenth: Vec<Summary> = lags
            .chunks(tenth)
            .take(10)
            .map(|c| summarise(c.to_vec(), 0))
            .collect();
        let ms = |pick: fn(&Summary) -> u128| {
            by_tenth
                .iter()
                .map(|s| (pick(s) / 1000).to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "BENCH search_lag_by_tenth p50_ms={} p99_ms={}",
            ms(|s| s.p50),
            ms(|s| s.p99)
        );
        println!(
            "BENCH run count={count} rate={rate} achieved_rate={:.1} poll_us={} generation={g} doc_before_row={doc_before_row}",
            count as f64 / sending.as_secs_f64(),
            poll.as_micros()
        );
        if let Some(sampler) = &sampler {
            let samples = sampler.samples.lock().unwrap().clone();
            let phase: Vec<_> = samples.into_iter().filter(|s| s.0 >= phase_start).collect();
            report_queue("paced", &phase);
        }
    }

    // Burst phase ---------------------------------------------------------------
    if burst > 0 {
        let phase_start = origin.elapsed().as_secs_f64();
        let before: i64 = sqlx::query_scalar("SELECT count(*) FROM memories")
            .fetch_one(&pool)
            .await?;
        let started = Instant::now();
        let answered =
            create_concurrently(&client, burst_clients, burst, 1_000_000, "burst").await?;
        let first_201 = answered.iter().min().copied().context("no 201")?;
        let last_201 = answered.iter().max().copied().context("no 201")?;
        let create_secs = (last_201 - started).as_secs_f64();
        eprintln!(
            "burst: {burst} creates by {burst_clients} clients in {create_secs:.2} s ({:.0}/s); draining",
            burst as f64 / create_secs
        );
        // Rows visible over time, sampled every 200 ms.
        let mut timeline: Vec<(f64, i64)> = Vec::new();
        let mut first_visible = None;
        let last_visible = loop {
            let now: i64 = sqlx::query_scalar("SELECT count(*) FROM memories")
                .fetch_one(&pool)
                .await?;
            let visible = now - before;
            let at = Instant::now();
            if visible > 0 && first_visible.is_none() {
                first_visible = Some(at);
            }
            timeline.push(((at - first_201).as_secs_f64(), visible));
            if visible >= burst as i64 {
                break at;
            }
            anyhow::ensure!(
                at - last_201 < burst_deadline,
                "burst: only {visible} of {burst} rows after {burst_deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let drain = (last_visible - first_201).as_secs_f64();
        let events_per_s = burst as f64 / drain;
        // The steady part: from the first row to the last, what the
        // projection did once it had work.
        let steady = first_visible.map_or(drain, |f| (last_visible - f).as_secs_f64());
        eprintln!(
            "burst drain (s since the first 201, rows visible, rows/s since the previous line):"
        );
        let mut previous = (0.0, 0i64);
        for &(t, visible) in &timeline {
            if t - previous.0 >= 2.0 || visible >= burst as i64 {
                eprintln!(
                    "  {t:7.1} {visible:7} {:7.1}",
                    (visible - previous.1) as f64 / (t - previous.0)
                );
                previous = (t, visible);
            }
        }
        println!(
            "BENCH burst n={burst} clients={burst_clients} create_s={create_secs:.2} drain_s={drain:.2} events_per_s={events_per_s:.1} steady_events_per_s={:.1} ratio_to_embedder={}",
            burst as f64 / steady.max(1e-9),
            embed_rate.map_or_else(|| "n/a".to_owned(), |r| format!("{:.2}", events_per_s / r)),
        );
        if let Some(sampler) = &sampler {
            let samples = sampler.samples.lock().unwrap().clone();
            let phase: Vec<_> = samples.into_iter().filter(|s| s.0 >= phase_start).collect();
            report_queue("burst", &phase);
        }
    }
    if let Some(sampler) = sampler {
        sampler.finish(0.0);
    }
    if let Some(url) = projector_url
        && let Some(metrics) = scrape(&url).await
    {
        for line in metrics.lines() {
            println!("METRIC {line}");
        }
    }
    // Leave nothing of ours behind in Redis (the script deletes the prefix too).
    Ok(())
}

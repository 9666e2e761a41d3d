//! Tool-call latency: `recall` over streamable HTTP against the same search
//! sent straight to `/v1/search` through the typed client, in one run (run
//! by `bench/mcp-latency`, which builds this in release).
//!
//! 1. Starts the whole stack in this process on its own databases, queues
//!    and Redis prefix (`test_kit::stack::spawn_query_stack`), seeds
//!    `BENCH_MEMORIES` short notes for one user through the client (created
//!    concurrently, a bounded number in flight), and waits until a list with
//!    `wait_for` the last write sees every one of them.
//! 2. Starts the MCP server in this process on port 0 and connects rmcp's
//!    streamable HTTP client with the user's bearer token.
//! 3. Warms both paths up, then measures `BENCH_QUERIES` calls per path,
//!    hybrid, k = 10, one call at a time, the paths interleaved call by call
//!    (MCP, direct, MCP, direct, …) so load and caches fall on both alike.
//!    Every query is new to the run: the query service caches query
//!    embeddings, and a repeat would skip the embedding on one path only.
//! 4. Checks that both paths answer the same hits, in the same order, for
//!    the same queries (a separate small set, after the measurement).
//! 5. Prints p50/p95/p99/mean per path, the MCP/direct ratios and the
//!    overhead in ms; dropping the stack removes its databases, queues and
//!    keys.
//!
//! Environment: the native stack's `SB_TEST_*` and `SB_EMBEDDING_*`
//! variables (the stack runs against them), `BENCH_MEMORIES` (2000),
//! `BENCH_QUERIES` (300; at most ~1,100: the generator makes 2,275 distinct
//! questions and a run asks 2 × `BENCH_QUERIES` + 60).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use second_brain_client::{Client, ListOptions, Mode, NewMemory, Search, Written};
use second_brain_mcp::settings::{LogFormat, Settings};
use second_brain_mcp::startup::Application;
use second_brain_mcp::telemetry;
use serde_json::json;
use test_kit::stack::{Stack, spawn_query_stack};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// The one user every note belongs to.
const USER: &str = "bench-mcp";
/// Calls per path before the measurement.
const WARMUP: usize = 20;
/// Queries sent through both paths to compare their hits.
const SAME_QUERIES: usize = 20;
const K: u32 = 10;
/// Creates in flight while seeding.
const IN_FLIGHT: usize = 16;
/// The largest page the query service lists.
const PAGE: u32 = 200;
/// How long the read side may take to catch up with the seeding.
const CATCH_UP: Duration = Duration::from_secs(300);

/// An MCP client session of the user.
type Agent = RunningService<RoleClient, ()>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_logging(LogFormat::Json);
    let memories = env_or("BENCH_MEMORIES", 2000)?;
    let queries = env_or("BENCH_QUERIES", 300)?;
    ensure!(memories >= 1, "BENCH_MEMORIES must be at least 1");

    let stack = spawn_query_stack().await;
    let token = stack.token(USER);
    let client = Client::builder(stack.command.clone(), stack.query())
        .token(token.clone())
        .build()
        .context("the typed client")?;

    let started = Instant::now();
    seed(&client, memories).await?;
    println!(
        "seeded {memories} memories in {:.1} s (all searchable)",
        started.elapsed().as_secs_f64()
    );

    let (stop, stopped) = oneshot::channel::<()>();
    let (url, server) = spawn_mcp(&stack, stopped).await?;
    let agent = connect(&url, token).await?;

    let mut questions = Questions::new(0x5EC0_4DB4);
    for _ in 0..WARMUP {
        recall(&agent, &questions.ask()?).await?;
        search(&client, &questions.ask()?).await?;
    }

    let mut mcp = Latencies::default();
    let mut direct = Latencies::default();
    for _ in 0..queries {
        let started = Instant::now();
        let hits = recall(&agent, &questions.ask()?).await?;
        mcp.record(started.elapsed(), hits.len());
        let started = Instant::now();
        let hits = search(&client, &questions.ask()?).await?;
        direct.record(started.elapsed(), hits.len());
    }

    let matched = same_hits(&agent, &client, &mut questions).await?;
    report(memories, queries, &mcp, &direct, matched);

    agent.cancel().await.context("closing the MCP session")?;
    drop(stop);
    server
        .await
        .context("the MCP server's task")?
        .context("the MCP server")?;
    Ok(())
}

fn env_or(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name} must be a whole number, not {value:?}")),
        Err(_) => Ok(default),
    }
}

/// Creates `count` notes, all but the last concurrently, and the last once
/// every other has answered, so the read side holds them all by the time
/// it holds the last one (the relay publishes in commit order). Then waits
/// for it and counts them.
async fn seed(client: &Client, count: usize) -> anyhow::Result<()> {
    let mut notes = Notes::new(0x0A7E_5EED);
    let mut in_flight = JoinSet::new();
    for _ in 1..count {
        if in_flight.len() == IN_FLIGHT {
            created(in_flight.join_next().await)?;
        }
        let client = client.clone();
        let note = notes.note();
        in_flight.spawn(async move { client.create_memory(&note).await });
    }
    while let Some(done) = in_flight.join_next().await {
        created(Some(done))?;
    }
    let last = client
        .create_memory(&notes.note())
        .await
        .context("creating the last note")?;
    wait_for(client, last).await?;
    let seen = count_memories(client).await?;
    ensure!(
        seen == count,
        "the list holds {seen} of the {count} notes once it holds the last one"
    );
    Ok(())
}

/// One finished create of the seeding, or its failure.
fn created(
    done: Option<Result<Result<Written, second_brain_client::Error>, tokio::task::JoinError>>,
) -> anyhow::Result<()> {
    done.context("no create in flight")?
        .context("a create's task")?
        .context("creating a note")?;
    Ok(())
}

/// A list that waits for `write`, asked again while the service answers
/// that it is not there yet (each ask waits inside the service, up to its
/// consistency timeout).
async fn wait_for(client: &Client, write: Written) -> anyhow::Result<()> {
    let options = ListOptions {
        limit: Some(1),
        wait_for: Some(write),
        ..ListOptions::default()
    };
    let deadline = Instant::now() + CATCH_UP;
    loop {
        match client.list_memories(&options).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some("not_yet_consistent") && Instant::now() < deadline => {}
            Err(e) => return Err(e).context("waiting for the last note to be listed"),
        }
    }
}

async fn count_memories(client: &Client) -> anyhow::Result<usize> {
    let mut options = ListOptions {
        limit: Some(PAGE),
        ..ListOptions::default()
    };
    let mut count = 0;
    loop {
        let page = client
            .list_memories(&options)
            .await
            .context("listing the notes")?;
        count += page.items.len();
        match page.next_cursor {
            Some(cursor) => options.cursor = Some(cursor),
            None => return Ok(count),
        }
    }
}

/// The MCP server on a free port in front of `stack`, serving until
/// `stopped` completes (or its sender is dropped).
async fn spawn_mcp(
    stack: &Stack,
    stopped: oneshot::Receiver<()>,
) -> anyhow::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let settings = Settings::from_vars([
        ("SB_MCP_BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("SB_COMMAND_URL".to_owned(), stack.command.clone()),
        ("SB_QUERY_URL".to_owned(), stack.query().to_owned()),
    ])
    .context("the MCP server's settings")?;
    let app = Application::build(&settings)
        .await
        .context("starting the MCP server")?;
    let url = format!("http://127.0.0.1:{}/mcp", app.port());
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    Ok((url, server))
}

async fn connect(url: &str, token: String) -> anyhow::Result<Agent> {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .context("connecting to the MCP server")
}

/// The hit ids of one `recall` tool call.
async fn recall(agent: &Agent, query: &str) -> anyhow::Result<Vec<String>> {
    let arguments = json!({"query": query, "mode": "hybrid", "k": K})
        .as_object()
        .cloned()
        .context("the arguments are a JSON object")?;
    let result = agent
        .call_tool(CallToolRequestParams::new("recall").with_arguments(arguments))
        .await
        .context("calling recall")?;
    if result.is_error == Some(true) {
        bail!("recall answered a tool error: {:?}", result.content);
    }
    let answer = result
        .structured_content
        .context("recall answered no structured content")?;
    answer["hits"]
        .as_array()
        .context("recall answered no hits")?
        .iter()
        .map(|hit| {
            hit["id"]
                .as_str()
                .map(str::to_owned)
                .context("a hit without an id")
        })
        .collect()
}

/// The hit ids of one `/v1/search` through the typed client.
async fn search(client: &Client, query: &str) -> anyhow::Result<Vec<String>> {
    let search = Search {
        mode: Mode::Hybrid,
        k: Some(K),
        ..Search::new(query)
    };
    let results = client.search(&search).await.context("searching")?;
    Ok(results.hits.iter().map(|hit| hit.id.to_string()).collect())
}

/// Sends each of [`SAME_QUERIES`] new queries through both paths and fails
/// unless they answer the same ids in the same order; returns how many
/// matched.
async fn same_hits(
    agent: &Agent,
    client: &Client,
    questions: &mut Questions,
) -> anyhow::Result<usize> {
    let mut matched = 0;
    for _ in 0..SAME_QUERIES {
        let query = questions.ask()?;
        let through_mcp = recall(agent, &query).await?;
        let direct = search(client, &query).await?;
        ensure!(
            through_mcp == direct,
            "{query:?}: recall answered {through_mcp:?}, /v1/search {direct:?}"
        );
        ensure!(!direct.is_empty(), "{query:?}: no hits on either path");
        matched += 1;
    }
    Ok(matched)
}

/// One path's latencies and hits.
#[derive(Debug, Default)]
struct Latencies {
    latencies: Vec<Duration>,
    hits: usize,
}

impl Latencies {
    fn record(&mut self, latency: Duration, hits: usize) {
        self.latencies.push(latency);
        self.hits += hits;
    }

    fn summary(&self) -> Summary {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // Nearest rank: the smallest latency at or above `p` of the calls.
        let at = |p: f64| {
            let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            ms(sorted[rank - 1])
        };
        let total: Duration = sorted.iter().sum();
        Summary {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            mean: ms(total) / sorted.len() as f64,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Summary {
    p50: f64,
    p95: f64,
    p99: f64,
    mean: f64,
}

fn report(memories: usize, queries: usize, mcp: &Latencies, direct: &Latencies, matched: usize) {
    if queries == 0 {
        println!("no calls measured (BENCH_QUERIES=0)");
        return;
    }
    let (m, d) = (mcp.summary(), direct.summary());
    println!();
    println!(
        "{memories} memories, {queries} calls per path, hybrid, k={K}, one at a time, interleaved"
    );
    println!(
        "| path | p50 ms | p95 ms | p99 ms | mean ms | hits (per call) |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for (name, s, path) in [("MCP `recall`", m, mcp), ("direct `/v1/search`", d, direct)] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {} ({:.1}) |",
            s.p50,
            s.p95,
            s.p99,
            s.mean,
            path.hits,
            path.hits as f64 / queries as f64
        );
    }
    println!();
    println!(
        "MCP/direct: p50 {:.2}x, p95 {:.2}x; overhead (MCP p50 - direct p50) {:.2} ms",
        m.p50 / d.p50,
        m.p95 / d.p95,
        m.p50 - d.p50
    );
    println!("same hits in the same order on both paths: {matched} of {SAME_QUERIES} queries");
}

/// xorshift64*: a reproducible stream without another dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[(self.next_u64() % words.len() as u64) as usize]
    }
}

const PEOPLE: &[&str] = &[
    "Anna", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Keiko",
    "Liam", "Maya", "Nico", "Olga", "Priya", "Ravi", "Sofia", "Tom", "Yusuf",
];
const TOPICS: &[&str] = &[
    "budget",
    "roadmap",
    "offsite",
    "hiring plan",
    "database migration",
    "launch",
    "quarterly review",
    "garden",
    "kitchen renovation",
    "summer trip",
    "tax return",
    "school fees",
    "marathon training",
    "wedding",
    "car insurance",
    "mortgage",
    "book club",
    "dentist visit",
    "security audit",
    "newsletter",
];
const ARTIFACTS: &[&str] = &[
    "draft",
    "slides",
    "invoice",
    "contract",
    "spreadsheet",
    "checklist",
    "estimate",
    "receipt",
    "timeline",
    "shopping list",
    "floor plan",
    "itinerary",
    "report",
    "photos",
    "form",
];
const THINGS: &[&str] = &[
    "boiler",
    "bike lights",
    "spare key",
    "passport",
    "printer",
    "router",
    "dishwasher",
    "winter tyres",
    "smoke alarm",
    "laptop charger",
    "garage door",
    "fridge",
    "headphones",
    "tent",
    "drill",
];
const PLACES: &[&str] = &[
    "the hallway drawer",
    "the attic",
    "the blue box in the garage",
    "the office",
    "my backpack",
    "the car's glovebox",
    "the kitchen shelf",
    "the basement",
    "the desk at work",
    "grandma's house",
];
const WHEN: &[&str] = &[
    "on Monday",
    "before Friday",
    "next week",
    "at the end of the month",
    "after the holidays",
    "tomorrow morning",
    "by Thursday",
    "in March",
    "this weekend",
    "before the board meeting",
];
const FOODS: &[&str] = &[
    "lunch", "dinner", "brunch", "coffee", "dessert", "sushi", "pizza", "curry", "tapas", "ramen",
];
const ADVICE: &[&str] = &[
    "keep it short",
    "ask for a discount",
    "book early",
    "check the warranty",
    "get a second quote",
    "start with the numbers",
    "bring the old one",
    "call before noon",
    "write it down",
    "ask the neighbours",
];

/// Short notes of the kind people keep: who said what, where things are,
/// what is due when. Reproducible from the seed.
#[derive(Debug)]
struct Notes {
    rng: Rng,
}

impl Notes {
    fn new(seed: u64) -> Self {
        Self { rng: Rng(seed) }
    }

    fn note(&mut self) -> NewMemory {
        let r = &mut self.rng;
        let content = match r.next_u64() % 8 {
            0 => format!(
                "{} said the {} {} is due {}; {}.",
                r.pick(PEOPLE),
                r.pick(TOPICS),
                r.pick(ARTIFACTS),
                r.pick(WHEN),
                r.pick(ADVICE)
            ),
            1 => format!(
                "The {} is in {}, next to the {}.",
                r.pick(THINGS),
                r.pick(PLACES),
                r.pick(THINGS)
            ),
            2 => format!(
                "{} recommended a place for {} near the office; {} went there {} and liked it.",
                r.pick(PEOPLE),
                r.pick(FOODS),
                r.pick(PEOPLE),
                r.pick(WHEN)
            ),
            3 => format!(
                "Fix the {} {}: {} says {}.",
                r.pick(THINGS),
                r.pick(WHEN),
                r.pick(PEOPLE),
                r.pick(ADVICE)
            ),
            4 => format!(
                "Meeting with {} about the {}: we agreed to send the {} {}.",
                r.pick(PEOPLE),
                r.pick(TOPICS),
                r.pick(ARTIFACTS),
                r.pick(WHEN)
            ),
            5 => format!(
                "Paid {} euros for the {} {}; the {} is in {}.",
                10 + r.next_u64() % 990,
                r.pick(TOPICS),
                r.pick(ARTIFACTS),
                r.pick(ARTIFACTS),
                r.pick(PLACES)
            ),
            6 => format!(
                "Idea for the {}: ask {} to review the {} and {}.",
                r.pick(TOPICS),
                r.pick(PEOPLE),
                r.pick(ARTIFACTS),
                r.pick(ADVICE)
            ),
            _ => format!(
                "Lent my {} to {} {}; remember to get it back {}.",
                r.pick(THINGS),
                r.pick(PEOPLE),
                r.pick(WHEN),
                r.pick(WHEN)
            ),
        };
        NewMemory::new(content)
    }
}

/// Questions a user would ask of those notes, each one new to the run (a
/// repeat would be answered from the query service's embedding cache).
#[derive(Debug)]
struct Questions {
    rng: Rng,
    asked: HashSet<String>,
}

impl Questions {
    /// Draws before giving up on a new question: far more than the few
    /// hundred a run asks need, out of thousands of combinations.
    const ATTEMPTS: usize = 10_000;

    fn new(seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            asked: HashSet::new(),
        }
    }

    fn ask(&mut self) -> anyhow::Result<String> {
        for _ in 0..Self::ATTEMPTS {
            let question = self.draw();
            if self.asked.insert(question.clone()) {
                return Ok(question);
            }
        }
        bail!(
            "no new question after {} draws ({} asked)",
            Self::ATTEMPTS,
            self.asked.len()
        )
    }

    fn draw(&mut self) -> String {
        let r = &mut self.rng;
        match r.next_u64() % 8 {
            0 => format!(
                "what did {} say about the {}?",
                r.pick(PEOPLE),
                r.pick(TOPICS)
            ),
            1 => format!("when is the {} {} due?", r.pick(TOPICS), r.pick(ARTIFACTS)),
            2 => format!(
                "where did I put the {} and the {}?",
                r.pick(THINGS),
                r.pick(THINGS)
            ),
            3 => format!(
                "where did {} recommend for {}?",
                r.pick(PEOPLE),
                r.pick(FOODS)
            ),
            4 => format!(
                "how much did I pay for the {} {}?",
                r.pick(TOPICS),
                r.pick(ARTIFACTS)
            ),
            5 => format!(
                "who told me to {} about the {}?",
                r.pick(ADVICE),
                r.pick(THINGS)
            ),
            6 => format!(
                "what did we agree with {} on the {}?",
                r.pick(PEOPLE),
                r.pick(TOPICS)
            ),
            _ => format!("did I lend the {} to {}?", r.pick(THINGS), r.pick(PEOPLE)),
        }
    }
}

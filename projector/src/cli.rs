//! The binary's subcommands. `serve` is the default.

use crate::dead_letters::{DeadLetterQueue, Ledger, Selection};
use crate::embedding_cache::CachedEmbedder;
use crate::rebuild::{Rebuild, Targets};
use crate::settings::Settings;
use crate::source::EventSource;
use crate::startup::{Application, pool};
use crate::verify::{Expected, verify_documents, verify_search};
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use embeddings::{Embedder, EmbeddingProvider, EmbeddingSettings};
use read_model::MIGRATOR;
use read_model::documents::Keys;
use secrecy::SecretString;
use serde::Deserialize;
use service_kit::telemetry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "projector",
    about = "Second Brain projector: builds the read models",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProjectionName {
    Search,
    Documents,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume events and keep the read models up to date (the default).
    Serve,
    /// Apply the read-model migrations and declare the queues, the
    /// dead-letter queue with its length limit (moving its messages out and
    /// back when it was declared otherwise, and turning any that still hold
    /// a whole message into references); safe to run again.
    Migrate,
    /// Replay the event store into fresh read models, then switch over.
    RebuildProjections {
        /// Rebuild only these (default: all).
        #[arg(long = "projection", value_enum)]
        projections: Vec<ProjectionName>,
        /// Embed with this provider instead of SB_EMBEDDING_PROVIDER.
        #[arg(long, value_enum)]
        embedding_provider: Option<ProviderName>,
        /// Embed with this model: the OpenAI-compatible model name, or the
        /// local model's name (with SB_EMBEDDING_MODEL_DIR holding it).
        #[arg(long)]
        embedding_model: Option<String>,
        /// Seconds the old Redis generation stays readable after the switch.
        #[arg(long, default_value_t = 10)]
        grace_seconds: u64,
    },
    /// Compare the read models with the fold of the event store; exit 1 on
    /// any difference.
    Verify,
    /// What failed and is parked: the dead-letter queue and the aggregates
    /// waiting behind a dead-lettered event.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Probe the running projector's health endpoint; exit 0 when it answers
    /// 2xx (for container health checks: the image has no curl).
    Healthcheck(service_kit::healthcheck::HealthcheckArgs),
    /// Print the environment variables this binary reads, one per line.
    #[command(hide = true)]
    EnvVars,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List the dead letters (projection, aggregate, sequence, event type,
    /// reason, attempts, when) and the parked aggregates; the queue is left
    /// as it was.
    List {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Un-park the selected aggregates, then send their dead letters' events,
    /// read again from the event store as they are now, back to the queues
    /// they came from, in order. The projector fills any gap from the event
    /// store and skips what it already applied, so a retry is always safe;
    /// an event that still fails is parked again. A dead letter of a message
    /// that was no event holds only its fingerprint and stays.
    Retry(SelectionArgs),
    /// Drop the selected dead letters and un-park their aggregates. The read
    /// model then misses those events until the aggregate's next event,
    /// which fills the gap from the event store (`verify` lists what is
    /// missing meanwhile; `rebuild-projections` restores everything at once).
    Purge(SelectionArgs),
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct SelectionArgs {
    /// Only this aggregate's dead letters (its id), in every projection.
    #[arg(long)]
    aggregate: Option<String>,
    /// Every dead letter, and every parked aggregate.
    #[arg(long)]
    all: bool,
}

impl SelectionArgs {
    fn selection(&self) -> Selection {
        match &self.aggregate {
            Some(id) if !self.all => Selection::Aggregate(id.clone()),
            _ => Selection::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderName {
    Local,
    Openai,
}

#[derive(Debug, Deserialize)]
struct ReadSettings {
    read_database_url: SecretString,
}

/// What `migrate` needs to declare the queues, when a broker is configured.
#[derive(Debug, Deserialize)]
struct TopologySettings {
    rabbitmq_url: Option<SecretString>,
    #[serde(default = "event_log::broker::default_exchange")]
    rabbitmq_exchange: String,
    #[serde(default = "event_log::broker::default_queue_prefix")]
    projector_queue_prefix: String,
    #[serde(default = "crate::settings::default_partitions")]
    projector_partitions: u32,
    #[serde(default = "crate::settings::default_dead_letter_max_length")]
    projector_dead_letter_max_length: u32,
}

/// What `dead-letters` needs: the broker and the read database, and for
/// `retry` the event store, where the dead letters' events are read again.
#[derive(Debug, Deserialize)]
struct DeadLetterSettings {
    read_database_url: SecretString,
    rabbitmq_url: SecretString,
    event_store_url: Option<SecretString>,
    #[serde(default = "event_log::broker::default_exchange")]
    rabbitmq_exchange: String,
    #[serde(default = "event_log::broker::default_queue_prefix")]
    projector_queue_prefix: String,
}

async fn dead_letters(command: DeadLetterCommand) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let settings: DeadLetterSettings = service_kit::settings::from_env()
        .context("reading SB_READ_DATABASE_URL, SB_RABBITMQ_URL and SB_PROJECTOR_QUEUE_PREFIX")?;
    let config = crate::broker::ConsumerConfig {
        url: settings.rabbitmq_url.clone(),
        exchange: settings.rabbitmq_exchange,
        queue_prefix: settings.projector_queue_prefix,
        prefetch: 1,
        batch_size: 1,
        batch_window: std::time::Duration::ZERO,
        max_attempts: 1,
        dead_letter_max_length: crate::settings::default_dead_letter_max_length(),
        partitions: 1,
        partition: 0,
    };
    let ledger = Ledger::new(pool(&settings.read_database_url, 1)?);
    let queue = DeadLetterQueue::open(settings.rabbitmq_url.expose_secret(), &config)
        .await
        .context("opening the dead-letter queue")?;
    match command {
        DeadLetterCommand::List { json } => {
            let letters = queue
                .list()
                .await
                .context("reading the dead-letter queue")?;
            let parked = ledger
                .all_parked()
                .await
                .context("reading the parked aggregates")?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "dead_letters": letters,
                        "parked_aggregates": parked,
                    }))?
                );
            } else {
                print!("{}", crate::dead_letters::tables(&letters, &parked));
            }
        }
        DeadLetterCommand::Retry(selection) => {
            let store = settings
                .event_store_url
                .context("`dead-letters retry` reads the events from the event store: set SB_EVENT_STORE_URL")?;
            let source = EventSource::new(pool(&store, 1)?);
            let outcome = queue
                .retry(&ledger, &source, &selection.selection())
                .await?;
            eprintln!(
                "sent back {} dead letters, un-parked {} aggregates{}",
                outcome.messages,
                outcome.unparked,
                left(&outcome)
            );
        }
        DeadLetterCommand::Purge(selection) => {
            let outcome = queue.purge(&ledger, &selection.selection()).await?;
            eprintln!(
                "dropped {} dead letters, un-parked {} aggregates (their next event fills the gap \
                 from the event store; `projector verify` lists what is missing meanwhile)",
                outcome.messages, outcome.unparked
            );
        }
    }
    Ok(())
}

/// What `retry` left in the queue, and why.
fn left(outcome: &crate::dead_letters::Outcome) -> String {
    let mut out = String::new();
    if outcome.skipped > 0 {
        out.push_str(&format!(
            "; {} left in the queue: they name no queue to go back to",
            outcome.skipped
        ));
    }
    if outcome.undecodable > 0 {
        out.push_str(&format!(
            "; {} left in the queue: the message was no event and only its SHA-256 is kept, \
             so there is nothing to send back (`dead-letters purge` drops them)",
            outcome.undecodable
        ));
    }
    if outcome.missing > 0 {
        out.push_str(&format!(
            "; {} left in the queue: the event store has no such event (is SB_EVENT_STORE_URL \
             the store these events came from?)",
            outcome.missing
        ));
    }
    out
}

/// Declares the exchange and every projection's queue, so events the relay
/// publishes before the projector first runs are kept, not routed nowhere;
/// and the dead-letter queue with its limit (see
/// [`crate::dead_letters::queue::migrate`]).
async fn declare_topology(settings: TopologySettings) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let Some(url) = settings.rabbitmq_url else {
        eprintln!("SB_RABBITMQ_URL is not set: queues will be declared when the projector starts");
        return Ok(());
    };
    crate::settings::validate_dead_letter_max_length(settings.projector_dead_letter_max_length)?;
    let connection =
        lapin::Connection::connect(url.expose_secret(), lapin::ConnectionProperties::default())
            .await
            .context("connecting to RabbitMQ")?;
    let config = crate::broker::ConsumerConfig {
        url,
        exchange: settings.rabbitmq_exchange,
        queue_prefix: settings.projector_queue_prefix,
        prefetch: 1,
        batch_size: 1,
        batch_window: std::time::Duration::ZERO,
        max_attempts: 1,
        dead_letter_max_length: settings.projector_dead_letter_max_length,
        partitions: settings.projector_partitions.max(1),
        partition: 0,
    };
    let migration = crate::dead_letters::queue::migrate(&connection, &config)
        .await
        .context("declaring the dead-letter queue")?;
    if migration.redeclared {
        eprintln!(
            "dead-letter queue {} declared again with at most {} messages ({} dead letters moved out and back)",
            config.dead_letter(),
            config.dead_letter_max_length,
            migration.moved
        );
    }
    if migration.converted > 0 {
        eprintln!(
            "{} dead letters that held their whole message now hold a reference to it",
            migration.converted
        );
    }
    let channel = connection.create_channel().await?;
    // Every partition's queues: the relay's messages for a partition whose
    // projector has not started yet wait in its queue.
    for partition in 0..config.partitions {
        for projection in read_model::PROJECTIONS {
            crate::broker::declare(
                &connection,
                &channel,
                &config.for_partition(partition),
                projection,
            )
            .await?;
        }
    }
    connection.close(200, "declared".into()).await.ok();
    eprintln!("queues declared on exchange {}", config.exchange);
    Ok(())
}

pub async fn embedder(settings: &EmbeddingSettings) -> anyhow::Result<Arc<dyn Embedder>> {
    let config = settings.to_config().context("invalid embedding settings")?;
    embeddings::build(&config)
        .await
        .context("loading the embedder")
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::EnvVars => {
            use service_kit::settings::variables;
            service_kit::settings::print_variables(&[
                variables::<Settings>(),
                variables::<ReadSettings>(),
                variables::<TopologySettings>(),
                variables::<DeadLetterSettings>(),
                variables::<EmbeddingSettings>(),
            ]);
            Ok(())
        }
        Command::Healthcheck(args) => {
            let listen: crate::settings::ListenSettings =
                service_kit::settings::from_env().context("reading SB_PROJECTOR_HTTP_ADDR")?;
            service_kit::healthcheck::run(&args, listen.projector_http_addr).await?;
            Ok(())
        }
        Command::Serve => serve().await,
        Command::Migrate => migrate().await,
        Command::RebuildProjections {
            projections,
            embedding_provider,
            embedding_model,
            grace_seconds,
        } => {
            rebuild_projections(
                &projections,
                embedding_provider,
                embedding_model,
                grace_seconds,
            )
            .await
        }
        Command::DeadLetters(command) => dead_letters(command).await,
        Command::Verify => verify().await,
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("invalid settings")?;
    let embedding: EmbeddingSettings =
        service_kit::settings::from_env().context("invalid embedding settings")?;
    telemetry::init_logging(settings.log_format);
    let app = Application::build(&settings, embedder(&embedding).await?).await?;
    tracing::info!(addr = %settings.projector_http_addr, "projector running");
    app.run_until_stopped().await?;
    tracing::info!("projector stopped");
    Ok(())
}

async fn migrate() -> anyhow::Result<()> {
    let settings: ReadSettings =
        service_kit::settings::from_env().context("reading SB_READ_DATABASE_URL")?;
    let pool = pool(&settings.read_database_url, 1)?;
    MIGRATOR
        .run(&pool)
        .await
        .context("applying read-model migrations")?;
    eprintln!("read-model migrations applied");
    declare_topology(service_kit::settings::from_env().context("reading the broker settings")?)
        .await
}

/// The embedding settings, with the provider and model a rebuild names
/// instead of the configured ones.
fn rebuild_embedding(
    provider: Option<ProviderName>,
    model: Option<String>,
) -> anyhow::Result<EmbeddingSettings> {
    let mut embedding: EmbeddingSettings =
        service_kit::settings::from_env().context("invalid embedding settings")?;
    if let Some(provider) = provider {
        embedding.embedding_provider = match provider {
            ProviderName::Local => EmbeddingProvider::Local,
            ProviderName::Openai => EmbeddingProvider::Openai,
        };
    }
    if let Some(model) = model {
        match embedding.embedding_provider {
            EmbeddingProvider::Local => embedding.embedding_model_name = model,
            EmbeddingProvider::Openai => embedding.openai_model = Some(model),
        }
    }
    Ok(embedding)
}

async fn rebuild_projections(
    projections: &[ProjectionName],
    embedding_provider: Option<ProviderName>,
    embedding_model: Option<String>,
    grace_seconds: u64,
) -> anyhow::Result<()> {
    let settings = Settings::from_env().context("invalid settings")?;
    let embedding = rebuild_embedding(embedding_provider, embedding_model)?;
    telemetry::init_logging(settings.log_format);
    let targets = Targets {
        search: projections.is_empty() || projections.contains(&ProjectionName::Search),
        documents: projections.is_empty() || projections.contains(&ProjectionName::Documents),
    };
    let read_pool = pool(&settings.read_database_url, 4)?;
    MIGRATOR
        .run(&read_pool)
        .await
        .context("applying read-model migrations")?;
    let source = EventSource::new(pool(&settings.event_store_url, 2)?);
    let cached = CachedEmbedder::new(embedder(&embedding).await?, read_pool.clone());
    let mut rebuild = Rebuild {
        source: &source,
        read_pool: &read_pool,
        embedder: &cached,
        redis: service_kit::redis::connect(&settings.redis_url).await?,
        keys: Keys::new(settings.redis_key_prefix.clone()),
        grace: Duration::from_secs(grace_seconds),
    };
    let report = rebuild.run(targets).await?;
    eprintln!(
        "rebuilt {} events ({} memories, {} sessions) in {:.1} s; replay {:.1} s ({:.0} events/s); caught up {}",
        report.events,
        report.memories,
        report.sessions,
        report.total_seconds,
        report.replay_seconds,
        report.events as f64 / report.replay_seconds.max(1e-9),
        report.caught_up,
    );
    Ok(())
}

async fn verify() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("invalid settings")?;
    let read_pool = pool(&settings.read_database_url, 2)?;
    let source = EventSource::new(pool(&settings.event_store_url, 2)?);
    let mut redis = service_kit::redis::connect(&settings.redis_url).await?;
    let keys = Keys::new(settings.redis_key_prefix.clone());
    let expected = Expected::fold(&source).await?;
    let mut differences = verify_search(&read_pool, &expected).await?;
    differences.extend(verify_documents(&mut redis, &keys, &expected).await?);
    for difference in &differences {
        println!("{difference}");
    }
    eprintln!(
        "verified {} memories and {} sessions: {} differences",
        expected.memories.len(),
        expected.sessions.len(),
        differences.len()
    );
    if differences.is_empty() {
        Ok(())
    } else {
        std::process::exit(1)
    }
}

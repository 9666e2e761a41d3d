//! The binary's subcommands. `serve` is the default.

use crate::settings::Settings;
use crate::startup::{Application, MIGRATOR, connect};
use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use service_kit::auth::{ApiKeyStore, UserId, issue_jwt};
use service_kit::telemetry;
use sqlx::PgPool;

#[derive(Debug, Parser)]
#[command(name = "command-service", about = "Second Brain write API", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply the event-store migrations; safe to run again.
    Migrate,
    /// Manage per-user API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Probe the running service's health endpoint; exit 0 when it answers 2xx
    /// (for container health checks: the image has no curl).
    Healthcheck(service_kit::healthcheck::HealthcheckArgs),
    /// Print the environment variables this binary reads, one per line.
    #[command(hide = true)]
    EnvVars,
    /// Mint a bearer JWT for a user, signed with SB_JWT_SECRET (for local use).
    Token {
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; prints the key once on stdout.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List keys (without secrets), for one user or all.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

/// The settings the administrative subcommands need: only the database.
#[derive(Debug, Deserialize)]
struct StoreSettings {
    event_store_url: SecretString,
}

async fn store_pool() -> anyhow::Result<PgPool> {
    let settings: StoreSettings =
        service_kit::settings::from_env().context("reading SB_EVENT_STORE_URL")?;
    PgPool::connect(settings.event_store_url.expose_secret())
        .await
        .context("connecting to the event store")
}

fn user(value: String) -> anyhow::Result<UserId> {
    UserId::parse(value).context("invalid user id")
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::EnvVars => {
            service_kit::settings::print_variables(&[
                service_kit::settings::variables::<crate::settings::Settings>(),
                service_kit::settings::variables::<StoreSettings>(),
            ]);
            Ok(())
        }
        Command::Healthcheck(args) => {
            let listen: crate::settings::ListenSettings =
                service_kit::settings::from_env().context("reading SB_COMMAND_HTTP_ADDR")?;
            service_kit::healthcheck::run(&args, listen.command_http_addr).await?;
            Ok(())
        }
        Command::Migrate => {
            let pool = store_pool().await?;
            MIGRATOR.run(&pool).await.context("applying migrations")?;
            eprintln!("event-store migrations applied");
            Ok(())
        }
        Command::ApiKey(command) => {
            let keys = ApiKeyStore::new(store_pool().await?);
            match command {
                ApiKeyCommand::Create { user: id, name } => {
                    let (info, token) = keys.create(&user(id)?, &name).await?;
                    eprintln!(
                        "created API key {} for {}; it is shown only once",
                        info.id, info.user_id
                    );
                    println!("{token}");
                }
                ApiKeyCommand::List { user: id } => {
                    let id = id.map(user).transpose()?;
                    for key in keys.list(id.as_ref()).await? {
                        println!("{}", serde_json::to_string(&key)?);
                    }
                }
                ApiKeyCommand::Revoke { id } => {
                    anyhow::ensure!(keys.revoke(&id).await?, "no active API key {id}");
                    eprintln!("revoked API key {id}");
                }
            }
            Ok(())
        }
        Command::Token {
            user: id,
            ttl_hours,
        } => {
            #[derive(Deserialize)]
            struct JwtSettings {
                jwt_secret: SecretString,
            }
            let settings: JwtSettings =
                service_kit::settings::from_env().context("reading SB_JWT_SECRET")?;
            let expires_at = Utc::now() + chrono::Duration::hours(ttl_hours);
            println!(
                "{}",
                issue_jwt(&settings.jwt_secret, &user(id)?, expires_at)?
            );
            Ok(())
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("invalid settings")?;
    telemetry::init_logging(settings.log_format);
    let pool = connect(&settings)?;
    let app = Application::build(&settings, pool)?;
    tracing::info!(
        addr = %settings.command_http_addr,
        relay = settings.relay_enabled,
        exchange = %settings.rabbitmq_exchange,
        "command service listening"
    );
    app.run_until_stopped().await?;
    tracing::info!("command service stopped");
    Ok(())
}

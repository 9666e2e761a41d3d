//! The binary's subcommands. `serve` is the default.

use crate::settings::{ListenSettings, Settings};
use crate::startup::Application;
use anyhow::Context;
use clap::{Parser, Subcommand};
use embeddings::EmbeddingSettings;

#[derive(Debug, Parser)]
#[command(name = "query-service", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default).
    Serve,
    /// Probe the running service's health endpoint; exit 0 when it answers
    /// 2xx (for container health checks: the image has no curl).
    Healthcheck(service_kit::healthcheck::HealthcheckArgs),
    /// Print the environment variables this binary reads, one per line.
    #[command(hide = true)]
    EnvVars,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::EnvVars => {
            use service_kit::settings::variables;
            service_kit::settings::print_variables(&[
                variables::<Settings>(),
                variables::<EmbeddingSettings>(),
            ]);
            Ok(())
        }
        Command::Healthcheck(args) => {
            let listen: ListenSettings =
                service_kit::settings::from_env().context("reading SB_QUERY_HTTP_ADDR")?;
            service_kit::healthcheck::run(&args, listen.query_http_addr).await?;
            Ok(())
        }
        Command::Serve => serve().await,
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("invalid settings")?;
    let embedding: EmbeddingSettings =
        service_kit::settings::from_env().context("invalid embedding settings")?;
    service_kit::telemetry::init_logging(settings.log_format);
    let config = embedding
        .to_config()
        .context("invalid embedding settings")?;
    let embedder = embeddings::build(&config)
        .await
        .context("loading the embedder")?;
    let app = Application::build(&settings, embedder).await?;
    // Logged under the binary's target, as before these lines left main.rs.
    tracing::info!(target: "query_service", addr = %settings.query_http_addr, "query-service listening");
    app.run_until_stopped().await?;
    tracing::info!(target: "query_service", "query-service stopped");
    Ok(())
}

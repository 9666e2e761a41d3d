use anyhow::Context;
use clap::{Parser, Subcommand};
use embeddings::EmbeddingSettings;
use query_service::settings::Settings;
use query_service::startup::Application;

#[derive(Debug, Parser)]
#[command(name = "query-service", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Probe the running service's health endpoint; exit 0 when it answers
    /// 2xx (for container health checks: the image has no curl).
    Healthcheck(service_kit::healthcheck::HealthcheckArgs),
    /// Print the environment variables this binary reads, one per line.
    #[command(hide = true)]
    EnvVars,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { command } = Cli::parse();
    match command.unwrap_or(Command::Serve) {
        Command::EnvVars => {
            use service_kit::settings::variables;
            service_kit::settings::print_variables(&[
                variables::<Settings>(),
                variables::<EmbeddingSettings>(),
            ]);
            Ok(())
        }
        Command::Healthcheck(args) => {
            let listen: query_service::settings::ListenSettings =
                service_kit::settings::from_env().context("reading SB_QUERY_HTTP_ADDR")?;
            service_kit::healthcheck::run(&args, listen.query_http_addr).await?;
            Ok(())
        }
        Command::Serve => {
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
            tracing::info!(addr = %settings.query_http_addr, "query-service listening");
            app.run_until_stopped().await?;
            tracing::info!("query-service stopped");
            Ok(())
        }
    }
}

//! `mcp-service`: Second Brain's MCP server over streamable HTTP at `/mcp`
//! (settings in `second_brain_mcp::settings`, ADR 19).

use anyhow::Context;
use second_brain_mcp::settings::Settings;
use second_brain_mcp::startup::Application;
use second_brain_mcp::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The hidden `env-vars` every service binary has: what it reads, for
    // deploy/check's configuration contract. Any other argument (the native
    // stack's `serve`) starts the server.
    if std::env::args().nth(1).as_deref() == Some("env-vars") {
        let mut names: Vec<&str> = second_brain_mcp::settings::VARIABLES.to_vec();
        names.push("RUST_LOG");
        names.sort_unstable();
        for name in names {
            println!("{name}");
        }
        return Ok(());
    }
    let settings = Settings::from_env().context("invalid settings")?;
    telemetry::init_logging(settings.log_format);
    let app = Application::build(&settings)
        .await
        .context("could not start the MCP server")?;
    tracing::info!(
        port = app.port(),
        command = %settings.command_url,
        query = %settings.query_url,
        "mcp-service listening at /mcp"
    );
    app.run_until_stopped()
        .await
        .context("the MCP server failed")
}

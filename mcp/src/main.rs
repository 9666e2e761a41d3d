//! `mcp-service`: Second Brain's MCP server over streamable HTTP at `/mcp`
//! (settings in `second_brain_mcp::settings`, ADR 19).

use anyhow::Context;
use second_brain_mcp::settings::Settings;
use second_brain_mcp::startup::Application;
use second_brain_mcp::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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

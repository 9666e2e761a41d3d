//! `sb`: Second Brain from a terminal or a script, on the typed client.
//!
//! - [`args`]: the command line (clap), with the exit codes in `--help`;
//! - [`config`]: flags, `SB_*` variables, the config file `sb login` writes;
//! - [`context`]: the client and the caller's last write (read your writes
//!   across runs);
//! - [`commands`]: one module per group of subcommands;
//! - [`markdown`]: notes with YAML front matter (import, edit);
//! - [`output`]: tables for people, JSON for scripts;
//! - [`error`]: failures and their exit codes.

pub mod args;
pub mod commands;
pub mod config;
pub mod context;
pub mod error;
pub mod markdown;
pub mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::commands::{lists, login, memories, sessions, transfer};
use crate::context::Context;
use crate::error::CliError;

/// Parses the command line, runs it, and says how it went as an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Diagnostics only when asked for (`RUST_LOG=debug sb …`), on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sb: starting: {error}");
            return ExitCode::from(error::code::UNEXPECTED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let text = match &error {
                // A transport error's useful part is its cause (refused, DNS, TLS).
                CliError::Api(api) => error::with_causes(api),
                other => other.to_string(),
            };
            eprintln!("sb: {text}");
            error.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let global = cli.global;
    match cli.command {
        Command::Login(args) => return login::login(&global, args).await,
        Command::Config => return login::show(&global),
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "sb",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        _ => {}
    }
    let config = config::resolve(&global)?;
    if let Command::Mcp = cli.command {
        return mcp(config).await;
    }
    let ctx = Context::new(&config, global.json)?;
    match cli.command {
        Command::Remember(args) => memories::remember(&ctx, args).await,
        Command::Search(args) => lists::search(&ctx, args).await,
        Command::List(args) => lists::list(&ctx, args).await,
        Command::Show(args) => memories::show(&ctx, args).await,
        Command::Edit(args) => memories::edit(&ctx, args).await,
        Command::Tag(args) => memories::tag(&ctx, args).await,
        Command::Untag(args) => memories::untag(&ctx, args).await,
        Command::Forget(args) => memories::forget(&ctx, args.id).await,
        Command::Restore(args) => memories::restore(&ctx, args.id).await,
        Command::Erase(args) => memories::erase(&ctx, args).await,
        Command::History(args) => lists::history(&ctx, args).await,
        Command::AsOf(args) => lists::as_of(&ctx, args).await,
        Command::Sessions(command) => sessions::run(&ctx, command).await,
        Command::Export(args) => transfer::export(&ctx, args).await,
        Command::Import(args) => transfer::import(&ctx, args).await,
        Command::Login(_) | Command::Config | Command::Completions(_) | Command::Mcp => Ok(()),
    }
}

/// `sb mcp`: the MCP server on stdin/stdout until the agent closes stdin.
/// Stdout is the protocol's: diagnostics go to stderr only.
async fn mcp(config: config::Resolved) -> Result<(), CliError> {
    let services = second_brain_mcp::Services::new(config.command_url, config.query_url)
        .map_err(|e| CliError::Usage(error::with_causes(&e)))?;
    let token = config.api_key.map(second_brain_mcp::SecretString::from);
    second_brain_mcp::serve_stdio(services, token)
        .await
        .map_err(|e| CliError::Unexpected(format!("MCP over stdio: {}", error::with_causes(&e))))
}

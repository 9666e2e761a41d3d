//! `sb login` and `sb config`: the key kept in the config file (mode 600),
//! and what a run would use.

use std::io::{BufRead, IsTerminal};

use second_brain_client::{Client, SessionListOptions};

use crate::args::{Global, Login};
use crate::config::{self, Resolved};
use crate::error::CliError;
use crate::output;

pub async fn login(global: &Global, args: Login) -> Result<(), CliError> {
    let key = if args.key_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::io("reading the key from stdin", e))?;
        line
    } else {
        rpassword::prompt_password("API key (sbk_…, not shown): ")
            .map_err(|e| CliError::io("reading the key", e))?
    };
    let key = key.trim().to_owned();
    if key.is_empty() {
        return Err(CliError::Usage("no key given".into()));
    }
    let mut resolved = config::resolve(global)?;
    resolved.api_key = Some(key.clone());
    // A key the service refuses is not stored: the next command would fail
    // with it, far from where it was typed.
    check(&resolved).await?;

    let mut file = config::read(&resolved.path)?;
    file.api_key = Some(key);
    if let Some(url) = &global.url {
        file.url = Some(url.clone());
    }
    if let Some(url) = &global.command_url {
        file.command_url = Some(url.clone());
    }
    if let Some(url) = &global.query_url {
        file.query_url = Some(url.clone());
    }
    config::write_private(&resolved.path, &file)?;
    eprintln!("signed in; the key is in {}", resolved.path.display());
    Ok(())
}

/// One cheap authenticated read with the key.
async fn check(config: &Resolved) -> Result<(), CliError> {
    let client = Client::builder(config.command_url.clone(), config.query_url.clone())
        .token(config.api_key.clone().unwrap_or_default())
        .build()?;
    let one = SessionListOptions {
        limit: Some(1),
        ..SessionListOptions::default()
    };
    client.list_sessions(None, &one).await?;
    Ok(())
}

pub fn show(global: &Global) -> Result<(), CliError> {
    let resolved = config::resolve(global)?;
    if global.json {
        return output::json(&serde_json::json!({
            "config_file": resolved.path,
            "command_url": resolved.command_url,
            "query_url": resolved.query_url,
            "api_key_set": resolved.api_key.is_some(),
        }));
    }
    output::line(format!(
        "config file: {}\ncommand service: {}\nquery service: {}\nAPI key: from {}",
        resolved.path.display(),
        resolved.command_url,
        resolved.query_url,
        resolved.api_key_from
    ))
}

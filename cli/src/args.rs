//! The command line: every subcommand and flag, as clap reads them.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  unexpected: a local file could not be read or written, or an answer the
     API does not document
  2  usage: a flag, an argument or the config file is wrong; erase was not
     confirmed; the editor failed
  3  not found (also an erased memory)
  4  conflict: changed meanwhile (If-Match), or not allowed in its state
  5  not signed in, or the key is not accepted
  6  input refused: by the service (validation), or an import file or an
     edited note that does not parse
  7  the service is unreachable, busy or failing (after retries)

Configuration: flags, then SB_* environment variables, then the config file
(`sb login` writes it; `sb config` shows where).";

#[derive(Debug, Parser)]
#[command(name = "sb", version, about = "Second Brain from a terminal or a script", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    // The URLs' variables are read in `config::resolve`, not by clap: a flag
    // for one origin must win over a variable for one service.
    /// One origin that serves both APIs (a proxy in front of them) [env: SB_URL]
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// The command service (default http://127.0.0.1:8080) [env: SB_COMMAND_URL]
    #[arg(long, global = true)]
    pub command_url: Option<String>,
    /// The query service (default http://127.0.0.1:8081) [env: SB_QUERY_URL]
    #[arg(long, global = true)]
    pub query_url: Option<String>,
    /// An API key (`sbk_…`) or a JWT; better kept by `sb login` than typed.
    #[arg(long, env = "SB_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
    /// The config file (default: `config.toml` in the user's config folder).
    #[arg(long, env = "SB_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Machine-readable output: JSON (JSON Lines for lists).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a memory: the text as an argument, or from stdin.
    Remember(Remember),
    /// Search by meaning and by words.
    Search(SearchArgs),
    /// Your memories, newest first.
    List(ListArgs),
    /// One memory.
    Show(Show),
    /// Edit a memory's title and content in $EDITOR (or with --content/--title).
    Edit(Edit),
    /// Add tags to a memory.
    Tag(Tags),
    /// Remove tags from a memory.
    Untag(Tags),
    /// Delete a memory (it can be restored).
    Forget(Id),
    /// Bring a deleted memory back.
    Restore(Id),
    /// Erase a memory for good: its content, title, tags and metadata are
    /// removed from every event; only the shape of its history stays.
    Erase(Erase),
    /// Every change to a memory (or a session with --session).
    History(History),
    /// A memory (or a session with --session) as it was at a version or time.
    AsOf(AsOf),
    /// Sessions: list, start, end, reopen, timeline.
    #[command(subcommand)]
    Sessions(Sessions),
    /// Your sessions and memories as JSON Lines, with ids, versions and times.
    Export(Export),
    /// JSON Lines from `sb export`, or a folder of Markdown notes; running it
    /// again creates nothing new.
    Import(Import),
    /// Store an API key (read without echo, or from stdin) in the config file.
    Login(Login),
    /// Where the configuration comes from, and what it says (without the key).
    Config,
    /// A shell completion script: `sb completions bash > ~/.local/share/bash-completion/completions/sb`.
    Completions(Completions),
    /// The MCP server over stdio, for agents that start it as a process
    /// (`{"command": "sb", "args": ["mcp"]}`); it acts as the signed-in user.
    Mcp,
}

#[derive(Debug, Args)]
pub struct Remember {
    /// The text; `-` or nothing reads stdin.
    pub content: Option<String>,
    #[arg(long)]
    pub title: Option<String>,
    /// A tag; repeat it or separate with commas.
    #[arg(short, long = "tag", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// The session to put it in.
    #[arg(short, long)]
    pub session: Option<Uuid>,
    /// `key=value` metadata; a value that is JSON (a number, true, a list)
    /// is kept as JSON, anything else as a string.
    #[arg(short, long = "meta", value_parser = parse_meta)]
    pub metadata: Vec<(String, serde_json::Value)>,
    /// When it happened (RFC 3339 or YYYY-MM-DD), if not now.
    #[arg(long, value_parser = parse_time)]
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Hybrid,
    Semantic,
    Keyword,
}

#[derive(Debug, Args)]
pub struct Filter {
    /// Only memories with one of these tags (repeat or comma-separate).
    #[arg(short, long = "tag", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Only memories with every one of these tags.
    #[arg(long = "all-tags", value_delimiter = ',')]
    pub all_tags: Vec<String>,
    /// Only memories in this session.
    #[arg(short, long)]
    pub session: Option<Uuid>,
    /// Created at or after (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Created before (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    pub query: String,
    #[arg(short, long, value_enum, default_value = "hybrid")]
    pub mode: ModeArg,
    /// Hits wanted, 1–100.
    #[arg(short, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub k: u32,
    #[command(flatten)]
    pub filter: Filter,
    /// Each hit's rank and score in each ranking (with --json).
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// How many, at most (all of them when left out).
    #[arg(short = 'n', long)]
    pub limit: Option<usize>,
    /// Deleted ones too.
    #[arg(long)]
    pub include_deleted: bool,
}

#[derive(Debug, Args)]
pub struct Id {
    pub id: Uuid,
}

#[derive(Debug, Args)]
pub struct Show {
    pub id: Uuid,
    /// A deleted memory too.
    #[arg(long)]
    pub include_deleted: bool,
}

#[derive(Debug, Args)]
pub struct Edit {
    pub id: Uuid,
    /// The new content, instead of opening $EDITOR.
    #[arg(long)]
    pub content: Option<String>,
    /// The new title (an empty one clears it), instead of opening $EDITOR.
    #[arg(long)]
    pub title: Option<String>,
}

#[derive(Debug, Args)]
pub struct Tags {
    pub id: Uuid,
    #[arg(required = true, value_delimiter = ',')]
    pub tags: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Erase {
    pub id: Uuid,
    /// Do not ask.
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct History {
    pub id: Uuid,
    /// The id is a session's.
    #[arg(long)]
    pub session: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("point").required(true).multiple(true))]
pub struct AsOf {
    pub id: Uuid,
    /// The state after this version.
    #[arg(long, group = "point")]
    pub version: Option<u64>,
    /// The state at this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long, group = "point", value_parser = parse_time)]
    pub at: Option<DateTime<Utc>>,
    /// The id is a session's.
    #[arg(long)]
    pub session: bool,
}

#[derive(Debug, Subcommand)]
pub enum Sessions {
    /// Your sessions, newest first.
    List {
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
    },
    /// Start a session; prints its id.
    Start {
        title: String,
    },
    End(Id),
    Reopen(Id),
    /// A session's memories in the order they happened.
    Timeline(Id),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Open,
    Ended,
}

#[derive(Debug, Args)]
pub struct Export {
    /// Write here instead of stdout.
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct Import {
    /// A `.jsonl` file from `sb export` (`-` for stdin), or a folder of
    /// Markdown notes (`*.md`, front matter: title, tags, date).
    pub source: std::path::PathBuf,
    /// Put Markdown notes into this session.
    #[arg(short, long)]
    pub session: Option<Uuid>,
}

#[derive(Debug, Args)]
pub struct Login {
    /// Read the key from stdin (one line) instead of prompting.
    #[arg(long)]
    pub key_stdin: bool,
}

#[derive(Debug, Args)]
pub struct Completions {
    pub shell: clap_complete::Shell,
}

fn parse_meta(raw: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("`{raw}` is not key=value"))?;
    if key.is_empty() {
        return Err(format!("`{raw}` has no key"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
    Ok((key.to_owned(), value))
}

/// RFC 3339, or a plain date (midnight UTC), as people type them.
pub fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| format!("`{raw}` is neither RFC 3339 nor YYYY-MM-DD"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn metadata_values_are_json_when_they_parse_and_strings_otherwise() {
        assert_eq!(parse_meta("n=3"), Ok(("n".into(), serde_json::json!(3))));
        assert_eq!(
            parse_meta("room=cellar"),
            Ok(("room".into(), serde_json::json!("cellar")))
        );
        assert_eq!(parse_meta("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_meta("novalue").is_err());
        assert!(parse_meta("=x").is_err());
    }

    #[test]
    fn times_are_rfc3339_or_a_date() {
        assert_eq!(
            parse_time("2026-11-02").map(|t| t.to_rfc3339()),
            Ok("2026-11-02T00:00:00+00:00".into())
        );
        assert_eq!(
            parse_time("2026-11-02T09:30:00+01:00").map(|t| t.to_rfc3339()),
            Ok("2026-11-02T08:30:00+00:00".into())
        );
        assert!(parse_time("yesterday").is_err());
    }
}

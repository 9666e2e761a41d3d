#![allow(clippy::unwrap_used)]
//! The `sb` binary against the real stack (command service, relay,
//! projector, query service on real Postgres, RabbitMQ and Redis), run as a
//! user runs it: a process per command, its own home folder, its output
//! and exit code read back.

mod errors;
mod journey;
mod login;
mod markdown;
mod mcp;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use test_kit::stack::Stack;
use tokio::io::AsyncWriteExt;

/// `sb` for one user of one stack, with a home folder of its own (config
/// file, last write) that no other test shares.
#[derive(Debug)]
pub struct Sb {
    pub home: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test unless the run succeeded; its stdout, trimmed.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "sb failed: {self:?}");
        self.stdout.trim()
    }

    /// Each stdout line as JSON (`--json` lists are JSON Lines).
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.ok()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Sb {
    pub fn for_user(stack: &Stack, user: &str) -> Self {
        let mut sb = Self::without_key(stack);
        sb.vars.push(("SB_API_KEY".into(), stack.token(user)));
        sb
    }

    /// No key in the environment: as before `sb login`.
    pub fn without_key(stack: &Stack) -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            vars: vec![
                ("SB_COMMAND_URL".into(), stack.command.clone()),
                ("SB_QUERY_URL".into(), stack.query().to_owned()),
            ],
        }
    }

    /// An environment variable for every later run.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.push((name.into(), value.into()));
    }

    pub fn config_file(&self) -> PathBuf {
        self.home.path().join(".config/second-brain/config.toml")
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None).await
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sb"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
        }
        drop(input);
        let output = child.wait_with_output().await.unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }
}

/// An executable shell script at `dir/name` (an `$EDITOR` for `sb edit`).
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

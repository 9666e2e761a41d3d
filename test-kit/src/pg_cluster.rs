//! A throwaway Postgres cluster of the test's own, for the tests that restart
//! or stop the server (never the shared one: other tests run on it).
//!
//! It is initialised in a temporary directory with the binaries in
//! `SB_PG_BIN_DIR` (the native stack's, which carry the `vector` and `pg_trgm`
//! extensions the read database needs), listens on a free loopback port and
//! is stopped and removed when dropped. initdb refuses to run as root, so as
//! root every command runs as the stack's `secondbrain` user (`runuser`).

use sqlx::{Connection as _, PgConnection};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// The OS user the native stack runs Postgres as when installed by root.
const POSTGRES_OS_USER: &str = "secondbrain";

/// How long starting, restarting or recovering may take on a loaded machine.
const STARTUP_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// `pg_ctl -m fast`: sessions are told (57P01) and closed, then a checkpoint.
    Fast,
    /// `pg_ctl -m immediate`: every process is killed; crash recovery at start.
    Immediate,
}

impl Shutdown {
    fn mode(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

#[derive(Debug)]
pub struct ThrowawayPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_user: Option<&'static str>,
}

impl ThrowawayPostgres {
    /// Initialises and starts a cluster whose superuser is `postgres`, with
    /// trust authentication on loopback only.
    pub async fn start() -> Self {
        let bin = PathBuf::from(std::env::var("SB_PG_BIN_DIR").expect(
            "SB_PG_BIN_DIR names the Postgres binaries (eval \"$(deploy/native/stack env)\")",
        ));
        let as_user = is_root().then_some(POSTGRES_OS_USER);
        let dir = std::env::temp_dir().join(format!("sb-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).expect("create the cluster directory");
        if let Some(user) = as_user {
            let status = Command::new("chown")
                .arg(user)
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown {user} {}", dir.display());
        }
        let port = free_port();
        let cluster = Self {
            bin,
            dir,
            port,
            as_user,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            cluster.dir.display()
        );
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                &cluster.data(),
                "-l",
                &cluster.log(),
                "-o",
                &options,
                "-w",
                "-t",
                "120",
                "start",
            ],
        );
        cluster.wait_until_answering().await;
        cluster
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart` in `mode`, waiting until the server has started
    /// again (run off the async threads: it takes seconds).
    pub async fn restart(&self, mode: Shutdown) {
        let (bin, dir, log, as_user) = (self.bin.clone(), self.data(), self.log(), self.as_user);
        tokio::task::spawn_blocking(move || {
            run_as(
                &bin,
                as_user,
                "pg_ctl",
                &[
                    "-D",
                    &dir,
                    "-l",
                    &log,
                    "-m",
                    mode.mode(),
                    "-w",
                    "-t",
                    "120",
                    "restart",
                ],
            );
        })
        .await
        .expect("pg_ctl restart ran");
    }

    /// Polls until a new connection runs a query.
    pub async fn wait_until_answering(&self) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Ok(mut connection) = PgConnection::connect(&self.admin_url()).await
                && sqlx::query("SELECT 1")
                    .execute(&mut connection)
                    .await
                    .is_ok()
            {
                connection.close().await.ok();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the throwaway Postgres never answered; see {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn log(&self) -> String {
        self.dir.join("postgres.log").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        run_as(&self.bin, self.as_user, program, args);
    }
}

impl Drop for ThrowawayPostgres {
    /// Stops the server (immediately: its data is thrown away) and removes
    /// the directory, whatever state the test left them in.
    fn drop(&mut self) {
        let _ = command_as(&self.bin, self.as_user, "pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .current_dir(std::env::temp_dir())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn command_as(bin: &Path, as_user: Option<&str>, program: &str) -> Command {
    let program = bin.join(program);
    match as_user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn run_as(bin: &Path, as_user: Option<&str>, program: &str, args: &[&str]) {
    // The temporary directory as working directory: the OS user may not be
    // able to enter the test's.
    let output = command_as(bin, as_user, program)
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// A port nothing listens on now (the kernel's pick for port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

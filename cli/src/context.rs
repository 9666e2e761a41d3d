//! What every command runs with: the client, the output format, and the
//! caller's last write, so that `sb remember …; sb search …` finds the note
//! although each is its own process.

use std::path::PathBuf;

use std::future::Future;

use second_brain_client::{Client, RetryPolicy, Written};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Resolved;
use crate::error::CliError;

#[derive(Debug)]
pub struct Context {
    pub client: Client,
    /// The same client without retries, for a read that waits for the last
    /// write: a read side that does not get there in one wait is reported
    /// at once rather than after four.
    waiting: Client,
    pub json: bool,
    last_write: LastWrite,
}

impl Context {
    pub fn new(config: &Resolved, json: bool) -> Result<Self, CliError> {
        let client = |retry| {
            Client::builder(config.command_url.clone(), config.query_url.clone())
                .token(config.api_key.clone().unwrap_or_default())
                .retry(retry)
                .build()
        };
        Ok(Self {
            client: client(RetryPolicy::default())?,
            waiting: client(RetryPolicy::none())?,
            json,
            last_write: LastWrite::for_caller(config),
        })
    }

    /// Runs `read` so that it reflects the caller's last write through `sb`
    /// (`read` gets the client and the write to wait for). A write the read
    /// side does not reach in time (its event dead-lettered, the projector
    /// down) is said on stderr and forgotten, and the read runs without it:
    /// one stuck write must not slow every later command.
    pub async fn read_your_writes<T, F, Fut>(&self, read: F) -> Result<T, CliError>
    where
        F: Fn(Client, Option<Written>) -> Fut,
        Fut: Future<Output = Result<T, second_brain_client::Error>>,
    {
        let Some(write) = self.last_write() else {
            return Ok(read(self.client.clone(), None).await?);
        };
        match read(self.waiting.clone(), Some(write)).await {
            Err(error) if error.code() == Some("not_yet_consistent") => {
                eprintln!(
                    "sb: the read side has not caught up with your last write ({} at version {}); \
                     showing what it holds",
                    write.id, write.version
                );
                self.last_write.forget();
                Ok(read(self.client.clone(), None).await?)
            }
            // Busy: the ordinary client waits out its Retry-After.
            Err(error) if error.code() == Some("rate_limited") => {
                Ok(read(self.client.clone(), Some(write)).await?)
            }
            answer => Ok(answer?),
        }
    }

    /// The caller's last memory write through `sb`, for a read to wait for.
    pub fn last_write(&self) -> Option<Written> {
        self.last_write.load()
    }

    /// Remembers a memory write for the next run's reads. Best effort: a
    /// state folder that cannot be written costs read-your-writes only.
    pub fn wrote(&self, written: Written) {
        if let Err(error) = self.last_write.store(written) {
            tracing::debug!(%error, "could not keep the last write");
        }
    }
}

/// The last write, in the user's state folder, for one caller (service and
/// key): another key's or another stack's write is nothing to wait for.
#[derive(Debug)]
struct LastWrite {
    path: Option<PathBuf>,
    caller: String,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    caller: String,
    id: uuid::Uuid,
    version: u64,
}

impl LastWrite {
    fn for_caller(config: &Resolved) -> Self {
        let dirs = directories::ProjectDirs::from("", "", "second-brain");
        let path = dirs.map(|d| {
            d.state_dir()
                .unwrap_or_else(|| d.data_local_dir())
                .join("last-write.json")
        });
        let mut hash = Sha256::new();
        hash.update(config.command_url.as_bytes());
        hash.update([0]);
        hash.update(config.api_key.as_deref().unwrap_or_default().as_bytes());
        Self {
            path,
            caller: hex::encode(&hash.finalize()[..16]),
        }
    }

    fn load(&self) -> Option<Written> {
        let text = std::fs::read(self.path.as_ref()?).ok()?;
        let stored: Stored = serde_json::from_slice(&text).ok()?;
        (stored.caller == self.caller).then_some(Written {
            id: stored.id,
            version: stored.version,
            replayed: false,
        })
    }

    fn forget(&self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }

    fn store(&self, written: Written) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let stored = Stored {
            caller: self.caller.clone(),
            id: written.id,
            version: written.version,
        };
        let text = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        // Whole or not at all: two runs at once must not leave half a file.
        let temp = path.with_extension(format!("json.{}", std::process::id()));
        std::fs::write(&temp, text)?;
        std::fs::rename(temp, path)
    }
}

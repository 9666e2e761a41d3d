//! `sb export` and `sb import`: a caller's sessions and memories as JSON
//! Lines, and back in, for another user, another stack, or a backup; and a
//! folder of Markdown notes in.
//!
//! Import is idempotent: each record is created under an `Idempotency-Key`
//! made from where it came from and what it holds, and keys never expire
//! (per user), so a second run is answered from the first and creates
//! nothing new. A record changed since is a new record, and is created.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use second_brain_client::{
    ListOptions, Memory, MemoryStatus, NewMemory, NewSession, Order, Session, SessionStatus,
    Written,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::args::{Export, Import};
use crate::commands::PAGE;
use crate::commands::{lists, sessions};
use crate::context::Context;
use crate::error::CliError;
use crate::markdown;

/// Creates in flight at once during an import.
const IN_FLIGHT: usize = 8;
/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Session(Session),
    Memory(Memory),
}

pub async fn export(ctx: &Context, args: Export) -> Result<(), CliError> {
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(private_file(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    let mut write = |record: &Record| -> Result<(), CliError> {
        serde_json::to_writer(&mut out, record).map_err(|e| CliError::Unexpected(e.to_string()))?;
        out.write_all(b"\n")
            .map_err(|e| CliError::io("writing the export", e))
    };
    // Sessions first: an import creates them before the memories in them.
    let sessions = sessions::all(ctx, None).await?;
    for session in sessions {
        write(&Record::Session(session))?;
    }
    let mut options = ListOptions {
        order: Some(Order::Asc),
        limit: Some(PAGE),
        ..ListOptions::default()
    };
    let mut memories = 0_u64;
    loop {
        // Everything this caller wrote through `sb` is in the export.
        let page = lists::list_page(ctx, &options).await?;
        for memory in page.items {
            memories += 1;
            write(&Record::Memory(memory))?;
        }
        match page.next_cursor {
            Some(cursor) => options.cursor = Some(cursor),
            None => break,
        }
    }
    out.flush()
        .map_err(|e| CliError::io("writing the export", e))?;
    eprintln!("exported {memories} memories");
    Ok(())
}

/// A new file only its owner can read: an export holds every note.
fn private_file(path: &Path) -> Result<std::fs::File, CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|e| CliError::io(format!("creating {}", path.display()), e))
}

/// What an import did, counted.
#[derive(Debug, Default, Serialize)]
struct Summary {
    sessions_created: u64,
    sessions_existing: u64,
    memories_created: u64,
    memories_existing: u64,
    /// Deleted or erased memories in the file: not imported.
    memories_skipped: u64,
}

/// A memory to create, and the key that makes creating it idempotent.
struct Item {
    key: String,
    memory: NewMemory,
}

pub async fn import(ctx: &Context, args: Import) -> Result<(), CliError> {
    let mut summary = Summary::default();
    let items = if args.source.is_dir() {
        markdown_items(&args.source, args.session)?
    } else {
        let records = read_records(&args.source)?;
        jsonl_items(ctx, records, &mut summary).await?
    };
    let progress = ProgressBar::new(items.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} memories {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // The last item alone, after the rest: its write is then committed last,
    // and the one the next read waits for covers the whole import.
    let mut items = items;
    let final_item = items.pop();
    let mut results = stream::iter(items)
        .map(|item| async move {
            ctx.client
                .create_memory_with_key(&item.memory, &item.key)
                .await
        })
        .buffer_unordered(IN_FLIGHT);
    let mut last: Option<Written> = None;
    let mut count = |written: Written| {
        if written.replayed {
            summary.memories_existing += 1;
        } else {
            summary.memories_created += 1;
            last = Some(written);
        }
        progress.inc(1);
    };
    while let Some(result) = results.next().await {
        count(result?);
    }
    if let Some(item) = final_item {
        count(
            ctx.client
                .create_memory_with_key(&item.memory, &item.key)
                .await?,
        );
    }
    progress.finish_and_clear();
    if let Some(written) = last {
        ctx.wrote(written);
    }
    if ctx.json {
        crate::output::json(&summary)
    } else {
        eprintln!(
            "imported {} memories ({} new, {} already there), {} sessions ({} new){}",
            summary.memories_created + summary.memories_existing,
            summary.memories_created,
            summary.memories_existing,
            summary.sessions_created + summary.sessions_existing,
            summary.sessions_created,
            match summary.memories_skipped {
                0 => String::new(),
                n => format!("; {n} deleted or erased memories skipped"),
            }
        );
        Ok(())
    }
}

fn read_records(source: &Path) -> Result<Vec<Record>, CliError> {
    let reader: Box<dyn BufRead> = if source == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(source)
            .map_err(|e| CliError::io(format!("opening {}", source.display()), e))?;
        Box::new(BufReader::new(file))
    };
    let mut records = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| CliError::io(format!("reading {}", source.display()), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|e| {
            CliError::Input(format!(
                "{} line {}: not a record of `sb export` ({e})",
                source.display(),
                n + 1
            ))
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Creates the file's sessions (each once, ended ones ended) and turns its
/// memories into items placed in the new sessions.
async fn jsonl_items(
    ctx: &Context,
    records: Vec<Record>,
    summary: &mut Summary,
) -> Result<Vec<Item>, CliError> {
    let mut sessions: HashMap<Uuid, Uuid> = HashMap::new();
    let mut items = Vec::new();
    for record in records {
        match record {
            Record::Session(session) => {
                let new = NewSession {
                    title: session.facts.title.clone(),
                    metadata: session.facts.metadata.clone(),
                };
                let key = key("session", &session.id.to_string(), &new)?;
                let written = ctx.client.create_session_with_key(&new, &key).await?;
                if written.replayed {
                    summary.sessions_existing += 1;
                } else {
                    summary.sessions_created += 1;
                }
                if session.facts.status == SessionStatus::Ended {
                    match ctx.client.end_session(written.id).await {
                        Ok(_) => {}
                        Err(e) if e.code() == Some("session_already_ended") => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                sessions.insert(session.id, written.id);
            }
            Record::Memory(memory) if memory.facts.status != MemoryStatus::Active => {
                summary.memories_skipped += 1;
            }
            Record::Memory(memory) => {
                let facts = memory.facts;
                let session_id = match facts.session_id {
                    Some(old) => Some(*sessions.get(&old).ok_or_else(|| {
                        CliError::Input(format!(
                            "memory {} is in session {old}, which the file does not hold before it",
                            memory.id
                        ))
                    })?),
                    None => None,
                };
                let new = NewMemory {
                    content: facts.content,
                    title: facts.title,
                    tags: facts.tags,
                    metadata: facts.metadata,
                    session_id,
                    // When it happened stays what it was: the original's
                    // time, not the import's.
                    occurred_at: facts.occurred_at.or(Some(memory.created_at)),
                };
                let key = key("memory", &format!("{}@{}", memory.id, memory.version), &new)?;
                items.push(Item { key, memory: new });
            }
        }
    }
    Ok(items)
}

/// Every `*.md` under `folder`, sorted by path, as items.
fn markdown_items(folder: &Path, session: Option<Uuid>) -> Result<Vec<Item>, CliError> {
    let mut paths = Vec::new();
    collect_markdown(folder, &mut paths)?;
    paths.sort();
    let mut items = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
        let relative = path.strip_prefix(folder).unwrap_or(&path);
        let note = markdown::parse(&text)
            .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
        if note.content.is_empty() {
            eprintln!("sb: {} is empty; skipped", relative.display());
            continue;
        }
        let title = note.title.or_else(|| {
            relative
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        });
        let new = NewMemory {
            content: note.content,
            title,
            tags: note.tags,
            metadata: note.metadata,
            session_id: session,
            occurred_at: note.occurred_at,
        };
        let key = key("note", &relative.to_string_lossy(), &new)?;
        items.push(Item { key, memory: new });
    }
    Ok(items)
}

fn collect_markdown(folder: &Path, paths: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let entries = std::fs::read_dir(folder)
        .map_err(|e| CliError::io(format!("reading {}", folder.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CliError::io(format!("reading {}", folder.display()), e))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            // `.obsidian/`, `.git/`, editors' swap files.
            continue;
        }
        if path.is_dir() {
            collect_markdown(&path, paths)?;
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("md"))
        {
            paths.push(path);
        }
    }
    Ok(())
}

/// An import's `Idempotency-Key`: where the record came from and exactly
/// what it asks for, so the same record is the same key on every run and a
/// changed one is a new key (never `idempotency_key_reused`).
fn key(kind: &str, source: &str, body: &impl Serialize) -> Result<String, CliError> {
    let body = serde_json::to_vec(body).map_err(|e| CliError::Unexpected(e.to_string()))?;
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    hash.update([0]);
    hash.update(source.as_bytes());
    hash.update([0]);
    hash.update(&body);
    Ok(format!("sb-import:{}", hex::encode(hash.finalize())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_the_source_and_the_body() {
        let a = NewMemory::new("a");
        let k = key("memory", "x@1", &a).unwrap();
        assert_eq!(k, key("memory", "x@1", &a).unwrap());
        assert_ne!(k, key("memory", "x@2", &a).unwrap());
        assert_ne!(k, key("memory", "x@1", &NewMemory::new("b")).unwrap());
        assert_ne!(k, key("note", "x@1", &a).unwrap());
        assert!(k.len() <= 255 && k.is_ascii());
    }
}

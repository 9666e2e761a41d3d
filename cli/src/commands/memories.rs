//! One memory at a time: remember, show, edit, tag, forget, restore, erase.

use std::io::{IsTerminal, Read, Write};
use std::process::Command as Process;

use second_brain_client::{Memory, MemoryEdit, NewMemory, Written};
use tempfile::NamedTempFile;
use uuid::Uuid;

use crate::args::{Edit, Erase, Remember, Show, Tags};
use crate::context::Context;
use crate::error::CliError;
use crate::markdown;
use crate::output;

pub async fn remember(ctx: &Context, args: Remember) -> Result<(), CliError> {
    let content = match args.content.as_deref() {
        None | Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::io("reading stdin", e))?;
            text
        }
        Some(text) => text.to_owned(),
    };
    let memory = NewMemory {
        content,
        title: args.title,
        tags: args.tags,
        metadata: args.metadata.into_iter().collect(),
        session_id: args.session,
        occurred_at: args.occurred_at,
    };
    let written = ctx.client.create_memory(&memory).await?;
    ctx.wrote(written);
    print_written(ctx, written)
}

/// A write's answer: the id alone for people and `$(sb …)`, both id and
/// version with `--json`.
pub fn print_written(ctx: &Context, written: Written) -> Result<(), CliError> {
    if ctx.json {
        output::json(&written)
    } else {
        output::line(written.id)
    }
}

/// Memory `id` at the caller's last write, when that write is this memory.
async fn read(ctx: &Context, id: Uuid, include_deleted: bool) -> Result<Memory, CliError> {
    ctx.read_your_writes(|client, write| {
        let min_version = write.filter(|w| w.id == id).map(|w| w.version);
        async move {
            if include_deleted {
                client.get_memory_including_deleted(id, min_version).await
            } else {
                client.get_memory(id, min_version).await
            }
        }
    })
    .await
}

pub async fn show(ctx: &Context, args: Show) -> Result<(), CliError> {
    let memory = read(ctx, args.id, args.include_deleted).await?;
    if ctx.json {
        output::json(&memory)
    } else {
        output::memory(&memory)
    }
}

pub async fn edit(ctx: &Context, args: Edit) -> Result<(), CliError> {
    let memory = read(ctx, args.id, false).await?;
    if args.content.is_some() || args.title.is_some() {
        let title = match args.title {
            Some(t) if t.trim().is_empty() => None,
            Some(t) => Some(t),
            None => memory.facts.title.clone(),
        };
        let content = args.content.unwrap_or_else(|| memory.facts.content.clone());
        return revise(ctx, &memory, title, content).await;
    }
    let text = markdown::render_for_edit(memory.facts.title.as_deref(), &memory.facts.content);
    let file = in_editor(&text)?;
    let result = match read_edited(&file) {
        Ok((title, content)) => revise(ctx, &memory, title, content).await,
        Err(error) => Err(error),
    };
    if result.is_err() {
        // Whatever went wrong after the editor closed, the typing is kept.
        let (_, path) = file
            .keep()
            .map_err(|e| CliError::io("keeping the edited file", e.error))?;
        eprintln!("sb: your edit is kept in {}", path.display());
    }
    result
}

fn read_edited(file: &NamedTempFile) -> Result<(Option<String>, String), CliError> {
    let edited = std::fs::read_to_string(file.path())
        .map_err(|e| CliError::io("reading the edited file", e))?;
    markdown::parse_edited(&edited).map_err(CliError::Input)
}

/// Sends what changed, with `If-Match` at the version the edit started
/// from: someone else's change meanwhile is refused (exit 4), never
/// overwritten.
async fn revise(
    ctx: &Context,
    memory: &Memory,
    title: Option<String>,
    content: String,
) -> Result<(), CliError> {
    let edit = MemoryEdit {
        content: (content != memory.facts.content).then_some(content),
        title: (title != memory.facts.title).then_some(title),
    };
    if edit.content.is_none() && edit.title.is_none() {
        eprintln!("nothing changed");
        return print_written(
            ctx,
            Written {
                id: memory.id,
                version: memory.version,
                replayed: false,
            },
        );
    }
    match ctx
        .client
        .update_memory(memory.id, &edit, Some(memory.version))
        .await
    {
        Ok(written) => {
            ctx.wrote(written);
            print_written(ctx, written)
        }
        Err(error) => {
            if error.code() == Some("version_mismatch") {
                eprintln!(
                    "sb: the memory changed while you edited it (it is past version {})",
                    memory.version
                );
            }
            Err(error.into())
        }
    }
}

/// Opens `text` in `$VISUAL` or `$EDITOR` (else `vi`); the file the user
/// saved. The command goes through the shell, so `code --wait` works.
fn in_editor(text: &str) -> Result<NamedTempFile, CliError> {
    let mut file = tempfile::Builder::new()
        .prefix("sb-edit-")
        .suffix(".md")
        .tempfile()
        .map_err(|e| CliError::io("creating a file to edit", e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| CliError::io("writing the file to edit", e))?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_owned());
    let status = Process::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file.path())
        .status()
        .map_err(|e| CliError::io(format!("starting {editor}"), e))?;
    if !status.success() {
        return Err(CliError::Usage(format!(
            "{editor} exited with {status}; nothing was changed"
        )));
    }
    Ok(file)
}

pub async fn tag(ctx: &Context, args: Tags) -> Result<(), CliError> {
    let written = ctx.client.add_tags(args.id, &args.tags).await?;
    ctx.wrote(written);
    print_written(ctx, written)
}

pub async fn untag(ctx: &Context, args: Tags) -> Result<(), CliError> {
    let written = ctx.client.remove_tags(args.id, &args.tags).await?;
    ctx.wrote(written);
    print_written(ctx, written)
}

pub async fn forget(ctx: &Context, id: Uuid) -> Result<(), CliError> {
    let written = ctx.client.delete_memory(id).await?;
    ctx.wrote(written);
    print_written(ctx, written)
}

pub async fn restore(ctx: &Context, id: Uuid) -> Result<(), CliError> {
    let written = ctx.client.restore_memory(id).await?;
    ctx.wrote(written);
    print_written(ctx, written)
}

pub async fn erase(ctx: &Context, args: Erase) -> Result<(), CliError> {
    if !args.yes {
        confirm_erase(args.id)?;
    }
    let written = ctx.client.erase_memory(args.id).await?;
    // Reads wait for the erase too: none shows the content it removed.
    ctx.wrote(written);
    print_written(ctx, written)
}

/// Asks on the terminal; without one (a script), erasing needs `--yes`.
fn confirm_erase(id: Uuid) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "erase cannot be undone; pass --yes to erase without a terminal to confirm on".into(),
        ));
    }
    eprint!(
        "Erase {id} for good? Its content, title, tags and metadata are removed from every \
         event and cannot be brought back; only the shape of its history stays. Type `erase` \
         to confirm: "
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliError::io("reading the answer", e))?;
    if answer.trim() == "erase" {
        Ok(())
    } else {
        Err(CliError::Usage("not erased".into()))
    }
}

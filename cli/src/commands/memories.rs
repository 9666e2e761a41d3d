//! One memory at a time: remember, show, edit, tag, forget, restore, erase.

use std::io::{IsTerminal, Read, Write};
use std::process::Command as Process;

use second_brain_client::{MemoryEdit, NewMemory, Written};
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

/// The version to read at: the caller's last write, when it is this memory.
fn min_version(ctx: &Context, id: Uuid) -> Option<u64> {
    ctx.last_write().filter(|w| w.id == id).map(|w| w.version)
}

pub async fn show(ctx: &Context, args: Show) -> Result<(), CliError> {
    let memory = if args.include_deleted {
        ctx.client.get_memory_including_deleted(args.id).await?
    } else {
        ctx.client
            .get_memory(args.id, min_version(ctx, args.id))
            .await?
    };
    if ctx.json {
        output::json(&memory)
    } else {
        output::memory(&memory)
    }
}

pub async fn edit(ctx: &Context, args: Edit) -> Result<(), CliError> {
    let memory = ctx
        .client
        .get_memory(args.id, min_version(ctx, args.id))
        .await?;
    let current_title = memory.facts.title.clone();
    let (title, content) = if args.content.is_some() || args.title.is_some() {
        let title = match args.title {
            Some(t) if t.trim().is_empty() => None,
            Some(t) => Some(t),
            None => current_title.clone(),
        };
        (
            title,
            args.content.unwrap_or_else(|| memory.facts.content.clone()),
        )
    } else {
        let text = markdown::render_for_edit(current_title.as_deref(), &memory.facts.content);
        let edited = in_editor(&text)?;
        let note = markdown::parse(&edited).map_err(CliError::Input)?;
        (note.title, note.content)
    };
    let edit = MemoryEdit {
        content: (content != memory.facts.content).then_some(content),
        title: (title != current_title).then_some(title),
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
    // If-Match: the edit was made on this version; someone else's change
    // meanwhile is refused (exit 4) rather than overwritten.
    match ctx
        .client
        .update_memory(memory.id, &edit, Some(memory.version))
        .await
    {
        Ok(written) => {
            ctx.wrote(written);
            print_written(ctx, written)
        }
        Err(error) if error.code() == Some("version_mismatch") => {
            let kept = keep(&edit)?;
            eprintln!(
                "sb: the memory changed while you edited it (it is past version {}); your text is in {}",
                memory.version,
                kept.display()
            );
            Err(error.into())
        }
        Err(error) => Err(error.into()),
    }
}

/// Opens `text` in `$VISUAL` or `$EDITOR` (else `vi`) and returns what the
/// user saved. The command goes through the shell, so `code --wait` works.
fn in_editor(text: &str) -> Result<String, CliError> {
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
    std::fs::read_to_string(file.path()).map_err(|e| CliError::io("reading the edited file", e))
}

/// Keeps a refused edit in a file, so no typing is lost.
fn keep(edit: &MemoryEdit) -> Result<std::path::PathBuf, CliError> {
    let text = markdown::render_for_edit(
        edit.title.clone().flatten().as_deref(),
        edit.content.as_deref().unwrap_or_default(),
    );
    let file = tempfile::Builder::new()
        .prefix("sb-edit-refused-")
        .suffix(".md")
        .tempfile()
        .map_err(|e| CliError::io("keeping the edit", e))?;
    std::fs::write(file.path(), text).map_err(|e| CliError::io("keeping the edit", e))?;
    let (_, path) = file
        .keep()
        .map_err(|e| CliError::io("keeping the edit", e.error))?;
    Ok(path)
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

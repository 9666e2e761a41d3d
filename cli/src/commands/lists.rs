//! Many memories at once: search, list, history and the state at a point.

use second_brain_client::{
    Filters, ListOptions, Memory, Mode, Order, Page, PointInTime, Search, Session,
};

use crate::args::{AsOf, Filter, History, ListArgs, ModeArg, SearchArgs};
use crate::commands::PAGE;
use crate::context::Context;
use crate::error::CliError;
use crate::output;

pub fn filters(filter: Filter) -> Filters {
    Filters {
        session: filter.session,
        tags_any: filter.tags,
        tags_all: filter.all_tags,
        created_after: filter.since,
        created_before: filter.until,
        ..Filters::default()
    }
}

pub async fn search(ctx: &Context, args: SearchArgs) -> Result<(), CliError> {
    let search = Search {
        q: args.query,
        mode: match args.mode {
            ModeArg::Hybrid => Mode::Hybrid,
            ModeArg::Semantic => Mode::Semantic,
            ModeArg::Keyword => Mode::Keyword,
        },
        k: Some(args.k),
        explain: args.explain,
        filters: filters(args.filter),
        wait_for: None,
    };
    // What this caller just wrote is searchable (read your writes).
    let results = ctx
        .read_your_writes(|client, wait_for| {
            let search = Search {
                wait_for,
                ..search.clone()
            };
            async move { client.search(&search).await }
        })
        .await?;
    if ctx.json {
        return results.hits.iter().try_for_each(output::json);
    }
    if results.hits.is_empty() {
        eprintln!("no memory matches");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = results
        .hits
        .iter()
        .map(|hit| {
            let text = match &hit.title {
                Some(title) => format!("{title}: {}", output::snippet(&hit.snippet)),
                None => output::snippet(&hit.snippet),
            };
            vec![
                hit.id.to_string(),
                output::time(hit.occurred_at.unwrap_or(hit.created_at)),
                format!("{:.3}", hit.score),
                text,
            ]
        })
        .collect();
    output::table(&["ID", "WHEN", "SCORE", "MEMORY"], &rows, output::width())
}

pub async fn list(ctx: &Context, args: ListArgs) -> Result<(), CliError> {
    let mut options = ListOptions {
        filters: filters(args.filter),
        order: Some(Order::Desc),
        limit: Some(PAGE),
        cursor: None,
        include_deleted: args.include_deleted,
        wait_for: None,
    };
    let mut memories = Vec::new();
    loop {
        let page = list_page(ctx, &options).await?;
        memories.extend(page.items);
        if args.limit.is_some_and(|n| memories.len() >= n) {
            memories.truncate(args.limit.unwrap_or_default());
            break;
        }
        match page.next_cursor {
            Some(cursor) => options.cursor = Some(cursor),
            None => break,
        }
    }
    memory_rows(ctx, &memories)
}

/// A page of `/v1/memories`; the first one reflects the caller's last write.
pub async fn list_page(ctx: &Context, options: &ListOptions) -> Result<Page<Memory>, CliError> {
    if options.cursor.is_some() {
        return Ok(ctx.client.list_memories(options).await?);
    }
    ctx.read_your_writes(|client, wait_for| {
        let options = ListOptions {
            wait_for,
            ..options.clone()
        };
        async move { client.list_memories(&options).await }
    })
    .await
}

/// Memories one per line: JSON Lines, or a table for people.
pub fn memory_rows(ctx: &Context, memories: &[Memory]) -> Result<(), CliError> {
    if ctx.json {
        return memories.iter().try_for_each(output::json);
    }
    let rows: Vec<Vec<String>> = memories
        .iter()
        .map(|m| {
            let text = match &m.facts.title {
                Some(title) => format!("{title}: {}", output::one_line(&m.facts.content)),
                None => output::one_line(&m.facts.content),
            };
            vec![
                m.id.to_string(),
                output::time(m.facts.occurred_at.unwrap_or(m.created_at)),
                m.facts.tags.join(","),
                text,
            ]
        })
        .collect();
    output::table(&["ID", "WHEN", "TAGS", "MEMORY"], &rows, output::width())
}

pub async fn history(ctx: &Context, args: History) -> Result<(), CliError> {
    let mut after = None;
    let mut entries = Vec::new();
    loop {
        let page = if args.session {
            ctx.client
                .session_history(args.id, after, Some(PAGE))
                .await?
        } else {
            ctx.client
                .memory_history(args.id, after, Some(PAGE))
                .await?
        };
        entries.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if ctx.json {
        return entries.iter().try_for_each(output::json);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.version.to_string(),
                output::time(e.recorded_at),
                e.event_type.clone(),
                e.actor_id.clone(),
                e.changes.to_string(),
            ]
        })
        .collect();
    output::table(
        &["VERSION", "WHEN", "EVENT", "BY", "CHANGES"],
        &rows,
        output::width(),
    )
}

pub async fn as_of(ctx: &Context, args: AsOf) -> Result<(), CliError> {
    let point = PointInTime {
        version: args.version,
        at: args.at,
    };
    if args.session {
        let session: Session = ctx.client.session_as_of(args.id, point).await?;
        return if ctx.json {
            output::json(&session)
        } else {
            output::session(&session)
        };
    }
    let memory = ctx.client.memory_as_of(args.id, point).await?;
    if ctx.json {
        output::json(&memory)
    } else {
        output::memory(&memory)
    }
}

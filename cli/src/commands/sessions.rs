//! `sb sessions …`: list, start, end, reopen, timeline.

use second_brain_client::{NewSession, Order, Session, SessionListOptions, SessionStatus};

use crate::args::{Sessions, StatusArg};
use crate::commands::PAGE;
use crate::commands::lists::memory_rows;
use crate::commands::memories::print_written;
use crate::context::Context;
use crate::error::CliError;
use crate::output;

pub async fn run(ctx: &Context, command: Sessions) -> Result<(), CliError> {
    match command {
        Sessions::List { status } => {
            let status = status.map(|s| match s {
                StatusArg::Open => SessionStatus::Open,
                StatusArg::Ended => SessionStatus::Ended,
            });
            let mut sessions = all(ctx, status).await?;
            sessions.reverse();
            if ctx.json {
                return sessions.iter().try_for_each(output::json);
            }
            let rows: Vec<Vec<String>> = sessions
                .iter()
                .map(|s| {
                    vec![
                        s.id.to_string(),
                        format!("{:?}", s.facts.status).to_lowercase(),
                        output::time(s.started_at),
                        s.facts.title.clone(),
                    ]
                })
                .collect();
            output::table(
                &["ID", "STATUS", "STARTED", "TITLE"],
                &rows,
                output::width(),
            )
        }
        Sessions::Start { title } => {
            let session = NewSession {
                title,
                ..NewSession::default()
            };
            let written = ctx.client.create_session(&session).await?;
            print_written(ctx, written)
        }
        Sessions::End(id) => {
            let written = ctx.client.end_session(id.id).await?;
            print_written(ctx, written)
        }
        Sessions::Reopen(id) => {
            let written = ctx.client.reopen_session(id.id).await?;
            print_written(ctx, written)
        }
        Sessions::Timeline(id) => {
            let mut cursor: Option<String> = None;
            let mut memories = Vec::new();
            loop {
                let page = ctx
                    .client
                    .timeline(id.id, Some(PAGE), cursor.as_deref())
                    .await?;
                memories.extend(page.items);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            memory_rows(ctx, &memories)
        }
    }
}

/// Every session of the caller's (with `status`), oldest first.
pub async fn all(ctx: &Context, status: Option<SessionStatus>) -> Result<Vec<Session>, CliError> {
    let mut options = SessionListOptions {
        order: Some(Order::Asc),
        limit: Some(PAGE),
        cursor: None,
    };
    let mut sessions = Vec::new();
    loop {
        let page = ctx.client.list_sessions(status, &options).await?;
        sessions.extend(page.items);
        match page.next_cursor {
            Some(cursor) => options.cursor = Some(cursor),
            None => return Ok(sessions),
        }
    }
}

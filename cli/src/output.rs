//! How answers are printed: JSON for scripts (`--json`), aligned plain-text
//! tables and documents for people.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use second_brain_client::{Memory, Session};
use serde::Serialize;

use crate::error::CliError;

pub fn json(value: &impl Serialize) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value).map_err(|e| CliError::Unexpected(e.to_string()))?;
    writeln!(out).map_err(|e| CliError::io("writing to stdout", e))
}

pub fn line(text: impl std::fmt::Display) -> Result<(), CliError> {
    writeln!(io::stdout().lock(), "{text}").map_err(|e| CliError::io("writing to stdout", e))
}

pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

/// A search snippet as plain text: the service's `<mark>` tags dropped and
/// its HTML escapes undone (it escapes for browsers; a terminal shows text).
pub fn snippet(html: &str) -> String {
    let text = html.replace("<mark>", "").replace("</mark>", "");
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&");
    one_line(&text)
}

/// Newlines and runs of spaces folded, so each row stays one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Rows under a header, each column as wide as its widest cell; the last
/// column is cut to keep rows within `width` characters.
pub fn table(header: &[&str], rows: &[Vec<String>], width: usize) -> Result<(), CliError> {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns.saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let fixed: usize = widths[..columns - 1].iter().map(|w| w + 2).sum();
    let last = width.saturating_sub(fixed).max(20);
    let mut out = io::stdout().lock();
    let mut print = |cells: Vec<String>| -> io::Result<()> {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == columns {
                text.push_str(&cut(cell, last));
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    print(header.iter().map(|h| (*h).to_owned()).collect())
        .and_then(|()| rows.iter().try_for_each(|row| print(row.clone())))
        .map_err(|e| CliError::io("writing to stdout", e))
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The terminal's width, or 100 when it is not a terminal (a pipe keeps
/// whole rows within reason).
pub fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

/// A memory for people: its facts, then its content.
pub fn memory(memory: &Memory) -> Result<(), CliError> {
    let facts = &memory.facts;
    let mut text = String::new();
    if let Some(title) = &facts.title {
        text.push_str(&format!("# {title}\n\n"));
    }
    text.push_str(&format!("id:       {}\n", memory.id));
    text.push_str(&format!("version:  {}\n", memory.version));
    text.push_str(&format!("status:   {:?}\n", facts.status).to_lowercase());
    text.push_str(&format!("created:  {}\n", time(memory.created_at)));
    text.push_str(&format!("updated:  {}\n", time(memory.updated_at)));
    if let Some(at) = facts.occurred_at {
        text.push_str(&format!("occurred: {}\n", time(at)));
    }
    if let Some(session) = facts.session_id {
        text.push_str(&format!("session:  {session}\n"));
    }
    if !facts.tags.is_empty() {
        text.push_str(&format!("tags:     {}\n", facts.tags.join(", ")));
    }
    if !facts.metadata.is_empty() {
        let metadata = serde_json::Value::Object(facts.metadata.clone());
        text.push_str(&format!("metadata: {metadata}\n"));
    }
    text.push('\n');
    text.push_str(&facts.content);
    line(text.trim_end())
}

pub fn session(session: &Session) -> Result<(), CliError> {
    let mut text = format!("# {}\n\n", session.facts.title);
    text.push_str(&format!("id:       {}\n", session.id));
    text.push_str(&format!("version:  {}\n", session.version));
    text.push_str(&format!("status:   {:?}\n", session.facts.status).to_lowercase());
    text.push_str(&format!("started:  {}\n", time(session.started_at)));
    if let Some(at) = session.ended_at {
        text.push_str(&format!("ended:    {}\n", time(at)));
    }
    line(text.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_lose_their_marks_and_escapes() {
        assert_eq!(
            snippet("the <mark>boiler</mark> &amp; the &lt;pump&gt;\nat &quot;noon&quot;"),
            "the boiler & the <pump> at \"noon\""
        );
        // An escaped ampersand is undone last, so `&amp;lt;` stays `&lt;`.
        assert_eq!(snippet("&amp;lt;"), "&lt;");
    }

    #[test]
    fn long_cells_are_cut_with_an_ellipsis() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}

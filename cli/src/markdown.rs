//! Markdown notes with YAML front matter, as note apps (Obsidian, Jekyll,
//! Hugo) write them: `title`, `tags` (a list or a comma-separated string)
//! and a date (`date`, `created` or `occurred_at`) become the memory's own
//! fields; any other key becomes metadata. `sb edit` uses the same shape.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::args::parse_time;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Note {
    pub title: Option<String>,
    pub tags: Vec<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub metadata: Map<String, Value>,
    pub content: String,
}

/// Keys read as the note's date, first found wins.
const DATE_KEYS: [&str; 3] = ["occurred_at", "date", "created"];

pub fn parse(text: &str) -> Result<Note, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (front, body) = split(text);
    let mut note = Note {
        content: body.trim().to_owned(),
        ..Note::default()
    };
    let Some(front) = front else {
        return Ok(note);
    };
    let yaml: serde_norway::Value =
        serde_norway::from_str(front).map_err(|e| format!("front matter: {e}"))?;
    let fields = match serde_json::to_value(yaml) {
        Ok(Value::Object(fields)) => fields,
        Ok(Value::Null) => Map::new(),
        Ok(_) => return Err("front matter is not a mapping of keys to values".into()),
        Err(e) => return Err(format!("front matter: {e}")),
    };
    for (key, value) in fields {
        match key.as_str() {
            "title" => note.title = text_of(&value).filter(|t| !t.trim().is_empty()),
            "tags" | "tag" => note.tags = tags_of(&value),
            k if DATE_KEYS.contains(&k) => {
                if note.occurred_at.is_none()
                    && let Some(raw) = text_of(&value)
                {
                    note.occurred_at = Some(date_of(&raw).map_err(|e| format!("{key}: {e}"))?);
                }
            }
            _ if value.is_null() => {}
            _ => {
                note.metadata.insert(key, value);
            }
        }
    }
    Ok(note)
}

/// Front matter and body: the front matter sits between a first line `---`
/// and the next line that is `---` or `...`.
fn split(text: &str) -> (Option<&str>, &str) {
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return (None, text);
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare == "..." {
            return (Some(&rest[..offset]), &rest[offset + line.len()..]);
        }
        offset += line.len();
    }
    // No closing line: not front matter after all.
    (None, text)
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn tags_of(value: &Value) -> Vec<String> {
    let raw: Vec<String> = match value {
        Value::Array(items) => items.iter().filter_map(text_of).collect(),
        other => text_of(other)
            .map(|s| s.split([',', ' ']).map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    raw.into_iter()
        // Obsidian writes `#tag` in lists too.
        .map(|t| t.trim().trim_start_matches('#').to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// A front-matter date: RFC 3339, a plain date, or YAML's `2026-11-02
/// 09:30:00` (space instead of `T`, UTC when no offset).
fn date_of(raw: &str) -> Result<DateTime<Utc>, String> {
    parse_time(raw.trim()).or_else(|e| {
        chrono::NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%d %H:%M:%S")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%d %H:%M"))
            .map(|t| t.and_utc())
            .map_err(|_| e)
    })
}

/// What `sb edit` reads back: the title from the front matter, and the text
/// exactly as saved but for the blank line and the final newline that
/// [`render_for_edit`] put around it, so a note saved untouched is unchanged
/// (`parse` trims, which would rewrite a note's own spaces and newlines).
pub fn parse_edited(text: &str) -> Result<(Option<String>, String), String> {
    let title = parse(text)?.title;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (_, body) = split(text);
    let body = body
        .strip_prefix("\r\n")
        .or_else(|| body.strip_prefix('\n'))
        .unwrap_or(body);
    let body = body
        .strip_suffix("\r\n")
        .or_else(|| body.strip_suffix('\n'))
        .unwrap_or(body);
    Ok((title, body.to_owned()))
}

/// A note as `sb edit` shows it: the title in front matter, then the text.
pub fn render_for_edit(title: Option<&str>, content: &str) -> String {
    let title = serde_json::to_string(title.unwrap_or("")).unwrap_or_default();
    format!("---\ntitle: {title}\n---\n\n{content}\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn front_matter_gives_title_tags_date_and_metadata() {
        let note = parse(
            "---\ntitle: Boiler\ntags: [house, '#urgent']\ndate: 2026-11-02\nroom: cellar\nempty:\n---\n\n# Boiler\nThe code is 4471.\n",
        )
        .unwrap();
        assert_eq!(note.title.as_deref(), Some("Boiler"));
        assert_eq!(note.tags, ["house", "urgent"]);
        assert_eq!(
            note.occurred_at.unwrap().to_rfc3339(),
            "2026-11-02T00:00:00+00:00"
        );
        assert_eq!(Value::Object(note.metadata), json!({"room": "cellar"}));
        assert_eq!(note.content, "# Boiler\nThe code is 4471.");
    }

    #[test]
    fn tags_may_be_one_comma_separated_string_and_dates_may_have_a_time() {
        let note = parse("---\ntags: a, b c\ncreated: 2026-11-02 09:30:00\n---\nx").unwrap();
        assert_eq!(note.tags, ["a", "b", "c"]);
        assert_eq!(
            note.occurred_at.unwrap().to_rfc3339(),
            "2026-11-02T09:30:00+00:00"
        );
    }

    #[test]
    fn a_note_without_front_matter_is_all_content() {
        let note = parse("just text\n---\nmore").unwrap();
        assert_eq!(note.title, None);
        assert_eq!(note.content, "just text\n---\nmore");
        // An opening line without a closing one is content too.
        assert_eq!(parse("---\nnot closed").unwrap().content, "---\nnot closed");
    }

    #[test]
    fn a_bad_date_or_yaml_is_an_error_that_says_where() {
        assert!(
            parse("---\ndate: someday\n---\nx")
                .unwrap_err()
                .contains("date")
        );
        assert!(parse("---\n[unclosed\n---\nx").is_err());
        assert!(parse("---\n- a list\n---\nx").is_err());
    }

    #[test]
    fn what_edit_writes_reads_back_the_same() {
        for title in [None, Some("A \"quoted\": title")] {
            for content in ["line one\n\nline two", "  indented\n", "\nx\n\n"] {
                let text = render_for_edit(title, content);
                let (read_title, read_content) = parse_edited(&text).unwrap();
                assert_eq!(read_title.as_deref(), title);
                assert_eq!(read_content, content, "{text:?}");
            }
        }
    }
}

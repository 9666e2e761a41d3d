use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use test_kit::db::{QUERY_READER_ROLE as READER_ROLE, database_url};
use test_kit::stack::spawn_query_stack;

#[tokio::test]
async fn a_memory_edited_ten_times_has_eleven_entries_and_every_past_state() {
    let stack = spawn_query_stack().await;
    let id = stack
        .capture(
            "alice",
            json!({"content": "draft 0", "title": "Essay", "tags": ["writing"]}),
        )
        .await;
    // The document as the read side showed it after each write, to compare
    // with the fold of the history.
    let mut seen: Vec<Value> = vec![
        stack
            .get_ok(&format!("/v1/memories/{id}?min_version=1"), "alice")
            .await,
    ];
    for i in 1..=10 {
        let version = if i % 3 == 0 {
            stack
                .add_tags("alice", id, json!([format!("pass-{i}")]))
                .await
        } else {
            stack
                .revise("alice", id, json!({"content": format!("draft {i}")}))
                .await
        };
        assert_eq!(version, i + 1);
        seen.push(
            stack
                .get_ok(&format!("/v1/memories/{id}?min_version={version}"), "alice")
                .await,
        );
    }

    let history = stack
        .get_ok(&format!("/v1/memories/{id}/history"), "alice")
        .await;
    let entries = history["items"].as_array().unwrap();
    assert_eq!(entries.len(), 11);
    assert!(history.get("next_after").is_none());
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry["version"], i + 1);
        assert_eq!(entry["actor_id"], "alice");
        assert!(entry["correlation_id"].is_string());
        assert!(entry["event_id"].is_string());
        let expected = match i {
            0 => "MemoryCaptured",
            i if i % 3 == 0 => "MemoryTagged",
            _ => "MemoryRevised",
        };
        assert_eq!(entry["type"], expected, "{entry}");
    }
    assert_eq!(entries[0]["changes"]["content"], "draft 0");
    assert_eq!(entries[1]["changes"]["content"], "draft 1");
    assert_eq!(entries[3]["changes"]["tags"], json!(["pass-3"]));
    let times: Vec<DateTime<Utc>> = entries
        .iter()
        .map(|e| e["recorded_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order");

    // A page at a time.
    let first = stack
        .get_ok(&format!("/v1/memories/{id}/history?limit=4"), "alice")
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 4);
    assert_eq!(first["next_after"], 4);
    let second = stack
        .get_ok(
            &format!("/v1/memories/{id}/history?limit=4&after=4"),
            "alice",
        )
        .await;
    assert_eq!(second["items"][0]["version"], 5);

    // The state as of every version is the state the read side showed then.
    for (k, expected) in seen.iter().enumerate() {
        let version = k + 1;
        let past = stack
            .get_ok(
                &format!("/v1/memories/{id}/as-of?version={version}"),
                "alice",
            )
            .await;
        assert_eq!(&past, expected, "as of version {version}");
    }
    let (status, body) = stack
        .get(&format!("/v1/memories/{id}/as-of?version=0"), "alice")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "no_state_yet");

    // Between two edits, a time gives the earlier state.
    for k in [1usize, 5, 9] {
        let (before, after) = (times[k - 1], times[k]);
        let between = before + (after - before) / 2;
        assert!(before < between && between < after);
        let at = between.to_rfc3339().replace('+', "%2B");
        let past = stack
            .get_ok(&format!("/v1/memories/{id}/as-of?at={at}"), "alice")
            .await;
        assert_eq!(past, seen[k - 1], "between versions {k} and {}", k + 1);
    }

    // Both bounds apply: the earlier of the two wins, either way round; with
    // neither, the memory now.
    let at_five = times[4].to_rfc3339().replace('+', "%2B");
    for (query, expected) in [
        (format!("version=3&at={at_five}"), &seen[2]),
        (format!("version=8&at={at_five}"), &seen[4]),
        (String::new(), &seen[10]),
    ] {
        let past = stack
            .get_ok(&format!("/v1/memories/{id}/as-of?{query}"), "alice")
            .await;
        assert_eq!(&past, expected, "as of {query:?}");
    }
}

#[tokio::test]
async fn an_erased_memory_keeps_the_shape_of_its_history_and_none_of_its_content() {
    let stack = spawn_query_stack().await;
    let id = stack
        .capture("alice", json!({"content": "my secret diary", "title": "Secret", "tags": ["private"], "metadata": {"mood": "secret"}}))
        .await;
    stack
        .revise("alice", id, json!({"content": "more secret words"}))
        .await;
    stack.erase("alice", id).await;
    let history = stack
        .get_ok(&format!("/v1/memories/{id}/history"), "alice")
        .await;
    let entries = history["items"].as_array().unwrap();
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["MemoryCaptured", "MemoryRevised", "MemoryErased"]);
    assert!(entries.iter().all(|e| e["actor_id"] == "alice"));
    let text = history.to_string();
    for secret in ["secret", "diary", "private", "mood"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let (status, body) = stack
        .get(&format!("/v1/memories/{id}/as-of?version=1"), "alice")
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["code"], "memory_erased");
}

#[tokio::test]
async fn a_sessions_history_and_past_states_are_read_too() {
    let stack = spawn_query_stack().await;
    let id = stack.start_session("alice", "Planning").await;
    stack
        .ok(
            Method::PATCH,
            &format!("/v1/sessions/{id}"),
            "alice",
            Some(json!({"title": "Planning Q3"})),
        )
        .await;
    stack
        .ok(
            Method::POST,
            &format!("/v1/sessions/{id}/end"),
            "alice",
            None,
        )
        .await;
    let history = stack
        .get_ok(&format!("/v1/sessions/{id}/history"), "alice")
        .await;
    let types: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["SessionStarted", "SessionRenamed", "SessionEnded"]);
    let first = stack
        .get_ok(&format!("/v1/sessions/{id}/as-of?version=1"), "alice")
        .await;
    assert_eq!(first["title"], "Planning");
    assert_eq!(first["status"], "open");
    let last = stack
        .get_ok(&format!("/v1/sessions/{id}/as-of?version=3"), "alice")
        .await;
    assert_eq!(last["title"], "Planning Q3");
    assert_eq!(last["status"], "ended");
}

#[tokio::test]
async fn history_reads_the_event_store_through_a_role_that_cannot_write_it() {
    let stack = spawn_query_stack().await;
    stack.note("alice", "x").await;
    let events_db = stack.events_url.rsplit('/').next().unwrap().to_owned();
    let mut reader = PgConnection::connect(&database_url(&events_db, Some(READER_ROLE)))
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(count, 1);
    for statement in [
        "DELETE FROM events",
        "UPDATE events SET payload = '{}'",
        "UPDATE api_keys SET revoked_at = now()",
        "DELETE FROM relay_checkpoints",
    ] {
        let error = sqlx::query(statement)
            .execute(&mut reader)
            .await
            .unwrap_err();
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .unwrap_or_default();
        assert_eq!(code, "42501", "{statement}: {error}");
    }
}

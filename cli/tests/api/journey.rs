//! The path a user takes: remember → search finds it → edit → history shows
//! both versions → export → import as another user → search there finds it;
//! a second import creates nothing new. No polling anywhere: each run waits
//! for the caller's last write, as `sb` promises.

use serde_json::Value;
use test_kit::stack::spawn_query_stack;

use crate::{Sb, script};

#[tokio::test]
async fn a_note_goes_from_remember_to_search_edit_history_export_and_into_another_users_import() {
    let stack = spawn_query_stack().await;
    let mut alice = Sb::for_user(&stack, "alice");

    let session = alice.run(&["sessions", "start", "House"]).await;
    let session = session.ok().to_owned();
    let id = alice
        .run(&[
            "remember",
            "The boiler service code is 4471; Anouk the plumber comes on Fridays",
            "--title",
            "Boiler",
            "--tag",
            "house,todo",
            "--session",
            &session,
            "--meta",
            "room=cellar",
            "--occurred-at",
            "2026-11-02",
        ])
        .await
        .ok()
        .to_owned();
    // From stdin, as a pipe gives it.
    let piped = alice
        .run_with_stdin(
            &["remember", "--tag", "garden"],
            Some("Prune the roses in March\n"),
        )
        .await
        .ok()
        .to_owned();
    assert_ne!(piped, id);

    // Search finds it at once, as a table and as JSON.
    let table = alice.run(&["search", "when does the plumber come"]).await;
    assert!(table.ok().starts_with("ID"), "{table:?}");
    assert!(table.ok().contains(&id), "{table:?}");
    let hits = alice
        .run(&["search", "boiler code", "--json", "--mode", "keyword"])
        .await
        .json_lines();
    assert_eq!(hits[0]["id"], id.as_str(), "{hits:?}");

    // Edit in $EDITOR: the script changes the code in the file sb opens.
    let editor = script(
        alice.home.path(),
        "editor",
        r#"sed -i 's/4471/5582/; s/^title: .*/title: "Boiler code"/' "$1""#,
    );
    alice.set("EDITOR", editor.to_str().unwrap());
    let edited = alice.run(&["edit", &id, "--json"]).await;
    let edited: Value = serde_json::from_str(edited.ok()).unwrap();
    assert_eq!(edited["version"], 2);
    let shown: Value =
        serde_json::from_str(alice.run(&["show", &id, "--json"]).await.ok()).unwrap();
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["title"], "Boiler code");
    assert!(shown["content"].as_str().unwrap().contains("5582"));
    assert_eq!(shown["tags"], serde_json::json!(["house", "todo"]));
    assert_eq!(shown["metadata"]["room"], "cellar");

    // History: both versions, the first capture and the revision.
    let history = alice.run(&["history", &id, "--json"]).await.json_lines();
    let versions: Vec<_> = history
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2], "{history:?}");
    assert_eq!(history[0]["type"], "MemoryCaptured");
    assert!(
        history[1]["changes"].to_string().contains("5582"),
        "{history:?}"
    );
    let table = alice.run(&["history", &id]).await;
    assert!(table.ok().contains("MemoryCaptured"), "{table:?}");
    // As of version 1: the code before the edit.
    let first: Value = serde_json::from_str(
        alice
            .run(&["as-of", &id, "--version", "1", "--json"])
            .await
            .ok(),
    )
    .unwrap();
    assert!(first["content"].as_str().unwrap().contains("4471"));

    // Export: the session, then both memories, with versions and times.
    let file = alice.home.path().join("alice.jsonl");
    alice
        .run(&["export", "--output", file.to_str().unwrap()])
        .await
        .ok();
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<_> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["session", "memory", "memory"], "{lines:?}");
    let exported = lines.iter().find(|l| l["id"] == id.as_str()).unwrap();
    assert_eq!(exported["version"], 2);
    assert!(exported["created_at"].is_string() && exported["updated_at"].is_string());

    // Bob imports it; his search finds the note, in his own session.
    let bob = Sb::for_user(&stack, "bob");
    let import = bob.run(&["import", file.to_str().unwrap(), "--json"]).await;
    let summary: Value = serde_json::from_str(import.ok()).unwrap();
    assert_eq!(summary["memories_created"], 2, "{summary}");
    assert_eq!(summary["sessions_created"], 1, "{summary}");
    let hits = bob
        .run(&["search", "boiler code", "--json", "--mode", "keyword"])
        .await
        .json_lines();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let bobs = hits[0]["id"].as_str().unwrap();
    assert_ne!(bobs, id, "a memory of Bob's own");
    let bobs: Value = serde_json::from_str(bob.run(&["show", bobs, "--json"]).await.ok()).unwrap();
    assert_eq!(bobs["owner_id"], "bob");
    assert_eq!(bobs["title"], "Boiler code");
    assert_eq!(bobs["occurred_at"], shown["occurred_at"]);
    assert_ne!(bobs["session_id"], session.as_str());
    let bob_sessions = bob.run(&["sessions", "list", "--json"]).await.json_lines();
    assert_eq!(bob_sessions.len(), 1);
    assert_eq!(bobs["session_id"], bob_sessions[0]["id"]);

    // Twice: nothing new.
    let again = bob.run(&["import", file.to_str().unwrap(), "--json"]).await;
    let summary: Value = serde_json::from_str(again.ok()).unwrap();
    assert_eq!(summary["memories_created"], 0, "{summary}");
    assert_eq!(summary["memories_existing"], 2, "{summary}");
    assert_eq!(summary["sessions_created"], 0, "{summary}");
    let listed = bob.run(&["list", "--json"]).await.json_lines();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let bob_sessions = bob.run(&["sessions", "list", "--json"]).await.json_lines();
    assert_eq!(bob_sessions.len(), 1);

    // Alice still has hers, and only hers.
    let alices = alice.run(&["list", "--json"]).await.json_lines();
    assert_eq!(alices.len(), 2);
    assert!(alices.iter().all(|m| m["owner_id"] == "alice"));
}

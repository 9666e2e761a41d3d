//! A folder of Markdown notes imports with its front matter, skips hidden
//! folders, and a second run creates nothing new.

use serde_json::Value;
use test_kit::stack::spawn_query_stack;

use crate::Sb;

#[tokio::test]
async fn a_folder_of_markdown_notes_imports_once_with_titles_tags_and_dates() {
    let stack = spawn_query_stack().await;
    let alice = Sb::for_user(&stack, "alice");
    let notes = alice.home.path().join("notes");
    std::fs::create_dir_all(notes.join("trips")).unwrap();
    std::fs::create_dir_all(notes.join(".obsidian")).unwrap();
    std::fs::write(
        notes.join("boiler.md"),
        "---\ntitle: Boiler\ntags: [house, '#urgent']\ndate: 2026-11-02\nroom: cellar\n---\n\nThe service code is 4471.\n",
    )
    .unwrap();
    std::fs::write(
        notes.join("trips/lisbon.md"),
        "# Lisbon\n\nThe tram 28 leaves from Martim Moniz.\n",
    )
    .unwrap();
    std::fs::write(notes.join(".obsidian/workspace.md"), "not a note").unwrap();
    std::fs::write(notes.join("todo.txt"), "not markdown").unwrap();

    let first = alice
        .run(&["import", notes.to_str().unwrap(), "--json"])
        .await;
    let summary: Value = serde_json::from_str(first.ok()).unwrap();
    assert_eq!(summary["memories_created"], 2, "{summary}");

    let listed = alice.run(&["list", "--json"]).await.json_lines();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let boiler = listed.iter().find(|m| m["title"] == "Boiler").unwrap();
    assert_eq!(boiler["tags"], serde_json::json!(["house", "urgent"]));
    assert_eq!(boiler["occurred_at"], "2026-11-02T00:00:00Z");
    assert_eq!(boiler["metadata"]["room"], "cellar");
    assert_eq!(boiler["content"], "The service code is 4471.");
    // No front matter: the file's name is the title.
    let lisbon = listed.iter().find(|m| m["title"] == "lisbon").unwrap();
    assert!(lisbon["content"].as_str().unwrap().contains("tram 28"));

    let hits = alice
        .run(&["search", "which tram in Lisbon", "--json"])
        .await
        .json_lines();
    assert_eq!(hits[0]["id"], lisbon["id"], "{hits:?}");

    let second = alice
        .run(&["import", notes.to_str().unwrap(), "--json"])
        .await;
    let summary: Value = serde_json::from_str(second.ok()).unwrap();
    assert_eq!(summary["memories_created"], 0, "{summary}");
    assert_eq!(summary["memories_existing"], 2, "{summary}");
    assert_eq!(alice.run(&["list", "--json"]).await.json_lines().len(), 2);
}

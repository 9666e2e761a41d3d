use std::time::Duration;

use second_brain_client::{
    Filters, ListOptions, MemoryEdit, MemoryStatus, NewMemory, NewSession, PointInTime,
    RetryPolicy, Search, SessionListOptions, SessionStatus,
};
use serde_json::{Map, json};
use test_kit::poll::until_some;
use test_kit::stack::spawn_query_stack;

use crate::client_for;

#[tokio::test]
async fn every_operation_round_trips_through_both_services() {
    let stack = spawn_query_stack().await;
    let alice = client_for(&stack, "client-alice", RetryPolicy::default());
    let bob = client_for(&stack, "client-bob", RetryPolicy::default());

    // Sessions.
    let session = alice
        .create_session(&NewSession {
            title: "Kitchen works".into(),
            metadata: Map::new(),
        })
        .await
        .unwrap();
    assert_eq!(session.version, 1);
    let renamed = alice
        .rename_session(session.id, "Kitchen renovation")
        .await
        .unwrap();
    let doc = alice
        .get_session(session.id, Some(renamed.version))
        .await
        .unwrap();
    assert_eq!(doc.facts.title, "Kitchen renovation");

    // A memory in it, read back at the version its creation returned.
    let mut new = NewMemory::new("The plumber Anouk fixes the boiler on Thursday morning");
    new.title = Some("Boiler".into());
    new.tags = vec!["House".into(), "todo".into()];
    new.session_id = Some(session.id);
    new.occurred_at = Some("2026-11-02T09:00:00Z".parse().unwrap());
    let created = alice.create_memory(&new).await.unwrap();
    let memory = alice
        .get_memory(created.id, Some(created.version))
        .await
        .unwrap();
    assert_eq!(memory.facts.content, new.content);
    assert_eq!(memory.facts.tags, ["house", "todo"]);
    assert_eq!(memory.facts.session_id, Some(session.id));

    // An edit with the right If-Match lands; with a stale one it is a typed 412.
    let edit = MemoryEdit {
        content: Some("The plumber Anouk fixes the boiler on Friday morning".into()),
        title: Some(None),
    };
    let revised = alice
        .update_memory(created.id, &edit, Some(created.version))
        .await
        .unwrap();
    assert_eq!(revised.version, created.version + 1);
    let stale = alice
        .update_memory(created.id, &edit, Some(created.version))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Some("version_mismatch"), "{stale}");
    assert_eq!(stale.status(), Some(412));

    let tagged = alice
        .add_tags(created.id, &["urgent".into()])
        .await
        .unwrap();
    let untagged = alice
        .remove_tags(created.id, &["todo".into()])
        .await
        .unwrap();
    assert_eq!(untagged.version, tagged.version + 1);
    let mut metadata = Map::new();
    metadata.insert("room".into(), json!("cellar"));
    alice.set_metadata(created.id, &metadata).await.unwrap();
    let moved_out = alice.move_memory(created.id, None).await.unwrap();
    let moved_back = alice
        .move_memory(created.id, Some(session.id))
        .await
        .unwrap();
    assert_eq!(moved_back.version, moved_out.version + 1);
    let memory = alice
        .get_memory(created.id, Some(moved_back.version))
        .await
        .unwrap();
    assert_eq!(memory.facts.title, None);
    assert_eq!(memory.facts.tags, ["house", "urgent"]);
    assert_eq!(memory.facts.metadata, metadata);

    // Lists, the timeline and search.
    // Lists come from the search read model, which may trail the documents.
    let wanted = [created.id];
    until_some(
        "the list shows the memory",
        stack.deadline,
        Duration::from_millis(50),
        || {
            let alice = alice.clone();
            async move {
                let options = ListOptions {
                    filters: Filters {
                        tags_all: vec!["urgent".into()],
                        ..Filters::default()
                    },
                    ..ListOptions::default()
                };
                let page = alice.list_memories(&options).await.unwrap();
                (page.items.iter().map(|m| m.id).collect::<Vec<_>>() == wanted).then_some(())
            }
        },
    )
    .await;
    let timeline = alice.timeline(session.id, Some(10), None).await.unwrap();
    assert_eq!(timeline.items.len(), 1);
    until_some(
        "the open sessions list it",
        stack.deadline,
        Duration::from_millis(50),
        || {
            let alice = alice.clone();
            async move {
                let page = alice
                    .list_sessions(Some(SessionStatus::Open), &SessionListOptions::default())
                    .await
                    .unwrap();
                (page.items.iter().map(|s| s.id).collect::<Vec<_>>() == [session.id]).then_some(())
            }
        },
    )
    .await;
    // Read your writes in search: no polling, the search waits for the write.
    let hits = alice
        .search(&Search {
            wait_for: Some(moved_back),
            ..Search::new("plumber Anouk boiler")
        })
        .await
        .unwrap();
    assert_eq!(hits.hits[0].id, created.id);

    // Another user sees nothing of it.
    let hidden = bob.get_memory(created.id, None).await.unwrap_err();
    assert_eq!(hidden.code(), Some("not_found"), "{hidden}");
    assert!(
        bob.search(&Search::new("boiler Friday"))
            .await
            .unwrap()
            .hits
            .is_empty()
    );

    // Delete and restore.
    let deleted = alice.delete_memory(created.id).await.unwrap();
    let gone = until_some(
        "the deletion reaches the document",
        stack.deadline,
        Duration::from_millis(50),
        || {
            let alice = alice.clone();
            async move { alice.get_memory(created.id, None).await.err() }
        },
    )
    .await;
    assert_eq!(gone.code(), Some("not_found"));
    // Still there for a restore, as deleted, at the deletion's version.
    let kept = until_some(
        "the deleted memory reads as deleted",
        stack.deadline,
        Duration::from_millis(50),
        || {
            let alice = alice.clone();
            async move {
                let m = alice
                    .get_memory_including_deleted(created.id, None)
                    .await
                    .unwrap();
                (m.version == deleted.version).then_some(m)
            }
        },
    )
    .await;
    assert_eq!(kept.facts.status, MemoryStatus::Deleted);
    let restored = alice.restore_memory(created.id).await.unwrap();
    let memory = alice
        .get_memory(created.id, Some(restored.version))
        .await
        .unwrap();
    assert_eq!(memory.facts.status, MemoryStatus::Active);

    // History and as-of.
    let history = alice.memory_history(created.id, None, None).await.unwrap();
    assert_eq!(history.items.len() as u64, restored.version);
    assert_eq!(history.items[0].event_type, "MemoryCaptured");
    let page = alice
        .memory_history(created.id, Some(1), Some(1))
        .await
        .unwrap();
    assert_eq!(page.items[0].version, 2);
    assert_eq!(page.next_after, Some(2));
    let first = alice
        .memory_as_of(
            created.id,
            PointInTime {
                version: Some(1),
                at: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.facts.content, new.content);
    assert_eq!(first.facts.title.as_deref(), Some("Boiler"));

    // End and reopen the session; its history and past.
    let ended = alice.end_session(session.id).await.unwrap();
    let doc = alice
        .get_session(session.id, Some(ended.version))
        .await
        .unwrap();
    assert_eq!(doc.facts.status, SessionStatus::Ended);
    let reopened = alice.reopen_session(session.id).await.unwrap();
    let session_history = alice.session_history(session.id, None, None).await.unwrap();
    assert_eq!(session_history.items.len() as u64, reopened.version);
    let was = alice
        .session_as_of(
            session.id,
            PointInTime {
                version: Some(1),
                at: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(was.facts.title, "Kitchen works");

    // Erase: gone for good, as-of is a typed 410.
    let erased = alice.erase_memory(created.id).await.unwrap();
    assert!(erased.version > restored.version);
    let past = alice
        .memory_as_of(created.id, PointInTime::default())
        .await
        .unwrap_err();
    assert_eq!(past.code(), Some("memory_erased"), "{past}");
    assert_eq!(past.status(), Some(410));
}

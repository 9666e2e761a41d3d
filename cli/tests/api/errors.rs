//! Exit codes scripts can rely on (`sb --help` lists them), and the
//! refusals that protect data: a concurrent change during an edit, an erase
//! nobody confirmed.

use test_kit::stack::spawn_query_stack;

use crate::{Sb, script};

#[tokio::test]
async fn each_kind_of_failure_has_its_exit_code_and_a_message_on_stderr() {
    let stack = spawn_query_stack().await;
    let alice = Sb::for_user(&stack, "alice");
    let unknown = uuid::Uuid::now_v7().to_string();

    let missing = alice.run(&["show", &unknown]).await;
    assert_eq!(missing.code, 3, "{missing:?}");
    assert!(missing.stderr.contains("not_found"), "{missing:?}");

    let blank = alice.run_with_stdin(&["remember"], Some("   \n")).await;
    assert_eq!(blank.code, 6, "{blank:?}");
    assert!(blank.stderr.contains("422"), "{blank:?}");

    let usage = alice.run(&["show", "not-a-uuid"]).await;
    assert_eq!(usage.code, 2, "{usage:?}");

    let anonymous = Sb::without_key(&stack).run(&["list"]).await;
    assert_eq!(anonymous.code, 5, "{anonymous:?}");

    let mut nowhere = Sb::for_user(&stack, "alice");
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    nowhere.set("SB_QUERY_URL", format!("http://127.0.0.1:{port}"));
    let down = nowhere.run(&["list"]).await;
    assert_eq!(down.code, 7, "{down:?}");
}

#[tokio::test]
async fn an_edit_that_someone_else_overtook_is_refused_and_the_text_is_kept() {
    let stack = spawn_query_stack().await;
    let mut alice = Sb::for_user(&stack, "alice");
    let id = alice.run(&["remember", "draft one"]).await.ok().to_owned();
    // While the editor is open, another `sb` tags the memory: a new version.
    let sb = env!("CARGO_BIN_EXE_sb");
    let editor = script(
        alice.home.path(),
        "editor",
        &format!("\"{sb}\" tag {id} meanwhile >/dev/null\nsed -i 's/draft one/draft two/' \"$1\""),
    );
    alice.set("EDITOR", editor.to_str().unwrap());
    let edit = alice.run(&["edit", &id]).await;
    assert_eq!(edit.code, 4, "{edit:?}");
    assert!(edit.stderr.contains("version_mismatch"), "{edit:?}");
    let kept = edit
        .stderr
        .split_whitespace()
        .find(|w| w.contains("sb-edit-"))
        .unwrap();
    assert!(std::fs::read_to_string(kept).unwrap().contains("draft two"));
    let shown = alice.run(&["show", &id, "--json"]).await;
    let shown: serde_json::Value = serde_json::from_str(shown.ok()).unwrap();
    assert_eq!(shown["content"], "draft one", "nothing was overwritten");
    assert_eq!(shown["tags"], serde_json::json!(["meanwhile"]));
}

#[tokio::test]
async fn erase_needs_a_confirmation_that_a_script_gives_with_yes() {
    let stack = spawn_query_stack().await;
    let alice = Sb::for_user(&stack, "alice");
    let id = alice
        .run(&["remember", "the old alarm code"])
        .await
        .ok()
        .to_owned();

    // No terminal to ask on, no --yes: refused, nothing erased.
    let refused = alice.run(&["erase", &id]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("--yes"), "{refused:?}");
    alice.run(&["show", &id]).await.ok();

    alice.run(&["erase", &id, "--yes"]).await.ok();
    let gone = alice.run(&["show", &id]).await;
    assert_eq!(gone.code, 3, "{gone:?}");
    // History keeps the shape only: events, no content.
    let history = alice.run(&["history", &id, "--json"]).await;
    assert!(!history.ok().contains("alarm code"), "{history:?}");
    assert!(history.ok().contains("MemoryErased"), "{history:?}");
}

#[tokio::test]
async fn forget_and_restore_and_tags_answer_the_new_version() {
    let stack = spawn_query_stack().await;
    let alice = Sb::for_user(&stack, "alice");
    let id = alice
        .run(&["remember", "a note to tidy"])
        .await
        .ok()
        .to_owned();
    let tagged = alice.run(&["tag", &id, "a,b", "--json"]).await;
    let tagged: serde_json::Value = serde_json::from_str(tagged.ok()).unwrap();
    assert_eq!(tagged["version"], 2);
    alice.run(&["untag", &id, "a"]).await.ok();
    alice.run(&["forget", &id]).await.ok();
    assert_eq!(alice.run(&["show", &id]).await.code, 3);
    let listed = alice.run(&["list", "--json"]).await.json_lines();
    assert!(listed.is_empty(), "{listed:?}");
    alice.run(&["restore", &id]).await.ok();
    let shown = alice.run(&["show", &id, "--json"]).await;
    let shown: serde_json::Value = serde_json::from_str(shown.ok()).unwrap();
    assert_eq!(shown["tags"], serde_json::json!(["b"]));
    assert_eq!(shown["version"], 5);
}

/// A last write the read side never reaches (here: a version that does not
/// exist) costs one wait: the run says so, answers what the read side
/// holds, and later runs no longer wait for it.
#[tokio::test]
async fn a_last_write_the_read_side_never_reaches_is_reported_once_and_forgotten() {
    // The service's own wait: the stuck read waits it out once, and a loaded
    // machine has projected the note by then.
    let stack = spawn_query_stack().await;
    let alice = Sb::for_user(&stack, "alice");
    let id = alice
        .run(&["remember", "the gate code is 1234"])
        .await
        .ok()
        .to_owned();
    let state = alice
        .home
        .path()
        .join(".local/state/second-brain/last-write.json");
    let mut stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(stored["id"], id.as_str());
    stored["version"] = 99.into();
    std::fs::write(&state, stored.to_string()).unwrap();

    let stuck = alice.run(&["search", "gate code", "--json"]).await;
    assert!(stuck.stderr.contains("has not caught up"), "{stuck:?}");
    assert_eq!(stuck.json_lines()[0]["id"], id.as_str());
    assert!(!state.exists(), "the stuck write is forgotten");
    let next = alice.run(&["search", "gate code", "--json"]).await;
    assert!(next.stderr.is_empty(), "{next:?}");
}

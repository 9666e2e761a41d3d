//! `sb login` keeps the key where only its owner can read it, refuses a key
//! the service does not accept, and later runs use the stored key.

use std::os::unix::fs::PermissionsExt;

use test_kit::stack::spawn_query_stack;

use crate::Sb;

#[tokio::test]
async fn login_stores_an_accepted_key_with_mode_600_and_later_runs_use_it() {
    let stack = spawn_query_stack().await;
    let sb = Sb::without_key(&stack);

    let refused = sb
        .run_with_stdin(&["login", "--key-stdin"], Some("sbk_not_a_real_key\n"))
        .await;
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(!sb.config_file().exists(), "a refused key is not stored");

    let token = stack.token("alice");
    sb.run_with_stdin(&["login", "--key-stdin"], Some(&format!("{token}\n")))
        .await
        .ok();
    let file = sb.config_file();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let folder = std::fs::metadata(file.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(folder & 0o777, 0o700, "{folder:o}");
    assert!(std::fs::read_to_string(&file).unwrap().contains(&token));

    // No SB_API_KEY: the stored key signs the run in.
    let id = sb
        .run(&["remember", "signed in from the file"])
        .await
        .ok()
        .to_owned();
    let shown = sb.run(&["show", &id, "--json"]).await;
    let shown: serde_json::Value = serde_json::from_str(shown.ok()).unwrap();
    assert_eq!(shown["owner_id"], "alice");

    // `sb config` says where things come from, never the key itself.
    let config = sb.run(&["config"]).await;
    assert!(config.ok().contains("the config file"), "{config:?}");
    assert!(!config.stdout.contains(&token));
}

#[tokio::test]
async fn completions_are_generated_for_each_shell() {
    let stack = spawn_query_stack().await;
    let sb = Sb::without_key(&stack);
    for shell in ["bash", "zsh", "fish"] {
        let script = sb.run(&["completions", shell]).await;
        assert!(script.ok().contains("remember"), "{shell}: {script:?}");
    }
}

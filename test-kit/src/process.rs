//! The services' binaries as an operator or a container runs them.

use std::path::PathBuf;

/// The path of this workspace's binary `name`, built beside the test binary
/// (cargo builds a package's binaries before its integration tests; the
/// test binary runs from `target/<profile>/deps/`).
pub fn cargo_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary sits in target/<profile>/deps");
    profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Runs `binary healthcheck` with `address_var` set to `listen`, as a
/// container would; returns whether it exited 0.
pub async fn healthcheck(binary: &str, address_var: &str, listen: String) -> bool {
    let (binary, address_var) = (binary.to_owned(), address_var.to_owned());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary)
            .arg("healthcheck")
            .env(address_var, listen)
            .status()
            .unwrap()
            .success()
    })
    .await
    .unwrap()
}

/// The `healthcheck` subcommand of `binary` passes against the service
/// listening on `port` (probed on loopback although it listens, as in a
/// container, on every interface) and fails against an address where
/// nothing listens.
pub async fn assert_healthcheck_subcommand(binary: &str, address_var: &str, port: &str) {
    assert!(healthcheck(binary, address_var, format!("0.0.0.0:{port}")).await);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(!healthcheck(binary, address_var, dead.to_string()).await);
}

/// Runs `binary` with `args` and the environment `vars` off the async
/// threads; returns (success, stdout, stderr).
pub async fn run(
    binary: PathBuf,
    args: &[&str],
    vars: Vec<(String, String)>,
) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(&binary)
            .args(&args)
            .envs(vars)
            .output()
            .unwrap_or_else(|e| panic!("{} runs: {e}", binary.display()));
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

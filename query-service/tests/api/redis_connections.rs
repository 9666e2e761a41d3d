//! Reads by id survive Redis dropping the query service's connections (a
//! Redis restart, `CLIENT KILL`, a proxy's idle timeout): the read runs once
//! more on a fresh connection instead of failing.

use reqwest::StatusCode;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use test_kit::stack::spawn_query_stack_with;
use tokio::time::Instant;

/// A Redis server of this test's own, so that killing its clients touches
/// no other test; killed when dropped.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (deploy/native/stack test installs it)");
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while redis.command("PING\r\n").is_err() {
            assert!(
                Instant::now() < deadline,
                "the private Redis never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        redis
    }

    /// Sends one inline command and returns the first reply bytes.
    fn command(&self, line: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(line.as_bytes())?;
        let mut reply = [0_u8; 64];
        let n = stream.read(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn reads_by_id_survive_redis_dropping_every_client_connection() {
    let redis = PrivateRedis::start().await;
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    // Only the query service reads this Redis: the projector writes the
    // shared one, so each first read here repairs its document from the read
    // database into it, through the connections about to be dropped.
    let stack = spawn_query_stack_with(&[
        ("SB_REDIS_URL", url.as_str()),
        ("SB_QUERY_DOCUMENT_CACHE_SIZE", "0"),
    ])
    .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            stack
                .note("alice", format!("Redis may drop us, note {i}"))
                .await,
        );
    }
    stack.wait_until_verified().await;
    let warm = stack
        .get(&format!("/v1/memories/{}", ids[0]), "alice")
        .await;
    assert_eq!(warm.0, StatusCode::OK, "{}", warm.1);

    // Readers keep reading (the cache off, so every read goes to Redis) while
    // every client connection of the service is dropped, twenty times: reads
    // are in flight on the connections as they go. None may fail. The next
    // drop waits until every reader has finished two more reads, so each
    // read meets at most one drop (the service reads once more on a fresh
    // connection; two drops inside one read, on a loaded machine, would
    // test the machine's speed, not that).
    let reads: std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>> = std::sync::Arc::new(
        (0..6)
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for reader in 0..6 {
        let (client, base, token) = (
            stack.client.clone(),
            stack.query().to_owned(),
            stack.token("alice"),
        );
        let (ids, reads, stop) = (ids.clone(), reads.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = reader;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = ids[n % ids.len()];
                n += 1;
                let response = client
                    .get(format!("{base}/v1/memories/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                if response.status() != StatusCode::OK {
                    failures.push(format!(
                        "{} {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    ));
                }
                reads[reader].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            failures
        }));
    }
    for _ in 0..20 {
        let before: Vec<usize> = reads
            .iter()
            .map(|r| r.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while reads
            .iter()
            .zip(&before)
            .any(|(r, b)| r.load(std::sync::atomic::Ordering::Relaxed) < b + 2)
        {
            assert!(Instant::now() < deadline, "the readers stalled");
            tokio::task::yield_now().await;
        }
        let killed = redis
            .command("CLIENT KILL TYPE normal SKIPME yes\r\n")
            .unwrap();
        assert!(killed.starts_with(':'), "CLIENT KILL answered {killed}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failures = Vec::new();
    for reader in readers {
        failures.extend(reader.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} reads failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

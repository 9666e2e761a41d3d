//! Connections that die under the service: a Postgres restart kills them
//! all at once. Here they are terminated on the shared server (which stays
//! up, for the other tests), all but the revocation listener's, so that only
//! the requests that meet them can tell the pool; the restart itself is
//! tested across both services in query-service's `restarts`.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::time::Duration;
use test_kit::command_app::{TestApp, settings_for, spawn_app};
use test_kit::http::{Answer, token_for};
use tokio::time::Instant;
use uuid::Uuid;

/// Captures, tag changes and captures with an API key, all at once.
async fn burst(app: &TestApp, user: &str, memory: Uuid, key: &str) -> Vec<Answer> {
    let requests = (0..4).flat_map(|n| {
        [
            app.request(Method::POST, "/v1/memories", user)
                .json(&json!({ "content": format!("burst {n}") })),
            app.request(Method::POST, &format!("/v1/memories/{memory}/tags"), user)
                .json(&json!({ "tags": [format!("t{n}")] })),
            app.client
                .post(format!("{}/v1/memories", app.address))
                .bearer_auth(key)
                .json(&json!({ "content": format!("burst with a key {n}") })),
        ]
    });
    futures::future::join_all(requests.map(|request| app.send(request))).await
}

/// Terminates every backend of the app's database but this connection's and
/// the listener's; returns how many, once they are gone.
async fn kill_idle_connections(app: &TestApp) -> usize {
    let mut own = PgConnection::connect(&app.database_url).await.unwrap();
    let victims: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND query NOT LIKE 'LISTEN%'",
    )
    .fetch_all(&mut own)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid")
        .bind(&victims)
        .execute(&mut own)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alive: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&victims)
                .fetch_one(&mut own)
                .await
                .unwrap();
        if alive == 0 {
            return victims.len();
        }
        assert!(
            Instant::now() < deadline,
            "{alive} backends outlived pg_terminate_backend"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn concurrent_commands_succeed_on_a_pool_whose_idle_connections_were_all_killed() {
    let app = spawn_app().await;
    let user = "killed-connections";
    let (_, key) = app.api_key(user).await;
    let memory = app.memory(user, "the memory the burst tags").await;
    // A first burst leaves several connections idle in the pool.
    for answer in burst(&app, user, memory, &key).await {
        assert!(answer.status.is_success(), "{answer:?}");
    }

    let killed = kill_idle_connections(&app).await;
    assert!(killed >= 2, "only {killed} pooled connections to kill");

    for answer in burst(&app, user, memory, &key).await {
        assert!(answer.status.is_success(), "after the kill: {answer:?}");
    }
    // Nothing was applied twice: one capture per request, one tag event per
    // new tag (the first burst's tags again add none).
    let captures: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'MemoryCaptured'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(captures, 1 + 2 * 8);
    let answer = app
        .send(app.request(Method::GET, "/health/ready", user))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

/// Where a [`CutProxy`] cuts the connection carrying the next `COMMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Before Postgres sees the `COMMIT`: the transaction is rolled back.
    BeforeCommit,
    /// After Postgres has committed, before the client hears so: the
    /// outcome the client cannot know.
    AfterCommit,
}

/// A TCP proxy in front of the test Postgres that, once armed, cuts the
/// connection that sends the next `COMMIT` (sqlx commits with a simple query
/// whose text is `COMMIT`), as a restart would, at the chosen moment.
struct CutProxy {
    port: u16,
    armed: std::sync::Arc<std::sync::Mutex<Option<Cut>>>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CutProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = std::sync::Arc::new(std::sync::Mutex::new(None));
        let cuts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (shared_armed, shared_cuts) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                tokio::spawn(relay(
                    client,
                    server,
                    shared_armed.clone(),
                    shared_cuts.clone(),
                ));
            }
        });
        Self { port, armed, cuts }
    }

    fn arm(&self, cut: Cut) {
        *self.armed.lock().unwrap() = Some(cut);
    }

    fn cuts(&self) -> usize {
        self.cuts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    armed: std::sync::Arc<std::sync::Mutex<Option<Cut>>>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let (committed_tx, mut committed_rx) = tokio::sync::mpsc::channel::<()>(1);
    let upstream = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match client_in.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buffer[..n];
            let commit = chunk.windows(7).any(|w| w == b"COMMIT\0");
            let cut = if commit {
                armed.lock().unwrap().take()
            } else {
                None
            };
            match cut {
                Some(Cut::BeforeCommit) => {
                    cuts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Dropping both halves closes both connections.
                    return;
                }
                Some(Cut::AfterCommit) => {
                    cuts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if server_out.write_all(chunk).await.is_err() {
                        return;
                    }
                    let _ = committed_tx.send(()).await;
                    return;
                }
                None => {
                    if server_out.write_all(chunk).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = server_in.read(&mut buffer) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if client_out.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
            Some(()) = committed_rx.recv() => {
                // Postgres answers the COMMIT only once it has committed:
                // read that answer, and never pass it on.
                let _ = server_in.read(&mut buffer).await;
                break;
            }
        }
    }
    upstream.abort();
}

/// The command service again, on `app`'s database, through a [`CutProxy`].
async fn through_proxy(app: &TestApp) -> (String, CutProxy) {
    let options: PgConnectOptions = app.database_url.parse().unwrap();
    let upstream = format!("{}:{}", options.get_host(), options.get_port());
    let proxy = CutProxy::start(upstream).await;
    let proxied = app.database_url.replacen(
        &format!(":{}/", options.get_port()),
        &format!(":{}/", proxy.port),
        1,
    );
    assert_ne!(proxied, app.database_url);
    let settings = settings_for(&proxied);
    let pool = command_service::startup::connect(&settings).unwrap();
    let service = command_service::startup::Application::build(&settings, pool).unwrap();
    let address = format!("http://127.0.0.1:{}", service.port());
    tokio::spawn(service.run_until_stopped());
    (address, proxy)
}

async fn events_of(app: &TestApp, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(id.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_creation_whose_connection_died_before_or_after_its_commit_is_applied_exactly_once() {
    let app = spawn_app().await;
    let (address, proxy) = through_proxy(&app).await;
    let user = "cut-commits";
    for cut in [Cut::BeforeCommit, Cut::AfterCommit] {
        let before = app.event_count().await;
        proxy.arm(cut);
        let answer = app
            .send(
                app.client
                    .post(format!("{address}/v1/memories"))
                    .bearer_auth(token_for(user))
                    .json(&json!({ "content": format!("cut {cut:?}") })),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{cut:?}: {answer:?}");
        assert_eq!(answer.version(), 1, "{cut:?}");
        assert_eq!(events_of(&app, answer.id()).await, 1, "{cut:?}");
        assert_eq!(app.event_count().await, before + 1, "{cut:?}");
    }
    assert_eq!(proxy.cuts(), 2, "both connections were cut");
}

#[tokio::test]
async fn a_change_whose_commit_answer_was_lost_is_not_applied_twice() {
    let app = spawn_app().await;
    let (address, proxy) = through_proxy(&app).await;
    let user = "cut-change";
    let memory = app.memory(user, "to be revised once").await;
    proxy.arm(Cut::AfterCommit);
    // With If-Match: deciding the command again on the state the first
    // attempt left would refuse it (412) although it was applied.
    let answer = app
        .send(
            app.client
                .patch(format!("{address}/v1/memories/{memory}"))
                .bearer_auth(token_for(user))
                .header("If-Match", "\"1\"")
                .json(&json!({ "content": "revised once" })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.version(), 2);
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(app.sequences(memory).await, vec![1, 2]);
}

//! The whole stack per test: command service with its relay, projector and
//! query service in this process, on fresh databases, exchange, queues and
//! Redis key prefix, against the real servers.

use chrono::{Duration as Days, Utc};
use command_service::startup::{Application as CommandApp, MIGRATOR as EVENT_MIGRATOR};
use embeddings::Embedder;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use projector::source::EventSource;
use projector::startup::Application as ProjectorApp;
use projector::verify::{Expected, verify_documents, verify_search};
use query_service::settings::Settings as QuerySettings;
use query_service::startup::Application as QueryApp;
use read_model::MIGRATOR as READ_MIGRATOR;
use read_model::documents::Keys;
use redis::aio::ConnectionManager;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use service_kit::auth::{UserId, issue_jwt};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use uuid::Uuid;

pub mod postgres;

pub const JWT_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// Every request of a test comes from 127.0.0.1, most from one user: the
/// tests that are not about rate limits turn them off on both services, and
/// those that are set the query service's own.
const RATE_LIMITS_OFF: [(&str, &str); 2] = [
    ("SB_RATE_LIMIT_USER_PER_SECOND", "0"),
    ("SB_RATE_LIMIT_IP_PER_SECOND", "0"),
];
/// How long any one expectation may take. Generous: the machine is shared
/// and noisy; a passing test takes far less.
pub const DEADLINE: Duration = Duration::from_secs(120);
/// The login role the query service reads the event store as, a member of
/// the migrations' read-only `second_brain_reader`.
pub const READER_ROLE: &str = "sbt_query_reader";
/// The command service's login in tests, in `second_brain_writer`.
pub const WRITER_ROLE: &str = "sbt_command_writer";

pub fn admin_url() -> String {
    std::env::var("SB_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/postgres".to_owned())
}

pub fn rabbitmq_url() -> String {
    std::env::var("SB_TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("SB_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// `admin_url` with another database and, optionally, another user.
pub fn database_url(name: &str, user: Option<&str>) -> String {
    database_url_on(&admin_url(), name, user)
}

/// [`database_url`] on the server of `admin`.
pub fn database_url_on(admin: &str, name: &str, user: Option<&str>) -> String {
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    match user {
        Some(user) => base.replacen("postgres@", &format!("{user}@"), 1) + "/" + name,
        None => format!("{base}/{name}"),
    }
}

async fn admin(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .expect("the test Postgres answers (run deploy/native/stack servers)")
}

async fn create_database(admin_url: &str, name: &str) -> String {
    let mut admin = admin(admin_url).await;
    sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.ok();
    database_url_on(admin_url, name, None)
}

/// Creates the reader login role once per server (tests run concurrently,
/// and roles are server-wide).
async fn ensure_reader_role(admin_url: &str) {
    let mut admin = admin(admin_url).await;
    sqlx::query(&format!(
        "DO $$ BEGIN
             CREATE ROLE {READER_ROLE} LOGIN IN ROLE second_brain_reader;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(&format!(
        "DO $$ BEGIN
             CREATE ROLE {WRITER_ROLE} LOGIN IN ROLE second_brain_writer;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.ok();
}

/// The local model, loaded once per test process.
pub async fn local_embedder() -> Arc<dyn Embedder> {
    static EMBEDDER: OnceCell<Arc<dyn Embedder>> = OnceCell::const_new();
    EMBEDDER
        .get_or_init(|| async {
            // As the services read it: the model directory, and the runtime
            // with its graph and library (`deploy/native/stack test` sets
            // all of them, choosing ONNX Runtime as the deployments do).
            let settings: embeddings::EmbeddingSettings = service_kit::settings::from_env()
                .expect("the SB_EMBEDDING_* variables are valid");
            assert!(
                settings.embedding_model_dir.is_some(),
                "SB_EMBEDDING_MODEL_DIR names the all-MiniLM-L6-v2 model (deploy/native/stack test sets it)"
            );
            embeddings::build(&settings.to_config().unwrap()).await.unwrap()
        })
        .await
        .clone()
}

pub struct Stack {
    pub command: String,
    pub query: String,
    pub client: reqwest::Client,
    pub event_pool: PgPool,
    pub read_pool: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub events_url: String,
    /// The admin URL of the server the stack's databases are on.
    admin: String,
    exchange: String,
    queue_prefix: String,
    projector: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    databases: Vec<String>,
}

/// Extra query-service variables, e.g. a short consistency timeout.
pub async fn spawn_stack_with(query_vars: &[(&str, &str)]) -> Stack {
    spawn_stack_on(&admin_url(), query_vars).await
}

/// A stack whose databases are on the server of `admin` (e.g. a
/// [`postgres::ThrowawayPostgres`]).
pub async fn spawn_stack_on(admin: &str, query_vars: &[(&str, &str)]) -> Stack {
    let tag = Uuid::new_v4().simple().to_string()[..12].to_owned();
    let events_db = format!("query_ev_{tag}");
    let read_db = format!("query_rm_{tag}");
    let events_url = create_database(admin, &events_db).await;
    let read_url = create_database(admin, &read_db).await;
    let event_pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&events_url)
        .await
        .unwrap();
    EVENT_MIGRATOR.run(&event_pool).await.unwrap();
    ensure_reader_role(admin).await;
    let read_pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&read_url)
        .await
        .unwrap();
    READ_MIGRATOR.run(&read_pool).await.unwrap();
    let exchange = format!("sbt_{tag}.events");
    let queue_prefix = format!("sbt_{tag}.projector");
    let key_prefix = format!("sbt:{tag}:");

    let projector_settings: projector::settings::Settings = service_kit::settings::from_vars(
        [
            ("SB_PROJECTOR_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("SB_READ_DATABASE_URL", read_url.clone()),
            // Each service logs in as deployments make it (README,
            // "Database roles"): the projector reads the event store as a
            // reader, the command service appends as a writer, the query
            // service only reads.
            (
                "SB_EVENT_STORE_URL",
                database_url_on(admin, &events_db, Some(READER_ROLE)),
            ),
            ("SB_RABBITMQ_URL", rabbitmq_url()),
            ("SB_RABBITMQ_EXCHANGE", exchange.clone()),
            ("SB_PROJECTOR_QUEUE_PREFIX", queue_prefix.clone()),
            ("SB_REDIS_URL", redis_url()),
            ("SB_REDIS_KEY_PREFIX", key_prefix.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    )
    .unwrap();
    let projector = ProjectorApp::build(&projector_settings, local_embedder().await)
        .await
        .unwrap();
    let projector = tokio::spawn(projector.run_until_stopped());
    // The relay publishes to the exchange as soon as it starts; the queues
    // must be bound by then or the first events are unroutable.
    wait_for_queues(&queue_prefix).await;

    let writer_url = database_url_on(admin, &events_db, Some(WRITER_ROLE));
    let command_settings: command_service::settings::Settings = service_kit::settings::from_vars(
        [
            ("SB_EVENT_STORE_URL".to_owned(), writer_url),
            ("SB_JWT_SECRET".to_owned(), JWT_SECRET.to_owned()),
            ("SB_COMMAND_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("SB_RABBITMQ_URL".to_owned(), rabbitmq_url()),
            ("SB_RABBITMQ_EXCHANGE".to_owned(), exchange.clone()),
            ("SB_RELAY_POLL_INTERVAL_MS".to_owned(), "100".to_owned()),
        ]
        .into_iter()
        .chain(RATE_LIMITS_OFF.map(|(k, v)| (k.to_owned(), v.to_owned()))),
    )
    .unwrap();
    // The service's own pool, built as in production (no ping per checkout).
    let command_pool = command_service::startup::connect(&command_settings).unwrap();
    let command = CommandApp::build(&command_settings, command_pool).unwrap();
    let command_address = format!("http://127.0.0.1:{}", command.port());
    tokio::spawn(command.run_until_stopped());

    let mut vars: Vec<(String, String)> = [
        ("SB_QUERY_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        (
            "SB_READ_DATABASE_URL",
            database_url_on(admin, &read_db, Some(READER_ROLE)),
        ),
        (
            "SB_EVENT_STORE_READ_URL",
            database_url_on(admin, &events_db, Some(READER_ROLE)),
        ),
        ("SB_REDIS_URL", redis_url()),
        ("SB_REDIS_KEY_PREFIX", key_prefix.clone()),
        ("SB_JWT_SECRET", JWT_SECRET.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(RATE_LIMITS_OFF.map(|(k, v)| (k.to_owned(), v.to_owned())))
    .collect();
    vars.extend(
        query_vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let query_settings: QuerySettings = service_kit::settings::from_vars(vars).unwrap();
    query_settings.validate().unwrap();
    let query = QueryApp::build(&query_settings, local_embedder().await)
        .await
        .unwrap();
    let query_address = format!("http://127.0.0.1:{}", query.port());
    tokio::spawn(query.run_until_stopped());

    let redis = redis::Client::open(redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    Stack {
        command: command_address,
        query: query_address,
        client: reqwest::Client::new(),
        event_pool,
        read_pool,
        redis,
        keys: Keys::new(key_prefix),
        events_url,
        admin: admin.to_owned(),
        exchange,
        queue_prefix,
        projector: Some(projector),
        databases: vec![events_db, read_db],
    }
}

pub async fn spawn_stack() -> Stack {
    spawn_stack_with(&[]).await
}

/// Waits until both projection queues exist.
async fn wait_for_queues(prefix: &str) {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::FieldTable;
    let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    for projection in ["search", "documents"] {
        let queue = format!("{prefix}.{projection}");
        loop {
            let channel = connection.create_channel().await.unwrap();
            let passive = QueueDeclareOptions {
                passive: true,
                durable: true,
                ..Default::default()
            };
            if channel
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await
                .is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "queue {queue} never appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    connection.close(200, "done".into()).await.ok();
}

impl Stack {
    /// This stack's projector queues and its dead-letter queue.
    pub fn queue_names(&self) -> Vec<String> {
        ["search", "documents", "dead_letter"]
            .iter()
            .map(|q| format!("{}.{q}", self.queue_prefix))
            .collect()
    }

    /// This stack's databases: the event store, then the read model.
    pub fn database_names(&self) -> &[String] {
        &self.databases
    }

    pub fn token(&self, user: &str) -> String {
        issue_jwt(
            &SecretString::from(JWT_SECRET),
            &UserId::parse(user).unwrap(),
            Utc::now() + Days::hours(1),
        )
        .unwrap()
    }

    /// Sends a command; returns the status and body.
    pub async fn command(
        &self,
        method: Method,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.command))
            .bearer_auth(self.token(user));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A command that must succeed; returns the new version.
    pub async fn ok(&self, method: Method, path: &str, user: &str, body: Option<Value>) -> u64 {
        let (status, body) = self.command(method, path, user, body).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body["version"].as_u64().unwrap()
    }

    pub async fn capture(&self, user: &str, body: Value) -> Uuid {
        let (status, body) = self
            .command(Method::POST, "/v1/memories", user, Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn start_session(&self, user: &str, title: &str) -> Uuid {
        let (status, body) = self
            .command(
                Method::POST,
                "/v1/sessions",
                user,
                Some(serde_json::json!({ "title": title })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// A read from the query service: status and JSON body.
    pub async fn get(&self, path: &str, user: &str) -> (StatusCode, Value) {
        self.get_via(&self.client, path, user).await
    }

    /// [`Stack::get`] through `client` (a new client opens a new connection,
    /// which may land on another HTTP worker).
    pub async fn get_via(
        &self,
        client: &reqwest::Client,
        path: &str,
        user: &str,
    ) -> (StatusCode, Value) {
        let response = client
            .get(format!("{}{path}", self.query))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A read that must answer 200.
    pub async fn get_ok(&self, path: &str, user: &str) -> Value {
        let (status, body) = self.get(path, user).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    /// Removes a memory or session from both read models, as they are
    /// before the projection reaches its creation; the event store keeps it.
    pub async fn unproject(&self, kind: &str, id: Uuid) {
        let table = match kind {
            "memory" => "memories",
            "session" => "sessions",
            other => panic!("no read model of {other}"),
        };
        sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
            .bind(id)
            .execute(&self.read_pool)
            .await
            .unwrap();
        let mut redis = self.redis.clone();
        let key = match kind {
            "memory" => self.keys.memory(1, id),
            _ => self.keys.session(1, id),
        };
        let () = redis::AsyncCommands::del(&mut redis, key).await.unwrap();
    }

    /// Polls until the read models equal the fold of the event store.
    pub async fn wait_until_projected(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let source = EventSource::new(self.event_pool.clone());
            let expected = Expected::fold(&source).await.unwrap();
            let mut differences = verify_search(&self.read_pool, &expected).await.unwrap();
            let mut redis = self.redis.clone();
            differences.extend(
                verify_documents(&mut redis, &self.keys, &expected)
                    .await
                    .unwrap(),
            );
            if differences.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the read models never caught up; {} differences, e.g. {:#?}",
                differences.len(),
                &differences[..differences.len().min(3)]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The ids of a list or search answer's `items` or `hits`.
pub fn ids(body: &Value, field: &str) -> Vec<Uuid> {
    body[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

impl Drop for Stack {
    /// Removes the databases, queues, exchanges and keys of the test. Drop
    /// cannot be async, so a short-lived thread with its own runtime does it.
    fn drop(&mut self) {
        if let Some(projector) = self.projector.take() {
            projector.abort();
        }
        let databases = std::mem::take(&mut self.databases);
        let admin = self.admin.clone();
        let queues: Vec<String> = ["search", "documents", "dead_letter"]
            .iter()
            .map(|p| format!("{}.{p}", self.queue_prefix))
            .collect();
        let exchanges = vec![
            self.exchange.clone(),
            format!("{}.dead_letter", self.queue_prefix),
        ];
        let pattern = format!("{}*", self.keys.prefix());
        let handle = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin).await {
                    for database in databases {
                        let _ = sqlx::query(&format!(
                            r#"DROP DATABASE IF EXISTS "{database}" WITH (FORCE)"#
                        ))
                        .execute(&mut admin)
                        .await;
                    }
                }
                if let Ok(connection) =
                    Connection::connect(&rabbitmq_url(), ConnectionProperties::default()).await
                {
                    if let Ok(channel) = connection.create_channel().await {
                        for queue in queues {
                            let _ = channel
                                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                                .await;
                        }
                        for exchange in exchanges {
                            let _ = channel
                                .exchange_delete(
                                    exchange.as_str().into(),
                                    ExchangeDeleteOptions::default(),
                                )
                                .await;
                        }
                    }
                    let _ = connection.close(200, "done".into()).await;
                }
                if let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut redis) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(&pattern)
                        .query_async(&mut redis)
                        .await
                        .unwrap_or_default();
                    for chunk in keys.chunks(500) {
                        let _: Result<(), _> = redis::cmd("UNLINK")
                            .arg(chunk)
                            .query_async(&mut redis)
                            .await;
                    }
                }
            });
        });
        let _ = handle.join();
    }
}

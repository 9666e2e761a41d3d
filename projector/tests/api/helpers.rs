use chrono::{Duration as Days, Utc};
use command_service::startup::{Application as CommandApp, MIGRATOR as EVENT_MIGRATOR};
use embeddings::Embedder;
use event_schema::{MemoryState, StoredEvent};
use lapin::options::{
    BasicPublishOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use projector::broker::ConsumerConfig;
use projector::dead_letters::{DeadLetter, DeadLetterQueue, Ledger};
use projector::settings::Settings;
use projector::source::EventSource;
use projector::startup::Application as ProjectorApp;
use projector::verify::{Difference, Expected, verify_documents, verify_search};
use read_model::MIGRATOR as READ_MIGRATOR;
use read_model::documents::{Keys, active_generation};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use service_kit::auth::{UserId, issue_jwt};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

pub const JWT_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
/// How long any one expectation may take. Generous: the machine is shared
/// and noisy; a passing test takes far less.
pub const DEADLINE: Duration = Duration::from_secs(90);

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

fn database_url(name: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// The projector's event-store login in tests.
pub const READER_LOGIN: &str = "sbt_projector_reader";

/// Creates [`READER_LOGIN`] once per server; roles are server-wide and tests
/// run in parallel, so a concurrent creation counts as success.
async fn ensure_reader_login() {
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(&format!(
        "DO $$ BEGIN
             CREATE ROLE {READER_LOGIN} LOGIN IN ROLE second_brain_reader;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.ok();
}

async fn create_database(name: &str) -> String {
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("the test Postgres answers (run deploy/native/stack servers)");
    sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.ok();
    database_url(name)
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

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Run the command service's relay (else events reach the projector only
    /// when a test publishes them).
    pub relay: bool,
    /// Run a projector in-process.
    pub projector: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            relay: true,
            projector: true,
        }
    }
}

/// Command service, relay and projector on fresh databases, exchange,
/// queues and key prefix.
pub struct Stack {
    pub tag: String,
    pub command: String,
    pub client: reqwest::Client,
    pub event_pool: PgPool,
    pub read_pool: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub exchange: String,
    pub queue_prefix: String,
    pub projector_vars: Vec<(String, String)>,
    pub projector: Option<JoinHandle<anyhow::Result<()>>>,
    pub projector_port: Option<u16>,
    /// The event store as its owner (the projector itself reads it as a
    /// reader, through `projector_vars`); a relay needs to write.
    pub events_url: String,
    pub child: Option<std::process::Child>,
    databases: Vec<String>,
}

pub async fn spawn_stack(options: Options) -> Stack {
    let tag = Uuid::new_v4().simple().to_string()[..12].to_owned();
    let events_db = format!("proj_ev_{tag}");
    let read_db = format!("proj_rm_{tag}");
    let events_url = create_database(&events_db).await;
    let read_url = create_database(&read_db).await;
    let event_pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&events_url)
        .await
        .unwrap();
    EVENT_MIGRATOR.run(&event_pool).await.unwrap();
    // The projector reads the event store as deployments make it: a login
    // in `second_brain_reader`, which may only read (README, "Database roles").
    ensure_reader_login().await;
    let events_reader_url = events_url.replacen("postgres@", &format!("{READER_LOGIN}@"), 1);
    let read_pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&read_url)
        .await
        .unwrap();
    READ_MIGRATOR.run(&read_pool).await.unwrap();
    let exchange = format!("sbt_{tag}.events");
    let queue_prefix = format!("sbt_{tag}.projector");
    let key_prefix = format!("sbt:{tag}:");

    let command_settings: command_service::settings::Settings = service_kit::settings::from_vars([
        ("SB_EVENT_STORE_URL".to_owned(), events_url.clone()),
        ("SB_JWT_SECRET".to_owned(), JWT_SECRET.to_owned()),
        ("SB_COMMAND_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("SB_RELAY_ENABLED".to_owned(), options.relay.to_string()),
        ("SB_RABBITMQ_URL".to_owned(), rabbitmq_url()),
        ("SB_RABBITMQ_EXCHANGE".to_owned(), exchange.clone()),
        ("SB_RELAY_POLL_INTERVAL_MS".to_owned(), "100".to_owned()),
        // The crash test sends thousands of commands from one address.
        ("SB_RATE_LIMIT_USER_PER_SECOND".to_owned(), "0".to_owned()),
        ("SB_RATE_LIMIT_IP_PER_SECOND".to_owned(), "0".to_owned()),
    ])
    .unwrap();
    let command = CommandApp::build(&command_settings, event_pool.clone()).unwrap();
    let address = format!("http://127.0.0.1:{}", command.port());
    tokio::spawn(command.run_until_stopped());

    let projector_vars: Vec<(String, String)> = [
        ("SB_PROJECTOR_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("SB_READ_DATABASE_URL", read_url),
        ("SB_EVENT_STORE_URL", events_reader_url),
        ("SB_RABBITMQ_URL", rabbitmq_url()),
        ("SB_RABBITMQ_EXCHANGE", exchange.clone()),
        ("SB_PROJECTOR_QUEUE_PREFIX", queue_prefix.clone()),
        ("SB_REDIS_URL", redis_url()),
        ("SB_REDIS_KEY_PREFIX", key_prefix.clone()),
        ("SB_PROJECTOR_MAX_ATTEMPTS", "3".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let redis = redis::Client::open(redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let mut stack = Stack {
        tag,
        command: address,
        client: reqwest::Client::new(),
        event_pool,
        read_pool,
        redis,
        keys: Keys::new(key_prefix),
        exchange,
        queue_prefix,
        projector_vars,
        projector: None,
        projector_port: None,
        events_url: events_url.clone(),
        child: None,
        databases: vec![events_db, read_db],
    };
    if options.projector {
        stack.start_projector().await;
    }
    stack
}

impl Stack {
    pub fn settings(&self) -> Settings {
        let settings: Settings =
            service_kit::settings::from_vars(self.projector_vars.clone()).unwrap();
        settings.validate().unwrap();
        settings
    }

    /// Starts a projector in this process (its consumers declare the queues).
    pub async fn start_projector(&mut self) {
        self.start_projector_with(local_embedder().await).await;
    }

    /// Starts a projector in this process with this embedder.
    pub async fn start_projector_with(&mut self, embedder: Arc<dyn Embedder>) {
        let app = ProjectorApp::build(&self.settings(), embedder)
            .await
            .unwrap();
        self.projector_port = Some(app.port());
        self.projector = Some(tokio::spawn(app.run_until_stopped()));
        self.wait_for_queues().await;
    }

    pub fn queue(&self, projection: &str) -> String {
        format!("{}.{projection}", self.queue_prefix)
    }

    /// Waits until both projection queues exist, so nothing published is lost.
    pub async fn wait_for_queues(&self) {
        let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let deadline = Instant::now() + DEADLINE;
        for projection in ["search", "documents"] {
            loop {
                let channel = connection.create_channel().await.unwrap();
                let passive = QueueDeclareOptions {
                    passive: true,
                    durable: true,
                    ..Default::default()
                };
                if channel
                    .queue_declare(
                        self.queue(projection).as_str().into(),
                        passive,
                        FieldTable::default(),
                    )
                    .await
                    .is_ok()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "queue {} never appeared",
                    self.queue(projection)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        connection.close(200, "done".into()).await.ok();
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
        method: reqwest::Method,
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

    pub async fn capture(&self, user: &str, body: Value) -> Uuid {
        let (status, body) = self
            .command(reqwest::Method::POST, "/v1/memories", user, Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn start_session(&self, user: &str, title: &str) -> Uuid {
        let (status, body) = self
            .command(
                reqwest::Method::POST,
                "/v1/sessions",
                user,
                Some(json!({ "title": title })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> u64 {
        let (status, body) = self.command(method, path, user, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body["version"].as_u64().unwrap()
    }

    /// Every difference between the read models and the fold of the store.
    pub async fn verify(&self) -> Vec<Difference> {
        let source = EventSource::new(self.event_pool.clone());
        let expected = Expected::fold(&source).await.unwrap();
        let mut differences = verify_search(&self.read_pool, &expected).await.unwrap();
        let mut redis = self.redis.clone();
        differences.extend(
            verify_documents(&mut redis, &self.keys, &expected)
                .await
                .unwrap(),
        );
        differences
    }

    /// Polls `verify` until the read models equal the fold of the store.
    pub async fn wait_until_verified(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let differences = self.verify().await;
            if differences.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the read models never caught up; {} differences, e.g. {:#?}",
                differences.len(),
                &differences[..differences.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until `check` holds.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + DEADLINE;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The memory's Redis document in the active generation.
    pub async fn document(&self, id: Uuid) -> Option<MemoryState> {
        let mut redis = self.redis.clone();
        let g = active_generation(&mut redis, &self.keys).await.unwrap();
        let doc: Option<String> = redis.get(self.keys.memory(g, id)).await.unwrap();
        doc.map(|d| serde_json::from_str(&d).unwrap())
    }

    /// `(version, content, embedding dimensions, has a tsvector)` of the
    /// memory's search row.
    pub async fn search_row(&self, id: Uuid) -> Option<(i64, String, Option<i32>, bool)> {
        sqlx::query_as(
            "SELECT version, content, vector_dims(embedding), search IS NOT NULL AND search <> ''::tsvector
               FROM memories WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read_pool)
        .await
        .unwrap()
    }

    /// The stored events, in global order.
    pub async fn stored_events(&self) -> Vec<StoredEvent> {
        let mut all = Vec::new();
        let mut tx = self.event_pool.begin().await.unwrap();
        {
            use futures::TryStreamExt;
            let mut stream = EventSource::all_in(&mut tx);
            while let Some(event) = stream.try_next().await.unwrap() {
                all.push(event);
            }
        }
        tx.commit().await.unwrap();
        all
    }

    /// Publishes raw bodies straight into a projection queue, bypassing the
    /// exchange, as a broker redelivery or a misbehaving publisher would.
    pub async fn inject(&self, projection: &str, bodies: &[Vec<u8>]) {
        let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel.confirm_select(Default::default()).await.unwrap();
        for body in bodies {
            channel
                .basic_publish(
                    "".into(),
                    self.queue(projection).as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
        connection.close(200, "done".into()).await.ok();
    }

    /// The consumer settings `dead-letters` needs to find this test's queues.
    pub fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            url: SecretString::from(rabbitmq_url()),
            exchange: self.exchange.clone(),
            queue_prefix: self.queue_prefix.clone(),
            prefetch: 1,
            batch_size: 1,
            max_attempts: 1,
            dead_letter_max_length: projector::settings::default_dead_letter_max_length(),
            partitions: 1,
            partition: 0,
        }
    }

    pub fn dead_letter_queue_name(&self) -> String {
        self.consumer_config().dead_letter()
    }

    /// The events of the store as a projector's `retry` reads them.
    pub fn source(&self) -> EventSource {
        EventSource::new(self.event_pool.clone())
    }

    /// The bodies and headers of every message in `queue`, as text: what
    /// anyone reading the broker would find. Taken unacknowledged, so
    /// closing the channel puts them back.
    pub async fn dump_queue(&self, queue: &str) -> String {
        let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let mut out = String::new();
        while let Some(message) = channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: false },
            )
            .await
            .unwrap()
        {
            out.push_str(&String::from_utf8_lossy(&message.delivery.data));
            out.push_str(&format!("{:?}\n", message.delivery.properties));
        }
        connection.close(200, "dumped".into()).await.ok();
        out
    }

    /// Runs the projector binary with `args` as an operator would, with the
    /// test's settings and `extra` ones; returns (success, stdout, stderr).
    pub async fn projector_command(
        &self,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> (bool, String, String) {
        let mut vars = self.projector_vars.clone();
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_projector"))
                .args(&args)
                .envs(vars)
                .output()
                .expect("the projector binary runs");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        })
        .await
        .unwrap()
    }

    /// `projector dead-letters`' view of the dead-letter queue, left as it was.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letter_queue().await.list().await.unwrap()
    }

    pub async fn dead_letter_queue(&self) -> DeadLetterQueue {
        DeadLetterQueue::open(&rabbitmq_url(), &self.consumer_config())
            .await
            .unwrap()
    }

    /// The attempts and parked aggregates in this test's read database.
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.read_pool.clone())
    }

    /// The projector's metrics, as Prometheus scrapes them.
    pub async fn metrics(&self) -> String {
        let port = self.projector_port.expect("a projector runs in-process");
        self.client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Messages ready in a queue (not counting unacknowledged ones).
    pub async fn ready_in(&self, queue: &str) -> u32 {
        let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .unwrap();
        connection.close(200, "done".into()).await.ok();
        queue.message_count()
    }
}

impl Drop for Stack {
    /// Removes the databases, queues, exchanges and keys of the test. Drop
    /// cannot be async, so a short-lived thread with its own runtime does it.
    fn drop(&mut self) {
        if let Some(projector) = self.projector.take() {
            projector.abort();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let databases = std::mem::take(&mut self.databases);
        let queues: Vec<String> = [
            "search",
            "documents",
            "dead_letter",
            "dead_letter.migrating",
        ]
        .iter()
        .map(|p| self.queue(p))
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
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
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

/// A real HTTP server speaking the OpenAI embeddings API, standing in for a
/// remote provider: deterministic unit vectors of `dimension` from each
/// text's hash. Returns its base URL.
pub async fn fake_openai(dimension: usize) -> String {
    spawn_fake_openai(dimension, Faults::default()).await.0
}

/// What a [`spawn_fake_openai`] server gets wrong on purpose.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer this status to any request with an input containing the text,
    /// as a provider refuses a text it cannot take.
    pub refuse: Option<(String, u16)>,
    /// Answer 503 to the first this many requests, as a provider in an outage.
    pub unavailable_first: usize,
}

/// What a [`spawn_fake_openai`] server received: every input, in order.
pub type Inputs = Arc<std::sync::Mutex<Vec<String>>>;

/// [`fake_openai`] with `faults`.
pub async fn spawn_fake_openai(dimension: usize, faults: Faults) -> (String, Inputs) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use sha2::{Digest, Sha256};
    struct Fake {
        dimension: usize,
        faults: Faults,
        inputs: Inputs,
        calls: std::sync::atomic::AtomicUsize,
    }
    async fn embeddings(body: web::Json<Value>, fake: web::Data<Fake>) -> HttpResponse {
        let inputs: Vec<String> = body["input"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        fake.inputs.lock().unwrap().extend(inputs.iter().cloned());
        let call = fake.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if call < fake.faults.unavailable_first {
            return HttpResponse::ServiceUnavailable().json(
                json!({"error": {"message": "The server is overloaded", "type": "server_error"}}),
            );
        }
        if let Some((marker, status)) = &fake.faults.refuse
            && inputs.iter().any(|i| i.contains(marker.as_str()))
        {
            // Echoing the input, as pydantic-based servers (vLLM, TEI's
            // OpenAI routes) do in their validation errors.
            return HttpResponse::build(actix_web::http::StatusCode::from_u16(*status).unwrap())
                .json(json!({
                    "error": {"message": "This input cannot be processed", "type": "invalid_request_error"},
                    "detail": [{"type": "string_too_long", "loc": ["body", "input", 0], "input": inputs}],
                }));
        }
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let digest = Sha256::digest(text.as_bytes());
                let raw: Vec<f32> = (0..fake.dimension).map(|i| f32::from(digest[i % 32]) - 127.5).collect();
                let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                json!({"object": "embedding", "index": index, "embedding": raw.iter().map(|x| x / norm).collect::<Vec<_>>()})
            })
            .collect();
        HttpResponse::Ok().json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 0, "total_tokens": 0}}))
    }
    let received = Inputs::default();
    let fake = web::Data::new(Fake {
        dimension,
        faults,
        inputs: received.clone(),
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(fake.clone())
            .route("/v1/embeddings", web::post().to(embeddings))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), received)
}

/// An embedder of `dimension` against [`fake_openai`].
pub async fn openai_embedder(dimension: usize) -> Arc<dyn Embedder> {
    let config = embeddings::EmbedderConfig::OpenAi {
        base_url: embeddings::Url::parse(&fake_openai(dimension).await).unwrap(),
        model: format!("fake-{dimension}"),
        api_key: None,
        dimensions: Some(dimension),
        max_batch: 64,
        timeout: Duration::from_secs(10),
        max_retries: 2,
        max_input_chars: embeddings::openai::DEFAULT_MAX_INPUT_CHARS,
    };
    embeddings::build(&config).await.unwrap()
}

//! A whole stack per test: command service (with or without its relay),
//! projector and query service in this process, each on the test's own
//! databases, exchange, queues and Redis key prefix.
//!
//! [`StackBuilder`] says which parts run and how; [`spawn_projector_stack`]
//! and the `spawn_query_stack*` functions are the two ways the projector's
//! and the query service's tests use it.

use crate::broker::{self, Names, PROJECTIONS};
use crate::db::{self, PROJECTOR_READER_ROLE, QUERY_READER_ROLE, WRITER_ROLE};
use crate::embedder::local_embedder;
use crate::http::{JWT_SECRET, RATE_LIMITS_OFF, owned_vars, status_and_json, token_for};
use crate::poll::{self, DEADLINE};
use crate::teardown::Teardown;
use command_service::startup::{Application as CommandApp, MIGRATOR as EVENT_MIGRATOR};
use embeddings::Embedder;
use event_schema::{MemoryState, StoredEvent};
use projector::broker::ConsumerConfig;
use projector::dead_letters::{DeadLetter, DeadLetterQueue, Ledger};
use projector::settings::Settings as ProjectorSettings;
use projector::source::EventSource;
use projector::startup::Application as ProjectorApp;
use projector::verify::{Difference, Expected, verify_documents, verify_search};
use query_service::settings::Settings as QuerySettings;
use query_service::startup::Application as QueryApp;
use read_model::MIGRATOR as READ_MIGRATOR;
use read_model::documents::{Keys, active_generation};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// What the projector's tests start: whether the relay and the projector
/// run from the outset.
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

/// The projector's tests' stack: command service and projector, no query
/// service; the projector reads the event store as its own login, the
/// command service writes as the owner, three attempts before a dead letter.
pub async fn spawn_projector_stack(options: Options) -> Stack {
    StackBuilder::new("proj")
        .reader_role(PROJECTOR_READER_ROLE)
        .relay(options.relay)
        .projector(options.projector)
        .projector_var("SB_PROJECTOR_MAX_ATTEMPTS", "3")
        .deadline(Duration::from_secs(90))
        .spawn()
        .await
}

/// The query service's tests' stack: every service, each logged in as
/// deployments make it (README, "Database roles").
pub async fn spawn_query_stack() -> Stack {
    spawn_query_stack_with(&[]).await
}

/// [`spawn_query_stack`] with extra query-service variables, e.g. a short
/// consistency timeout.
pub async fn spawn_query_stack_with(query_vars: &[(&str, &str)]) -> Stack {
    spawn_query_stack_on(&db::admin_url(), query_vars).await
}

/// [`spawn_query_stack_with`] with the databases on the server of `admin`
/// (e.g. a [`crate::pg_cluster::ThrowawayPostgres`]).
pub async fn spawn_query_stack_on(admin: &str, query_vars: &[(&str, &str)]) -> Stack {
    StackBuilder::new("query")
        .admin(admin)
        .reader_role(QUERY_READER_ROLE)
        .command_as_writer()
        .query(query_vars)
        .success(Success::Any2xx)
        .spawn()
        .await
}

/// The login the command service appends to the event store as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommandLogin {
    /// The database owner, sharing the test's own pool.
    Owner,
    /// [`WRITER_ROLE`], on a pool of the service's own.
    Writer,
}

/// What [`Stack::ok`] takes for a command that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// 200 and nothing else.
    Exactly200,
    /// Any 2xx status.
    Any2xx,
}

/// Which parts of a [`Stack`] run, and how.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    admin: String,
    database_prefix: String,
    reader_role: &'static str,
    command_login: CommandLogin,
    relay: bool,
    projector: bool,
    projector_vars: Vec<(String, String)>,
    query_vars: Option<Vec<(String, String)>>,
    deadline: Duration,
    success: Success,
}

impl StackBuilder {
    /// A command service with its relay and a projector, no query service;
    /// the databases are named `<database_prefix>_ev_<tag>` and `…_rm_…`.
    pub fn new(database_prefix: &str) -> Self {
        Self {
            admin: db::admin_url(),
            database_prefix: database_prefix.to_owned(),
            reader_role: QUERY_READER_ROLE,
            command_login: CommandLogin::Owner,
            relay: true,
            projector: true,
            projector_vars: Vec::new(),
            query_vars: None,
            deadline: DEADLINE,
            success: Success::Exactly200,
        }
    }

    /// The databases go on the server of this admin URL.
    pub fn admin(mut self, admin: &str) -> Self {
        admin.clone_into(&mut self.admin);
        self
    }

    /// The login the projector and the query service read as.
    pub fn reader_role(mut self, role: &'static str) -> Self {
        self.reader_role = role;
        self
    }

    /// The command service appends as [`WRITER_ROLE`] (else as the owner).
    pub fn command_as_writer(mut self) -> Self {
        self.command_login = CommandLogin::Writer;
        self
    }

    pub fn relay(mut self, on: bool) -> Self {
        self.relay = on;
        self
    }

    /// Start a projector at once (else a test starts it when it wants).
    pub fn projector(mut self, on: bool) -> Self {
        self.projector = on;
        self
    }

    /// An extra projector setting.
    pub fn projector_var(mut self, name: &str, value: &str) -> Self {
        self.projector_vars
            .push((name.to_owned(), value.to_owned()));
        self
    }

    /// Run a query service, with these extra settings.
    pub fn query(mut self, vars: &[(&str, &str)]) -> Self {
        self.query_vars = Some(owned_vars(vars));
        self
    }

    /// How long any one of the stack's waits may take.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn success(mut self, success: Success) -> Self {
        self.success = success;
        self
    }

    pub async fn spawn(self) -> Stack {
        let admin = self.admin.as_str();
        let tag = crate::unique_tag();
        let events_db = format!("{}_ev_{tag}", self.database_prefix);
        let read_db = format!("{}_rm_{tag}", self.database_prefix);
        let events_url = db::create_database(admin, &events_db).await;
        let read_url = db::create_database(admin, &read_db).await;
        let event_pool = db::migrated_pool(&events_url, 8, &EVENT_MIGRATOR).await;
        // The projector (and the query service) read the event store as
        // deployments make them: a login in `second_brain_reader`, which may
        // only read (README, "Database roles").
        db::ensure_login(admin, self.reader_role, "second_brain_reader").await;
        if self.command_login == CommandLogin::Writer {
            db::ensure_login(admin, WRITER_ROLE, "second_brain_writer").await;
        }
        let read_pool = db::migrated_pool(&read_url, 8, &READ_MIGRATOR).await;
        let names = Names::for_tag(&tag);
        let key_prefix = crate::redis::key_prefix(&tag);
        let events_reader_url = db::database_url_on(admin, &events_db, Some(self.reader_role));

        let mut projector_vars = owned_vars(&[
            ("SB_PROJECTOR_HTTP_ADDR", "127.0.0.1:0"),
            ("SB_READ_DATABASE_URL", &read_url),
            ("SB_EVENT_STORE_URL", &events_reader_url),
            ("SB_RABBITMQ_URL", &broker::rabbitmq_url()),
            ("SB_RABBITMQ_EXCHANGE", &names.exchange),
            ("SB_PROJECTOR_QUEUE_PREFIX", &names.queue_prefix),
            ("SB_REDIS_URL", &crate::redis::redis_url()),
            ("SB_REDIS_KEY_PREFIX", &key_prefix),
        ]);
        projector_vars.extend(self.projector_vars.iter().cloned());

        let teardown = Teardown {
            admin: admin.to_owned(),
            databases: vec![events_db.clone(), read_db.clone()],
            queues: [
                "search",
                "documents",
                "dead_letter",
                "dead_letter.migrating",
            ]
            .iter()
            .map(|p| names.queue(p))
            .collect(),
            exchanges: vec![names.exchange.clone(), names.dead_letter_exchange()],
            key_prefix: key_prefix.clone(),
        };
        let mut stack = Stack {
            tag,
            command: String::new(),
            query: None,
            client: reqwest::Client::new(),
            event_pool,
            read_pool,
            redis: crate::redis::connection_manager().await,
            keys: Keys::new(key_prefix.clone()),
            exchange: names.exchange.clone(),
            queue_prefix: names.queue_prefix.clone(),
            projector_vars,
            projector: None,
            projector_port: None,
            events_url,
            child: None,
            deadline: self.deadline,
            success: self.success,
            databases: vec![events_db.clone(), read_db.clone()],
            _teardown: teardown,
        };
        // The relay publishes to the exchange as soon as it starts; the
        // queues must be bound by then or the first events are unroutable.
        if self.projector {
            stack.start_projector().await;
        }
        stack.command = self.start_command(&stack, &events_db, &names).await;
        if let Some(extra) = &self.query_vars {
            let mut vars = owned_vars(&[
                ("SB_QUERY_HTTP_ADDR", "127.0.0.1:0"),
                (
                    "SB_READ_DATABASE_URL",
                    &db::database_url_on(admin, &read_db, Some(self.reader_role)),
                ),
                ("SB_EVENT_STORE_READ_URL", &events_reader_url),
                ("SB_REDIS_URL", &crate::redis::redis_url()),
                ("SB_REDIS_KEY_PREFIX", &key_prefix),
                ("SB_JWT_SECRET", JWT_SECRET),
            ]);
            vars.extend(owned_vars(&RATE_LIMITS_OFF));
            vars.extend(extra.iter().cloned());
            let settings: QuerySettings = service_kit::settings::from_vars(vars).unwrap();
            settings.validate().unwrap();
            let query = QueryApp::build(&settings, local_embedder().await)
                .await
                .unwrap();
            stack.query = Some(format!("http://127.0.0.1:{}", query.port()));
            tokio::spawn(query.run_until_stopped());
        }
        stack
    }

    /// Starts the command service; returns its base URL.
    async fn start_command(&self, stack: &Stack, events_db: &str, names: &Names) -> String {
        let events_url = match self.command_login {
            CommandLogin::Owner => stack.events_url.clone(),
            CommandLogin::Writer => db::database_url_on(&self.admin, events_db, Some(WRITER_ROLE)),
        };
        let mut vars = owned_vars(&[
            ("SB_EVENT_STORE_URL", events_url.as_str()),
            ("SB_JWT_SECRET", JWT_SECRET),
            ("SB_COMMAND_HTTP_ADDR", "127.0.0.1:0"),
            ("SB_RELAY_ENABLED", &self.relay.to_string()),
            ("SB_RABBITMQ_URL", &broker::rabbitmq_url()),
            ("SB_RABBITMQ_EXCHANGE", &names.exchange),
            ("SB_RELAY_POLL_INTERVAL_MS", "100"),
        ]);
        // The crash test sends thousands of commands from one address.
        vars.extend(owned_vars(&RATE_LIMITS_OFF));
        let settings: command_service::settings::Settings =
            service_kit::settings::from_vars(vars).unwrap();
        let pool = match self.command_login {
            CommandLogin::Owner => stack.event_pool.clone(),
            // The service's own pool, built as in production (no ping per
            // checkout).
            CommandLogin::Writer => command_service::startup::connect(&settings).unwrap(),
        };
        let command = CommandApp::build(&settings, pool).unwrap();
        let address = format!("http://127.0.0.1:{}", command.port());
        tokio::spawn(command.run_until_stopped());
        address
    }
}

/// The running parts of a test's stack and its private names. Dropping it
/// stops the in-process projector (and a child one) and removes the
/// databases, queues, exchanges and keys.
#[derive(Debug)]
pub struct Stack {
    pub tag: String,
    /// The command service's base URL.
    pub command: String,
    query: Option<String>,
    pub client: reqwest::Client,
    /// The event store as its owner.
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
    /// A projector run as a child process, killed with the stack.
    pub child: Option<std::process::Child>,
    /// How long any one of the stack's waits may take.
    pub deadline: Duration,
    success: Success,
    databases: Vec<String>,
    _teardown: Teardown,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(projector) = self.projector.take() {
            projector.abort();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `_teardown` then removes what the test left on the servers.
    }
}

impl Stack {
    /// The query service's base URL.
    pub fn query(&self) -> &str {
        self.query
            .as_deref()
            .expect("the stack runs a query service")
    }

    fn names(&self) -> Names {
        Names {
            exchange: self.exchange.clone(),
            queue_prefix: self.queue_prefix.clone(),
        }
    }

    /// This stack's databases: the event store, then the read model.
    pub fn database_names(&self) -> &[String] {
        &self.databases
    }

    /// This stack's projector queues and its dead-letter queue.
    pub fn queue_names(&self) -> Vec<String> {
        ["search", "documents", "dead_letter"]
            .iter()
            .map(|q| self.queue(q))
            .collect()
    }

    pub fn queue(&self, projection: &str) -> String {
        self.names().queue(projection)
    }

    /// The projector's settings, as the stack starts it.
    pub fn settings(&self) -> ProjectorSettings {
        let settings: ProjectorSettings =
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

    /// Waits until both projection queues exist, so nothing published is lost.
    pub async fn wait_for_queues(&self) {
        let queues: Vec<String> = PROJECTIONS.iter().map(|p| self.queue(p)).collect();
        broker::wait_for_queues(&queues, self.deadline).await;
    }

    pub fn token(&self, user: &str) -> String {
        token_for(user)
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
        status_and_json(request.send().await.unwrap()).await
    }

    /// A command that must succeed (as the stack's [`Success`] says);
    /// returns the new version.
    pub async fn ok(&self, method: Method, path: &str, user: &str, body: Option<Value>) -> u64 {
        let (status, body) = self.command(method, path, user, body).await;
        match self.success {
            Success::Exactly200 => assert_eq!(status, StatusCode::OK, "{path}: {body}"),
            Success::Any2xx => assert!(status.is_success(), "{path}: {status} {body}"),
        }
        body["version"].as_u64().unwrap()
    }

    /// Revises memory `id` with `changes` (a PATCH), which must succeed.
    pub async fn revise(&self, user: &str, id: Uuid, changes: Value) -> u64 {
        self.ok(
            Method::PATCH,
            &format!("/v1/memories/{id}"),
            user,
            Some(changes),
        )
        .await
    }

    /// Deletes memory `id` (it can be restored), which must succeed.
    pub async fn delete(&self, user: &str, id: Uuid) -> u64 {
        self.ok(Method::DELETE, &format!("/v1/memories/{id}"), user, None)
            .await
    }

    /// Restores deleted memory `id`, which must succeed.
    pub async fn restore(&self, user: &str, id: Uuid) -> u64 {
        self.ok(
            Method::POST,
            &format!("/v1/memories/{id}/restore"),
            user,
            None,
        )
        .await
    }

    /// Erases memory `id`, which must succeed.
    pub async fn erase(&self, user: &str, id: Uuid) -> u64 {
        self.ok(
            Method::POST,
            &format!("/v1/memories/{id}/erase"),
            user,
            None,
        )
        .await
    }

    /// Moves memory `id` into `session` (`null`: out of any), which must
    /// succeed.
    pub async fn move_memory(&self, user: &str, id: Uuid, session: Value) -> u64 {
        self.ok(
            Method::POST,
            &format!("/v1/memories/{id}/move"),
            user,
            Some(json!({ "session_id": session })),
        )
        .await
    }

    /// Tags memory `id` with `tags` (a JSON array), which must succeed.
    pub async fn add_tags(&self, user: &str, id: Uuid, tags: Value) -> u64 {
        self.ok(
            Method::POST,
            &format!("/v1/memories/{id}/tags"),
            user,
            Some(json!({ "tags": tags })),
        )
        .await
    }

    pub async fn capture(&self, user: &str, body: Value) -> Uuid {
        let (status, body) = self
            .command(Method::POST, "/v1/memories", user, Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Captures a memory of just `content`.
    pub async fn note(&self, user: &str, content: impl AsRef<str>) -> Uuid {
        self.capture(user, json!({ "content": content.as_ref() }))
            .await
    }

    pub async fn start_session(&self, user: &str, title: &str) -> Uuid {
        let (status, body) = self
            .command(
                Method::POST,
                "/v1/sessions",
                user,
                Some(json!({ "title": title })),
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
            .get(format!("{}{path}", self.query()))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }

    /// A read that must answer 200.
    pub async fn get_ok(&self, path: &str, user: &str) -> Value {
        let (status, body) = self.get(path, user).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    /// The events of the store as a projector's `retry` reads them.
    pub fn source(&self) -> EventSource {
        EventSource::new(self.event_pool.clone())
    }

    /// Every difference between the read models and the fold of the store.
    pub async fn verify(&self) -> Vec<Difference> {
        let expected = Expected::fold(&self.source()).await.unwrap();
        let mut differences = verify_search(&self.read_pool, &expected).await.unwrap();
        let mut redis = self.redis.clone();
        differences.extend(
            verify_documents(&mut redis, &self.keys, &expected)
                .await
                .unwrap(),
        );
        differences
    }

    /// Polls [`Stack::verify`] until the read models equal the fold of the
    /// event store.
    pub async fn wait_until_verified(&self) {
        let deadline = Instant::now() + self.deadline;
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

    /// Polls until every visible memory in a session has its context vector
    /// (the projector's context worker made them all), for at most `limit`.
    pub async fn wait_until_context_made(&self, limit: Duration) {
        poll::eventually("every context vector made", limit, || async {
            let missing: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM memories
                  WHERE context_embedding IS NULL AND session_id IS NOT NULL AND NOT deleted",
            )
            .fetch_one(&self.read_pool)
            .await
            .unwrap();
            missing == 0
        })
        .await;
    }

    /// Polls until `check` holds.
    pub async fn eventually<F, Fut>(&self, what: &str, check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        poll::eventually(what, self.deadline, check).await;
    }

    /// The memory's Redis document in the active generation.
    pub async fn document(&self, id: Uuid) -> Option<MemoryState> {
        let mut redis = self.redis.clone();
        let g = active_generation(&mut redis, &self.keys).await.unwrap();
        let doc: Option<String> = redis.get(self.keys.memory(g, id)).await.unwrap();
        doc.map(|d| serde_json::from_str(&d).unwrap())
    }

    /// `(version, content, embedding dimensions, has a tsvector)` of the
    /// memory's search row (its vector indexed or still pending).
    pub async fn search_row(&self, id: Uuid) -> Option<(i64, String, Option<i32>, bool)> {
        sqlx::query_as(
            "SELECT version, content, vector_dims(coalesce(embedding, pending_embedding)),
                    search IS NOT NULL AND search <> ''::tsvector
               FROM memories WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read_pool)
        .await
        .unwrap()
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
        let () = redis.del(key).await.unwrap();
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

    /// The stored events, in global order, as the relay publishes them:
    /// message bodies for [`Stack::inject`].
    pub async fn stored_bodies(&self) -> Vec<Vec<u8>> {
        self.stored_events()
            .await
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap())
            .collect()
    }

    /// Publishes raw bodies straight into a projection queue, bypassing the
    /// exchange, as a broker redelivery or a misbehaving publisher would.
    pub async fn inject(&self, projection: &str, bodies: &[Vec<u8>]) {
        broker::inject(&self.queue(projection), bodies).await;
    }

    /// The consumer settings `dead-letters` needs to find this test's queues.
    pub fn consumer_config(&self) -> ConsumerConfig {
        self.names().consumer_config()
    }

    pub fn dead_letter_queue_name(&self) -> String {
        self.consumer_config().dead_letter()
    }

    /// The bodies and headers of every message in `queue`, as text: what
    /// anyone reading the broker would find. Taken unacknowledged, so
    /// closing the channel puts them back.
    pub async fn dump_queue(&self, queue: &str) -> String {
        broker::dump_queue(queue).await
    }

    /// Runs the projector binary with `args` as an operator would, with the
    /// test's settings and `extra` ones; returns (success, stdout, stderr).
    pub async fn projector_command(
        &self,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> (bool, String, String) {
        let mut vars = self.projector_vars.clone();
        vars.extend(owned_vars(extra));
        crate::process::run(crate::process::cargo_bin("projector"), args, vars).await
    }

    /// `projector dead-letters`' view of the dead-letter queue, left as it was.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letter_queue().await.list().await.unwrap()
    }

    pub async fn dead_letter_queue(&self) -> DeadLetterQueue {
        DeadLetterQueue::open(&broker::rabbitmq_url(), &self.consumer_config())
            .await
            .unwrap()
    }

    /// Polls until memory `id` has a dead letter, and returns it.
    pub async fn dead_lettered(&self, id: Uuid) -> DeadLetter {
        let what = format!("{id} was never dead-lettered");
        poll::until_some(&what, self.deadline, Duration::from_millis(100), || async {
            self.dead_letters()
                .await
                .into_iter()
                .find(|l| l.aggregate_id.as_deref() == Some(id.to_string().as_str()))
        })
        .await
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
        broker::ready_in(queue).await
    }
}

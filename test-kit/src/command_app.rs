//! A lone command service on its own fresh database, for the command
//! service's own tests: the relay is off unless a test turns it on.

use crate::db::{self, WRITER_ROLE};
use crate::http::{Answer, JWT_SECRET, RATE_LIMITS_OFF, owned_vars, token_for};
use crate::teardown::Teardown;
use command_service::settings::Settings;
use command_service::startup::{Application, MIGRATOR};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use service_kit::auth::{ApiKeyStore, UserId};
use sqlx::PgPool;
use uuid::Uuid;

/// A running command service on its own fresh database.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    /// The owner's pool, for the tests' own look at the rows.
    pub pool: PgPool,
    /// The pool the service itself uses (the writer role's).
    pub service_pool: PgPool,
    pub client: reqwest::Client,
    pub database_url: String,
    _teardown: Teardown,
}

/// A command service with the relay disabled: the tests that are not about
/// the relay need no broker.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A command service with extra `SB_*` settings over [`settings_for`]'s.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let (database, url) = db::create_private_database("cmd_test").await;
    let pool = db::migrated_pool(&url, 16, &MIGRATOR).await;
    // The app logs in as deployments make it: a member of
    // `second_brain_writer`, which may append events but never change one.
    // `pool` stays the owner's, for the tests' own look at the rows.
    db::ensure_login(&db::admin_url(), WRITER_ROLE, "second_brain_writer").await;
    let writer_url = db::database_url(&database, Some(WRITER_ROLE));
    let settings = settings_with(&writer_url, extra);
    // The service's own pool, built as in production (no ping per checkout).
    let writer_pool = command_service::startup::connect(&settings).expect("a lazy pool");
    let app = Application::build(&settings, writer_pool.clone()).expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        pool,
        service_pool: writer_pool,
        client: reqwest::Client::new(),
        database_url: url,
        _teardown: Teardown {
            admin: db::admin_url(),
            databases: vec![database],
            queues: Vec::new(),
            exchanges: Vec::new(),
            key_prefix: String::new(),
        },
    }
}

/// The settings of a command service on the event store at `url`.
pub fn settings_for(url: &str) -> Settings {
    settings_with(url, &[])
}

fn settings_with(url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars = owned_vars(&[
        ("SB_EVENT_STORE_URL", url),
        ("SB_JWT_SECRET", JWT_SECRET),
        ("SB_COMMAND_HTTP_ADDR", "127.0.0.1:0"),
        ("SB_RELAY_ENABLED", "false"),
    ]);
    vars.extend(owned_vars(&RATE_LIMITS_OFF));
    vars.extend(owned_vars(extra));
    let settings: Settings = service_kit::settings::from_vars(vars).expect("test settings");
    settings.validate().expect("valid test settings");
    settings
}

impl TestApp {
    pub fn request(&self, method: Method, path: &str, user: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(token_for(user))
    }

    pub async fn send(&self, builder: RequestBuilder) -> Answer {
        Answer::read(builder.send().await.expect("request sent")).await
    }

    pub async fn post_json(&self, path: &str, user: &str, body: &Value) -> Answer {
        self.send(self.request(Method::POST, path, user).json(body))
            .await
    }

    pub async fn capture(&self, user: &str, body: &Value) -> Answer {
        self.post_json("/v1/memories", user, body).await
    }

    /// Captures a memory and returns its id.
    pub async fn memory(&self, user: &str, content: &str) -> Uuid {
        let answer = self
            .capture(user, &serde_json::json!({ "content": content }))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        answer.id()
    }

    pub async fn session(&self, user: &str, title: &str) -> Uuid {
        let answer = self
            .post_json("/v1/sessions", user, &serde_json::json!({ "title": title }))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        answer.id()
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }

    pub async fn sequences(&self, id: Uuid) -> Vec<i64> {
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await
            .expect("sequences")
    }

    pub async fn api_key(&self, user: &str) -> (String, String) {
        let (info, token) = ApiKeyStore::new(self.pool.clone())
            .create(&UserId::parse(user).expect("user"), "test")
            .await
            .expect("create key");
        (info.id, token)
    }

    /// The name of the app's database.
    pub fn database(&self) -> String {
        self.database_url.rsplit('/').next().unwrap().to_owned()
    }
}

use chrono::{Duration, Utc};
use command_service::settings::Settings;
use command_service::startup::{Application, MIGRATOR};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use service_kit::auth::{ApiKeyStore, UserId, issue_jwt};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

pub const JWT_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// Settings that turn both rate limits off.
pub const RATE_LIMITS_OFF: [(&str, &str); 2] = [
    ("SB_RATE_LIMIT_USER_PER_SECOND", "0"),
    ("SB_RATE_LIMIT_IP_PER_SECOND", "0"),
];

/// The admin URL of the test Postgres; `deploy/native/stack test` exports it.
fn admin_url() -> String {
    std::env::var("SB_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/postgres".to_owned())
}

fn database_url(name: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// The login role the command service runs as in tests, a member of the
/// migrations' `second_brain_writer` group (README, "Database roles").
pub const WRITER_ROLE: &str = "sbt_command_writer";

/// The URL of database `name` as login `user` (trust auth, no password).
pub fn database_url_as(name: &str, user: &str) -> String {
    database_url(name).replacen("postgres@", &format!("{user}@"), 1)
}

/// Creates [`WRITER_ROLE`] once per server. Roles are server-wide and tests
/// run in parallel, so a concurrent creation counts as success.
async fn ensure_writer_role() {
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("the test Postgres answers");
    sqlx::query(&format!(
        "DO $$ BEGIN
             CREATE ROLE {WRITER_ROLE} LOGIN IN ROLE second_brain_writer;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$"
    ))
    .execute(&mut admin)
    .await
    .expect("create the writer login role");
    admin.close().await.ok();
}

/// A running command service on its own fresh database.
pub struct TestApp {
    pub address: String,
    /// The owner's pool, for the tests' own look at the rows.
    pub pool: PgPool,
    /// The pool the service itself uses (the writer role's).
    pub service_pool: PgPool,
    pub client: reqwest::Client,
    pub database_url: String,
    database: String,
}

/// A command service with the relay disabled: the tests that are not about
/// the relay need no broker.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A command service with extra `SB_*` settings over [`settings_for`]'s.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let database = format!("cmd_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("the test Postgres answers (run deploy/native/stack servers)");
    sqlx::query(&format!(r#"CREATE DATABASE "{database}""#))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let url = database_url(&database);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .expect("connect to test database");
    MIGRATOR.run(&pool).await.expect("migrations apply");
    // The app logs in as deployments make it: a member of
    // `second_brain_writer`, which may append events but never change one.
    // `pool` stays the owner's, for the tests' own look at the rows.
    ensure_writer_role().await;
    let writer_url = database_url_as(&database, WRITER_ROLE);
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
        database,
    }
}

pub fn settings_for(url: &str) -> Settings {
    settings_with(url, &[])
}

fn settings_with(url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars = vec![
        ("SB_EVENT_STORE_URL".to_owned(), url.to_owned()),
        ("SB_JWT_SECRET".to_owned(), JWT_SECRET.to_owned()),
        ("SB_COMMAND_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("SB_RELAY_ENABLED".to_owned(), "false".to_owned()),
    ];
    // Every request of a test comes from 127.0.0.1, most from one user: the
    // tests that are not about rate limits turn them off, and those that are
    // set their own.
    vars.extend(RATE_LIMITS_OFF.map(|(name, value)| (name.to_owned(), value.to_owned())));
    vars.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    let settings: Settings = service_kit::settings::from_vars(vars).expect("test settings");
    settings.validate().expect("valid test settings");
    settings
}

impl Drop for TestApp {
    /// Drops the test database so runs do not pile them up. Drop cannot be
    /// async, so a short-lived thread with its own runtime does it.
    fn drop(&mut self) {
        let database = self.database.clone();
        let handle = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::query(&format!(
                        r#"DROP DATABASE IF EXISTS "{database}" WITH (FORCE)"#
                    ))
                    .execute(&mut admin)
                    .await;
                }
            });
        });
        let _ = handle.join();
    }
}

pub fn token_for(user: &str) -> String {
    let secret = SecretString::from(JWT_SECRET);
    let user = UserId::parse(user).expect("valid user id");
    issue_jwt(&secret, &user, Utc::now() + Duration::hours(1)).expect("token")
}

pub fn expired_token_for(user: &str) -> String {
    let secret = SecretString::from(JWT_SECRET);
    let user = UserId::parse(user).expect("valid user id");
    issue_jwt(&secret, &user, Utc::now() - Duration::minutes(10)).expect("token")
}

/// A response read whole: status, headers and JSON body (Null when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub async fn read(response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn id(&self) -> Uuid {
        self.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("an id in the body")
    }

    pub fn version(&self) -> u64 {
        self.body["version"]
            .as_u64()
            .expect("a version in the body")
    }

    /// Asserts a problem document with the given status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {:?}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "content type of {:?}",
            self.body
        );
        assert_eq!(self.body["code"], code, "code of {:?}", self.body);
        assert_eq!(self.body["status"], status);
    }
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
}

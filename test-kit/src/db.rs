//! Private databases on the test Postgres: created per test from
//! `SB_TEST_PG_ADMIN_URL`, migrated, reached as the login roles deployments
//! use (README, "Database roles"), dropped by [`crate::teardown`].

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, Executor as _, PgConnection, PgPool};
use uuid::Uuid;

/// The command service's login in tests, in `second_brain_writer`: it may
/// append events but never change one.
pub const WRITER_ROLE: &str = "sbt_command_writer";
/// The query service's event-store and read-model login, in the read-only
/// `second_brain_reader`.
pub const QUERY_READER_ROLE: &str = "sbt_query_reader";
/// The projector's event-store login, in `second_brain_reader`.
pub const PROJECTOR_READER_ROLE: &str = "sbt_projector_reader";

/// The admin URL of the test Postgres; `deploy/native/stack test` exports it.
pub fn admin_url() -> String {
    std::env::var("SB_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/postgres".to_owned())
}

/// [`admin_url`] with another database and, optionally, another user
/// (trust auth, no password).
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

async fn connect_admin(admin: &str) -> PgConnection {
    PgConnection::connect(admin)
        .await
        .expect("the test Postgres answers (run deploy/native/stack servers)")
}

/// Creates database `name` on the server of `admin`; returns its owner's URL.
pub async fn create_database(admin: &str, name: &str) -> String {
    let mut connection = connect_admin(admin).await;
    sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
        .execute(&mut connection)
        .await
        .expect("create test database");
    connection.close().await.ok();
    database_url_on(admin, name, None)
}

/// A fresh database named `<prefix>_<uuid>` on the test server.
pub async fn create_private_database(prefix: &str) -> (String, String) {
    let name = format!("{prefix}_{}", Uuid::new_v4().simple());
    let url = create_database(&admin_url(), &name).await;
    (name, url)
}

/// A pool on `url` of at most `max` connections, migrated by `migrator`.
pub async fn migrated_pool(url: &str, max: u32, migrator: &Migrator) -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .connect(url)
        .await
        .expect("connect to test database");
    migrator.run(&pool).await.expect("migrations apply");
    pool
}

/// Creates login `role` in `group` once per server. Roles are server-wide
/// and tests run in parallel, so a concurrent creation counts as success.
pub async fn ensure_login(admin: &str, role: &str, group: &str) {
    let mut connection = connect_admin(admin).await;
    sqlx::query(&format!(
        "DO $$ BEGIN
             CREATE ROLE {role} LOGIN IN ROLE {group};
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$"
    ))
    .execute(&mut connection)
    .await
    .expect("create the login role");
    connection.close().await.ok();
}

/// Drops `databases` (forcing their sessions out); errors are ignored, as a
/// teardown has no one to report to.
pub async fn drop_databases(admin: &str, databases: &[String]) {
    if let Ok(mut connection) = PgConnection::connect(admin).await {
        for database in databases {
            let _ = sqlx::query(&format!(
                r#"DROP DATABASE IF EXISTS "{database}" WITH (FORCE)"#
            ))
            .execute(&mut connection)
            .await;
        }
    }
}

/// Runs `sql` as login `role` in `database` and returns the SQLSTATE it
/// failed with (the least-privilege tests expect 42501).
pub async fn sqlstate_as(database: &str, role: &str, sql: &str) -> String {
    let mut conn = PgConnection::connect(&database_url(database, Some(role)))
        .await
        .expect("the role logs in");
    let error = sqlx::query(sql).execute(&mut conn).await.expect_err(sql);
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|code| code.into_owned())
        .unwrap_or_else(|| panic!("{sql}: not a database error: {error}"))
}

/// The name of the database `pool` connects to.
pub fn database_of(pool: &PgPool) -> String {
    pool.connect_options()
        .get_database()
        .expect("a database name")
        .to_owned()
}

/// Whether [`refuse_search_rows`] counts the writes it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultHits {
    /// Each refused write takes a value of sequence `test_fault_hits`.
    Counted,
    Uncounted,
}

/// The search projection refuses the memory's rows from now on (a trigger,
/// as a database fault would): its next event is dead-lettered after
/// `SB_PROJECTOR_MAX_ATTEMPTS` tries, and the memory parked there.
pub async fn refuse_search_rows(read_pool: &PgPool, id: Uuid, hits: FaultHits) {
    let (sequence, count) = match hits {
        FaultHits::Counted => (
            "CREATE SEQUENCE test_fault_hits;",
            "PERFORM nextval('test_fault_hits');",
        ),
        FaultHits::Uncounted => ("", ""),
    };
    read_pool
        .execute(
            format!(
                r#"
            CREATE TABLE test_faults (id uuid PRIMARY KEY);
            {sequence}
            CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF EXISTS (SELECT 1 FROM test_faults WHERE id = NEW.id) THEN
                    {count}
                    RAISE EXCEPTION 'injected fault for memory %', NEW.id;
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_fault BEFORE INSERT OR UPDATE ON memories_g1
                FOR EACH ROW EXECUTE FUNCTION test_fault();
            "#
            )
            .as_str(),
        )
        .await
        .unwrap();
    sqlx::query("INSERT INTO test_faults (id) VALUES ($1)")
        .bind(id)
        .execute(read_pool)
        .await
        .unwrap();
}

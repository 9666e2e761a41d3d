//! Building and running the application: the pools, the routes, the listener.

use crate::documents::Documents;
use crate::history::History;
use crate::http::{self, AppState};
use crate::rows::ReadModel;
use crate::search::{QueryEmbedder, Search};
use crate::settings::Settings;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use embeddings::Embedder;
use read_model::documents::Keys;
use secrecy::{ExposeSecret, SecretString};
use service_kit::api_keys::{self, ApiKeyCache};
use service_kit::auth::{ApiKeyStore, Authenticator};
use service_kit::http::{
    AllowedMethods, Readiness, health_routes, metrics_route, not_found, observe_requests,
    path_config, problem_fallback, query_config,
};
use service_kit::pg;
use service_kit::rate_limit::{ConcurrencyCap, RateLimiter, rate_limit};
use service_kit::redis::RedisCheck;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::net::TcpListener;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The read database, with the vector search settings on every connection.
/// They are connection options, in force before any statement is prepared:
/// a prepared statement keeps the plan it was made under.
pub fn read_pool(settings: &Settings) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(settings.read_database_url.expose_secret())
        .context("invalid SB_READ_DATABASE_URL")?
        .options([
            ("hnsw.ef_search", settings.query_hnsw_ef_search.to_string()),
            // Keep scanning the index until enough neighbours pass the
            // filters (the owner, above all), rather than return fewer.
            ("hnsw.iterative_scan", "relaxed_order".to_owned()),
            // Reads are short; compiling one (its estimated cost can pass
            // jit_above_cost on a large corpus) takes longer than running it.
            ("jit", "off".to_owned()),
        ]);
    // No ping on checkout: every read retries once on a lost connection
    // (service_kit::pg).
    Ok(pg::pool(
        PgPoolOptions::new()
            .max_connections(settings.query_max_connections)
            .acquire_timeout(Duration::from_secs(5)),
        options,
    ))
}

/// The event store, for history and API keys, in read-only transactions.
pub fn event_store_pool(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url.expose_secret())
        .context("invalid SB_EVENT_STORE_READ_URL")?
        .options([("default_transaction_read_only", "on")]);
    Ok(pg::pool(
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5)),
        options,
    ))
}

/// A built, bound application, not yet running.
pub struct Application {
    port: u16,
    server: Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds the configured address (port 0 picks a free port). The pools
    /// connect lazily, so readiness reports a database that is not up yet;
    /// Redis must answer at start.
    pub async fn build(settings: &Settings, embedder: Arc<dyn Embedder>) -> anyhow::Result<Self> {
        let read = read_pool(settings)?;
        let events = event_store_pool(
            &settings.event_store_read_url,
            settings.query_max_connections.div_ceil(2),
        )?;
        let redis = service_kit::redis::connect(&settings.redis_url).await?;
        let listener = TcpListener::bind(settings.query_http_addr)?;
        let port = listener.local_addr()?.port();
        let authenticator = web::Data::new(Authenticator::new(
            &settings.jwt_secret,
            ApiKeyStore::cached(
                events.clone(),
                ApiKeyCache::new(api_keys::DEFAULT_CAPACITY, api_keys::DEFAULT_TTL),
            ),
        ));
        // One limiter for all the workers: a client's requests are spread
        // over them.
        let rate_limiter = web::Data::new(RateLimiter::new(&settings.rate_limits()?));
        let readiness = web::Data::new(
            Readiness::new(Duration::from_secs(2))
                .with(read.clone())
                .with(RedisCheck(redis.clone())),
        );
        let state = web::Data::new(AppState {
            documents: Documents::new(
                redis,
                &redis::Client::open(settings.redis_url.expose_secret())
                    .context("invalid SB_REDIS_URL")?,
                Keys::new(settings.redis_key_prefix.clone()),
                settings.query_document_cache_size,
            )?,
            rows: ReadModel::new(read.clone()),
            search: Search::new(
                read,
                QueryEmbedder::new(embedder, settings.query_embedding_cache_size),
            ),
            history: History::new(events),
            consistency_timeout: settings.consistency_timeout(),
            min_version_waits: ConcurrencyCap::new(settings.query_min_version_waits_per_user),
        });
        let allowed_methods = web::Data::new(AllowedMethods::from_openapi(
            &<crate::http::openapi::ApiDoc as utoipa::OpenApi>::openapi(),
        ));
        let server = HttpServer::new(move || {
            App::new()
                .wrap(problem_fallback())
                // Inside observe_requests, so a refusal is logged and
                // measured; before every handler, so a refused request
                // costs no database work.
                .wrap(from_fn(rate_limit))
                .wrap(from_fn(observe_requests))
                .app_data(authenticator.clone())
                .app_data(rate_limiter.clone())
                .app_data(allowed_methods.clone())
                .app_data(readiness.clone())
                .app_data(state.clone())
                .app_data(path_config())
                .app_data(query_config())
                .configure(health_routes)
                .configure(metrics_route)
                .configure(http::routes)
                .default_service(web::to(not_found))
        })
        // actix-web drains in-flight requests on SIGTERM/SIGINT for up to this long.
        .shutdown_timeout(20)
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or ctrl-c, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

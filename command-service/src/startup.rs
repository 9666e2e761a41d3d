//! Building and running the application: the pool, the routes, the listener,
//! and the outbox relay beside the HTTP server.

use crate::http;
use crate::relay::{self, RelayConfig};
use crate::settings::Settings;
use crate::store::EventStore;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use secrecy::ExposeSecret;
use service_kit::api_keys::{self, ApiKeyCache};
use service_kit::auth::{ApiKeyStore, Authenticator};
use service_kit::http::{
    AllowedMethods, Readiness, health_routes, json_config, metrics_route, not_found,
    observe_requests, path_config, problem_fallback, query_config,
};
use service_kit::pg;
use service_kit::rate_limit::{RateLimiter, rate_limit};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::net::TcpListener;
use std::str::FromStr;
use std::time::Duration;

/// The migrations of the event-store database, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/event-store");

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub events: EventStore,
}

/// Connects lazily so the service starts (and reports not-ready) while the
/// database is still coming up.
pub fn connect(settings: &Settings) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(settings.event_store_url.expose_secret())?;
    // No ping before every checkout (one round trip per query, three per
    // create): a statement that meets a dead connection is retried on a new
    // one instead, and the first such failure discards every connection the
    // server dropped (service_kit::pg; the store says which statements may run
    // again).
    Ok(pg::pool(
        PgPoolOptions::new()
            .max_connections(settings.event_store_max_connections)
            .acquire_timeout(Duration::from_secs(5)),
        options,
    ))
}

/// A built, bound application, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    relay: Option<RelayConfig>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("relay", &self.relay.as_ref().map(|r| &r.name))
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds `settings.command_http_addr` (port 0 picks a free port). The
    /// relay, when enabled, starts with [`Application::run_until_stopped`].
    ///
    /// Readiness checks Postgres only, not RabbitMQ: see [`crate::relay`].
    pub fn build(settings: &Settings, pool: PgPool) -> anyhow::Result<Self> {
        let relay = RelayConfig::from_settings(settings);
        anyhow::ensure!(
            relay.is_some() || !settings.relay_enabled,
            "the relay is enabled but SB_RABBITMQ_URL is not set"
        );
        let listener = TcpListener::bind(settings.command_http_addr)?;
        let port = listener.local_addr()?.port();
        let authenticator = web::Data::new(Authenticator::new(
            &settings.jwt_secret,
            ApiKeyStore::cached(
                pool.clone(),
                ApiKeyCache::new(api_keys::DEFAULT_CAPACITY, api_keys::DEFAULT_TTL),
            ),
        ));
        // One limiter for all the workers: a client's requests are spread
        // over them.
        let rate_limiter = web::Data::new(RateLimiter::new(&settings.rate_limits()?));
        let readiness = web::Data::new(Readiness::new(Duration::from_secs(2)).with(pool.clone()));
        let state = web::Data::new(AppState {
            events: EventStore::new(pool),
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
                .app_data(json_config(http::MAX_BODY_BYTES))
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
        Ok(Self {
            port,
            server,
            relay,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves and relays until SIGTERM or ctrl-c, then shuts down gracefully:
    /// the server drains its requests, then the relay finishes its batch in
    /// flight (checkpointing only what the broker confirmed).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let relay = self.relay.map(relay::spawn);
        let served = self.server.await;
        if let Some(relay) = relay {
            relay.shutdown().await;
        }
        served
    }
}

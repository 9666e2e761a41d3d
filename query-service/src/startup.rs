//! Building and running the HTTP listener.

use crate::settings::Settings;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use secrecy::ExposeSecret;
use service_kit::http::{
    Readiness, health_routes, metrics_route, not_found, observe_requests, problem_fallback,
};
use sqlx::postgres::PgPoolOptions;
use std::net::TcpListener;
use std::time::Duration;

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
    /// Binds the configured address (port 0 picks a free port). The pool
    /// connects lazily, so readiness reports a database that is not up yet.
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(settings.read_database_url.expose_secret())?;
        let listener = TcpListener::bind(settings.query_http_addr)?;
        let port = listener.local_addr()?.port();
        let readiness = web::Data::new(Readiness::new(Duration::from_secs(2)).with(pool));
        let server = HttpServer::new(move || {
            App::new()
                .wrap(problem_fallback())
                .wrap(from_fn(observe_requests))
                .app_data(readiness.clone())
                .configure(health_routes)
                .configure(metrics_route)
                .default_service(web::to(not_found))
        })
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

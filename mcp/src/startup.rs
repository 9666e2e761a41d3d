//! The streamable HTTP application: `/mcp` (rmcp's tower service inside a
//! small axum router) and `/health/live`, `/health/ready`, bound at build (port 0 in tests).
//!
//! Stateless: no MCP session is kept between requests (rmcp makes a handler
//! per request, each answering with plain JSON), so any instance can answer
//! any request and a restart breaks no client. The only state across calls
//! is each caller's last write (ADR 19), keyed by token, not by session.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::callers::Credentials;
use crate::server::{SecondBrain, Services, ServicesError};
use crate::settings::{AllowedHosts, Settings};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("the services' client")]
    Services(#[from] ServicesError),
    #[error("could not listen on {0}")]
    Bind(std::net::SocketAddr, #[source] std::io::Error),
}

/// A built, bound application, not yet running.
#[derive(Debug)]
pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    /// Ends rmcp's in-flight work when the server stops.
    stopping: CancellationToken,
}

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        let services = Services::new(&settings.command_url, &settings.query_url)?;
        let server = SecondBrain::new(services, Credentials::PerRequest);
        let stopping = CancellationToken::new();
        let config = mcp_config(settings).with_cancellation_token(stopping.child_token());
        let mcp = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(NeverSessionManager::default()),
            config,
        );
        let router = Router::new()
            .nest_service("/mcp", mcp)
            .route("/health/live", get(healthy))
            .route("/health/ready", get(healthy))
            .layer(from_fn(observe_requests));
        let listener = TcpListener::bind(settings.bind)
            .await
            .map_err(|e| StartupError::Bind(settings.bind, e))?;
        let port = listener
            .local_addr()
            .map_err(|e| StartupError::Bind(settings.bind, e))?
            .port();
        Ok(Self {
            port,
            listener,
            router,
            stopping,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or ctrl-c, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(stop_signal()).await
    }

    /// Serves until `stop` completes.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stopping = self.stopping.clone();
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                stop.await;
                tracing::info!("stopping: finishing the requests in flight");
                stopping.cancel();
            })
            .await
    }
}

/// rmcp's transport settings: stateless with JSON answers, and the `Host`
/// and `Origin` checks as configured.
fn mcp_config(settings: &Settings) -> StreamableHttpServerConfig {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None);
    let config = match &settings.allowed_hosts {
        AllowedHosts::Any => config.disable_allowed_hosts(),
        AllowedHosts::Only(hosts) => config.with_allowed_hosts(hosts.clone()),
    };
    if settings.allowed_origins.is_empty() {
        config
    } else {
        config.with_allowed_origins(settings.allowed_origins.clone())
    }
}

/// Liveness and readiness, at the paths every service of the stack uses:
/// the process answers. Nothing is checked downstream, since every tool
/// call reports a service it cannot reach by itself.
async fn healthy() -> &'static str {
    "ok"
}

/// A span with a request id around every request, and one line when it is
/// answered. The path is logged only as one of its routes (or
/// `other`): never a raw path.
async fn observe_requests(request: Request, next: Next) -> Response {
    let route = match request.uri().path() {
        "/health/live" => "/health/live",
        "/health/ready" => "/health/ready",
        path if path == "/mcp" || path.starts_with("/mcp/") => "/mcp",
        _ => "other",
    };
    let span = tracing::info_span!(
        "request",
        request_id = %Uuid::now_v7(),
        method = %request.method(),
        route,
    );
    let started = Instant::now();
    async move {
        let response = next.run(request).await;
        let status = response.status().as_u16();
        let elapsed_seconds = started.elapsed().as_secs_f64();
        if route.starts_with("/health/") {
            tracing::debug!(status, elapsed_seconds, "answered");
        } else {
            tracing::info!(status, elapsed_seconds, "answered");
        }
        response
    }
    .instrument(span)
    .await
}

/// SIGTERM (a container stop) or ctrl-c.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

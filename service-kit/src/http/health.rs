//! Liveness, readiness and the Prometheus scrape endpoint.

use crate::problem::Problem;
use crate::telemetry::metrics_handle;
use actix_web::{HttpResponse, ResponseError, web};
use futures::future::BoxFuture;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// One dependency that must answer for the service to take traffic.
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// A Postgres pool is ready when it answers `SELECT 1`.
impl ReadinessCheck for sqlx::PgPool {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(self)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
}

/// The checks behind `/health/ready`, each bounded by a timeout so a hung
/// dependency makes the probe fail rather than hang.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<Arc<dyn ReadinessCheck>>,
    timeout: Duration,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.checks.iter().map(|c| c.name()).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

impl Readiness {
    pub fn new(timeout: Duration) -> Self {
        Self {
            checks: Vec::new(),
            timeout,
        }
    }

    #[must_use]
    pub fn with(mut self, check: impl ReadinessCheck + 'static) -> Self {
        self.checks.push(Arc::new(check));
        self
    }
}

#[derive(Serialize)]
struct HealthBody {
    status: &'static str,
    checks: Vec<CheckBody>,
}

#[derive(Serialize)]
struct CheckBody {
    name: &'static str,
    ok: bool,
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody {
        status: "live",
        checks: Vec::new(),
    })
}

async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let mut checks = Vec::with_capacity(readiness.checks.len());
    let mut failed = Vec::new();
    for check in &readiness.checks {
        let outcome = tokio::time::timeout(readiness.timeout, check.check()).await;
        let ok = matches!(outcome, Ok(Ok(())));
        if !ok {
            let reason = match outcome {
                Ok(Err(e)) => e,
                _ => "timed out".to_owned(),
            };
            tracing::warn!(dependency = check.name(), %reason, "readiness check failed");
            failed.push(check.name());
        }
        checks.push(CheckBody {
            name: check.name(),
            ok,
        });
    }
    if failed.is_empty() {
        HttpResponse::Ok().json(HealthBody {
            status: "ready",
            checks,
        })
    } else {
        Problem::unavailable(format!("not ready: {}", failed.join(", "))).error_response()
    }
}

/// Mounts `/health/live` (the process serves) and `/health/ready` (its
/// dependencies answer). Register the [`Readiness`] as app data.
pub fn health_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready));
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics_handle().render())
}

/// Mounts `/metrics` in the Prometheus text format, installing the recorder
/// now so that metrics recorded before the first scrape are not lost.
pub fn metrics_route(cfg: &mut web::ServiceConfig) {
    metrics_handle();
    cfg.route("/metrics", web::get().to(metrics));
}

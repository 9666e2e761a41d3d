//! Logs, once per process: JSON lines (or human-readable ones) filtered by
//! `RUST_LOG` (default `info`), as the services log. Written to stderr,
//! because over stdio stdout carries the protocol and a log line there
//! would break it.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::LogFormat;

/// Without `RUST_LOG`: INFO, but rmcp's own lines only from WARN (stateless
/// HTTP starts and ends a service per request, four INFO lines each).
const DEFAULT_FILTER: &str = "info,rmcp=warn";

/// Installs the global subscriber. Calling it again is harmless (a second
/// app in one test process keeps the first).
pub fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    drop(result);
}

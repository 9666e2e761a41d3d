//! Logs and metrics set-up, once per process.

use crate::settings::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Variables read outside the settings structs.
pub const VARIABLES: &[&str] = &["RUST_LOG"];

/// Libraries whose INFO lines describe their own set-up (ONNX Runtime prints
/// every session's options), kept to WARN unless `RUST_LOG` names them.
const QUIET_UNLESS_NAMED: &[&str] = &["ort"];

/// The filter for a `RUST_LOG` value: its directives (`info` when unset or
/// invalid), plus WARN for [`QUIET_UNLESS_NAMED`] targets it does not name.
fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let mut filter = rust_log
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let named = |target: &str| {
        rust_log.is_some_and(|spec| {
            spec.split(',')
                .any(|directive| directive.trim().split(['=', '[', ':']).next() == Some(target))
        })
    };
    for target in QUIET_UNLESS_NAMED {
        if !named(target)
            && let Ok(directive) = format!("{target}=warn").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global `tracing` subscriber. `RUST_LOG` filters (default `info`).
/// Calling it again is harmless, which lets tests build many apps in one process.
pub fn init_logging(format: LogFormat) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    // Already installed (a second app in the same test process): keep the first.
    drop(result);
}

/// Request latency buckets in seconds, from sub-millisecond reads to slow writes.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder. The `metrics` facade allows one global
/// recorder, so every app built in this process shares it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder was installed first, which this
            // crate never does; the handle then renders nothing, which is safe.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn ort_is_kept_to_warn_unless_rust_log_names_it() {
        for spec in [
            None,
            Some("info"),
            Some("debug,sqlx=warn"),
            Some("not a filter["),
        ] {
            let filter = log_filter(spec).to_string();
            assert!(filter.contains("ort=warn"), "{spec:?}: {filter}");
        }
        let filter = log_filter(Some("info,ort=debug")).to_string();
        assert!(filter.contains("ort=debug"), "{filter}");
        assert!(!filter.contains("ort=warn"), "{filter}");
        // A target that merely starts with the same letters is not a mention.
        let filter = log_filter(Some("info,ortho=debug")).to_string();
        assert!(filter.contains("ort=warn"), "{filter}");
    }
}

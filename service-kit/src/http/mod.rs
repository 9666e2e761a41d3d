//! HTTP plumbing every service mounts the same way.

mod context;
mod extractors;
mod health;
mod openapi;

pub use context::{CORRELATION_ID_HEADER, REQUEST_ID_HEADER, RequestContext, observe_requests};
pub use extractors::{json_config, not_found, path_config, problem_fallback, query_config};
pub use health::{Readiness, ReadinessCheck, health_routes, metrics_route};
pub use openapi::{AllowedMethods, BearerAuth, StandardResponses, describe};

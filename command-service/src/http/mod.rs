//! The HTTP write API under `/v1`, one file per resource, errors mapped to
//! problems in [`error`] and the OpenAPI document in [`openapi`].

mod command;
mod error;
mod memories;
pub mod openapi;
mod schemas;
mod sessions;

use actix_web::web;

pub use command::{AcceptedBody, MAX_BODY_BYTES};

/// Mounts the `/v1` resources.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .route("/openapi.json", web::get().to(openapi::document))
            .configure(memories::routes)
            .configure(sessions::routes),
    );
}

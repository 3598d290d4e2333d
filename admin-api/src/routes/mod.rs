//! Owns the route table of the admin API; one file per resource.

pub mod events;
pub mod health;
pub mod registry_io;
pub mod runtime;
pub mod servers;
pub mod tools;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

/// Every `/api` route (the token check is layered on by the caller).
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/api/servers", get(servers::list))
        .route(
            "/api/servers/{id}",
            get(servers::get)
                .post(servers::upsert)
                .delete(servers::delete),
        )
        .route("/api/servers/{id}/restart", post(servers::restart))
        .route("/api/servers/{id}/runtime", get(runtime::get))
        .route("/api/runtime", get(runtime::list))
        .route("/api/tools/{id}", get(tools::list))
        .route(
            "/api/tools/{id}/{tool}",
            get(tools::get).post(tools::upsert).delete(tools::delete),
        )
        .route("/api/stats", get(servers::stats))
        .route("/api/export", get(registry_io::export))
        .route("/api/import", post(registry_io::import))
        .route("/api/events", get(events::stream))
        .route("/api/openapi.json", get(crate::openapi::document))
}

//! Owns the route table of the admin API; one file per resource.

pub mod audit;
pub mod dashboard;
pub mod events;
pub mod health;
pub mod metrics;
pub mod openapi_import;
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
        .route(
            "/api/servers/{id}/openapi",
            post(openapi_import::import).layer(axum::extract::DefaultBodyLimit::max(
                openapi_import::MAX_DOCUMENT_BYTES,
            )),
        )
        .route("/api/servers/{id}/runtime", get(runtime::get))
        .route("/api/runtime", get(runtime::list))
        .route("/api/tools/{id}", get(tools::list))
        .route(
            "/api/tools/{id}/{tool}",
            get(tools::get).post(tools::upsert).delete(tools::delete),
        )
        .route("/api/tools/{id}/{tool}/validate", post(tools::validate))
        .route("/api/stats", get(servers::stats))
        .route("/api/metrics", get(metrics::get))
        .route("/api/export", get(registry_io::export))
        .route("/api/import", post(registry_io::import))
        .route("/api/events", get(events::stream))
        .route("/api/audit", get(audit::list))
        .route("/api/audit/stream", get(audit::stream))
        .route("/api/openapi.json", get(crate::openapi::document))
}

/// The console (no token: it is static; the page asks for the token its API calls need).
pub fn dashboard_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::redirect_root))
        .route("/dashboard", get(dashboard::redirect_root))
        .route("/dashboard/", get(dashboard::serve))
        .route("/dashboard/{*path}", get(dashboard::serve))
}

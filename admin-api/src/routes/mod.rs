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

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::AppState;

/// Every `/api` route, each with its OpenAPI operation: this one list makes both the
/// router and the document's paths (`routes!` registers a handler at the method and
/// path of its `#[utoipa::path]`). The token check is layered on by the caller.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(servers::list))
        .routes(routes!(servers::get, servers::upsert, servers::delete))
        .routes(routes!(servers::restart))
        .routes(
            routes!(openapi_import::import)
                .layer(DefaultBodyLimit::max(openapi_import::MAX_DOCUMENT_BYTES)),
        )
        .routes(routes!(runtime::get))
        .routes(routes!(runtime::list))
        .routes(routes!(tools::list))
        .routes(routes!(tools::get, tools::upsert, tools::delete))
        .routes(routes!(tools::validate))
        .routes(routes!(servers::stats))
        .routes(routes!(metrics::get))
        .routes(routes!(registry_io::export))
        .routes(routes!(registry_io::import))
        .routes(routes!(events::stream))
        .routes(routes!(audit::list))
        .routes(routes!(audit::stream))
        .routes(routes!(crate::openapi::document))
}

/// The documented routes outside `/api`, which need no token.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health::healthz))
}

/// The console (no token: it is static; the page asks for the token its API calls need).
pub fn dashboard_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::redirect_root))
        .route("/dashboard", get(dashboard::redirect_root))
        .route("/dashboard/", get(dashboard::serve))
        .route("/dashboard/{*path}", get(dashboard::serve))
}

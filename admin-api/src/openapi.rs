//! Owns the OpenAPI 3 document of the admin API, generated from the handlers'
//! annotations and the model types, served at `/api/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "MCP Hub admin API", description = "Registry CRUD, restart, runtime status and import/export of MCP Hub."),
    paths(
        routes::health::healthz,
        routes::servers::list, routes::servers::get, routes::servers::upsert, routes::servers::delete,
        routes::servers::restart, routes::servers::stats,
        routes::tools::list, routes::tools::get, routes::tools::upsert, routes::tools::delete,
        routes::tools::validate,
        routes::runtime::list, routes::runtime::get, routes::metrics::get,
        routes::registry_io::export, routes::registry_io::import, routes::openapi_import::import,
        routes::events::stream,
        document,
    ),
    components(schemas(mcp_core::validate::Problem, mcp_core::runtime::WorkerRecord)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

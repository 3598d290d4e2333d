//! `POST /api/servers/{id}/openapi` on real public documents (the Swagger Petstore of
//! `@readme/oas-examples`, GitHub's api.github.com of `@octokit/openapi`, fetched by
//! `scripts/ensure-deps.sh --with-sdks` into the cache; a missing one fails the test
//! with that instruction), driven in-process with `oneshot` against a real Redis.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use mcp_admin::AppState;
use mcp_core::keys::Keys;
use mcp_core::RedisRegistry;
use serde_json::{json, Value};
use tower::ServiceExt;

fn fixture(relative: &str) -> PathBuf {
    let cache = std::env::var("MCP_HUB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/mcp-hub")
        });
    let path = cache.join("openapi-fixtures").join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/ensure-deps.sh --with-sdks (make test does)",
        path.display()
    );
    path
}

fn document(relative: &str) -> Value {
    let text = std::fs::read_to_string(fixture(relative)).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn state(redis: &mcp_testkit::RedisServer) -> AppState {
    AppState {
        registry: RedisRegistry::new(
            &redis.url(),
            Keys::new(&mcp_testkit::unique_prefix()),
            Default::default(),
        )
        .expect("registry"),
        admin_token: None::<Arc<str>>,
        dashboard: mcp_admin::routes::dashboard::Dashboard::new("/nonexistent/dist".into()),
        metrics: mcp_admin::routes::metrics::MetricsSource::new(
            url::Url::parse("http://127.0.0.1:9/metrics").expect("url"),
        )
        .expect("metrics source"),
    }
}

async fn import(state: &AppState, server: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/servers/{server}/openapi"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = mcp_admin::app(state.clone(), 1024 * 1024)
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn names(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {report}"))
        .iter()
        .map(|v| v.as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn the_petstore_imports_dry_then_for_real_then_unchanged_then_replaced() {
    let redis = mcp_testkit::RedisServer::start();
    let state = state(&redis);
    let petstore = document("oas-examples/3.0/json/petstore.json");

    let (status, dry) = import(
        &state,
        "petstore",
        json!({"document": petstore, "dryRun": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["serverCreated"], true);
    assert_eq!(dry["baseUrl"], "http://petstore.swagger.io/v2");
    let created = names(&dry, "created");
    assert_eq!(
        created.len(),
        20,
        "every operation of the Petstore: {created:?}"
    );
    assert!(
        state
            .registry
            .get_server("petstore")
            .await
            .expect("redis")
            .is_none(),
        "a dry run writes nothing"
    );

    let (status, real) = import(&state, "petstore", json!({"document": petstore})).await;
    assert_eq!(status, StatusCode::OK, "{real}");
    assert_eq!(names(&real, "created"), created);
    let tools = state.registry.list_tools("petstore").await.expect("tools");
    let get = &tools["getPetById"];
    assert_eq!(get.path_template, "/pet/{petId}");
    assert_eq!(get.param_mapping.path["petId"], "petId");
    assert_eq!(get.input_schema["required"], json!(["petId"]));
    let add = &tools["addPet"];
    assert_eq!(
        add.param_mapping.body["name"], "name",
        "the Pet body flattened"
    );
    assert_eq!(
        add.input_schema["properties"]["category"]["type"], "object",
        "$ref resolved"
    );
    let login = &tools["loginUser"];
    assert_eq!(login.param_mapping.query["username"], "username");
    assert!(
        names(&real, "warnings")
            .iter()
            .any(|w| w.starts_with("POST /pet/{petId}/uploadImage")),
        "the octet-stream upload is imported without a body, and said so: {real}"
    );

    let (_, again) = import(&state, "petstore", json!({"document": petstore})).await;
    assert_eq!(names(&again, "unchanged").len(), 20, "{again}");
    assert!(names(&again, "created").is_empty() && names(&again, "changed").is_empty());

    let (_, replaced) = import(
        &state,
        "petstore",
        json!({"document": petstore, "tags": ["store"], "mode": "replace", "prefix": ""}),
    )
    .await;
    assert_eq!(names(&replaced, "unchanged").len(), 4, "{replaced}");
    assert_eq!(names(&replaced, "removed").len(), 16);
    assert_eq!(
        state
            .registry
            .list_tools("petstore")
            .await
            .expect("tools")
            .len(),
        4
    );
}

#[tokio::test]
async fn the_petstore_31_imports_from_yaml_text_with_a_prefix() {
    let redis = mcp_testkit::RedisServer::start();
    let state = state(&redis);
    let text =
        std::fs::read_to_string(fixture("oas-examples/3.1/yaml/petstore.yaml")).expect("yaml");
    let (status, report) = import(
        &state,
        "pets",
        json!({"document": text, "prefix": "pets.", "baseUrl": "http://127.0.0.1:9/v2"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["baseUrl"], "http://127.0.0.1:9/v2",
        "baseUrl given wins for a new server"
    );
    assert!(
        names(&report, "created")
            .iter()
            .all(|n| n.starts_with("pets.")),
        "{report}"
    );
}

#[tokio::test]
async fn a_subset_of_githubs_own_document_imports() {
    let redis = mcp_testkit::RedisServer::start();
    let state = state(&redis);
    // 13 MB, the whole api.github.com description; three of its ~1,000 operations.
    let github = document("octokit-openapi/generated/api.github.com.json");
    let (status, report) = import(
        &state,
        "github",
        json!({"document": github, "operations": ["repos/get", "issues/list-for-repo", "issues/create"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["baseUrl"], "https://api.github.com");
    assert_eq!(
        names(&report, "created"),
        ["repos_get", "issues_list-for-repo", "issues_create"]
    );
    let tools = state.registry.list_tools("github").await.expect("tools");
    let create = &tools["issues_create"];
    assert_eq!(create.path_template, "/repos/{owner}/{repo}/issues");
    assert_eq!(create.param_mapping.path.len(), 2);
    assert_eq!(create.param_mapping.body["title"], "title");
    assert!(create.input_schema["required"]
        .as_array()
        .expect("required")
        .contains(&json!("title")));
    let list = &tools["issues_list-for-repo"];
    assert!(
        list.param_mapping.query.contains_key("state"),
        "{:?}",
        list.param_mapping
    );
}

#[tokio::test]
async fn cycles_and_bad_requests_are_refused_with_what_is_wrong() {
    let redis = mcp_testkit::RedisServer::start();
    let state = state(&redis);
    let circular = document("oas-examples/3.0/json/circular-request-bodies.json");
    let (status, body) = import(
        &state,
        "c",
        json!({"document": circular, "baseUrl": "http://127.0.0.1:9"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .expect("message")
            .contains("cyclic $ref"),
        "{body}"
    );
    assert!(
        state
            .registry
            .get_server("c")
            .await
            .expect("redis")
            .is_none(),
        "nothing written"
    );

    let swagger = document("oas-examples/2.0/json/petstore.json");
    let (status, body) = import(&state, "s", json!({"document": swagger})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = import(&state, "s", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_request"))
    );
    let (status, _) = import(
        &state,
        "s",
        json!({"document": "key: [unclosed", "baseUrl": "http://x"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

//! Owns the mock of the demo REST APIs (FakeStore at `/products`, Fruits at
//! `/api/fruits`, stateful so create-then-get works) and the test endpoints under
//! `/test`: echo (what was received, byte for byte; `/test/echo-status/{code}` with that
//! status), delay, status, redirect, large body,
//! streaming (chunks, SSE, NDJSON), hang and early close; and faults per key: every
//! route is also served under `/fault/{key}/...`, slowed or failed as
//! `PUT /control/faults/{key}` says (the chaos suite gives one server a base URL there
//! and turns its REST API slow or failing while the others stay untouched). Used by
//! tests in-process ([`MockApi`]) and by `make run` as the `mcp-mock-api` binary.

use axum::serve::ListenerExt;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The in-memory collections. A std `Mutex`: held for a map operation, never across
/// an await.
#[derive(Clone, Default)]
struct Store {
    products: Arc<Mutex<Collection>>,
    fruits: Arc<Mutex<Collection>>,
}

#[derive(Default)]
struct Collection {
    next_id: u64,
    items: BTreeMap<u64, Map<String, Value>>,
}

impl Collection {
    fn seeded(items: Vec<Value>) -> Collection {
        let mut collection = Collection::default();
        for item in items {
            if let Value::Object(obj) = item {
                collection.insert(obj);
            }
        }
        collection
    }

    fn insert(&mut self, mut item: Map<String, Value>) -> Map<String, Value> {
        self.next_id += 1;
        item.insert("id".into(), json!(self.next_id));
        self.items.insert(self.next_id, item.clone());
        item
    }
}

/// What a fault key does to the requests under `/fault/{key}/`: wait `delayMs` first,
/// then answer `status` (an error body, with `Retry-After: {retryAfter}` when set)
/// instead of the route when it is set; with `failFirst: n`, only the first n requests
/// counted since the fault was set fail, the next ones reach the route. Each request is
/// counted: `GET /control/faults/{key}/hits` -> `{"hits": n}`.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_first: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// Faults by key, plus the routes they front. A std `Mutex`: held for a map operation,
/// never across an await.
#[derive(Clone)]
struct Faults {
    by_key: Arc<Mutex<BTreeMap<String, Fault>>>,
    /// Requests per key since its fault was last set (or since start).
    hits: Arc<Mutex<BTreeMap<String, u64>>>,
    routes: Router,
}

/// The mock's router.
pub fn app() -> Router {
    let routes = routes();
    let faults = Faults {
        by_key: Arc::default(),
        hits: Arc::default(),
        routes: routes.clone(),
    };
    routes
        .route(
            "/fault/{key}/{*rest}",
            any(faulty).with_state(faults.clone()),
        )
        .route(
            "/control/faults",
            get(list_faults).with_state(faults.clone()),
        )
        .route(
            "/control/faults/{key}/hits",
            get(fault_hits).with_state(faults.clone()),
        )
        .route(
            "/control/faults/{key}",
            axum::routing::put(set_fault)
                .delete(clear_fault)
                .with_state(faults),
        )
}

fn routes() -> Router {
    let store = Store {
        products: Arc::new(Mutex::new(Collection::seeded(vec![
            json!({"title": "Backpack", "price": 109.95, "description": "Fits 15 inch laptops", "category": "men's clothing", "image": "https://example.com/1.jpg"}),
            json!({"title": "Slim T-Shirt", "price": 22.3, "description": "Slim-fitting style", "category": "men's clothing", "image": "https://example.com/2.jpg"}),
            json!({"title": "Cotton Jacket", "price": 55.99, "description": "Great outerwear", "category": "men's clothing", "image": "https://example.com/3.jpg"}),
            json!({"title": "Gold Bracelet", "price": 695.0, "description": "Dragon station chain", "category": "jewelery", "image": "https://example.com/4.jpg"}),
            json!({"title": "SSD 1TB", "price": 109.0, "description": "Fast storage", "category": "electronics", "image": "https://example.com/5.jpg"}),
        ]))),
        fruits: Arc::new(Mutex::new(Collection::seeded(vec![
            json!({"name": "Apple", "family": "Rosaceae", "color": "red", "calories": 52}),
            json!({"name": "Banana", "family": "Musaceae", "color": "yellow", "calories": 89}),
            json!({"name": "Cherry", "family": "Rosaceae", "color": "red", "calories": 50}),
            json!({"name": "Lemon", "family": "Rutaceae", "color": "yellow", "calories": 29}),
            json!({"name": "Kiwi", "family": "Actinidiaceae", "color": "green", "calories": 61}),
        ]))),
    };
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/products", get(list_products).post(create_product))
        .route(
            "/products/{id}",
            get(get_product).put(update_product).delete(delete_product),
        )
        .route("/api/fruits", get(list_fruits).post(create_fruit))
        .route(
            "/api/fruits/{id}",
            get(get_fruit).put(update_fruit).delete(delete_fruit),
        )
        .route("/test/echo", any(echo))
        .route("/test/echo/{*rest}", any(echo))
        .route("/test/echo-status/{code}", any(echo_status))
        .route("/test/delay/{ms}", get(delay))
        .route("/test/status/{code}", any(status))
        .route("/test/redirect", any(redirect))
        .route("/test/large/{bytes}", get(large))
        .route(
            "/test/text",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "hello from mock") }),
        )
        .route(
            "/test/not-json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "this is not json",
                )
            }),
        )
        .route("/test/stream/chunks", get(stream_chunks))
        .route("/test/stream/sse", get(stream_sse))
        .route("/test/stream/ndjson", get(stream_ndjson))
        .route("/test/hang", get(hang))
        .route("/test/close-early", get(close_early))
        .with_state(store)
}

/// Serves the mock on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Streamed chunks are small writes: no Nagle delay between them.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The mock running in the test process on a free port; stops when dropped.
pub struct MockApi {
    addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl MockApi {
    /// Starts the mock on its own thread and runtime (usable from sync and async tests).
    pub fn start() -> MockApi {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding the mock API");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("mock API address");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("mock runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let _ = serve(listener, async move {
                    let _ = stop_rx.await;
                })
                .await;
            });
        });
        MockApi {
            addr,
            _stop: stop_tx,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

// ---- faults ----

async fn faulty(
    State(faults): State<Faults>,
    Path((key, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    let fault = faults
        .by_key
        .lock()
        .map(|m| m.get(&key).copied())
        .unwrap_or_default()
        .unwrap_or_default();
    let seen = faults
        .hits
        .lock()
        .map(|mut hits| {
            let n = hits.entry(key.clone()).or_insert(0);
            *n += 1;
            *n - 1
        })
        .unwrap_or_default();
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms.min(600_000))).await;
    }
    let failing = fault.fail_first.is_none_or(|first| seen < first);
    if let (Some(code), true) = (fault.status, failing) {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            Json(json!({"error": "injected fault", "key": key, "status": status.as_u16()})),
        )
            .into_response();
        if let Some(seconds) = fault.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        return response;
    }
    let path_and_query = match request.uri().query() {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    };
    let Ok(uri) = path_and_query.parse::<axum::http::Uri>() else {
        return bad_request("bad path under /fault");
    };
    // A new request, not this one with its URI changed: this one's extensions carry
    // the path parameters matched here (`key`, `rest`), and the route behind would add
    // its own to them (`/api/fruits/{id}` then failed with "Wrong number of path
    // arguments", a 500 to every call under `/fault/`).
    let (parts, body) = request.into_parts();
    let mut forwarded = Request::new(body);
    *forwarded.method_mut() = parts.method;
    *forwarded.uri_mut() = uri;
    *forwarded.version_mut() = parts.version;
    *forwarded.headers_mut() = parts.headers;
    use tower::ServiceExt;
    match faults.routes.oneshot(forwarded).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

async fn list_faults(State(faults): State<Faults>) -> Response {
    let all = faults.by_key.lock().map(|m| m.clone()).unwrap_or_default();
    Json(all).into_response()
}

async fn set_fault(State(faults): State<Faults>, Path(key): Path<String>, body: Bytes) -> Response {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(fault) => fault,
        Err(err) => return bad_request(&format!("fault: {err}")),
    };
    if let Ok(mut hits) = faults.hits.lock() {
        hits.remove(&key);
    }
    if let Ok(mut map) = faults.by_key.lock() {
        map.insert(key, fault);
    }
    Json(fault).into_response()
}

async fn fault_hits(State(faults): State<Faults>, Path(key): Path<String>) -> Response {
    let hits = faults
        .hits
        .lock()
        .map(|m| m.get(&key).copied().unwrap_or(0))
        .unwrap_or(0);
    Json(json!({"hits": hits})).into_response()
}

async fn clear_fault(State(faults): State<Faults>, Path(key): Path<String>) -> Response {
    if let Ok(mut map) = faults.by_key.lock() {
        map.remove(&key);
    }
    StatusCode::NO_CONTENT.into_response()
}

// ---- demo collections ----

#[derive(Deserialize)]
struct ProductQuery {
    limit: Option<String>,
    sort: Option<String>,
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

fn not_found(what: &str, id: u64) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("{what} {id} not found")})),
    )
        .into_response()
}

fn parse_id(raw: &str) -> Result<u64, &'static str> {
    raw.parse::<u64>()
        .map_err(|_| "id must be a positive integer")
}

fn object(body: &Bytes) -> Result<Map<String, Value>, &'static str> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => Err("body must be a JSON object"),
    }
}

fn with_lock<T>(collection: &Mutex<Collection>, f: impl FnOnce(&mut Collection) -> T) -> T {
    match collection.lock() {
        Ok(mut guard) => f(&mut guard),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

async fn list_products(State(store): State<Store>, Query(query): Query<ProductQuery>) -> Response {
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return bad_request("limit must be an integer"),
        None => None,
    };
    let mut items: Vec<Value> = with_lock(&store.products, |c| {
        c.items.values().cloned().map(Value::Object).collect()
    });
    if query.sort.as_deref() == Some("desc") {
        items.reverse();
    }
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    Json(items).into_response()
}

async fn create_product(State(store): State<Store>, body: Bytes) -> Response {
    create(&store.products, &body)
}

async fn get_product(State(store): State<Store>, Path(id): Path<String>) -> Response {
    read(&store.products, "product", &id)
}

async fn update_product(
    State(store): State<Store>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    update(&store.products, "product", &id, &body)
}

async fn delete_product(State(store): State<Store>, Path(id): Path<String>) -> Response {
    delete(&store.products, "product", &id)
}

#[derive(Deserialize)]
struct FruitQuery {
    family: Option<String>,
}

async fn list_fruits(State(store): State<Store>, Query(query): Query<FruitQuery>) -> Response {
    let items: Vec<Value> = with_lock(&store.fruits, |c| {
        c.items
            .values()
            .filter(|f| {
                query
                    .family
                    .as_deref()
                    .is_none_or(|family| f.get("family").and_then(Value::as_str) == Some(family))
            })
            .cloned()
            .map(Value::Object)
            .collect()
    });
    Json(items).into_response()
}

async fn create_fruit(State(store): State<Store>, body: Bytes) -> Response {
    create(&store.fruits, &body)
}

async fn get_fruit(State(store): State<Store>, Path(id): Path<String>) -> Response {
    read(&store.fruits, "fruit", &id)
}

async fn update_fruit(State(store): State<Store>, Path(id): Path<String>, body: Bytes) -> Response {
    update(&store.fruits, "fruit", &id, &body)
}

async fn delete_fruit(State(store): State<Store>, Path(id): Path<String>) -> Response {
    delete(&store.fruits, "fruit", &id)
}

fn create(collection: &Mutex<Collection>, body: &Bytes) -> Response {
    match object(body) {
        Ok(item) => (
            StatusCode::CREATED,
            Json(with_lock(collection, |c| c.insert(item))),
        )
            .into_response(),
        Err(message) => bad_request(message),
    }
}

fn read(collection: &Mutex<Collection>, what: &str, raw_id: &str) -> Response {
    let id = match parse_id(raw_id) {
        Ok(id) => id,
        Err(message) => return bad_request(message),
    };
    match with_lock(collection, |c| c.items.get(&id).cloned()) {
        Some(item) => Json(item).into_response(),
        None => not_found(what, id),
    }
}

fn update(collection: &Mutex<Collection>, what: &str, raw_id: &str, body: &Bytes) -> Response {
    let id = match parse_id(raw_id) {
        Ok(id) => id,
        Err(message) => return bad_request(message),
    };
    let fields = match object(body) {
        Ok(fields) => fields,
        Err(message) => return bad_request(message),
    };
    let updated = with_lock(collection, |c| {
        let item = c.items.get_mut(&id)?;
        for (k, v) in fields {
            if k != "id" {
                item.insert(k, v);
            }
        }
        Some(item.clone())
    });
    match updated {
        Some(item) => Json(item).into_response(),
        None => not_found(what, id),
    }
}

fn delete(collection: &Mutex<Collection>, what: &str, raw_id: &str) -> Response {
    let id = match parse_id(raw_id) {
        Ok(id) => id,
        Err(message) => return bad_request(message),
    };
    match with_lock(collection, |c| c.items.remove(&id)) {
        Some(item) => Json(item).into_response(),
        None => not_found(what, id),
    }
}

// ---- test endpoints ----

/// Everything as received: method, raw path and query (percent-encoding kept), headers
/// (lower-case names; repeats joined by ", "), body as text and as JSON when it parses.
async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let text = String::from_utf8(body.to_vec()).ok();
    let body_json = serde_json::from_slice::<Value>(&body).ok();
    Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": text,
        "bodyJson": body_json,
        "bodyLength": body.len(),
    }))
    .into_response()
}

/// [`echo`] answered with status `code` (a REST API whose error body repeats the
/// request's headers, credentials included: the secrets test's error path).
async fn echo_status(Path(code): Path<u16>, request: Request) -> Response {
    let mut response = echo(request).await;
    match StatusCode::from_u16(code) {
        Ok(status) if (200..=599).contains(&code) => *response.status_mut() = status,
        _ => return bad_request("status must be between 200 and 599"),
    }
    response
}

async fn delay(Path(ms): Path<u64>) -> Response {
    let ms = ms.min(60_000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({"delayedMs": ms})).into_response()
}

#[derive(Deserialize)]
struct StatusQuery {
    /// Answer `size` bytes of text instead of the small JSON body.
    size: Option<usize>,
}

async fn status(Path(code): Path<u16>, Query(query): Query<StatusQuery>) -> Response {
    match StatusCode::from_u16(code) {
        Ok(status) if (200..=599).contains(&code) => match query.size {
            Some(size) => (status, "e".repeat(size.min(64 * 1024 * 1024))).into_response(),
            None => (
                status,
                Json(
                    json!({"status": code, "error": status.canonical_reason().unwrap_or("error")}),
                ),
            )
                .into_response(),
        },
        _ => bad_request("status must be between 200 and 599"),
    }
}

#[derive(Deserialize)]
struct RedirectQuery {
    to: String,
}

/// 302 to `?to=` (a path or a full URL).
async fn redirect(Query(query): Query<RedirectQuery>) -> Response {
    match header::HeaderValue::from_str(&query.to) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => bad_request("to must be a valid header value"),
    }
}

/// Exactly `bytes` bytes of text, produced as a stream of 64 KiB chunks.
async fn large(Path(bytes): Path<usize>) -> Response {
    let total = bytes.min(64 * 1024 * 1024);
    const CHUNK: usize = 64 * 1024;
    let stream = futures::stream::unfold(0usize, move |sent| async move {
        if sent >= total {
            return None;
        }
        let n = CHUNK.min(total - sent);
        Some((Ok::<_, Infallible>(Bytes::from(vec![b'x'; n])), sent + n))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    if let Ok(len) = header::HeaderValue::from_str(&total.to_string()) {
        response.headers_mut().insert(header::CONTENT_LENGTH, len);
    }
    response
}

#[derive(Deserialize)]
struct StreamQuery {
    n: Option<usize>,
    interval_ms: Option<u64>,
    /// Pad each item to this many bytes (chunks only), for volume tests.
    size: Option<usize>,
}

/// `n` items, the first at once and the rest `interval_ms` apart.
fn paced(query: StreamQuery, render: fn(usize) -> String, content_type: &'static str) -> Response {
    let n = query.n.unwrap_or(5).min(100_000);
    let interval = Duration::from_millis(query.interval_ms.unwrap_or(200).min(60_000));
    let size = query.size.unwrap_or(0).min(1024 * 1024);
    let stream = futures::stream::iter(0..n).then(move |i| async move {
        if i > 0 && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        let mut item = render(i);
        if item.len() < size {
            let newline = item.ends_with('\n');
            item.truncate(item.len() - usize::from(newline));
            item.extend(std::iter::repeat_n(
                'x',
                size - item.len() - usize::from(newline),
            ));
            if newline {
                item.push('\n');
            }
        }
        Ok::<_, Infallible>(Bytes::from(item))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

async fn stream_chunks(Query(query): Query<StreamQuery>) -> Response {
    paced(query, |i| format!("chunk {i}\n"), "text/plain")
}

async fn stream_sse(Query(query): Query<StreamQuery>) -> Response {
    paced(
        query,
        |i| format!("data: {{\"seq\": {i}}}\n\n"),
        "text/event-stream",
    )
}

async fn stream_ndjson(Query(query): Query<StreamQuery>) -> Response {
    paced(
        query,
        |i| format!("{{\"seq\": {i}}}\n"),
        "application/x-ndjson",
    )
}

async fn hang() -> Response {
    tokio::time::sleep(Duration::from_secs(600)).await;
    Json(json!({"hung": true})).into_response()
}

/// Promises 1000 bytes, sends 10, then breaks the connection.
async fn close_early() -> Response {
    let stream = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(Bytes::from_static(b"{\"partial\"")),
        Err(std::io::Error::other("closing early")),
    ]);
    let mut response = Response::new(Body::from_stream(stream));
    let headers: &mut HeaderMap = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from_static("1000"),
    );
    response
}

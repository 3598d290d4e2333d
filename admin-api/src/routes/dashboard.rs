//! Owns `/dashboard`: the operators' console, the build output of `frontend/`
//! (`MCP_DASHBOARD_DIR`) served as static files. Hashed assets are cached for good,
//! `index.html` is revalidated every time, a deep link gets `index.html` (the console
//! routes in the browser), and every answer carries a strict Content-Security-Policy.
//! A missing build never stops the hub: `/dashboard` then says how to build it.
//! Nothing here reads the registry; the console calls `/api` like any client.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Where the console's files are. `Arc`: shared by every request, never changed.
#[derive(Clone, Debug)]
pub struct Dashboard {
    dir: Arc<Path>,
}

/// Scripts, styles, fonts and API calls from this origin only; no inline script, no
/// eval, no frames. Inline styles stay allowed: the code editor and React's `style`
/// attributes set them.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
     frame-ancestors 'none'";

/// Files under `assets/` have a content hash in their name: they never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

impl Dashboard {
    pub fn new(dir: PathBuf) -> Dashboard {
        Dashboard {
            dir: Arc::from(dir.into_boxed_path()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when the build output is there (`index.html` exists).
    pub fn is_built(&self) -> bool {
        self.dir.join("index.html").is_file()
    }
}

/// `GET /` and `GET /dashboard`: to the console's root, by a relative `Location` so
/// that a prefix added by a proxy in front is kept.
/// (`dashboard/` resolves to `/dashboard/` from both.)
pub async fn redirect_root() -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, "dashboard/"),
            (header::CACHE_CONTROL, REVALIDATE),
        ],
    )
        .into_response()
}

/// `GET /dashboard/{*path}`: a file of the build, or `index.html` for a console route.
pub async fn serve(State(state): State<AppState>, request: Request) -> Response {
    let dashboard = &state.dashboard;
    let headers = request.headers();
    let path = request
        .uri()
        .path()
        .strip_prefix("/dashboard/")
        .unwrap_or("");
    let Some(relative) = safe_relative(path) else {
        return not_found();
    };
    if !dashboard.is_built() {
        return not_built(dashboard.dir());
    }
    let file = dashboard.dir.join(&relative);
    if !relative.as_os_str().is_empty() && file.is_file() && relative != Path::new("index.html") {
        let cache = if relative.starts_with("assets") {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        return send_file(&file, content_type(&relative), cache, headers).await;
    }
    // A name with an extension is a file the build does not have; anything else is a
    // route of the console.
    if relative.extension().is_some() && relative != Path::new("index.html") {
        return not_found();
    }
    send_index(dashboard, headers).await
}

/// The path below `/dashboard/` as a relative path that cannot leave the folder: no
/// `..`, no absolute part, no backslash or NUL. `None` for anything else.
fn safe_relative(path: &str) -> Option<PathBuf> {
    if path.contains(['\\', '\0']) {
        return None;
    }
    let mut relative = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(relative)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// A weak validator from size and modification time, enough for `If-None-Match`.
fn etag(metadata: &std::fs::Metadata) -> Option<String> {
    let modified = metadata.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!(
        "W/\"{:x}-{:x}\"",
        metadata.len(),
        modified.as_millis()
    ))
}

fn not_modified(headers: &HeaderMap, tag: Option<&str>) -> bool {
    let (Some(tag), Some(presented)) = (tag, headers.get(header::IF_NONE_MATCH)) else {
        return false;
    };
    presented
        .to_str()
        .is_ok_and(|list| list.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
}

async fn send_file(
    file: &Path,
    content_type: &'static str,
    cache: &'static str,
    headers: &HeaderMap,
) -> Response {
    let Ok(metadata) = tokio::fs::metadata(file).await else {
        return not_found();
    };
    let tag = etag(&metadata);
    if not_modified(headers, tag.as_deref()) {
        return with_policy(
            (StatusCode::NOT_MODIFIED, [(header::CACHE_CONTROL, cache)]).into_response(),
            tag,
        );
    }
    match tokio::fs::read(file).await {
        Ok(bytes) => with_policy(
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, cache),
                ],
                bytes,
            )
                .into_response(),
            tag,
        ),
        Err(err) => {
            tracing::warn!(event = "admin.dashboard.read_failed", file = %file.display(), error = %err);
            not_found()
        }
    }
}

/// `index.html` with a `<base href>` naming where the console is mounted (behind a
/// proxy that sets `X-Forwarded-Prefix`, under that prefix), so that its relative asset
/// and API URLs resolve from any deep link.
async fn send_index(dashboard: &Dashboard, headers: &HeaderMap) -> Response {
    let file = dashboard.dir.join("index.html");
    let html = match tokio::fs::read_to_string(&file).await {
        Ok(html) => html,
        Err(err) => {
            tracing::warn!(event = "admin.dashboard.read_failed", file = %file.display(), error = %err);
            return not_built(dashboard.dir());
        }
    };
    let base = format!("{}/dashboard/", forwarded_prefix(headers));
    let tag = format!("<base href=\"{base}\">");
    let html = match html.find("<head>") {
        Some(at) => {
            let at = at + "<head>".len();
            format!("{}\n    {tag}{}", &html[..at], &html[at..])
        }
        None => format!("{tag}{html}"),
    };
    with_policy(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, REVALIDATE),
            ],
            html,
        )
            .into_response(),
        None,
    )
}

/// `X-Forwarded-Prefix` when it is a plain path (`/hub`), else empty. Anything that
/// could close the attribute or add a scheme is refused.
fn forwarded_prefix(headers: &HeaderMap) -> String {
    let Some(prefix) = headers
        .get("x-forwarded-prefix")
        .and_then(|v| v.to_str().ok())
    else {
        return String::new();
    };
    let prefix = prefix.trim().trim_end_matches('/');
    let plain = prefix.starts_with('/')
        && !prefix.starts_with("//")
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
    if plain {
        prefix.to_owned()
    } else {
        String::new()
    }
}

fn with_policy(mut response: Response, etag: Option<String>) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Some(value) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(header::ETAG, value);
    }
    response
}

fn not_found() -> Response {
    with_policy(
        (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, REVALIDATE),
            ],
            "not found\n",
        )
            .into_response(),
        None,
    )
}

/// 503 with a page that says how to build the console.
fn not_built(dir: &Path) -> Response {
    let dir = html_escape(&dir.display().to_string());
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>MCP Hub dashboard: not built</title></head>\
         <body style=\"font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; line-height: 1.5\">\
         <h1>The dashboard is not built</h1>\
         <p>The admin API serves the console from <code>{dir}</code> (<code>MCP_DASHBOARD_DIR</code>), \
         which holds no <code>index.html</code>.</p>\
         <p>Build it from the repository with <code>scripts/build-dashboard.sh</code> \
         (or start the hub with <code>make run</code>, which builds it when it is missing or stale), \
         then reload this page.</p>\
         <p>The hub itself is unaffected: <code>/api</code> and <code>/mcp</code> keep working.</p>\
         </body></html>\n"
    );
    with_policy(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, REVALIDATE),
            ],
            page,
        )
            .into_response(),
        None,
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_cannot_escape() {
        let check = |path: &str, expected: Option<&str>| {
            assert_eq!(
                safe_relative(path),
                expected.map(PathBuf::from),
                "path {path:?}"
            );
        };
        check("", Some(""));
        check("assets/index-abc.js", Some("assets/index-abc.js"));
        check("./assets//x.css", Some("assets/x.css"));
        check("servers/fruits_api", Some("servers/fruits_api"));
        check("../secret", None);
        check("assets/../../etc/passwd", None);
        check("/etc/passwd", None);
        check("a\\b", None);
        check("a\0b", None);
    }

    #[test]
    fn forwarded_prefixes() {
        let check = |value: &str, expected: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-forwarded-prefix",
                HeaderValue::from_str(value).expect("header"),
            );
            assert_eq!(forwarded_prefix(&headers), expected, "prefix {value:?}");
        };
        check("/hub", "/hub");
        check("/hub/", "/hub");
        check("/a/b-c", "/a/b-c");
        check("hub", "");
        check("//evil.example", "");
        check("/x\"><script>", "");
        assert_eq!(forwarded_prefix(&HeaderMap::new()), "");
    }
}

//! The browser client (`web/app`), embedded in the binary so `meetings serve` needs no
//! Node.js and no files beside it: `index.html` at `/`, every other file at its own path.
//! One route per embedded file, so any other path — `/v1/…` included — still reaches the
//! problem+json 404 fallback.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use include_dir::{include_dir, Dir, File};

/// The shipped files; `build.rs` reruns the build when they change.
static APP: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../web/app");

/// Same-origin only: scripts, styles, images and the API (websocket included) come from here.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
                   form-action 'self'";

/// Routes for the embedded client, to merge beside the API.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    let mut files = Vec::new();
    collect(&APP, &mut files);
    for file in files {
        let path = file
            .path()
            .to_str()
            .expect("BUG: embedded file names are UTF-8");
        let route = if path == "index.html" {
            "/".to_owned()
        } else {
            format!("/{path}")
        };
        router = router.route(&route, get(move || async move { serve(file) }));
    }
    router
}

fn collect(dir: &'static Dir<'static>, files: &mut Vec<&'static File<'static>>) {
    files.extend(dir.files());
    for sub in dir.dirs() {
        collect(sub, files);
    }
}

fn serve(file: &'static File<'static>) -> Response {
    let name = file.path().to_str().unwrap_or_default();
    let mut response = file.contents().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    // Revalidate each time: a new binary ships new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if name.ends_with(".html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

/// The content type of a shipped file, by its extension (the few kinds `web/app` holds).
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    fn app() -> Router {
        platform::http::finish_router(router(), platform::metrics::Metrics::new())
    }

    async fn get_path(path: &str) -> Response {
        app()
            .oneshot(
                Request::get(path)
                    .body(Body::empty())
                    .expect("BUG: a valid request"),
            )
            .await
            .expect("BUG: the router is infallible")
    }

    #[tokio::test]
    async fn the_root_serves_the_embedded_index_page_as_html_with_a_csp() {
        let response = get_path("/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(response
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("<script type=\"module\""));
    }

    #[tokio::test]
    async fn modules_are_served_as_javascript() {
        let response = get_path("/js/main.js").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn unknown_api_paths_stay_problem_json_404s() {
        let response = get_path("/v1/no-such-thing").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}

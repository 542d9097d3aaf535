//! The docs page (`GET /docs`): Swagger UI over `/openapi.json`, its assets compiled into the
//! binary gzipped (see `build.rs`) and served as they are to clients that take gzip. Nothing
//! loads from another origin: the page's Content-Security-Policy allows only its own.
//!
//! Every link is relative, so the page also works under an API Gateway stage path.

use std::io::Read;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

/// The Swagger UI release inside the binary.
pub const SWAGGER_UI_VERSION: &str = env!("SWAGGER_UI_VERSION");

/// What the page allows: its own scripts, styles (Swagger UI sets inline styles) and data
/// images, and requests to its own origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice collection API</title>
<link rel="stylesheet" href="docs/swagger-ui.css?v=VERSION">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js?v=VERSION"></script>
<script src="docs/init.js?v=VERSION"></script>
</body>
</html>
"#;

/// Starts Swagger UI; a file of its own so that the page needs no inline script.
const INIT: &str = r##"window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"##;

const BUNDLE_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js.gz"));
const CSS_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui.css.gz"));

/// The docs routes: `/` and `/docs/` redirect to `/docs`, the page, its assets.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("docs") }))
        .route("/docs/", get(|| async { Redirect::permanent("../docs") }))
        .route("/docs", get(page))
        .route("/docs/init.js", get(|| async { script(INIT) }))
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|h: HeaderMap| async move { gzipped(&h, BUNDLE_GZ, "text/javascript") }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|h: HeaderMap| async move { gzipped(&h, CSS_GZ, "text/css") }),
        )
}

async fn page() -> Response {
    let mut r = Html(PAGE.replace("VERSION", SWAGGER_UI_VERSION)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn script(body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/javascript")], body).into_response();
    cacheable(r.headers_mut());
    r
}

/// A compiled-in gzipped asset: as it is when the client takes gzip, inflated when not.
fn gzipped(request: &HeaderMap, gz: &'static [u8], content_type: &'static str) -> Response {
    let mut r = if accepts_gzip(request) {
        let mut r = ([(header::CONTENT_TYPE, content_type)], gz).into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        let mut plain = Vec::new();
        match flate2::read::GzDecoder::new(gz).read_to_end(&mut plain) {
            Ok(_) => ([(header::CONTENT_TYPE, content_type)], plain).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    };
    let h = r.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    cacheable(h);
    r
}

/// Assets are named with the Swagger UI version in their query, so a day's caching is safe.
fn cacheable(h: &mut HeaderMap) {
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// Whether `Accept-Encoding` lists gzip with a non-zero weight.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !zero
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_is_taken_unless_refused() {
        assert!(accepts_gzip(&headers("gzip, deflate, br")));
        assert!(accepts_gzip(&headers("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&headers("*")));
        assert!(!accepts_gzip(&headers("gzip;q=0, br")));
        assert!(!accepts_gzip(&headers("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}

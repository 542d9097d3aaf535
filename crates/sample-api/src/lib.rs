//! # sluice-sample-api
//!
//! A local server speaking Hotmart's sales-history protocol, the default source of the demo and
//! the server of the ingest tests. It answers the same requests as
//! `../shared/baselines/mock_sales_api.py`:
//!
//! - `POST /security/oauth/token` with `Authorization: Basic base64(id:secret)` and
//!   `grant_type=client_credentials` (query string or form body) → `{access_token, token_type,
//!   expires_in}`;
//! - `GET /payments/api/v1/sales/history?max_results=1..500&page_token=T&start_date=MS&end_date=MS`
//!   with `Authorization: Bearer <token>` → `{items, page_info: {total_results,
//!   results_per_page, next_page_token?, prev_page_token?}}`; the dates are epoch ms, inclusive,
//!   on `purchase.approved_date`;
//! - `GET /health`, `POST /_mock/reset?n=&mode=&seed=`;
//!
//! and, to exercise the other pagination and authentication styles a source can declare, the
//! same sales in three generic shapes (optional `start`/`end` in RFC 3339 on the approved date):
//!
//! - `GET /api/sales/pages?page=1..&per_page=N` with `X-API-Key: sample-key` → `{"data": [...]}`;
//! - `GET /api/sales/offset?offset=K&limit=N` with `Authorization: Bearer sample-token` →
//!   `{"data": [...]}`;
//! - `GET /api/sales/linked?page=1..&per_page=N` (no auth) → a JSON array, with an RFC 8288
//!   `Link: <…>; rel="next"` header while more pages remain;
//!
//! the first two with their total in the body (`meta.total`, `meta.total_pages`; `total`) and in
//! `X-Total-Count`; and the same sales in the shapes of real APIs ([`styles`]: Django REST
//! framework, HAL, OData, Stripe, a cursor in a header) with a strict OAuth2 token endpoint;
//!
//! and adds fault knobs ([`Fault`], [`Rules`]), settable from Rust or with
//! `POST /_sample/faults` and `POST /_sample/rules`, and request counters (`GET /_sample/stats`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sluice_sample_api::{Fault, SampleApi, Settings};
//!
//! let api = SampleApi::start(Settings { n: 1000, ..Settings::default() }).await?;
//! api.push_faults([Fault::TooManyRequests { reset_secs: 1 }, Fault::Status(503)]);
//! println!("serving on {}", api.base_url());
//! # Ok(()) }
//! ```

pub mod data;
pub mod styles;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

pub use crate::data::{Dataset, Mode};

pub const TOKEN_PATH: &str = "/security/oauth/token";
pub const SALES_PATH: &str = "/payments/api/v1/sales/history";
pub const MAX_PAGE: usize = 500;

/// The default credentials (`mock-id` / `mock-secret`, as the Python mock's) under the variable
/// names the ingest's `hotmart-sales` preset reads: a lookup for `Credentials::resolve`.
///
/// ```
/// assert_eq!(sluice_sample_api::hotmart_env("HOTMART_CLIENT_ID").as_deref(), Some("mock-id"));
/// assert_eq!(sluice_sample_api::hotmart_env("PATH"), None);
/// ```
pub fn hotmart_env(name: &str) -> Option<String> {
    let s = Settings::default();
    match name {
        "HOTMART_CLIENT_ID" => Some(s.client_id),
        "HOTMART_CLIENT_SECRET" => Some(s.client_secret),
        _ => None,
    }
}

/// Start-up settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `127.0.0.1:0` picks a free port.
    pub addr: SocketAddr,
    pub n: u64,
    pub seed: u64,
    pub mode: Mode,
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of issued tokens.
    pub token_ttl: Duration,
    /// See [`Dataset::revision`].
    pub revision: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            n: 10_000,
            seed: 42,
            mode: Mode::Initial,
            client_id: "mock-id".into(),
            client_secret: "mock-secret".into(),
            token_ttl: Duration::from_secs(3600),
            revision: 0,
        }
    }
}

/// One scripted misbehaviour, applied to the next sales-page request (after the token check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Serve this request normally (to place a later fault at a given request).
    Pass,
    /// 429 with Hotmart's rate-limit headers (`RateLimit-Reset`, `X-RateLimit-*`), no
    /// `Retry-After`.
    TooManyRequests { reset_secs: u64 },
    /// This HTTP status with a small JSON error body (500, 502, 503, 504 …).
    Status(u16),
    /// The page, delayed.
    Slow { millis: u64 },
    /// A 200 whose body stops half-way: valid HTTP, truncated JSON.
    Truncate,
    /// A 200 with an empty body (a gateway that lost the response).
    EmptyBody,
    /// A 302 to this URL (another host, say).
    Redirect { location: String },
    /// The connection is cut after part of the body was sent.
    Disconnect,
    /// Every token issued so far expires now (this request gets 401).
    ExpireTokens,
}

/// Standing behaviour, as opposed to the one-shot [`Fault`]s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rules {
    /// Queries whose `end_date - start_date` exceeds this answer 502 — Hotmart's gateway gives
    /// up on queries running over 30 s, which long windows do.
    pub max_window_ms: Option<i64>,
    /// Added delay per page.
    pub latency_ms: u64,
    /// Items at or after this position carry an extra nested object (schema growth).
    pub grow_schema_at: Option<u64>,
    /// Items at these positions are broken (`null`, or a lone surrogate in a string).
    pub broken_items: Vec<u64>,
    /// `expires_in` sent with tokens, as is (a hostile or broken token endpoint: `1e20`, `-5`);
    /// the tokens themselves live as long as the settings say.
    pub token_expires_in: Option<f64>,
    /// The host (`host:port`) that `Link` next URLs name, instead of the request's own (an API
    /// that sends its client elsewhere).
    pub link_host: Option<String>,
    /// The generic routes serve at most this many items a page, whatever is asked for.
    pub max_page_size: Option<usize>,
    /// The sales route, the `Link` route and every route of [`styles`] that names its next page
    /// name the same page again for ever (a paging bug).
    pub stuck_cursor: bool,
    /// Added to the totals the generic and [`styles`] routes report (a total that lies).
    pub total_bias: i64,
    /// The generic and [`styles`] routes answer the page at this index (offset ÷ page size)
    /// with no records, once; a route that names its next page names this one again, so
    /// nothing is skipped (an API's empty page in the middle).
    pub empty_page_at: Option<usize>,
}

/// Request counters (`GET /_sample/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub token_requests: u64,
    pub page_requests: u64,
    pub items_served: u64,
    pub bytes_served: u64,
    pub errors: u64,
    pub unauthorized: u64,
}

#[derive(Debug, Default)]
struct Counters {
    token_requests: AtomicU64,
    page_requests: AtomicU64,
    items_served: AtomicU64,
    bytes_served: AtomicU64,
    errors: AtomicU64,
    unauthorized: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    data: RwLock<Arc<Dataset>>,
    tokens: Mutex<HashMap<String, Instant>>,
    faults: Mutex<VecDeque<Fault>>,
    rules: Mutex<Rules>,
    counters: Counters,
    client_id: String,
    client_secret: String,
    token_ttl: Duration,
    token_seq: AtomicU64,
}

/// A running sample API; stops when dropped.
#[derive(Debug)]
pub struct SampleApi {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SampleApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SampleApi {
    /// Binds `settings.addr` and serves in the background on the current tokio runtime.
    pub async fn start(settings: Settings) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(settings.addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            data: RwLock::new(Arc::new({
                let mut d = Dataset::new(settings.n, settings.seed, settings.mode);
                d.revision = settings.revision;
                d
            })),
            tokens: Mutex::default(),
            faults: Mutex::default(),
            rules: Mutex::default(),
            counters: Counters::default(),
            client_id: settings.client_id,
            client_secret: settings.client_secret,
            token_ttl: settings.token_ttl,
            token_seq: AtomicU64::new(0),
        });
        let app = router(inner.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "sample API stopped");
            }
        });
        Ok(Self { addr, inner, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues faults for the next page requests, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.faults.lock().unwrap().extend(faults);
    }

    /// Faults not yet applied.
    pub fn pending_faults(&self) -> usize {
        self.inner.faults.lock().unwrap().len()
    }

    pub fn set_rules(&self, rules: Rules) {
        self.inner.set_rules(rules);
    }

    /// Serves another data set from now on (the rules stay).
    pub fn reset(&self, n: u64, seed: u64, mode: Mode) {
        self.inner.reset(n, seed, mode);
    }

    /// The data set being served.
    pub fn dataset(&self) -> Arc<Dataset> {
        self.inner.data.read().unwrap().clone()
    }

    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

impl Inner {
    /// `n` items a page, or fewer where the rules cap the page size.
    fn page_cap(&self, n: usize) -> usize {
        let cap = self.rules.lock().unwrap().max_page_size;
        cap.map_or(n, |cap| n.min(cap))
    }

    fn set_rules(&self, rules: Rules) {
        let mut d = (**self.data.read().unwrap()).clone();
        d.grow_schema_at = rules.grow_schema_at;
        d.broken = rules.broken_items.clone();
        *self.data.write().unwrap() = Arc::new(d);
        *self.rules.lock().unwrap() = rules;
    }

    fn reset(&self, n: u64, seed: u64, mode: Mode) {
        let mut d = Dataset::new(n, seed, mode);
        let rules = self.rules.lock().unwrap();
        d.grow_schema_at = rules.grow_schema_at;
        d.broken = rules.broken_items.clone();
        drop(rules);
        *self.data.write().unwrap() = Arc::new(d);
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            token_requests: l(&c.token_requests),
            page_requests: l(&c.page_requests),
            items_served: l(&c.items_served),
            bytes_served: l(&c.bytes_served),
            errors: l(&c.errors),
            unauthorized: l(&c.unauthorized),
        }
    }

    fn error(&self, status: StatusCode, code: &str) -> Response {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        json(status, serde_json::json!({ "error": code }))
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        v.to_string(),
    )
        .into_response()
}

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route(SALES_PATH, get(sales))
        .route("/api/sales/pages", get(generic_pages))
        .route("/api/sales/offset", get(generic_offset))
        .route("/api/sales/linked", get(generic_linked))
        .route(styles::DRF_PATH, get(styles::drf))
        .route(styles::HAL_PATH, get(styles::hal))
        .route(styles::ODATA_PATH, get(styles::odata))
        .route(styles::STRIPE_PATH, get(styles::stripe))
        .route(styles::HEADER_CURSOR_PATH, get(styles::header_cursor))
        .route(styles::SINCE_ID_PATH, get(styles::since_id))
        .route(styles::OAUTH2_TOKEN_PATH, post(styles::oauth2_token))
        .route("/health", get(health))
        .route("/_mock/reset", post(reset))
        .route("/_sample/faults", post(faults))
        .route("/_sample/rules", post(rules))
        .route("/_sample/stats", get(stats))
        .with_state(inner)
}

async fn health(State(s): State<Arc<Inner>>) -> Response {
    let d = s.data.read().unwrap().clone();
    json(
        StatusCode::OK,
        serde_json::json!({"status": "ok", "n": d.n, "mode": d.mode, "seed": d.seed}),
    )
}

async fn stats(State(s): State<Arc<Inner>>) -> Response {
    json(StatusCode::OK, serde_json::to_value(s.stats()).unwrap())
}

async fn faults(State(s): State<Arc<Inner>>, body: String) -> Response {
    match serde_json::from_str::<Vec<Fault>>(&body) {
        Ok(f) => {
            s.faults.lock().unwrap().extend(f);
            json(StatusCode::OK, serde_json::json!({"status": "ok"}))
        }
        Err(e) => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}

async fn rules(State(s): State<Arc<Inner>>, body: String) -> Response {
    match serde_json::from_str::<Rules>(&body) {
        Ok(r) => {
            s.set_rules(r);
            json(StatusCode::OK, serde_json::json!({"status": "ok"}))
        }
        Err(e) => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct ResetQuery {
    n: Option<u64>,
    mode: Option<String>,
    seed: Option<u64>,
}

async fn reset(
    State(s): State<Arc<Inner>>,
    q: Result<Query<ResetQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return s.error(StatusCode::BAD_REQUEST, "invalid_parameter");
    };
    let cur = s.data.read().unwrap().clone();
    let mode = match q.mode.as_deref().map(str::parse::<Mode>).transpose() {
        Ok(m) => m.unwrap_or(cur.mode),
        Err(_) => return s.error(StatusCode::BAD_REQUEST, "invalid_parameter"),
    };
    let (n, seed) = (q.n.unwrap_or(cur.n), q.seed.unwrap_or(cur.seed));
    s.reset(n, seed, mode);
    json(
        StatusCode::OK,
        serde_json::json!({"status": "ok", "n": n, "mode": mode, "seed": seed}),
    )
}

async fn token(
    State(s): State<Arc<Inner>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut params = query;
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("x-www-form-urlencoded"));
    if form {
        params.extend(form_urlencoded::parse(body.as_bytes()).into_owned());
    }
    let basic_ok = basic_credentials(&headers)
        .is_some_and(|(id, secret)| id == s.client_id && secret == s.client_secret);
    let param_ok = |k: &str, want: &str| params.get(k).is_none_or(|v| v == want);
    if !(basic_ok
        && param_ok("client_id", &s.client_id)
        && param_ok("client_secret", &s.client_secret))
    {
        s.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        let mut r = s.error(StatusCode::UNAUTHORIZED, "invalid_client");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oauth\""),
        );
        return r;
    }
    if params.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return s.error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let seq = s.token_seq.fetch_add(1, Ordering::Relaxed);
    let token = URL_SAFE_NO_PAD.encode(format!("sample-token-{seq}-{:?}", Instant::now()));
    s.tokens
        .lock()
        .unwrap()
        .insert(token.clone(), Instant::now() + s.token_ttl);
    s.counters.token_requests.fetch_add(1, Ordering::Relaxed);
    let expires_in = match s.rules.lock().unwrap().token_expires_in {
        Some(v) => serde_json::json!(v),
        None => serde_json::json!(s.token_ttl.as_secs()),
    };
    json(
        StatusCode::OK,
        serde_json::json!({"access_token": token, "token_type": "bearer",
            "expires_in": expires_in, "scope": "read write"}),
    )
}

/// The user and password of an `Authorization: Basic` header (RFC 7617: the user holds no
/// `:`).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let text = String::from_utf8(STANDARD.decode(b.trim()).ok()?).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

fn decode_cursor(tok: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(tok.trim_end_matches('=')).ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix("o:")?
        .parse()
        .ok()
}

async fn sales(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let token = bearer(&headers).unwrap_or("").to_owned();
    let valid = s
        .tokens
        .lock()
        .unwrap()
        .get(&token)
        .is_some_and(|exp| *exp > Instant::now());
    if !valid {
        s.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        return s.error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let fault = s.faults.lock().unwrap().pop_front();
    let rules = s.rules.lock().unwrap().clone();
    let int = |k: &str| q.get(k).filter(|v| !v.is_empty()).map(|v| v.parse::<i64>());
    let parsed = (|| -> Option<(usize, usize, Option<i64>, Option<i64>)> {
        let size = match q.get("max_results") {
            Some(v) => v.parse().ok()?,
            None => MAX_PAGE,
        };
        let offset = match q.get("page_token").filter(|v| !v.is_empty()) {
            Some(t) => decode_cursor(t)?,
            None => 0,
        };
        let start = int("start_date").transpose().ok()?;
        let end = int("end_date").transpose().ok()?;
        Some((size, offset, start, end))
    })();
    let Some((size, offset, start, end)) = parsed else {
        return s.error(StatusCode::BAD_REQUEST, "invalid_parameter");
    };
    match fault {
        Some(Fault::Redirect { location }) => {
            let mut r = StatusCode::FOUND.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        Some(Fault::ExpireTokens) => {
            s.tokens.lock().unwrap().clear();
            s.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return s.error(StatusCode::UNAUTHORIZED, "invalid_token");
        }
        Some(Fault::TooManyRequests { reset_secs }) => {
            let mut r = s.error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
            let h = r.headers_mut();
            for (k, v) in [
                ("RateLimit-Limit", "500".to_owned()),
                ("RateLimit-Remaining", "0".to_owned()),
                ("RateLimit-Reset", reset_secs.to_string()),
                ("X-RateLimit-Limit-Minute", "500".to_owned()),
                ("X-RateLimit-Remaining-Minute", "0".to_owned()),
            ] {
                h.insert(k, HeaderValue::from_str(&v).unwrap());
            }
            return r;
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return s.error(status, "injected");
        }
        Some(Fault::Slow { millis }) => tokio::time::sleep(Duration::from_millis(millis)).await,
        _ => {}
    }
    if let (Some(max), Some(a), Some(b)) = (rules.max_window_ms, start, end)
        && b - a > max
    {
        return s.error(StatusCode::BAD_GATEWAY, "upstream_timeout");
    }
    if rules.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(rules.latency_ms)).await;
    }
    let data = s.data.read().unwrap().clone();
    let pos = (start.is_some() || end.is_some()).then(|| data.positions(start, end));
    let total = pos.as_ref().map_or(data.n as usize, Vec::len);
    if !(1..=MAX_PAGE).contains(&size) || offset > total {
        return s.error(StatusCode::BAD_REQUEST, "invalid_parameter");
    }
    let stop = (offset + size).min(total);
    let mut body = String::with_capacity((stop - offset) * 1200 + 200);
    body.push_str(r#"{"items":["#);
    for i in offset..stop {
        if i > offset {
            body.push(',');
        }
        let p = pos.as_ref().map_or(i as u64, |v| u64::from(v[i]));
        data.write_item(p, &mut body);
    }
    let mut info = serde_json::json!({"total_results": total, "results_per_page": size});
    if stop < total {
        let stuck = s.rules.lock().unwrap().stuck_cursor;
        info["next_page_token"] = encode_cursor(if stuck { offset } else { stop }).into();
    }
    if offset > 0 {
        info["prev_page_token"] = encode_cursor(offset.saturating_sub(size)).into();
    }
    body.push_str(r#"],"page_info":"#);
    body.push_str(&info.to_string());
    body.push('}');
    let c = &s.counters;
    c.page_requests.fetch_add(1, Ordering::Relaxed);
    c.items_served
        .fetch_add((stop - offset) as u64, Ordering::Relaxed);
    c.bytes_served
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let ct = [(header::CONTENT_TYPE, "application/json;charset=UTF-8")];
    match fault {
        Some(Fault::EmptyBody) => (StatusCode::OK, ct, String::new()).into_response(),
        Some(Fault::Truncate) => {
            let cut = floor_char_boundary(&body, body.len() / 2);
            body.truncate(cut);
            (StatusCode::OK, ct, body).into_response()
        }
        Some(Fault::Disconnect) => {
            // Announce the full length, send half, then fail the body: hyper cuts the
            // connection.
            let len = body.len();
            let half = bytes::Bytes::from(body.into_bytes()).slice(..len / 2);
            let stream = futures_util::stream::iter([
                Ok::<_, std::io::Error>(half),
                Err(std::io::Error::other("injected disconnect")),
            ]);
            let mut r = (StatusCode::OK, ct, Body::from_stream(stream)).into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
        _ => (StatusCode::OK, ct, body).into_response(),
    }
}

/// The generic routes' shared part: window filter (`start`/`end` in RFC 3339, or
/// `approved_date__gte` in epoch ms) and the slice `[offset, offset+n)` as a JSON
/// array, its end and the total; `None` for invalid parameters.
fn generic_slice(
    s: &Inner,
    q: &HashMap<String, String>,
    offset: usize,
    n: usize,
) -> Option<(String, usize, usize)> {
    let time = |k: &str| -> Option<Option<i64>> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Some(None),
            Some(v) => v
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| Some(t.as_millisecond())),
        }
    };
    // django-filter's `approved_date__gte` (epoch ms): an incremental cursor's parameter.
    let start = match q.get("approved_date__gte") {
        Some(v) => Some(v.parse::<i64>().ok()?),
        None => time("start")?,
    };
    slice_at(s, (start, time("end")?), offset, n)
}

/// The sales approved within `window` (epoch ms, inclusive), `[offset, offset+n)` of them as a
/// JSON array, the slice's end and the total; `None` when `n` is out of range. The page the
/// rules name as empty comes back empty once, ending where it started.
fn slice_at(
    s: &Inner,
    window: (Option<i64>, Option<i64>),
    offset: usize,
    n: usize,
) -> Option<(String, usize, usize)> {
    if !(1..=MAX_PAGE).contains(&n) {
        return None;
    }
    let n = s.page_cap(n);
    let data = s.data.read().unwrap().clone();
    let pos = data.positions(window.0, window.1);
    let c = &s.counters;
    c.page_requests.fetch_add(1, Ordering::Relaxed);
    {
        let mut rules = s.rules.lock().unwrap();
        if rules.empty_page_at == Some(offset / n) && offset < pos.len() {
            rules.empty_page_at = None;
            return Some(("[]".into(), offset, pos.len()));
        }
    }
    let stop = (offset + n).min(pos.len());
    let mut body = String::from("[");
    for (i, p) in pos.get(offset..stop).unwrap_or(&[]).iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        data.write_item(u64::from(*p), &mut body);
    }
    body.push(']');
    c.items_served
        .fetch_add(stop.saturating_sub(offset) as u64, Ordering::Relaxed);
    Some((body, stop, pos.len()))
}

/// A total as reported, with the rules' bias (a total that lies).
fn reported(s: &Inner, total: usize) -> i64 {
    total as i64 + s.rules.lock().unwrap().total_bias
}

/// The URL of `path` with the request's query, `param` set to `value`: on the request's own
/// host, or where the rules send next links.
fn href(
    s: &Inner,
    headers: &HeaderMap,
    path: &str,
    q: &HashMap<String, String>,
    param: &str,
    value: &str,
) -> String {
    let own = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let elsewhere = s.rules.lock().unwrap().link_host.clone();
    let host = elsewhere.as_deref().unwrap_or(own);
    let mut pairs: Vec<(&str, &str)> = q
        .iter()
        .filter(|(k, _)| k.as_str() != param)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort();
    pairs.push((param, value));
    let qs = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("http://{host}{path}?{qs}")
}

fn num(q: &HashMap<String, String>, k: &str, default: usize) -> Option<usize> {
    q.get(k).map_or(Some(default), |v| v.parse().ok())
}

fn json_body(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        body,
    )
        .into_response()
}

async fn generic_pages(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("sample-key") {
        s.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        return s.error(StatusCode::UNAUTHORIZED, "invalid_api_key");
    }
    let (Some(page), Some(per)) = (num(&q, "page", 1), num(&q, "per_page", 100)) else {
        return s.error(StatusCode::BAD_REQUEST, "invalid_parameter");
    };
    let per = s.page_cap(per);
    match generic_slice(&s, &q, page.saturating_sub(1) * per, per) {
        Some((items, _, total)) => {
            let t = reported(&s, total);
            let pages = (t.max(0) as usize).div_ceil(per);
            let body =
                format!(r#"{{"data":{items},"meta":{{"total":{t},"total_pages":{pages}}}}}"#);
            with_total_count(json_body(body), t)
        }
        None => s.error(StatusCode::BAD_REQUEST, "invalid_parameter"),
    }
}

/// `X-Total-Count: <total>` (json-server, many REST APIs).
fn with_total_count(mut r: Response, total: i64) -> Response {
    r.headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    r
}

async fn generic_offset(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some("Bearer sample-token") {
        s.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        return s.error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let (Some(offset), Some(limit)) = (num(&q, "offset", 0), num(&q, "limit", 100)) else {
        return s.error(StatusCode::BAD_REQUEST, "invalid_parameter");
    };
    match generic_slice(&s, &q, offset, limit) {
        Some((items, _, total)) => {
            let t = reported(&s, total);
            with_total_count(json_body(format!(r#"{{"data":{items},"total":{t}}}"#)), t)
        }
        None => s.error(StatusCode::BAD_REQUEST, "invalid_parameter"),
    }
}

async fn generic_linked(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (Some(page), Some(per)) = (num(&q, "page", 1), num(&q, "per_page", 100)) else {
        return s.error(StatusCode::BAD_REQUEST, "invalid_parameter");
    };
    let per = s.page_cap(per);
    match generic_slice(&s, &q, page.saturating_sub(1) * per, per) {
        Some((items, stop, total)) => {
            let mut r = json_body(items);
            if stop < total {
                let stuck = s.rules.lock().unwrap().stuck_cursor;
                let next_page = if stuck { page } else { page + 1 };
                let next = href(
                    &s,
                    &headers,
                    "/api/sales/linked",
                    &q,
                    "page",
                    &next_page.to_string(),
                );
                let first = href(&s, &headers, "/api/sales/linked", &q, "page", "1");
                let link = format!(r#"<{next}>; rel="next", <{first}>; rel="first""#);
                if let Ok(v) = HeaderValue::from_str(&link) {
                    r.headers_mut().insert(header::LINK, v);
                }
            }
            r
        }
        None => s.error(StatusCode::BAD_REQUEST, "invalid_parameter"),
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_match_the_python_mock() {
        // base64url("o:500") without padding, as mock_sales_api.py writes it
        assert_eq!(encode_cursor(500), "bzo1MDA");
        assert_eq!(decode_cursor("bzo1MDA"), Some(500));
        assert_eq!(decode_cursor("bzo1MDA="), Some(500));
        assert_eq!(decode_cursor("eDox"), None);
    }
}

//! The HTTP routes: one axum router, whatever hosts it (a plain server, Lambda behind an API
//! Gateway HTTP API).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::dataset::Dataset;
use crate::lake::Stamp;
use crate::openapi::{self, Version};
use crate::validate::{self, Problem};
use crate::{Api, ErrorInput, IdOrigin, Rejected};

/// The router serving `api`.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use std::sync::Arc;
/// use sluice_api::{Api, Datasets, Settings, router};
///
/// let datasets = Datasets::from_dir("datasets".as_ref())?;
/// let api = Api { datasets, store: None, settings: Settings::default() }; // validate only
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, router(Arc::new(api))).await?;
/// # Ok(()) }
/// ```
pub fn router(api: Arc<Api>) -> Router {
    let document = |v| {
        let bytes = Bytes::from(openapi::document(&api.datasets, v).to_string());
        move || async move { ([(header::CONTENT_TYPE, "application/json")], bytes) }
    };
    Router::new()
        .route("/openapi.json", get(document(Version::V3_1)))
        .route("/openapi-3.0.json", get(document(Version::V3_0)))
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/datasets", get(list_datasets))
        .route("/{dataset}", post(post_one))
        .route("/{dataset}/batch", post(post_batch))
        .merge(crate::docs::routes())
        .with_state(api)
}

/// A response with a JSON body.
fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A request refused: its status and JSON body (`{"detail": …}`), and a `Retry-After`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    body: Value,
    retry_after: Option<&'static str>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = reply(self.status, self.body);
        if let Some(after) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static(after));
        }
        r
    }
}

fn detail(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        body: json!({ "detail": message.into() }),
        retry_after: None,
    }
}

async fn list_datasets(State(api): State<Arc<Api>>) -> Response {
    let list: Vec<Value> = api
        .datasets
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "version": d.version,
                "description": d.description,
                "max_batch": d.max_batch,
            })
        })
        .collect();
    reply(StatusCode::OK, json!({ "datasets": list }))
}

/// One record or a batch of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    One,
    Batch(Mode),
}

/// What a batch with bad items does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing is stored (the default).
    AllOrNone,
    /// `?partial=true`: the good items are stored, the bad ones set aside under `rejected/`.
    Partial,
}

async fn post_one(
    State(api): State<Arc<Api>>,
    Path(dataset): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    collect(api, dataset, headers, body, Shape::One).await
}

#[derive(Debug, serde::Deserialize)]
struct BatchQuery {
    partial: Option<String>,
}

async fn post_batch(
    State(api): State<Arc<Api>>,
    Path(dataset): Path<String>,
    query: Result<Query<BatchQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bad = |message: String| detail(StatusCode::BAD_REQUEST, message).into_response();
    let partial = match query {
        Ok(Query(q)) => q.partial,
        // e.g. `partial` twice
        Err(e) => return bad(format!("the query string: {}", e.body_text())),
    };
    let mode = match partial.as_deref() {
        None | Some("false") => Mode::AllOrNone,
        Some("true") => Mode::Partial,
        Some(other) => return bad(format!("partial: true or false, not {other:?}")),
    };
    collect(api, dataset, headers, body, Shape::Batch(mode)).await
}

async fn collect(
    api: Arc<Api>,
    dataset: String,
    headers: HeaderMap,
    body: Body,
    shape: Shape,
) -> Response {
    let span = tracing::info_span!("collect", dataset = %dataset, shape = ?shape);
    async move {
        let response = match accept(&api, &dataset, &headers, body, shape).await {
            Ok(r) => r,
            Err(refusal) => refusal.into_response(),
        };
        tracing::info!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

/// A request that passed every check: what to store, and what to set aside.
struct Checked<'a> {
    dataset: &'a Dataset,
    stamp: Stamp,
    origin: IdOrigin,
    records: Vec<Value>,
    rejected: Vec<Rejected>,
}

/// Checks a request, then stores it and answers.
async fn accept(
    api: &Api,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    shape: Shape,
) -> Result<Response, Refusal> {
    let checked = check(api, name, headers, body, shape).await?;
    store_and_answer(api, checked).await
}

/// The checks in the order a client needs them: where, what, how big, then what is in it.
async fn check<'a>(
    api: &'a Api,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    shape: Shape,
) -> Result<Checked<'a>, Refusal> {
    let Some(dataset) = api.datasets.get(name) else {
        let known = api.datasets.names().join(", ");
        return Err(detail(
            StatusCode::NOT_FOUND,
            format!("no dataset {name:?} (datasets: {known})"),
        ));
    };
    if !is_json(headers) {
        return Err(detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    let (event_id, origin) = event_id(headers)?;
    let bytes = read_body(body, headers, api.settings.max_body_bytes).await?;
    let input = api.settings.error_input;
    if bytes.is_empty() {
        let missing = Problem {
            ty: "missing",
            loc: vec![json!("body")],
            msg: "Field required".into(),
            input: Some(Value::Null),
            ctx: None,
        };
        return Err(unprocessable(vec![missing], input));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| unprocessable(vec![json_invalid(&bytes, &e)], input))?;
    let (records, rejected) = match shape {
        Shape::One => {
            let r = validate::record(dataset, &value, &[json!("body")])
                .map_err(|p| unprocessable(p, input))?;
            (vec![r], Vec::new())
        }
        Shape::Batch(mode) => {
            let (ok, bad) = batch(dataset, &value).map_err(|p| unprocessable(p, input))?;
            if mode == Mode::AllOrNone && !bad.is_empty() {
                return Err(unprocessable(problems_of(&bad), input));
            }
            (ok, bad)
        }
    };
    let stamp = Stamp {
        event_id,
        received_at: jiff::Timestamp::now(),
        body_sha256: hex_sha256(&bytes),
    };
    Ok(Checked {
        dataset,
        stamp,
        origin,
        records,
        rejected,
    })
}

/// A store that failed: 409 for a reused key, else 503 (retry with the same key).
fn unavailable(e: crate::StoreError) -> Refusal {
    if let crate::StoreError::KeyReused { event_id, .. } = &e {
        return detail(
            StatusCode::CONFLICT,
            format!("Idempotency-Key {event_id:?} was used with another body"),
        );
    }
    tracing::error!(error = %e, "the lake refused the records");
    Refusal {
        retry_after: Some("1"),
        ..detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "the records could not be stored; retry with the same Idempotency-Key",
        )
    }
}

/// Claims the key, stores the records and the set-aside items, and answers: 201, or for a
/// partial batch the set-aside items' problems (422 when nothing was valid).
async fn store_and_answer(api: &Api, c: Checked<'_>) -> Result<Response, Refusal> {
    let stamp = api
        .claim(c.dataset, c.stamp, c.origin)
        .await
        .map_err(unavailable)?;
    let rejected_key = match c.rejected.is_empty() {
        true => None,
        false => Some(
            api.set_aside(c.dataset, &c.rejected, &stamp)
                .await
                .map_err(unavailable)?,
        ),
    };
    let key = match c.records.is_empty() {
        true => None,
        false => Some(
            api.store(c.dataset, &c.records, &stamp)
                .await
                .map_err(unavailable)?,
        ),
    };
    let accepted = c.records.len();
    if rejected_key.is_none() {
        return Ok(reply(
            StatusCode::CREATED,
            json!({"accepted": accepted, "key": key, "event_id": stamp.event_id}),
        ));
    }
    let mut body = unprocessable(problems_of(&c.rejected), api.settings.error_input).body;
    body["accepted"] = json!(accepted);
    body["rejected"] = json!(c.rejected.len());
    body["key"] = json!(key);
    body["rejected_key"] = json!(rejected_key);
    body["event_id"] = json!(stamp.event_id);
    let status = match accepted {
        0 => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::CREATED,
    };
    Ok(reply(status, body))
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn problems_of(rejected: &[Rejected]) -> Vec<Problem> {
    rejected.iter().flat_map(|r| r.problems.clone()).collect()
}

/// The items of a batch, checked: the good ones, and the bad ones with their problems (each at
/// `["body", index, …]`). `Err` for a body that is not a batch at all.
fn batch(dataset: &Dataset, value: &Value) -> Result<(Vec<Value>, Vec<Rejected>), Vec<Problem>> {
    let body = [json!("body")];
    let Some(items) = value.as_array() else {
        return Err(vec![Problem {
            ty: "list_type",
            loc: body.to_vec(),
            msg: "Input should be a valid list".into(),
            input: Some(value.clone()),
            ctx: None,
        }]);
    };
    if let Some(p) =
        validate::length_problem(items.len(), Some(1), Some(dataset.max_batch), value, &body)
    {
        return Err(vec![p]);
    }
    let mut ok = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match validate::record(dataset, item, &[json!("body"), json!(index)]) {
            Ok(r) => ok.push(r),
            Err(problems) => bad.push(Rejected {
                index,
                item: item.clone(),
                problems,
            }),
        }
    }
    Ok((ok, bad))
}

/// `application/json`, `application/json; charset=utf-8`, `application/<x>+json`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The client's `Idempotency-Key` (it names the lake object, so 1-128 of `A-Z a-z 0-9 . _ -`, not
/// starting with `.` or `_`: Athena skips such objects as hidden files), else a new UUIDv7.
fn event_id(headers: &HeaderMap) -> Result<(String, IdOrigin), Refusal> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok((uuid::Uuid::now_v7().to_string(), IdOrigin::Generated));
    };
    let ok = v.to_str().ok().filter(|s| {
        (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !s.starts_with(['.', '_'])
    });
    ok.map(|s| (s.to_owned(), IdOrigin::Client)).ok_or_else(|| {
        detail(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key: 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.' or '_'",
        )
    })
}

/// The body, refused with 413 before it is read past the limit.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Refusal> {
    let too_large = || {
        detail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let limited = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if limited {
            too_large()
        } else {
            detail(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            )
        }
    })
}

/// pydantic's `json_invalid`, at the character where parsing stopped.
fn json_invalid(bytes: &[u8], e: &serde_json::Error) -> Problem {
    // At the end of the text, Python's json points past its last character; serde at it.
    let position = match e.classify() {
        serde_json::error::Category::Eof => String::from_utf8_lossy(bytes).chars().count(),
        _ => position(bytes, e.line(), e.column()),
    };
    Problem {
        ty: "json_invalid",
        loc: vec![json!("body"), json!(position)],
        msg: "JSON decode error".into(),
        input: Some(json!({})),
        ctx: Some(json!({ "error": e.to_string() })),
    }
}

/// The character offset of 1-based (line, column) in `bytes` (as far as it is UTF-8).
fn position(bytes: &[u8], line: usize, column: usize) -> usize {
    let text = String::from_utf8_lossy(bytes);
    let mut offset = 0;
    for (i, l) in text.split('\n').enumerate() {
        if i + 1 == line {
            return offset + column.saturating_sub(1).min(l.chars().count());
        }
        offset += l.chars().count() + 1;
    }
    offset
}

fn unprocessable(mut problems: Vec<Problem>, input: ErrorInput) -> Refusal {
    if input == ErrorInput::Omit {
        for p in &mut problems {
            p.input = None;
        }
    }
    Refusal {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: json!({ "detail": problems }),
        retry_after: None,
    }
}

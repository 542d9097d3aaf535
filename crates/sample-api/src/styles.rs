//! The same sales in the response shapes of APIs no one here wrote, each with the
//! authentication that API uses, so the ingest's pagination and auth styles are tested against
//! what real APIs send:
//!
//! | route | shape | paging | auth |
//! |---|---|---|---|
//! | `GET /drf/sales/?page=&page_size=` | Django REST framework: `{count, next, previous, results}` | `next` URL | HTTP Basic `sample-user` / `sample-pass` |
//! | `GET /hal/sales?page=&size=` | Spring Data REST (HAL): `{_embedded: {sales}, _links: {next: {href}}, page}` | `_links.next.href`, pages from 0 | `api_key=sample-key` in the query (echoed in the links) |
//! | `GET /odata/Sales?$top=` | OData v4: `{@odata.context, value, @odata.nextLink}` | `@odata.nextLink` with `$skiptoken` | OAuth2 bearer from `POST /oauth2/token` |
//! | `GET /v1/charges?limit=` | Stripe: `{object: "list", data, has_more, url}` | `starting_after=<last id>` (the `transaction`), `created[gte]`/`created[lte]` in epoch seconds | HTTP Basic, secret key `sk_test_sample` as the username, no password |
//! | `GET /api/sales/cursor?limit=` | a JSON array | `X-Next-Cursor` header → `cursor=` | `Authorization: Bearer sample-token` |
//! | `GET /api/sales/since?limit=` | a JSON array (GitHub's `/users?since=`) | `since_id=<last id>` until an empty page | none |
//!
//! `POST /oauth2/token` is RFC 6749 client credentials done strictly: a form body only,
//! the client authenticated by `Authorization: Basic` *or* `client_id`/`client_secret` in the
//! body (never both, never the query), `scope` holding `sales.read` and `audience` =
//! `sample-api` required. Its tokens describe themselves (`oauth2|scope|audience|expiry`), so
//! a sample API on another port, as a token host elsewhere, issues tokens this one takes.
//!
//! The generic windows (`start`/`end` in RFC 3339, or `approved_date__gte` in epoch ms) work
//! on every route but Stripe's, and the rules' `stuck_cursor`, `link_host`, `total_bias` and
//! `empty_page_at` apply to them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{
    Inner, basic_credentials, bearer, generic_slice, href, json, json_body, num, reported, slice_at,
};

pub const DRF_PATH: &str = "/drf/sales/";
pub const HAL_PATH: &str = "/hal/sales";
pub const ODATA_PATH: &str = "/odata/Sales";
pub const STRIPE_PATH: &str = "/v1/charges";
pub const HEADER_CURSOR_PATH: &str = "/api/sales/cursor";
pub const SINCE_ID_PATH: &str = "/api/sales/since";
pub const OAUTH2_TOKEN_PATH: &str = "/oauth2/token";

/// The HTTP Basic user and password `GET /drf/sales/` takes.
pub const DRF_USER: (&str, &str) = ("sample-user", "sample-pass");
/// Stripe's secret key, sent as the Basic username with an empty password.
pub const STRIPE_KEY: &str = "sk_test_sample";
/// The scope and audience `POST /oauth2/token` requires.
pub const OAUTH2_SCOPE: &str = "sales.read";
pub const OAUTH2_AUDIENCE: &str = "sample-api";

/// Where the next page starts: `offset`, marked after an empty page so that naming the same
/// offset again is not the same token (the API moved on; its records did not).
fn resume(offset: usize, after_empty: bool) -> String {
    if after_empty {
        format!("{offset}r")
    } else {
        offset.to_string()
    }
}

fn parse_resume(token: &str) -> Option<usize> {
    token.strip_suffix('r').unwrap_or(token).parse().ok()
}

/// The next page's start: `stop`, or the page's own start when the rules make paging stick.
fn next_start(s: &Inner, offset: usize, stop: usize) -> usize {
    if s.rules.lock().unwrap().stuck_cursor {
        offset
    } else {
        stop
    }
}

fn unauthorized(s: &Inner, challenge: &'static str, body: serde_json::Value) -> Response {
    s.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
    s.counters.errors.fetch_add(1, Ordering::Relaxed);
    let mut r = json(StatusCode::UNAUTHORIZED, body);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

fn bad_request(s: &Inner) -> Response {
    s.error(StatusCode::BAD_REQUEST, "invalid_parameter")
}

/// Django REST framework's `PageNumberPagination`, behind `BasicAuthentication`.
pub(crate) async fn drf(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let ok = basic_credentials(&headers).is_some_and(|(u, p)| (u.as_str(), p.as_str()) == DRF_USER);
    if !ok {
        return unauthorized(
            &s,
            "Basic realm=\"api\"",
            serde_json::json!({"detail": "Invalid username/password."}),
        );
    }
    let (Some(page), Some(size)) = (num(&q, "page", 1), num(&q, "page_size", 100)) else {
        return bad_request(&s);
    };
    let size = s.page_cap(size);
    let offset = page.saturating_sub(1) * size;
    let Some((items, stop, total)) = generic_slice(&s, &q, offset, size) else {
        return bad_request(&s);
    };
    let link = |p: usize| href(&s, &headers, DRF_PATH, &q, "page", &p.to_string());
    let next = (stop < total).then(|| {
        let start = next_start(&s, offset, stop);
        link(start / size + 1)
    });
    let previous = (page > 1).then(|| link(page - 1));
    let count = reported(&s, total);
    let [next, previous] = [next, previous].map(|v| serde_json::to_string(&v).unwrap());
    json_body(format!(
        r#"{{"count":{count},"next":{next},"previous":{previous},"results":{items}}}"#
    ))
}

/// Spring Data REST's paged collection (HAL), with the API key in the query string.
pub(crate) async fn hal(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if q.get("api_key").map(String::as_str) != Some("sample-key") {
        return unauthorized(
            &s,
            "ApiKey",
            serde_json::json!({"status": 401, "error": "Unauthorized"}),
        );
    }
    let (Some(page), Some(size)) = (num(&q, "page", 0), num(&q, "size", 20)) else {
        return bad_request(&s);
    };
    let size = s.page_cap(size);
    let offset = page * size;
    let Some((items, stop, total)) = generic_slice(&s, &q, offset, size) else {
        return bad_request(&s);
    };
    let link = |p: usize| serde_json::json!({"href": href(&s, &headers, HAL_PATH, &q, "page", &p.to_string())});
    let mut links = serde_json::json!({"self": link(page)});
    if stop < total {
        links["next"] = link(next_start(&s, offset, stop) / size);
    }
    let t = reported(&s, total);
    let meta = serde_json::json!({"size": size, "totalElements": t,
        "totalPages": (t.max(0) as usize).div_ceil(size), "number": page});
    json_body(format!(
        r#"{{"_embedded":{{"sales":{items}}},"_links":{links},"page":{meta}}}"#
    ))
}

/// An OData v4 entity set with server-driven paging (`@odata.nextLink`), behind an OAuth2
/// bearer token from [`oauth2_token`] (on this server or another).
pub(crate) async fn odata(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !bearer(&headers).is_some_and(token_is_valid) {
        return unauthorized(
            &s,
            "Bearer",
            serde_json::json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty or invalid."}}),
        );
    }
    let size = match q.get("$top") {
        Some(v) => v.parse().ok(),
        None => Some(100),
    };
    let offset = match q.get("$skiptoken") {
        Some(t) => parse_resume(t),
        None => Some(0),
    };
    let (Some(size), Some(offset)) = (size, offset) else {
        return bad_request(&s);
    };
    let Some((items, stop, total)) = generic_slice(&s, &q, offset, size) else {
        return bad_request(&s);
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let mut body =
        format!(r#"{{"@odata.context":"http://{host}/odata/$metadata#Sales","value":{items}"#);
    if stop < total {
        let token = resume(next_start(&s, offset, stop), stop == offset);
        let next = href(&s, &headers, ODATA_PATH, &q, "$skiptoken", &token);
        body.push_str(&format!(
            r#","@odata.nextLink":{}"#,
            serde_json::to_string(&next).unwrap()
        ));
    }
    body.push('}');
    json_body(body)
}

/// Stripe's list API: `has_more`, `starting_after=<id>`, `created[gte]`/`created[lte]` in
/// epoch seconds; the secret key as the Basic username.
pub(crate) async fn stripe(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !basic_credentials(&headers).is_some_and(|(u, p)| u == STRIPE_KEY && p.is_empty()) {
        return unauthorized(
            &s,
            "Basic realm=\"Stripe\"",
            serde_json::json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
        );
    }
    let secs = |k: &str| -> Option<Option<i64>> {
        match q.get(k) {
            None => Some(None),
            Some(v) => v.parse::<i64>().ok().map(Some),
        }
    };
    let (Some(gte), Some(lte), Some(limit)) = (
        secs("created[gte]"),
        secs("created[lte]"),
        num(&q, "limit", 10),
    ) else {
        return bad_request(&s);
    };
    // `created` has whole seconds: `lte` takes in all of its second.
    let window = (gte.map(|v| v * 1000), lte.map(|v| v * 1000 + 999));
    let stuck = s.rules.lock().unwrap().stuck_cursor;
    let offset = match q.get("starting_after").filter(|_| !stuck) {
        None => 0,
        Some(id) => match position_after(&s, window, id) {
            Some(i) => i,
            None => {
                s.counters.errors.fetch_add(1, Ordering::Relaxed);
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "starting_after"}}),
                );
            }
        },
    };
    if limit > 100 {
        return bad_request(&s);
    }
    let Some((items, stop, total)) = slice_at(&s, window, offset, limit) else {
        return bad_request(&s);
    };
    let has_more = stop < total;
    json_body(format!(
        r#"{{"object":"list","data":{items},"has_more":{has_more},"url":"{STRIPE_PATH}"}}"#
    ))
}

/// Where the sales after the one with transaction `id` start, among those in `window`.
fn position_after(s: &Inner, window: (Option<i64>, Option<i64>), id: &str) -> Option<usize> {
    let data = s.data.read().unwrap().clone();
    let pos = data.positions(window.0, window.1);
    pos.iter()
        .position(|p| data.transaction(u64::from(*p)) == id)
        .map(|i| i + 1)
}

/// GitHub's `GET /users?since=<id>` style: a JSON array of the sales after `since_id`, ending
/// with an empty page.
pub(crate) async fn since_id(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(limit) = num(&q, "limit", 30) else {
        return bad_request(&s);
    };
    let offset = match q.get("since_id") {
        None => Some(0),
        Some(id) => position_after(&s, (None, None), id),
    };
    let Some(offset) = offset else {
        return bad_request(&s);
    };
    match slice_at(&s, (None, None), offset, limit) {
        Some((items, _, _)) => json_body(items),
        None => bad_request(&s),
    }
}

/// A JSON array, its next page's cursor in `X-Next-Cursor`.
pub(crate) async fn header_cursor(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if bearer(&headers) != Some("sample-token") {
        return unauthorized(&s, "Bearer", serde_json::json!({"error": "invalid_token"}));
    }
    let offset = match q.get("cursor") {
        Some(c) => parse_resume(c),
        None => Some(0),
    };
    let (Some(offset), Some(limit)) = (offset, num(&q, "limit", 100)) else {
        return bad_request(&s);
    };
    let Some((items, stop, total)) = generic_slice(&s, &q, offset, limit) else {
        return bad_request(&s);
    };
    let mut r = json_body(items);
    if stop < total {
        let token = resume(next_start(&s, offset, stop), stop == offset);
        r.headers_mut()
            .insert("x-next-cursor", HeaderValue::from_str(&token).unwrap());
    }
    r
}

/// An RFC 6749 client-credentials token endpoint, strict about where credentials go.
pub(crate) async fn oauth2_token(
    State(s): State<Arc<Inner>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let oauth_error = |status: StatusCode, code: &str| {
        s.counters.errors.fetch_add(1, Ordering::Relaxed);
        json(status, serde_json::json!({"error": code}))
    };
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form || query.contains_key("client_secret") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let params: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    // client_secret_basic: the id and secret are form-encoded, then joined.
    let from_header = basic_credentials(&headers).map(|(u, p)| {
        let decode = |v: &str| {
            form_urlencoded::parse(format!("v={v}").as_bytes())
                .next()
                .map_or_else(String::new, |(_, v)| v.into_owned())
        };
        (decode(&u), decode(&p))
    });
    let from_body = match (params.get("client_id"), params.get("client_secret")) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        _ => None,
    };
    let client = match (from_header, from_body) {
        (Some(_), Some(_)) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
        (Some(c), None) | (None, Some(c)) => c,
        (None, None) => {
            return unauthorized(
                &s,
                "Basic realm=\"oauth\"",
                serde_json::json!({"error": "invalid_client"}),
            );
        }
    };
    if client != (s.client_id.clone(), s.client_secret.clone()) {
        return unauthorized(
            &s,
            "Basic realm=\"oauth\"",
            serde_json::json!({"error": "invalid_client"}),
        );
    }
    if params.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let scope = params.get("scope").cloned().unwrap_or_default();
    if !scope.split(' ').any(|v| v == OAUTH2_SCOPE) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    if params.get("audience").map(String::as_str) != Some(OAUTH2_AUDIENCE) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let expires = jiff::Timestamp::now().as_millisecond() + s.token_ttl.as_millis() as i64;
    let token = URL_SAFE_NO_PAD.encode(format!("oauth2|{scope}|{OAUTH2_AUDIENCE}|{expires}"));
    s.counters.token_requests.fetch_add(1, Ordering::Relaxed);
    json(
        StatusCode::OK,
        serde_json::json!({"access_token": token, "token_type": "Bearer",
            "expires_in": s.token_ttl.as_secs(), "scope": scope}),
    )
}

/// A token [`oauth2_token`] issued (on any sample API) that has not expired.
fn token_is_valid(token: &str) -> bool {
    let Some(text) = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return false;
    };
    let parts: Vec<&str> = text.split('|').collect();
    match parts[..] {
        ["oauth2", scope, audience, expires] => {
            scope.split(' ').any(|v| v == OAUTH2_SCOPE)
                && audience == OAUTH2_AUDIENCE
                && expires
                    .parse::<i64>()
                    .is_ok_and(|e| e > jiff::Timestamp::now().as_millisecond())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_tokens() {
        assert_eq!(parse_resume(&resume(140, false)), Some(140));
        assert_eq!(parse_resume(&resume(140, true)), Some(140));
        assert_ne!(resume(140, true), resume(140, false));
        assert_eq!(parse_resume("x"), None);
    }
}

//! HTTP to the source API: authentication (OAuth2 client credentials with a cached token,
//! bearer, API key), a request budget, timeouts, and retries with jittered exponential backoff
//! (`backon`) on 5xx, timeouts and dropped connections; 429 waits for the time the API names in
//! `Retry-After`, `RateLimit-Reset` or `X-RateLimit-Reset` (Hotmart sends the latter two).
//!
//! ```
//! use std::time::Duration;
//! use reqwest::header::{HeaderMap, HeaderValue};
//! use sluice_ingest::http::rate_limit_wait;
//!
//! let mut h = HeaderMap::new();
//! h.insert("RateLimit-Reset", HeaderValue::from_static("7"));
//! assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(7)));
//! ```

use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use base64::Engine as _;
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, LINK, RETRY_AFTER};
use sluice_edge::Secret;

use crate::source::{Auth, ClientAuth, Source};

/// Everything that can go wrong talking to the API, with the URL (never a credential).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{method} {url}: HTTP {status}: {snippet}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        snippet: String,
        /// How long the API asked us to wait (429).
        wait: Option<Duration>,
    },
    #[error("{method} {url}: {message}")]
    Transport {
        method: &'static str,
        url: String,
        message: String,
        timeout: bool,
    },
    #[error("credentials for source {source_name:?}: {message}")]
    Credentials {
        source_name: String,
        message: String,
    },
    #[error("token response from {url}: {message}")]
    Token { url: String, message: String },
    /// A response body over the limit (`Api::max_body_bytes`).
    #[error("{method} {url}: the response body is over {max} bytes")]
    TooLarge {
        method: &'static str,
        url: String,
        max: usize,
    },
    /// A next-page URL (a `Link`, a URL in the body) on another origin than `base_url`: never
    /// requested, so the source's credentials go nowhere else.
    #[error("GET {url}: refused: not on the source's origin ({origin})")]
    OtherOrigin { url: String, origin: String },
    /// A next-page URL that cannot be read (not quoted: it may carry a key the API echoed).
    #[error("the next-page URL the API sent: {message}")]
    BadNextUrl { message: String },
}

impl FetchError {
    /// Worth another attempt: 429, 5xx, timeouts, connection and body errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status == 429 || *status >= 500,
            FetchError::Transport { .. } => true,
            _ => false,
        }
    }

    /// A gateway giving up (502/504) or a timeout: the query may be too big — split it.
    pub fn is_overload(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => matches!(status, 502 | 504),
            FetchError::Transport { timeout, .. } => *timeout,
            _ => false,
        }
    }

    fn transport(method: &'static str, url: &str, e: reqwest::Error) -> Self {
        // reqwest's message carries the URL; ours is printed once, without the query.
        let timeout = e.is_timeout();
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        FetchError::Transport {
            method,
            url: url.to_owned(),
            timeout,
            message,
        }
    }
}

/// The wait a 429 asks for: `Retry-After` (seconds), else `RateLimit-Reset` /
/// `X-RateLimit-Reset` (seconds until the window resets; values above a day are read as an
/// epoch time in seconds).
pub fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let secs = num(RETRY_AFTER.as_str())
        .or_else(|| num("ratelimit-reset"))
        .or_else(|| num("x-ratelimit-reset"))?;
    let secs = if secs > 86_400.0 {
        // an epoch time
        let now = jiff::Timestamp::now().as_second() as f64;
        (secs - now).max(0.0)
    } else {
        secs
    };
    Some(Duration::from_secs_f64(secs.min(300.0)))
}

/// The `rel="next"` target of an RFC 8288 `Link` header.
pub fn link_next(headers: &HeaderMap) -> Option<String> {
    for v in headers.get_all(LINK) {
        let Ok(v) = v.to_str() else { continue };
        for link in v.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let is_next = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=").is_some_and(|r| {
                    r.trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if is_next && target.starts_with('<') && target.ends_with('>') {
                return Some(target[1..target.len() - 1].to_owned());
            }
        }
    }
    None
}

/// A source's resolved credentials (from the environment or a Secrets Manager JSON secret).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub client_id: Option<Secret>,
    pub client_secret: Option<Secret>,
    pub basic: Option<Secret>,
    pub token: Option<Secret>,
    pub api_key: Option<Secret>,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
}

impl Credentials {
    /// Reads what `auth` needs: from `secret_json` (keys `client_id`, `client_secret`, `basic`,
    /// `token`, `api_key`, `username`, `password`) when given, else from the environment
    /// variables `auth` names.
    pub fn resolve(
        source: &Source,
        lookup: impl Fn(&str) -> Option<String>,
        secret_json: Option<&str>,
    ) -> Result<Self, FetchError> {
        let err = |message: String| FetchError::Credentials {
            source_name: source.name.clone(),
            message,
        };
        let json = secret_json.map(json_object).transpose().map_err(err)?;
        let get = |key: &str, env: Option<&str>| -> Option<Secret> {
            match &json {
                Some(j) => j.get(key).and_then(|v| v.as_str()).map(Secret::new),
                None => env
                    .and_then(&lookup)
                    .filter(|v| !v.is_empty())
                    .map(Secret::new),
            }
        };
        let need = |key: &str, env: &str| -> Result<Secret, FetchError> {
            get(key, Some(env)).ok_or_else(|| {
                err(match &json {
                    Some(_) => format!("the secret has no {key:?}"),
                    None => format!("{env} is not set"),
                })
            })
        };
        Ok(match &source.auth {
            Auth::Oauth2ClientCredentials {
                client_id_env,
                client_secret_env,
                basic_env,
                ..
            } => Credentials {
                client_id: Some(need("client_id", client_id_env)?),
                client_secret: Some(need("client_secret", client_secret_env)?),
                basic: get("basic", basic_env.as_deref()),
                ..Credentials::default()
            },
            Auth::Bearer { token_env } => Credentials {
                token: Some(need("token", token_env)?),
                ..Credentials::default()
            },
            Auth::ApiKey { key_env, .. } => Credentials {
                api_key: Some(need("api_key", key_env)?),
                ..Credentials::default()
            },
            Auth::Basic {
                username_env,
                password_env,
            } => Credentials {
                username: Some(need("username", username_env)?),
                password: get("password", password_env.as_deref()),
                ..Credentials::default()
            },
            Auth::None => Credentials::default(),
        })
    }
}

#[derive(Debug)]
struct CachedToken {
    value: Secret,
    refresh_at: Instant,
}

/// Request pacing: at most `per_minute` requests in any minute, bursts up to that many.
#[derive(Debug)]
struct Budget {
    per_sec: f64,
    cap: f64,
    state: tokio::sync::Mutex<(f64, tokio::time::Instant)>,
}

impl Budget {
    fn new(per_minute: u32) -> Self {
        let cap = f64::from(per_minute.max(1));
        Budget {
            per_sec: cap / 60.0,
            cap,
            state: tokio::sync::Mutex::new((cap, tokio::time::Instant::now())),
        }
    }

    /// Takes one request from the budget; returns how long it waited.
    async fn take(&self) -> Duration {
        let mut s = self.state.lock().await;
        let now = tokio::time::Instant::now();
        let tokens = (s.0 + now.duration_since(s.1).as_secs_f64() * self.per_sec).min(self.cap);
        if tokens >= 1.0 {
            *s = (tokens - 1.0, now);
            return Duration::ZERO;
        }
        let wait = Duration::from_secs_f64((1.0 - tokens) / self.per_sec);
        tokio::time::sleep(wait).await;
        *s = (0.0, tokio::time::Instant::now());
        wait
    }
}

/// Retry settings (tests shorten the delays).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Attempts after the first.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retries: 5,
        }
    }
}

/// One source's HTTP client: authenticated, budgeted, retried. Built once per container, so the
/// OAuth token survives warm invocations.
#[derive(Debug)]
pub struct Api {
    pub source: Source,
    http: reqwest::Client,
    creds: Credentials,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    budget: Option<Budget>,
    pub retry: RetryPolicy,
    /// The largest response body read (default [`MAX_BODY_BYTES`]); a larger one is an error,
    /// not a function out of memory.
    pub max_body_bytes: usize,
    counters: std::sync::Mutex<ApiCounters>,
}

/// The largest response body read by default: 32 MiB, a page many times over, on a 128 MB
/// function that may hold two pages at once.
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// What the API client did, for the run summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApiCounters {
    pub requests: u64,
    pub retries: u64,
    pub token_requests: u64,
    /// Time spent waiting for responses, backoff and the request budget.
    pub api_wait_ms: u64,
}

/// One response: its body, and its headers (a `Link`, a cursor, a total).
#[derive(Debug)]
pub struct Page {
    pub body: Bytes,
    pub headers: HeaderMap,
}

impl Page {
    /// A header's value as text (`X-Next-Cursor`, `X-Total-Count`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    pub fn new(source: Source, creds: Credentials) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            // Redirects only within one origin: reqwest drops `Authorization` across hosts,
            // but not an API-key header. Another origin's 3xx is an error.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| first.origin() == attempt.url().origin());
                if same && attempt.previous().len() < 10 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .timeout(source.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("sluice-ingest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::transport("BUILD", &source.base_url, e))?;
        Ok(Api {
            budget: source.requests_per_minute.map(Budget::new),
            source,
            http,
            creds,
            token: tokio::sync::Mutex::new(None),
            retry: RetryPolicy::default(),
            max_body_bytes: MAX_BODY_BYTES,
            counters: std::sync::Mutex::default(),
        })
    }

    pub fn counters(&self) -> ApiCounters {
        self.counters.lock().unwrap().clone()
    }

    fn count(&self, f: impl FnOnce(&mut ApiCounters)) {
        f(&mut self.counters.lock().unwrap());
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.max_retries)
            .with_jitter()
    }

    /// A configured URL (the token endpoint may be on another host), or a path below
    /// `base_url`.
    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{}", self.source.base_url, path_or_url)
        }
    }

    /// A page's URL: a path below `base_url`, or a URL the API sent (a `Link`), which must be
    /// on `base_url`'s origin.
    fn page_url(&self, path_or_url: &str) -> Result<String, FetchError> {
        let url = self.url(path_or_url);
        let origin = |u: &str| reqwest::Url::parse(u).ok().map(|u| u.origin());
        let base = origin(&self.source.base_url);
        if base.is_none() || origin(&url) != base {
            return Err(FetchError::OtherOrigin {
                url,
                origin: base
                    .map_or_else(|| self.source.base_url.clone(), |o| o.ascii_serialization()),
            });
        }
        Ok(url)
    }

    /// The query parameter and key of an API key sent in the query.
    fn query_key(&self) -> Option<(&str, &Secret)> {
        match (&self.source.auth, &self.creds.api_key) {
            (
                Auth::ApiKey {
                    param: Some(param), ..
                },
                Some(key),
            ) => Some((param.as_str(), key)),
            _ => None,
        }
    }

    /// The URL of the page after `current` (a path below `base_url`, or a URL) from the `next`
    /// the API sent (a `Link` target, a URL in the body): resolved against `current` when
    /// relative, with an API key the API echoed taken out (each request adds it again), so the
    /// URL can be logged and quoted in errors. Its origin is checked when it is requested.
    pub fn next_page_url(&self, current: &str, next: &str) -> Result<String, FetchError> {
        let mut url = reqwest::Url::parse(&self.url(current))
            .and_then(|base| base.join(next))
            .map_err(|e| FetchError::BadNextUrl {
                message: e.to_string(),
            })?;
        if let Some((param, _)) = self.query_key()
            && url.query_pairs().any(|(k, _)| k == param)
        {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != param)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.set_query(None);
            if !kept.is_empty() {
                url.query_pairs_mut().extend_pairs(kept);
            }
        }
        Ok(url.into())
    }

    /// Runs `attempt` with jittered exponential backoff: 429 (waiting what the API asks), 5xx,
    /// timeouts and transport errors are retried; a gateway giving up (502/504) or a timeout only
    /// once, because the caller can split the query instead.
    async fn retried<T, Fut>(&self, attempt: impl FnMut() -> Fut) -> Result<T, FetchError>
    where
        Fut: Future<Output = Result<T, FetchError>>,
    {
        let mut overloads = 0;
        attempt
            .retry(self.backoff())
            .when(|e: &FetchError| {
                if e.is_overload() {
                    overloads += 1;
                    overloads <= 1
                } else {
                    e.is_retryable()
                }
            })
            .adjust(adjust_for_rate_limit)
            .notify(|e, d| {
                self.count(|c| c.retries += 1);
                tracing::warn!(source = %self.source.name, error = %e, retry_in_ms = d.as_millis() as u64, "request failed; retrying");
            })
            .await
    }

    /// The authorization header, fetching or refreshing the OAuth token when needed.
    async fn auth_header(&self) -> Result<Option<(HeaderName, HeaderValue)>, FetchError> {
        let secret_header = |name: HeaderName, v: String| {
            let mut v = HeaderValue::from_str(&v).map_err(|_| FetchError::Credentials {
                source_name: self.source.name.clone(),
                message: "a credential holds characters not allowed in a header".into(),
            })?;
            v.set_sensitive(true);
            Ok(Some((name, v)))
        };
        match &self.source.auth {
            Auth::None => Ok(None),
            Auth::Bearer { .. } => secret_header(
                AUTHORIZATION,
                format!(
                    "Bearer {}",
                    self.creds.token.as_ref().map_or("", |t| t.expose())
                ),
            ),
            Auth::ApiKey { header: None, .. } => Ok(None),
            Auth::Basic { .. } => {
                let user = self.creds.username.as_ref().map_or("", |u| u.expose());
                let pass = self.creds.password.as_ref().map_or("", |p| p.expose());
                let b64 =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                secret_header(AUTHORIZATION, format!("Basic {b64}"))
            }
            Auth::ApiKey {
                header: Some(header),
                ..
            } => {
                let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                    FetchError::Credentials {
                        source_name: self.source.name.clone(),
                        message: format!("{header:?} is not a header name"),
                    }
                })?;
                secret_header(
                    name,
                    self.creds
                        .api_key
                        .as_ref()
                        .map_or("", |k| k.expose())
                        .into(),
                )
            }
            Auth::Oauth2ClientCredentials { .. } => {
                let mut cached = self.token.lock().await;
                if cached
                    .as_ref()
                    .is_none_or(|t| Instant::now() >= t.refresh_at)
                {
                    *cached = Some(self.fetch_token().await?);
                }
                let token = cached.as_ref().map_or("", |t| t.value.expose());
                secret_header(AUTHORIZATION, format!("Bearer {token}"))
            }
        }
    }

    /// Forgets the cached token (after a 401).
    async fn invalidate_token(&self) {
        *self.token.lock().await = None;
    }

    async fn fetch_token(&self) -> Result<CachedToken, FetchError> {
        let Auth::Oauth2ClientCredentials {
            token_url,
            client_auth,
            scope,
            audience,
            ..
        } = &self.source.auth
        else {
            unreachable!("only OAuth2 sources fetch tokens")
        };
        let url = self.url(token_url);
        let id = self.creds.client_id.clone().unwrap_or_default();
        let secret = self.creds.client_secret.clone().unwrap_or_default();
        let mut params = vec![("grant_type", "client_credentials")];
        if matches!(client_auth, ClientAuth::Form | ClientAuth::Hotmart) {
            params.extend([
                ("client_id", id.expose()),
                ("client_secret", secret.expose()),
            ]);
        }
        params.extend(scope.as_deref().map(|v| ("scope", v)));
        params.extend(audience.as_deref().map(|v| ("audience", v)));
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let form = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let b64 = |v: String| base64::engine::general_purpose::STANDARD.encode(v);
        let basic = match (client_auth, &self.creds.basic) {
            (ClientAuth::Form, _) => None,
            (ClientAuth::Hotmart, Some(b)) => Some(b.expose().to_owned()),
            (ClientAuth::Hotmart, None) => {
                Some(b64(format!("{}:{}", id.expose(), secret.expose())))
            }
            // RFC 6749 §2.3.1: both are form-encoded before they are joined.
            (ClientAuth::Basic, _) => Some(b64(format!(
                "{}:{}",
                form(id.expose()),
                form(secret.expose())
            ))),
        };
        let attempt = || async {
            self.count(|c| c.token_requests += 1);
            let req = if *client_auth == ClientAuth::Hotmart {
                let sep = if url.contains('?') { '&' } else { '?' };
                self.http.post(format!("{url}{sep}{encoded}"))
            } else {
                self.http
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(encoded.clone())
            };
            let req = match &basic {
                Some(basic) => {
                    let mut auth =
                        HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
                            FetchError::Credentials {
                                source_name: self.source.name.clone(),
                                message: "the Basic value holds characters not allowed in a header"
                                    .into(),
                            }
                        })?;
                    auth.set_sensitive(true);
                    req.header(AUTHORIZATION, auth)
                }
                None => req,
            };
            let (_, body) = send(req, "POST", &url, self.max_body_bytes).await?;
            let (value, ttl) = parse_token(&body).map_err(|message| FetchError::Token {
                url: url.clone(),
                message,
            })?;
            // Refresh a minute early (or at 90 % of a short lifetime).
            let early = Duration::from_secs(60).min(ttl / 10);
            Ok(CachedToken {
                value,
                refresh_at: Instant::now() + ttl - early,
            })
        };
        let t0 = Instant::now();
        let out = self.retried(attempt).await;
        self.count(|c| c.api_wait_ms += t0.elapsed().as_millis() as u64);
        out
    }

    /// GET one page: budgeted, authenticated, retried; a 401 refreshes the token once.
    pub async fn get(
        &self,
        path_or_url: &str,
        query: &[(String, String)],
    ) -> Result<Page, FetchError> {
        let url = self.page_url(path_or_url)?;
        let t0 = Instant::now();
        let mut refreshed = false;
        let out = loop {
            let attempt = || async {
                if let Some(b) = &self.budget {
                    b.take().await;
                }
                self.count(|c| c.requests += 1);
                let mut req = self.http.get(&url).query(query);
                if let Some((k, v)) = self.auth_header().await? {
                    req = req.header(k, v);
                }
                if let Some((param, key)) = self.query_key() {
                    req = req.query(&[(param, key.expose())]);
                }
                let (headers, body) = send(req, "GET", &url, self.max_body_bytes).await?;
                Ok(Page { body, headers })
            };
            let r = self.retried(attempt).await;
            match r {
                Err(FetchError::Status { status: 401, .. })
                    if !refreshed
                        && matches!(self.source.auth, Auth::Oauth2ClientCredentials { .. }) =>
                {
                    tracing::info!(source = %self.source.name, "401: refreshing the token");
                    self.invalidate_token().await;
                    refreshed = true;
                }
                r => break r,
            }
        };
        self.count(|c| c.api_wait_ms += t0.elapsed().as_millis() as u64);
        out
    }
}

fn adjust_for_rate_limit(e: &FetchError, d: Option<Duration>) -> Option<Duration> {
    match (e, d) {
        (
            FetchError::Status {
                status: 429,
                wait: Some(w),
                ..
            },
            Some(d),
        ) => Some((*w).max(d.min(Duration::from_millis(50)))),
        (_, d) => d,
    }
}

/// Sends a request; a non-2xx status is an error carrying the start of its body and, for a
/// 429, the wait the API asks for.
async fn send(
    req: reqwest::RequestBuilder,
    method: &'static str,
    url: &str,
    max: usize,
) -> Result<(HeaderMap, Bytes), FetchError> {
    let mut resp = req
        .send()
        .await
        .map_err(|e| FetchError::transport(method, url, e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let too_large = || FetchError::TooLarge {
        method,
        url: url.to_owned(),
        max,
    };
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::transport(method, url, e))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    if !status.is_success() {
        return Err(status_error(method, url, status, &headers, &body));
    }
    Ok((headers, body))
}

fn status_error(
    method: &'static str,
    url: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> FetchError {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    FetchError::Status {
        method,
        url: url.to_owned(),
        status: status.as_u16(),
        snippet: text,
        wait: (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| rate_limit_wait(headers))
            .flatten(),
    }
}

/// The secret's JSON object. The error never quotes the secret: serde's type errors would
/// (`invalid type: string "hunter2"`), so the text is parsed as any JSON first and only its
/// kind, or the position of a syntax error, is told.
fn json_object(secret: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    use serde_json::Value;
    let value: Value = serde_json::from_str(secret).map_err(|e| {
        format!(
            "the secret is not JSON (line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    let kind = match value {
        Value::Object(map) => return Ok(map),
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
    };
    Err(format!("the secret is not a JSON object (it is {kind})"))
}

/// A token endpoint's answer: the access token and how long to use it. A lifetime that is
/// negative, not a number or absurd (`1e20`) is clamped, never trusted to panic; the error
/// names where the body is wrong, never what it holds (it may hold the token).
///
/// ```
/// use sluice_ingest::http::parse_token;
///
/// let (token, ttl) = parse_token(br#"{"access_token":"t0k3n","expires_in":1e20}"#).unwrap();
/// assert_eq!((token.expose(), ttl.as_secs()), ("t0k3n", 86_400));
/// let e = parse_token(br#"{"access_token":["t0k3n"]}"#).unwrap_err();
/// assert!(e.contains("line 1 column") && !e.contains("t0k3n"), "{e}");
/// ```
pub fn parse_token(body: &[u8]) -> Result<(Secret, Duration), String> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        access_token: String,
        expires_in: Option<f64>,
    }
    let t: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not a token response ({:?} error at line {} column {}; needs a string access_token)",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    Ok((Secret::new(t.access_token), token_ttl(t.expires_in)))
}

/// A token's lifetime from its `expires_in`: an hour when absent, clamped to 0 s ..= 1 day
/// (a token is fetched again at least daily; NaN counts as 0).
fn token_ttl(expires_in: Option<f64>) -> Duration {
    const DAY: f64 = 86_400.0;
    let secs = expires_in.unwrap_or(3600.0);
    Duration::from_secs_f64(if secs.is_nan() {
        0.0
    } else {
        secs.clamp(0.0, DAY)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Sources;

    #[tokio::test(start_paused = true)]
    async fn the_request_budget_paces_beyond_its_burst() {
        // Hotmart: 500 calls a minute. The first 500 go at once, then one every 120 ms.
        let b = Budget::new(500);
        for _ in 0..500 {
            assert_eq!(b.take().await, Duration::ZERO);
        }
        let t0 = tokio::time::Instant::now();
        let w = b.take().await;
        assert_eq!(w.as_millis(), 120);
        b.take().await;
        assert_eq!(t0.elapsed().as_millis(), 240);
    }

    #[test]
    fn a_429_waits_what_the_api_asks() {
        let e = FetchError::Status {
            method: "GET",
            url: "u".into(),
            status: 429,
            snippet: String::new(),
            wait: Some(Duration::from_secs(3)),
        };
        let backoff = Some(Duration::from_millis(500));
        assert_eq!(
            adjust_for_rate_limit(&e, backoff),
            Some(Duration::from_secs(3))
        );
        assert_eq!(adjust_for_rate_limit(&e, None), None, "retries exhausted");
    }

    #[test]
    fn link_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static(
                r#"<https://api.example.com/x?page=1>; rel="prev", <https://api.example.com/x?page=3>; rel="next""#,
            ),
        );
        assert_eq!(
            link_next(&h).as_deref(),
            Some("https://api.example.com/x?page=3")
        );
        h.insert(
            LINK,
            HeaderValue::from_static(r#"<https://a/x?page=1>; rel="prev""#),
        );
        assert_eq!(link_next(&h), None);
    }

    #[test]
    fn rate_limit_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_wait(&h), None);
        h.insert("X-RateLimit-Reset", HeaderValue::from_static("2"));
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(2)));
        h.insert("Retry-After", HeaderValue::from_static("1"));
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(1)));
    }

    #[test]
    fn credentials_come_from_env_or_a_secret_and_never_print() {
        let sources = Sources::from_toml(crate::source::DEFAULT_SOURCES).unwrap();
        let s = sources.get("hotmart-sales").unwrap();
        let env = |k: &str| match k {
            "HOTMART_CLIENT_ID" => Some("id-1".to_owned()),
            "HOTMART_CLIENT_SECRET" => Some("hunter2".to_owned()),
            _ => None,
        };
        let c = Credentials::resolve(s, env, None).unwrap();
        assert_eq!(c.client_id.as_ref().unwrap().expose(), "id-1");
        assert!(c.basic.is_none());
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = Credentials::resolve(
            s,
            |_| None,
            Some(r#"{"client_id": "a", "client_secret": "b", "basic": "YTpi"}"#),
        )
        .unwrap();
        assert_eq!(c.basic.unwrap().expose(), "YTpi");
        let e = Credentials::resolve(s, |_| None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "credentials for source \"hotmart-sales\": HOTMART_CLIENT_ID is not set"
        );
        for (secret, kind) in [
            (r#""hunter2""#, "it is a string"),
            ("31415926535", "it is a number"),
            (r#"["hunter2"]"#, "it is an array"),
            ("hunter2", "not JSON (line 1 column 1)"),
        ] {
            let e = Credentials::resolve(s, |_| None, Some(secret)).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(kind), "{msg}");
            assert!(
                !msg.contains("hunter2") && !msg.contains("31415926535"),
                "{msg}"
            );
        }
        let e = Credentials::resolve(s, |_| None, Some(r#"{"client_id": "a"}"#)).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("the secret has no \"client_secret\""),
            "{e}"
        );
    }
}

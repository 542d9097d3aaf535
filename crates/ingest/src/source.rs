//! Sources: what to call, how to authenticate, paginate and window it — declared in TOML, one
//! file for several sources, with a built-in `hotmart-sales` preset so a Hotmart user supplies
//! only credentials.
//!
//! ```
//! use sluice_ingest::source::{Pagination, Sources};
//!
//! let sources = Sources::from_toml(r#"
//!     [source.hotmart-sales]
//!     preset = "hotmart-sales"
//!     environment = "sandbox"
//!
//!     [source.orders]
//!     base_url = "https://api.example.com"
//!     path = "/v1/orders"
//!     records_path = "data"
//!     pagination = { kind = "link_header" }
//!     auth = { kind = "bearer", token_env = "ORDERS_TOKEN" }
//! "#).unwrap();
//! let h = sources.get("hotmart-sales").unwrap();
//! assert_eq!(h.base_url, "https://sandbox.hotmart.com");
//! assert_eq!(h.page_size, 500);
//! assert!(matches!(h.pagination, Pagination::Cursor { .. }));
//! assert!(matches!(sources.get("orders").unwrap().pagination, Pagination::LinkHeader));
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sluice_flatten::{ArrayPolicy, Options};

/// Hotmart's sales-history endpoint and hosts.
pub mod hotmart {
    pub const PRODUCTION: &str = "https://developers.hotmart.com";
    pub const SANDBOX: &str = "https://sandbox.hotmart.com";
    pub const TOKEN_URL: &str = "https://api-sec-vlc.hotmart.com/security/oauth/token";
    pub const TOKEN_PATH: &str = "/security/oauth/token";
    pub const SALES_PATH: &str = "/payments/api/v1/sales/history";
}

/// A source configuration error, naming the source and the field.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("sources TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("source {source_name:?}: {field}: {message}")]
    Invalid {
        source_name: String,
        field: &'static str,
        message: String,
    },
}

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// OAuth2 client credentials (RFC 6749 §4.4): a token from `token_url` (on any host), sent as
    /// `Authorization: Bearer`, fetched again before it expires and after a 401.
    Oauth2ClientCredentials {
        /// Absolute, or a path on `base_url`.
        token_url: String,
        /// How the client proves who it is to the token endpoint.
        #[serde(default)]
        client_auth: ClientAuth,
        client_id_env: String,
        client_secret_env: String,
        /// With [`ClientAuth::Hotmart`]: the `Basic` value the provider issued.
        #[serde(default)]
        basic_env: Option<String>,
        /// `scope` of the token request (space-separated scopes).
        #[serde(default)]
        scope: Option<String>,
        /// `audience` of the token request (Auth0, Okta and others ask for one).
        #[serde(default)]
        audience: Option<String>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        token_env: String,
    },
    /// A key in a header (`header = "X-API-Key"`) or a query parameter (`param = "api_key"`).
    /// A key in the query never reaches a log, an error or a set-aside record: it is added
    /// to each request as it goes out, and taken out of the next-page URLs the API sends.
    ApiKey {
        #[serde(default)]
        header: Option<String>,
        #[serde(default)]
        param: Option<String>,
        key_env: String,
    },
    /// HTTP Basic (RFC 7617): `Authorization: Basic base64(username:password)`; no password
    /// variable means an empty password (Stripe's secret key as the username).
    Basic {
        username_env: String,
        #[serde(default)]
        password_env: Option<String>,
    },
    None,
}

/// How an OAuth2 client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// RFC 6749's `client_secret_basic`: `Authorization: Basic` of the form-encoded id and
    /// secret; the form body carries `grant_type` (and `scope`, `audience`).
    #[default]
    Basic,
    /// RFC 6749's `client_secret_post`: `client_id` and `client_secret` in the form body, no
    /// `Authorization` header (Microsoft identity platform, Auth0).
    Form,
    /// Hotmart's: `grant_type`, `client_id` and `client_secret` in the query string, and
    /// `Authorization: Basic <basic>` — the value Hotmart issued, or base64(`id:secret`).
    Hotmart,
}

/// Where paging with page numbers or offsets learns where it ends, besides an empty page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals<'a> {
    /// Dotted path of the record count in the body (`total`, `meta.total`, `count`).
    pub total_path: Option<&'a str>,
    /// Dotted path of the page count in the body (`total_pages`, `page.totalPages`).
    pub total_pages_path: Option<&'a str>,
    /// A header holding the record count (`X-Total-Count`).
    pub total_header: Option<&'a str>,
}

impl Totals<'_> {
    pub fn any(&self) -> bool {
        self.total_path.is_some() || self.total_pages_path.is_some() || self.total_header.is_some()
    }
}

impl Pagination {
    /// The totals a page-number or offset source declares (none for the other styles).
    pub fn totals(&self) -> Totals<'_> {
        match self {
            Pagination::PageNumber {
                total_path,
                total_pages_path,
                total_header,
                ..
            } => Totals {
                total_path: total_path.as_deref(),
                total_pages_path: total_pages_path.as_deref(),
                total_header: total_header.as_deref(),
            },
            Pagination::Offset {
                total_path,
                total_header,
                ..
            } => Totals {
                total_path: total_path.as_deref(),
                total_pages_path: None,
                total_header: total_header.as_deref(),
            },
            _ => Totals::default(),
        }
    }
}

/// How the next page is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// A cursor at a JSON path of the response, sent back in a query parameter; absent or
    /// empty on the last page.
    Cursor {
        #[serde(default = "default_cursor_path")]
        cursor_path: String,
        #[serde(default = "default_cursor_param")]
        cursor_param: String,
    },
    /// `?page=1,2,…`. Ends on an empty page, or where the totals say when the source declares
    /// them (a page short of the size asked for is not the end: APIs cap their pages).
    PageNumber {
        #[serde(default = "default_page_param")]
        param: String,
        #[serde(default = "default_first_page")]
        first: u64,
        /// Dotted path of the record count in the body (`total`, `meta.total`, `count`).
        #[serde(default)]
        total_path: Option<String>,
        /// Dotted path of the page count in the body (`total_pages`, `page.totalPages`).
        #[serde(default)]
        total_pages_path: Option<String>,
        /// A header holding the record count (`X-Total-Count`).
        #[serde(default)]
        total_header: Option<String>,
    },
    /// `?offset=0,N,2N…&limit=N`. Ends as page numbers do.
    Offset {
        #[serde(default = "default_offset_param")]
        offset_param: String,
        #[serde(default)]
        total_path: Option<String>,
        #[serde(default)]
        total_header: Option<String>,
    },
    /// RFC 8288 `Link: <…>; rel="next"` (GitHub).
    LinkHeader,
    /// The next page's URL at a JSON path of the body: `next` (Django REST framework),
    /// `_links.next.href` (HAL), `@odata.nextLink` (OData). Null or absent on the last page;
    /// relative URLs are resolved against the page's own; same origin only.
    NextUrl { path: String },
    /// The id of a page's last record sent back for the page after it: `starting_after`
    /// (Stripe), `since_id`. Ends when `has_more_path` says false, or on an empty page.
    LastItem {
        #[serde(default = "default_id_path")]
        id_path: String,
        #[serde(default = "default_last_item_param")]
        param: String,
        #[serde(default)]
        has_more_path: Option<String>,
    },
    /// A cursor in a response header (`X-Next-Cursor`), sent back in a query parameter;
    /// absent on the last page.
    HeaderCursor {
        header: String,
        #[serde(default = "default_header_cursor_param")]
        param: String,
    },
    /// One request.
    None,
}

/// Every `pagination.kind` a source may declare.
pub const PAGINATION_KINDS: &[&str] = &[
    "cursor",
    "page_number",
    "offset",
    "link_header",
    "next_url",
    "last_item",
    "header_cursor",
    "none",
];

/// Every `auth.kind` a source may declare.
pub const AUTH_KINDS: &[&str] = &[
    "oauth2_client_credentials",
    "bearer",
    "api_key",
    "basic",
    "none",
];

impl Pagination {
    /// Its `kind` in TOML.
    pub fn kind(&self) -> &'static str {
        match self {
            Pagination::Cursor { .. } => "cursor",
            Pagination::PageNumber { .. } => "page_number",
            Pagination::Offset { .. } => "offset",
            Pagination::LinkHeader => "link_header",
            Pagination::NextUrl { .. } => "next_url",
            Pagination::LastItem { .. } => "last_item",
            Pagination::HeaderCursor { .. } => "header_cursor",
            Pagination::None => "none",
        }
    }
}

impl Auth {
    /// Its `kind` in TOML.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Oauth2ClientCredentials { .. } => "oauth2_client_credentials",
            Auth::Bearer { .. } => "bearer",
            Auth::ApiKey { .. } => "api_key",
            Auth::Basic { .. } => "basic",
            Auth::None => "none",
        }
    }
}

fn default_cursor_path() -> String {
    "page_info.next_page_token".into()
}
fn default_cursor_param() -> String {
    "page_token".into()
}
fn default_page_param() -> String {
    "page".into()
}
fn default_first_page() -> u64 {
    1
}
fn default_offset_param() -> String {
    "offset".into()
}
fn default_id_path() -> String {
    "id".into()
}
fn default_last_item_param() -> String {
    "starting_after".into()
}
fn default_header_cursor_param() -> String {
    "cursor".into()
}

/// How window bounds are written in the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    #[default]
    EpochMillis,
    EpochSeconds,
    Rfc3339,
}

impl TimeFormat {
    pub fn format(self, t: Timestamp) -> String {
        match self {
            TimeFormat::EpochMillis => t.as_millisecond().to_string(),
            TimeFormat::EpochSeconds => t.as_second().to_string(),
            TimeFormat::Rfc3339 => t.to_string(),
        }
    }
}

/// The incremental window: which parameters carry it and how it moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start_param: String,
    pub end_param: String,
    pub format: TimeFormat,
    /// Where the first run starts (default: `initial_span` before now).
    pub initial_start: Option<Timestamp>,
    pub initial_span: SignedDuration,
    /// Re-fetched before the watermark (late-arriving records).
    pub lookback: SignedDuration,
    /// Not fetched yet: records younger than this may still be settling.
    pub delay: SignedDuration,
    /// The longest window one query may cover; longer windows are split into chunks.
    pub max_span: SignedDuration,
    /// A failing chunk is halved down to this span before the run gives up.
    pub min_span: SignedDuration,
}

/// What an incremental cursor's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorType {
    /// RFC 3339 instants (`"2024-01-15T10:00:00Z"`, any offset), sent back in `format`.
    #[default]
    Timestamp,
    /// Integers (ids, epoch numbers), as JSON numbers or numeric strings.
    Integer,
}

/// One value of an incremental cursor, ordered within its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CursorValue {
    Time(Timestamp),
    Int(i64),
}

impl CursorValue {
    /// A value as a record or the state holds it; `None` when it is not of `kind`.
    ///
    /// ```
    /// use sluice_ingest::source::{CursorType, CursorValue};
    ///
    /// let t = CursorValue::parse(CursorType::Timestamp, "2024-01-15T10:00:00-03:00").unwrap();
    /// assert_eq!(t.to_string(), "2024-01-15T13:00:00Z");
    /// assert_eq!(CursorValue::parse(CursorType::Integer, "1705312800000"), Some(CursorValue::Int(1705312800000)));
    /// assert_eq!(CursorValue::parse(CursorType::Integer, "12.5"), None);
    /// ```
    pub fn parse(kind: CursorType, text: &str) -> Option<Self> {
        match kind {
            CursorType::Timestamp => text.trim().parse().ok().map(CursorValue::Time),
            CursorType::Integer => text.trim().parse().ok().map(CursorValue::Int),
        }
    }
}

/// The state's text of a value (RFC 3339 in UTC, or the integer).
impl std::fmt::Display for CursorValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CursorValue::Time(t) => write!(f, "{t}"),
            CursorValue::Int(i) => write!(f, "{i}"),
        }
    }
}

/// How far before the kept cursor the next run asks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorLookback {
    Time(SignedDuration),
    Int(i64),
}

/// Incremental by a cursor kept from the data itself (dlt's `incremental`): the largest value
/// of `cursor_path` among a run's records, sent back in `param` (less `lookback`) by the next
/// run. Kept with the same no-gap rules as a window: moved only after the run's objects are
/// written, with a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incremental {
    /// Dotted path in each record as the API sends it (`updated_at`, `meta.id`).
    pub cursor_path: String,
    pub param: String,
    pub kind: CursorType,
    /// How timestamps are sent (`rfc3339` by default).
    pub format: TimeFormat,
    /// Sent by the first run; without it the first run asks for everything.
    pub initial_value: Option<CursorValue>,
    pub lookback: CursorLookback,
}

impl Incremental {
    /// The query value that asks for records from `kept` on, less the lookback.
    ///
    /// ```
    /// use sluice_ingest::Sources;
    /// use sluice_ingest::source::CursorValue;
    ///
    /// let s = Sources::from_toml(r#"
    ///     [source.s]
    ///     base_url = "https://api.example.com"
    ///     incremental = { cursor_path = "updated_at", param = "updated_since", lookback = "1h" }
    /// "#).unwrap();
    /// let inc = s.get("s").unwrap().incremental.as_ref().unwrap();
    /// let kept = CursorValue::parse(inc.kind, "2024-01-15T10:00:00Z").unwrap();
    /// assert_eq!(inc.query_value(kept), "2024-01-15T09:00:00Z");
    /// ```
    pub fn query_value(&self, kept: CursorValue) -> String {
        match (kept, self.lookback) {
            (CursorValue::Time(t), CursorLookback::Time(d)) => {
                self.format.format(t.saturating_sub(d).expect("in range"))
            }
            (CursorValue::Int(i), CursorLookback::Int(n)) => i.saturating_sub(n).to_string(),
            (v, _) => v.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum LookbackSpec {
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncrementalSpec {
    cursor_path: String,
    param: String,
    #[serde(default, rename = "type")]
    kind: CursorType,
    #[serde(default)]
    format: Option<TimeFormat>,
    #[serde(default)]
    initial_value: Option<String>,
    #[serde(default)]
    lookback: Option<LookbackSpec>,
}

/// A resolved source.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub base_url: String,
    pub path: String,
    /// Dotted path of the record array (`items`); empty when the body is the array.
    pub records_path: String,
    /// The natural key, as a flattened column (documentation for the loader's mapping).
    pub key: Option<String>,
    pub page_size: u32,
    pub page_size_param: Option<String>,
    pub params: Vec<(String, String)>,
    pub auth: Auth,
    /// A Secrets Manager secret holding this source's credentials (JSON object).
    pub secret_arn: Option<String>,
    pub pagination: Pagination,
    pub window: Option<Window>,
    pub incremental: Option<Incremental>,
    pub requests_per_minute: Option<u32>,
    pub timeout: Duration,
    pub gzip: bool,
    /// Write an object (header only) for an empty window.
    pub write_empty: bool,
    /// Records a run may set aside (they cannot be flattened: a `null` item, a lone surrogate)
    /// before it fails instead.
    pub max_bad_records: u64,
    pub flatten: Options,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowSpec {
    start_param: Option<String>,
    end_param: Option<String>,
    format: Option<TimeFormat>,
    initial_start: Option<String>,
    initial_span: Option<String>,
    lookback: Option<String>,
    delay: Option<String>,
    max_span: Option<String>,
    min_span: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlattenSpec {
    separator: Option<String>,
    arrays: Option<ArrayPolicy>,
    max_depth: Option<usize>,
    max_columns: Option<usize>,
}

/// Columns a source's objects may have by default (`flatten.max_columns`): Postgres allows
/// 1,600 a table, and the loader adds lineage columns.
pub const DEFAULT_MAX_COLUMNS: usize = 1000;

/// One `[source.NAME]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSpec {
    preset: Option<String>,
    environment: Option<String>,
    base_url: Option<String>,
    path: Option<String>,
    records_path: Option<String>,
    key: Option<String>,
    page_size: Option<u32>,
    page_size_param: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    auth: Option<Auth>,
    secret_arn: Option<String>,
    pagination: Option<Pagination>,
    window: Option<WindowSpec>,
    incremental: Option<IncrementalSpec>,
    requests_per_minute: Option<u32>,
    timeout: Option<String>,
    gzip: Option<bool>,
    write_empty: Option<bool>,
    max_bad_records: Option<u64>,
    flatten: Option<FlattenSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(default)]
    source: BTreeMap<String, SourceSpec>,
}

/// The sources of one TOML file, by name.
#[derive(Debug, Clone, Default)]
pub struct Sources(pub BTreeMap<String, Source>);

/// The built-in configuration: the Hotmart preset on production.
pub const DEFAULT_SOURCES: &str = "[source.hotmart-sales]\npreset = \"hotmart-sales\"\n";

impl Sources {
    pub fn from_toml(text: &str) -> Result<Self, SourceError> {
        let file: SourcesFile = toml::from_str(text)?;
        let mut out = BTreeMap::new();
        for (name, spec) in file.source {
            out.insert(name.clone(), resolve(name, spec)?);
        }
        Ok(Sources(out))
    }

    pub fn get(&self, name: &str) -> Option<&Source> {
        self.0.get(name)
    }
}

fn duration(source: &str, field: &'static str, v: &str) -> Result<SignedDuration, SourceError> {
    v.parse::<SignedDuration>()
        .map_err(|e| SourceError::Invalid {
            source_name: source.into(),
            field,
            message: format!("{v:?} is not a duration like \"10m\" or \"7d\": {e}"),
        })
        .and_then(|d| {
            if d.is_negative() {
                Err(SourceError::Invalid {
                    source_name: source.into(),
                    field,
                    message: "must not be negative".into(),
                })
            } else {
                Ok(d)
            }
        })
}

/// `"7d"`: jiff reads days only in spans, so days are turned into hours first.
fn parse_days(v: &str) -> String {
    match v
        .strip_suffix('d')
        .and_then(|n| n.trim().parse::<i64>().ok())
    {
        Some(n) => format!("{}h", n * 24),
        None => v.to_owned(),
    }
}

fn resolve(name: String, spec: SourceSpec) -> Result<Source, SourceError> {
    let invalid = |field: &'static str, message: String| SourceError::Invalid {
        source_name: name.clone(),
        field,
        message,
    };
    let hotmart = match spec.preset.as_deref() {
        Some("hotmart-sales") => true,
        None => false,
        Some(other) => {
            return Err(invalid(
                "preset",
                format!("unknown preset {other:?} (hotmart-sales)"),
            ));
        }
    };
    let base_url = match (&spec.base_url, spec.environment.as_deref(), hotmart) {
        (Some(u), _, _) => u.trim_end_matches('/').to_owned(),
        (None, Some("sandbox"), true) => hotmart::SANDBOX.into(),
        (None, None | Some("production"), true) => hotmart::PRODUCTION.into(),
        (None, Some(e), true) => {
            return Err(invalid(
                "environment",
                format!("{e:?} is not production or sandbox"),
            ));
        }
        (None, _, false) => return Err(invalid("base_url", "required".into())),
    };
    let auth = match (spec.auth, hotmart) {
        (Some(a), _) => a,
        (None, true) => Auth::Oauth2ClientCredentials {
            // Hotmart's token host differs from the API host; a base_url override (the sample
            // API, a proxy) serves both.
            token_url: if spec.base_url.is_some() {
                hotmart::TOKEN_PATH.into()
            } else {
                hotmart::TOKEN_URL.into()
            },
            client_auth: ClientAuth::Hotmart,
            client_id_env: "HOTMART_CLIENT_ID".into(),
            client_secret_env: "HOTMART_CLIENT_SECRET".into(),
            basic_env: Some("HOTMART_BASIC".into()),
            scope: None,
            audience: None,
        },
        (None, false) => Auth::None,
    };
    if let Auth::ApiKey { header, param, .. } = &auth
        && header.is_some() == param.is_some()
    {
        return Err(invalid(
            "auth",
            "api_key needs either header (X-API-Key) or param (api_key), not both".into(),
        ));
    }
    let path = match (spec.path, hotmart) {
        (Some(p), _) => p,
        (None, true) => hotmart::SALES_PATH.into(),
        (None, false) => String::new(),
    };
    let pagination = match (spec.pagination, hotmart) {
        (Some(p), _) => p,
        (None, true) => Pagination::Cursor {
            cursor_path: default_cursor_path(),
            cursor_param: default_cursor_param(),
        },
        (None, false) => Pagination::None,
    };
    let empty = match &pagination {
        Pagination::NextUrl { path } => path.is_empty().then_some("path"),
        Pagination::LastItem { id_path, param, .. } => {
            (id_path.is_empty() || param.is_empty()).then_some("id_path and param")
        }
        Pagination::HeaderCursor { header, param } => {
            (header.is_empty() || param.is_empty()).then_some("header and param")
        }
        _ => None,
    };
    if let Some(what) = empty {
        return Err(invalid("pagination", format!("{what} must not be empty")));
    }
    let w = spec.window.clone().unwrap_or_default();
    let window = if spec.window.is_some() || hotmart {
        let d = |field, v: Option<&String>, default: &str| {
            duration(&name, field, &parse_days(v.map_or(default, String::as_str)))
        };
        let initial_start = w
            .initial_start
            .as_deref()
            .map(|s| {
                s.parse::<Timestamp>()
                    .map_err(|e| invalid("window.initial_start", format!("{s:?}: {e}")))
            })
            .transpose()?;
        let window = Window {
            start_param: w.start_param.clone().unwrap_or_else(|| "start_date".into()),
            end_param: w.end_param.clone().unwrap_or_else(|| "end_date".into()),
            format: w.format.unwrap_or_default(),
            initial_start,
            initial_span: d("window.initial_span", w.initial_span.as_ref(), "1d")?,
            lookback: d("window.lookback", w.lookback.as_ref(), "30m")?,
            delay: d("window.delay", w.delay.as_ref(), "1m")?,
            max_span: d("window.max_span", w.max_span.as_ref(), "7d")?,
            min_span: d("window.min_span", w.min_span.as_ref(), "1m")?,
        };
        if window.max_span.is_zero() || window.min_span.is_zero() {
            return Err(invalid(
                "window.max_span",
                "max_span and min_span must be positive".into(),
            ));
        }
        Some(window)
    } else {
        None
    };
    let incremental = spec
        .incremental
        .map(|i| incremental(i, &invalid))
        .transpose()?;
    if incremental.is_some() && window.is_some() {
        return Err(invalid(
            "incremental",
            "a source keeps a window or an incremental cursor, not both".into(),
        ));
    }
    let f = spec.flatten.unwrap_or_default();
    let defaults = Options::default();
    let flatten = Options {
        separator: f.separator.unwrap_or(defaults.separator),
        arrays: f.arrays.unwrap_or(defaults.arrays),
        max_depth: f.max_depth,
        max_columns: Some(f.max_columns.unwrap_or(DEFAULT_MAX_COLUMNS)),
    };
    flatten
        .validate()
        .map_err(|e| invalid("flatten", e.to_string()))?;
    let page_size = spec.page_size.unwrap_or(if hotmart { 500 } else { 100 });
    if page_size == 0 {
        return Err(invalid("page_size", "must be at least 1".into()));
    }
    let timeout = match spec.timeout {
        Some(t) => duration(&name, "timeout", &t)?
            .try_into()
            .map_err(|_| invalid("timeout", "out of range".into()))?,
        None => Duration::from_secs(30),
    };
    Ok(Source {
        base_url,
        path,
        records_path: spec
            .records_path
            .unwrap_or_else(|| if hotmart { "items" } else { "" }.into()),
        key: spec
            .key
            .or_else(|| hotmart.then(|| "purchase_transaction".into())),
        page_size,
        page_size_param: spec
            .page_size_param
            .or_else(|| hotmart.then(|| "max_results".into())),
        params: spec.params.into_iter().collect(),
        auth,
        secret_arn: spec.secret_arn,
        pagination,
        window,
        incremental,
        requests_per_minute: spec.requests_per_minute.or_else(|| hotmart.then_some(500)),
        timeout,
        gzip: spec.gzip.unwrap_or(false),
        write_empty: spec.write_empty.unwrap_or(false),
        max_bad_records: spec.max_bad_records.unwrap_or(100),
        flatten,
        name,
    })
}

fn incremental(
    spec: IncrementalSpec,
    invalid: &dyn Fn(&'static str, String) -> SourceError,
) -> Result<Incremental, SourceError> {
    if spec.cursor_path.is_empty() || spec.param.is_empty() {
        return Err(invalid(
            "incremental",
            "cursor_path and param must not be empty".into(),
        ));
    }
    let initial_value = spec
        .initial_value
        .as_deref()
        .map(|v| {
            CursorValue::parse(spec.kind, v).ok_or_else(|| {
                invalid(
                    "incremental.initial_value",
                    format!("{v:?} is not of type {:?}", spec.kind),
                )
            })
        })
        .transpose()?;
    let lookback = match (spec.kind, spec.lookback) {
        (CursorType::Timestamp, None) => CursorLookback::Time(SignedDuration::ZERO),
        (CursorType::Integer, None) => CursorLookback::Int(0),
        (CursorType::Timestamp, Some(LookbackSpec::Text(t))) => {
            let d = parse_days(&t).parse::<SignedDuration>().map_err(|e| {
                invalid(
                    "incremental.lookback",
                    format!("{t:?} is not a duration like \"10m\": {e}"),
                )
            })?;
            CursorLookback::Time(d)
        }
        (CursorType::Integer, Some(LookbackSpec::Int(n))) => CursorLookback::Int(n),
        (kind, Some(other)) => {
            return Err(invalid(
                "incremental.lookback",
                format!(
                    "{other:?} does not fit type {kind:?}: a duration for timestamps, a number for integers"
                ),
            ));
        }
    };
    if matches!(lookback, CursorLookback::Time(d) if d.is_negative())
        || matches!(lookback, CursorLookback::Int(n) if n < 0)
    {
        return Err(invalid(
            "incremental.lookback",
            "must not be negative".into(),
        ));
    }
    Ok(Incremental {
        cursor_path: spec.cursor_path,
        param: spec.param,
        kind: spec.kind,
        format: spec.format.unwrap_or(TimeFormat::Rfc3339),
        initial_value,
        lookback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hotmart_preset_needs_only_credentials() {
        let s = Sources::from_toml(DEFAULT_SOURCES).unwrap();
        let h = s.get("hotmart-sales").unwrap();
        assert_eq!(h.base_url, hotmart::PRODUCTION);
        assert_eq!(h.path, hotmart::SALES_PATH);
        assert_eq!(h.records_path, "items");
        assert_eq!(h.key.as_deref(), Some("purchase_transaction"));
        assert_eq!(h.page_size_param.as_deref(), Some("max_results"));
        assert_eq!(h.requests_per_minute, Some(500));
        let Auth::Oauth2ClientCredentials { token_url, .. } = &h.auth else {
            panic!("oauth2 expected")
        };
        assert_eq!(token_url, hotmart::TOKEN_URL);
        let w = h.window.as_ref().unwrap();
        assert_eq!(
            (w.start_param.as_str(), w.format),
            ("start_date", TimeFormat::EpochMillis)
        );
        assert_eq!(w.max_span, SignedDuration::from_hours(7 * 24));
        assert_eq!(w.lookback, SignedDuration::from_mins(30));
        // Columns are capped by default, and the cap is the source's to set.
        assert_eq!(h.flatten.max_columns, Some(DEFAULT_MAX_COLUMNS));
        let s = Sources::from_toml(
            "[source.m]\npreset = \"hotmart-sales\"\n[source.m.flatten]\nmax_columns = 50\n",
        )
        .unwrap();
        assert_eq!(s.get("m").unwrap().flatten.max_columns, Some(50));
        assert!(
            Sources::from_toml("[source.m]\npreset = \"hotmart-sales\"\nflatten.max_columns = 1\n")
                .is_err()
        );
    }

    #[test]
    fn a_base_url_override_serves_the_token_too() {
        let s = Sources::from_toml(
            "[source.h]\npreset = \"hotmart-sales\"\nbase_url = \"http://127.0.0.1:9/\"\n",
        )
        .unwrap();
        let h = s.get("h").unwrap();
        assert_eq!(h.base_url, "http://127.0.0.1:9");
        assert!(
            matches!(&h.auth, Auth::Oauth2ClientCredentials { token_url, .. } if token_url == hotmart::TOKEN_PATH)
        );
    }

    #[test]
    fn errors_name_the_source_and_field() {
        let e = Sources::from_toml("[source.x]\npreset = \"nope\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "source \"x\": preset: unknown preset \"nope\" (hotmart-sales)"
        );
        let e = Sources::from_toml(
            "[source.x]\nbase_url = \"http://a\"\nwindow = { lookback = \"ten\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("source \"x\": window.lookback: \"ten\""),
            "{e}"
        );
        let e = Sources::from_toml("[source.x]\nbase_url = \"http://a\"\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Sources::from_toml("[source.x]\npath = \"/a\"\n").unwrap_err();
        assert_eq!(e.to_string(), "source \"x\": base_url: required");
    }

    #[test]
    fn every_kind_parses_to_itself() {
        let fields = |kind: &str| match kind {
            "next_url" => ", path = \"next\"",
            "header_cursor" => ", header = \"X-Next-Cursor\"",
            "oauth2_client_credentials" => {
                ", token_url = \"/t\", client_id_env = \"I\", client_secret_env = \"S\""
            }
            "bearer" => ", token_env = \"T\"",
            "api_key" => ", header = \"X-Key\", key_env = \"K\"",
            "basic" => ", username_env = \"U\"",
            _ => "",
        };
        for kind in PAGINATION_KINDS {
            let toml = format!(
                "[source.s]\nbase_url = \"http://a\"\npagination = {{ kind = \"{kind}\"{} }}\n",
                fields(kind)
            );
            let s = Sources::from_toml(&toml).unwrap();
            assert_eq!(s.get("s").unwrap().pagination.kind(), *kind);
        }
        for kind in AUTH_KINDS {
            let toml = format!(
                "[source.s]\nbase_url = \"http://a\"\nauth = {{ kind = \"{kind}\"{} }}\n",
                fields(kind)
            );
            let s = Sources::from_toml(&toml).unwrap();
            assert_eq!(s.get("s").unwrap().auth.kind(), *kind);
        }
    }

    #[test]
    fn style_errors_name_the_field() {
        let e = |extra: &str| {
            Sources::from_toml(&format!("[source.x]\nbase_url = \"http://a\"\n{extra}\n"))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e(r#"auth = { kind = "api_key", key_env = "K" }"#),
            "source \"x\": auth: api_key needs either header (X-API-Key) or param (api_key), not both"
        );
        assert!(
            e(r#"auth = { kind = "api_key", header = "H", param = "p", key_env = "K" }"#)
                .contains("not both")
        );
        assert_eq!(
            e(r#"pagination = { kind = "next_url", path = "" }"#),
            "source \"x\": pagination: path must not be empty"
        );
        // Totals belong to page numbers and offsets; total_pages to page numbers only.
        assert!(
            e(r#"pagination = { kind = "offset", total_pages_path = "p" }"#)
                .contains("total_pages_path")
        );
        assert!(
            e(r#"pagination = { kind = "cursor", total_header = "X-Total-Count" }"#)
                .contains("total_header")
        );
        assert!(e(r#"auth = { kind = "oauth2_client_credentials", token_url = "/t", client_id_env = "I", client_secret_env = "S", client_auth = "query" }"#)
            .contains("query"));
    }

    #[test]
    fn incremental_cursors() {
        let parse = |inc: &str| {
            Sources::from_toml(&format!(
                "[source.x]\nbase_url = \"http://a\"\nincremental = {{ {inc} }}\n"
            ))
            .map(|s| s.get("x").unwrap().incremental.clone().unwrap())
            .map_err(|e| e.to_string())
        };
        let ids = parse(r#"cursor_path = "id", param = "since_id", type = "integer", lookback = 100, initial_value = "5""#)
            .unwrap();
        assert_eq!(ids.initial_value, Some(CursorValue::Int(5)));
        assert_eq!(ids.query_value(CursorValue::Int(1000)), "900");
        let t = parse(r#"cursor_path = "meta.updated", param = "since", format = "epoch_seconds", lookback = "1d""#)
            .unwrap();
        let kept = CursorValue::parse(CursorType::Timestamp, "2024-01-15T10:00:00Z").unwrap();
        assert_eq!(t.query_value(kept), "1705226400");
        for (bad, message) in [
            (
                r#"cursor_path = "id", param = "p", type = "integer", lookback = "1h""#,
                "does not fit type Integer",
            ),
            (
                r#"cursor_path = "id", param = "p", lookback = 5"#,
                "does not fit type Timestamp",
            ),
            (
                r#"cursor_path = "id", param = "p", lookback = "-1h""#,
                "must not be negative",
            ),
            (
                r#"cursor_path = "id", param = "p", initial_value = "yesterday""#,
                "incremental.initial_value: \"yesterday\" is not of type Timestamp",
            ),
            (r#"cursor_path = "", param = "p""#, "must not be empty"),
            (r#"param = "p""#, "cursor_path"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(message), "{bad}: {e}");
        }
        let e = Sources::from_toml(
            "[source.x]\nbase_url = \"http://a\"\nwindow = {}\nincremental = { cursor_path = \"id\", param = \"p\" }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn time_formats() {
        let t: Timestamp = "2024-01-15T10:00:00Z".parse().unwrap();
        assert_eq!(TimeFormat::EpochMillis.format(t), "1705312800000");
        assert_eq!(TimeFormat::EpochSeconds.format(t), "1705312800");
        assert_eq!(TimeFormat::Rfc3339.format(t), "2024-01-15T10:00:00Z");
    }
}

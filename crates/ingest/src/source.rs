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
    /// OAuth2 client credentials. The token request carries `grant_type=client_credentials`,
    /// `client_id` and `client_secret` (in the query string, as Hotmart documents, or in a form
    /// body) and `Authorization: Basic <basic>` — the `basic` value the provider issued, or
    /// base64(`client_id:client_secret`) when none is given.
    Oauth2ClientCredentials {
        /// Absolute, or a path on `base_url`.
        token_url: String,
        #[serde(default = "default_true")]
        params_in_query: bool,
        client_id_env: String,
        client_secret_env: String,
        #[serde(default)]
        basic_env: Option<String>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        token_env: String,
    },
    /// A key in a header (`X-API-Key: <key>`).
    ApiKey {
        header: String,
        key_env: String,
    },
    None,
}

fn default_true() -> bool {
    true
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
    /// `?page=1,2,…` until a page has fewer records than the page size.
    PageNumber {
        #[serde(default = "default_page_param")]
        param: String,
        #[serde(default = "default_first_page")]
        first: u64,
    },
    /// `?offset=0,N,2N…&limit=N` until a page has fewer records than the page size.
    Offset {
        #[serde(default = "default_offset_param")]
        offset_param: String,
    },
    /// RFC 8288 `Link: <…>; rel="next"`.
    LinkHeader,
    /// One request.
    None,
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
            params_in_query: true,
            client_id_env: "HOTMART_CLIENT_ID".into(),
            client_secret_env: "HOTMART_CLIENT_SECRET".into(),
            basic_env: Some("HOTMART_BASIC".into()),
        },
        (None, false) => Auth::None,
    };
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
        requests_per_minute: spec.requests_per_minute.or_else(|| hotmart.then_some(500)),
        timeout,
        gzip: spec.gzip.unwrap_or(false),
        write_empty: spec.write_empty.unwrap_or(false),
        max_bad_records: spec.max_bad_records.unwrap_or(100),
        flatten,
        name,
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
    fn time_formats() {
        let t: Timestamp = "2024-01-15T10:00:00Z".parse().unwrap();
        assert_eq!(TimeFormat::EpochMillis.format(t), "1705312800000");
        assert_eq!(TimeFormat::EpochSeconds.format(t), "1705312800");
        assert_eq!(TimeFormat::Rfc3339.format(t), "2024-01-15T10:00:00Z");
    }
}

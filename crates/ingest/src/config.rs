//! The ingest function's configuration, read once from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BUCKET` | (required) | the lake bucket |
//! | `INGEST_SOURCES` | built-in `hotmart-sales` | path of the sources TOML |
//! | `INGEST_SOURCES_TOML` | — | the sources TOML itself (when there is no file, as in the SAM template) |
//! | `RAW_PREFIX` | `raw/` | where CSV objects go (`raw/<source>/dt=…/…`) |
//! | `STATE_PREFIX` | `state/` | where watermarks go (`state/<source>.json`) |
//! | `PART_SIZE_MB` | `8` | multipart part size (5 … 512) |
//! | `API_CREDENTIALS_SECRET_ARN` | — | Secrets Manager JSON with the API credentials |
//!
//! Credentials otherwise come from the variables each source's `auth` names
//! (`HOTMART_CLIENT_ID`, `HOTMART_CLIENT_SECRET`, `HOTMART_BASIC` for the preset).
//!
//! ```
//! use sluice_ingest::Config;
//!
//! let c = Config::from_lookup(|k| (k == "BUCKET").then(|| "lake".to_owned())).unwrap();
//! assert_eq!((c.bucket.as_str(), c.layout.raw_source("s"), c.part_size), ("lake", "raw/s/".into(), 8 << 20));
//! assert!(c.sources.get("hotmart-sales").is_some());
//! ```

use sluice_edge::layout::{Area, Layout};

use crate::source::{DEFAULT_SOURCES, SourceError, Sources};

/// The prefixes the ingest writes under: `raw/` and `state/`.
pub const AREAS: [Area; 2] = [Area::Raw, Area::State];

/// Every variable [`Config::from_env`] reads (the infra template's test checks its
/// `Environment` against this list; a unit test checks this list against the code).
pub const ENV_VARS: &[&str] = &[
    "API_CREDENTIALS_SECRET_ARN",
    "BUCKET",
    "INGEST_SOURCES",
    "INGEST_SOURCES_TOML",
    "PART_SIZE_MB",
    "RAW_PREFIX",
    "STATE_PREFIX",
];

/// A configuration error, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
    #[error("sources {path}: {source}")]
    Sources { path: String, source: SourceError },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    pub sources: Sources,
    /// `RAW_PREFIX`, `STATE_PREFIX`.
    pub layout: Layout,
    pub part_size: usize,
    pub credentials_secret_arn: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let bucket = get("BUCKET").ok_or(ConfigError::Missing("BUCKET"))?;
        let sources = match get("INGEST_SOURCES") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                    var: "INGEST_SOURCES",
                    message: format!("{path}: {e}"),
                })?;
                Sources::from_toml(&text).map_err(|source| ConfigError::Sources { path, source })?
            }
            None => match get("INGEST_SOURCES_TOML") {
                Some(text) => Sources::from_toml(&text).map_err(|source| ConfigError::Sources {
                    path: "(INGEST_SOURCES_TOML)".into(),
                    source,
                })?,
                None => Sources::from_toml(DEFAULT_SOURCES).expect("the built-in sources parse"),
            },
        };
        let part_mb: usize = match get("PART_SIZE_MB") {
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| (5..=512).contains(n))
                .ok_or_else(|| ConfigError::Invalid {
                    var: "PART_SIZE_MB",
                    message: format!("{v:?} is not a number from 5 to 512"),
                })?,
            None => 8,
        };
        Ok(Config {
            bucket,
            sources,
            layout: Layout::from_lookup(&AREAS, get),
            part_size: part_mb << 20,
            credentials_secret_arn: get("API_CREDENTIALS_SECRET_ARN"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_variable() {
        let e = Config::from_lookup(|_| None).unwrap_err();
        assert_eq!(e.to_string(), "BUCKET is not set");
        let e = Config::from_lookup(|k| match k {
            "BUCKET" => Some("b".into()),
            "PART_SIZE_MB" => Some("4".into()),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "PART_SIZE_MB: \"4\" is not a number from 5 to 512"
        );
        let c = Config::from_lookup(|k| match k {
            "BUCKET" => Some("b".into()),
            "RAW_PREFIX" => Some("landing".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.layout.prefix(Area::Raw), "landing/");
        let c = Config::from_lookup(|k| match k {
            "BUCKET" => Some("b".into()),
            "INGEST_SOURCES_TOML" => Some(
                "[source.hotmart-sales]\npreset = \"hotmart-sales\"\nenvironment = \"sandbox\"\n"
                    .into(),
            ),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            c.sources.get("hotmart-sales").unwrap().base_url,
            crate::source::hotmart::SANDBOX
        );
    }

    /// The variables the function reads: the infra template must set these names and no others.
    fn names_read() -> std::collections::BTreeSet<String> {
        let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let _ = Config::from_lookup(|k| {
            seen.borrow_mut().insert(k.to_owned());
            (k == "BUCKET").then(|| "b".to_owned())
        });
        seen.into_inner()
    }

    #[test]
    fn env_var_names() {
        assert_eq!(
            ENV_VARS
                .iter()
                .map(|s| s.to_string())
                .collect::<std::collections::BTreeSet<_>>(),
            names_read()
        );
    }
}

//! Typed configuration of the API hosts (`sluice-api`, in a container or on Lambda), read once.
//!
//! ```
//! use sluice_api::config::Config;
//!
//! let env = [("BUCKET", "lake"), ("API_ERROR_INPUT", "omit")];
//! let c = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap();
//! assert_eq!((c.bucket.as_deref(), c.layout.lake_dataset("d"), c.port), (Some("lake"), "lake/d/".into(), 8080));
//! assert_eq!(c.settings.error_input, sluice_api::ErrorInput::Omit);
//! ```

use std::path::PathBuf;

use sluice_edge::layout::{Area, Layout};

use crate::{DEFAULT_MAX_BODY_BYTES, ErrorInput, Settings};

/// The prefixes the API writes under: `lake/`, `rejected/`, `idempotency/`.
pub const AREAS: [Area; 3] = [Area::Lake, Area::Rejected, Area::Idempotency];

/// Every variable [`Config::from_env`] reads (the README's reference is checked against it).
pub const ENV_VARS: &[&str] = &[
    "API_ERROR_INPUT",
    "API_MAX_BODY_BYTES",
    "API_VALIDATE_ONLY",
    "BUCKET",
    "DATASETS",
    "IDEMPOTENCY_PREFIX",
    "LAKE_PREFIX",
    "PORT",
    "REJECTED_PREFIX",
];

/// A variable with a value the API cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `None` only with `API_VALIDATE_ONLY=true`: validate and answer, store nothing.
    pub bucket: Option<String>,
    /// `LAKE_PREFIX`, `REJECTED_PREFIX`, `IDEMPOTENCY_PREFIX` (the claims of
    /// `Idempotency-Key`s: expire them with a lifecycle rule).
    pub layout: Layout,
    /// The dataset files' directory.
    pub datasets: PathBuf,
    /// The plain server's port (on Lambda, unused).
    pub port: u16,
    pub settings: Settings,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let invalid = |var: &'static str, message: String| ConfigError { var, message };
        let validate_only = match get("API_VALIDATE_ONLY").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => {
                return Err(invalid(
                    "API_VALIDATE_ONLY",
                    format!("{v:?}: true or false"),
                ));
            }
        };
        let bucket = get("BUCKET");
        if bucket.is_none() && !validate_only {
            return Err(invalid(
                "BUCKET",
                "is not set (or set API_VALIDATE_ONLY=true)".into(),
            ));
        }
        let error_input = match get("API_ERROR_INPUT").as_deref() {
            None | Some("include") => ErrorInput::Include,
            Some("omit") => ErrorInput::Omit,
            Some(v) => {
                return Err(invalid(
                    "API_ERROR_INPUT",
                    format!("{v:?}: include or omit"),
                ));
            }
        };
        let number = |var: &'static str, default: usize| match get(var) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(var, format!("{v:?} is not a positive number"))),
        };
        let port = number("PORT", 8080)?;
        let port = u16::try_from(port).map_err(|_| invalid("PORT", format!("{port} > 65535")))?;
        Ok(Config {
            bucket: bucket.filter(|_| !validate_only),
            layout: Layout::from_lookup(&AREAS, get),
            datasets: get("DATASETS").unwrap_or_else(|| "datasets".into()).into(),
            port,
            settings: Settings {
                max_body_bytes: number("API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?,
                error_input,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn errors_name_the_variable() {
        let e = cfg(&[]).unwrap_err().to_string();
        assert_eq!(e, "BUCKET: is not set (or set API_VALIDATE_ONLY=true)");
        let e = cfg(&[("BUCKET", "b"), ("PORT", "70000")]).unwrap_err();
        assert_eq!(e.to_string(), "PORT: 70000 > 65535");
        let e = cfg(&[("BUCKET", "b"), ("API_ERROR_INPUT", "hide")]).unwrap_err();
        assert_eq!(e.to_string(), "API_ERROR_INPUT: \"hide\": include or omit");
        let c = cfg(&[("API_VALIDATE_ONLY", "true"), ("LAKE_PREFIX", "l")]).unwrap();
        assert_eq!((c.bucket, c.layout.prefix(Area::Lake)), (None, "l/"));
    }
}

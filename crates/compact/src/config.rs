//! The compaction function's configuration, read once.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `BUCKET` | the lake bucket | required |
//! | `DATASETS` | the dataset files' directory | `datasets` |
//! | `LAKE_PREFIX` | where the lake is in the bucket | `lake/` |
//! | `COMPACT_TARGET_MB` | merged objects' size | 128 |
//! | `COMPACT_GRACE_MINUTES` | how long replaced objects stay readable | 60 |
//!
//! ```
//! let c = sluice_compact::config::Config::from_lookup(|k| (k == "BUCKET").then(|| "lake".to_owned())).unwrap();
//! assert_eq!((c.bucket.as_str(), c.settings.target_bytes), ("lake", 128 << 20));
//! ```

use std::path::PathBuf;

use jiff::SignedDuration;
use sluice_edge::layout::{Area, Layout};

use crate::plan::Settings;

/// The variables a compaction reads.
pub const AREAS: [Area; 1] = [Area::Lake];

#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    pub datasets: PathBuf,
    pub layout: Layout,
    pub settings: Settings,
}

/// A variable that is missing or wrong.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let positive = |var: &'static str, default: u64| match get(var) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError {
                    var,
                    message: format!("{v:?} is not a positive number"),
                }),
        };
        let bucket = get("BUCKET").ok_or(ConfigError {
            var: "BUCKET",
            message: "is not set".into(),
        })?;
        let minutes = positive("COMPACT_GRACE_MINUTES", 60)?;
        Ok(Config {
            bucket,
            datasets: get("DATASETS").unwrap_or_else(|| "datasets".into()).into(),
            layout: Layout::from_lookup(&AREAS, get),
            settings: Settings {
                target_bytes: positive("COMPACT_TARGET_MB", 128)? << 20,
                grace: SignedDuration::from_mins(minutes as i64),
            },
        })
    }
}

/// The variables [`Config::from_lookup`] reads (the template test checks the function sets no
/// other).
pub const ENV_VARS: &[&str] = &[
    "BUCKET",
    "COMPACT_GRACE_MINUTES",
    "COMPACT_TARGET_MB",
    "DATASETS",
    "LAKE_PREFIX",
];

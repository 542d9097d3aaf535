//! The collection API: records posted as JSON are validated against a dataset declared in a
//! file, and stored in the S3 lake as Parquet for Athena, before the client hears `201`.
//!
//! - [`dataset`]: the dataset files (`datasets/*.toml`).
//! - [`validate`]: strict validation, with pydantic v2's error types and locations.
//! - [`lake`]: the Arrow schema, the Parquet bytes, the object keys.
//! - [`openapi`]: the OpenAPI 3.1 and 3.0 documents, from the datasets.
//! - [`router`]: the routes, for any host.
//! - [`docs`]: the docs page (Swagger UI, compiled in).
//!
//! ```
//! use serde_json::json;
//! use sluice_api::{Dataset, validate};
//!
//! let unicorns = Dataset::from_path("../../datasets/unicorns.toml".as_ref()).unwrap();
//! let problems = validate::record(&unicorns, &json!({"name": ""}), &["body".into()]).unwrap_err();
//! assert_eq!(problems[0].ty, "string_too_short");
//! ```

pub mod catalog;
pub mod config;
pub mod dataset;
pub mod docs;
pub mod lake;
pub mod openapi;
mod routes;
mod store;
pub mod validate;

pub use dataset::{Dataset, DatasetError, Datasets, Field, Format, Kind, Presence};
pub use routes::router;
pub use store::{IdOrigin, LakeStore, StoreError};

/// AWS Lambda's request payload limit: bodies above it get 413 before they are read.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// Whether a 422's problems quote the offending values (`input`); they can hold PII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorInput {
    /// As FastAPI does.
    #[default]
    Include,
    Omit,
}

/// How the API answers.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: usize,
    pub error_input: ErrorInput,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            error_input: ErrorInput::default(),
        }
    }
}

/// A batch item that failed validation, kept with its problems.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejected {
    /// Its place in the batch.
    pub index: usize,
    /// As posted.
    pub item: serde_json::Value,
    pub problems: Vec<validate::Problem>,
}

/// The API: its datasets, its lake (`None`: validate and answer, store nothing) and settings.
#[derive(Debug, Clone)]
pub struct Api {
    pub datasets: Datasets,
    pub store: Option<LakeStore>,
    pub settings: Settings,
}

impl Api {
    /// The API `config` describes, as the `sluice-api` binary builds it: the datasets read from
    /// their directory, and the lake over `s3` (ignored with no bucket: validate only).
    ///
    /// ```
    /// let env = [("API_VALIDATE_ONLY", "true"), ("DATASETS", "../../datasets")];
    /// let config = sluice_api::config::Config::from_lookup(|k| {
    ///     env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    /// })
    /// .unwrap();
    /// let api = sluice_api::Api::from_config(&config, None).unwrap();
    /// assert!(api.store.is_none() && api.datasets.get("unicorns").is_some());
    /// ```
    pub fn from_config(
        config: &config::Config,
        s3: Option<aws_sdk_s3::Client>,
    ) -> Result<Api, DatasetError> {
        let datasets = Datasets::from_dir(&config.datasets)?;
        let store = config
            .bucket
            .as_ref()
            .zip(s3)
            .map(|(bucket, client)| LakeStore {
                client,
                bucket: bucket.clone(),
                layout: config.layout.clone(),
            });
        Ok(Api {
            datasets,
            store,
            settings: config.settings.clone(),
        })
    }
}

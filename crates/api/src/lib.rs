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

pub mod config;
pub mod dataset;
pub mod docs;
pub mod lake;
pub mod openapi;
mod routes;
pub mod validate;

pub use dataset::{Dataset, DatasetError, Datasets, Field, Format, Kind, Presence};
pub use routes::router;

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

/// Where accepted records go.
#[derive(Debug, Clone)]
pub struct LakeStore {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    /// `lake/`
    pub lake_prefix: String,
    /// `rejected/`: the bad items of partial batches.
    pub rejected_prefix: String,
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
                lake_prefix: config.lake_prefix.clone(),
                rejected_prefix: config.rejected_prefix.clone(),
            });
        Ok(Api {
            datasets,
            store,
            settings: config.settings.clone(),
        })
    }
}

/// Why records were not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Lake(#[from] lake::LakeError),
    /// The object of this event id exists and came from another request body.
    #[error(
        "s3://{bucket}/{key} holds another request's records (Idempotency-Key {event_id:?} used again)"
    )]
    KeyReused {
        bucket: String,
        key: String,
        event_id: String,
    },
    #[error("{op} s3://{bucket}/{key}: {message}")]
    S3 {
        /// `PUT`, or `HEAD` when the key was taken and the stored object is compared.
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
}

/// A failed HEAD, named: its response has no body, so S3 gives a status and no error code.
fn head_error(
    e: &aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::head_object::HeadObjectError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
) -> String {
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(403) => "403 Forbidden: AccessDenied (HEAD needs s3:GetObject on the key)".to_owned(),
        _ => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

/// Which of the API's two prefixes an object goes under.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Accepted records, Parquet.
    Lake,
    /// A partial batch's bad items, JSON Lines.
    Rejected,
}

impl Api {
    /// The key of this request's object at `place`, and the store (`None`: validate only).
    fn place(
        &self,
        place: Place,
        dataset: &Dataset,
        stamp: &lake::Stamp,
    ) -> (String, Option<&LakeStore>) {
        let store = self.store.as_ref();
        let (prefix, extension) = match place {
            Place::Lake => (store.map_or("lake/", |s| s.lake_prefix.as_str()), "parquet"),
            Place::Rejected => (
                store.map_or("rejected/", |s| s.rejected_prefix.as_str()),
                "jsonl",
            ),
        };
        let key = lake::object_key(
            prefix,
            &dataset.name,
            stamp.received_at,
            &stamp.event_id,
            extension,
        );
        (key, store)
    }

    /// Writes `records` as one Parquet object and returns its key. The key comes from the
    /// event id, and the write is conditional (`If-None-Match: *`): a retried request with the
    /// same `Idempotency-Key` finds its object there and writes nothing twice.
    pub async fn store(
        &self,
        dataset: &Dataset,
        records: &[serde_json::Value],
        stamp: &lake::Stamp,
    ) -> Result<String, StoreError> {
        let (key, store) = self.place(Place::Lake, dataset, stamp);
        let Some(store) = store else {
            return Ok(key);
        };
        let rows: Vec<_> = records
            .iter()
            .map(|r| lake::row(dataset, r, stamp))
            .collect();
        let bytes = lake::parquet(dataset, &rows)?;
        put_once(store, key, "application/vnd.apache.parquet", bytes, stamp).await
    }

    /// Writes the bad items of a partial batch as JSON Lines (`{"index", "item", "problems"}`,
    /// each with the request's `event_id` and `received_at`) under
    /// `rejected/<dataset>/dt=…/<event id>.jsonl`, conditionally as [`Api::store`] does.
    pub async fn set_aside(
        &self,
        dataset: &Dataset,
        rejected: &[Rejected],
        stamp: &lake::Stamp,
    ) -> Result<String, StoreError> {
        let (key, store) = self.place(Place::Rejected, dataset, stamp);
        let Some(store) = store else {
            return Ok(key);
        };
        let mut bytes = Vec::new();
        for r in rejected {
            let mut line = serde_json::to_value(r).unwrap_or_default();
            // The item is kept whole; the problems need not repeat its values.
            for p in line["problems"].as_array_mut().into_iter().flatten() {
                if let Some(o) = p.as_object_mut() {
                    o.remove("input");
                }
            }
            line["event_id"] = serde_json::json!(stamp.event_id);
            line["received_at"] = serde_json::json!(stamp.received_at.to_string());
            bytes.extend_from_slice(line.to_string().as_bytes());
            bytes.push(b'\n');
        }
        put_once(store, key, "application/x-ndjson", bytes, stamp).await
    }
}

/// The metadata key holding the SHA-256 of the request an object came from.
const BODY_SHA256: &str = "request-sha256";

/// PUT `key` unless it exists (`If-None-Match: *`): a retried request finds its object there,
/// and the object's `request-sha256` metadata tells a retry from another body under a reused key.
async fn put_once(
    store: &LakeStore,
    key: String,
    content_type: &str,
    bytes: Vec<u8>,
    stamp: &lake::Stamp,
) -> Result<String, StoreError> {
    let put = store
        .client
        .put_object()
        .bucket(&store.bucket)
        .key(&key)
        .content_type(content_type)
        .metadata(BODY_SHA256, &stamp.body_sha256)
        .if_none_match("*")
        .body(bytes.into())
        .send()
        .await;
    let failed = |op: &'static str, message: String| StoreError::S3 {
        op,
        bucket: store.bucket.clone(),
        key: key.clone(),
        message,
    };
    match put {
        Ok(_) => Ok(key),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
            let head = store
                .client
                .head_object()
                .bucket(&store.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| failed("HEAD", head_error(&e)))?;
            let stored = head.metadata().and_then(|m| m.get(BODY_SHA256));
            if stored != Some(&stamp.body_sha256) {
                return Err(StoreError::KeyReused {
                    bucket: store.bucket.clone(),
                    key,
                    event_id: stamp.event_id.clone(),
                });
            }
            tracing::info!(%key, "already stored (a retried request)");
            Ok(key)
        }
        Err(e) => Err(failed(
            "PUT",
            aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        )),
    }
}

//! Writing a request's objects to S3, once.
//!
//! Every write is conditional (`If-None-Match: *`), so an object is never overwritten. A request
//! with an `Idempotency-Key` first **claims** its key: a small object
//! `idempotency/<dataset>/<key>.json` holding the request body's SHA-256 and the time the request
//! was first received, written conditionally too. A retry finds the claim: another body answers
//! 409, the same body takes the first request's time, so its objects get the same keys (the `dt=`
//! partition comes from that time, even after midnight UTC) and their writes find the objects
//! there. Claims expire with the bucket's lifecycle rule (7 days in the template); the API never
//! reads the lake itself.

use aws_sdk_s3::error::DisplayErrorContext;
use serde::{Deserialize, Serialize};
use sluice_edge::layout::{Layout, utc_day};

use crate::dataset::Dataset;
use crate::lake::{self, Stamp};
use crate::{Api, Rejected};

/// Where accepted records go.
#[derive(Debug, Clone)]
pub struct LakeStore {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    /// `lake/`; `rejected/`, the bad items of partial batches; `idempotency/`, the claims of
    /// `Idempotency-Key`s.
    pub layout: Layout,
}

impl LakeStore {
    /// A store in `bucket` under the default prefixes (`lake/`, `rejected/`, `idempotency/`).
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        LakeStore {
            client,
            bucket: bucket.into(),
            layout: Layout::default(),
        }
    }
}

/// Why records were not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Lake(#[from] lake::LakeError),
    /// The `Idempotency-Key` was claimed by a request with another body.
    #[error(
        "s3://{bucket}/{key}: Idempotency-Key {event_id:?} was claimed by a request with another body"
    )]
    KeyReused {
        bucket: String,
        key: String,
        event_id: String,
    },
    #[error("{op} s3://{bucket}/{key}: {message}")]
    S3 {
        /// `PUT`, or `GET` of a claim.
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
}

/// Where an event id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdOrigin {
    /// The client's `Idempotency-Key`: it may come again, in a retry.
    Client,
    /// A UUIDv7 of ours: unique, nothing to claim.
    Generated,
}

/// A claim's content. No values from the body: only its digest.
#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    request_sha256: String,
    /// RFC 3339, UTC.
    received_at: String,
}

/// The metadata key holding the SHA-256 of the request an object came from.
const BODY_SHA256: &str = "request-sha256";

/// Which of the API's prefixes an object goes under.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Accepted records, Parquet.
    Lake,
    /// A partial batch's bad items, JSON Lines.
    Rejected,
}

impl Api {
    /// Claims `stamp`'s event id when the client chose it, and returns the stamp to store
    /// with: this one the first time, the first request's time on a retry. `KeyReused` when the
    /// key was claimed with another body.
    pub async fn claim(
        &self,
        dataset: &Dataset,
        stamp: Stamp,
        origin: IdOrigin,
    ) -> Result<Stamp, StoreError> {
        let Some(store) = self.store.as_ref().filter(|_| origin == IdOrigin::Client) else {
            return Ok(stamp);
        };
        let key = store.layout.claim(&dataset.name, &stamp.event_id);
        let claim = Claim {
            request_sha256: stamp.body_sha256.clone(),
            received_at: stamp.received_at.to_string(),
        };
        let body = serde_json::to_vec(&claim).unwrap_or_default();
        let failed = |op, message| s3_error(store, &key, op, message);
        match put_if_absent(store, &key, "application/json", body, &stamp).await {
            Ok(Written::Now) => return Ok(stamp),
            Ok(Written::Before) => {}
            Err(e) => return Err(failed("PUT", e)),
        }
        let got = store
            .client
            .get_object()
            .bucket(&store.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| failed("GET", DisplayErrorContext(&e).to_string()))?;
        let bytes = got
            .body
            .collect()
            .await
            .map_err(|e| failed("GET", e.to_string()))?
            .into_bytes();
        let first: Claim = serde_json::from_slice(&bytes)
            .map_err(|e| failed("GET", format!("not a claim: {e}")))?;
        if first.request_sha256 != stamp.body_sha256 {
            return Err(StoreError::KeyReused {
                bucket: store.bucket.clone(),
                key,
                event_id: stamp.event_id,
            });
        }
        let received_at = first
            .received_at
            .parse()
            .map_err(|e| failed("GET", format!("received_at: {e}")))?;
        tracing::info!(%key, "a retried request: stored as first received");
        Ok(Stamp {
            received_at,
            ..stamp
        })
    }

    /// Writes `records` as one Parquet object and returns its key,
    /// `lake/<dataset>/dt=YYYY-MM-DD/<event id>.parquet`. The write is conditional: an object
    /// already there (a retry's) stays as it is.
    pub async fn store(
        &self,
        dataset: &Dataset,
        records: &[serde_json::Value],
        stamp: &Stamp,
    ) -> Result<String, StoreError> {
        let (key, store) = self.place(Place::Lake, dataset, stamp);
        let Some(store) = store else {
            return Ok(key);
        };
        let bytes = lake::parquet(dataset, records, stamp)?;
        put_if_absent(store, &key, "application/vnd.apache.parquet", bytes, stamp)
            .await
            .map_err(|e| s3_error(store, &key, "PUT", e))?;
        Ok(key)
    }

    /// Writes the bad items of a partial batch as JSON Lines (`{"index", "item", "problems"}`,
    /// each with the request's `event_id` and `received_at`) under
    /// `rejected/<dataset>/dt=…/<event id>.jsonl`, conditionally as [`Api::store`] does.
    pub async fn set_aside(
        &self,
        dataset: &Dataset,
        rejected: &[Rejected],
        stamp: &Stamp,
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
        put_if_absent(store, &key, "application/x-ndjson", bytes, stamp)
            .await
            .map_err(|e| s3_error(store, &key, "PUT", e))?;
        Ok(key)
    }

    /// The key of this request's object at `place`, and the store (`None`: validate only).
    fn place(
        &self,
        place: Place,
        dataset: &Dataset,
        stamp: &Stamp,
    ) -> (String, Option<&LakeStore>) {
        let store = self.store.as_ref();
        let default = Layout::default();
        let layout = store.map_or(&default, |s| &s.layout);
        let (name, day, id) = (&dataset.name, utc_day(stamp.received_at), &stamp.event_id);
        let key = match place {
            Place::Lake => layout.lake_object(name, day, id),
            Place::Rejected => layout.rejected_object(name, day, id),
        };
        (key, store)
    }
}

fn s3_error(store: &LakeStore, key: &str, op: &'static str, message: String) -> StoreError {
    StoreError::S3 {
        op,
        bucket: store.bucket.clone(),
        key: key.to_owned(),
        message,
    }
}

/// Whether a conditional write wrote.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    Now,
    /// The key existed (`412 Precondition Failed`): nothing was written.
    Before,
}

/// PUT `key` unless it exists (`If-None-Match: *`), with the request's digest as metadata.
async fn put_if_absent(
    store: &LakeStore,
    key: &str,
    content_type: &str,
    bytes: Vec<u8>,
    stamp: &Stamp,
) -> Result<Written, String> {
    let put = store
        .client
        .put_object()
        .bucket(&store.bucket)
        .key(key)
        .content_type(content_type)
        .metadata(BODY_SHA256, &stamp.body_sha256)
        .if_none_match("*")
        .body(bytes.into())
        .send()
        .await;
    match put {
        Ok(_) => Ok(Written::Now),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
            Ok(Written::Before)
        }
        Err(e) => Err(DisplayErrorContext(&e).to_string()),
    }
}

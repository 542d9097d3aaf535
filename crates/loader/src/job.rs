//! One attempt at one object: the object pinned to the version the attempt's first read saw,
//! its ledger identity, and what the steps of the attempt share.

use std::io;

use sluice_transform::{Mapping, RowContext};

use crate::error::{Error, Fail};
use crate::event::ObjectRef;
use crate::ledger;
use crate::prepare::Prepared;
use crate::rows::Rules;
use crate::store::{ObjectMeta, Store};

/// One attempt at one object: what each of its steps needs.
#[derive(Debug)]
pub(crate) struct Job<'a, S> {
    pub store: &'a S,
    /// The object, its version pinned to the one the attempt's first read saw.
    pub object: ObjectRef,
    /// What the ledger knows the object by: the version id, else the ETag, else `-`.
    pub version: String,
    pub mapping: &'a Mapping,
    /// The target table, `schema.name`: part of the ledger's identity.
    pub target: String,
    /// Rows read to guess the types of new columns; `None`: the whole object.
    pub infer_rows: Option<u64>,
}

impl<S: Store> Job<'_, S> {
    /// Reads the object again: the version the first read saw, where the bucket has versions.
    pub(crate) async fn open_again(&self) -> Result<Box<dyn io::Read + Send>, Fail> {
        let o = &self.object;
        let (_, raw) = self
            .store
            .open(&o.bucket, &o.key, o.version_id.as_deref())
            .await?;
        Ok(raw)
    }

    pub(crate) fn entry(&self) -> ledger::Entry<'_> {
        let o = &self.object;
        ledger::Entry {
            bucket: &o.bucket,
            key: &o.key,
            version: &self.version,
            etag: o.etag.as_deref(),
            version_id: o.version_id.as_deref(),
            sequencer: o.sequencer.as_deref(),
            target: &self.target,
        }
    }
}

/// The attempt's job: the object pinned to the version its first read saw.
pub(crate) fn job<'a, S>(
    store: &'a S,
    object: &ObjectRef,
    meta: &ObjectMeta,
    mapping: &'a Mapping,
    infer_rows: Option<u64>,
) -> Job<'a, S> {
    let object = ObjectRef {
        version_id: meta.version_id.clone().or(object.version_id.clone()),
        etag: meta.etag.clone().or(object.etag.clone()),
        ..object.clone()
    };
    let version = object
        .version_id
        .clone()
        .or(object.etag.clone())
        .unwrap_or_else(|| "-".to_owned());
    Job {
        store,
        object,
        version,
        target: mapping.table.to_string(),
        mapping,
        infer_rows,
    }
}

/// What the rows must satisfy. A hashed column needs a salt: unsalted, the hash of an e-mail
/// is a dictionary look-up.
pub(crate) fn rules(
    prepared: Prepared,
    header: Vec<String>,
    ctx: RowContext,
) -> Result<Rules, Fail> {
    if let Some(column) = prepared.bound.hashed_column()
        && ctx.salt.is_empty()
    {
        return Err(Fail::Permanent(Error::NoSalt {
            column: column.to_owned(),
        }));
    }
    Ok(Rules {
        checks: prepared.checks,
        header,
        bound: prepared.bound,
        frozen: prepared.frozen,
        guessed: prepared.guessed,
        ctx,
    })
}

/// Runs blocking work (reading and parsing the object) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Fail::Permanent(Error::Reader(format!("reader task failed: {e}"))))
}

//! What a load reports: row counts, the object's status and the path its rows took.

use serde::Serialize;

use crate::error::LoadError;
use crate::event::ObjectRef;

/// Row counts of a load. Always: `rows_read = inserted + updated + unchanged + rejected +
/// duplicates`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    pub rows_read: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Rows whose key existed with identical values, or held back by the ordering guard.
    pub unchanged: u64,
    pub rejected: u64,
    /// Rows superseded by a later row with the same key in the same file.
    pub duplicates: u64,
}

impl std::ops::AddAssign for RowCounts {
    fn add_assign(&mut self, o: Self) {
        self.rows_read += o.rows_read;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.rejected += o.rejected;
        self.duplicates += o.duplicates;
    }
}

/// What became of an object that did not fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectStatus {
    /// Its rows are in the table and the ledger knows it (an empty object loads nothing).
    #[default]
    Loaded,
    /// The ledger had this version for this target already (a redelivered event).
    Skipped,
    /// The key is not a loader key (`<raw prefix><source>/…(.csv|.csv.gz)`).
    Ignored,
}

/// How the rows went into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadPath {
    /// New keys, `COPY`ed straight into the table.
    Direct,
    /// `COPY` into a staging table, then one upsert.
    Staged,
    /// Keys above the table's greatest `COPY`ed straight into the table, the rest staged and
    /// upserted.
    Split,
}

/// What happened to one object.
///
/// ```
/// use sluice_loader::{ObjectStatus, ObjectSummary};
///
/// let s = ObjectSummary { status: ObjectStatus::Skipped, ..ObjectSummary::default() };
/// assert_eq!(serde_json::to_value(&s).unwrap()["status"], "skipped");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectSummary {
    pub bucket: String,
    pub key: String,
    /// Version id, else ETag: what the ledger knows the object by.
    pub version: String,
    pub source: String,
    pub table: String,
    pub status: ObjectStatus,
    #[serde(flatten)]
    pub rows: RowCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_key: Option<String>,
    pub attempts: u32,
    pub duration_ms: u64,
    /// `None` when no row was sent (an empty object, or a header only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<LoadPath>,
    /// Rows `COPY`ed straight into the table: every inserted row on the direct path, the new
    /// keys above the table's greatest on a split.
    pub direct_rows: u64,
    /// Rows never sent: read back, the table held them unchanged (a lookback re-fetch). They
    /// are counted as `unchanged`, or as `duplicates` where a later row with the same key
    /// superseded them.
    pub held_rows: u64,
    /// Time spent reading, transforming and `COPY`ing (in parallel).
    pub copy_ms: u64,
    /// Time spent in the upsert statement.
    pub upsert_ms: u64,
}

/// The span every event of one object's load is logged in.
pub(crate) fn object_span(object: &ObjectRef) -> tracing::Span {
    tracing::info_span!("object", bucket = %object.bucket, key = %object.key,
        version = tracing::field::Empty)
}

/// Logs how an object's load ended (in its span).
pub(crate) async fn logged(
    work: impl Future<Output = Result<ObjectSummary, LoadError>>,
) -> Result<ObjectSummary, LoadError> {
    let result = work.await;
    match &result {
        Ok(s) => tracing::info!(status = ?s.status, rows_read = s.rows.rows_read,
            inserted = s.rows.inserted, updated = s.rows.updated, unchanged = s.rows.unchanged,
            rejected = s.rows.rejected, duplicates = s.rows.duplicates,
            duration_ms = s.duration_ms, "object done"),
        Err(e) => tracing::error!(retryable = e.is_retryable(), error = %e.error,
            attempts = e.attempts, "object failed"),
    }
    result
}

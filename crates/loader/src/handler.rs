//! The invocation: every object of the event, one summary, and errors Lambda can tell apart.

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use sluice_edge::Failure;

use crate::event::objects;
use crate::load::Loader;
use crate::store::Store;
use crate::summary::{ObjectStatus, ObjectSummary, RowCounts};

/// The response of one invocation (and its one structured log line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct InvocationSummary {
    pub objects: usize,
    pub loaded: usize,
    /// Object versions loaded before (redelivered events).
    pub skipped: usize,
    /// Keys outside `<raw prefix><source>/…(.csv|.csv.gz)`.
    pub ignored: usize,
    pub failed: usize,
    #[serde(flatten)]
    pub rows: RowCounts,
    pub duration_ms: u64,
    pub results: Vec<ObjectSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl InvocationSummary {
    fn add(&mut self, s: ObjectSummary) {
        match s.status {
            ObjectStatus::Loaded => self.loaded += 1,
            ObjectStatus::Skipped => self.skipped += 1,
            ObjectStatus::Ignored => self.ignored += 1,
        }
        self.rows += s.rows;
        self.results.push(s);
    }
}

/// A failed invocation: retryable if every failure may pass on a later try; with the summary of
/// what did load before (those objects are in the ledger and will be skipped).
pub type HandlerError = sluice_edge::HandlerError<InvocationSummary>;

/// Loads every object the event names, in order. Objects that fail don't stop the others; the
/// invocation then fails (retryable only if every failure is), and Lambda's retry skips what
/// already loaded.
pub async fn handle<S: Store>(
    event: &Value,
    loader: &Loader,
    store: &S,
) -> Result<InvocationSummary, HandlerError> {
    let started = Instant::now();
    let objects =
        objects(event).map_err(|e| HandlerError::new(e.to_string(), Failure::Permanent))?;
    let mut summary = InvocationSummary {
        objects: objects.len(),
        ..InvocationSummary::default()
    };
    let mut retryable = true;
    for o in &objects {
        match loader.load(store, o).await {
            Ok(s) => summary.add(s),
            Err(e) => {
                retryable &= e.is_retryable();
                summary.failed += 1;
                summary.errors.push(e.to_string());
            }
        }
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    if summary.failed > 0 {
        return Err(HandlerError {
            message: format!(
                "{} of {} objects failed: {}",
                summary.failed,
                summary.objects,
                summary.errors.join(" | ")
            ),
            kind: Failure::when(retryable),
            summary: Some(Box::new(summary)),
        });
    }
    Ok(summary)
}

/// One CloudWatch embedded-metric-format line for an invocation.
pub fn emf_line(function: &str, s: &InvocationSummary) -> Value {
    sluice_edge::emf_line(
        function,
        &[
            ("Objects", s.objects as u64, "Count"),
            ("ObjectsFailed", s.failed as u64, "Count"),
            ("ObjectsSkipped", s.skipped as u64, "Count"),
            ("RowsRead", s.rows.rows_read, "Count"),
            ("RowsInserted", s.rows.inserted, "Count"),
            ("RowsUpdated", s.rows.updated, "Count"),
            ("RowsUnchanged", s.rows.unchanged, "Count"),
            ("RowsRejected", s.rows.rejected, "Count"),
            ("RowsDuplicate", s.rows.duplicates, "Count"),
            ("DurationMs", s.duration_ms, "Milliseconds"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_carries_the_counts() {
        let s = InvocationSummary {
            objects: 2,
            rows: RowCounts {
                rows_read: 10,
                inserted: 7,
                rejected: 3,
                ..RowCounts::default()
            },
            ..InvocationSummary::default()
        };
        let line = emf_line("loader", &s);
        assert_eq!(line["Function"], "loader");
        assert_eq!(
            (line["RowsRead"].as_u64(), line["RowsRejected"].as_u64()),
            (Some(10), Some(3))
        );
        // The summary's counts stay flat in its JSON.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            (json["rows_read"].as_u64(), json["inserted"].as_u64()),
            (Some(10), Some(7))
        );
    }
}

//! Events in, runs out: the EventBridge scheduled event, `{}`, custom input without
//! `detail-type` (`{"source": "hotmart-sales"}`), and a backfill `{"source", "start", "end"}`.
//! Parsed from plain JSON rather than `aws_lambda_events`' `EventBridgeEvent`, which rejects
//! input without `detail-type` — the shape a console test or a custom rule input sends.
//!
//! ```
//! use serde_json::json;
//! use sluice_ingest::{Request, parse_event};
//!
//! assert_eq!(parse_event(&json!({})).unwrap(), Request::Scheduled { sources: None });
//! let scheduled = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
//! assert_eq!(parse_event(&scheduled).unwrap(), Request::Scheduled { sources: None });
//! let one = json!({"source": "hotmart-sales"});
//! assert_eq!(parse_event(&one).unwrap(), Request::Scheduled { sources: Some(vec!["hotmart-sales".into()]) });
//! let backfill = json!({"source": "hotmart-sales", "start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"});
//! assert!(matches!(parse_event(&backfill).unwrap(), Request::Backfill { .. }));
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use sluice_edge::Failure;
use tokio_util::sync::CancellationToken;

use crate::http::Api;
use crate::run::{Lake, RunKind, RunSummary, run_until};

/// An event that is not one of the accepted shapes.
#[derive(Debug, thiserror::Error)]
#[error("event: {0}")]
pub struct EventError(pub String);

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The scheduled pull of these sources (all when `None`).
    Scheduled { sources: Option<Vec<String>> },
    /// One source over a given window; the watermark is left alone.
    Backfill {
        source: String,
        start: Timestamp,
        end: Timestamp,
    },
}

/// Reads an event (see the module docs for the shapes).
pub fn parse_event(event: &Value) -> Result<Request, EventError> {
    let Some(obj) = event.as_object() else {
        return match event {
            Value::Null => Ok(Request::Scheduled { sources: None }),
            _ => Err(EventError("expected a JSON object".into())),
        };
    };
    if obj.contains_key("detail-type") {
        // An EventBridge event: its `source` is the event's origin (aws.events), not ours.
        return Ok(Request::Scheduled { sources: None });
    }
    let time = |k: &str| -> Result<Option<Timestamp>, EventError> {
        obj.get(k)
            .map(|v| {
                let s = v
                    .as_str()
                    .ok_or_else(|| EventError(format!("{k:?} must be an RFC 3339 string")))?;
                s.parse::<Timestamp>()
                    .map_err(|e| EventError(format!("{k:?} = {s:?}: {e}")))
            })
            .transpose()
    };
    let (start, end) = (time("start")?, time("end")?);
    let source = match obj.get("source") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(EventError("\"source\" must be a string".into())),
    };
    let sources = match obj.get("sources") {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| EventError("\"sources\" must be strings".into()))?,
        ),
        Some(_) => return Err(EventError("\"sources\" must be an array".into())),
    };
    match (source, start, end) {
        (Some(source), Some(start), Some(end)) if start < end => {
            Ok(Request::Backfill { source, start, end })
        }
        (_, Some(s), Some(e)) if s >= e => Err(EventError(format!(
            "backfill start {s} is not before end {e}"
        ))),
        (None, Some(_), _) | (None, _, Some(_)) => {
            Err(EventError("a backfill names its \"source\"".into()))
        }
        (Some(_), Some(_), None) | (Some(_), None, Some(_)) => Err(EventError(
            "a backfill needs both \"start\" and \"end\"".into(),
        )),
        (Some(one), None, None) => Ok(Request::Scheduled {
            sources: Some(vec![one]),
        }),
        _ => Ok(Request::Scheduled { sources }),
    }
}

/// The ingest function's state, built once per container: one API client per source (so OAuth
/// tokens survive warm invocations) and where to write.
#[derive(Debug)]
pub struct Ingest {
    pub apis: BTreeMap<String, Api>,
    pub lake: Lake,
}

/// One source that failed.
#[derive(Debug, Clone, Serialize)]
pub struct RunFailure {
    pub source: String,
    pub error: String,
    pub retryable: bool,
}

/// The invocation's result JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InvocationSummary {
    pub runs: Vec<RunSummary>,
    pub failed: Vec<RunFailure>,
    pub pages: u64,
    pub records: u64,
    pub objects: usize,
    pub duration_ms: u64,
}

/// A failed invocation: the error for Lambda plus what was done.
pub type HandlerError = sluice_edge::HandlerError<InvocationSummary>;

/// Time a run keeps for itself before Lambda's deadline: enough to abandon the chunk under way
/// and report.
pub const STOP_MARGIN: std::time::Duration = std::time::Duration::from_secs(15);

/// A token cancelled [`STOP_MARGIN`] before `deadline_ms` (Lambda's deadline, milliseconds
/// since the epoch), and the timer task (abort it when the invocation ends).
pub fn stop_before(deadline_ms: u64) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let deadline = std::time::UNIX_EPOCH + std::time::Duration::from_millis(deadline_ms);
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(STOP_MARGIN);
    let stop = CancellationToken::new();
    let timer = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::time::sleep(left).await;
            stop.cancel();
        }
    });
    (stop, timer)
}

/// Handles one event at `now` (the clock is a parameter so tests can pick it).
pub async fn handle(
    event: &Value,
    ingest: &Ingest,
    now: Timestamp,
    run_id: &str,
) -> Result<InvocationSummary, HandlerError> {
    handle_until(event, ingest, now, run_id, &CancellationToken::new()).await
}

/// [`handle`], stopping each run cleanly when `stop` is cancelled (see [`stop_before`]).
pub async fn handle_until(
    event: &Value,
    ingest: &Ingest,
    now: Timestamp,
    run_id: &str,
    stop: &CancellationToken,
) -> Result<InvocationSummary, HandlerError> {
    let t0 = Instant::now();
    let permanent = |message: String| HandlerError::new(message, Failure::Permanent);
    let request = parse_event(event).map_err(|e| permanent(e.to_string()))?;
    let jobs: Vec<(&str, RunKind)> = match &request {
        Request::Scheduled { sources: None } => ingest
            .apis
            .keys()
            .map(|k| (k.as_str(), RunKind::Scheduled { now }))
            .collect(),
        Request::Scheduled {
            sources: Some(names),
        } => names
            .iter()
            .map(|n| (n.as_str(), RunKind::Scheduled { now }))
            .collect(),
        Request::Backfill { source, start, end } => vec![(
            source.as_str(),
            RunKind::Backfill {
                start: *start,
                end: *end,
            },
        )],
    };
    let mut summary = InvocationSummary::default();
    for (name, kind) in jobs {
        let Some(api) = ingest.apis.get(name) else {
            let known: Vec<&str> = ingest.apis.keys().map(String::as_str).collect();
            return Err(permanent(format!(
                "unknown source {name:?} (configured: {})",
                known.join(", ")
            )));
        };
        match run_until(api, &ingest.lake, kind, run_id, stop).await {
            Ok(r) => {
                tracing::info!(source = %name, status = ?r.status, records = r.records, pages = r.pages, objects = r.objects.len(), "run done");
                summary.pages += r.pages;
                summary.records += r.records;
                summary.objects += r.objects.len();
                summary.runs.push(r);
            }
            Err(e) => {
                tracing::error!(source = %name, error = %e, "run failed; the watermark stays");
                summary.failed.push(RunFailure {
                    source: name.to_owned(),
                    retryable: e.is_retryable(),
                    error: e.to_string(),
                });
            }
        }
    }
    summary.duration_ms = t0.elapsed().as_millis() as u64;
    if summary.failed.is_empty() {
        return Ok(summary);
    }
    let retryable = summary.failed.iter().all(|f| f.retryable);
    Err(HandlerError {
        message: summary
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.source, f.error))
            .collect::<Vec<_>>()
            .join("; "),
        kind: Failure::when(retryable),
        summary: Some(Box::new(summary)),
    })
}

/// The invocation's CloudWatch EMF line.
pub fn emf_line(s: &InvocationSummary) -> Value {
    let retries: u64 = s.runs.iter().map(|r| r.api.retries).sum();
    let wait: u64 = s.runs.iter().map(|r| r.api.api_wait_ms).sum();
    sluice_edge::emf_line(
        "ingest",
        &[
            ("Runs", s.runs.len() as u64, "Count"),
            ("RunsFailed", s.failed.len() as u64, "Count"),
            ("Pages", s.pages, "Count"),
            ("Records", s.records, "Count"),
            ("Objects", s.objects as u64, "Count"),
            ("Retries", retries, "Count"),
            ("ApiWaitMs", wait, "Milliseconds"),
            ("DurationMs", s.duration_ms, "Milliseconds"),
        ],
    )
}

/// A run id for callers without a Lambda request id: time-ordered and unique per process.
pub fn new_run_id(now: Timestamp) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{:x}-{}",
        now.strftime("%Y%m%dT%H%M%S"),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_events_say_what_is_wrong() {
        let e = |v: Value| parse_event(&v).unwrap_err().to_string();
        assert_eq!(e(json!([1])), "event: expected a JSON object");
        assert_eq!(
            e(json!({"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"})),
            "event: a backfill names its \"source\""
        );
        assert!(
            e(json!({"source": "s", "start": "yesterday", "end": "2024-01-02T00:00:00Z"}))
                .starts_with("event: \"start\" = \"yesterday\"")
        );
        assert_eq!(
            e(
                json!({"source": "s", "start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"})
            ),
            "event: backfill start 2024-01-02T00:00:00Z is not before end 2024-01-01T00:00:00Z"
        );
        assert_eq!(
            e(json!({"source": "s", "start": "2024-01-02T00:00:00Z"})),
            "event: a backfill needs both \"start\" and \"end\""
        );
    }

    #[test]
    fn run_ids_are_unique() {
        let now = Timestamp::now();
        assert_ne!(new_run_id(now), new_run_id(now));
    }
}

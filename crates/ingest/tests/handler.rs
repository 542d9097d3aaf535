//! The handler with the event files `cargo lambda invoke --data-file` uses.

use crate::common::*;
use anyhow::Result;
use serde_json::{Value, json};
use sluice_ingest::{RunStatus, handle};

fn fixture(name: &str) -> Result<Value> {
    let path = sluice_testkit::workspace_root().join("events").join(name);
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

#[tokio::test]
async fn the_scheduled_event_pulls_every_source_and_reports() -> Result<()> {
    let e = env(300, "").await?;
    let s = handle(
        &fixture("eventbridge-schedule.json")?,
        &e.ingest,
        after_all(300),
        "req-1",
    )
    .await?;
    assert_eq!((s.runs.len(), s.records, s.objects), (1, 300, 1));
    assert_eq!(s.runs[0].status, RunStatus::Advanced);
    let json = serde_json::to_value(&s)?;
    for k in ["pages", "records", "objects", "duration_ms"] {
        assert!(json[k].is_u64(), "{k} in {json}");
    }
    assert!(json["runs"][0]["window"]["start"].is_string());
    let emf = sluice_ingest::emf_line(&s);
    assert_eq!(emf["Records"], 300);
    // `{}` and custom input without detail-type are scheduled runs too.
    let later = after_all(300) + jiff::SignedDuration::from_mins(7);
    let s = handle(&json!({}), &e.ingest, later, "req-2").await?;
    assert_eq!(s.runs[0].status, RunStatus::Advanced);
    let s = handle(
        &json!({"source": "hotmart-sales"}),
        &e.ingest,
        later + jiff::SignedDuration::from_mins(7),
        "req-3",
    )
    .await?;
    assert_eq!(s.runs.len(), 1);
    Ok(())
}

#[tokio::test]
async fn the_backfill_event_fetches_its_window_only() -> Result<()> {
    let e = env(300, "").await?;
    let s = handle(
        &fixture("ingest-backfill.json")?,
        &e.ingest,
        after_all(300),
        "bf",
    )
    .await?;
    assert_eq!(s.runs[0].status, RunStatus::Backfilled);
    assert_eq!(s.records, 300);
    assert!(watermarks(&e.bucket).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn failures_are_typed_for_lambda() -> Result<()> {
    let e = env(100, "").await?;
    let err = handle(&json!({"source": "nope"}), &e.ingest, after_all(100), "x")
        .await
        .unwrap_err();
    assert_eq!(err.kind.error_type(), "sluice.Permanent");
    assert!(
        err.message
            .contains("unknown source \"nope\" (configured: hotmart-sales)")
    );
    e.api.push_faults(std::iter::repeat_n(
        sluice_sample_api::Fault::Status(503),
        6,
    ));
    let err = handle(&json!({}), &e.ingest, after_all(100), "y")
        .await
        .unwrap_err();
    assert_eq!(err.kind.error_type(), "sluice.Retryable");
    assert_eq!(err.summary.as_ref().unwrap().failed.len(), 1);
    Ok(())
}

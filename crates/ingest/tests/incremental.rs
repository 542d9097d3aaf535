//! Incremental by a cursor field: the largest `purchase.approved_date` a run's records held,
//! sent back by the next run as django-filter's `approved_date__gte` less a lookback, and
//! moved only after the objects are written, with a conditional write.

use std::collections::HashSet;

use crate::common::*;
use anyhow::Result;
use sluice_ingest::run::{State, run};
use sluice_ingest::{RunKind, RunStatus};
use sluice_sample_api::{Dataset, Mode, SampleApi, Settings};

/// An hour in ms: sales are approved up to an hour after they are ordered, so a sale that
/// comes later may carry an earlier date than the cursor.
const LOOKBACK_MS: i64 = 3_600_000;

fn sources(url: &str) -> String {
    format!(
        r#"
[source.drf-inc]
base_url = "{url}"
path = "/drf/sales/"
records_path = "results"
page_size = 70
page_size_param = "page_size"
pagination = {{ kind = "next_url", path = "next" }}
auth = {{ kind = "basic", username_env = "SAMPLE_USER", password_env = "SAMPLE_PASS" }}
incremental = {{ cursor_path = "purchase.approved_date", param = "approved_date__gte", type = "integer", lookback = {LOOKBACK_MS} }}
"#
    )
}

fn largest(d: &Dataset) -> i64 {
    (0..d.n).map(|p| d.approved(p)).max().unwrap()
}

async fn start(n: u64) -> Result<SampleApi> {
    Ok(SampleApi::start(Settings {
        n,
        ..Settings::default()
    })
    .await?)
}

#[tokio::test]
async fn the_cursor_moves_to_the_largest_value_after_the_objects_are_written() -> Result<()> {
    let api = start(200).await?;
    let bucket = sluice_testkit::bucket().await?;
    let client = source_client(&sources(&api.base_url()), "drf-inc")?;
    let lake = lake(&bucket, 8 << 20);
    let kind = RunKind::Scheduled {
        now: after_all(300),
    };
    let first = run(&client, &lake, kind, "r1").await?;
    let m200 = largest(&api.dataset());
    assert_eq!(
        (first.status, first.records, first.cursor_before.as_deref()),
        (RunStatus::Advanced, 200, None)
    );
    assert_eq!(first.cursor_after, Some(m200.to_string()));
    let st: State = serde_json::from_slice(&bucket.get("state/drf-inc.json").await?)?;
    assert_eq!(st.cursor, Some(m200.to_string()));
    assert_eq!(st.objects.len(), 1);

    // 100 more sales: the next run asks from the cursor less the lookback.
    api.reset(300, 42, Mode::Initial);
    let second = run(&client, &lake, kind, "r2").await?;
    let d = api.dataset();
    let asked = (0..300)
        .filter(|p| d.approved(*p) >= m200 - LOOKBACK_MS)
        .count() as u64;
    assert_eq!(second.records, asked);
    assert!((100..200).contains(&asked), "{asked}");
    assert_eq!(second.cursor_before, Some(m200.to_string()));
    assert_eq!(second.cursor_after, Some(largest(&d).to_string()));
    let keys = column(&csv_objects(&bucket).await?, "purchase_transaction");
    assert_eq!(
        keys.iter().collect::<HashSet<_>>().len(),
        300,
        "no sale missed"
    );

    // Nothing new: the lookback is read again, the cursor stays.
    let third = run(&client, &lake, kind, "r3").await?;
    assert_eq!(third.cursor_after, second.cursor_after);
    assert!(third.records < asked);
    Ok(())
}

#[tokio::test]
async fn a_state_with_a_cursor_of_another_type_fails_the_run() -> Result<()> {
    let api = start(10).await?;
    let bucket = sluice_testkit::bucket().await?;
    let client = source_client(&sources(&api.base_url()), "drf-inc")?;
    let lake = lake(&bucket, 8 << 20);
    let st = r#"{"watermark":"2024-01-01T00:00:00Z","run_id":"x","updated_at":"2024-01-01T00:00:00Z","records":1,"objects":[],"cursor":"2024-01-01T00:00:00Z"}"#;
    bucket
        .put("state/drf-inc.json", st.as_bytes().to_vec())
        .await?;
    let e = run(
        &client,
        &lake,
        RunKind::Scheduled { now: after_all(10) },
        "r",
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("the kept cursor \"2024-01-01T00:00:00Z\" is not of type Integer"),
        "{e}"
    );
    assert_eq!(api.stats().page_requests, 0);
    Ok(())
}

#[tokio::test]
async fn of_two_overlapping_runs_only_one_moves_the_cursor() -> Result<()> {
    let api = start(400).await?;
    let bucket = sluice_testkit::bucket().await?;
    let lake = lake(&bucket, 8 << 20);
    // Run A talks to the API through a gate that holds its first page mid-transfer.
    let gate = sluice_testkit::GateProxy::start(api.addr(), 4_000).await?;
    let slow = source_client(&sources(&format!("http://{}", gate.addr)), "drf-inc")?;
    let kind = RunKind::Scheduled {
        now: after_all(400),
    };
    let a = run(&slow, &lake, kind, "a");
    tokio::pin!(a);
    tokio::select! {
        r = &mut a => panic!("run a finished early: {r:?}"),
        () = gate.held() => {}
    }
    let fast = source_client(&sources(&api.base_url()), "drf-inc")?;
    let b = run(&fast, &lake, kind, "b").await?;
    assert_eq!(b.status, RunStatus::Advanced);
    gate.open();
    let a = a.await?;
    assert_eq!(
        (a.status, a.records, a.cursor_after),
        (RunStatus::Superseded, 400, None)
    );
    let st: State = serde_json::from_slice(&bucket.get("state/drf-inc.json").await?)?;
    assert_eq!(
        (st.run_id.as_str(), st.cursor),
        ("b", Some(largest(&api.dataset()).to_string()))
    );
    Ok(())
}

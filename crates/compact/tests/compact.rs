//! Compaction against the S3 endpoint, read back through `sluice query`'s view (DataFusion over
//! the S3 protocol): a crash after every single change it makes, a query running while it runs,
//! late copies of a request, and a run with nothing to do.

use std::collections::HashSet;

use anyhow::Result;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sluice_api::{Datasets, lake};
use sluice_compact::plan::Settings;
use sluice_compact::{CompactError, Compactor, Report};
use sluice_edge::layout::{LakeFile, Layout};
use sluice_query::{Lake, Location};
use sluice_testkit::{Fault, S3Endpoint, S3Proxy, TestBucket};

const DAY: &str = "2024-05-01";

fn day() -> jiff::civil::Date {
    DAY.parse().unwrap()
}

fn datasets() -> Datasets {
    Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets")).unwrap()
}

fn unicorn(n: usize) -> Value {
    json!({
        "name": format!("u{n}"), "rainbow": n.is_multiple_of(2), "color": "gold",
        "horn_length_cm": 10.0 + n as f64, "age_years": n, "sighted_at": "2024-05-01T09:00:00Z",
        "location": {"lat": 1.0, "lon": 2.0}, "tags": [], "observer_email": null,
    })
}

/// The object one request of `records` unicorns makes, numbered from `first`.
fn request_object(event: &str, first: usize, records: usize) -> Vec<u8> {
    let d = datasets();
    let d = d.get("unicorns").unwrap();
    let stamp = lake::Stamp {
        event_id: event.into(),
        received_at: "2024-05-01T12:00:00Z".parse().unwrap(),
        body_sha256: String::new(),
    };
    let checked: Vec<Value> = (first..first + records)
        .map(|n| sluice_api::validate::record(d, &unicorn(n), &[]).unwrap())
        .collect();
    lake::parquet(d, &checked, &stamp).unwrap()
}

/// `requests` request objects of 3 records each in `DAY`'s partition: what the API leaves.
async fn seed(bucket: &TestBucket, requests: usize) -> Result<Expected> {
    let layout = Layout::default();
    for r in 0..requests {
        let key = layout.lake_object("unicorns", day(), &format!("req-{r:03}"));
        bucket
            .put(&key, request_object(&format!("req-{r:03}"), r * 3, 3))
            .await?;
    }
    let n = requests * 3;
    Ok(Expected {
        rows: n as i64,
        ages: (0..n as i64).sum(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Expected {
    rows: i64,
    ages: i64,
}

fn compactor(endpoint: &S3Endpoint, bucket: &str, settings: Settings) -> Compactor {
    Compactor::new(endpoint.client(), bucket, Layout::default(), settings)
}

/// Small objects so that a partition is several merged objects.
fn settings() -> Settings {
    Settings {
        target_bytes: 2_500,
        grace: SignedDuration::from_hours(1),
    }
}

async fn lake(bucket: &TestBucket) -> Result<Lake> {
    let location = Location::bucket(
        &bucket.name,
        &bucket.endpoint.sdk_config(),
        Some(&bucket.endpoint.url),
    )?;
    Ok(Lake::open(&location, &Layout::default(), &datasets()).await?)
}

/// What the view answers: rows, distinct records, the sum of a column.
async fn view(lake: &Lake) -> Result<(i64, i64, i64)> {
    let a = lake
        .query(&format!(
            "SELECT count(*), count(DISTINCT _event_id || '/' || CAST(_row AS VARCHAR)), sum(age_years) \
             FROM unicorns WHERE dt = '{DAY}'"
        ))
        .await?;
    let n = |i: usize| a.rows[0][i].as_i64().unwrap_or(0);
    Ok((n(0), n(1), n(2)))
}

/// The objects table: rows, and rows of requests held by more than one object.
async fn objects(lake: &Lake) -> Result<(i64, i64)> {
    let a = lake
        .query(&format!(
            "SELECT count(*), count(*) - count(DISTINCT _event_id || '/' || CAST(_row AS VARCHAR)) \
             FROM unicorns_objects WHERE dt = '{DAY}'"
        ))
        .await?;
    Ok((
        a.rows[0][0].as_i64().unwrap(),
        a.rows[0][1].as_i64().unwrap(),
    ))
}

async fn files(bucket: &TestBucket) -> Result<(usize, usize, usize)> {
    let keys = bucket
        .keys(&Layout::default().lake_partition("unicorns", day()))
        .await?;
    let mut counts = (0, 0, 0);
    for k in &keys {
        match LakeFile::of(k.rsplit_once('/').unwrap().1) {
            LakeFile::Request { .. } => counts.0 += 1,
            LakeFile::Compacted { .. } => counts.1 += 1,
            LakeFile::CompactionRecord { .. } => counts.2 += 1,
            LakeFile::Other => {}
        }
    }
    Ok(counts)
}

async fn run(c: &Compactor, now: Timestamp) -> Result<Report, CompactError> {
    let d = datasets();
    c.partition(d.get("unicorns").unwrap(), day(), now).await
}

/// Runs to a fixed point: each run `grace` after the last, until one changes nothing.
async fn settle(c: &Compactor, mut now: Timestamp) -> Result<Timestamp> {
    for _ in 0..5 {
        now += SignedDuration::from_hours(2);
        let r = run(c, now).await?;
        if r.retired == 0 && r.orphans == 0 && r.merged == 0 {
            return Ok(now);
        }
    }
    anyhow::bail!("compaction did not settle in 5 runs")
}

#[tokio::test]
async fn a_day_of_requests_becomes_a_few_objects_and_the_answers_stay() -> Result<()> {
    let bucket = sluice_testkit::bucket().await?;
    let want = seed(&bucket, 30).await?;
    let lake = lake(&bucket).await?;
    let before = view(&lake).await?;
    assert_eq!(before, (want.rows, want.rows, want.ages));

    let c = compactor(&bucket.endpoint, &bucket.name, settings());
    let now = Timestamp::now();
    let first = run(&c, now).await?;
    assert_eq!(
        (first.merged, first.retired, first.rows, first.duplicates),
        (30, 0, 90, 0)
    );
    assert!(first.outputs.len() >= 2, "{first:?}");
    // Committed, nothing deleted yet: every record is in two objects, the view shows one.
    assert_eq!(files(&bucket).await?, (30, first.outputs.len(), 1));
    assert_eq!(objects(&lake).await?, (2 * want.rows, want.rows));
    assert_eq!(view(&lake).await?, before);

    let later = settle(&c, now).await?;
    assert_eq!(files(&bucket).await?, (0, first.outputs.len(), 1));
    assert_eq!(objects(&lake).await?, (want.rows, 0));
    assert_eq!(view(&lake).await?, before);
    // Nothing to do changes nothing.
    let again = run(&c, later + SignedDuration::from_hours(2)).await?;
    assert_eq!((again.retired, again.orphans, again.merged), (0, 0, 0));
    Ok(())
}

#[tokio::test]
async fn a_crash_after_any_change_loses_nothing_and_the_next_runs_finish() -> Result<()> {
    // The changes of an uninterrupted compaction: its objects, its commit, its deletions.
    let bucket = sluice_testkit::bucket().await?;
    seed(&bucket, 30).await?;
    let counter =
        S3Proxy::start(&bucket.endpoint.url, Fault::StopAfter { allowed: u64::MAX }).await?;
    let c = compactor(
        &counter.endpoint(&bucket.endpoint),
        &bucket.name,
        settings(),
    );
    let now = Timestamp::now();
    run(&c, now).await?;
    settle(&c, now).await?;
    let changes = counter.count();
    assert!(changes >= 4, "{changes} changes");

    for allowed in 0..changes {
        let bucket = sluice_testkit::bucket().await?;
        let want = seed(&bucket, 30).await?;
        let lake = lake(&bucket).await?;
        let proxy = S3Proxy::start(&bucket.endpoint.url, Fault::StopAfter { allowed }).await?;
        let crashing = compactor(&proxy.endpoint(&bucket.endpoint), &bucket.name, settings());
        let crashed = match run(&crashing, now).await {
            Ok(_) => settle(&crashing, now).await.is_err(),
            Err(_) => true,
        };
        assert!(crashed, "after {allowed} changes the run went on");
        let exact = (want.rows, want.rows, want.ages);
        assert_eq!(view(&lake).await?, exact, "crashed after {allowed} changes");

        let c = compactor(&bucket.endpoint, &bucket.name, settings());
        settle(&c, now + SignedDuration::from_hours(12)).await?;
        assert_eq!(
            view(&lake).await?,
            exact,
            "after {allowed} changes, then runs"
        );
        assert_eq!(
            objects(&lake).await?,
            (want.rows, 0),
            "after {allowed}: a record twice"
        );
        let (requests, _, records) = files(&bucket).await?;
        assert_eq!((requests, records), (0, 1), "after {allowed} changes");
    }
    Ok(())
}

#[tokio::test]
async fn a_query_running_while_compaction_commits_sees_every_record_once() -> Result<()> {
    let bucket = sluice_testkit::bucket().await?;
    let want = seed(&bucket, 40).await?;
    let lake = lake(&bucket).await?;
    let exact = (want.rows, want.rows, want.ages);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        async move {
            let mut answers = 0;
            // At least one query after the commit, however fast the compaction.
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                assert_eq!(view(&lake).await?, exact, "query {answers}");
                answers += 1;
                if finished {
                    return anyhow::Ok(answers);
                }
                tokio::task::yield_now().await;
            }
        }
    };
    let c = compactor(&bucket.endpoint, &bucket.name, settings());
    let compaction = async {
        let r = run(&c, Timestamp::now()).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let (answers, report) = tokio::join!(reader, compaction);
    let report = report?;
    assert!(report.outputs.len() >= 2, "{report:?}");
    assert!(answers? >= 2);
    Ok(())
}

#[tokio::test]
async fn late_requests_are_merged_and_a_late_copy_is_left_out() -> Result<()> {
    let bucket = sluice_testkit::bucket().await?;
    let want = seed(&bucket, 6).await?;
    // Big enough that the day stays one object merged again with what comes late.
    let big = Settings {
        target_bytes: 1 << 20,
        ..settings()
    };
    let c = compactor(&bucket.endpoint, &bucket.name, big);
    let layout = Layout::default();
    let put = |event: &'static str, first: usize| {
        let (bucket, key) = (&bucket, layout.lake_object("unicorns", day(), event));
        async move { bucket.put(&key, request_object(event, first, 3)).await }
    };
    let now = settle(&c, Timestamp::now()).await?;
    // A request first stored after its day was compacted: merged with what is there.
    put("req-late", 18).await?;
    let late = run(&c, now + SignedDuration::from_hours(2)).await?;
    assert_eq!((late.merged, late.duplicates), (2, 0), "{late:?}");
    let now = settle(&c, now + SignedDuration::from_hours(2)).await?;
    // A retry of request 2 stored again after both generations: its records are already in.
    put("req-002", 6).await?;
    let copy = run(&c, now + SignedDuration::from_hours(2)).await?;
    assert_eq!(copy.duplicates, 3, "{copy:?}");
    settle(&c, now + SignedDuration::from_hours(2)).await?;

    let lake = lake(&bucket).await?;
    let rows = want.rows + 3;
    assert_eq!(objects(&lake).await?, (rows, 0));
    assert_eq!(view(&lake).await?, (rows, rows, want.ages + 18 + 19 + 20));
    let (requests, _, _) = files(&bucket).await?;
    assert_eq!(requests, 0);
    // Every request's records are in exactly one object.
    let mut seen = HashSet::new();
    for key in bucket
        .keys(&layout.lake_partition("unicorns", day()))
        .await?
    {
        if key.ends_with(".parquet") {
            for e in sluice_compact::merge::events(&key, bucket.get(&key).await?.into())? {
                assert!(seen.insert(e.clone()), "{e} in two objects");
            }
        }
    }
    assert_eq!(seen.len(), 7);
    Ok(())
}

//! Runs against the sample API (a real HTTP server) into a real S3 endpoint.

use std::collections::HashSet;

use crate::common::*;
use anyhow::Result;
use sluice_ingest::run::{run, run_until};
use sluice_ingest::{RunKind, RunStatus, State};
use sluice_sample_api::data::BASE_TS;
use sluice_sample_api::{Fault, Rules};
use sluice_testkit::{Hook, S3Proxy};

fn state(bytes: &[u8]) -> State {
    serde_json::from_slice(bytes).unwrap()
}

#[tokio::test]
async fn full_pagination_one_object_a_manifest_and_the_watermark() -> Result<()> {
    let e = env(1234, "").await?;
    let api = &e.ingest.apis["hotmart-sales"];
    let now = after_all(1234);
    let s = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "r1").await?;
    assert_eq!(
        (s.status, s.records, s.pages),
        (RunStatus::Advanced, 1234, 13)
    );
    assert_eq!(s.objects.len(), 1);
    assert_eq!(s.api.token_requests, 1);
    let objects = csv_objects(&e.bucket).await?;
    let keys: Vec<_> = column(&objects, "purchase_transaction");
    let unique: HashSet<_> = keys.iter().collect();
    assert_eq!((keys.len(), unique.len()), (1234, 1234));
    let key = &objects[0].0;
    assert!(
        key.starts_with("raw/hotmart-sales/dt=2023-11-14/20231114T000000Z_")
            && key.ends_with("_r1.csv"),
        "{key}"
    );
    // Object metadata and the manifest beside it.
    let head = head(&e.bucket, key).await?;
    let meta = head.metadata().unwrap();
    assert_eq!(meta["records"], "1234");
    assert_eq!(meta["columns"], objects[0].1.len().to_string());
    assert_eq!(meta["window-start"], "2023-11-14T00:00:00Z");
    let manifest = manifest(&e.bucket, key).await?;
    assert_eq!(manifest["object"]["records"], 1234);
    assert_eq!(manifest["schema_hash"], meta["schema-hash"].as_str());
    assert_eq!(
        manifest["columns"].as_array().unwrap().len(),
        objects[0].1.len()
    );
    // The watermark is the window's end.
    let st = state(&e.bucket.get("state/hotmart-sales.json").await?);
    assert_eq!(Some(st.watermark), s.watermark_after);
    assert_eq!(st.watermark, now - jiff::SignedDuration::from_mins(1));
    assert_eq!((st.records, st.run_id.as_str()), (1234, "r1"));
    // The next run starts one lookback before the watermark; the token is reused.
    let later = now + jiff::SignedDuration::from_mins(7);
    let s2 = run(api, &e.ingest.lake, RunKind::Scheduled { now: later }, "r2").await?;
    assert_eq!(
        s2.window.unwrap().start,
        st.watermark - jiff::SignedDuration::from_mins(30)
    );
    assert_eq!((s2.status, s2.api.token_requests), (RunStatus::Advanced, 0));
    assert_eq!(e.api.stats().token_requests, 1);
    Ok(())
}

#[tokio::test]
async fn an_expired_token_is_refreshed_mid_run() -> Result<()> {
    let e = env(600, "").await?;
    e.api
        .push_faults([Fault::Pass, Fault::Pass, Fault::ExpireTokens]);
    let api = &e.ingest.apis["hotmart-sales"];
    let s = run(
        api,
        &e.ingest.lake,
        RunKind::Scheduled {
            now: after_all(600),
        },
        "r",
    )
    .await?;
    assert_eq!(s.records, 600);
    assert_eq!(s.api.token_requests, 2);
    assert_eq!(e.api.stats().token_requests, 2);
    assert_eq!(e.api.pending_faults(), 0);
    Ok(())
}

#[tokio::test]
async fn rate_limits_server_errors_and_dropped_connections_are_retried() -> Result<()> {
    let e = env(500, "").await?;
    e.api.push_faults([
        Fault::TooManyRequests { reset_secs: 0 },
        Fault::Pass,
        Fault::Status(503),
        Fault::Status(500),
        Fault::Disconnect,
        Fault::Pass,
        Fault::TooManyRequests { reset_secs: 0 },
    ]);
    let api = &e.ingest.apis["hotmart-sales"];
    let s = run(
        api,
        &e.ingest.lake,
        RunKind::Scheduled {
            now: after_all(500),
        },
        "r",
    )
    .await?;
    assert_eq!(
        (s.status, s.records, s.pages),
        (RunStatus::Advanced, 500, 5)
    );
    assert_eq!(s.api.retries, 5);
    let keys = column(&csv_objects(&e.bucket).await?, "purchase_transaction");
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 500);
    Ok(())
}

#[tokio::test]
async fn persistent_server_errors_fail_the_run_and_keep_the_watermark() -> Result<()> {
    let e = env(300, "").await?;
    e.api
        .push_faults(std::iter::repeat_n(Fault::Status(500), 6));
    let api = &e.ingest.apis["hotmart-sales"];
    let err = run(
        api,
        &e.ingest.lake,
        RunKind::Scheduled {
            now: after_all(300),
        },
        "r",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert!(err.is_retryable());
    assert!(watermarks(&e.bucket).await?.is_empty());
    Ok(())
}

/// A bad second page (`fault`) fails the run with `says` in its error, leaves neither the
/// watermark nor a half-written object, and the next run completes the window.
async fn a_bad_page_fails_the_run_and_the_next_completes_it(
    fault: Fault,
    says: &str,
) -> Result<()> {
    let e = env(450, "").await?;
    e.api.push_faults([Fault::Pass, fault]);
    let api = &e.ingest.apis["hotmart-sales"];
    let now = after_all(450);
    let err = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "bad")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/payments/api/v1/sales/history (page 2)"),
        "{msg}"
    );
    assert!(msg.contains(says), "{msg}");
    assert!(
        watermarks(&e.bucket).await?.is_empty(),
        "the watermark did not move past records never fetched"
    );
    assert!(
        e.bucket.keys("raw/").await?.is_empty(),
        "nothing half-written is left"
    );
    let s = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "good").await?;
    assert_eq!((s.status, s.records), (RunStatus::Advanced, 450));
    assert_eq!(s.window.unwrap().start.to_string(), "2023-11-14T00:00:00Z");
    Ok(())
}

#[tokio::test]
async fn truncated_json_fails_the_run_and_the_next_run_completes_the_window() -> Result<()> {
    a_bad_page_fails_the_run_and_the_next_completes_it(Fault::Truncate, "(page 2)").await
}

#[tokio::test]
async fn an_empty_200_body_fails_the_run_and_keeps_the_watermark() -> Result<()> {
    a_bad_page_fails_the_run_and_the_next_completes_it(Fault::EmptyBody, "empty input").await
}

#[tokio::test]
async fn windows_the_api_cannot_answer_are_split() -> Result<()> {
    // 3000 sales span about two days; the API refuses queries longer than a day.
    let e = env(3000, "").await?;
    e.api.set_rules(Rules {
        max_window_ms: Some(86_400_000),
        ..Rules::default()
    });
    let api = &e.ingest.apis["hotmart-sales"];
    let s = run(
        api,
        &e.ingest.lake,
        RunKind::Scheduled {
            now: after_all(3000),
        },
        "r",
    )
    .await?;
    assert!(s.splits >= 2, "{s:?}");
    assert_eq!(s.records, 3000);
    let keys = column(&csv_objects(&e.bucket).await?, "purchase_transaction");
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 3000);
    Ok(())
}

#[tokio::test]
async fn a_window_too_small_to_split_fails_the_run() -> Result<()> {
    let e = env(100, "").await?;
    e.api.set_rules(Rules {
        max_window_ms: Some(1),
        ..Rules::default()
    });
    let api = &e.ingest.apis["hotmart-sales"];
    let err = run(
        api,
        &e.ingest.lake,
        RunKind::Scheduled {
            now: after_all(100),
        },
        "r",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("HTTP 502"), "{err}");
    assert!(watermarks(&e.bucket).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_column_first_seen_mid_run_starts_a_new_object() -> Result<()> {
    let e = env(1000, "").await?;
    e.api.set_rules(Rules {
        grow_schema_at: Some(550),
        ..Rules::default()
    });
    let api = &e.ingest.apis["hotmart-sales"];
    let s = run(
        api,
        &e.ingest.lake,
        RunKind::Scheduled {
            now: after_all(1000),
        },
        "r",
    )
    .await?;
    assert_eq!(s.records, 1000);
    assert_eq!(s.objects.len(), 2, "{:?}", s.objects);
    let objects = csv_objects(&e.bucket).await?;
    let (k1, h1, r1) = &objects[0];
    let (k2, h2, r2) = &objects[1];
    assert!(
        k1.ends_with("_r.csv") && k2.ends_with("_r_p2.csv"),
        "{k1} {k2}"
    );
    assert!(!h1.iter().any(|c| c.starts_with("coupon")));
    assert_eq!(
        &h2[..h1.len()],
        &h1[..],
        "the new header extends the old one"
    );
    assert!(h2.contains(&"coupon_discount_label".to_owned()));
    assert_eq!((r1.len(), r2.len()), (550, 450));
    Ok(())
}

#[tokio::test]
async fn numbers_and_unicode_arrive_byte_for_byte() -> Result<()> {
    let e = env(300, "").await?;
    let api = &e.ingest.apis["hotmart-sales"];
    run(
        api,
        &e.ingest.lake,
        RunKind::Scheduled {
            now: after_all(300),
        },
        "r",
    )
    .await?;
    let objects = csv_objects(&e.bucket).await?;
    let data = e.api.dataset();
    let prices = column(&objects, "purchase_price_value");
    let names = column(&objects, "buyer_name");
    let cities = column(&objects, "buyer_address_city");
    let commissions = column(&objects, "commissions");
    let keys = column(&objects, "purchase_transaction");
    let mut two_decimals = 0;
    for (i, key) in keys.iter().enumerate() {
        let pos = key.as_deref().unwrap()[2..].parse::<u64>()? - 1;
        let item = String::from_utf8(data.item(pos))?;
        let raw = |field: &str| -> String {
            let at = item.find(field).unwrap() + field.len();
            let rest = &item[at..];
            rest[..rest.find([',', '}']).unwrap()]
                .trim_matches('"')
                .to_owned()
        };
        let price = prices[i].as_deref().unwrap();
        assert_eq!(price, raw(r#""price":{"value":"#), "exact number text");
        two_decimals += usize::from(price.ends_with('0'));
        assert_eq!(names[i].as_deref().unwrap(), raw(r#""buyer":{"name":"#));
        assert_eq!(cities[i].as_deref().unwrap(), raw(r#""city":"#));
        let arr_at = item.find(r#""commissions":"#).unwrap() + 14;
        let arr = &item[arr_at..item[arr_at..].find(']').unwrap() + arr_at + 1];
        assert_eq!(
            commissions[i].as_deref().unwrap(),
            arr,
            "arrays as compact JSON"
        );
    }
    assert!(
        two_decimals > 0,
        "some prices end in 0 (97.00), kept as written"
    );
    assert!(names.iter().any(|n| {
        n.as_deref()
            .is_some_and(|n| n.contains('ã') || n.contains('á'))
    }));
    assert!(cities.iter().any(|c| c.as_deref() == Some("São Paulo")));
    Ok(())
}

#[tokio::test]
async fn large_objects_go_up_in_parts() -> Result<()> {
    // 12,000 sales ≈ 6 MB of CSV: more than one 5 MiB part (S3's minimum part size).
    let mut e = env(12_000, "").await?;
    with_window(&mut e, "", "max_span = \"60d\"")?;
    e.ingest.lake = lake(&e.bucket, 5 << 20);
    let api = &e.ingest.apis["hotmart-sales"];
    let s = run(
        api,
        &e.ingest.lake,
        RunKind::Scheduled {
            now: after_all(12_000),
        },
        "r",
    )
    .await?;
    assert_eq!(s.objects.len(), 1);
    assert_eq!(s.objects[0].parts, 2, "{:?}", s.objects);
    let objects = csv_objects(&e.bucket).await?;
    assert_eq!(objects[0].2.len(), 12_000);
    assert_eq!(objects[0].2.len() as u64, s.objects[0].records);
    Ok(())
}

/// Multipart objects carry the same headers as single uploads. Their record count cannot be
/// object metadata (S3 fixes metadata at CreateMultipartUpload, before the count is known, and a
/// copy to change it would be a second version and a second load): it is in the manifest.
#[tokio::test]
async fn gzip_objects_in_parts_keep_their_encoding_and_count_in_the_manifest() -> Result<()> {
    // 45,000 sales ≈ 5.5 MB gzipped: S3 takes no part under 5 MiB but the last.
    let mut e = env(45_000, "gzip = true").await?;
    with_window(&mut e, "gzip = true", "max_span = \"60d\"")?;
    e.ingest.lake = lake(&e.bucket, 5 << 20);
    let api = &e.ingest.apis["hotmart-sales"];
    let now = after_all(45_000);
    let s = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "r").await?;
    assert!(s.objects[0].parts > 1, "{:?}", s.objects);
    let key = &s.objects[0].key;
    let head = head(&e.bucket, key).await?;
    assert_eq!(head.content_encoding(), Some("gzip"));
    let meta = head.metadata().unwrap();
    assert!(!meta.contains_key("records"), "{meta:?}");
    assert_eq!(meta["source"], "hotmart-sales");
    let manifest = manifest(&e.bucket, key).await?;
    assert_eq!(manifest["object"]["records"], 45_000);
    assert_eq!(csv_objects(&e.bucket).await?[0].2.len(), 45_000);
    Ok(())
}

#[tokio::test]
async fn gzip_objects_round_trip() -> Result<()> {
    let e = env(700, "gzip = true").await?;
    let api = &e.ingest.apis["hotmart-sales"];
    let s = run(
        api,
        &e.ingest.lake,
        RunKind::Scheduled {
            now: after_all(700),
        },
        "r",
    )
    .await?;
    assert!(s.objects[0].key.ends_with("_r.csv.gz"));
    let head = head(&e.bucket, &s.objects[0].key).await?;
    assert_eq!(head.content_encoding(), Some("gzip"));
    let objects = csv_objects(&e.bucket).await?;
    assert_eq!(objects[0].2.len(), 700);
    Ok(())
}

#[tokio::test]
async fn a_backfill_closes_an_object_per_chunk_as_it_goes() -> Result<()> {
    // 200 sales, one a minute, in chunks of an hour: several chunks hold sales.
    let mut e = env(200, "").await?;
    with_window(&mut e, "", "max_span = \"1h\"")?;
    let api = &e.ingest.apis["hotmart-sales"];
    let start = "2023-11-14T00:00:00Z".parse()?;
    let end = "2023-11-16T00:00:00Z".parse()?;
    let s = run(api, &e.ingest.lake, RunKind::Backfill { start, end }, "b").await?;
    assert_eq!((s.status, s.records), (RunStatus::Backfilled, 200));
    let objects = csv_objects(&e.bucket).await?;
    assert!(objects.len() >= 4, "{:?}", s.objects);
    assert_eq!(s.objects.len(), objects.len());
    // Each object holds one hour's sales (by approval, the window's field), in the chunks'
    // order; every sale once; each object with its manifest.
    let hours: Vec<HashSet<i64>> = objects
        .iter()
        .map(|o| {
            let approved = column(std::slice::from_ref(o), "purchase_approved_date");
            approved
                .iter()
                .map(|ms| ms.as_deref().unwrap().parse::<i64>().unwrap() / 3_600_000)
                .collect()
        })
        .collect();
    assert!(hours.iter().all(|h| h.len() == 1), "{hours:?}");
    assert!(
        hours
            .windows(2)
            .all(|w| w[0].iter().max() < w[1].iter().min())
    );
    let keys = column(&objects, "purchase_transaction");
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 200);
    for o in &s.objects {
        assert_eq!(
            manifest(&e.bucket, &o.key).await?["object"]["records"],
            o.records
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_backfill_leaves_the_watermark_and_an_empty_window_writes_nothing() -> Result<()> {
    let e = env(200, "").await?;
    let api = &e.ingest.apis["hotmart-sales"];
    let start = "2023-11-14T00:00:00Z".parse()?;
    let end = "2023-11-16T00:00:00Z".parse()?;
    let s = run(api, &e.ingest.lake, RunKind::Backfill { start, end }, "b").await?;
    assert_eq!((s.status, s.records), (RunStatus::Backfilled, 200));
    assert!(watermarks(&e.bucket).await?.is_empty());
    let before = e.bucket.keys("raw/").await?;
    let (start, end) = (
        "2020-01-01T00:00:00Z".parse()?,
        "2020-01-02T00:00:00Z".parse()?,
    );
    let s = run(
        api,
        &e.ingest.lake,
        RunKind::Backfill { start, end },
        "empty",
    )
    .await?;
    assert_eq!((s.records, s.objects.len()), (0, 0));
    assert_eq!(
        e.bucket.keys("raw/").await?,
        before,
        "no object for an empty window"
    );
    Ok(())
}

#[tokio::test]
async fn of_two_overlapping_runs_only_one_advances_the_watermark() -> Result<()> {
    let e = env(400, "").await?;
    // Run A talks to the API through a gate that holds its first page mid-transfer.
    let gate = sluice_testkit::GateProxy::start(e.api.addr(), 4_000).await?;
    let slow = api_client(&sources_toml(&format!("http://{}", gate.addr), ""))?;
    let lake = &e.ingest.lake;
    let now = after_all(400);
    let a = run(&slow, lake, RunKind::Scheduled { now }, "a");
    tokio::pin!(a);
    // A has read the (absent) state and is stuck in its first page.
    tokio::select! {
        r = &mut a => panic!("run a finished early: {r:?}"),
        () = gate.held() => {}
    }
    let b = run(
        &e.ingest.apis["hotmart-sales"],
        lake,
        RunKind::Scheduled { now },
        "b",
    )
    .await?;
    assert_eq!(b.status, RunStatus::Advanced);
    gate.open();
    let a = a.await?;
    assert_eq!(a.status, RunStatus::Superseded);
    assert_eq!((a.records, a.watermark_after), (400, None));
    let st = state(&e.bucket.get("state/hotmart-sales.json").await?);
    assert_eq!(st.run_id, "b");
    // The next run moves on from B's watermark.
    let later = now + jiff::SignedDuration::from_mins(7);
    let c = run(
        &e.ingest.apis["hotmart-sales"],
        lake,
        RunKind::Scheduled { now: later },
        "c",
    )
    .await?;
    assert_eq!(c.watermark_before, Some(st.watermark));
    assert_eq!(c.status, RunStatus::Advanced);
    Ok(())
}

#[tokio::test]
async fn a_slow_response_times_out_and_is_retried() -> Result<()> {
    let e = env(250, "timeout = \"300ms\"").await?;
    e.api
        .push_faults([Fault::Pass, Fault::Slow { millis: 5_000 }]);
    let api = &e.ingest.apis["hotmart-sales"];
    let s = run(
        api,
        &e.ingest.lake,
        RunKind::Scheduled {
            now: after_all(250),
        },
        "r",
    )
    .await?;
    assert_eq!((s.records, s.api.retries), (250, 1));
    Ok(())
}

#[tokio::test]
async fn write_empty_writes_an_empty_csv_for_an_empty_window() -> Result<()> {
    let e = env(50, "write_empty = true").await?;
    let api = &e.ingest.apis["hotmart-sales"];
    let (start, end) = (
        "2020-01-01T00:00:00Z".parse()?,
        "2020-01-02T00:00:00Z".parse()?,
    );
    let s = run(api, &e.ingest.lake, RunKind::Backfill { start, end }, "e").await?;
    assert_eq!((s.records, s.objects.len()), (0, 1));
    let body = e.bucket.get(&s.objects[0].key).await?;
    let mut csv = Vec::new();
    if body.starts_with(&[0x1f, 0x8b]) {
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&body[..]), &mut csv)?;
    } else {
        csv = body;
    }
    // Not a blank header line, which the loader refuses: an empty CSV, which it takes.
    assert!(
        csv.is_empty(),
        "no columns known: an empty CSV, got {csv:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_absurd_token_lifetime_is_clamped_not_a_panic() -> Result<()> {
    for expires_in in [1e20, -5.0, 0.0] {
        let e = env(300, "").await?;
        e.api.set_rules(Rules {
            token_expires_in: Some(expires_in),
            ..Rules::default()
        });
        let api = &e.ingest.apis["hotmart-sales"];
        let now = after_all(300);
        let s = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "r").await?;
        assert_eq!(
            (s.status, s.records),
            (RunStatus::Advanced, 300),
            "{expires_in}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_role_that_may_not_list_the_bucket_still_starts_and_resumes() -> Result<()> {
    let mut e = env(300, "").await?;
    // On AWS, a GET of the missing state/ object is 403 for a role without s3:ListBucket.
    let Some(client) = e.bucket.endpoint.client_without_list() else {
        eprintln!("skipped: S3_ENDPOINT_URL is not the in-process endpoint");
        return Ok(());
    };
    let denied = client
        .get_object()
        .bucket(&e.bucket.name)
        .key("state/hotmart-sales.json")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        denied.raw_response().map(|r| r.status().as_u16()),
        Some(403)
    );
    e.ingest.lake.out.client = client;
    let api = &e.ingest.apis["hotmart-sales"];
    let now = after_all(150);
    let first = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "first").await?;
    assert_eq!(
        first.status,
        RunStatus::Advanced,
        "no state yet is not a denial"
    );
    let now = after_all(300);
    let next = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "next").await?;
    assert_eq!(
        next.status,
        RunStatus::Advanced,
        "the state written is read back"
    );
    assert!(next.records > 0 && next.records < 300, "{next:?}");
    Ok(())
}

#[tokio::test]
async fn a_cursor_sent_again_stops_the_run_instead_of_looping() -> Result<()> {
    let e = env(450, "").await?;
    e.api.set_rules(Rules {
        stuck_cursor: true,
        ..Rules::default()
    });
    let api = &e.ingest.apis["hotmart-sales"];
    let now = after_all(450);
    let err = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "r")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("again"), "{err}");
    assert!(err.is_retryable());
    assert!(e.api.stats().page_requests <= 3, "{:?}", e.api.stats());
    assert!(watermarks(&e.bucket).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_response_over_the_body_limit_is_a_clear_error() -> Result<()> {
    let mut e = env(300, "").await?;
    let api = e.ingest.apis.get_mut("hotmart-sales").unwrap();
    api.max_body_bytes = 10_000; // a page of 100 sales is several times that
    let api = &e.ingest.apis["hotmart-sales"];
    let now = after_all(300);
    let err = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "r")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("the response body is over 10000 bytes"),
        "{msg}"
    );
    assert!(msg.contains("/payments/api/v1/sales/history"), "{msg}");
    assert!(watermarks(&e.bucket).await?.is_empty());
    Ok(())
}

/// A window of two 1-day chunks over 450 sales: the first (2023-11-14) fits one page of 100,
/// the second (the 15th) takes several.
async fn two_chunks() -> Result<Env> {
    let mut e = env(450, "").await?;
    with_window(&mut e, "", "max_span = \"1d\"")?;
    Ok(e)
}

#[tokio::test]
async fn the_watermark_moves_after_each_chunk_so_a_failure_keeps_what_was_done() -> Result<()> {
    let e = two_chunks().await?;
    // The first chunk's page passes; the second chunk's first page is refused for good.
    e.api.push_faults([Fault::Pass, Fault::Status(400)]);
    let api = &e.ingest.apis["hotmart-sales"];
    let now = after_all(450);
    let err = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "a")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 400"), "{err}");
    let st = state(&e.bucket.get("state/hotmart-sales.json").await?);
    assert_eq!(st.watermark.to_string(), "2023-11-15T00:00:00Z");
    let objects = csv_objects(&e.bucket).await?;
    assert_eq!(
        objects.len(),
        1,
        "the first chunk's object, and nothing of the second"
    );
    let first_day = objects[0].2.len() as u64;
    assert!((1..100).contains(&first_day), "{first_day}");
    assert_eq!(st.objects, [objects[0].0.clone()]);
    // The next run goes on from there (less the lookback) and completes the window.
    let s = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "b").await?;
    assert_eq!(s.status, RunStatus::Advanced);
    assert!(
        s.records >= 450 - first_day && s.records < 450,
        "{}",
        s.records
    );
    let keys = column(&csv_objects(&e.bucket).await?, "purchase_transaction");
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 450);
    Ok(())
}

#[tokio::test]
async fn a_stop_before_the_deadline_abandons_the_chunk_under_way_only() -> Result<()> {
    let e = two_chunks().await?;
    // The second chunk's second page hangs (an API answering after Lambda's deadline).
    e.api
        .push_faults([Fault::Pass, Fault::Pass, Fault::Slow { millis: 600_000 }]);
    let api = &e.ingest.apis["hotmart-sales"];
    let now = after_all(450);
    let stop = tokio_util::sync::CancellationToken::new();
    let running = run_until(api, &e.ingest.lake, RunKind::Scheduled { now }, "a", &stop);
    let stopping = async {
        // Once the first chunk is recorded, the deadline comes.
        while watermarks(&e.bucket).await?.is_empty() {
            tokio::task::yield_now().await;
        }
        stop.cancel();
        anyhow::Ok(())
    };
    let (s, stopped) = tokio::join!(running, stopping);
    stopped?;
    let s = s?;
    assert_eq!(s.status, RunStatus::Partial);
    assert_eq!(
        s.watermark_after.map(|t| t.to_string()).as_deref(),
        Some("2023-11-15T00:00:00Z")
    );
    // The second chunk's first page was written, then abandoned with its object.
    let objects = csv_objects(&e.bucket).await?;
    assert_eq!(objects.len(), 1);
    assert_eq!((s.objects.len(), s.records), (1, objects[0].2.len() as u64));
    // Stopped before it starts: nothing fetched, the watermark where it was.
    let s = run_until(api, &e.ingest.lake, RunKind::Scheduled { now }, "b", &stop).await?;
    assert_eq!((s.status, s.pages), (RunStatus::Partial, 0));
    assert_eq!(s.watermark_after, s.watermark_before);
    Ok(())
}

/// A `null` item and one with a lone surrogate: set aside beside their object with the reason,
/// the rest written and the watermark advanced (they failed every run while they stayed in the
/// lookback); past `max_bad_records` the run fails as before.
#[tokio::test]
async fn records_that_cannot_be_flattened_are_set_aside_up_to_a_limit() -> Result<()> {
    let e = env(300, "").await?;
    e.api.set_rules(Rules {
        broken_items: vec![5, 6],
        ..Rules::default()
    });
    let api = &e.ingest.apis["hotmart-sales"];
    let now = after_all(300);
    let s = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "r").await?;
    assert_eq!(
        (s.status, s.records, s.rejected),
        (RunStatus::Advanced, 298, 2)
    );
    let objects = csv_objects(&e.bucket).await?;
    assert_eq!(objects[0].2.len(), 298);
    let rejected = e
        .bucket
        .get(&sluice_ingest::run::rejected_key(&objects[0].0))
        .await?;
    let lines: Vec<serde_json::Value> = rejected
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["record"], "null");
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("record 6 "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1]["record"].as_str().unwrap().contains("ud800"),
        "{}",
        lines[1]
    );

    let strict = env(300, "max_bad_records = 1").await?;
    strict.api.set_rules(Rules {
        broken_items: vec![5, 6],
        ..Rules::default()
    });
    let api = &strict.ingest.apis["hotmart-sales"];
    let err = run(api, &strict.ingest.lake, RunKind::Scheduled { now }, "r")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_bad_records = 1"), "{err}");
    assert!(watermarks(&strict.bucket).await?.is_empty());
    Ok(())
}

/// The source's published columns (`state/hotmart-sales.columns.json`), by name.
async fn published(e: &Env) -> Result<Vec<String>> {
    let bytes = e.bucket.get("state/hotmart-sales.columns.json").await?;
    let m: sluice_flatten::Manifest = serde_json::from_slice(&bytes)?;
    Ok(m.columns.into_iter().map(|c| c.name).collect())
}

/// Sales approved in `[BASE_TS + from min, BASE_TS + to min)` (the sample's item `i` is ordered
/// in minute `i` and approved at or after it).
fn items(from: i64, to: i64) -> RunKind {
    let at = |m: i64| jiff::Timestamp::from_millisecond(BASE_TS + m * 60_000).unwrap();
    RunKind::Backfill {
        start: at(from),
        end: at(to),
    }
}

#[tokio::test]
async fn a_sources_columns_keep_their_order_across_runs() -> Result<()> {
    let e = env(400, "").await?;
    e.api.set_rules(Rules {
        grow_schema_at: Some(200),
        ..Rules::default()
    });
    let api = &e.ingest.apis["hotmart-sales"];
    // The later items first (from item 200 on they have the coupon), then the earlier ones
    // (approved before minute 200: none has).
    let late = run(api, &e.ingest.lake, items(200, 100_000), "late").await?;
    let early = run(api, &e.ingest.lake, items(0, 200), "early").await?;
    assert_eq!(late.records + early.records, 400);
    let columns = published(&e).await?;
    let objects = csv_objects(&e.bucket).await?;
    // Every header is a prefix of the source's columns (the late run's first object ends
    // before the coupon's columns, its `_p2` has them).
    for (key, header, _) in &objects {
        assert_eq!(header[..], columns[..header.len()], "{key}");
    }
    assert!(columns.iter().any(|c| c.starts_with("coupon_")));
    // The early run saw no coupon, and its header has the coupon's columns where the late run
    // put them.
    let (_, header, _) = objects.iter().find(|(k, ..)| k.contains("_early")).unwrap();
    assert_eq!(header, &columns);
    // The early items have no coupon: its columns are there, empty.
    let codes: usize = objects
        .iter()
        .filter_map(|(_, h, rows)| {
            let i = h.iter().position(|c| c == "coupon_code")?;
            Some(rows.iter().filter(|r| r[i].is_some()).count())
        })
        .sum();
    assert_eq!(codes, 200, "only items 200.. have a code");
    Ok(())
}

#[tokio::test]
async fn a_run_that_meets_columns_published_meanwhile_appends_its_own_after_them() -> Result<()> {
    let mut e = env(100, "").await?;
    // Another run publishes its columns between this run's read of them and its first write.
    let theirs = {
        let mut f =
            sluice_flatten::Flattener::new(e.ingest.apis["hotmart-sales"].source.flatten.clone());
        assert!(f.flatten(br#"{"zz_theirs":{"first":1},"id":"x"}"#).is_ok());
        serde_json::to_vec(&f.manifest())?
    };
    let (client, bucket) = (e.bucket.client.clone(), e.bucket.name.clone());
    let first = Hook(std::sync::Arc::new(move || {
        let (client, bucket, body) = (client.clone(), bucket.clone(), theirs.clone());
        Box::pin(async move {
            client
                .put_object()
                .bucket(bucket)
                .key("state/hotmart-sales.columns.json")
                .body(body.into())
                .send()
                .await
                .expect("the other run's columns");
        })
    }));
    let proxy = S3Proxy::start(
        &e.bucket.endpoint.url,
        sluice_testkit::Fault::BeforeFirstPut {
            suffix: ".columns.json".into(),
            first,
        },
    )
    .await?;
    e.ingest.lake.out.client = proxy.endpoint(&e.bucket.endpoint).client();
    let api = &e.ingest.apis["hotmart-sales"];
    let s = run(api, &e.ingest.lake, items(0, 100_000), "ours").await?;
    assert_eq!(s.records, 100);
    assert!(
        proxy.count() >= 2,
        "the run published again after the conflict"
    );
    let columns = published(&e).await?;
    assert_eq!(columns[..2], ["zz_theirs_first", "id"], "theirs first");
    let objects = csv_objects(&e.bucket).await?;
    assert_eq!(objects.len(), 1);
    let (_, header, rows) = &objects[0];
    assert_eq!(header, &columns);
    // Our values sit under our own names, whatever their position.
    let code = header.iter().position(|c| c == "transaction").unwrap();
    assert!(
        rows.iter()
            .all(|r| r[code].as_deref().is_some_and(|v| v.starts_with("HP")))
    );
    assert!(rows.iter().all(|r| r[0].is_none()), "theirs is empty here");
    Ok(())
}

//! Shared by the ingest integration tests: a sample API, a bucket of the test's own, and an
//! ingest configured against both, with short retry delays.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use jiff::Timestamp;
use sluice_flatten::{CsvReader, CsvRecord};
use sluice_ingest::{Api, Credentials, Ingest, Lake, RetryPolicy, S3Out, Sources};
use sluice_sample_api::{SampleApi, Settings, data::BASE_TS, styles};
use sluice_testkit::TestBucket;

/// The Hotmart preset pointed at `base_url`, windows from the first sample sale.
pub fn sources_toml(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[source.hotmart-sales]
preset = "hotmart-sales"
base_url = "{base_url}"
page_size = 100
{extra}
[source.hotmart-sales.window]
initial_start = "2023-11-14T00:00:00Z"
lookback = "30m"
delay = "1m"
"#
    )
}

/// Replaces the source's client with one whose window has `window` lines added (say
/// `max_span = "60d"`: the whole data set is one chunk, so one object).
pub fn with_window(e: &mut Env, extra: &str, window: &str) -> Result<()> {
    let toml = sources_toml(&e.api.base_url(), extra).replace(
        "lookback = \"30m\"",
        &format!("lookback = \"30m\"\n{window}"),
    );
    e.ingest
        .apis
        .insert("hotmart-sales".to_owned(), api_client(&toml)?);
    Ok(())
}

/// A clock after every sale of an `n`-item data set.
pub fn after_all(n: u64) -> Timestamp {
    Timestamp::from_millisecond(BASE_TS + n as i64 * 60_000 + 3 * 3_600_000).unwrap()
}

pub struct Env {
    pub api: SampleApi,
    pub bucket: TestBucket,
    pub ingest: Ingest,
}

/// An API client for the `hotmart-sales` source of `toml`, with the sample's credentials.
pub fn api_client(toml: &str) -> Result<Api> {
    source_client(toml, "hotmart-sales")
}

/// An API client for source `name` of `toml`, with the sample API's credentials.
pub fn source_client(toml: &str, name: &str) -> Result<Api> {
    let sources = Sources::from_toml(toml)?;
    let source = sources.get(name).unwrap().clone();
    let env = |k: &str| {
        let v = match k {
            "SAMPLE_KEY" => "sample-key",
            "SAMPLE_TOKEN" => "sample-token",
            "SAMPLE_USER" => styles::DRF_USER.0,
            "SAMPLE_PASS" => styles::DRF_USER.1,
            "STRIPE_KEY" => styles::STRIPE_KEY,
            "SAMPLE_CLIENT_ID" => "mock-id",
            "SAMPLE_CLIENT_SECRET" => "mock-secret",
            _ => return sluice_sample_api::hotmart_env(k),
        };
        Some(v.to_owned())
    };
    let creds = Credentials::resolve(&source, env, None)?;
    let mut api = Api::new(source, creds)?;
    api.retry = RetryPolicy {
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_retries: 5,
    };
    Ok(api)
}

pub fn lake(bucket: &TestBucket, part_size: usize) -> Lake {
    Lake {
        out: S3Out {
            client: bucket.client.clone(),
            bucket: bucket.name.clone(),
            part_size,
        },
        layout: sluice_edge::layout::Layout::default(),
    }
}

/// A sample API of `n` sales, a bucket, and an ingest of `hotmart-sales` (`extra` TOML lines go
/// into the source table).
pub async fn env(n: u64, extra: &str) -> Result<Env> {
    let api = SampleApi::start(Settings {
        n,
        ..Settings::default()
    })
    .await?;
    let bucket = sluice_testkit::bucket().await?;
    let client = api_client(&sources_toml(&api.base_url(), extra))?;
    let ingest = Ingest {
        apis: BTreeMap::from([("hotmart-sales".to_owned(), client)]),
        lake: lake(&bucket, 8 << 20),
    };
    Ok(Env {
        api,
        bucket,
        ingest,
    })
}

/// CSV rows, `None` is NULL.
pub type Rows = Vec<Vec<Option<String>>>;
/// A CSV object: key, header, rows.
pub type Object = (String, Vec<String>, Rows);

/// A CSV object parsed: header and rows.
pub fn parse_csv(bytes: &[u8]) -> (Vec<String>, Rows) {
    let mut r = CsvReader::new(bytes);
    let mut rec = CsvRecord::default();
    let mut rows = Vec::new();
    let mut header = Vec::new();
    while r.read(&mut rec).unwrap() {
        let fields: Vec<Option<String>> = rec
            .iter()
            .map(|f| f.map(|b| String::from_utf8(b.to_vec()).unwrap()))
            .collect();
        if header.is_empty() {
            header = fields.into_iter().map(Option::unwrap).collect();
        } else {
            assert_eq!(
                fields.len(),
                header.len(),
                "every row is as wide as its header"
            );
            rows.push(fields);
        }
    }
    (header, rows)
}

/// The object's HEAD: its metadata and content encoding.
pub async fn head(
    bucket: &TestBucket,
    key: &str,
) -> Result<aws_sdk_s3::operation::head_object::HeadObjectOutput> {
    Ok(bucket
        .client
        .head_object()
        .bucket(&bucket.name)
        .key(key)
        .send()
        .await?)
}

/// The manifest written beside an object.
pub async fn manifest(bucket: &TestBucket, key: &str) -> Result<serde_json::Value> {
    let bytes = bucket.get(&sluice_ingest::run::manifest_key(key)).await?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Every CSV object under `raw/`, in key order, parsed.
pub async fn csv_objects(
    bucket: &TestBucket,
) -> Result<Vec<(String, Vec<String>, Vec<Vec<Option<String>>>)>> {
    let mut out = Vec::new();
    for key in bucket.keys("raw/").await? {
        if sluice_edge::layout::is_csv(&key) {
            let mut bytes = bucket.get(&key).await?;
            if key.ends_with(".gz") {
                use std::io::Read;
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut plain)?;
                bytes = plain;
            }
            let (h, rows) = parse_csv(&bytes);
            out.push((key, h, rows));
        }
    }
    Ok(out)
}

/// The values of column `name` across objects.
pub fn column(objects: &[Object], name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for (_, h, rows) in objects {
        let i = h.iter().position(|c| c == name).expect("column present");
        out.extend(rows.iter().map(|r| r[i].clone()));
    }
    out
}

/// The watermarks under `state/` (the sources' published columns left out).
pub async fn watermarks(bucket: &TestBucket) -> Result<Vec<String>> {
    let keys = bucket.keys("state/").await?;
    Ok(keys
        .into_iter()
        .filter(|k| !k.ends_with(sluice_edge::layout::COLUMNS_SUFFIX))
        .collect())
}

/// Runs source `name` of `toml` (made for the sample API's URL) once against a sample API of
/// `n` sales under `rules`, into a bucket of its own.
pub async fn pull_source(
    toml: impl Fn(&str) -> String,
    name: &str,
    n: u64,
    rules: sluice_sample_api::Rules,
) -> Result<Pulled> {
    let api = SampleApi::start(Settings {
        n,
        ..Settings::default()
    })
    .await?;
    api.set_rules(rules);
    let bucket = sluice_testkit::bucket().await?;
    let client = source_client(&toml(&api.base_url()), name)?;
    let lake = lake(&bucket, 8 << 20);
    let kind = sluice_ingest::RunKind::Scheduled { now: after_all(n) };
    let result = sluice_ingest::run::run(&client, &lake, kind, "r").await;
    Ok(Pulled {
        api,
        bucket,
        result,
    })
}

/// What [`pull_source`] left.
pub struct Pulled {
    pub api: SampleApi,
    pub bucket: TestBucket,
    pub result: Result<sluice_ingest::RunSummary, sluice_ingest::RunError>,
}

impl Pulled {
    /// Asserts the run took every one of the `n` sales once, authenticated, and returns the
    /// objects.
    pub async fn all(&self, n: u64) -> Result<Vec<Object>> {
        let s = self.result.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(
            (s.status, s.records),
            (sluice_ingest::RunStatus::Advanced, n)
        );
        let objects = csv_objects(&self.bucket).await?;
        let keys = column(&objects, "purchase_transaction");
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!((keys.len() as u64, distinct.len() as u64), (n, n));
        assert_eq!(self.api.stats().unauthorized, 0, "authenticated");
        Ok(objects)
    }

    /// Asserts the run failed with a message holding `what`, and moved no watermark.
    pub async fn failed(&self, what: &str) -> Result<String> {
        let e = match &self.result {
            Ok(s) => panic!("the run should fail with {what:?}; it ended {:?}", s.status),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(what), "{e}");
        assert!(watermarks(&self.bucket).await?.is_empty(), "{e}");
        Ok(e)
    }
}

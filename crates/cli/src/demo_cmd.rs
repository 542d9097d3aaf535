//! `sluice demo`: the whole pipeline on this machine. The bundled sample API → the ingest → a
//! local S3 endpoint → each new object delivered to a loader as an S3 notification (same event
//! shape, URL-encoded key) as soon as it lands, while the ingest goes on → Postgres; then a short
//! report.
//!
//! Each run is the next 7-minute tick of a simulated clock, scaled up: run k sees the sales of
//! the next `records / 3` minutes, re-fetches the lookback overlap, and the sample API's
//! revision k shows later statuses for some sales, so a second run has updates as well as
//! inserts. The demo keeps its run counter and S3 data in `--dir`; a database without the demo
//! table starts it over.
//!
//! Then the collection API, served over the same bucket: good and bad unicorns posted, a 422
//! shown, what landed under `lake/` read back from Parquet, and an example query over it with
//! DataFusion, as `sluice query` runs it (`demo_collect`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_edge::layout::CSV_SUFFIXES;
use sluice_ingest::{Api, Credentials, Lake, RunKind, S3Out, Sources};
use sluice_loader::{Config, Loader, RowCounts, S3Store};
use sluice_sample_api::data::BASE_TS;
use sluice_sample_api::{SampleApi, Settings};
use sluice_testkit::notify::{Created, Listing, deliver_while};

const BUCKET: &str = "sluice-demo";
/// Loaders at once, as the loader Lambda's reserved concurrency caps them.
const LOADERS: usize = 2;
/// How often the bucket is listed for new objects (S3 would notify).
const NOTIFY_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Postgres URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Sales the sample API holds; each run covers about a third of them.
    #[arg(long, default_value_t = 3000)]
    records: u64,
    /// Where the demo keeps its S3 data (when it serves S3 itself) and its run counter.
    #[arg(long, default_value = "target/demo")]
    dir: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `a b/c=d` → `a+b/c%3Dd`: an S3 notification's key (form-encoded, slashes kept).
fn event_key(key: &str) -> String {
    key.split('/')
        .map(|seg| form_urlencoded::byte_serialize(seg.as_bytes()).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// The S3 `ObjectCreated:Put` notification for one object, as S3 sends it.
fn notification(bucket: &str, key: &str, size: u64, sequencer: u64) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": jiff::Timestamp::now().to_string(),
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:sluice-demo:sluice-ingest"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "SLUICEDEMO", "x-amz-id-2": "sluice-demo"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "sluice-demo",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "sluice-demo"},
                "arn": format!("arn:aws:s3:::{bucket}")
            },
            "object": {"key": event_key(key), "size": size, "sequencer": format!("{sequencer:016X}")}
        }
    }]})
}

pub fn run(a: Args) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(demo(a))
}

async fn demo(a: Args) -> Result<()> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&a.dir)?;
    // Postgres, through the loader's own pool.
    let config = Arc::new(Config::from_lookup(|k| {
        (k == "DATABASE_URL").then(|| a.database_url.clone())
    })?);
    let pool = sluice_loader::pool(&config).await?;
    let table_exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public.hotmart_sales') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .context("connecting to Postgres")?;
    let counter = a.dir.join("demo-run");
    let run = match std::fs::read_to_string(&counter) {
        Ok(n) if table_exists => n.trim().parse::<u64>().unwrap_or(0) + 1,
        _ => 0,
    };
    // S3: S3_ENDPOINT_URL, or a directory served in-process.
    let (client, query_location) = match std::env::var("S3_ENDPOINT_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(url) => {
            let aws = aws_config::load_from_env().await;
            let location = sluice_query::Location::bucket(BUCKET, &aws, Some(&url))?;
            (sluice_edge::s3_client(&aws), location)
        }
        None => {
            let root = a.dir.join("s3");
            if run == 0 {
                let _ = std::fs::remove_dir_all(&root);
            }
            let endpoint =
                sluice_testkit::serve_s3_in_background(root, ([127, 0, 0, 1], 0).into())?;
            let location = sluice_query::Location::bucket(
                BUCKET,
                &endpoint.sdk_config(),
                Some(&endpoint.url),
            )?;
            (endpoint.client(), location)
        }
    };
    let _ = client.create_bucket().bucket(BUCKET).send().await;
    if run == 0 {
        // A fresh database: start the watermark over too.
        let _ = client
            .delete_object()
            .bucket(BUCKET)
            .key(sluice_edge::layout::Layout::default().state("hotmart-sales"))
            .send()
            .await;
    }
    // The sample API, one revision per run.
    let api_server = SampleApi::start(Settings {
        n: a.records,
        revision: run,
        ..Settings::default()
    })
    .await?;
    let toml = format!(
        "[source.hotmart-sales]\npreset = \"hotmart-sales\"\nbase_url = \"{}\"\n\
         [source.hotmart-sales.window]\ninitial_start = \"2023-11-14T00:00:00Z\"\nlookback = \"30m\"\ndelay = \"1m\"\n",
        api_server.base_url()
    );
    let source = Sources::from_toml(&toml)?
        .get("hotmart-sales")
        .context("source")?
        .clone();
    let creds = Credentials::resolve(&source, sluice_sample_api::hotmart_env, None)?;
    let api = Api::new(source, creds)?;
    let lake = Lake {
        out: S3Out {
            client: client.clone(),
            bucket: BUCKET.into(),
            part_size: 8 << 20,
        },
        layout: sluice_edge::layout::Layout::default(),
    };
    // Run k's clock: the end of the (k+1)-th slice of the sales.
    let slice_ms = (a.records / 3).max(1) as i64 * 60_000;
    let now = jiff::Timestamp::from_millisecond(BASE_TS + (run as i64 + 1) * slice_ms)?;
    let run_id = sluice_ingest::new_run_id(jiff::Timestamp::now());
    // Each object the ingest closes is delivered to a loader as its S3 notification while the
    // ingest goes on: at most LOADERS at once, as loader Lambdas.
    let raw = lake.layout.raw_source("hotmart-sales");
    let listing = Listing::from_now(client.clone(), BUCKET, &raw, &CSV_SUFFIXES).await?;
    let loaders: Vec<Loader> = (0..LOADERS)
        .map(|_| Loader::new(pool.clone(), config.clone()))
        .collect();
    let store = Arc::new(S3Store {
        client: client.clone(),
    });
    let fetch = async {
        let kind = RunKind::Scheduled { now };
        anyhow::Ok(sluice_ingest::run::run(&api, &lake, kind, &run_id).await?)
    };
    let load = move |loader: Arc<Loader>, c: Created| {
        let store = store.clone();
        async move {
            let event = notification(BUCKET, &c.key, c.size, run * 1000 + c.sequence);
            sluice_loader::handle(&event, &loader, &*store)
                .await
                .map_err(|e| anyhow::anyhow!("loader: {}", e.message))
        }
    };
    let t_run = Instant::now();
    let (ingest, loads) = deliver_while(listing, fetch, loaders, NOTIFY_POLL, load).await?;
    drop(api_server);
    let mut rows = RowCounts::default();
    for s in &loads {
        rows += s.rows;
    }
    let load_ms = (t_run.elapsed().as_millis() as u64).saturating_sub(ingest.duration_ms);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM public.hotmart_sales")
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
    let sample: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT purchase_transaction, purchase_status, purchase_price_value::text, buyer_name \
         FROM public.hotmart_sales ORDER BY _sluice_loaded_at DESC, purchase_transaction DESC LIMIT 5",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    let collected = crate::demo_collect::run(client, BUCKET, &query_location, run).await?;
    std::fs::write(&counter, run.to_string())?;
    let report = json!({
        "run": run + 1,
        "window": ingest.window,
        "pages": ingest.pages,
        "records_fetched": ingest.records,
        "objects_written": ingest.objects.iter().map(|o| &o.key).collect::<Vec<_>>(),
        "rows": rows,
        "table_rows": total,
        "ingest_ms": ingest.duration_ms,
        "load_ms": load_ms,
        "total_ms": t0.elapsed().as_millis() as u64,
        "api": {
            "requests": collected.requests.iter()
                .map(|(what, status, answer)| json!({"request": what, "status": status, "answer": answer}))
                .collect::<Vec<_>>(),
            "lake_objects": collected.objects.len(),
            "lake_rows": collected.rows.len(),
            "query": {
                "example": crate::demo_collect::EXAMPLE,
                "columns": collected.query.columns,
                "rows": collected.query.rows,
            },
        },
        "raw_query": {
            "sql": crate::demo_collect::RAW_QUERY,
            "columns": collected.raw.columns,
            "rows": collected.raw.rows,
        },
    });
    if a.json {
        println!("{report}");
        return Ok(());
    }
    let w = ingest.window.context("window")?;
    println!(
        "sluice demo, run {} — sample API ({} sales, revision {run}) → S3 → Postgres",
        run + 1,
        a.records
    );
    println!(
        "ingest  window {} → {}: {} pages, {} records, {} object(s) in {} ms",
        w.start,
        w.end,
        ingest.pages,
        ingest.records,
        ingest.objects.len(),
        ingest.duration_ms
    );
    for o in &ingest.objects {
        println!("        s3://{BUCKET}/{}", o.key);
    }
    println!(
        "loader  {} rows read: {} inserted, {} updated, {} unchanged, {} rejected, {} duplicates; done {load_ms} ms after the ingest",
        rows.rows_read, rows.inserted, rows.updated, rows.unchanged, rows.rejected, rows.duplicates
    );
    println!("table   public.hotmart_sales: {total} rows; the latest loaded:");
    println!(
        "        {:<12} {:<11} {:>9}  buyer",
        "transaction", "status", "price"
    );
    for (tx, status, price, buyer) in sample {
        println!("        {tx:<12} {status:<11} {price:>9}  {buyer}");
    }
    crate::demo_collect::print(&collected, BUCKET);
    println!(
        "done in {} ms. Run it again for the next window: new sales inserted, changed ones updated.",
        t0.elapsed().as_millis()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_are_form_encoded_with_slashes_kept() {
        assert_eq!(
            event_key("raw/hotmart-sales/dt=2024-01-15/a b+é.csv"),
            "raw/hotmart-sales/dt%3D2024-01-15/a+b%2B%C3%A9.csv"
        );
    }
}

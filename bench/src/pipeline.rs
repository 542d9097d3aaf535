//! End to end, overlapped: the ingest runs in a process of its own (as its Lambda does) and
//! closes an object per window chunk; each object goes to a loader as it lands (testkit's
//! stand-in for S3 notifications), at most K loaders at once, each with its own pool as each
//! Lambda instance has. Timed from the ingest's start to the last load's end.
//!
//! ```text
//! sluice-bench pipeline API_URL S3_URL N [--concurrency K] [--max-span 7d] [--name NAME]
//! ```

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sluice_edge::layout::CSV_SUFFIXES;
use sluice_loader::{Config, Loader, ObjectRef, RowCounts, S3Store};
use sluice_testkit::notify::{Created, Listing, deliver_while};

use crate::ingest::{copy_floors, endpoint, fresh_tables};
use crate::peak_rss_mb;

/// How often the bucket is listed for new objects: S3 notifies within about this.
const POLL: Duration = Duration::from_millis(10);

/// What to run: the ingest's arguments and the loaders' concurrency.
pub struct Pipeline<'a> {
    pub api_url: &'a str,
    pub s3_url: &'a str,
    pub n: u64,
    pub concurrency: usize,
    pub max_span: Option<&'a str>,
    pub name: &'a str,
}

/// Runs the ingest process to its end (`sluice-bench ingest …` with `args`); its JSON line,
/// and when it ended (from `t0`).
fn ingest_process(args: Vec<String>, t0: Instant) -> Result<(serde_json::Value, f64)> {
    let out = Command::new(std::env::current_exe()?)
        .arg("ingest")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("starting the ingest")?;
    let ended = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("the ingest failed: {}", out.status);
    }
    let line = serde_json::from_slice(&out.stdout).context("the ingest's line")?;
    Ok((line, ended))
}

/// `sluice-bench pipeline …`: one overlapped run into a fresh `hotmart_sales` table, checked
/// after (every row read is there once), then Postgres' own `COPY` of its rows timed.
pub fn pipeline(p: &Pipeline<'_>) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let config = Arc::new(Config::from_env()?);
        let pool = sluice_loader::pool(&config).await?;
        fresh_tables(&pool).await?;
        let client = endpoint(p.s3_url).client();
        let bucket = format!("e2e-overlap-{}", std::process::id());
        let _ = client.create_bucket().bucket(&bucket).send().await;
        let mut loaders = Vec::new();
        for _ in 0..p.concurrency.max(1) {
            loaders.push(Loader::new(
                sluice_loader::pool(&config).await?,
                config.clone(),
            ));
        }
        let store = Arc::new(S3Store {
            client: client.clone(),
        });
        let listing = Listing::new(client, &bucket, "raw/", &CSV_SUFFIXES);
        let t0 = Instant::now();
        let mut args = vec![p.api_url.to_owned(), p.s3_url.to_owned(), p.n.to_string()];
        args.extend(["--bucket".to_owned(), bucket.clone()]);
        if let Some(span) = p.max_span {
            args.extend(["--max-span".to_owned(), span.to_owned()]);
        }
        let ingest =
            async move { tokio::task::spawn_blocking(move || ingest_process(args, t0)).await? };
        let load = {
            let bucket = bucket.clone();
            move |loader: Arc<Loader>, c: Created| {
                let (store, bucket) = (store.clone(), bucket.clone());
                async move {
                    let obj = ObjectRef {
                        bucket,
                        key: c.key,
                        ..ObjectRef::default()
                    };
                    let started = t0.elapsed().as_secs_f64();
                    let s = loader.load(&*store, &obj).await?;
                    anyhow::Ok((started, t0.elapsed().as_secs_f64(), s.rows))
                }
            }
        };
        let ((ingest, ingest_ended), loads) =
            deliver_while(listing, ingest, loaders, POLL, load).await?;
        let secs = t0.elapsed().as_secs_f64();
        let rss = peak_rss_mb();
        let mut rows = RowCounts::default();
        for (_, _, r) in &loads {
            rows += *r;
        }
        crate::concurrency::check_table(&pool, &rows).await?;
        if rows.rows_read != ingest["records"].as_u64().unwrap_or(0) {
            bail!(
                "the ingest wrote {} records, the loaders read {}",
                ingest["records"],
                rows.rows_read
            );
        }
        let (floor, floor_binary) = copy_floors(&pool).await?;
        let first_load = loads.first().map_or(0.0, |l| l.0);
        let round = |s: f64| (s * 1e4).round() / 1e4;
        println!(
            "{}",
            serde_json::json!({
                "baseline": p.name,
                "concurrency": p.concurrency,
                "objects": loads.len(),
                "records": rows.rows_read,
                "inserted": rows.inserted,
                "seconds": round(secs),
                "records_per_s": (rows.rows_read as f64 / secs).round(),
                "ingest_s": round(ingest_ended),
                "first_load_started_s": round(first_load),
                "after_ingest_s": round(secs - ingest_ended),
                "api_wait_s": ingest["api_wait_s"],
                "pg_copy_floor_s": round(floor),
                "pg_copy_floor_binary_s": round(floor_binary),
                "peak_rss_mb": {"ingest": ingest["peak_rss_mb"], "loaders": rss},
            })
        );
        anyhow::Ok(())
    })
}

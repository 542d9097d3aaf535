//! Ingest drivers: a whole run against an API into an S3 endpoint, the flatten+upload path on a
//! file, and a standalone S3 endpoint process (so its memory is not counted against sluice's).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::time::Instant;

use anyhow::{Context, Result};
use sluice_edge::layout::is_csv;
use sluice_flatten::{Flattener, Options};
use sluice_ingest::sink::ObjectWriter;
use sluice_ingest::{Api, Credentials, Ingest, Lake, RunKind, S3Out, Sources};
use sluice_testkit::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Endpoint};

use crate::peak_rss_mb;

pub(crate) fn endpoint(url: &str) -> S3Endpoint {
    S3Endpoint {
        url: url.to_owned(),
        access_key: S3_ACCESS_KEY.into(),
        secret_key: S3_SECRET_KEY.into(),
    }
}

async fn new_bucket(client: &aws_sdk_s3::Client, name: &str) -> Result<()> {
    let _ = client.create_bucket().bucket(name).send().await;
    Ok(())
}

/// `sluice-bench s3 DIR PORT`: serves DIR as an S3 endpoint on 127.0.0.1:PORT until killed.
pub fn serve(dir: &str, port: u16) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        std::fs::create_dir_all(dir)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        sluice_testkit::serve_s3(dir.into(), listener).await
    })
}

/// `sluice-bench ingest API_URL S3_URL N [--gzip] [--name NAME] [--bucket B] [--max-span S]`:
/// one backfill run of the hotmart-sales preset over every sale of an N-sale data set, an
/// object per window chunk of at most S (the preset's 7 days unless told).
pub fn ingest(
    api_url: &str,
    s3_url: &str,
    n: u64,
    gzip: bool,
    name: &str,
    bucket: Option<&str>,
    max_span: Option<&str>,
) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut toml = format!(
            "[source.hotmart-sales]\npreset = \"hotmart-sales\"\nbase_url = \"{api_url}\"\ngzip = {gzip}\nrequests_per_minute = 1000000\n"
        );
        if let Some(span) = max_span {
            toml += &format!("[source.hotmart-sales.window]\nmax_span = \"{span}\"\n");
        }
        let sources = Sources::from_toml(&toml)?;
        let source = sources.get("hotmart-sales").context("source")?.clone();
        let creds = Credentials::resolve(
            &source,
            sluice_sample_api::hotmart_env,
            None,
        )?;
        let client = endpoint(s3_url).client();
        let bucket = bucket.map_or_else(|| format!("bench-{}", std::process::id()), str::to_owned);
        new_bucket(&client, &bucket).await?;
        let ingest = Ingest {
            apis: BTreeMap::from([("hotmart-sales".to_owned(), Api::new(source, creds)?)]),
            lake: Lake {
                out: S3Out {
                    client,
                    bucket,
                    part_size: 8 << 20,
                },
                layout: sluice_edge::layout::Layout::default(),
            },
        };
        let base = sluice_sample_api::data::BASE_TS;
        let start = jiff::Timestamp::from_millisecond(base - 86_400_000)?;
        let end = jiff::Timestamp::from_millisecond(base + n as i64 * 60_000 + 4 * 3_600_000)?;
        let t0 = Instant::now();
        let s = sluice_ingest::run::run(
            &ingest.apis["hotmart-sales"],
            &ingest.lake,
            RunKind::Backfill { start, end },
            "bench",
        )
        .await?;
        let secs = t0.elapsed().as_secs_f64();
        // A run that stops paging early is fast and wrong: it must not pass for a measurement.
        if s.records != n {
            anyhow::bail!("the ingest took {} of the {n} sales", s.records);
        }
        println!(
            "{}",
            serde_json::json!({
                "baseline": name,
                "records": s.records,
                "pages": s.pages,
                "objects": s.objects.len(),
                "bytes": s.objects.iter().map(|o| o.bytes).sum::<u64>(),
                "seconds": (secs * 1e4).round() / 1e4,
                "records_per_s": (s.records as f64 / secs).round(),
                "api_wait_s": (s.api.api_wait_ms as f64 / 1e3),
                "api_wait_share": ((s.api.api_wait_ms as f64 / 1e3 / secs) * 100.0).round() / 100.0,
                "requests": s.api.requests,
                "peak_rss_mb": peak_rss_mb(),
            })
        );
        anyhow::Ok(())
    })
}

/// `sluice-bench flatten-upload IN.jsonl S3_URL`: records from a file → flatten → CSV → S3
/// (the ingest's sink), to face the Python DFS flattener on the same records.
pub fn flatten_upload(input: &str, s3_url: &str) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = endpoint(s3_url).client();
        let bucket = format!("bench-fu-{}", std::process::id());
        new_bucket(&client, &bucket).await?;
        let out = S3Out {
            client,
            bucket,
            part_size: 8 << 20,
        };
        let t0 = Instant::now();
        let mut f = Flattener::new(Options::default());
        let mut objects: Vec<ObjectWriter> = Vec::new();
        let mut open: Option<ObjectWriter> = None;
        let mut n = 0u64;
        let reader = BufReader::with_capacity(256 * 1024, File::open(input)?);
        for line in reader.split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            f.flatten(&line)
                .map_err(|e| anyhow::anyhow!("record {}: {}", n + 1, e.message))?;
            if open.as_ref().is_some_and(|w| w.width() < f.schema().len()) {
                objects.push(open.take().expect("open"));
            }
            let w = match &mut open {
                Some(w) => w,
                None => open.insert(ObjectWriter::new(
                    format!(
                        "{}part{}.csv",
                        sluice_edge::layout::Layout::default().raw_source("bench"),
                        objects.len() + 1
                    ),
                    false,
                    f.schema().names(),
                    Default::default(),
                )?),
            };
            w.write_row(f.row())?;
            n += 1;
            if n.is_multiple_of(500) {
                w.upload_ready(&out).await?;
            }
        }
        objects.extend(open);
        let mut bytes = 0;
        for w in objects {
            bytes += w.finish(&out).await?.bytes;
        }
        let secs = t0.elapsed().as_secs_f64();
        crate::emit(
            "sluice_flatten_upload",
            n,
            secs,
            input,
            serde_json::json!({"columns": f.schema().len(), "bytes": bytes}),
        )
    })
}

/// `sluice-bench load-s3 S3_URL BUCKET PREFIX [--concurrency K]`: every `.csv`/`.csv.gz`
/// object under PREFIX loaded into a fresh `hotmart_sales` table by K loaders at once (1 unless
/// told), each with its own pool as each Lambda instance has; then the table is checked (every
/// row read is there once) and Postgres' own `COPY` of its rows is timed.
pub fn load_s3(s3_url: &str, bucket: &str, prefix: &str, concurrency: usize) -> Result<()> {
    use sluice_loader::{Config, S3Store};
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let config = std::sync::Arc::new(Config::from_env()?);
        let pool = sluice_loader::pool(&config).await?;
        fresh_tables(&pool).await?;
        let client = endpoint(s3_url).client();
        let mut keys = Vec::new();
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for o in page?.contents() {
                let k = o.key().unwrap_or_default();
                if is_csv(k) {
                    keys.push(k.to_owned());
                }
            }
        }
        let objects = keys.len();
        let store = std::sync::Arc::new(S3Store { client });
        let t0 = Instant::now();
        let rows = crate::concurrency::load_all(&config, &store, bucket, keys, concurrency).await?;
        let secs = t0.elapsed().as_secs_f64();
        // The loader's high-water mark, before the floor below holds the whole table in memory.
        let rss = peak_rss_mb();
        crate::concurrency::check_table(&pool, &rows).await?;
        let (floor, floor_binary) = copy_floors(&pool).await?;
        println!(
            "{}",
            serde_json::json!({
                "pg_copy_floor_s": (floor * 1e4).round() / 1e4,
                "pg_copy_floor_binary_s": (floor_binary * 1e4).round() / 1e4,
                "baseline": "sluice_loader_s3",
                "concurrency": concurrency,
                "objects": objects,
                "records": rows.rows_read,
                "inserted": rows.inserted,
                "seconds": (secs * 1e4).round() / 1e4,
                "records_per_s": (rows.rows_read as f64 / secs).round(),
                "peak_rss_mb": rss,
            })
        );
        anyhow::Ok(())
    })
}

/// No `hotmart_sales` table and no ledger: the next load starts from nothing.
pub(crate) async fn fresh_tables(pool: &sqlx::PgPool) -> Result<()> {
    for t in ["public.hotmart_sales", "public.sluice_loads"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {t}")))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Postgres' own floors for the load, in seconds: `(text, binary)`. See [`copy_floor_in`].
pub(crate) async fn copy_floors(pool: &sqlx::PgPool) -> Result<(f64, f64)> {
    Ok((
        copy_floor_in(pool, "").await?,
        copy_floor_in(pool, " (FORMAT binary)").await?,
    ))
}

/// Postgres' own floor for the load: the rows just loaded, copied out, then timed as a plain
/// `COPY` (`options`: "" for the text format, Postgres' default) into an empty copy of the
/// table (same types, same primary key), in one transaction that is rolled back. The copy is a
/// logged table, as the loader's is: a temporary one would skip the WAL and shared buffers the
/// load pays for.
async fn copy_floor_in(pool: &sqlx::PgPool, options: &str) -> Result<f64> {
    use futures_util::TryStreamExt;
    let mut conn = pool.acquire().await?;
    let mut data = Vec::new();
    let mut out = conn
        .copy_out_raw(&format!("COPY public.hotmart_sales TO STDOUT{options}"))
        .await?;
    while let Some(chunk) = out.try_next().await? {
        data.extend_from_slice(&chunk);
    }
    drop(out);
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("CREATE TABLE public.sluice_bench_floor (LIKE public.hotmart_sales INCLUDING ALL)")
        .execute(&mut *tx)
        .await?;
    let t0 = Instant::now();
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY public.sluice_bench_floor FROM STDIN{options}"
        ))
        .await?;
    for chunk in data.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    let secs = t0.elapsed().as_secs_f64();
    tx.rollback().await?;
    Ok(secs)
}

//! Loaders side by side: one CSV split into objects of distinct keys, then loaded by K loaders
//! at once into one table, each with its own connection pool as each Lambda instance has.
//!
//! ```text
//! sluice-bench put-parts IN.csv S3_URL BUCKET PARTS      # IN split into PARTS objects
//! sluice-bench load-s3 S3_URL BUCKET PREFIX --concurrency K
//! ```

use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use sluice_loader::{Loader, ObjectRef, RowCounts, S3Store};

use crate::ingest::endpoint;

/// Where `put-parts` writes: one object per part under the hotmart-sales source's raw prefix.
const PARTS_PREFIX: &str = "raw/hotmart-sales/dt=2026-12-02/";

/// The records of a CSV file (header first), split where a line ends outside quotes.
fn records(input: &str) -> Result<Vec<Vec<u8>>> {
    let reader = std::io::BufReader::new(std::fs::File::open(input).context(input.to_owned())?);
    let (mut out, mut open, mut quotes) = (Vec::new(), Vec::new(), 0usize);
    for line in reader.split(b'\n') {
        let line = line?;
        quotes += line.iter().filter(|&&b| b == b'"').count();
        open.extend_from_slice(&line);
        open.push(b'\n');
        if quotes.is_multiple_of(2) {
            out.push(std::mem::take(&mut open));
            quotes = 0;
        }
    }
    if !open.is_empty() {
        bail!("{input}: ends inside a quoted field");
    }
    Ok(out)
}

/// `put-parts`: the file's rows in PARTS consecutive runs, each an object with the header.
pub fn put_parts(input: &str, s3_url: &str, bucket: &str, parts: usize) -> Result<()> {
    let records = records(input)?;
    let (header, rows) = records.split_first().context("an empty file")?;
    let per = rows.len().div_ceil(parts.max(1));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = endpoint(s3_url).client();
        let _ = client.create_bucket().bucket(bucket).send().await;
        for (i, chunk) in rows.chunks(per).enumerate() {
            let mut body = header.clone();
            body.extend(chunk.iter().flatten());
            client
                .put_object()
                .bucket(bucket)
                .key(format!("{PARTS_PREFIX}part{:03}.csv", i + 1))
                .body(body.into())
                .send()
                .await?;
        }
        anyhow::Ok(())
    })
}

/// K workers over one queue of keys, each with its own loader (and pool), until the queue is
/// empty; the rows they counted, summed. Any failed object fails the run.
pub async fn load_all(
    config: &Arc<sluice_loader::Config>,
    store: &Arc<S3Store>,
    bucket: &str,
    keys: Vec<String>,
    workers: usize,
) -> Result<RowCounts> {
    let queue = Arc::new(Mutex::new(VecDeque::from(keys)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let loader = Loader::new(sluice_loader::pool(config).await?, config.clone());
        let (queue, store, bucket) = (queue.clone(), store.clone(), bucket.to_owned());
        tasks.spawn(async move {
            let mut rows = RowCounts::default();
            loop {
                let Some(key) = queue.lock().expect("queue").pop_front() else {
                    return anyhow::Ok(rows);
                };
                let obj = ObjectRef {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    ..ObjectRef::default()
                };
                let summary = loader.load(&*store, &obj).await.context(key)?;
                eprintln!("{}", serde_json::to_string(&summary)?);
                rows += summary.rows;
            }
        });
    }
    let mut rows = RowCounts::default();
    while let Some(done) = tasks.join_next().await {
        rows += done??;
    }
    Ok(rows)
}

/// What the table holds after a run into a fresh table: every row inserted is there once, and
/// every row read is accounted for (inserted, updated, unchanged, rejected or a duplicate).
pub async fn check_table(pool: &sqlx::PgPool, rows: &RowCounts) -> Result<()> {
    let (count, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT purchase_transaction) FROM public.hotmart_sales",
    )
    .fetch_one(pool)
    .await?;
    let counted = rows.inserted + rows.updated + rows.unchanged + rows.rejected + rows.duplicates;
    if count as u64 != rows.inserted || distinct != count || counted != rows.rows_read {
        bail!("{rows:?}, but the table holds {count} rows ({distinct} distinct keys)");
    }
    Ok(())
}

//! The lake benchmarks' drivers (`bench/query.sh`):
//!
//! ```text
//! sluice-bench lake IN.jsonl ROOT DAYS PER_OBJECT   # unicorns → lake objects under ROOT/lake/unicorns/
//! sluice-bench query ROOT NAME SQL                  # Lake::open + the query, timed in-process
//! sluice-bench compact S3_URL BUCKET DAY            # one day compacted, then its replaced objects deleted
//! ```
//! `lake` spreads the records over DAYS partitions (`dt=2026-01-01` on), PER_OBJECT records to
//! an object: 1 to 10 is the API's one object per request, a large number a compacted lake.

use std::io::{BufRead, BufReader};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_api::{Datasets, lake, validate};
use sluice_edge::layout::Layout;

fn datasets() -> Result<Datasets> {
    Ok(Datasets::from_dir("datasets".as_ref())?)
}

pub fn write_lake(input: &str, root: &str, days: usize, per_object: usize) -> Result<()> {
    let all = datasets()?;
    let d = all.get("unicorns").context("datasets/unicorns.toml")?;
    let layout = Layout::default();
    let first = jiff::civil::date(2026, 1, 1);
    let lines: Vec<String> = BufReader::new(std::fs::File::open(input)?)
        .lines()
        .collect::<Result<_, _>>()?;
    let per_day = lines.len().div_ceil(days.max(1));
    let (mut objects, mut records) = (0u64, 0u64);
    for (day_index, day_lines) in lines.chunks(per_day.max(1)).enumerate() {
        let day = first + jiff::ToSpan::days(day_index as i64);
        for (o, chunk) in day_lines.chunks(per_object.max(1)).enumerate() {
            let event = format!("bench-{day_index:02}-{o:07}");
            let stamp = lake::Stamp {
                event_id: event.clone(),
                received_at: jiff::Timestamp::from_second(
                    1_767_225_600 + (day_index * 86_400 + o) as i64,
                )?,
                body_sha256: String::new(),
            };
            let mut rows = Vec::with_capacity(chunk.len());
            for line in chunk {
                let v: Value = serde_json::from_str(line)?;
                let checked =
                    validate::record(d, &v, &[]).map_err(|p| anyhow::anyhow!("{input}: {p:?}"))?;
                rows.push(checked);
            }
            let path = std::path::Path::new(root).join(layout.lake_object("unicorns", day, &event));
            std::fs::create_dir_all(path.parent().context("a parent")?)?;
            std::fs::write(&path, lake::parquet(d, &rows, &stamp)?)?;
            objects += 1;
            records += rows.len() as u64;
        }
    }
    println!(
        "{}",
        json!({"objects": objects, "records": records, "days": days})
    );
    Ok(())
}

pub fn query(root: &str, name: &str, sql: &str) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let t0 = Instant::now();
    let rows = rt.block_on(async {
        let location = sluice_query::Location::Dir(root.into());
        let lake = sluice_query::Lake::open(&location, &Layout::default(), &datasets()?).await?;
        anyhow::Ok(lake.query(sql).await?.rows.len())
    })?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"baseline": name, "seconds": (secs * 1e4).round() / 1e4, "rows": rows,
               "peak_rss_mb": crate::peak_rss_mb()})
    );
    Ok(())
}

pub fn compact(s3_url: &str, bucket: &str, day: &str) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let day: jiff::civil::Date = day.parse()?;
    let all = datasets()?;
    let d = all.get("unicorns").context("unicorns")?;
    let settings = sluice_compact::plan::Settings {
        grace: jiff::SignedDuration::ZERO,
        ..Default::default()
    };
    let client = crate::ingest::endpoint(s3_url).client();
    let c = sluice_compact::Compactor::new(client, bucket, Layout::default(), settings);
    let t0 = Instant::now();
    let (merge, retire) = rt.block_on(async {
        let now = jiff::Timestamp::now();
        let merge = c.partition(d, day, now).await?;
        let t1 = Instant::now();
        let retire = c.partition(d, day, jiff::Timestamp::now()).await?;
        anyhow::Ok(((merge, t1), retire))
    })?;
    let ((merge, t1), retire) = (merge, retire);
    let merge_secs = t1.duration_since(t0).as_secs_f64();
    let total = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"baseline": "sluice_compact", "objects_in": merge.merged, "objects_out": merge.outputs.len(),
               "records": merge.rows, "merge_seconds": (merge_secs * 1e3).round() / 1e3,
               "retire_seconds": ((total - merge_secs) * 1e3).round() / 1e3, "retired": retire.retired,
               "records_per_s": (merge.rows as f64 / merge_secs).round(), "peak_rss_mb": crate::peak_rss_mb()})
    );
    Ok(())
}

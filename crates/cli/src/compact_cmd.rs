//! `sluice compact`: the scheduled compaction function's work, by hand — one dataset's closed
//! partitions (or those before a day) rewritten into objects of a target size ([`sluice_compact`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use sluice_api::Datasets;
use sluice_compact::plan::Settings;
use sluice_compact::{Compactor, config::AREAS};
use sluice_edge::layout::{Layout, utc_day};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset.
    #[arg(long)]
    dataset: String,
    /// Only partitions before this day (YYYY-MM-DD; default today, UTC: today's is still written).
    #[arg(long)]
    before: Option<jiff::civil::Date>,
    /// The lake bucket (S3_ENDPOINT_URL for a local endpoint).
    #[arg(long, env = "BUCKET")]
    bucket: String,
    /// The dataset files' directory.
    #[arg(long, env = "DATASETS", default_value = "datasets")]
    datasets: PathBuf,
    /// Merged objects' size, in MiB.
    #[arg(long, default_value_t = 128)]
    target_mb: u64,
    /// How long replaced objects stay readable after their replacement is committed, in minutes
    /// (longer than any query runs). 0 deletes them on the next run.
    #[arg(long, default_value_t = 60)]
    grace_minutes: u64,
}

pub fn run(a: Args) -> Result<()> {
    let datasets = Datasets::from_dir(&a.datasets)
        .with_context(|| format!("datasets in {}", a.datasets.display()))?;
    let d = datasets
        .get(&a.dataset)
        .with_context(|| format!("no dataset {:?} in {}", a.dataset, a.datasets.display()))?;
    let settings = Settings {
        target_bytes: a.target_mb.max(1) << 20,
        grace: jiff::SignedDuration::from_mins(a.grace_minutes as i64),
    };
    let now = jiff::Timestamp::now();
    let before = a.before.unwrap_or_else(|| utc_day(now));
    let reports = tokio::runtime::Runtime::new()?.block_on(async {
        let aws = aws_config::load_from_env().await;
        let c = Compactor::new(
            sluice_edge::s3_client(&aws),
            &a.bucket,
            Layout::from_env(&AREAS),
            settings,
        );
        c.dataset(d, before, now).await
    })?;
    for r in &reports {
        println!("{}", serde_json::to_string(r)?);
    }
    eprintln!("{} partition(s) before {before}", reports.len());
    Ok(())
}

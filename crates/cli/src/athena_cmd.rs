//! `sluice athena ddl`: the Glue tables of the datasets, as Athena DDL.

use std::path::PathBuf;

use anyhow::{Context, Result};
use sluice_api::Datasets;
use sluice_api::catalog::Table;
use sluice_edge::layout::{Area, Layout};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print `CREATE EXTERNAL TABLE` for each dataset: Parquet under the lake, partitioned by
    /// `dt` with partition projection (the template creates the same tables).
    #[command(
        after_help = "Example:\n  sluice athena ddl --bucket my-lake > tables.sql\n  \
        sluice athena ddl --bucket my-lake --dataset unicorns --database analytics"
    )]
    Ddl(DdlArgs),
}

#[derive(Debug, clap::Args)]
pub struct DdlArgs {
    /// The lake bucket.
    #[arg(long, env = "BUCKET")]
    bucket: String,
    /// The dataset files' directory.
    #[arg(long, env = "DATASETS", default_value = "datasets")]
    datasets: PathBuf,
    /// Only this dataset.
    #[arg(long)]
    dataset: Option<String>,
    /// The Glue database.
    #[arg(long, default_value = "sluice")]
    database: String,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Ddl(a) => print!("{}", ddl(&a)?),
    }
    Ok(())
}

fn ddl(a: &DdlArgs) -> Result<String> {
    let datasets = Datasets::from_dir(&a.datasets)
        .with_context(|| format!("datasets in {}", a.datasets.display()))?;
    let layout = Layout::from_env(&[Area::Lake]);
    let lake = format!("s3://{}/{}", a.bucket, layout.prefix(Area::Lake));
    let mut out = String::new();
    let mut found = false;
    for d in datasets.iter() {
        if a.dataset.as_ref().is_some_and(|only| *only != d.name) {
            continue;
        }
        found = true;
        out.push_str(&Table::new(d, &lake)?.ddl(&a.database));
        out.push('\n');
    }
    match (found, &a.dataset) {
        (false, Some(only)) => anyhow::bail!("no dataset {only:?} in {}", a.datasets.display()),
        _ => Ok(out),
    }
}

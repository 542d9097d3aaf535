//! `sluice query`: SQL over the lake with DataFusion ([`sluice_query`]): a directory laid out as
//! the bucket, the local S3 endpoint, or a bucket on AWS. The same tables and views as Athena.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use sluice_api::Datasets;
use sluice_edge::layout::{Area, Layout};
use sluice_query::{Lake, Location, examples};

use crate::rows_out::{Format, print_rows};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SQL. Each dataset is a view (`unicorns`: one copy of each record) over its table
    /// (`unicorns_objects`), with `dt` the partition; each ingest source's raw CSV is
    /// `<source>_raw`.
    #[arg(required_unless_present_any = ["example", "list"])]
    sql: Option<String>,
    /// Run the named example query from --queries instead.
    #[arg(long, conflicts_with = "sql")]
    example: Option<String>,
    /// List the example queries.
    #[arg(long, conflicts_with_all = ["sql", "example"])]
    list: bool,
    /// The example queries' directory.
    #[arg(long, default_value = "queries")]
    queries: PathBuf,
    /// A directory laid out as the bucket (`<dir>/lake/<dataset>/dt=…/`).
    #[arg(long, conflicts_with = "bucket")]
    dir: Option<PathBuf>,
    /// The lake bucket, over S3 (S3_ENDPOINT_URL for a local endpoint; AWS_* as for the SDK).
    #[arg(long, env = "BUCKET")]
    bucket: Option<String>,
    /// The dataset files' directory.
    #[arg(long, env = "DATASETS", default_value = "datasets")]
    datasets: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(a: Args) -> Result<()> {
    if a.list {
        for e in examples::load(&a.queries).with_context(|| a.queries.display().to_string())? {
            println!("{:<28} {}", e.name, e.description);
        }
        return Ok(());
    }
    let sql = match (&a.sql, &a.example) {
        (Some(sql), _) => sql.clone(),
        (None, Some(name)) => {
            examples::find(&a.queries, name)
                .with_context(|| a.queries.display().to_string())?
                .with_context(|| {
                    format!("no example {name:?} in {} (--list)", a.queries.display())
                })?
                .sql
        }
        (None, None) => bail!("give the SQL or --example NAME"),
    };
    let datasets = Datasets::from_dir(&a.datasets)
        .with_context(|| format!("datasets in {}", a.datasets.display()))?;
    let rt = tokio::runtime::Runtime::new()?;
    let answer = rt.block_on(async {
        let location = location(a.dir.as_ref(), a.bucket.as_deref()).await?;
        let lake = Lake::open(&location, &layout(), &datasets).await?;
        Ok::<_, anyhow::Error>(lake.query(&sql).await?)
    })?;
    let names: Vec<&str> = answer.columns.iter().map(String::as_str).collect();
    print_rows(
        &names,
        &answer.rows,
        a.format,
        &mut std::io::stdout().lock(),
    )?;
    eprintln!("{} rows", answer.rows.len());
    Ok(())
}

/// The lake's root: `dir`, or `bucket` over S3 (`S3_ENDPOINT_URL` for a local endpoint).
pub(crate) async fn location(dir: Option<&PathBuf>, bucket: Option<&str>) -> Result<Location> {
    Ok(match (dir, bucket) {
        (Some(dir), _) => Location::Dir(dir.clone()),
        (None, Some(bucket)) => {
            let aws = aws_config::load_from_env().await;
            let endpoint = std::env::var("S3_ENDPOINT_URL")
                .ok()
                .filter(|u| !u.is_empty());
            Location::bucket(bucket, &aws, endpoint.as_deref())?
        }
        (None, None) => bail!("where is the lake? --dir DIR or --bucket BUCKET (or BUCKET)"),
    })
}

/// The prefixes the tables are read from (the lake, the raw CSV and the sources' columns).
pub(crate) fn layout() -> Layout {
    Layout::from_env(&[Area::Lake, Area::Raw, Area::State])
}

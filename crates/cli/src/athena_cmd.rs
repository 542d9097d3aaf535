//! `sluice athena ddl`: the Glue tables of the datasets, as Athena DDL; `sluice athena query`:
//! one query through [`sluice_athena`], its rows printed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sluice_api::Datasets;
use sluice_api::catalog::Table;
use sluice_athena::{Athena, Query};

use crate::query_cmd;
use crate::rows_out::{Format, print_rows};
use sluice_edge::layout::{Area, Layout};
use sluice_query::Lake;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print `CREATE EXTERNAL TABLE` for each dataset: Parquet under the lake, partitioned by
    /// `dt` with partition projection (the template creates the same tables). With --raw, also
    /// each ingest source's raw CSV table, its columns read from the bucket.
    #[command(
        after_help = "Example:\n  sluice athena ddl --bucket my-lake > tables.sql\n  \
        sluice athena ddl --bucket my-lake --dataset unicorns --database analytics\n  \
        sluice athena ddl --bucket my-lake --raw"
    )]
    Ddl(DdlArgs),
    /// Run one query in Athena and print its rows. Values go in --param (bound by Athena, never
    /// pasted into the SQL).
    #[command(
        after_help = "Example:\n  sluice athena query --workgroup sluice-lake --database sluice \\\n    \"SELECT color, count(*) AS n FROM unicorns WHERE dt = ? GROUP BY 1\" --param \"'2024-05-01'\"\n\n\
        Polls with backoff (200 ms doubling, capped at 5 s) and stops the query at --timeout. AWS_* and AWS_ENDPOINT_URL are honoured."
    )]
    Query(QueryArgs),
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The SQL, with `?` for each --param.
    sql: String,
    /// A value for the next `?`, as a SQL literal: '2024-05-01' (quoted) or 42.
    #[arg(long = "param")]
    params: Vec<String>,
    #[arg(long, env = "ATHENA_WORKGROUP")]
    workgroup: Option<String>,
    #[arg(long, env = "ATHENA_DATABASE")]
    database: Option<String>,
    /// Reuse the results of the same query run within this many minutes.
    #[arg(long)]
    reuse_minutes: Option<u64>,
    /// Stop the query after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
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
    /// Also the raw CSV table of each ingest source (`<source>_raw`), from the columns its runs
    /// published under the bucket's state/ (read over S3; S3_ENDPOINT_URL for a local endpoint).
    /// Run it again when a source gains columns: it drops and creates the table.
    #[arg(long)]
    raw: bool,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Ddl(a) => print!("{}", ddl(&a)?),
        Command::Query(a) => query(&a)?,
    }
    Ok(())
}

fn query(a: &QueryArgs) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let mut q = Query::new(&a.sql);
    q.params = a.params.clone();
    q.workgroup = a.workgroup.clone();
    q.database = a.database.clone();
    q.reuse_max_age = a.reuse_minutes.map(|m| Duration::from_secs(m * 60));
    let rows = tokio::runtime::Runtime::new()?.block_on(async {
        let aws = aws_config::load_from_env().await;
        Athena::new(aws_sdk_athena::Client::new(&aws))
            .run(&q, deadline)
            .await
    })?;
    let names: Vec<&str> = rows.columns.iter().map(|c| c.name.as_str()).collect();
    let mut out = std::io::stdout().lock();
    print_rows(&names, &rows.rows, a.format, &mut out)?;
    eprintln!(
        "{} rows, query {}, {} bytes scanned{}",
        rows.rows.len(),
        rows.query_id,
        rows.bytes_scanned.unwrap_or(0),
        if rows.reused { " (reused results)" } else { "" }
    );
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
    if let (false, Some(only)) = (found, &a.dataset) {
        anyhow::bail!("no dataset {only:?} in {}", a.datasets.display());
    }
    if a.raw {
        let lake = tokio::runtime::Runtime::new()?.block_on(async {
            let location = query_cmd::location(None, Some(&a.bucket)).await?;
            let none = Datasets::default();
            Ok::<_, anyhow::Error>(Lake::open(&location, &query_cmd::layout(), &none).await?)
        })?;
        for t in lake.raw_tables() {
            out.push_str(&t.ddl(&a.database));
            out.push('\n');
        }
    }
    Ok(out)
}

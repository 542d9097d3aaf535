//! `sluice athena ddl`: the Glue tables of the datasets, as Athena DDL; `sluice athena query`:
//! one query through [`sluice_athena`], its rows printed.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use sluice_api::Datasets;
use sluice_api::catalog::Table;
use sluice_athena::{Athena, Query, Rows};
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
    /// Run one query in Athena and print its rows. Values go in --param (bound by Athena, never
    /// pasted into the SQL).
    #[command(
        after_help = "Example:\n  sluice athena query --workgroup sluice-lake --database sluice \\\n    \"SELECT color, count(*) AS n FROM unicorns WHERE dt = ? GROUP BY 1\" --param \"'2024-05-01'\"\n\n\
        Polls with backoff (200 ms doubling, capped at 5 s) and stops the query at --timeout. AWS_* and AWS_ENDPOINT_URL are honoured."
    )]
    Query(QueryArgs),
}

/// How rows are printed.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A header, then one line per row (NULL is an empty field, an empty string `""`).
    Csv,
    /// One JSON object per row.
    Jsonl,
    /// Aligned columns, for a terminal.
    Table,
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
    let mut out = std::io::stdout().lock();
    print_rows(&rows, a.format, &mut out)?;
    eprintln!(
        "{} rows, query {}, {} bytes scanned{}",
        rows.rows.len(),
        rows.query_id,
        rows.bytes_scanned.unwrap_or(0),
        if rows.reused { " (reused results)" } else { "" }
    );
    Ok(())
}

/// A cell as text: strings bare, NULL empty.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_rows(rows: &Rows, format: Format, out: &mut impl Write) -> Result<()> {
    let names: Vec<&str> = rows.columns.iter().map(|c| c.name.as_str()).collect();
    match format {
        Format::Jsonl => {
            for row in &rows.rows {
                let object: serde_json::Map<String, Value> = names
                    .iter()
                    .map(|n| n.to_string())
                    .zip(row.iter().cloned())
                    .collect();
                writeln!(out, "{}", Value::Object(object))?;
            }
        }
        Format::Csv => {
            let mut w = sluice_flatten::CsvWriter::new(out);
            w.write_fields(names.iter().map(Some))?;
            for row in &rows.rows {
                // NULL is an empty field; an empty string is `""`.
                let cells = row.iter().map(|v| (!v.is_null()).then(|| text(v)));
                w.write_fields(cells)?;
            }
            w.flush()?;
        }
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .rows
                .iter()
                .map(|r| r.iter().map(text).collect())
                .collect();
            let widths: Vec<usize> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    cells
                        .iter()
                        .map(|r| r[i].chars().count())
                        .chain([n.chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |values: Vec<&str>| {
                let padded: Vec<String> = values
                    .iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect();
                padded.join("  ").trim_end().to_owned()
            };
            writeln!(out, "{}", line(names.clone()))?;
            for r in &cells {
                writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
            }
        }
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

//! `sluice`: the Lambdas' code paths on the command line — flatten JSON to CSV, print the plan
//! (DDL and upsert SQL) for a mapping, load CSV files or S3 objects into Postgres, run the
//! ingest, serve the sample API and the collection API.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod athena_cmd;
mod compact_cmd;
mod demo_cmd;
mod demo_collect;
mod flatten_cmd;
mod load_cmd;
mod plan_cmd;
mod query_cmd;
mod rows_out;
mod serve_cmd;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Move data from REST APIs into PostgreSQL and an S3 data lake."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Nested JSON (JSON Lines, an array, or records at a path) → CSV on stdout.
    #[command(
        after_help = "Example:\n  sluice flatten --records-path items page.json > page.csv\n  \
        cat sales.jsonl | sluice flatten --arrays index --schema-out schema.json"
    )]
    Flatten(flatten_cmd::Args),
    /// Print the DDL and the upsert SQL for a mapping, or for a CSV with a table and key.
    #[command(
        after_help = "Example:\n  sluice plan --mapping mappings/hotmart-sales.toml\n  \
        sluice plan --csv sales.csv --table sales --key purchase_transaction --guard purchase_approved_date"
    )]
    Plan(plan_cmd::Args),
    /// Load CSV files (optionally .gz) or S3 objects into Postgres with the loader's upsert.
    #[command(
        after_help = "Example:\n  sluice load --table sales --key purchase_transaction sales.csv\n  \
        sluice load --mapping mappings/hotmart-sales.toml s3://lake/raw/hotmart-sales/dt=2024-01-15/\n\n\
        Prints one JSON summary; exit status 0 only when every source loaded (or was skipped)."
    )]
    Load(load_cmd::Args),
    /// Run the ingest once: each source (or one) from its watermark, or a backfill window.
    #[command(
        after_help = "Example:\n  BUCKET=lake sluice ingest --config sources.toml\n  \
        BUCKET=lake sluice ingest --config sources.toml --source hotmart-sales --window 2024-01-01T00:00:00Z..2024-02-01T00:00:00Z\n\n\
        Credentials as for the Lambda (HOTMART_CLIENT_ID, HOTMART_CLIENT_SECRET, or API_CREDENTIALS_SECRET_ARN); \
        S3_ENDPOINT_URL for a local S3 endpoint."
    )]
    Ingest {
        /// The sources TOML.
        #[arg(long)]
        config: PathBuf,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// A backfill window START..END (RFC 3339); the watermark is left alone.
        #[arg(long, requires = "source")]
        window: Option<String>,
        /// The lake bucket.
        #[arg(long, env = "BUCKET")]
        bucket: String,
    },
    /// The whole pipeline locally: sample API → ingest → S3 → loader (S3 notifications) → Postgres.
    #[command(
        after_help = "Example:\n  make demo            # starts Postgres if needed, then runs this\n  \
        DATABASE_URL=postgres://postgres@127.0.0.1/postgres sluice demo --records 3000\n\n\
        Uses S3_ENDPOINT_URL when set, else serves --dir/s3 as an S3 endpoint itself. Run it again for the next window."
    )]
    Demo(demo_cmd::Args),
    /// Serve a directory as an S3 endpoint on 127.0.0.1 until interrupted (for `make watch`).
    #[command(
        after_help = "Example:\n  sluice s3 --dir target/local-s3 --port 9100 &\n  make watch   # S3_ENDPOINT_URL=http://127.0.0.1:9100\n\n\
        Each top-level directory is a bucket. Access key sluice-test, secret sluice-test-secret."
    )]
    S3 {
        #[arg(long, default_value = "target/local-s3")]
        dir: PathBuf,
        #[arg(long, default_value_t = 9100)]
        port: u16,
        /// Buckets to create when missing.
        #[arg(long, value_delimiter = ',', default_value = "sluice-local")]
        buckets: Vec<String>,
    },
    /// Serve the collection API on 127.0.0.1: POST /<dataset> validates and stores in the lake.
    #[command(
        after_help = "Example:\n  BUCKET=lake sluice serve --port 8080 --datasets datasets/\n  \
        curl -H 'content-type: application/json' -d @unicorn.json http://127.0.0.1:8080/unicorns\n\n\
        Prints its URL on stderr (--port 0 picks a free port). S3_ENDPOINT_URL for a local S3 endpoint."
    )]
    Serve(serve_cmd::Args),
    /// SQL over the lake with DataFusion: the datasets' tables and views, as in Athena.
    #[command(
        after_help = "Example:\n  sluice query --dir target/demo/s3/sluice-demo \"SELECT color, count(*) AS n FROM unicorns GROUP BY color\"\n  \
        BUCKET=my-lake sluice query --example sightings-per-color --format csv\n  sluice query --list\n\n\
        Each dataset is a view (unicorns: one copy of each record, as compaction needs) over its table (unicorns_objects)."
    )]
    Query(query_cmd::Args),
    /// Compact a dataset's closed partitions: per-request objects merged into objects of a
    /// target size, safely while queries run (what the scheduled compaction function does).
    #[command(
        after_help = "Example:\n  BUCKET=my-lake sluice compact --dataset unicorns\n  \
        sluice compact --bucket my-lake --dataset unicorns --before 2024-06-01 --target-mb 256\n\n\
        Prints one JSON line per partition. Replaced objects are deleted by a run --grace-minutes after the commit; run it again to finish."
    )]
    Compact(compact_cmd::Args),
    /// Athena: the datasets' Glue tables.
    #[command(subcommand)]
    Athena(athena_cmd::Command),
    /// Serve the sample Hotmart sales API on 127.0.0.1 until interrupted.
    #[command(
        after_help = "Example:\n  sluice sample-api --port 18080 --records 100000\n\nPrints its URL on stderr (--port 0 picks a free port) and, on Ctrl-C, what it served as JSON."
    )]
    SampleApi {
        #[arg(long, default_value_t = 18080)]
        port: u16,
        #[arg(long, default_value_t = 10_000)]
        records: u64,
        /// initial or updates
        #[arg(long, default_value = "initial")]
        mode: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Flatten(a) => flatten_cmd::run(a),
        Command::Plan(a) => plan_cmd::run(a),
        Command::Load(a) => load_cmd::run(a),
        Command::Demo(a) => demo_cmd::run(a),
        Command::Serve(a) => serve_cmd::run(a),
        Command::Athena(c) => athena_cmd::run(c),
        Command::Query(a) => query_cmd::run(a),
        Command::Compact(a) => compact_cmd::run(a),
        Command::Ingest {
            config,
            source,
            window,
            bucket,
        } => ingest(&config, source, window.as_deref(), &bucket),
        Command::SampleApi {
            port,
            records,
            mode,
            seed,
        } => sample_api(port, records, &mode, seed),
        Command::S3 { dir, port, buckets } => s3(&dir, port, &buckets),
    }
}

fn ingest(
    config: &std::path::Path,
    source: Option<String>,
    window: Option<&str>,
    bucket: &str,
) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let ok = rt.block_on(async {
        let path = config.display().to_string();
        let conf = sluice_ingest::Config::from_lookup(|k| match k {
            "INGEST_SOURCES" => Some(path.clone()),
            "BUCKET" => Some(bucket.to_owned()),
            other => std::env::var(other).ok(),
        })?;
        let aws = aws_config::load_from_env().await;
        let ingest = sluice_ingest::build(&conf, &aws)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let event = match (source, window) {
            (Some(s), Some(w)) => {
                let (start, end) = w
                    .split_once("..")
                    .ok_or_else(|| anyhow::anyhow!("--window wants START..END, got {w:?}"))?;
                serde_json::json!({"source": s, "start": start, "end": end})
            }
            (Some(s), None) => serde_json::json!({ "source": s }),
            (None, _) => serde_json::json!({}),
        };
        let now = jiff::Timestamp::now();
        let run_id = sluice_ingest::new_run_id(now);
        match sluice_ingest::handle(&event, &ingest, now, &run_id).await {
            Ok(s) => {
                println!("{}", serde_json::to_string(&s)?);
                anyhow::Ok(true)
            }
            Err(e) => {
                match &e.summary {
                    Some(s) => println!("{}", serde_json::to_string(s)?),
                    None => println!("{}", serde_json::json!({"error": e.message})),
                }
                eprintln!("ingest: {}", e.message);
                Ok(false)
            }
        }
    })?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

fn sample_api(port: u16, records: u64, mode: &str, seed: u64) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let settings = sluice_sample_api::Settings {
            addr: ([127, 0, 0, 1], port).into(),
            n: records,
            seed,
            mode: mode.parse().map_err(anyhow::Error::msg)?,
            ..Default::default()
        };
        let api = sluice_sample_api::SampleApi::start(settings).await?;
        eprintln!(
            "sample API on {} (client id mock-id, secret mock-secret); Ctrl-C stops",
            api.base_url()
        );
        tokio::signal::ctrl_c().await?;
        println!("{}", serde_json::to_string(&api.stats())?);
        Ok(())
    })
}

fn s3(dir: &std::path::Path, port: u16, buckets: &[String]) -> Result<()> {
    for b in buckets {
        std::fs::create_dir_all(dir.join(b))?;
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        eprintln!(
            "S3 endpoint on http://{} serving {} (access key {}, secret {}); Ctrl-C stops",
            listener.local_addr()?,
            dir.display(),
            sluice_testkit::S3_ACCESS_KEY,
            sluice_testkit::S3_SECRET_KEY,
        );
        tokio::select! {
            r = sluice_testkit::serve_s3(dir.to_path_buf(), listener) => r,
            r = tokio::signal::ctrl_c() => Ok(r?),
        }
    })
}

/// `-` or a path.
pub(crate) fn input_path(p: &str) -> Option<PathBuf> {
    (p != "-").then(|| PathBuf::from(p))
}

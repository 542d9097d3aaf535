//! Benchmark drivers, each printing one JSON line like the baselines in ../shared/baselines.
//!
//! ```text
//! sluice-bench flatten IN.jsonl OUT.csv [--arrays json|index]   # sluice: stream → flatten → CSV
//! sluice-bench parse-floor IN.jsonl                              # serde_json parse to Value, keep nothing
//! sluice-bench load IN.csv [--after PRIOR.csv] [--mapping M.toml] [--fillfactor N] [--row-hash]  # the loader's path into Postgres
//! sluice-bench load IN.csv --typed-copy [--mapping M.toml]        # Postgres' floor: COPY of the typed rows
//! sluice-bench s3 DIR PORT                                       # an S3 endpoint serving DIR
//! sluice-bench ingest API_URL S3_URL N [--gzip] [--name NAME] [--bucket B] [--max-span S]  # one ingest run, API → S3
//! sluice-bench load-s3 S3_URL BUCKET PREFIX [--concurrency K]    # the loader over those objects
//! sluice-bench pipeline API_URL S3_URL N [--concurrency K] [--max-span S]  # ingest + loaders as objects land
//! sluice-bench put-parts IN.csv S3_URL BUCKET PARTS              # IN as PARTS objects of distinct keys
//! sluice-bench flatten-upload IN.jsonl S3_URL                    # flatten → CSV → S3 (the sink)
//! sluice-bench lake IN.jsonl ROOT DAYS PER_OBJECT                # unicorns as lake objects (lake.rs)
//! sluice-bench query ROOT NAME SQL                               # sluice query's engine, timed
//! sluice-bench compact S3_URL BUCKET DAY                         # one day compacted, timed
//! ```
//! `load` uses `DATABASE_URL` and the built-in hotmart-sales mapping (or `--mapping`). Without
//! `--after` the table exists and is empty: every row is new. `--after PRIOR.csv`: the table holds PRIOR (loaded untimed),
//! so every row of IN is an existing key. `--typed-copy` times no loader: it loads IN untimed, reads
//! the table back as `COPY` text, empties it and times a plain `COPY` of those rows into the same
//! keyed table: what Postgres itself needs to take the rows the mapping makes.
//! Timed from input opened to output closed, like the Python scripts.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sluice_flatten::{ArrayPolicy, CsvPipeline, InputFormat, Options, PartEnd};

mod concurrency;
mod ingest;
mod lake;
mod parquet;
mod pipeline;

pub(crate) fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
}

pub(crate) fn emit(
    name: &str,
    records: u64,
    secs: f64,
    input: &str,
    extra: serde_json::Value,
) -> Result<()> {
    let mb = std::fs::metadata(input)?.len() as f64 / 1e6;
    let mut out = serde_json::json!({
        "baseline": name,
        "records": records,
        "seconds": (secs * 1e4).round() / 1e4,
        "records_per_s": (records as f64 / secs).round(),
        "input_mb": (mb * 100.0).round() / 100.0,
        "mb_per_s": (mb / secs * 10.0).round() / 10.0,
        "peak_rss_mb": peak_rss_mb(),
    });
    if let (Some(o), serde_json::Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
    println!("{out}");
    Ok(())
}

fn flatten(input: &str, output: &str, arrays: ArrayPolicy) -> Result<()> {
    let t0 = Instant::now();
    let reader = File::open(input).with_context(|| input.to_owned())?;
    let opts = Options {
        arrays,
        ..Options::default()
    };
    let mut p = CsvPipeline::new(reader, InputFormat::Auto, opts)?;
    let mut parts = 0;
    let mut rows = 0;
    loop {
        let name = if parts == 0 {
            output.to_owned()
        } else {
            format!("{output}.part{parts}")
        };
        let out = BufWriter::with_capacity(256 * 1024, File::create(&name)?);
        let part = p.write_part(out)?;
        parts += 1;
        rows += part.rows;
        if part.end == PartEnd::Finished {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let name = match arrays {
        ArrayPolicy::Json => "sluice_flatten_csv",
        ArrayPolicy::Index => "sluice_flatten_csv_indexed",
    };
    emit(
        name,
        rows,
        secs,
        input,
        serde_json::json!({"columns": p.schema().len(), "parts": parts}),
    )
}

fn parse_floor(input: &str) -> Result<()> {
    let t0 = Instant::now();
    let reader = BufReader::with_capacity(256 * 1024, File::open(input)?);
    let mut n = 0u64;
    for line in reader.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&line)?;
        std::hint::black_box(&v);
        n += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    emit(
        "serde_json_parse_to_value",
        n,
        secs,
        input,
        serde_json::json!({}),
    )
}

/// The loader's own path (stream → transform → COPY → upsert → ledger → COMMIT), timed from the
/// file opened to COMMIT returned, like upsert_python.py.
/// What `load` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    /// The loader, from the file to COMMIT.
    Loader,
    /// A plain `COPY` of the rows the loader typed, into the same empty table.
    TypedCopy,
}

fn load(
    input: &str,
    prior: Option<&str>,
    mapping_file: Option<&str>,
    fillfactor: Option<u8>,
    row_hash: Option<&str>,
    contender: Contender,
) -> Result<()> {
    use sluice_loader::{Config, Loader, LocalStore};
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let config = std::sync::Arc::new(Config::from_env()?);
        let pool = sluice_loader::pool(&config).await?;
        let mut mapping = match mapping_file {
            Some(f) => sluice_transform::Mapping::from_toml(&std::fs::read_to_string(f)?)?,
            None => config.mappings["hotmart-sales"].clone(),
        };
        if fillfactor.is_some() {
            mapping.fillfactor = fillfactor;
        }
        if let Some(name) = row_hash {
            mapping.derived.push(sluice_transform::DerivedRule {
                name: name.to_owned(),
                kind: sluice_transform::DerivedKind::RowHash,
                ty: sluice_transform::ColumnType::Uuid,
            });
        }
        let table = mapping.table.quoted();
        let mut config = (*config).clone();
        let dir = std::env::temp_dir().join("sluice-bench-quarantine");
        config.quarantine_bucket = Some(dir.display().to_string());
        let loader = Loader::new(pool.clone(), std::sync::Arc::new(config));
        let store = LocalStore;
        let obj = |path: &str| LocalStore::object(path);
        let sql = |s: String| sqlx::query(sqlx::AssertSqlSafe(s));
        // Start from the same place every run: an empty table, an empty ledger.
        sql(format!("DROP TABLE IF EXISTS {table}"))
            .execute(&pool)
            .await?;
        sql("DROP TABLE IF EXISTS sluice_loads".into())
            .execute(&pool)
            .await?;
        // The table is created by the loader itself from the header and two rows, then emptied.
        let head: String = BufReader::new(File::open(input)?)
            .lines()
            .take(3)
            .map(|l| l.map(|l| l + "\n"))
            .collect::<Result<_, _>>()?;
        let seed =
            std::env::temp_dir().join(format!("sluice-bench-seed-{}.csv", std::process::id()));
        std::fs::write(&seed, head)?;
        loader
            .load_with(&store, &obj(&seed.display().to_string())?, "bench", &mapping)
            .await?;
        std::fs::remove_file(&seed)?;
        sql(format!("TRUNCATE {table}")).execute(&pool).await?;
        if let Some(prior) = prior {
            loader
                .load_with(&store, &obj(prior)?, "bench", &mapping)
                .await?;
        }
        if contender == Contender::TypedCopy {
            return typed_copy(&pool, &loader, &obj(input)?, &mapping, input).await;
        }
        sql(format!("VACUUM ANALYZE {table}"))
            .execute(&pool)
            .await?;
        let _ = sql("CHECKPOINT".into()).execute(&pool).await;
        let t0 = Instant::now();
        let s = loader
            .load_with(&store, &obj(input)?, "bench", &mapping)
            .await?;
        let secs = t0.elapsed().as_secs_f64();
        let keys = match prior {
            Some(_) => "existing_keys",
            None => "new_keys",
        };
        let mut name = match fillfactor {
            Some(f) => format!("sluice_loader_{keys}_fillfactor{f}"),
            None => format!("sluice_loader_{keys}"),
        };
        if row_hash.is_some() {
            name.push_str("_row_hash");
        }
        let mb = std::fs::metadata(input)?.len() as f64 / 1e6;
        println!(
            "{}",
            serde_json::json!({
                "baseline": name,
                "rows": s.rows.rows_read,
                "seconds": (secs * 1e4).round() / 1e4,
                "rows_per_s": (s.rows.rows_read as f64 / secs).round(),
                "mb_per_s": (mb / secs * 10.0).round() / 10.0,
                "inserted": s.rows.inserted, "updated": s.rows.updated, "unchanged": s.rows.unchanged,
                "rejected": s.rows.rejected, "copy_ms": s.copy_ms, "upsert_ms": s.upsert_ms,
                "peak_rss_mb": peak_rss_mb(),
            })
        );
        anyhow::Ok(())
    })
}

/// The floor for a mapping: `input` loaded untimed, its rows read back as `COPY` text, the table
/// emptied, then one plain `COPY` of them timed (the table's key index and types as the loader
/// made them).
async fn typed_copy(
    pool: &sqlx::PgPool,
    loader: &sluice_loader::Loader,
    object: &sluice_loader::ObjectRef,
    mapping: &sluice_transform::Mapping,
    input: &str,
) -> Result<()> {
    use futures_util::TryStreamExt;
    let table = mapping.table.quoted();
    let sql = |s: String| sqlx::query(sqlx::AssertSqlSafe(s));
    loader
        .load_with(&sluice_loader::LocalStore, object, "bench", mapping)
        .await?;
    let mut conn = pool.acquire().await?;
    let rows: Vec<u8> = conn
        .copy_out_raw(&format!("COPY {table} TO STDOUT"))
        .await?
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    sql(format!("TRUNCATE {table}")).execute(&mut *conn).await?;
    sql(format!("VACUUM ANALYZE {table}"))
        .execute(&mut *conn)
        .await?;
    let _ = sql("CHECKPOINT".into()).execute(&mut *conn).await;
    let t0 = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} FROM STDIN"))
        .await?;
    copy.send(rows.as_slice()).await?;
    let n = copy.finish().await?;
    let secs = t0.elapsed().as_secs_f64();
    emit(
        "pg_copy_typed_rows",
        n,
        secs,
        input,
        serde_json::json!({
            "rows": n,
            "rows_per_s": (n as f64 / secs).round(),
            "typed_mb": (rows.len() as f64 / 1e5).round() / 10.0,
        }),
    )
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The value after the option `name`, when given.
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    if args.first().map(String::as_str) == Some("load") && args.len() >= 2 {
        let contender = match args.iter().any(|a| a == "--typed-copy") {
            true => Contender::TypedCopy,
            false => Contender::Loader,
        };
        let fillfactor = opt("--fillfactor").map(str::parse).transpose()?;
        let row_hash = args
            .iter()
            .any(|a| a == "--row-hash")
            .then_some("_sluice_row_hash");
        return load(
            &args[1],
            opt("--after"),
            opt("--mapping"),
            fillfactor,
            row_hash,
            contender,
        );
    }
    let arrays = if args.iter().any(|a| a == "index") {
        ArrayPolicy::Index
    } else {
        ArrayPolicy::Json
    };
    match args.first().map(String::as_str) {
        Some("s3") if args.len() >= 3 => ingest::serve(&args[1], args[2].parse()?),
        Some("ingest") if args.len() >= 4 => {
            let name = opt("--name").unwrap_or("sluice_ingest");
            let gzip = args.iter().any(|a| a == "--gzip");
            ingest::ingest(
                &args[1],
                &args[2],
                args[3].parse()?,
                gzip,
                name,
                opt("--bucket"),
                opt("--max-span"),
            )
        }
        Some("pipeline") if args.len() >= 4 => pipeline::pipeline(&pipeline::Pipeline {
            api_url: &args[1],
            s3_url: &args[2],
            n: args[3].parse()?,
            concurrency: opt("--concurrency").map_or(Ok(2), str::parse)?,
            max_span: opt("--max-span"),
            name: opt("--name").unwrap_or("sluice_overlapped"),
        }),
        Some("load-s3") if args.len() >= 4 => {
            let concurrency = opt("--concurrency").map_or(Ok(1), str::parse)?;
            ingest::load_s3(&args[1], &args[2], &args[3], concurrency)
        }
        Some("put-parts") if args.len() >= 5 => {
            concurrency::put_parts(&args[1], &args[2], &args[3], args[4].parse()?)
        }
        Some("flatten-upload") if args.len() >= 3 => ingest::flatten_upload(&args[1], &args[2]),
        Some("flatten") if args.len() >= 3 => flatten(&args[1], &args[2], arrays),
        Some("parse-floor") if args.len() >= 2 => parse_floor(&args[1]),
        Some("parquet") if args.len() >= 4 => parquet::parquet(&args[1], &args[2], &args[3]),
        Some("lake") if args.len() >= 5 => {
            lake::write_lake(&args[1], &args[2], args[3].parse()?, args[4].parse()?)
        }
        Some("query") if args.len() >= 4 => lake::query(&args[1], &args[2], &args[3]),
        Some("compact") if args.len() >= 4 => lake::compact(&args[1], &args[2], &args[3]),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "usage: sluice-bench flatten IN OUT [--arrays index] | parse-floor IN | parquet DATASET IN OUT"
            );
            bail!("bad arguments")
        }
    }
}

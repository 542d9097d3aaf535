//! Benchmark drivers, each printing one JSON line like the baselines in ../shared/baselines.
//!
//! ```text
//! sluice-bench flatten IN.jsonl OUT.csv [--arrays json|index]   # sluice: stream → flatten → CSV
//! sluice-bench parse-floor IN.jsonl                              # serde_json parse to Value, keep nothing
//! ```
//! Timed from input opened to output closed, like the Python scripts.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sluice_flatten::{ArrayPolicy, CsvPipeline, InputFormat, Options, PartEnd};

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
}

fn emit(name: &str, records: u64, secs: f64, input: &str, extra: serde_json::Value) -> Result<()> {
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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arrays = if args.iter().any(|a| a == "index") {
        ArrayPolicy::Index
    } else {
        ArrayPolicy::Json
    };
    match args.first().map(String::as_str) {
        Some("flatten") if args.len() >= 3 => flatten(&args[1], &args[2], arrays),
        Some("parse-floor") if args.len() >= 2 => parse_floor(&args[1]),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "usage: sluice-bench flatten IN OUT [--arrays index] | parse-floor IN"
            );
            bail!("bad arguments")
        }
    }
}

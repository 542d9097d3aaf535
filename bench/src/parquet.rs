//! `sluice-bench parquet DATASET IN.jsonl OUT.parquet`: JSON records, each validated against the
//! dataset as the API validates a request, appended to Arrow builders and written to one Snappy
//! Parquet file batch by batch (`lake::ParquetWriter`): the API's write path, for a whole file.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sluice_api::lake::ParquetWriter;
use sluice_api::{Dataset, lake, validate};

use crate::emit;

pub fn parquet(dataset: &str, input: &str, output: &str) -> Result<()> {
    let d = Dataset::from_path(dataset.as_ref())?;
    let t0 = Instant::now();
    let stamp = lake::Stamp {
        event_id: "bench".into(),
        received_at: jiff::Timestamp::now(),
        body_sha256: String::new(),
    };
    let loc = [Value::from("body")];
    let mut out = ParquetWriter::new(&d, std::io::BufWriter::new(File::create(output)?))?;
    let mut n = 0u64;
    for (i, line) in BufReader::new(File::open(input)?).lines().enumerate() {
        let line = line?;
        let v: Value = serde_json::from_str(&line).with_context(|| format!("{input}:{}", i + 1))?;
        match validate::record(&d, &v, &loc) {
            Ok(checked) => out.push(&checked, &stamp, i)?,
            Err(problems) => bail!("{input}:{}: {problems:?}", i + 1),
        }
        n += 1;
    }
    let mut file = out.finish()?;
    std::io::Write::flush(&mut file)?;
    drop(file);
    let secs = t0.elapsed().as_secs_f64();
    emit(
        "sluice_parquet",
        n,
        secs,
        input,
        serde_json::json!({"bytes": std::fs::metadata(output)?.len()}),
    )
}

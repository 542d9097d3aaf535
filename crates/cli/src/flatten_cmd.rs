//! `sluice flatten`: one CSV on stdout with one header. When a column first appears in the
//! middle of the input, the input is read a second time with the final schema, so every row has
//! every column (stdin is spooled to a temporary file for that).

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use sluice_flatten::{ArrayPolicy, CsvPipeline, Flattener, InputFormat, Options, PartEnd};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Joins nested keys ([a-z0-9_], 1 to 8 characters).
    #[arg(long, default_value = "_")]
    sep: String,
    /// json: an array is one column of compact JSON; index: one column per element.
    #[arg(long, default_value = "json")]
    arrays: ArrayPolicy,
    /// Deeper objects and arrays are kept as JSON text.
    #[arg(long)]
    max_depth: Option<usize>,
    /// The records are the array at this dotted path of one JSON document (`items`).
    #[arg(long)]
    records_path: Option<String>,
    /// Write the schema manifest (columns, source paths, JSON types) here.
    #[arg(long)]
    schema_out: Option<PathBuf>,
    /// JSON Lines, a JSON array, or a document (with --records-path); `-` is stdin.
    #[arg(default_value = "-")]
    input: String,
}

fn open_input(input: &str) -> Result<File> {
    match crate::input_path(input) {
        Some(p) => File::open(&p).with_context(|| p.display().to_string()),
        None => {
            let mut spool = tempfile::tempfile()?;
            io::copy(&mut io::stdin().lock(), &mut spool)?;
            spool.rewind()?;
            Ok(spool)
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let opts = Options {
        separator: a.sep,
        arrays: a.arrays,
        max_depth: a.max_depth,
        max_columns: None,
    };
    opts.validate()?;
    let format = match &a.records_path {
        Some(p) => InputFormat::path(p),
        None => InputFormat::Auto,
    };
    let mut input = open_input(&a.input)?;
    let mut first = tempfile::tempfile()?;
    let reader: Box<dyn Read> =
        Box::new(io::BufReader::with_capacity(256 * 1024, input.try_clone()?));
    let mut p = CsvPipeline::new(reader, format.clone(), opts.clone())?;
    let part = p
        .write_part(BufWriter::with_capacity(256 * 1024, &mut first))
        .with_context(|| a.input.clone())?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout.lock());
    let (rows, flattener) = if part.end == PartEnd::Finished {
        first.rewind()?;
        io::copy(&mut first, &mut out)?;
        (part.rows, p.flattener())
    } else {
        // The schema grew: learn the final schema, then write everything with it.
        while p.write_part(io::sink())?.end != PartEnd::Finished {}
        input.rewind()?;
        let full = Flattener::with_schema(opts.clone(), p.schema());
        let reader: Box<dyn Read> = Box::new(io::BufReader::with_capacity(256 * 1024, input));
        let mut second = CsvPipeline::with_flattener(reader, format, full);
        let part = second.write_part(&mut out)?;
        out.flush()?;
        if let Some(path) = &a.schema_out {
            write_manifest(path, second.flattener())?;
        }
        eprintln!(
            "flatten: {} records, {} columns (a column appeared mid-input: read twice)",
            part.rows,
            second.schema().len()
        );
        return Ok(());
    };
    out.flush()?;
    if let Some(path) = &a.schema_out {
        write_manifest(path, flattener)?;
    }
    eprintln!(
        "flatten: {rows} records, {} columns",
        flattener.schema().len()
    );
    Ok(())
}

fn write_manifest(path: &PathBuf, f: &Flattener) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(&f.manifest())?)
        .with_context(|| path.display().to_string())
}

//! `sluice plan`: the DDL and the upsert SQL the loader would run.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use sluice_flatten::{CsvReader, CsvRecord};
use sluice_transform::{Inference, Mapping, TableRef};

/// How `plan` and `load` name their mapping: a file, or a table and key (types inferred).
#[derive(Debug, clap::Args)]
pub struct MappingArgs {
    /// A mapping TOML.
    #[arg(long, conflicts_with_all = ["table", "key"])]
    mapping: Option<PathBuf>,
    /// Target table (`name` or `schema.name`) when there is no mapping; types are inferred.
    #[arg(long, requires = "key")]
    table: Option<String>,
    /// Key column(s), comma-separated.
    #[arg(long, value_delimiter = ',')]
    key: Vec<String>,
    /// Ordering column: a row replaces a stored one only if this is ≥ the stored value.
    #[arg(long)]
    guard: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    mapping: MappingArgs,
    /// A CSV whose header (and values, for inference) describe the columns.
    #[arg(long)]
    csv: Option<PathBuf>,
}

pub(crate) fn table_ref(t: &str) -> TableRef {
    match t.split_once('.') {
        Some((s, n)) => TableRef::new(s, n),
        None => TableRef::new("public", t),
    }
}

impl MappingArgs {
    /// The mapping given on the command line: a file, or a table and key.
    pub(crate) fn mapping(&self) -> Result<Mapping> {
        let (file, table, key, guard) = (&self.mapping, &self.table, &self.key, &self.guard);
        match (file, table) {
            (Some(f), _) => {
                let text = std::fs::read_to_string(f).with_context(|| f.display().to_string())?;
                Ok(Mapping::from_toml(&text).with_context(|| f.display().to_string())?)
            }
            (None, Some(t)) if !key.is_empty() => {
                Ok(Mapping::inferred(table_ref(t), key.to_vec(), guard.clone()))
            }
            _ => bail!("give --mapping FILE, or --table T and --key K"),
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let mapping = a.mapping.mapping()?;
    let (header, types) = match &a.csv {
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
            let mut r = CsvReader::new(std::io::BufReader::new(file));
            let mut rec = CsvRecord::default();
            if !r.read(&mut rec)? {
                bail!("{}: empty file", path.display());
            }
            let header: Vec<String> = rec
                .iter()
                .map(|f| String::from_utf8_lossy(f.unwrap_or_default()).into_owned())
                .collect();
            let mut inf = Inference::new(header.len());
            while r.read(&mut rec)? {
                let fields: Vec<Option<String>> = rec
                    .iter()
                    .map(|f| f.map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect();
                inf.observe_row(fields.iter().map(|f| f.as_deref()));
            }
            (header, inf.types())
        }
        None => {
            // Only the columns the mapping names (its key, guard and typed columns).
            let mut header: Vec<String> = mapping.key.clone();
            for c in mapping.guard.iter().chain(mapping.columns.keys()) {
                if !header.contains(c) {
                    header.push(c.clone());
                }
            }
            let types = vec![sluice_transform::ColumnType::Text; header.len()];
            (header, types)
        }
    };
    let names: Vec<&str> = header.iter().map(String::as_str).collect();
    let bound = mapping.bind(&names, &types)?;
    let plan = bound.plan();
    println!("-- table\n{};\n", plan.create_table());
    println!(
        "-- the unique index the upsert needs (the table's primary key when sluice creates it)\n{};\n",
        plan.unique_index()
    );
    println!(
        "-- staging\n{};\n{};\n",
        plan.create_staging("sluice_stage"),
        plan.copy_staging("sluice_stage")
    );
    println!("-- upsert\n{};", plan.upsert("sluice_stage"));
    Ok(())
}

//! `sluice query`: SQL over the lake with Apache DataFusion, on a laptop, in the tests and in the
//! demo — the tables Athena has, with the same names and the same view.
//!
//! For each dataset, [`Lake::open`] registers:
//! - `<dataset>_objects`: a listing table over `lake/<dataset>/`, the dataset's Parquet schema
//!   ([`sluice_api::lake::arrow_schema`]) and `dt` as a partition column read from the keys;
//! - `<dataset>`: the view that keeps one copy of each record while compaction runs
//!   ([`sluice_api::catalog::Table::view_sql`], the SQL of the Glue view).
//!
//! and for each ingest source that has published its columns (`state/<source>.columns.json`),
//! `<source>_raw` over its raw CSV ([`sluice_api::catalog::RawTable`]): every column text, in
//! the source's order, `dt` from the keys. Gzipped raw objects (`.csv.gz`) are left out: reading
//! them needs DataFusion's compression codecs, which this build leaves out (Athena reads them).
//!
//! DataFusion is compiled only here and in the `sluice` command: no Lambda links this crate.
//!
//! ```no_run
//! # async fn f() -> Result<(), sluice_query::QueryError> {
//! use sluice_query::{Lake, Location};
//!
//! let datasets = sluice_api::Datasets::from_dir("datasets".as_ref()).unwrap();
//! let layout = sluice_edge::layout::Layout::default();
//! let lake = Lake::open(&Location::Dir("target/local-s3/sluice-local".into()), &layout, &datasets).await?;
//! let answer = lake.query("SELECT color, count(*) AS n FROM unicorns GROUP BY color").await?;
//! println!("{:?} {:?}", answer.columns, answer.rows);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures_util::TryStreamExt;
use object_store::ObjectStoreExt;
use serde_json::Value;
use sluice_api::Datasets;
use sluice_api::catalog::{self, CatalogError, PARTITION, RawTable, Table};
use sluice_edge::layout::{Area, Layout};

pub mod examples;
mod location;

pub use location::Location;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{location}: {message}")]
    Location { location: String, message: String },
    /// A table could not be registered.
    #[error("table {table}: {source}")]
    Register {
        table: String,
        #[source]
        source: DataFusionError,
    },
    /// The query failed: planning (a name, a type) or running it (an object that would not read).
    #[error("{source}")]
    Query {
        sql: String,
        #[source]
        source: DataFusionError,
    },
    #[error("query results as JSON: {0}")]
    Output(String),
}

/// A query's columns and rows, values as JSON (NULL as `null`, timestamps as RFC 3339 text).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// The lake's tables and views in a DataFusion session.
pub struct Lake {
    ctx: SessionContext,
    tables: Vec<Table>,
    raw: Vec<RawTable>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tables.iter().map(|t| t.view.as_str()).collect();
        let raw: Vec<&str> = self.raw.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("Lake")
            .field("views", &names)
            .field("raw", &raw)
            .finish_non_exhaustive()
    }
}

impl Lake {
    /// Registers every dataset's table and view over `location`, where `layout` puts the lake.
    pub async fn open(
        location: &Location,
        layout: &Layout,
        datasets: &Datasets,
    ) -> Result<Lake, QueryError> {
        // No cached listings: compaction adds and deletes objects between queries, and each query
        // must list what is there now.
        let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(caches)
            .build_arc()
            .map_err(|source| QueryError::Register {
                table: "(session)".into(),
                source,
            })?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        location.register(&ctx)?;
        let lake = format!("{}{}", location.url()?, layout.prefix(Area::Lake));
        let mut tables = Vec::new();
        for d in datasets.iter() {
            let table = Table::new(d, &lake)?;
            let registering = |source| QueryError::Register {
                table: table.name.clone(),
                source,
            };
            let listing =
                listing_table(&table, sluice_api::lake::arrow_schema(d)).map_err(registering)?;
            ctx.register_table(table.name.as_str(), Arc::new(listing))
                .map_err(registering)?;
            let view = format!(
                "CREATE VIEW {} AS {}",
                catalog::quoted(&table.view),
                table.view_sql()
            );
            ctx.sql(&view).await.map_err(registering)?;
            tables.push(table);
        }
        let root = location.url()?;
        let raw = raw_tables(&ctx, &root, layout).await?;
        for table in &raw {
            let registering = |source| QueryError::Register {
                table: table.name.clone(),
                source,
            };
            let listing = raw_listing(table).map_err(registering)?;
            ctx.register_table(table.name.as_str(), Arc::new(listing))
                .map_err(registering)?;
        }
        Ok(Lake { ctx, tables, raw })
    }

    /// The registered tables (each with its view).
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// The ingest sources' raw tables.
    pub fn raw_tables(&self) -> &[RawTable] {
        &self.raw
    }

    /// Runs `sql` and collects its batches: planned again (the objects listed again) when an
    /// object it listed was deleted before it was read — compaction retiring what it replaced —
    /// up to [`ATTEMPTS`] times.
    pub async fn batches(&self, sql: &str) -> Result<(Vec<String>, Vec<RecordBatch>), QueryError> {
        let failed = |source| QueryError::Query {
            sql: sql.to_owned(),
            source,
        };
        let mut attempt = 1;
        loop {
            let frame = self.ctx.sql(sql).await.map_err(failed)?;
            let columns = frame
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>();
            match frame.collect().await {
                Ok(batches) => return Ok((columns, batches)),
                Err(e) if attempt < ATTEMPTS && vanished(&e) => {
                    tracing::info!(attempt, error = %e, "an object was deleted under the query; again");
                    attempt += 1;
                }
                Err(e) => return Err(failed(e)),
            }
        }
    }

    /// Runs `sql`: its columns and rows.
    pub async fn query(&self, sql: &str) -> Result<Answer, QueryError> {
        let (columns, batches) = self.batches(sql).await?;
        let rows = json_rows(&batches, &columns)?;
        Ok(Answer { columns, rows })
    }
}

/// How many times a query is planned when objects vanish under it.
pub const ATTEMPTS: u32 = 3;

/// Whether `e` is an object that was listed and then not found.
fn vanished(e: &DataFusionError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(object_store::Error::NotFound { .. }) = s.downcast_ref::<object_store::Error>()
        {
            return true;
        }
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// A listing table over `table.location`: `.parquet` objects with `schema`, `dt` from the keys.
fn listing_table(
    table: &Table,
    schema: datafusion::arrow::datatypes::Schema,
) -> Result<ListingTable, DataFusionError> {
    let url = ListingTableUrl::parse(&table.location)?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![(PARTITION.to_owned(), DataType::Utf8)]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(Arc::new(schema));
    ListingTable::try_new(config)
}

/// The raw table of each source whose columns are under the state prefix of `root`.
async fn raw_tables(
    ctx: &SessionContext,
    root: &str,
    layout: &Layout,
) -> Result<Vec<RawTable>, QueryError> {
    let state = format!("{root}{}", layout.prefix(Area::State));
    let failed = |location: &str, message: String| QueryError::Location {
        location: location.to_owned(),
        message,
    };
    let url = ListingTableUrl::parse(&state).map_err(|e| failed(&state, e.to_string()))?;
    let store = ctx
        .runtime_env()
        .object_store(&url)
        .map_err(|e| failed(&state, e.to_string()))?;
    let listed: Vec<_> = match store.list(Some(url.prefix())).try_collect().await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(failed(&state, e.to_string())),
    };
    let raw = format!("{root}{}", layout.prefix(Area::Raw));
    let mut tables = Vec::new();
    for meta in listed {
        let Some(rest) = meta.location.as_ref().strip_prefix(url.prefix().as_ref()) else {
            continue;
        };
        let key = format!(
            "{}{}",
            layout.prefix(Area::State),
            rest.trim_start_matches('/')
        );
        let Some(source) = layout.columns_source(&key) else {
            continue;
        };
        let at = format!("{root}{key}");
        let read = async { store.get(&meta.location).await?.bytes().await };
        let bytes = read.await.map_err(|e| failed(&at, e.to_string()))?;
        let columns = column_names(&bytes).map_err(|message| failed(&at, message))?;
        tables.push(RawTable::new(source, columns, &raw));
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

/// The names in a columns object (`{"columns": [{"name": …}, …], …}`).
fn column_names(bytes: &[u8]) -> Result<Vec<String>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let columns = value["columns"]
        .as_array()
        .ok_or("no \"columns\" array: not a sluice columns object")?;
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c["name"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("columns[{i}] has no \"name\""))
        })
        .collect()
}

/// A listing table over a source's raw CSV: a header line, every column text, rows of older
/// objects (fewer columns) padded with NULL, quoted line breaks kept.
fn raw_listing(table: &RawTable) -> Result<ListingTable, DataFusionError> {
    let url = ListingTableUrl::parse(&table.location)?;
    let format = CsvFormat::default()
        .with_has_header(true)
        .with_truncated_rows(true)
        .with_newlines_in_values(true);
    let options = ListingOptions::new(Arc::new(format))
        .with_file_extension(".csv")
        .with_table_partition_cols(vec![(PARTITION.to_owned(), DataType::Utf8)]);
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|c| Field::new(c, DataType::Utf8, true))
        .collect();
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(Arc::new(Schema::new(fields)));
    ListingTable::try_new(config)
}

fn json_rows(batches: &[RecordBatch], columns: &[String]) -> Result<Vec<Vec<Value>>, QueryError> {
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::JsonArray>(Vec::new());
    let output = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    for b in batches {
        writer.write(b).map_err(|e| output(&e))?;
    }
    writer.finish().map_err(|e| output(&e))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let objects: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&bytes).map_err(|e| output(&e))?;
    Ok(objects
        .into_iter()
        .map(|mut o| {
            columns
                .iter()
                .map(|c| o.remove(c).unwrap_or(Value::Null))
                .collect()
        })
        .collect())
}

//! Accepted records as Parquet for Athena: the Arrow schema derived from a dataset, the rows,
//! the object bytes and where they go.
//!
//! | dataset kind | Arrow / Parquet |
//! |---|---|
//! | string (email, uuid), enum | Utf8 |
//! | string, format date-time | Timestamp(µs, UTC) |
//! | string, format date | Date32 |
//! | integer | Int64 |
//! | number | Float64 |
//! | boolean | Boolean |
//! | object | Struct |
//! | array | List |
//!
//! Every row also has `_event_id` (the request's), `_row` (its place in the request, from 0: with
//! `_event_id` the record's key, which readers deduplicate on while compaction runs),
//! `_received_at` and `_schema_version`.
//!
//! ```
//! use serde_json::json;
//! use sluice_api::{Dataset, lake};
//!
//! let d = Dataset::from_toml("d.toml", "[dataset]\nname = \"d\"\nversion = 3\n[fields.at]\ntype = \"string\"\nformat = \"date-time\"\n").unwrap();
//! let schema = lake::arrow_schema(&d);
//! assert_eq!(schema.field(0).name(), "at");
//! let stamp = lake::Stamp { event_id: "e1".into(), received_at: "2024-05-01T12:00:00Z".parse().unwrap(), body_sha256: String::new() };
//! let row = lake::row(&d, &json!({"at": "2024-05-01T09:00:00-03:00"}), &stamp, 0);
//! assert_eq!(row["at"], json!(1_714_564_800_000_000_i64)); // 12:00 UTC, in microseconds
//! let bytes = lake::parquet(&d, &[row]).unwrap();
//! assert_eq!(&bytes[..4], b"PAR1");
//! ```

use std::sync::Arc;

use arrow_schema::{DataType, Field as ArrowField, Fields, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value, json};

use crate::dataset::{Dataset, Field, Format, Kind, Presence};

/// The lake's own columns, after the dataset's.
pub const EVENT_ID: &str = "_event_id";
pub const ROW: &str = "_row";
pub const RECEIVED_AT: &str = "_received_at";
pub const SCHEMA_VERSION: &str = "_schema_version";

/// The time zone of timestamp columns: UTC, written as an offset (a zone name would need the
/// tz database in arrow); Parquet marks them adjusted to UTC either way.
const UTC: &str = "+00:00";

/// What a request adds to each of its rows.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// The client's `Idempotency-Key`, else a UUIDv7.
    pub event_id: String,
    pub received_at: jiff::Timestamp,
    /// SHA-256 of the request body (hex): a key used again with another body is refused.
    pub body_sha256: String,
}

/// Rows that could not become Parquet (a bug: validation admits only what the schema holds).
#[derive(Debug, thiserror::Error)]
#[error("dataset {dataset}: rows to Parquet: {message}")]
pub struct LakeError {
    pub dataset: String,
    pub message: String,
}

/// The dataset's Arrow schema, its own columns last.
pub fn arrow_schema(d: &Dataset) -> Schema {
    let utc = Some(Arc::from(UTC));
    let mut fields: Vec<ArrowField> = d.fields.iter().map(arrow_field).collect();
    fields.push(ArrowField::new(EVENT_ID, DataType::Utf8, false));
    fields.push(ArrowField::new(ROW, DataType::Int32, false));
    fields.push(ArrowField::new(
        RECEIVED_AT,
        DataType::Timestamp(TimeUnit::Microsecond, utc),
        false,
    ));
    fields.push(ArrowField::new(SCHEMA_VERSION, DataType::Int32, false));
    Schema::new(fields)
}

fn arrow_field(f: &Field) -> ArrowField {
    let nullable = f.nullable || matches!(f.presence, Presence::Optional { default: None });
    ArrowField::new(&f.name, arrow_type(&f.kind), nullable)
}

fn arrow_type(kind: &Kind) -> DataType {
    match kind {
        Kind::String(rule) => match rule.format {
            Some(Format::DateTime) => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
            }
            Some(Format::Date) => DataType::Date32,
            _ => DataType::Utf8,
        },
        Kind::Enum(_) => DataType::Utf8,
        Kind::Integer(_) => DataType::Int64,
        Kind::Number(_) => DataType::Float64,
        Kind::Boolean => DataType::Boolean,
        Kind::Object(fields) => DataType::Struct(Fields::from(
            fields.iter().map(arrow_field).collect::<Vec<_>>(),
        )),
        Kind::Array { items, .. } => {
            DataType::List(Arc::new(ArrowField::new("item", arrow_type(items), false)))
        }
    }
}

/// A validated record as a lake row: date-times as UTC microseconds, the stamp added; `index` is
/// the record's place in its request (`_row`).
pub fn row(d: &Dataset, checked: &Value, stamp: &Stamp, index: usize) -> Value {
    let mut out = Map::new();
    for f in &d.fields {
        out.insert(f.name.clone(), lake_value(&f.kind, &checked[&f.name]));
    }
    out.insert(EVENT_ID.into(), json!(stamp.event_id));
    out.insert(ROW.into(), json!(index));
    out.insert(
        RECEIVED_AT.into(),
        json!(stamp.received_at.as_microsecond()),
    );
    out.insert(SCHEMA_VERSION.into(), json!(d.version));
    Value::Object(out)
}

fn lake_value(kind: &Kind, v: &Value) -> Value {
    match (kind, v) {
        (_, Value::Null) => Value::Null,
        (Kind::String(r), Value::String(s)) if r.format == Some(Format::DateTime) => s
            .parse::<jiff::Timestamp>()
            .map_or(Value::Null, |t| json!(t.as_microsecond())),
        (Kind::Object(fields), Value::Object(o)) => Value::Object(
            fields
                .iter()
                .map(|f| {
                    let x = o.get(&f.name).unwrap_or(&Value::Null);
                    (f.name.clone(), lake_value(&f.kind, x))
                })
                .collect(),
        ),
        (Kind::Array { items, .. }, Value::Array(xs)) => {
            Value::Array(xs.iter().map(|x| lake_value(items, x)).collect())
        }
        (_, other) => other.clone(),
    }
}

/// One Parquet object (Snappy-compressed) holding `rows`.
pub fn parquet(d: &Dataset, rows: &[Value]) -> Result<Vec<u8>, LakeError> {
    let mut w = ParquetWriter::new(d, Vec::new())?;
    for chunk in rows.chunks(BATCH_ROWS) {
        w.write(chunk)?;
    }
    w.finish()
}

/// Lake rows written as Parquet (Snappy) batch by batch, so memory holds one batch of rows and
/// the encoded row group, not every row: for a whole file of records at once (the benchmark,
/// and compaction).
///
/// ```
/// # use sluice_api::{Dataset, lake};
/// # use serde_json::json;
/// let d = Dataset::from_toml("d.toml", "[dataset]\nname = \"d\"\nversion = 1\n[fields.n]\ntype = \"integer\"\n").unwrap();
/// let stamp = lake::Stamp { event_id: "e1".into(), received_at: "2024-05-01T12:00:00Z".parse().unwrap(), body_sha256: String::new() };
/// let mut w = lake::ParquetWriter::new(&d, Vec::new()).unwrap();
/// for n in 0..3 {
///     w.write(&[lake::row(&d, &json!({"n": n}), &stamp, n as usize)]).unwrap();
/// }
/// let rows = lake::rows(w.finish().unwrap()).unwrap();
/// assert_eq!(rows.len(), 3);
/// ```
pub struct ParquetWriter<W: std::io::Write + Send> {
    dataset: String,
    decoder: arrow_json::reader::Decoder,
    writer: ArrowWriter<W>,
}

/// Rows a batch: callers hand [`ParquetWriter::write`] slices of about this many.
pub const BATCH_ROWS: usize = 8192;

impl<W: std::io::Write + Send> ParquetWriter<W> {
    pub fn new(d: &Dataset, out: W) -> Result<Self, LakeError> {
        let err = |e: &dyn std::fmt::Display| lake_error(&d.name, e);
        let schema = Arc::new(arrow_schema(d));
        let decoder = arrow_json::ReaderBuilder::new(schema.clone())
            .with_batch_size(BATCH_ROWS)
            .with_strict_mode(true)
            .build_decoder()
            .map_err(|e| err(&e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(concat!("sluice ", env!("CARGO_PKG_VERSION")).to_owned())
            .build();
        let writer = ArrowWriter::try_new(out, schema, Some(props)).map_err(|e| err(&e))?;
        Ok(ParquetWriter {
            dataset: d.name.clone(),
            decoder,
            writer,
        })
    }

    /// Decodes `rows` (from [`row`]) into one Arrow batch and hands it to the Parquet writer.
    pub fn write(&mut self, rows: &[Value]) -> Result<(), LakeError> {
        let err = |e: &dyn std::fmt::Display| lake_error(&self.dataset, e);
        self.decoder.serialize(rows).map_err(|e| err(&e))?;
        while let Some(batch) = self.decoder.flush().map_err(|e| err(&e))? {
            self.writer.write(&batch).map_err(|e| err(&e))?;
        }
        Ok(())
    }

    /// Writes the footer; returns the output.
    pub fn finish(self) -> Result<W, LakeError> {
        self.writer
            .into_inner()
            .map_err(|e| lake_error(&self.dataset, &e))
    }
}

impl<W: std::io::Write + Send> std::fmt::Debug for ParquetWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetWriter")
            .field("dataset", &self.dataset)
            .finish_non_exhaustive()
    }
}

fn lake_error(dataset: &str, e: &dyn std::fmt::Display) -> LakeError {
    LakeError {
        dataset: dataset.to_owned(),
        message: e.to_string(),
    }
}

/// The rows of a Parquet object, as JSON objects (timestamps as RFC 3339 text): to show what
/// landed, and to compare it in tests.
///
/// ```
/// # use sluice_api::{Dataset, lake};
/// # use serde_json::json;
/// let d = Dataset::from_toml("d.toml", "[dataset]\nname = \"d\"\nversion = 1\n[fields.n]\ntype = \"integer\"\n").unwrap();
/// let stamp = lake::Stamp { event_id: "e1".into(), received_at: "2024-05-01T12:00:00Z".parse().unwrap(), body_sha256: String::new() };
/// let bytes = lake::parquet(&d, &[lake::row(&d, &json!({"n": 7}), &stamp, 0)]).unwrap();
/// let rows = lake::rows(bytes).unwrap();
/// assert_eq!((rows[0]["n"].clone(), rows[0]["_received_at"].clone()), (json!(7), json!("2024-05-01T12:00:00Z")));
/// ```
pub fn rows(
    parquet_bytes: impl Into<bytes::Bytes>,
) -> Result<Vec<Value>, parquet::errors::ParquetError> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        parquet_bytes.into(),
    )?
    .build()?;
    let mut out = arrow_json::ArrayWriter::new(Vec::new());
    let external =
        |e: &dyn std::error::Error| parquet::errors::ParquetError::General(e.to_string());
    for batch in reader {
        out.write(&batch?).map_err(|e| external(&e))?;
    }
    out.finish().map_err(|e| external(&e))?;
    let bytes = out.into_inner();
    match bytes.is_empty() {
        true => Ok(Vec::new()),
        false => serde_json::from_slice(&bytes).map_err(|e| external(&e)),
    }
}

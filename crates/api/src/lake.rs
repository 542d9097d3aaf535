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
//! let bytes = lake::parquet(&d, &[json!({"at": "2024-05-01T09:00:00-03:00"})], &stamp).unwrap();
//! assert_eq!(&bytes[..4], b"PAR1");
//! let rows = lake::rows(bytes).unwrap();
//! assert_eq!(rows[0]["at"], json!("2024-05-01T12:00:00Z")); // stored as UTC microseconds
//! assert_eq!((rows[0]["_event_id"].clone(), rows[0]["_row"].clone()), (json!("e1"), json!(0)));
//! ```

use std::sync::Arc;

use arrow_schema::{DataType, Field as ArrowField, FieldRef, Fields, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::dataset::{Dataset, Field, Format, Kind, Presence};

mod columns;

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
        Kind::Array { items, .. } => DataType::List(list_item(items)),
    }
}

/// The items of an array column (never null: validation refuses a null item).
fn list_item(items: &Kind) -> FieldRef {
    Arc::new(ArrowField::new("item", arrow_type(items), false))
}

/// One Parquet object (Snappy-compressed) holding one request's validated `records` (from
/// [`validate::record`](crate::validate::record)), `_row` numbering them from 0.
pub fn parquet(d: &Dataset, records: &[Value], stamp: &Stamp) -> Result<Vec<u8>, LakeError> {
    let mut w = ParquetWriter::new(d, Vec::new())?;
    for (i, r) in records.iter().enumerate() {
        w.push(r, stamp, i)?;
    }
    w.finish()
}

/// Validated records written as Parquet (Snappy), appended straight to typed Arrow builders and
/// handed over a batch of [`BATCH_ROWS`] at a time, so memory holds one batch and the encoded
/// row group, not every row: for a whole file of records at once (the benchmark).
///
/// ```
/// # use sluice_api::{Dataset, lake};
/// # use serde_json::json;
/// let d = Dataset::from_toml("d.toml", "[dataset]\nname = \"d\"\nversion = 1\n[fields.n]\ntype = \"integer\"\n").unwrap();
/// let stamp = lake::Stamp { event_id: "e1".into(), received_at: "2024-05-01T12:00:00Z".parse().unwrap(), body_sha256: String::new() };
/// let mut w = lake::ParquetWriter::new(&d, Vec::new()).unwrap();
/// for n in 0..3 {
///     w.push(&json!({"n": n}), &stamp, n as usize).unwrap();
/// }
/// let rows = lake::rows(w.finish().unwrap()).unwrap();
/// assert_eq!(rows.len(), 3);
/// ```
pub struct ParquetWriter<W: std::io::Write + Send> {
    dataset: String,
    rows: columns::Columns,
    writer: ArrowWriter<W>,
}

/// Rows a batch (an Arrow record batch handed to the Parquet writer).
pub const BATCH_ROWS: usize = 8192;

impl<W: std::io::Write + Send> ParquetWriter<W> {
    pub fn new(d: &Dataset, out: W) -> Result<Self, LakeError> {
        let rows = columns::Columns::new(d, BATCH_ROWS);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(concat!("sluice ", env!("CARGO_PKG_VERSION")).to_owned())
            .build();
        let writer = ArrowWriter::try_new(out, rows.schema(), Some(props))
            .map_err(|e| lake_error(&d.name, &e))?;
        Ok(ParquetWriter {
            dataset: d.name.clone(),
            rows,
            writer,
        })
    }

    /// Appends one validated record, the `index`th of its request (`_row`); writes a batch
    /// when one is full.
    pub fn push(&mut self, record: &Value, stamp: &Stamp, index: usize) -> Result<(), LakeError> {
        self.rows.push(record, stamp, index);
        match self.rows.len() >= BATCH_ROWS {
            true => self.flush(),
            false => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), LakeError> {
        if self.rows.len() == 0 {
            return Ok(());
        }
        let err = |e: &dyn std::fmt::Display| lake_error(&self.dataset, e);
        let batch = self.rows.finish().map_err(|e| err(&e))?;
        self.writer.write(&batch).map_err(|e| err(&e))
    }

    /// Writes the last batch and the footer; returns the output.
    pub fn finish(mut self) -> Result<W, LakeError> {
        self.flush()?;
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
/// let bytes = lake::parquet(&d, &[json!({"n": 7})], &stamp).unwrap();
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every kind a dataset can declare, nested ones inside nested ones.
    const EVERY_KIND: &str = r#"
[dataset]
name = "every"
version = 7
[fields.text]
type = "string"
[fields.at]
type = "string"
format = "date-time"
[fields.on]
type = "string"
format = "date"
[fields.id]
type = "string"
format = "uuid"
[fields.color]
type = "enum"
values = ["red", "blue"]
[fields.n]
type = "integer"
[fields.x]
type = "number"
[fields.yes]
type = "boolean"
[fields.spot]
type = "object"
nullable = true
[fields.spot.fields.lat]
type = "number"
[fields.spot.fields.seen]
type = "array"
items = { type = "string", format = "date-time" }
[fields.legs]
type = "array"
optional = true
default = []
items = { type = "object", fields = { km = { type = "integer" } } }
[fields.note]
type = "string"
optional = true
nullable = true
"#;

    fn stamp() -> Stamp {
        Stamp {
            event_id: "e1".into(),
            received_at: "2024-05-01T12:00:00Z".parse().unwrap(),
            body_sha256: String::new(),
        }
    }

    fn checked(d: &Dataset, v: Value) -> Value {
        crate::validate::record(d, &v, &[]).unwrap()
    }

    #[test]
    fn every_kind_lands_in_its_column_and_reads_back_as_posted() {
        let d = Dataset::from_toml("every.toml", EVERY_KIND).unwrap();
        let full = json!({"text": "a,\"b\"\n", "at": "2024-05-01T09:00:00.5-03:00",
            "on": "1969-12-31", "id": "0190c6d4-2b7e-7cc0-8000-000000000001", "color": "blue",
            "n": -9_007_199_254_740_993_i64, "x": 0.1, "yes": false,
            "spot": {"lat": -90.0, "seen": ["2024-05-01T00:00:00Z", "2024-05-02T00:00:00+01:00"]},
            "legs": [{"km": 1}, {"km": 2}], "note": "ok"});
        let sparse = json!({"text": "", "at": "1970-01-01T00:00:00Z", "on": "2024-02-29",
            "id": "0190c6d4-2b7e-7cc0-8000-000000000002", "color": "red", "n": 0, "x": 1,
            "yes": true, "spot": null});
        let records = [checked(&d, full), checked(&d, sparse)];

        let rows = rows(parquet(&d, &records, &stamp()).unwrap()).unwrap();

        assert_eq!(
            rows[0],
            json!({"text": "a,\"b\"\n", "at": "2024-05-01T12:00:00.500Z", "on": "1969-12-31",
                "id": "0190c6d4-2b7e-7cc0-8000-000000000001", "color": "blue",
                "n": -9_007_199_254_740_993_i64, "x": 0.1, "yes": false,
                "spot": {"lat": -90.0, "seen": ["2024-05-01T00:00:00Z", "2024-05-01T23:00:00Z"]},
                "legs": [{"km": 1}, {"km": 2}], "note": "ok",
                "_event_id": "e1", "_row": 0, "_received_at": "2024-05-01T12:00:00Z",
                "_schema_version": 7})
        );
        // Nulls are left out of arrow-json's rows; the default array is there, empty.
        assert_eq!(
            rows[1],
            json!({"text": "", "at": "1970-01-01T00:00:00Z", "on": "2024-02-29",
                "id": "0190c6d4-2b7e-7cc0-8000-000000000002", "color": "red", "n": 0,
                "x": 1.0, "yes": true, "legs": [],
                "_event_id": "e1", "_row": 1, "_received_at": "2024-05-01T12:00:00Z",
                "_schema_version": 7})
        );
    }

    #[test]
    fn a_file_of_records_is_written_a_batch_at_a_time_and_numbered_throughout() {
        let d = Dataset::from_toml("every.toml", EVERY_KIND).unwrap();
        let one = checked(
            &d,
            json!({"text": "t", "at": "2024-05-01T00:00:00Z", "on": "2024-05-01",
                "id": "0190c6d4-2b7e-7cc0-8000-000000000001", "color": "red", "n": 1, "x": 1.5,
                "yes": true, "spot": {"lat": 1.0, "seen": []}}),
        );
        let n = BATCH_ROWS * 2 + 3;
        let mut w = ParquetWriter::new(&d, Vec::new()).unwrap();
        for i in 0..n {
            w.push(&one, &stamp(), i).unwrap();
        }
        let bytes = bytes::Bytes::from(w.finish().unwrap());

        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .unwrap();
        let groups: Vec<i64> = (reader.metadata().row_groups().iter())
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups.iter().sum::<i64>(), n as i64);
        let rows = rows(bytes).unwrap();
        assert_eq!((rows.len(), &rows[n - 1]["_row"]), (n, &json!(n - 1)));
        assert_eq!(rows[n - 1]["spot"], json!({"lat": 1.0, "seen": []}));
    }

    #[test]
    fn a_value_validation_would_have_refused_is_an_error_not_a_file() {
        let d = Dataset::from_toml("every.toml", EVERY_KIND).unwrap();
        let unchecked = json!({"text": 5, "at": "yesterday"});

        let e = parquet(&d, &[unchecked], &stamp()).unwrap_err();

        assert_eq!(e.dataset, "every");
        assert!(e.message.contains("text"), "{}", e.message);
    }
}

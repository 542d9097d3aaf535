//! Merging Parquet objects into objects of a target size, each record once: the first object that
//! holds a request's records (`_event_id`) gives them, every other copy is left out.
//!
//! ```
//! use std::collections::HashSet;
//! use sluice_api::{Dataset, lake};
//! use sluice_compact::merge::Merger;
//! use serde_json::json;
//!
//! let d = Dataset::from_toml("d.toml", "[dataset]\nname = \"d\"\nversion = 1\n[fields.n]\ntype = \"integer\"\n").unwrap();
//! let stamp = lake::Stamp { event_id: "e1".into(), received_at: "2024-05-01T12:00:00Z".parse().unwrap(), body_sha256: String::new() };
//! let object = lake::parquet(&d, &[json!({"n": 1})], &stamp).unwrap();
//! let mut m = Merger::new(&d, 128 << 20, HashSet::new());
//! for (i, bytes) in [object.clone(), object].into_iter().enumerate() {
//!     m.add(&format!("o{i}"), bytes::Bytes::from(bytes)).unwrap();
//! }
//! let (outputs, counts) = m.finish().unwrap();
//! assert_eq!((outputs.len(), counts.rows, counts.duplicates), (1, 1, 1));
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, RecordBatch, StringArray, new_null_array};
use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sluice_api::Dataset;
use sluice_api::lake::{EVENT_ID, arrow_schema};

/// An object that could not be merged, and why.
#[derive(Debug, thiserror::Error)]
#[error("{object}: {message}")]
pub struct MergeError {
    pub object: String,
    pub message: String,
}

/// Records written and copies left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub rows: u64,
    pub duplicates: u64,
}

/// Objects in, merged objects (Parquet bytes) out.
#[derive(Debug)]
pub struct Merger {
    schema: SchemaRef,
    target_bytes: u64,
    /// Requests whose records are already in an object (kept, or added earlier), with the object
    /// that gives them.
    owner: HashMap<String, usize>,
    objects: usize,
    writer: Option<ArrowWriter<Vec<u8>>>,
    outputs: Vec<Vec<u8>>,
    counts: Counts,
}

impl Merger {
    /// A merger for `d`'s objects; `known` are requests whose records stay in objects not being
    /// merged (their copies are left out).
    pub fn new(d: &Dataset, target_bytes: u64, known: HashSet<String>) -> Merger {
        Merger {
            schema: Arc::new(arrow_schema(d)),
            target_bytes,
            owner: known.into_iter().map(|e| (e, usize::MAX)).collect(),
            objects: 0,
            writer: None,
            outputs: Vec::new(),
            counts: Counts::default(),
        }
    }

    /// Adds one object's records (but those of requests another object gave).
    pub fn add(&mut self, object: &str, bytes: Bytes) -> Result<(), MergeError> {
        let fail = |message: String| MergeError {
            object: object.to_owned(),
            message,
        };
        let this = self.objects;
        self.objects += 1;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| fail(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| fail(e.to_string()))?;
            let batch = conform(&batch, &self.schema).map_err(fail)?;
            let keep = self.claim(&batch, this).map_err(fail)?;
            let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
                .map_err(|e| fail(e.to_string()))?;
            self.counts.duplicates += (batch.num_rows() - kept.num_rows()) as u64;
            self.write(&kept).map_err(fail)?;
        }
        Ok(())
    }

    /// Which rows of `batch` (from object `this`) are kept: those of requests no other object gave.
    fn claim(&mut self, batch: &RecordBatch, this: usize) -> Result<BooleanArray, String> {
        let events = batch
            .column_by_name(EVENT_ID)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| format!("no {EVENT_ID} column of strings"))?;
        Ok(events
            .iter()
            .map(|e| {
                let e = e.unwrap_or_default();
                let owner = *self.owner.entry(e.to_owned()).or_insert(this);
                Some(owner == this)
            })
            .collect())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.writer.is_none() {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build();
            let w = ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(props))
                .map_err(|e| e.to_string())?;
            self.writer = Some(w);
        }
        let w = self.writer.as_mut().expect("set above");
        w.write(batch).map_err(|e| e.to_string())?;
        self.counts.rows += batch.num_rows() as u64;
        if (w.bytes_written() + w.in_progress_size()) as u64 >= self.target_bytes {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), String> {
        if let Some(w) = self.writer.take() {
            self.outputs
                .push(w.into_inner().map_err(|e| e.to_string())?);
        }
        Ok(())
    }

    /// The merged objects, in order, and the counts.
    pub fn finish(mut self) -> Result<(Vec<Vec<u8>>, Counts), MergeError> {
        self.close().map_err(|message| MergeError {
            object: "(output)".into(),
            message,
        })?;
        Ok((self.outputs, self.counts))
    }
}

/// `batch` with `schema`'s columns, matched by name: a column an older object lacks is NULL when
/// the schema allows it (a field added in a later dataset version).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => Err(format!(
                "column {:?} is {}, the dataset has {}",
                f.name(),
                c.data_type(),
                f.data_type()
            )),
            None if f.is_nullable() => Ok(new_null_array(f.data_type(), batch.num_rows())),
            None => Err(format!("no column {:?}", f.name())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::new(Schema::new(schema.fields().clone())), columns)
        .map_err(|e| e.to_string())
}

/// The requests (`_event_id`) whose records an object holds.
pub fn events(object: &str, bytes: Bytes) -> Result<HashSet<String>, MergeError> {
    let fail = |message: String| MergeError {
        object: object.to_owned(),
        message,
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| fail(e.to_string()))?;
    let index = builder
        .schema()
        .index_of(EVENT_ID)
        .map_err(|e| fail(e.to_string()))?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut out = HashSet::new();
    for batch in reader {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        let events = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| fail(format!("{EVENT_ID} is not strings")))?;
        out.extend(events.iter().flatten().map(str::to_owned));
    }
    Ok(out)
}

//! # sluice-flatten
//!
//! Nested JSON records → ordered flat rows → CSV that Postgres `COPY` reads as is. Pure: no async
//! runtime, no AWS, no SQL.
//!
//! - Nested keys are joined depth-first with a separator (`purchase_price_value`), columns in
//!   first-seen order; arrays become JSON text (default) or indexed columns.
//! - Scalars keep their exact text: `0.1`, `1e400`, `18446744073709551616`, `97.00` are never
//!   re-formatted. `null` is NULL.
//! - Column names are safe Postgres identifiers; collisions are kept apart and reported.
//! - Input streams: JSON Lines, a top-level array, or the array at a path in a document.
//!
//! ```
//! use sluice_flatten::{CsvPipeline, InputFormat, Options};
//!
//! let input = br#"{"transaction":"HP1","purchase":{"price":{"value":97.0},"buyer":null}}
//! {"transaction":"HP2","purchase":{"price":{"value":1e400},"buyer":""}}"#;
//! let mut p = CsvPipeline::new(&input[..], InputFormat::JsonLines, Options::default()).unwrap();
//! let mut out = Vec::new();
//! let part = p.write_part(&mut out).unwrap();
//! assert_eq!(part.rows, 2);
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     "transaction,purchase_price_value,purchase_buyer\nHP1,97.0,\nHP2,1e400,\"\"\n"
//! );
//! ```

pub mod csv;
mod flatten;
pub mod name;
mod records;
mod schema;

use std::io::{Read, Write};

pub use crate::csv::{CsvReader, CsvRecord, CsvWriter};
pub use crate::flatten::{
    ArrayPolicy, Flattener, HARD_MAX_DEPTH, Options, RecordFailure, Row, compact_json,
};
pub use crate::records::{Flattened, InputFormat, Record, RecordReader};
pub use crate::schema::{Collision, Column, JsonTypes, Manifest, Schema, Segment, SourcePath};

/// Everything that can go wrong, with where it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record is not valid JSON, or not an object.
    #[error("record {record} (input byte {offset}, at {path}): {message}")]
    Record {
        record: u64,
        offset: u64,
        path: String,
        message: String,
    },
    /// The input's framing is broken (truncated, unbalanced, missing records path).
    #[error("input byte {offset} (record {record}): {message}")]
    Input {
        offset: u64,
        record: u64,
        message: String,
    },
    #[error("invalid option: {0}")]
    Options(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How a CSV part ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartEnd {
    /// The input is exhausted.
    Finished,
    /// A record added columns: it opens the next part, whose header has them.
    SchemaGrew,
}

/// What one [`CsvPipeline::write_part`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSummary {
    /// Data rows (the header is not counted; a part with 0 rows wrote nothing at all).
    pub rows: u64,
    /// Columns in this part's header.
    pub columns: usize,
    pub end: PartEnd,
}

/// Records in, CSV parts out: every part has a header equal to the schema when it started, and a
/// record that grows the schema starts a new part, so no row is ever wider than its header.
/// Columns only ever append, so earlier parts are prefixes of later ones.
#[derive(Debug)]
pub struct CsvPipeline<R> {
    reader: RecordReader<R>,
    flattener: Flattener,
    pending: bool,
    done: bool,
}

impl<R: Read> CsvPipeline<R> {
    pub fn new(input: R, format: InputFormat, opts: Options) -> Result<Self, Error> {
        opts.validate()?;
        Ok(Self::with_flattener(input, format, Flattener::new(opts)))
    }

    /// A pipeline that continues an existing flattener (and its schema).
    pub fn with_flattener(input: R, format: InputFormat, flattener: Flattener) -> Self {
        Self {
            reader: RecordReader::new(input, format),
            flattener,
            pending: false,
            done: false,
        }
    }

    pub fn flattener(&self) -> &Flattener {
        &self.flattener
    }
    pub fn schema(&self) -> &Schema {
        self.flattener.schema()
    }
    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.reader.records()
    }
    /// Input bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.offset()
    }

    /// Flattens the next record into the flattener's row; false at the end of the input.
    fn advance(&mut self) -> Result<bool, Error> {
        let Some(rec) = self.reader.next_flattened(&mut self.flattener)? else {
            self.done = true;
            return Ok(false);
        };
        match rec.result {
            Ok(()) => Ok(true),
            Err(f) => Err(Error::Record {
                record: rec.record.number,
                offset: rec.record.offset + f.offset as u64,
                path: f.path.to_string(),
                message: f.message,
            }),
        }
    }

    /// Writes the next part (header and rows) to `out`. Call again while it returns
    /// [`PartEnd::SchemaGrew`].
    pub fn write_part<W: Write>(&mut self, out: W) -> Result<PartSummary, Error> {
        if !self.pending && (self.done || !self.advance()?) {
            return Ok(PartSummary {
                rows: 0,
                columns: self.schema().len(),
                end: PartEnd::Finished,
            });
        }
        self.pending = false;
        let width = self.schema().len();
        let mut w = CsvWriter::new(out);
        w.write_fields(self.schema().names().map(Some))?;
        w.write_row(self.flattener.row(), width)?;
        let mut rows = 1;
        let end = loop {
            if !self.advance()? {
                break PartEnd::Finished;
            }
            if self.schema().len() > width {
                self.pending = true;
                break PartEnd::SchemaGrew;
            }
            w.write_row(self.flattener.row(), width)?;
            rows += 1;
        };
        w.flush()?;
        Ok(PartSummary {
            rows,
            columns: width,
            end,
        })
    }
}

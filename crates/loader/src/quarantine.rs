//! Rejected rows: a CSV file of `_line`, `_error` and the row as read, written as they come and
//! uploaded with the load, beside the first few reasons for error messages.

use std::io::Seek;

use std::borrow::Cow;

use sluice_flatten::csv::{CsvRecord, CsvWriter};
use sluice_transform::Redact;

use crate::error::{Error, Rejection};

/// How many bad lines an over-the-limit error names.
const SAMPLE_LINES: usize = 5;

/// The quarantine file being written (created with the first rejected row).
#[derive(Debug)]
pub(crate) struct Quarantine {
    header: Vec<String>,
    /// Columns (by header position) redacted in the rows as read too, and the salt.
    redactions: Vec<(usize, Redact)>,
    salt: String,
    writer: Option<CsvWriter<std::fs::File>>,
    rejected: u64,
    samples: Vec<Rejection>,
}

/// The rejected rows of a load.
#[derive(Debug, Default)]
pub(crate) struct Quarantined {
    pub rejected: u64,
    /// The first few, for error messages.
    pub samples: Vec<Rejection>,
    /// The quarantine file, rewound; `None` when no row was rejected.
    pub file: Option<std::fs::File>,
}

impl Quarantine {
    pub fn new(header: Vec<String>, redactions: Vec<(usize, Redact)>, salt: String) -> Self {
        Self {
            header,
            redactions,
            salt,
            writer: None,
            rejected: 0,
            samples: Vec::new(),
        }
    }

    /// Goes on writing after the rows already `quarantined` (same file, same counts).
    pub fn resume(mut self, quarantined: Quarantined) -> Result<Self, Error> {
        self.rejected = quarantined.rejected;
        self.samples = quarantined.samples;
        if let Some(mut file) = quarantined.file {
            file.seek(std::io::SeekFrom::End(0))
                .map_err(Error::Quarantine)?;
            self.writer = Some(CsvWriter::new(file));
        }
        Ok(self)
    }

    /// Adds a rejected row with its fields as read.
    pub fn add(&mut self, rejection: Rejection, record: &CsvRecord) -> Result<(), Error> {
        self.rejected += 1;
        let line = rejection.line.to_string();
        let reason = rejection.reason.to_string();
        if self.samples.len() < SAMPLE_LINES {
            self.samples.push(rejection);
        }
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(Self::create(&self.header)?),
        };
        // The row as read, but a redacted column as it would be stored: NULL or its hash.
        let fields = record.iter().enumerate().map(|(i, f)| {
            match self.redactions.iter().find(|(c, _)| *c == i) {
                None => f.map(Cow::Borrowed),
                Some((_, r)) => f
                    .and_then(|v| r.apply(&self.salt, v))
                    .map(|h| Cow::Owned(h.into_bytes())),
            }
        });
        let fields: Vec<Option<Cow<'_, [u8]>>> = fields.collect();
        writer
            .write_fields(
                [Some(line.as_bytes()), Some(reason.as_bytes())]
                    .into_iter()
                    .chain(fields.iter().map(|f| f.as_deref())),
            )
            .map_err(Error::Quarantine)
    }

    fn create(header: &[String]) -> Result<CsvWriter<std::fs::File>, Error> {
        let file = tempfile::tempfile().map_err(Error::Quarantine)?;
        let mut w = CsvWriter::new(file);
        w.write_fields(
            ["_line", "_error"]
                .into_iter()
                .chain(header.iter().map(String::as_str))
                .map(Some),
        )
        .map_err(Error::Quarantine)?;
        Ok(w)
    }

    pub fn finish(self) -> Result<Quarantined, Error> {
        let file = match self.writer {
            None => None,
            Some(w) => {
                let mut file = w.into_inner().map_err(Error::Quarantine)?;
                file.rewind().map_err(Error::Quarantine)?;
                Some(file)
            }
        };
        Ok(Quarantined {
            rejected: self.rejected,
            samples: self.samples,
            file,
        })
    }
}

impl Quarantined {
    /// Above `limit` (`MAX_REJECT_RATIO`) of `rows_read` rejected, the object fails as a whole.
    pub fn check_ratio(&self, rows_read: u64, limit: f64) -> Result<(), Error> {
        if rows_read > 0 && self.rejected as f64 / rows_read as f64 > limit {
            return Err(Error::TooManyRejected {
                rejected: self.rejected,
                rows: rows_read,
                limit,
                samples: self.samples.clone(),
            });
        }
        Ok(())
    }
}

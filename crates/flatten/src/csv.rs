//! sluice's CSV convention, RFC 4180 and Postgres `COPY … (FORMAT csv)` compatible: a NULL is an
//! unquoted empty field, an empty string is `""`. Built on `csv-core`, the engine of the `csv` crate.
//!
//! ```
//! use sluice_flatten::csv::{CsvReader, CsvRecord, CsvWriter};
//!
//! let mut w = CsvWriter::new(Vec::new());
//! w.write_fields([Some("a"), None, Some(""), Some("say \"hi\"\nbye")]).unwrap();
//! let bytes = w.into_inner().unwrap();
//! assert_eq!(bytes, b"a,,\"\",\"say \"\"hi\"\"\nbye\"\n");
//!
//! let mut r = CsvReader::new(&bytes[..]);
//! let mut rec = CsvRecord::default();
//! assert!(r.read(&mut rec).unwrap());
//! assert_eq!(rec.get(0), Some(&b"a"[..]));
//! assert_eq!(rec.get(1), None);                 // NULL
//! assert_eq!(rec.get(2), Some(&b""[..]));       // empty string
//! assert_eq!(rec.get(3), Some(&b"say \"hi\"\nbye"[..]));
//! ```

use std::io::{self, Read, Write};

use csv_core::{QuoteStyle, ReadFieldResult, WriteResult};

use crate::flatten::Row;

const BUF: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Writes rows in the convention, buffered.
#[derive(Debug)]
pub struct CsvWriter<W: Write> {
    out: Option<W>,
    buf: Vec<u8>,
    necessary: csv_core::Writer,
    always: csv_core::Writer,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W) -> Self {
        let build = |style| {
            csv_core::WriterBuilder::new()
                .quote_style(style)
                .terminator(csv_core::Terminator::Any(b'\n'))
                .build()
        };
        Self {
            out: Some(out),
            buf: Vec::with_capacity(BUF + 1024),
            necessary: build(QuoteStyle::Necessary),
            always: build(QuoteStyle::Always),
        }
    }

    /// Writes one record; `None` fields are NULL.
    pub fn write_fields<'a, I, S>(&mut self, fields: I) -> io::Result<()>
    where
        I: IntoIterator<Item = Option<S>>,
        S: AsRef<[u8]> + 'a,
    {
        let mut first = true;
        for f in fields {
            if !first {
                self.buf.push(b',');
            }
            first = false;
            if let Some(f) = f {
                self.field(f.as_ref());
            }
        }
        self.end_record()
    }

    /// Writes a flattened row padded with NULLs to `width` columns.
    pub fn write_row(&mut self, row: &Row, width: usize) -> io::Result<()> {
        for i in 0..width {
            if i > 0 {
                self.buf.push(b',');
            }
            if let Some(v) = row.get(i) {
                self.field(v.as_bytes());
            }
        }
        self.end_record()
    }

    fn field(&mut self, input: &[u8]) {
        if input.is_empty() {
            self.buf.extend_from_slice(b"\"\"");
            return;
        }
        // `\.` alone on a line is COPY's end-of-data marker: always quote it.
        // A record's first field that begins with a UTF-8 BOM: quoted, or a reader would take
        // the BOM for the file's own and drop it (csv-core does, at the first record it sees).
        let record_start = self.buf.last().is_none_or(|&b| b == b'\n');
        let bom_first = record_start && input.starts_with(BOM);
        let always = input == b"\\." || bom_first;
        if !always && !self.necessary.should_quote(input) {
            // csv-core's own decision: nothing to quote, so the bytes go out as they are.
            self.buf.extend_from_slice(input);
            return;
        }
        let w = if always {
            &mut self.always
        } else {
            &mut self.necessary
        };
        let mut input = input;
        loop {
            let len = self.buf.len();
            self.buf.resize(len + input.len() * 2 + 2, 0);
            let (res, nin, nout) = w.field(input, &mut self.buf[len..]);
            self.buf.truncate(len + nout);
            input = &input[nin..];
            if res == WriteResult::InputEmpty {
                break;
            }
        }
        // Close an open quote (csv-core writes the delimiter with it; we drop that byte).
        let len = self.buf.len();
        self.buf.resize(len + 4, 0);
        let (_, nout) = w.delimiter(&mut self.buf[len..]);
        self.buf.truncate(len + nout - 1);
    }

    fn end_record(&mut self) -> io::Result<()> {
        self.buf.push(b'\n');
        if self.buf.len() >= BUF {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(&self.buf)?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Flushes everything to the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()?;
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out.take().expect("writer present until into_inner"))
    }

    /// Bytes written but not yet flushed to the underlying writer.
    ///
    /// ```
    /// use sluice_flatten::csv::CsvWriter;
    ///
    /// let mut w = CsvWriter::new(Vec::new());
    /// w.write_fields([Some("a"), None]).unwrap();
    /// assert_eq!((w.pending(), w.get_mut().len()), (3, 0));
    /// ```
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Mutable access to the underlying writer (flush first).
    pub fn get_mut(&mut self) -> &mut W {
        self.out.as_mut().expect("writer present until into_inner")
    }
}

/// One record read back: field bytes, whether each field was quoted, and where it started.
#[derive(Debug, Default, Clone)]
pub struct CsvRecord {
    /// Field bytes in `bytes[..used]`; the rest is initialised spare room, reused across records
    /// (never zeroed again: growing is amortised, clearing is free).
    bytes: Vec<u8>,
    used: usize,
    fields: Vec<(usize, bool)>,
    /// 1-based line on which the record starts.
    pub line: u64,
    /// Byte offset of the record in the input.
    pub offset: u64,
}

impl CsvRecord {
    pub fn len(&self) -> usize {
        self.fields.len()
    }
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
    /// Field `i`: `None` for NULL (an unquoted empty field).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let (end, quoted) = *self.fields.get(i)?;
        let start = if i == 0 { 0 } else { self.fields[i - 1].0 };
        if start == end && !quoted {
            None
        } else {
            Some(&self.bytes[start..end])
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = Option<&[u8]>> {
        (0..self.len()).map(|i| self.get(i))
    }
    fn clear(&mut self) {
        self.used = 0;
        self.fields.clear();
    }
}

/// Reads CSV in the convention, telling NULL from empty string; skips a UTF-8 BOM; accepts
/// `\n`, `\r\n` and `\r` line ends. An empty line is a record of one NULL field (as `COPY` reads
/// it), so a blank line in a wider file shows up as a short, ragged record: never dropped.
#[derive(Debug)]
pub struct CsvReader<R: Read> {
    input: R,
    core: csv_core::Reader,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    offset: u64,
    newlines: u64,
    prev_cr: bool,
    eof: bool,
    started: bool,
    max_record: usize,
}

/// The largest record [`CsvReader`] holds by default: 64 MiB. An unterminated quote would
/// otherwise make the rest of the input one field, all of it in memory.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

impl<R: Read> CsvReader<R> {
    /// Records over `max` bytes are an error (`InvalidData`, naming the line) instead of
    /// memory growing with the input.
    ///
    /// ```
    /// use sluice_flatten::csv::{CsvReader, CsvRecord};
    ///
    /// let mut r = CsvReader::new(&b"a\n\"never closed,1\n2\n3\n"[..]).with_max_record_bytes(8);
    /// let mut rec = CsvRecord::default();
    /// assert!(r.read(&mut rec).unwrap());
    /// let e = r.read(&mut rec).unwrap_err();
    /// assert!(e.to_string().starts_with("line 2: a record over 8 bytes"), "{e}");
    /// ```
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record = max;
        self
    }

    pub fn new(input: R) -> Self {
        Self {
            input,
            core: csv_core::Reader::new(),
            buf: vec![0; BUF],
            pos: 0,
            len: 0,
            offset: 0,
            newlines: 0,
            prev_cr: false,
            eof: false,
            started: false,
            max_record: MAX_RECORD_BYTES,
        }
    }

    /// Reads the next record into `rec`; false at end of input.
    pub fn read(&mut self, rec: &mut CsvRecord) -> io::Result<bool> {
        rec.clear();
        if !self.started {
            self.started = true;
            self.refill()?;
            if self.buf[..self.len].starts_with(BOM) {
                self.pos = 3;
                self.offset = 3;
            }
        }
        let mut at_field_start = true;
        let mut quoted = false;
        let mut record_started = false;
        loop {
            if self.pos == self.len && !self.eof {
                self.refill()?;
            }
            if !record_started {
                if self.pos == self.len {
                    if !self.eof {
                        continue;
                    }
                } else {
                    let b = self.buf[self.pos];
                    if self.prev_cr && b == b'\n' {
                        // The LF of a CRLF that ended the previous record.
                        self.prev_cr = false;
                        self.newlines += 1;
                        self.pos += 1;
                        self.offset += 1;
                        continue;
                    }
                    rec.offset = self.offset;
                    rec.line = self.newlines + 1;
                    record_started = true;
                    if b == b'\n' || b == b'\r' {
                        // An empty line is a record of one NULL field, as COPY reads it.
                        self.prev_cr = b == b'\r';
                        self.newlines += u64::from(b == b'\n');
                        self.pos += 1;
                        self.offset += 1;
                        rec.fields.push((0, false));
                        return Ok(true);
                    }
                }
                self.prev_cr = false;
            }
            let input = &self.buf[self.pos..self.len];
            if at_field_start && !input.is_empty() {
                quoted = input[0] == b'"';
                at_field_start = false;
            }
            if rec.used > self.max_record {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "line {}: a record over {} bytes (an unterminated quote?)",
                        rec.line, self.max_record
                    ),
                ));
            }
            if rec.bytes.len() - rec.used < 1024 {
                let grown = (rec.bytes.len() * 2).max(rec.used + 4096);
                rec.bytes.resize(grown, 0);
            }
            let (res, nin, nout) = self.core.read_field(input, &mut rec.bytes[rec.used..]);
            rec.used += nout;
            self.newlines += input[..nin].iter().filter(|&&b| b == b'\n').count() as u64;
            self.pos += nin;
            self.offset += nin as u64;
            match res {
                ReadFieldResult::InputEmpty | ReadFieldResult::OutputFull => {}
                ReadFieldResult::Field { record_end } => {
                    self.prev_cr = nin > 0 && input[nin - 1] == b'\r';
                    rec.fields.push((rec.used, quoted));
                    at_field_start = true;
                    quoted = false;
                    if record_end {
                        return Ok(true);
                    }
                }
                ReadFieldResult::End => return Ok(false),
            }
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        self.pos = 0;
        self.len = 0;
        loop {
            match self.input.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.len = n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

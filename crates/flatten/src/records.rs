//! Streaming record framing: JSON Lines, a top-level array, or the array at a path inside a
//! document (`items` in an API response). Memory holds one record at a time, never the input.
//!
//! ```
//! use sluice_flatten::{InputFormat, RecordReader};
//!
//! let page = br#"{"items":[{"a":1},{"a":2}],"page_info":{"next_page_token":"x"}}"#;
//! let mut r = RecordReader::new(&page[..], InputFormat::path("items"));
//! let mut n = 0;
//! while let Some(rec) = r.next_record().unwrap() {
//!     n += 1;
//!     assert_eq!(rec.number, n);
//! }
//! assert_eq!(n, 2);
//! ```

use std::io::{self, Read};

use crate::{Error, Flattener, RecordFailure};

/// How records are laid out in the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InputFormat {
    /// A top-level array if the input starts with `[`, otherwise JSON Lines.
    #[default]
    Auto,
    /// One JSON value per line (any whitespace between values is accepted).
    JsonLines,
    /// One top-level JSON array of records.
    Array,
    /// An object holding the record array at this key path (`["items"]`, `["data", "rows"]`).
    Path(Vec<String>),
}

impl InputFormat {
    /// A path format from a dotted path: `"items"`, `"data.rows"`.
    pub fn path(dotted: &str) -> Self {
        Self::Path(dotted.split('.').map(str::to_owned).collect())
    }
}

/// One record from [`RecordReader::next_flattened`], and how flattening it went.
#[derive(Debug)]
pub struct Flattened<'a> {
    pub record: Record<'a>,
    pub result: Result<(), RecordFailure>,
}

/// One framed record: its bytes, its 1-based number and its byte offset in the input.
#[derive(Debug)]
pub struct Record<'a> {
    pub bytes: &'a [u8],
    pub number: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Lines,
    ArrayFirst,
    ArrayNext,
    Done,
}

const CHUNK: usize = 64 * 1024;

/// The bytes that matter to the framing outside strings: quotes and brackets.
static STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// Frames records from any [`Read`], one at a time.
#[derive(Debug)]
pub struct RecordReader<R> {
    input: R,
    format: InputFormat,
    buf: Vec<u8>,
    /// Next unread byte in `buf`.
    pos: usize,
    /// Input offset of `buf[0]`.
    base: u64,
    eof: bool,
    state: State,
    /// For `Path`: how many objects are open around the record array.
    open_objects: usize,
    records: u64,
    /// The closing brackets a record still owes (kept between records: no allocation each).
    stack: Vec<u8>,
}

impl<R: Read> RecordReader<R> {
    pub fn new(input: R, format: InputFormat) -> Self {
        Self {
            input,
            format,
            buf: Vec::with_capacity(CHUNK),
            pos: 0,
            base: 0,
            eof: false,
            state: State::Start,
            open_objects: 0,
            records: 0,
            stack: Vec::new(),
        }
    }

    /// Records framed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The next record, or `None` at the end of a well-formed input.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, Error> {
        if !self.seek_record()? {
            return Ok(None);
        }
        self.frame().map(Some)
    }

    /// The next record, flattened by `f` (into [`Flattener::row`]) in the same pass that finds
    /// its end where the record is valid; or `None` at the end of a well-formed input. A
    /// record `f` cannot flatten is framed as [`RecordReader::next_record`] frames it, and
    /// comes with the failure [`Flattener::flatten`] gives on exactly its bytes.
    ///
    /// ```
    /// use sluice_flatten::{Flattener, InputFormat, Options, RecordReader};
    ///
    /// let input = b"{\"a\":1}\n{\"a\":tru}\n{\"b\":[2]}\n";
    /// let mut r = RecordReader::new(&input[..], InputFormat::JsonLines);
    /// let mut f = Flattener::new(Options::default());
    /// let mut out = Vec::new();
    /// while let Some(rec) = r.next_flattened(&mut f).unwrap() {
    ///     out.push((rec.record.number, rec.result.is_ok(), rec.record.bytes.len()));
    /// }
    /// assert_eq!(out, [(1, true, 7), (2, false, 9), (3, true, 9)]);
    /// ```
    pub fn next_flattened(&mut self, f: &mut Flattener) -> Result<Option<Flattened<'_>>, Error> {
        if !self.seek_record()? {
            return Ok(None);
        }
        // Most records end well inside the buffer: top it up first when little is left.
        if self.buf.len() - self.pos < CHUNK / 4 && !self.eof {
            self.fill()?;
        }
        self.drop_consumed();
        let start = self.pos;
        if let Some(len) = f.flatten_prefix(&self.buf[start..]) {
            self.pos = start + len;
            self.records += 1;
            let record = Record {
                bytes: &self.buf[start..self.pos],
                number: self.records,
                offset: self.base + start as u64,
            };
            return Ok(Some(Flattened {
                record,
                result: Ok(()),
            }));
        }
        // Past the buffer's end, invalid, or not an object: framed, then flattened alone.
        let record = self.frame()?;
        let result = f.flatten(record.bytes).map(|_| ());
        Ok(Some(Flattened { record, result }))
    }

    /// Moves to the next record's first byte; false at the end of a well-formed input.
    fn seek_record(&mut self) -> Result<bool, Error> {
        loop {
            match self.state {
                State::Done => return Ok(false),
                State::Start => self.start()?,
                State::Lines => {
                    if self.skip_ws()?.is_none() {
                        self.state = State::Done;
                        return Ok(false);
                    }
                    return Ok(true);
                }
                State::ArrayFirst | State::ArrayNext => {
                    let first = self.state == State::ArrayFirst;
                    match self.skip_ws()? {
                        None => return Err(self.err("input ends inside the record array")),
                        Some(b']') => {
                            self.pos += 1;
                            self.finish_document()?;
                            self.state = State::Done;
                            return Ok(false);
                        }
                        Some(b',') if !first => {
                            self.pos += 1;
                            if self.skip_ws()?.is_none() {
                                return Err(self.err("input ends inside the record array"));
                            }
                        }
                        Some(_) if first => {}
                        Some(b) => {
                            return Err(self.err(&format!(
                                "expected ',' or ']' between records, found {}",
                                show(b)
                            )));
                        }
                    }
                    self.state = State::ArrayNext;
                    return Ok(true);
                }
            }
        }
    }

    fn start(&mut self) -> Result<(), Error> {
        let first = self.skip_ws()?;
        let format = self.format.clone();
        self.state = match (&format, first) {
            // An empty document is no records only where records are lines; an API answer
            // that should hold an array and holds nothing is an error, not an empty page.
            (InputFormat::Auto | InputFormat::JsonLines, None) => State::Done,
            (InputFormat::Array, None) => {
                return Err(self.err("empty input: expected a JSON array of records"));
            }
            (InputFormat::Path(path), None) => {
                return Err(self.err(&format!(
                    "empty input: expected an object with the records at {:?}",
                    path.join(".")
                )));
            }
            (InputFormat::Auto, Some(b'[')) | (InputFormat::Array, Some(b'[')) => {
                self.pos += 1;
                State::ArrayFirst
            }
            (InputFormat::Auto | InputFormat::JsonLines, Some(_)) => State::Lines,
            (InputFormat::Array, Some(b)) => {
                return Err(self.err(&format!(
                    "expected a JSON array of records, found {}",
                    show(b)
                )));
            }
            (InputFormat::Path(path), Some(_)) => {
                self.descend(path)?;
                State::ArrayFirst
            }
        };
        Ok(())
    }

    /// Walks into nested objects along `path` and stops just inside the record array.
    fn descend(&mut self, path: &[String]) -> Result<(), Error> {
        for (depth, want) in path.iter().enumerate() {
            self.expect(b'{', "an object")?;
            self.open_objects += 1;
            let mut first = true;
            loop {
                self.compact();
                match self.skip_ws()? {
                    Some(b'}') => {
                        return Err(self.err(&format!(
                            "records path \"{}\" not found",
                            path[..=depth].join(".")
                        )));
                    }
                    Some(b',') if !first => self.pos += 1,
                    Some(_) if first => {}
                    other => return Err(self.unexpected(other, "',' or '}'")),
                }
                first = false;
                let key = self.read_key()?;
                self.expect(b':', "':'")?;
                if key == *want {
                    break;
                }
                self.skip_value()?;
            }
        }
        match self.skip_ws()? {
            Some(b'[') => {
                self.pos += 1;
                Ok(())
            }
            other => Err(self.unexpected(other, "the records array '['")),
        }
    }

    /// After the record array: the rest of the enclosing objects must be well-formed.
    fn finish_document(&mut self) -> Result<(), Error> {
        while self.open_objects > 0 {
            self.compact();
            match self.skip_ws()? {
                Some(b'}') => {
                    self.pos += 1;
                    self.open_objects -= 1;
                }
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws()?;
                    self.read_key()?;
                    self.expect(b':', "':'")?;
                    self.skip_value()?;
                }
                other => return Err(self.unexpected(other, "',' or '}'")),
            }
        }
        if let Some(b) = self.skip_ws()? {
            return Err(self.err(&format!("unexpected {} after the records", show(b))));
        }
        Ok(())
    }

    fn frame(&mut self) -> Result<Record<'_>, Error> {
        // Refills only append, so the record's start stays where it is while it is scanned.
        self.drop_consumed();
        let start = self.pos;
        self.skip_value()?;
        self.records += 1;
        Ok(Record {
            bytes: &self.buf[start..self.pos],
            number: self.records,
            offset: self.base + start as u64,
        })
    }

    /// Advances over one JSON value (structure only: the flattener validates the content).
    fn skip_value(&mut self) -> Result<(), Error> {
        let Some(first) = self.skip_ws()? else {
            return Err(self.err("input ends where a value was expected"));
        };
        match first {
            b'{' | b'[' => self.skip_nested(),
            b'"' => self.skip_string(),
            b']' | b'}' | b',' | b':' => Err(self.unexpected(Some(first), "a value")),
            _ => {
                // A scalar runs until a delimiter.
                loop {
                    while self.pos < self.buf.len() {
                        if matches!(
                            self.buf[self.pos],
                            b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'[' | b'"'
                        ) {
                            return Ok(());
                        }
                        self.pos += 1;
                    }
                    if !self.fill()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn skip_nested(&mut self) -> Result<(), Error> {
        let mut stack = std::mem::take(&mut self.stack);
        stack.clear();
        let result = self.skip_nested_with(&mut stack);
        self.stack = stack;
        result
    }

    fn skip_nested_with(&mut self, stack: &mut Vec<u8>) -> Result<(), Error> {
        loop {
            while self.pos < self.buf.len() {
                let b = self.buf[self.pos];
                self.pos += 1;
                if !STRUCTURAL[b as usize] {
                    continue;
                }
                match b {
                    b'"' => self.string_rest()?,
                    b'{' => stack.push(b'}'),
                    b'[' => stack.push(b']'),
                    _ => {
                        if stack.pop() != Some(b) {
                            self.pos -= 1;
                            return Err(self.err(&format!("unbalanced {}", show(b))));
                        }
                        if stack.is_empty() {
                            return Ok(());
                        }
                    }
                }
            }
            if !self.fill()? {
                return Err(self.err("input ends inside a record (truncated JSON?)"));
            }
        }
    }

    fn skip_string(&mut self) -> Result<(), Error> {
        self.pos += 1; // opening quote
        self.string_rest()
    }

    /// From just inside a string to just past its closing quote: a jump to the next quote or
    /// backslash (memchr), not a look at every byte.
    fn string_rest(&mut self) -> Result<(), Error> {
        let truncated = |r: &Self| r.err("input ends inside a string (truncated JSON?)");
        loop {
            match memchr::memchr2(b'"', b'\\', &self.buf[self.pos..]) {
                Some(i) if self.buf[self.pos + i] == b'"' => {
                    self.pos += i + 1;
                    return Ok(());
                }
                Some(i) => {
                    // A backslash: the byte after it is part of the escape, whatever it is.
                    self.pos += i + 1;
                    if self.pos == self.buf.len() && !self.fill()? {
                        return Err(truncated(self));
                    }
                    self.pos += 1;
                }
                None => {
                    self.pos = self.buf.len();
                    if !self.fill()? {
                        return Err(truncated(self));
                    }
                }
            }
        }
    }

    fn read_key(&mut self) -> Result<String, Error> {
        match self.skip_ws()? {
            Some(b'"') => {}
            other => return Err(self.unexpected(other, "an object key")),
        }
        let start = self.pos;
        self.skip_string()?;
        serde_json::from_slice::<String>(&self.buf[start..self.pos])
            .map_err(|e| self.err(&format!("invalid object key: {e}")))
    }

    fn expect(&mut self, want: u8, what: &str) -> Result<(), Error> {
        match self.skip_ws()? {
            Some(b) if b == want => {
                self.pos += 1;
                Ok(())
            }
            other => Err(self.unexpected(other, what)),
        }
    }

    /// Skips whitespace; returns the next byte without consuming it, `None` at end of input.
    fn skip_ws(&mut self) -> Result<Option<u8>, Error> {
        loop {
            while self.pos < self.buf.len() {
                let b = self.buf[self.pos];
                if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                    // A UTF-8 byte order mark at the very start of the input is skipped.
                    if b == 0xEF && self.base == 0 && self.pos == 0 {
                        if self.buf.len() < 3 && self.fill()? {
                            continue;
                        }
                        if self.buf.starts_with(b"\xEF\xBB\xBF") {
                            self.pos = 3;
                            continue;
                        }
                    }
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Between records: drops the consumed bytes once they fill a chunk. Moving the unread
    /// rest of the buffer before every record cost a tenth of the flatten's time.
    fn drop_consumed(&mut self) {
        if self.pos >= CHUNK {
            self.compact();
        }
    }

    /// Drops consumed bytes from the front of the buffer.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
    }

    /// Reads more input; false at end of input. Never moves data: positions stay valid.
    fn fill(&mut self) -> Result<bool, Error> {
        if self.eof {
            return Ok(false);
        }
        let len = self.buf.len();
        // Exactly: doubling would let a long run of records grow the buffer to many chunks.
        self.buf.reserve_exact(CHUNK);
        self.buf.resize(len + CHUNK, 0);
        let n = loop {
            match self.input.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(Error::Io(e));
                }
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    fn unexpected(&self, got: Option<u8>, want: &str) -> Error {
        match got {
            None => self.err(&format!("input ends where {want} was expected")),
            Some(b) => self.err(&format!("expected {want}, found {}", show(b))),
        }
    }

    fn err(&self, message: &str) -> Error {
        Error::Input {
            offset: self.base + self.pos as u64,
            record: self.records + 1,
            message: message.to_owned(),
        }
    }
}

fn show(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endless-looking input produced on the fly: never in memory as a whole.
    struct Generated {
        left: usize,
        pending: Vec<u8>,
    }

    impl Read for Generated {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.pending.is_empty() && self.left > 0 {
                self.left -= 1;
                self.pending =
                    format!("{{\"n\":{},\"pad\":\"{}\"}}\n", self.left, "x".repeat(1000))
                        .into_bytes();
            }
            let n = out.len().min(self.pending.len());
            out[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn memory_holds_one_record_not_the_input() {
        let reader = || {
            let input = Generated {
                left: 20_000,
                pending: Vec::new(),
            };
            RecordReader::new(input, InputFormat::Auto)
        };
        let small = |r: &RecordReader<Generated>| {
            assert!(r.offset() > 20_000_000, "read ~20 MB");
            let capacity = r.buf.capacity();
            assert!(capacity < 4 * CHUNK, "buffer stayed small: {capacity}");
        };
        let mut r = reader();
        let mut n = 0;
        while r.next_record().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 20_000);
        small(&r);
        // The same in one pass with the flattener.
        let mut r = reader();
        let mut f = Flattener::new(crate::Options::default());
        let mut n = 0;
        while let Some(rec) = r.next_flattened(&mut f).unwrap() {
            rec.result.unwrap();
            n += 1;
        }
        assert_eq!(n, 20_000);
        small(&r);
    }
}

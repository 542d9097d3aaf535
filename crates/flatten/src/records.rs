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

use crate::Error;

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
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Start => self.start()?,
                State::Lines => {
                    if self.skip_ws()?.is_none() {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    return self.frame().map(Some);
                }
                State::ArrayFirst | State::ArrayNext => {
                    let first = self.state == State::ArrayFirst;
                    match self.skip_ws()? {
                        None => return Err(self.err("input ends inside the record array")),
                        Some(b']') => {
                            self.pos += 1;
                            self.finish_document()?;
                            self.state = State::Done;
                            return Ok(None);
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
                    return self.frame().map(Some);
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
        // Keep the record start at buf[0] while scanning, so refills never move it out.
        self.compact();
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
        let mut stack: Vec<u8> = Vec::new();
        let mut in_str = false;
        let mut escaped = false;
        loop {
            while self.pos < self.buf.len() {
                let b = self.buf[self.pos];
                self.pos += 1;
                if in_str {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_str = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_str = true,
                    b'{' => stack.push(b'}'),
                    b'[' => stack.push(b']'),
                    b'}' | b']' => {
                        if stack.pop() != Some(b) {
                            self.pos -= 1;
                            return Err(self.err(&format!("unbalanced {}", show(b))));
                        }
                        if stack.is_empty() {
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
            if !self.fill()? {
                return Err(self.err("input ends inside a record (truncated JSON?)"));
            }
        }
    }

    fn skip_string(&mut self) -> Result<(), Error> {
        self.pos += 1; // opening quote
        let mut escaped = false;
        loop {
            while self.pos < self.buf.len() {
                let b = self.buf[self.pos];
                self.pos += 1;
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    return Ok(());
                }
            }
            if !self.fill()? {
                return Err(self.err("input ends inside a string (truncated JSON?)"));
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
        let mut r = RecordReader::new(
            Generated {
                left: 20_000,
                pending: Vec::new(),
            },
            InputFormat::Auto,
        );
        let mut n = 0;
        while r.next_record().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 20_000);
        assert!(r.offset() > 20_000_000, "read ~20 MB");
        assert!(
            r.buf.capacity() < 4 * CHUNK,
            "buffer stayed small: {}",
            r.buf.capacity()
        );
    }
}

//! Rows in the format the plan's `COPY` statements read: Postgres' own text format (its default),
//! not CSV. Postgres parses it with less work than CSV (no quotes to track): the backend's CPU
//! for a `COPY` of 100k rows into a keyed table was 18 % lower on synthetic rows of 47 columns,
//! about 8 % on the built-in Hotmart mapping's rows (README, Benchmarks).

/// Rows in `COPY`'s text format, appended to a byte buffer: fields separated by a tab, rows
/// ended by a newline, a NULL written `\N`, and a backslash, tab, newline or carriage return in
/// a value escaped with a backslash. An empty string is an empty field, distinct from NULL.
///
/// ```
/// use sluice_transform::CopyText;
///
/// let mut rows = CopyText::new(Vec::new());
/// rows.write_fields([Some("a"), None, Some(""), Some("tab\there\nC:\\dir")]);
/// assert_eq!(rows.as_bytes(), b"a\t\\N\t\ttab\\there\\nC:\\\\dir\n");
/// assert_eq!(rows.len(), 25);
/// ```
#[derive(Debug, Default, Clone)]
pub struct CopyText {
    buf: Vec<u8>,
}

impl CopyText {
    /// Rows appended to `buf` (pass one with the capacity a batch needs).
    pub fn new(buf: Vec<u8>) -> Self {
        Self { buf }
    }

    /// Appends one row; `None` fields are NULL.
    pub fn write_fields<I, S>(&mut self, fields: I)
    where
        I: IntoIterator<Item = Option<S>>,
        S: AsRef<[u8]>,
    {
        let mut first = true;
        for f in fields {
            if !first {
                self.buf.push(b'\t');
            }
            first = false;
            match f {
                Some(f) => self.field(f.as_ref()),
                None => self.buf.extend_from_slice(b"\\N"),
            }
        }
        self.buf.push(b'\n');
    }

    fn field(&mut self, value: &[u8]) {
        let mut start = 0;
        for (i, &b) in value.iter().enumerate() {
            let escaped = match b {
                b'\\' => b'\\',
                b'\t' => b't',
                b'\n' => b'n',
                b'\r' => b'r',
                _ => continue,
            };
            self.buf.extend_from_slice(&value[start..i]);
            self.buf.extend_from_slice(&[b'\\', escaped]);
            start = i + 1;
        }
        self.buf.extend_from_slice(&value[start..]);
    }

    /// The rows written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The rows written so far, leaving `next` (an empty buffer) in their place.
    pub fn take(&mut self, next: Vec<u8>) -> Vec<u8> {
        std::mem::replace(&mut self.buf, next)
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fields: &[Option<&str>]) -> Vec<u8> {
        let mut w = CopyText::default();
        w.write_fields(fields.iter().copied());
        w.into_inner()
    }

    #[test]
    fn nulls_empties_and_escapes() {
        assert_eq!(row(&[None]), b"\\N\n");
        assert_eq!(row(&[Some("")]), b"\n");
        assert_eq!(row(&[Some(""), Some("")]), b"\t\n");
        // A value that reads like a NULL or the end-of-data marker is escaped, so it is neither.
        assert_eq!(row(&[Some("\\N")]), b"\\\\N\n");
        assert_eq!(row(&[Some("\\.")]), b"\\\\.\n");
        assert_eq!(row(&[Some("a\r\nb")]), b"a\\r\\nb\n");
        assert_eq!(row(&[Some("ação,\"x\"")]), "ação,\"x\"\n".as_bytes());
    }

    #[test]
    fn take_hands_over_the_rows() {
        let mut w = CopyText::new(Vec::with_capacity(8));
        w.write_fields([Some("1")]);
        assert_eq!(w.take(Vec::new()), b"1\n");
        assert!(w.is_empty());
    }
}

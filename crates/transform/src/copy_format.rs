//! Which of `COPY`'s formats a load's rows go in, and a writer for either.

use std::sync::Arc;

use crate::copy_binary::{COPY_BINARY_HEADER, CopyBinary, EncodeError};
use crate::copy_text::CopyText;
use crate::types::ColumnType;

/// The format of the rows a `COPY` reads: Postgres' text format, or its binary format for
/// columns of these types (see [`UpsertPlan::copy_format`](crate::UpsertPlan::copy_format)).
///
/// ```
/// use sluice_transform::{ColumnType, CopyFormat};
///
/// let binary = CopyFormat::Binary([ColumnType::Text].into());
/// assert_eq!(binary.options(), " (FORMAT binary)");
/// // The staging form puts the line number (a bigint) first.
/// assert_eq!(binary.numbered(), CopyFormat::Binary([ColumnType::Bigint, ColumnType::Text].into()));
/// let mut rows = binary.writer(Vec::new());
/// rows.write_fields([Some("a")]).unwrap();
/// assert_eq!(rows.into_inner(), b"\0\x01\0\0\0\x01a");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Binary(Arc<[ColumnType]>),
}

impl CopyFormat {
    /// What follows `COPY … FROM STDIN` for this format.
    pub fn options(&self) -> &'static str {
        match self {
            Self::Text => "",
            Self::Binary(_) => " (FORMAT binary)",
        }
    }

    /// What a `COPY` stream in this format starts with.
    pub fn header(&self) -> &'static [u8] {
        match self {
            Self::Text => b"",
            Self::Binary(_) => COPY_BINARY_HEADER,
        }
    }

    /// The same format with the staging table's line number (a `bigint`) first.
    pub fn numbered(&self) -> Self {
        match self {
            Self::Text => Self::Text,
            Self::Binary(types) => Self::Binary(
                std::iter::once(ColumnType::Bigint)
                    .chain(types.iter().copied())
                    .collect(),
            ),
        }
    }

    /// A writer of rows in this format, appending to `buf`.
    pub fn writer(&self, buf: Vec<u8>) -> CopyRows {
        match self {
            Self::Text => CopyRows::Text(CopyText::new(buf)),
            Self::Binary(types) => CopyRows::Binary(CopyBinary::new(buf, types.clone())),
        }
    }
}

/// Rows in one of `COPY`'s formats (made by [`CopyFormat::writer`]).
#[derive(Debug, Clone)]
pub enum CopyRows {
    Text(CopyText),
    Binary(CopyBinary),
}

impl CopyRows {
    /// Appends one row; `None` fields are NULL. Only the binary format can fail (a value that is
    /// not its column type's canonical text), and then the row is not written.
    pub fn write_fields<I, S>(&mut self, fields: I) -> Result<(), EncodeError>
    where
        I: IntoIterator<Item = Option<S>>,
        S: AsRef<str>,
    {
        match self {
            Self::Text(t) => {
                t.write_fields(fields.into_iter().map(|f| f.map(|s| AsStr(s))));
                Ok(())
            }
            Self::Binary(b) => b.write_fields(fields),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows written so far, leaving `next` (an empty buffer) in their place.
    pub fn take(&mut self, next: Vec<u8>) -> Vec<u8> {
        match self {
            Self::Text(t) => t.take(next),
            Self::Binary(b) => b.take(next),
        }
    }

    pub fn into_inner(self) -> Vec<u8> {
        match self {
            Self::Text(t) => t.into_inner(),
            Self::Binary(b) => b.into_inner(),
        }
    }
}

/// A `str` seen as bytes.
struct AsStr<S>(S);

impl<S: AsRef<str>> AsRef<[u8]> for AsStr<S> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref().as_bytes()
    }
}

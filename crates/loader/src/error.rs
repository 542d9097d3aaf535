//! Why an object did not load, where in it, and what the loader does next.
//!
//! [`Error`] is what went wrong, keeping its source error and, for rows, its position (the line,
//! and the column in [`RowError`]). Inside one attempt a failure travels as a [`Fail`], whose
//! variant says what happens next; [`LoadError`] is what is left when the object is given up.

use std::io;

use sluice_edge::Failure;
use sluice_transform::{MappingError, RowError};

use crate::store::{StoreError, is_transfer_error};

/// Why one row cannot load; the row goes to quarantine with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("blank line (the header has {width} columns)")]
    Blank { width: usize },
    #[error("row has {fields} fields, the header has {width}")]
    Ragged { fields: usize, width: usize },
    #[error("column {column:?} has a value but is not in the table (schema_policy = \"freeze\")")]
    Frozen { column: String },
    /// A staged row the table's CHECK constraint refuses (found in SQL, as sluice cannot
    /// evaluate the expression itself).
    #[error("violates check constraint {constraint:?}")]
    Check { constraint: String },
    /// A value that does not convert; names the column and quotes the value (truncated).
    #[error(transparent)]
    Value(#[from] RowError),
}

/// A rejected row and the line it starts on (1-based, the header is line 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Rejection {
    pub line: u64,
    pub reason: Reject,
}

/// Why an object did not load.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transfer of the object's bytes broke (the message names it).
    #[error("{0}")]
    Transfer(#[source] io::Error),
    /// The bytes themselves are bad (a broken gzip stream, say).
    #[error("reading the object: {0}")]
    Read(#[source] io::Error),
    #[error("not a CSV file: {0}")]
    NotCsv(String),
    #[error("bad header: {0}")]
    Header(String),
    #[error("{source} (file header: {header})")]
    Mapping {
        #[source]
        source: MappingError,
        header: String,
    },
    #[error("no mapping for source {name:?} (add {name}.toml to MAPPINGS)")]
    NoMapping { name: String },
    #[error("column {column:?} is not in table {table} and schema_policy = \"freeze\"")]
    Frozen { column: String, table: String },
    #[error("table {table} has no unique index or primary key on ({key}); create one: {create}")]
    NoUniqueKey {
        table: String,
        key: String,
        create: String,
    },
    #[error(
        "{rejected} of {rows} rows rejected ({:.1}% > MAX_REJECT_RATIO {limit}); nothing loaded; first bad lines: {}",
        *rejected as f64 * 100.0 / *rows as f64,
        samples.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    TooManyRejected {
        rejected: u64,
        rows: u64,
        limit: f64,
        samples: Vec<Rejection>,
    },
    /// A value does not fit the type guessed for its column from the first rows.
    #[error("line {line}: {source}")]
    Guess {
        line: u64,
        #[source]
        source: RowError,
    },
    /// A new column's type was guessed from the first rows; columns are added for good, so
    /// its type comes from the whole object.
    #[error("new column {column:?}: its type is taken from the whole object before it is added")]
    NewColumnGuessed { column: String },
    #[error(
        "column {column:?} has redact = \"hash\" but REDACT_SALT is empty (an unsalted hash of an e-mail is a dictionary look-up): set REDACT_SALT or REDACT_SALT_SECRET_ARN"
    )]
    NoSalt { column: String },
    #[error("quarantine file: {0}")]
    Quarantine(#[source] io::Error),
    /// The row reader stopped or panicked.
    #[error("{0}")]
    Reader(String),
}

impl From<io::Error> for Error {
    /// An I/O error while reading the object: a broken transfer, or bad bytes.
    fn from(e: io::Error) -> Self {
        if is_transfer_error(&e) {
            Self::Transfer(e)
        } else {
            Self::Read(e)
        }
    }
}

/// A failure inside one attempt; the variant says what the loader does next.
#[derive(Debug)]
pub(crate) enum Fail {
    /// Another try fails the same way: give the object up.
    Permanent(Error),
    /// May pass later (database or store unreachable, deadlock, serialization failure): retry
    /// with backoff.
    Retryable(Error),
    /// The direct `COPY` met a key that exists or repeats (a unique violation): roll back to the
    /// savepoint and stage. Anywhere else, permanent.
    Stage(Error),
    /// A value does not fit a type guessed from the first rows: start again with types from the
    /// whole object.
    Reinfer(Error),
}

impl Fail {
    pub(crate) fn error(&self) -> &Error {
        match self {
            Self::Permanent(e) | Self::Retryable(e) | Self::Stage(e) | Self::Reinfer(e) => e,
        }
    }
    pub(crate) fn into_error(self) -> Error {
        match self {
            Self::Permanent(e) | Self::Retryable(e) | Self::Stage(e) | Self::Reinfer(e) => e,
        }
    }
}

impl From<Error> for Fail {
    /// Classifies an error by what it means for the next step.
    fn from(e: Error) -> Self {
        match &e {
            Error::Database(db) if is_unique_violation(db) => Self::Stage(e),
            Error::Database(db) if is_retryable_db(db) => Self::Retryable(e),
            Error::Store(s) if s.is_retryable() => Self::Retryable(e),
            Error::Transfer(_) => Self::Retryable(e),
            Error::Guess { .. } => Self::Reinfer(e),
            _ => Self::Permanent(e),
        }
    }
}

/// `?` on the errors an attempt meets, classified through [`Error`].
macro_rules! fail_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Fail {
            fn from(e: $t) -> Self {
                Error::from(e).into()
            }
        }
    )*};
}
fail_from!(sqlx::Error, StoreError, io::Error);

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Serialization failures, deadlocks, lost connections and server shutdowns can be retried.
pub fn is_retryable_db(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            matches!(
                code.as_ref(),
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300"
            ) || code.starts_with("08")
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// Why an object did not load, after every attempt: `kind` says whether a later try may pass.
///
/// ```
/// use sluice_edge::Failure;
/// use sluice_loader::{Error, LoadError};
///
/// let e = LoadError {
///     bucket: "lake".into(),
///     key: "raw/sales/a.csv".into(),
///     attempts: 1,
///     kind: Failure::Permanent,
///     error: Error::NotCsv("line 1 (the header) is blank".into()),
/// };
/// assert_eq!(e.to_string(), "s3://lake/raw/sales/a.csv: not a CSV file: line 1 (the header) is blank");
/// assert!(!e.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("s3://{bucket}/{key}: {error}{}", if *attempts > 1 { format!(" (after {attempts} attempts)") } else { String::new() })]
pub struct LoadError {
    pub bucket: String,
    pub key: String,
    pub attempts: u32,
    pub kind: Failure,
    #[source]
    pub error: Error,
}

impl LoadError {
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

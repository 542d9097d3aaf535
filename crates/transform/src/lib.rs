//! # sluice-transform
//!
//! Pure: typed column mapping (rename, cast, timestamps, derived columns, redaction, drop), type
//! inference for files without a mapping, and the upsert plan — the SQL the loader runs, with
//! every identifier quoted. No async runtime, no AWS, no database driver.
//!
//! ```
//! use sluice_transform::{ColumnType, Inference, Mapping, TableRef};
//!
//! // No mapping file: infer types from the values, key and guard given on the command line.
//! let header = ["purchase_transaction", "purchase_price_value", "purchase_is_funnel"];
//! let mut inf = Inference::new(header.len());
//! inf.observe_row([Some("HP0000001"), Some("297.0"), Some("false")]);
//! let mapping = Mapping::inferred(TableRef::new("public", "sales"), vec!["purchase_transaction".into()], None);
//! let bound = mapping.bind(&header, &inf.types()).unwrap();
//! assert!(bound.plan().create_table().contains(r#""purchase_price_value" numeric"#));
//! ```

mod copy_binary;
mod copy_format;
mod copy_text;
mod infer;
mod limits;
mod mapping;
mod plan;
mod types;

pub use crate::copy_binary::{
    BinaryRow, BinaryRows, COPY_BINARY_HEADER, CopyBinary, EncodeError, encode_binary,
};
pub use crate::copy_format::{CopyFormat, CopyRows};
pub use crate::copy_text::CopyText;
pub use crate::infer::{Guess, Inference};
pub use crate::limits::ColumnLimit;
pub use crate::mapping::{
    BoundMapping, ColumnRule, DerivedKind, DerivedRule, ERROR_VALUE_CHARS, Mapping, MappingError,
    Redact, RowContext, RowError, SchemaPolicy, TypedRow, row_hash,
};
pub use crate::plan::{
    INFERRED_COMMENT, LINE_COLUMN, PlanColumn, PlanError, TableRef, UpsertPlan, quote_ident,
};
pub use crate::types::{ColumnType, Conversion, TimeFormat, is_decimal};

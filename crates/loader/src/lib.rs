//! # sluice-loader
//!
//! The loader Lambda's library: S3 `ObjectCreated` (or EventBridge, or a replay payload) →
//! streamed CSV (gzip transparently) → typed rows through the mapping → `COPY` into a temporary
//! staging table → one `INSERT … ON CONFLICT … DO UPDATE … WHERE … IS DISTINCT FROM …`, in one
//! transaction with a ledger row, so that redelivery, reordering and concurrency are safe. Rows
//! that cannot load go to a quarantine CSV with their line and reason.
//!
//! The handler is a plain async function: tests call it with the same event files that
//! `cargo lambda invoke --data-file` uses.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sluice_loader::{Config, Loader, S3Store, handle};
//!
//! let config = Arc::new(Config::from_env()?);
//! let pool = sluice_loader::pool(&config).await?;
//! let store = S3Store { client: aws_sdk_s3::Client::new(&aws_config::load_from_env().await) };
//! let loader = Loader::new(pool, config);
//! let event = serde_json::json!({"bucket": "lake", "key": "raw/hotmart-sales/dt=2024-01-01/a.csv"});
//! let summary = handle(&event, &loader, &store).await?;
//! println!("{}", serde_json::to_string(&summary)?);
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod config;
pub mod event;
mod handler;
mod load;
pub mod store;

pub use crate::config::{Config, ConfigError, DatabaseSource, RdsSecret, Secret};
pub use crate::event::{EventError, ObjectRef};
pub use crate::handler::{HandlerError, InvocationSummary, emf_line, handle, pool};
pub use crate::load::{
    LoadError, Loader, ObjectSummary, RowCounts, is_retryable_db, quarantine_key,
};
pub use crate::store::{LocalStore, ObjectMeta, S3Store, Store, StoreError};

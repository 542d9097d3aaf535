//! # sluice-loader
//!
//! The loader Lambda's library: S3 `ObjectCreated` (or EventBridge, or a replay payload) →
//! streamed CSV (gzip transparently) → typed rows through the mapping → Postgres, in one
//! transaction with a ledger row, so that redelivery, reordering and concurrency are safe. Rows
//! that cannot load go to a quarantine CSV with their line and reason.
//!
//! Rows take one of three paths ([`LoadPath`]). New keys are `COPY`ed straight into the table
//! (`direct`). Where keys exist or repeat, rows are `COPY`ed into a temporary staging table and
//! then go in with one `INSERT … ON CONFLICT … DO UPDATE … WHERE … IS DISTINCT FROM …`
//! (`staged`). Where the table's greatest key is known in byte order, keys above it go straight
//! in and the rest are staged (`split`). The first batch decides; a conflict found later rolls
//! back to a savepoint and stages.
//!
//! The modules follow one load: [`event`] (which objects), [`store`] (their bytes), `rows`
//! (records → typed or rejected rows, pure), `prepare` (types and DDL), `copy` (the `COPY`
//! protocol), `upsert` (the staged path's statement), `checks` (rows a CHECK constraint refuses), `quarantine`, `ledger`, `job` (what an
//! attempt's steps share), and `load`, which tells one attempt from start to commit.
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
mod checks;
pub mod config;
pub mod connect;
mod copy;
mod error;
pub mod event;
mod handler;
mod held;
mod job;
mod ledger;
mod load;
mod prepare;
mod quarantine;
mod rows;
pub mod store;
mod summary;
mod upsert;

pub use crate::config::{Config, ConfigError, DatabaseSource, RdsSecret, Secret};
pub use crate::connect::{pool, pool_with};
pub use crate::error::{Error, LoadError, Reject, Rejection, is_retryable_db};
pub use crate::event::{EventError, ObjectRef};
pub use crate::handler::{HandlerError, InvocationSummary, emf_line, handle};
pub use crate::load::Loader;
pub use crate::store::{
    LocalStore, ObjectMeta, Routed, S3Store, Store, StoreError, StoreErrorKind,
};
pub use crate::summary::{LoadPath, ObjectStatus, ObjectSummary, RowCounts};

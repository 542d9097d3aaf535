//! The loader's integration tests, one binary: each module below is one concern, against real
//! Postgres and a real S3 endpoint.

mod common;

mod bad_input;
mod connect;
mod copy_format;
mod events;
mod evolve;
mod inference;
mod ledger;
mod redaction;
mod row_hash;
mod store;
mod upsert;

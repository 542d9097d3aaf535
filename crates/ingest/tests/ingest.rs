//! The ingest's integration tests, one binary: runs, paging styles and the Lambda handler,
//! against the sample API and a real S3 endpoint.

mod common;

mod handler;
mod incremental;
mod pagination;
mod runs;
mod styles;

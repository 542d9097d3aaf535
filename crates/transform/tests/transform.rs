//! transform's integration tests, one binary: mappings, and plans run against Postgres.

mod mapping;
mod plan_pg;

//! transform's integration tests, one binary: mappings, and plans run against Postgres.

mod copy_binary_pg;
mod mapping;
mod plan_pg;

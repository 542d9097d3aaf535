//! The ledger, `<LEDGER_SCHEMA>.sluice_loads`: one row per object version loaded, written in the
//! load's own transaction, so an object is loaded once however often its event is delivered.

use sluice_transform::{TableRef, quote_ident};
use sqlx::PgConnection;

use crate::catalog::{LOCK_OBJECT, begin_ddl};
use crate::summary::ObjectSummary;

/// What the ledger knows an object version by.
#[derive(Debug, Clone)]
pub(crate) struct Entry<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// Version id, else ETag, else `-`.
    pub version: &'a str,
    pub etag: Option<&'a str>,
    pub version_id: Option<&'a str>,
    pub sequencer: Option<&'a str>,
}

/// The ledger table's quoted name in `schema`.
pub(crate) fn table(schema: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident("sluice_loads"))
}

/// Creates the ledger if missing (under the DDL lock, so concurrent first loads don't race).
pub(crate) async fn ensure(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    begin_ddl(&mut tx, &TableRef::new(schema, "sluice_loads")).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {} (\
           bucket text NOT NULL, key text NOT NULL, version text NOT NULL, \
           etag text, version_id text, sequencer text, source text NOT NULL, target text NOT NULL, \
           rows_read bigint NOT NULL, inserted bigint NOT NULL, updated bigint NOT NULL, \
           unchanged bigint NOT NULL, rejected bigint NOT NULL, duplicates bigint NOT NULL, \
           quarantine_key text, started_at timestamptz NOT NULL, \
           finished_at timestamptz NOT NULL DEFAULT clock_timestamp(), \
           PRIMARY KEY (bucket, key, version))",
        table(schema)
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Takes the object version's lock (concurrent deliveries of one event wait here), then tells
/// whether the ledger has it already.
pub(crate) async fn lock_and_check(
    tx: &mut PgConnection,
    schema: &str,
    e: &Entry<'_>,
) -> Result<bool, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(LOCK_OBJECT)
        .bind(format!("{}\n{}\n{}", e.bucket, e.key, e.version))
        .execute(&mut *tx)
        .await?;
    let seen: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {} WHERE bucket = $1 AND key = $2 AND version = $3",
        table(schema)
    )))
    .bind(e.bucket)
    .bind(e.key)
    .bind(e.version)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(seen.is_some())
}

/// Records the load of `e` with its counts, in the load's transaction.
pub(crate) async fn record(
    tx: &mut PgConnection,
    schema: &str,
    e: &Entry<'_>,
    s: &ObjectSummary,
    started: jiff::Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} (bucket, key, version, etag, version_id, sequencer, source, target, \
         rows_read, inserted, updated, unchanged, rejected, duplicates, quarantine_key, started_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::timestamptz)",
        table(schema)
    )))
    .bind(e.bucket)
    .bind(e.key)
    .bind(e.version)
    .bind(e.etag)
    .bind(e.version_id)
    .bind(e.sequencer)
    .bind(&s.source)
    .bind(&s.table)
    .bind(s.rows.rows_read as i64)
    .bind(s.rows.inserted as i64)
    .bind(s.rows.updated as i64)
    .bind(s.rows.unchanged as i64)
    .bind(s.rows.rejected as i64)
    .bind(s.rows.duplicates as i64)
    .bind(&s.quarantine_key)
    .bind(started.to_string())
    .execute(tx)
    .await
    .map(drop)
}

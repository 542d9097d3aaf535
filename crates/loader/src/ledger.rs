//! The ledger, `<LEDGER_SCHEMA>.sluice_loads`: one row per object version loaded into a target
//! table, written in the load's own transaction, so an object is loaded once into each table
//! however often its event is delivered. Its identity is (bucket, key, version, target): the same
//! object replayed into another table loads there.

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
    /// The target table (`schema.name`).
    pub target: &'a str,
}

/// The ledger table's quoted name in `schema`.
pub(crate) fn table(schema: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident("sluice_loads"))
}

/// Creates the ledger if missing, and migrates one whose identity lacks the target (under the
/// DDL lock, so concurrent first loads don't race).
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
           PRIMARY KEY (bucket, key, version, target))",
        table(schema)
    )))
    .execute(&mut *tx)
    .await?;
    migrate_identity(&mut tx, schema).await?;
    tx.commit().await
}

/// Ledgers made before the target was part of the identity have the primary key (bucket, key,
/// version): widen it in place, keeping every row (each already names its target).
async fn migrate_identity(tx: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    let pkey: Option<(String, Vec<String>)> = sqlx::query_as(
        "SELECT c.conname::text, array_agg(a.attname::text ORDER BY a.attname::text) \
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY (c.conkey) \
         WHERE n.nspname = $1 AND t.relname = 'sluice_loads' AND c.contype = 'p' \
         GROUP BY c.conname",
    )
    .bind(schema)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((name, columns)) = pkey else {
        return Ok(());
    };
    if columns.iter().any(|c| c == "target") {
        return Ok(());
    }
    tracing::info!(ledger = %table(schema), "adding the target table to the ledger's identity");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {} DROP CONSTRAINT {}, ADD PRIMARY KEY (bucket, key, version, target)",
        table(schema),
        quote_ident(&name)
    )))
    .execute(tx)
    .await
    .map(drop)
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
        .bind(format!(
            "{}\n{}\n{}\n{}",
            e.bucket, e.key, e.version, e.target
        ))
        .execute(&mut *tx)
        .await?;
    let seen: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {} WHERE bucket = $1 AND key = $2 AND version = $3 AND target = $4",
        table(schema)
    )))
    .bind(e.bucket)
    .bind(e.key)
    .bind(e.version)
    .bind(e.target)
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
    .bind(e.target)
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

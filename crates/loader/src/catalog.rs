//! What the database already has: the target table's columns and unique keys; the DDL lock.

use sluice_transform::{INFERRED_COMMENT, TableRef, quote_ident};
use sqlx::{PgConnection, Row};

/// A table as the catalog describes it.
#[derive(Debug, Clone, Default)]
pub struct TableInfo {
    /// Columns in order, with `format_type` names (`numeric(12,2)`, `text`, …).
    pub columns: Vec<(String, String)>,
    /// The columns that are NOT NULL.
    pub not_null: Vec<String>,
    /// Column sets of valid, non-partial, immediate unique indexes (each sorted).
    pub unique_keys: Vec<Vec<String>>,
    /// CHECK constraints: name and expression (`pg_get_constraintdef` without `CHECK` and
    /// `NOT VALID`: enforced on new rows either way).
    pub checks: Vec<(String, String)>,
    /// Columns whose type sluice inferred from the data (commented [`INFERRED_COMMENT`]).
    pub inferred: Vec<String>,
}

impl TableInfo {
    pub fn column_type(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }
    /// A column's type and whether it is NOT NULL.
    pub fn column(&self, name: &str) -> Option<(&str, bool)> {
        let ty = self.column_type(name)?;
        Some((ty, self.not_null.iter().any(|n| n == name)))
    }
    pub fn is_inferred(&self, name: &str) -> bool {
        self.inferred.iter().any(|n| n == name)
    }
    pub fn has_unique_key(&self, key: &[String]) -> bool {
        let mut k = key.to_vec();
        k.sort();
        self.unique_keys.contains(&k)
    }
}

/// The table, or `None` if it does not exist.
pub async fn table_info(
    conn: &mut PgConnection,
    table: &TableRef,
) -> Result<Option<TableInfo>, sqlx::Error> {
    let oid: Option<sqlx::postgres::types::Oid> = sqlx::query_scalar(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(oid) = oid else { return Ok(None) };
    let rows = sqlx::query(
        "SELECT attname::text, format_type(atttypid, atttypmod), attnotnull, \
                coalesce(col_description(attrelid, attnum) = $2, false) FROM pg_attribute \
         WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(oid)
    .bind(INFERRED_COMMENT)
    .fetch_all(&mut *conn)
    .await?;
    let mut columns = Vec::with_capacity(rows.len());
    let mut not_null = Vec::new();
    let mut inferred = Vec::new();
    for r in &rows {
        let name: String = r.try_get(0)?;
        if r.try_get::<bool, _>(2)? {
            not_null.push(name.clone());
        }
        if r.try_get::<bool, _>(3)? {
            inferred.push(name.clone());
        }
        columns.push((name, r.try_get(1)?));
    }
    let unique_keys = sqlx::query_scalar(
        "SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
         WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indimmediate \
           AND i.indpred IS NULL AND i.indexprs IS NULL \
         GROUP BY i.indexrelid",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?;
    let checks = sqlx::query_as::<_, (String, String)>(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = $1 AND contype = 'c' ORDER BY conname",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(name, def)| {
        let expr = def.strip_suffix(" NOT VALID").unwrap_or(&def);
        let expr = expr.strip_prefix("CHECK ").unwrap_or(expr).to_owned();
        (name, expr)
    })
    .collect();
    Ok(Some(TableInfo {
        columns,
        not_null,
        checks,
        unique_keys,
        inferred,
    }))
}

/// Advisory-lock class ids (first argument of the two-key form): "sluice" DDL and objects.
const LOCK_DDL: i32 = 0x736c_0001;
pub(crate) const LOCK_OBJECT: i32 = 0x736c_0002;

/// Serialises schema changes to one table across loaders, until the transaction ends.
async fn lock_table_ddl(conn: &mut PgConnection, table: &TableRef) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(LOCK_DDL)
        .bind(table.quoted())
        .execute(conn)
        .await
        .map(drop)
}

/// Before changing `table`'s schema: takes the table's DDL lock and makes sure its schema exists.
pub async fn begin_ddl(conn: &mut PgConnection, table: &TableRef) -> Result<(), sqlx::Error> {
    lock_table_ddl(conn, table).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote_ident(&table.schema)
    )))
    .execute(conn)
    .await
    .map(drop)
}

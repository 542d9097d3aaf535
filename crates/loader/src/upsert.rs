//! The staged path's one statement: staged rows into the table, in lock order, with the
//! ordering guard and the no-op skip, and the counts it returns.

use std::time::Instant;

use sluice_transform::UpsertPlan;
use sqlx::{PgConnection, Row};

use crate::copy::{Copied, STAGE};
use crate::error::Fail;
use crate::summary::ObjectSummary;

/// The staged rows into the table: one statement, which skips the sort when the keys came in
/// order and the de-duplication when none repeated.
pub(crate) async fn upsert(
    tx: &mut PgConnection,
    plan: &UpsertPlan,
    copied: &Copied,
    summary: &mut ObjectSummary,
) -> Result<(), Fail> {
    let t0 = Instant::now();
    // No key text seen twice means no key twice only where equal keys have equal texts.
    let sql = if !plan.exact_key() {
        plan.upsert(STAGE)
    } else if copied.keys.presorted {
        // Strictly ascending keys are unique too.
        plan.upsert_unique(STAGE, true)
    } else if copied.keys.unique {
        plan.upsert_unique(STAGE, false)
    } else {
        plan.upsert(STAGE)
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *tx)
        .await?;
    summary.upsert_ms = t0.elapsed().as_millis() as u64;
    let (inserted, updated, distinct): (i64, i64, i64) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    summary.rows.inserted = inserted as u64;
    summary.rows.updated = updated as u64;
    summary.rows.unchanged = (distinct - inserted - updated) as u64;
    summary.rows.duplicates = copied.sent - distinct as u64;
    Ok(())
}

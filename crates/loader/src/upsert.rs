//! The staged path's one statement: staged rows into the table, in lock order, with the
//! ordering guard and the no-op skip, and the counts it returns.

use std::time::Instant;

use sluice_transform::UpsertPlan;
use sqlx::{PgConnection, Row};

use crate::copy::{Copied, STAGE};
use crate::error::Fail;
use crate::summary::ObjectSummary;

/// The staged rows into the table: one statement, which skips the sort when the keys came in
/// order and the de-duplication when none repeated, and leaves out the rows the table holds
/// unchanged first when most staged rows are (a lookback re-fetch).
pub(crate) async fn upsert(
    tx: &mut PgConnection,
    plan: &UpsertPlan,
    copied: &Copied,
    summary: &mut ObjectSummary,
) -> Result<(), Fail> {
    let t0 = Instant::now();
    if copied.sent == copied.direct {
        // Every row meant for staging was held unchanged: no statement (and perhaps no
        // staging table).
        summary.rows.inserted = copied.direct;
        summary.rows.unchanged = copied.held.unchanged;
        summary.rows.duplicates = copied.held.duplicates;
        return Ok(());
    }
    // No key text seen twice means no key twice only where equal keys have equal texts.
    // Strictly ascending keys are unique too (whatever a hash collision said).
    let unique = copied.keys.unique || copied.keys.presorted;
    let unique_form = plan.exact_key() && unique;
    let sql = if !unique_form {
        plan.upsert(STAGE)
    } else if mostly_held(tx, plan).await? {
        plan.upsert_unique_changed(STAGE)
    } else if copied.keys.presorted {
        plan.upsert_unique(STAGE, true)
    } else {
        plan.upsert_unique(STAGE, false)
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    if unique_form {
        // Its `distinct_rows`: every staged row, as the COPY counted them.
        query = query.bind((copied.sent - copied.direct) as i64);
    }
    let row = query.fetch_one(&mut *tx).await?;
    summary.upsert_ms = t0.elapsed().as_millis() as u64;
    let (inserted, updated, distinct): (i64, i64, i64) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    // A split load's direct rows are new keys, inserted before the staged ones.
    summary.rows.inserted = copied.direct + inserted as u64;
    summary.rows.updated = updated as u64;
    // Rows left out before staging were held unchanged, or superseded by a later row.
    summary.rows.unchanged = (distinct - inserted - updated) as u64 + copied.held.unchanged;
    summary.rows.duplicates =
        copied.sent - copied.direct - distinct as u64 + copied.held.duplicates;
    Ok(())
}

/// Staged rows a probe looks up in the table.
const PROBE_ROWS: u32 = 1000;

/// Whether more than 60 % of the first [`PROBE_ROWS`] staged rows are in the table already,
/// unchanged (a lookback re-fetch). Measured on 100k rows (`make bench-updates`): leaving the
/// unchanged rows out first halves the statement when none changed, and costs a quarter more
/// when none is held unchanged; the two cross at about half.
async fn mostly_held(tx: &mut PgConnection, plan: &UpsertPlan) -> Result<bool, Fail> {
    if !plan.can_skip_unchanged_first() {
        return Ok(false);
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(plan.probe_unchanged(STAGE, PROBE_ROWS)))
        .fetch_one(&mut *tx)
        .await?;
    let (unchanged, sampled): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    Ok(sampled > 0 && unchanged * 10 > sampled * 6)
}

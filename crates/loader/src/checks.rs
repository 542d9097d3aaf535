//! CHECK constraints, which sluice cannot evaluate per row: the staged rows that violate one
//! are found in SQL, taken out of the staging table before the upsert, and quarantined with
//! the constraint's name and their fields as read (from a second read of the object, only when
//! some row failed). The rest of the object loads.

use std::collections::BTreeMap;

use sluice_flatten::csv::{CsvReader, CsvRecord};
use sluice_transform::{LINE_COLUMN, quote_ident};
use sqlx::PgConnection;

use crate::copy::{Copied, STAGE};
use crate::error::{Error, Fail, Reject, Rejection};
use crate::job::{Job, blocking};
use crate::quarantine::Quarantine;
use crate::rows::Rules;
use crate::store::{Store, decode};

/// Takes the staged rows that violate one of `rules.checks` out of staging and into the
/// quarantine. A constraint whose expression cannot run on the staging table (it names a
/// column the file does not have, say) is left to the upsert, which then fails as before.
pub(crate) async fn isolate_violations<S: Store>(
    tx: &mut PgConnection,
    job: &Job<'_, S>,
    rules: &Rules,
    copied: &mut Copied,
) -> Result<(), Fail> {
    let mut failed: BTreeMap<u64, String> = BTreeMap::new();
    for (name, expr) in &rules.checks {
        for line in violations(tx, name, expr).await? {
            failed.entry(line).or_insert_with(|| name.clone());
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    tracing::info!(
        rows = failed.len(),
        "rows violate a check constraint: quarantined"
    );
    copied.sent -= failed.len() as u64;
    let quarantine = Quarantine::new(
        rules.header.clone(),
        rules.bound.redactions(),
        rules.ctx.salt.clone(),
    )
    .resume(std::mem::take(&mut copied.quarantined))?;
    let raw = job.open_again().await?;
    copied.quarantined = blocking(move || quarantine_lines(raw, failed, quarantine))
        .await??
        .finish()?;
    Ok(())
}

/// The lines of the staged rows `expr` refuses, deleted from staging (in a savepoint: an
/// expression that cannot run here is skipped).
async fn violations(tx: &mut PgConnection, name: &str, expr: &str) -> Result<Vec<u64>, Fail> {
    sqlx::query("SAVEPOINT sluice_check")
        .execute(&mut *tx)
        .await?;
    let sql = format!(
        "DELETE FROM {} WHERE NOT ({expr}) RETURNING {}",
        quote_ident(STAGE),
        quote_ident(LINE_COLUMN)
    );
    match sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *tx)
        .await
    {
        Ok(lines) => Ok(lines.into_iter().map(|l| l as u64).collect()),
        Err(e) => {
            tracing::warn!(constraint = name, error = %e,
                "cannot evaluate the check constraint on the staged rows; the upsert will");
            sqlx::query("ROLLBACK TO SAVEPOINT sluice_check")
                .execute(&mut *tx)
                .await?;
            Ok(Vec::new())
        }
    }
}

/// Reads the object again and quarantines the records that start on the `failed` lines.
fn quarantine_lines(
    raw: Box<dyn std::io::Read + Send>,
    failed: BTreeMap<u64, String>,
    mut quarantine: Quarantine,
) -> Result<Quarantine, Error> {
    let mut reader = CsvReader::new(decode(raw)?);
    let mut rec = CsvRecord::default();
    reader.read(&mut rec)?; // the header
    while reader.read(&mut rec)? {
        if let Some(constraint) = failed.get(&rec.line) {
            let reason = Reject::Check {
                constraint: constraint.clone(),
            };
            quarantine.add(
                Rejection {
                    line: rec.line,
                    reason,
                },
                &rec,
            )?;
        }
    }
    Ok(quarantine)
}

//! Before the first row is sent: the column types (the mapping's, the table's, else inferred),
//! the table created or evolved (or, under `freeze`, the columns it lacks refused), and the
//! unique key checked.

use std::io::{self, Read};

use sluice_edge::layout::manifest_key;
use sluice_flatten::JsonTypes;
use sluice_flatten::csv::{CsvReader, CsvRecord};
use sluice_transform::{
    BoundMapping, ColumnRule, ColumnType, Guess, Inference, Mapping, SchemaPolicy,
};
use sqlx::{PgConnection, PgPool};

use crate::catalog::{self, TableInfo};
use crate::error::{Error, Fail};
use crate::job::{Job, blocking};
use crate::rows::header_preview;
use crate::store::{Store, StoreErrorKind, decode};

/// Rows read to guess the types of new columns (more while one of them has shown only NULLs).
/// The load checks the guess: a later value that does not fit sends it back to infer from the
/// whole object.
pub(crate) const INFER_ROWS: u64 = 10_000;

/// The mapping bound to this file and this table.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub bound: BoundMapping,
    /// freeze: CSV columns the table lacks (position, target name); their values are refused.
    pub frozen: Vec<(usize, String)>,
    /// Target columns whose types were guessed from the first rows.
    pub guessed: Vec<String>,
    /// The table's CHECK constraints (name, expression).
    pub checks: Vec<(String, String)>,
}

/// Types, schema changes, the unique-key check. `None`: a header only and no table to take
/// types from, so nothing to create or load.
pub(crate) async fn prepare<S: Store>(
    conn: &mut PgConnection,
    pool: &PgPool,
    job: &Job<'_, S>,
    header: &[String],
) -> Result<Option<Prepared>, Fail> {
    let mapping = job.mapping;
    let info = catalog::table_info(conn, &mapping.table).await?;
    let Some(Types {
        types,
        guessed,
        inferred,
        widen,
    }) = column_types(job, info.as_ref(), header).await?
    else {
        return Ok(None);
    };
    let names: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut bound = bind(mapping, &names, &types, header)?;
    let missing: Vec<String> = match &info {
        None => Vec::new(),
        Some(t) => bound
            .names()
            .into_iter()
            .filter(|n| t.column_type(n).is_none())
            .map(str::to_owned)
            .collect(),
    };
    let mut frozen = Vec::new();
    let info = match info {
        // Created in the load's transaction: no one can read it before the commit anyway.
        None => evolve(conn, &bound, &inferred).await?,
        Some(t) if missing.is_empty() && widen.is_empty() => t,
        Some(_) if mapping.schema_policy == SchemaPolicy::Evolve => {
            let change = Change {
                missing: &missing,
                guessed: &guessed,
                inferred: &inferred,
                widen: &widen,
            };
            change_apart(conn, pool, &bound, change).await?
        }
        Some(t) => {
            (bound, frozen) = freeze(mapping, bound, &missing, &names, &types, header)?;
            t
        }
    };
    bound.use_table(|name| info.column(name));
    if !info.has_unique_key(&mapping.key) {
        return Err(Fail::Permanent(Error::NoUniqueKey {
            table: mapping.table.to_string(),
            key: mapping.key.join(", "),
            create: bound.plan().unique_index(),
        }));
    }
    Ok(Some(Prepared {
        checks: info.checks,
        bound,
        frozen,
        guessed,
    }))
}

/// The types of a header's columns, and where they came from.
struct Types {
    types: Vec<ColumnType>,
    /// Target columns whose types may not hold every value: guessed from the first rows, or
    /// (evolve) inferred by an earlier load. A value that does not fit one sends the load back to
    /// infer from the whole object.
    guessed: Vec<String>,
    /// Target columns typed by inference here: marked so when they are created.
    inferred: Vec<String>,
    /// evolve: inferred columns of the table that must widen to hold this object's values.
    widen: Vec<(String, ColumnType)>,
}

/// The type of each header column: the mapping's, else the existing column's, else inferred
/// from the values. Under evolve, a whole-object pass also widens the table's inferred columns
/// to hold this object. `None` when there is no row to infer from and no table.
async fn column_types<S: Store>(
    job: &Job<'_, S>,
    info: Option<&TableInfo>,
    header: &[String],
) -> Result<Option<Types>, Fail> {
    let mapping = job.mapping;
    let evolving = mapping.schema_policy == SchemaPolicy::Evolve;
    let mut types = vec![ColumnType::Text; header.len()];
    let (mut to_infer, mut to_widen, mut guessed) = (Vec::new(), Vec::new(), Vec::new());
    for (i, src) in header.iter().enumerate() {
        let Some(target) = mapping.target_name(src) else {
            continue;
        };
        if mapping.has_type(src) {
            continue;
        }
        let Some(t) = info else {
            to_infer.push(i);
            continue;
        };
        let Some(pg) = t.column_type(target) else {
            to_infer.push(i);
            continue;
        };
        types[i] = ColumnType::from_pg(pg).unwrap_or(ColumnType::Text);
        let widenable = Guess::of_type(types[i]).is_some_and(|g| g != Guess::Text);
        if evolving && widenable && t.is_inferred(target) {
            match job.infer_rows {
                Some(_) => guessed.push(target.to_owned()),
                None => to_widen.push(i),
            }
        }
    }
    // Columns that were JSON strings in the source stay text ("123" is a code, not a number):
    // the ingest's manifest beside the object says which.
    if !to_infer.is_empty() {
        let strings = json_string_columns(job).await?;
        to_infer.retain(|&i| !strings.contains(&header[i]));
    }
    let target = |i: usize| mapping.target_name(&header[i]).map(str::to_owned);
    let inferred_targets = to_infer.iter().filter_map(|&i| target(i)).collect();
    if to_infer.is_empty() && to_widen.is_empty() {
        return Ok(Some(Types {
            types,
            guessed,
            inferred: inferred_targets,
            widen: Vec::new(),
        }));
    }
    let raw = job.open_again().await?;
    // New columns of an existing table are added for good, before the load (see
    // `change_apart`): typed from the whole object, never guessed from its first rows.
    let limit = if info.is_some() { None } else { job.infer_rows };
    let cols: Vec<usize> = to_infer.iter().chain(&to_widen).copied().collect();
    let width = header.len();
    let inferred = blocking(move || infer(raw, width, &cols, limit)).await??;
    if inferred.rows == 0 && info.is_none() {
        return Ok(None);
    }
    for &i in &to_infer {
        types[i] = inferred.guesses[i].column_type();
        if !inferred.whole {
            guessed.extend(target(i));
        }
    }
    let mut widen = Vec::new();
    for &i in &to_widen {
        let was = Guess::of_type(types[i]).expect("only inferable types widen");
        let now = was.widen(inferred.guesses[i]).column_type();
        if now != types[i] {
            types[i] = now;
            widen.extend(target(i).map(|t| (t, now)));
        }
    }
    Ok(Some(Types {
        types,
        guessed,
        inferred: inferred_targets,
        widen,
    }))
}

/// The columns the manifest beside the object (written by the ingest) saw only as JSON strings
/// (and nulls). Empty when there is no manifest: a CSV from elsewhere, or S3's 403 for a
/// missing key where the role may not list the bucket.
async fn json_string_columns<S: Store>(job: &Job<'_, S>) -> Result<Vec<String>, Fail> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        columns: Vec<Column>,
    }
    #[derive(serde::Deserialize)]
    struct Column {
        name: String,
        types: JsonTypes,
    }
    let o = &job.object;
    let key = manifest_key(&o.key);
    if key == o.key {
        return Ok(Vec::new());
    }
    let raw = match job.store.open(&o.bucket, &key, None).await {
        Ok((_, raw)) => raw,
        Err(e) if e.kind == StoreErrorKind::Transient => return Err(e.into()),
        Err(e) => {
            tracing::debug!(error = %e, "no manifest beside the object: types are inferred");
            return Ok(Vec::new());
        }
    };
    let parsed =
        blocking(move || serde_json::from_reader::<_, Manifest>(raw.take(16 << 20))).await?;
    let Ok(manifest) = parsed else {
        tracing::warn!(manifest = %key, "the manifest beside the object is not one: types are inferred");
        return Ok(Vec::new());
    };
    let mut strings_or_null = JsonTypes::STRING;
    strings_or_null.insert(JsonTypes::NULL);
    let only_strings = |t: JsonTypes| t.contains(JsonTypes::STRING) && strings_or_null.contains(t);
    Ok(manifest
        .columns
        .into_iter()
        .filter(|c| only_strings(c.types))
        .map(|c| c.name)
        .collect())
}

fn bind(
    mapping: &Mapping,
    names: &[&str],
    types: &[ColumnType],
    header: &[String],
) -> Result<BoundMapping, Error> {
    mapping.bind(names, types).map_err(|source| Error::Mapping {
        source,
        header: header_preview(header),
    })
}

/// What [`change_apart`] changes in a table others may be reading.
struct Change<'a> {
    /// Columns to add,
    missing: &'a [String],
    /// guessed or possibly outgrown types (none of `missing` may be guessed),
    guessed: &'a [String],
    /// those typed by inference (marked when added),
    inferred: &'a [String],
    /// and inferred columns to widen.
    widen: &'a [(String, ColumnType)],
}

/// Columns added or widened for a table others may be reading: in a short transaction of its
/// own, committed before the load goes on (`ALTER TABLE` holds ACCESS EXCLUSIVE until its
/// transaction ends; inside the load's it would block every reader for the whole `COPY`). Once
/// committed a column's type stays, so a type guessed from the first rows is not good enough:
/// the attempt starts again with types from the whole object. The lock is waited for at most
/// `lock_timeout` (readers queue behind a waiting `ALTER`); a timeout is retried.
async fn change_apart(
    conn: &mut PgConnection,
    pool: &PgPool,
    bound: &BoundMapping,
    change: Change<'_>,
) -> Result<TableInfo, Fail> {
    if let Some(column) = change.missing.iter().find(|c| change.guessed.contains(c)) {
        return Err(Fail::Reinfer(Error::NewColumnGuessed {
            column: column.clone(),
        }));
    }
    let mut short = pool.begin().await?;
    // `to_json` renders a timestamp that widens to text in the session's time zone.
    for set in [
        "SET LOCAL lock_timeout = '5s'",
        "SET LOCAL TimeZone = 'UTC'",
    ] {
        sqlx::query(set).execute(&mut *short).await?;
    }
    let now = evolve(&mut short, bound, change.inferred).await?;
    widen(&mut short, bound, &now, change.widen).await?;
    short.commit().await?;
    let table = &bound.plan().table;
    Ok(catalog::table_info(conn, table).await?.unwrap_or_default())
}

/// Widens inferred columns (under the DDL lock [`evolve`] took) to types that hold both what
/// they hold and what this object brings; a column another loader widened meanwhile is
/// widened as far as both need.
async fn widen(
    conn: &mut PgConnection,
    bound: &BoundMapping,
    table: &TableInfo,
    columns: &[(String, ColumnType)],
) -> Result<(), Fail> {
    let plan = bound.plan();
    for (column, to) in columns {
        let current = table
            .column_type(column)
            .and_then(ColumnType::from_pg)
            .and_then(Guess::of_type);
        let (Some(current), Some(wanted)) = (current, Guess::of_type(*to)) else {
            continue;
        };
        let target = current.widen(wanted);
        if target == current {
            continue;
        }
        let ddl = plan.widen_column(column, target.column_type());
        tracing::info!(table = %plan.table, %ddl, "an inferred column widens");
        sqlx::query(sqlx::AssertSqlSafe(ddl))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Creates the table, or adds the columns it lacks, under the table's DDL lock; marks the
/// columns created with inferred types; returns the table as it is now.
async fn evolve(
    conn: &mut PgConnection,
    bound: &BoundMapping,
    inferred: &[String],
) -> Result<TableInfo, Fail> {
    let plan = bound.plan();
    let table = &plan.table;
    catalog::begin_ddl(conn, table).await?;
    // Another loader may have changed the table while we waited for the lock.
    let mut ddl = Vec::new();
    let created: Vec<&str> = match catalog::table_info(conn, table).await? {
        None => {
            tracing::info!(table = %table, "creating the target table");
            ddl.push(plan.create_table());
            plan.columns.iter().map(|c| c.name.as_str()).collect()
        }
        Some(t) => {
            let existing: Vec<String> = t.columns.iter().map(|c| c.0.clone()).collect();
            ddl.extend(plan.add_columns(&existing));
            plan.columns
                .iter()
                .map(|c| c.name.as_str())
                .filter(|n| !existing.iter().any(|e| e == n))
                .collect()
        }
    };
    for c in created
        .into_iter()
        .filter(|c| inferred.iter().any(|i| i == c))
    {
        ddl.push(plan.mark_inferred(c));
    }
    for ddl in ddl {
        tracing::info!(table = %table, %ddl, "schema evolves");
        sqlx::query(sqlx::AssertSqlSafe(ddl))
            .execute(&mut *conn)
            .await?;
    }
    Ok(catalog::table_info(conn, table).await?.unwrap_or_default())
}

/// freeze: the columns the table lacks are dropped from the mapping, and remembered so that
/// rows with values in them are rejected. A derived column the table lacks cannot be dropped.
fn freeze(
    mapping: &Mapping,
    bound: BoundMapping,
    missing: &[String],
    names: &[&str],
    types: &[ColumnType],
    header: &[String],
) -> Result<(BoundMapping, Vec<(usize, String)>), Error> {
    let mut frozen = Vec::new();
    let mut frozen_mapping = mapping.clone();
    for name in missing {
        let i = bound
            .names()
            .iter()
            .position(|n| n == name)
            .expect("missing names come from the bound names");
        let Some(c) = bound.source_column(i) else {
            return Err(Error::Frozen {
                column: name.clone(),
                table: mapping.table.to_string(),
            });
        };
        frozen.push((c, name.clone()));
        let dropped = ColumnRule {
            rename: None,
            conversion: None,
            default: None,
            redact: None,
            drop: true,
        };
        frozen_mapping.columns.insert(header[c].clone(), dropped);
    }
    Ok((bind(&frozen_mapping, names, types, header)?, frozen))
}

/// Types inferred by [`infer`].
struct Inferred {
    guesses: Vec<Guess>,
    /// Rows read.
    rows: u64,
    /// Every row was read: the types are certain, not guessed.
    whole: bool,
}

/// A first pass over the object for the types of columns (`cols`) neither the mapping nor the
/// table gives: over the first `limit` rows, and on until each of them has shown a value, or
/// over the whole object.
fn infer(
    raw: Box<dyn io::Read + Send>,
    width: usize,
    cols: &[usize],
    limit: Option<u64>,
) -> Result<Inferred, Error> {
    let mut reader = CsvReader::new(decode(raw)?);
    let mut rec = CsvRecord::default();
    reader.read(&mut rec)?; // the header
    let mut inf = Inference::new(width);
    let mut rows = 0;
    let known = |inf: &Inference| {
        cols.iter()
            .all(|&i| inf.guesses().get(i).is_some_and(|g| *g != Guess::Unknown))
    };
    while !(limit.is_some_and(|l| rows >= l) && known(&inf)) {
        if !reader.read(&mut rec)? {
            return Ok(Inferred {
                guesses: inf.guesses().to_vec(),
                rows,
                whole: true,
            });
        }
        rows += 1;
        if rec.len() != width {
            continue; // ragged: rejected later, no say in the types
        }
        for (i, f) in rec.iter().enumerate() {
            // Invalid UTF-8 is rejected later; it has no say in the types either.
            if let Some(v) = f.and_then(|f| std::str::from_utf8(f).ok()) {
                inf.observe(i, Some(v));
            }
        }
    }
    Ok(Inferred {
        guesses: inf.guesses().to_vec(),
        rows,
        whole: false,
    })
}

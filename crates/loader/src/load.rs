//! Loading one object: stream → CSV → typed rows → `COPY` into a staging table → one upsert,
//! in one transaction with the ledger row; bad rows to quarantine.

use std::io::{self, Seek};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use sluice_flatten::csv::{CsvReader, CsvRecord, CsvWriter};
use sluice_transform::{
    BoundMapping, ColumnRule, ColumnType, Guess, Inference, Mapping, RowContext, SchemaPolicy,
    TypedRow, quote_ident,
};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::mpsc;

use crate::catalog::{self, TableInfo};
use crate::config::Config;
use crate::event::ObjectRef;
use crate::store::{ObjectReader, Store, StoreError, decode, is_transfer_error};

/// How many bad lines an over-the-limit error names.
const SAMPLE_LINES: usize = 5;
/// Staging table name (temporary, dropped at commit).
const STAGE: &str = "sluice_stage";
/// Attempts per object when the failure is retryable.
const MAX_ATTEMPTS: usize = 4;

/// Row counts of a load. Always: `rows_read = inserted + updated + unchanged + rejected +
/// duplicates`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    pub rows_read: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Rows whose key existed with identical values, or held back by the ordering guard.
    pub unchanged: u64,
    pub rejected: u64,
    /// Rows superseded by a later row with the same key in the same file.
    pub duplicates: u64,
}

impl std::ops::AddAssign for RowCounts {
    fn add_assign(&mut self, o: Self) {
        self.rows_read += o.rows_read;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.rejected += o.rejected;
        self.duplicates += o.duplicates;
    }
}

/// What happened to one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectSummary {
    pub bucket: String,
    pub key: String,
    /// Version id, else ETag: what the ledger knows the object by.
    pub version: String,
    pub source: String,
    pub table: String,
    /// `loaded`, `skipped` (this version was loaded before) or `ignored` (not a loader key).
    pub status: String,
    #[serde(flatten)]
    pub rows: RowCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_key: Option<String>,
    pub attempts: u32,
    pub duration_ms: u64,
    /// `direct` (new keys, `COPY`ed straight into the table) or `staged`
    /// (`COPY` into staging, then the upsert).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Time spent reading, transforming and `COPY`ing (in parallel).
    pub copy_ms: u64,
    /// Time spent in the upsert statement.
    pub upsert_ms: u64,
}

/// Why an object did not load. `retryable` errors (database or store unreachable, deadlock,
/// serialization failure) may succeed later; permanent ones (a bad file, a bad mapping) won't.
#[derive(Debug, Clone, thiserror::Error)]
#[error("s3://{bucket}/{key}: {message}")]
pub struct LoadError {
    pub bucket: String,
    pub key: String,
    pub message: String,
    pub retryable: bool,
}

/// An error inside one attempt, before the object's name is attached.
#[derive(Debug, Default)]
struct Fail {
    message: String,
    retryable: bool,
    /// The direct `COPY` into the target cannot go on (a key exists or repeats): roll it back
    /// and take the staging path.
    fallback: bool,
    /// A value does not fit the type guessed from the first rows: start again with the types
    /// inferred from the whole object.
    reinfer: bool,
}

fn permanent(message: impl Into<String>) -> Fail {
    Fail {
        message: message.into(),
        ..Fail::default()
    }
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        let retryable = is_retryable_db(&e);
        let unique_violation =
            matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"));
        Fail {
            message: format!("database: {e}"),
            retryable,
            fallback: unique_violation,
            ..Fail::default()
        }
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail {
            message: e.message,
            retryable: e.retryable,
            ..Fail::default()
        }
    }
}

/// Serialization failures, deadlocks, lost connections and server shutdowns can be retried.
pub fn is_retryable_db(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            matches!(
                code.as_ref(),
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300"
            ) || code.starts_with("08")
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// The loader: a pool and the configuration, shared across invocations.
#[derive(Debug)]
pub struct Loader {
    pool: PgPool,
    config: Arc<Config>,
    ledger_ready: tokio::sync::OnceCell<()>,
}

impl Loader {
    pub fn new(pool: PgPool, config: Arc<Config>) -> Self {
        Self {
            pool,
            config,
            ledger_ready: tokio::sync::OnceCell::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Loads one object with the mapping of its source, retrying retryable failures with
    /// exponential backoff and jitter.
    pub async fn load<S: Store>(
        &self,
        store: &S,
        object: &ObjectRef,
    ) -> Result<ObjectSummary, LoadError> {
        let Some(source) = self.config.source_of(&object.key) else {
            tracing::info!(bucket = %object.bucket, key = %object.key,
                "skipping: key is not <raw prefix><source>/…(.csv|.csv.gz)");
            return Ok(ObjectSummary {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                status: "ignored".into(),
                ..ObjectSummary::default()
            });
        };
        let mapping = self.config.mappings.get(source).ok_or_else(|| LoadError {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            message: format!("no mapping for source {source:?} (add {source}.toml to MAPPINGS)"),
            retryable: false,
        })?;
        self.load_with(store, object, source, mapping).await
    }

    /// Loads one object with an explicit mapping (the CLI's `--table/--key`).
    pub async fn load_with<S: Store>(
        &self,
        store: &S,
        object: &ObjectRef,
        source: &str,
        mapping: &Mapping,
    ) -> Result<ObjectSummary, LoadError> {
        let started = Instant::now();
        let attempts = std::sync::atomic::AtomicU32::new(0);
        // New columns' types are guessed from the first rows; should a later value not fit,
        // the attempt is rolled back and made again with types from the whole object.
        let whole = std::sync::atomic::AtomicBool::new(false);
        let result = (|| async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let infer_rows =
                (!whole.load(std::sync::atomic::Ordering::Relaxed)).then_some(INFER_ROWS);
            match self
                .attempt(store, object, source, mapping, infer_rows)
                .await
            {
                Err(f) if f.reinfer => {
                    tracing::info!(bucket = %object.bucket, key = %object.key, reason = %f.message,
                        "a value does not fit the guessed types; inferring from the whole object");
                    whole.store(true, std::sync::atomic::Ordering::Relaxed);
                    self.attempt(store, object, source, mapping, None).await
                }
                r => r,
            }
        })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(MAX_ATTEMPTS - 1)
                .with_jitter(),
        )
        .sleep(tokio::time::sleep)
        .when(|f: &Fail| f.retryable)
        .notify(|f: &Fail, after: Duration| {
            tracing::warn!(bucket = %object.bucket, key = %object.key, error = %f.message,
                retry_in_ms = after.as_millis() as u64, "retryable failure; trying again");
        })
        .await;
        let attempts = attempts.load(std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(mut s) => {
                s.attempts = attempts;
                s.duration_ms = started.elapsed().as_millis() as u64;
                Ok(s)
            }
            Err(f) => Err(LoadError {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                message: if attempts > 1 {
                    format!("{} (after {attempts} attempts)", f.message)
                } else {
                    f.message
                },
                retryable: f.retryable,
            }),
        }
    }

    async fn ensure_ledger(&self) -> Result<(), Fail> {
        self.ledger_ready
            .get_or_try_init(|| async {
                let mut conn = self.pool.acquire().await?;
                catalog::ensure_ledger(&mut conn, &self.config.ledger_schema).await
            })
            .await?;
        Ok(())
    }

    async fn attempt<S: Store>(
        &self,
        store: &S,
        object: &ObjectRef,
        source: &str,
        mapping: &Mapping,
        infer_rows: Option<u64>,
    ) -> Result<ObjectSummary, Fail> {
        let started = jiff::Timestamp::now();
        let (meta, raw) = store
            .open(&object.bucket, &object.key, object.version_id.as_deref())
            .await?;
        let version_id = meta.version_id.clone().or(object.version_id.clone());
        // Later reads (type inference, the staging fallback) ask for this same version.
        let object = &ObjectRef {
            version_id: version_id.clone(),
            ..object.clone()
        };
        let etag = meta.etag.clone().or(object.etag.clone());
        let version = match (&version_id, &etag) {
            (Some(v), _) => v.clone(),
            (None, Some(e)) => e.clone(),
            (None, None) => "-".to_owned(),
        };
        let mut summary = ObjectSummary {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version: version.clone(),
            source: source.to_owned(),
            table: mapping.table.to_string(),
            status: "loaded".into(),
            ..ObjectSummary::default()
        };
        self.ensure_ledger().await?;
        let ledger = catalog::ledger_table(&self.config.ledger_schema);

        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL work_mem = '64MB'")
            .execute(&mut *tx)
            .await?;
        catalog::lock_object(&mut tx, &object.bucket, &object.key, &version).await?;
        let seen: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM {ledger} WHERE bucket = $1 AND key = $2 AND version = $3"
        )))
        .bind(&object.bucket)
        .bind(&object.key)
        .bind(&version)
        .fetch_optional(&mut *tx)
        .await?;
        if seen.is_some() {
            tracing::info!(bucket = %object.bucket, key = %object.key, %version,
                "skipping: this object version was loaded before");
            summary.status = "skipped".into();
            return Ok(summary);
        }

        let (reader, header) = blocking(move || read_header(raw)).await??;
        let ctx = RowContext {
            load_time: started,
            source_key: object.key.clone(),
            object_time: meta.last_modified.or(object.event_time),
            salt: self.config.redact_salt.expose().to_owned(),
        };
        let prepared = match &header {
            None => {
                tracing::info!(bucket = %object.bucket, key = %object.key, "empty object: nothing to load");
                None
            }
            Some(header) => {
                self.prepare(&mut tx, store, object, mapping, header, infer_rows)
                    .await?
            }
        };
        match (header, prepared) {
            (Some(header), Some(prepared)) => {
                self.load_rows(
                    &mut tx,
                    store,
                    object,
                    reader,
                    &header,
                    &prepared,
                    ctx,
                    &mut summary,
                )
                .await?;
            }
            (Some(_), None) => tracing::info!(bucket = %object.bucket, key = %object.key,
                "header only and no table yet: nothing to create or load"),
            (None, _) => {}
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {ledger} (bucket, key, version, etag, version_id, sequencer, source, target, \
             rows_read, inserted, updated, unchanged, rejected, duplicates, quarantine_key, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::timestamptz)"
        )))
        .bind(&object.bucket)
        .bind(&object.key)
        .bind(&version)
        .bind(&etag)
        .bind(&version_id)
        .bind(&object.sequencer)
        .bind(source)
        .bind(&summary.table)
        .bind(summary.rows.rows_read as i64)
        .bind(summary.rows.inserted as i64)
        .bind(summary.rows.updated as i64)
        .bind(summary.rows.unchanged as i64)
        .bind(summary.rows.rejected as i64)
        .bind(summary.rows.duplicates as i64)
        .bind(&summary.quarantine_key)
        .bind(started.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(summary)
    }

    #[allow(clippy::too_many_arguments)]
    async fn load_rows<S: Store>(
        &self,
        tx: &mut PgConnection,
        store: &S,
        object: &ObjectRef,
        reader: CsvReader<ObjectReader>,
        header: &[String],
        prepared: &Prepared,
        ctx: RowContext,
        summary: &mut ObjectSummary,
    ) -> Result<(), Fail> {
        let t0 = Instant::now();
        // Fast path first when the key is text: new keys go straight into the table. The parser
        // switches to staging by itself (no second read) when a key repeats within the first
        // batch, or when a probe of the first keys finds one that exists. A conflict after that
        // (a unique violation) rolls back to the savepoint, and the object is read again for the
        // staging path.
        let try_direct = prepared.bound.plan().text_key();
        if try_direct {
            sqlx::query("SAVEPOINT sluice_direct")
                .execute(&mut *tx)
                .await?;
        }
        let stats = match self
            .copy_rows(tx, reader, header, prepared, ctx.clone(), try_direct)
            .await
        {
            Ok(stats) => stats,
            Err(f) if f.fallback => {
                tracing::debug!(reason = %f.message, "direct COPY not possible; staging");
                sqlx::query("ROLLBACK TO SAVEPOINT sluice_direct")
                    .execute(&mut *tx)
                    .await?;
                let raw = open_again(store, object).await?;
                let reader = blocking(move || read_header(raw)).await??.0;
                self.copy_rows(tx, reader, header, prepared, ctx, false)
                    .await?
            }
            Err(f) => return Err(f),
        };
        summary.copy_ms = t0.elapsed().as_millis() as u64;
        if stats.direct {
            summary.path = "direct".into();
            self.check_ratio(&stats)?;
            summary.rows.rows_read = stats.rows_read;
            summary.rows.rejected = stats.rejected;
            summary.rows.inserted = stats.staged;
            return self.quarantine(store, object, stats, summary).await;
        }
        summary.path = "staged".into();
        summary.rows.rows_read = stats.rows_read;
        summary.rows.rejected = stats.rejected;
        self.check_ratio(&stats)?;
        let plan = prepared.bound.plan();
        let t0 = Instant::now();
        let sql = if stats.presorted {
            // Strictly ascending keys are unique too.
            plan.upsert_unique(STAGE, true)
        } else if stats.keys_unique {
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
        summary.rows.duplicates = stats.staged - distinct as u64;
        self.quarantine(store, object, stats, summary).await
    }

    /// Above `MAX_REJECT_RATIO` the object fails as a whole.
    fn check_ratio(&self, stats: &ParseStats) -> Result<(), Fail> {
        let ratio = if stats.rows_read == 0 {
            0.0
        } else {
            stats.rejected as f64 / stats.rows_read as f64
        };
        if ratio > self.config.max_reject_ratio {
            return Err(permanent(format!(
                "{} of {} rows rejected ({:.1}% > MAX_REJECT_RATIO {}); nothing loaded; first bad lines: {}",
                stats.rejected,
                stats.rows_read,
                ratio * 100.0,
                self.config.max_reject_ratio,
                stats.samples.join("; ")
            )));
        }
        Ok(())
    }

    /// Uploads the quarantine file, if any (before the commit: a failed commit leaves a file
    /// the retry overwrites, never a committed load without its rejected rows).
    async fn quarantine<S: Store>(
        &self,
        store: &S,
        object: &ObjectRef,
        stats: ParseStats,
        summary: &mut ObjectSummary,
    ) -> Result<(), Fail> {
        if let Some(file) = stats.quarantine {
            let qkey = quarantine_key(&self.config.quarantine_prefix, &object.key);
            store.put_file(&object.bucket, &qkey, file).await?;
            summary.quarantine_key = Some(qkey);
        }
        Ok(())
    }

    /// Types, schema changes, the unique-key check: everything before the first row is sent.
    async fn prepare<S: Store>(
        &self,
        conn: &mut PgConnection,
        store: &S,
        object: &ObjectRef,
        mapping: &Mapping,
        header: &[String],
        infer_rows: Option<u64>,
    ) -> Result<Option<Prepared>, Fail> {
        let names: Vec<&str> = header.iter().map(String::as_str).collect();
        let table = &mapping.table;
        let mut info = catalog::table_info(conn, table).await?;
        // Types: the mapping's, else the existing column's, else inferred from the values.
        let mut types = vec![ColumnType::Text; header.len()];
        let mut to_infer = Vec::new();
        for (i, src) in names.iter().enumerate() {
            let Some(target) = mapping.target_name(src) else {
                continue;
            };
            if mapping.has_type(src) {
                continue;
            }
            match info.as_ref().and_then(|t| t.column_type(target)) {
                Some(pg) => types[i] = ColumnType::from_pg(pg).unwrap_or(ColumnType::Text),
                None => to_infer.push(i),
            }
        }
        let mut guessed = Vec::new();
        if !to_infer.is_empty() {
            let raw = open_again(store, object).await?;
            let width = header.len();
            let cols = to_infer.clone();
            let inferred = blocking(move || infer(raw, width, &cols, infer_rows)).await??;
            if inferred.rows == 0 && info.is_none() {
                // Header only, and no table to take types from: nothing to create or load.
                return Ok(None);
            }
            for i in to_infer {
                types[i] = inferred.types[i];
                if !inferred.whole {
                    guessed.extend(mapping.target_name(names[i]).map(str::to_owned));
                }
            }
        }
        let bind = |m: &Mapping| {
            m.bind(&names, &types)
                .map_err(|e| permanent(format!("{e} (file header: {})", header_preview(header))))
        };
        let mut bound = bind(mapping)?;
        let mut frozen = Vec::new();

        let missing: Vec<String> = match &info {
            None => Vec::new(),
            Some(t) => bound
                .names()
                .into_iter()
                .filter(|n| t.column_type(n).is_none())
                .map(str::to_owned)
                .collect(),
        };
        if info.is_none() || (!missing.is_empty() && mapping.schema_policy == SchemaPolicy::Evolve)
        {
            catalog::begin_ddl(conn, table).await?;
            // Another loader may have changed the table while we waited for the lock.
            let now = catalog::table_info(conn, table).await?;
            let plan = bound.plan();
            match &now {
                None => {
                    tracing::info!(table = %table, "creating the target table");
                    sqlx::query(sqlx::AssertSqlSafe(plan.create_table()))
                        .execute(&mut *conn)
                        .await?;
                }
                Some(t) => {
                    let existing: Vec<String> = t.columns.iter().map(|c| c.0.clone()).collect();
                    for ddl in plan.add_columns(&existing) {
                        tracing::info!(table = %table, %ddl, "schema evolves");
                        sqlx::query(sqlx::AssertSqlSafe(ddl))
                            .execute(&mut *conn)
                            .await?;
                    }
                }
            }
            info = catalog::table_info(conn, table).await?;
        } else if !missing.is_empty() {
            // freeze: columns the table lacks are dropped; rows with values in them are rejected.
            let mut frozen_mapping = mapping.clone();
            for name in &missing {
                let i = bound
                    .names()
                    .iter()
                    .position(|n| n == name)
                    .expect("missing names come from the bound names");
                let Some(c) = bound.source_column(i) else {
                    return Err(permanent(format!(
                        "column {name:?} is not in table {table} and schema_policy = \"freeze\""
                    )));
                };
                frozen.push((c, name.clone()));
                frozen_mapping.columns.insert(
                    header[c].clone(),
                    ColumnRule {
                        rename: None,
                        conversion: None,
                        default: None,
                        redact: None,
                        drop: true,
                    },
                );
            }
            bound = bind(&frozen_mapping)?;
        }
        let info: TableInfo = info.unwrap_or_default();
        if !info.has_unique_key(&mapping.key) {
            return Err(permanent(format!(
                "table {table} has no unique index or primary key on ({}); create one: {}",
                mapping.key.join(", "),
                bound.plan().unique_index()
            )));
        }
        Ok(Some(Prepared {
            bound,
            frozen,
            guessed,
        }))
    }

    /// Streams the rows into Postgres: straight into the table (`direct`, when allowed and the
    /// first batch qualifies) or into the staging table. `ParseStats::direct` tells which.
    async fn copy_rows(
        &self,
        conn: &mut PgConnection,
        reader: CsvReader<ObjectReader>,
        header: &[String],
        prepared: &Prepared,
        ctx: RowContext,
        try_direct: bool,
    ) -> Result<ParseStats, Fail> {
        let plan = prepared.bound.plan();
        let (tx, mut rx) = mpsc::channel::<Batch>(4);
        let (decide_tx, decide_rx) = std::sync::mpsc::sync_channel::<bool>(1);
        let names = prepared.bound.names();
        let key_pos = plan
            .key
            .iter()
            .filter_map(|k| names.iter().position(|n| n == k))
            .collect();
        let job = RowJob {
            key_pos,
            direct: try_direct,
            decision: decide_rx,
            text_key: plan.text_key(),
            header: header.to_vec(),
            bound: prepared.bound.clone(),
            frozen: prepared.frozen.clone(),
            guessed: prepared.guessed.clone(),
            ctx,
            batch_bytes: self.config.batch_bytes,
        };
        let parser = tokio::task::spawn_blocking(move || job.run(reader, tx));

        // The first batch decides the path.
        let mut first = rx.recv().await;
        let direct = match first.as_mut() {
            Some(b) => match b.staged_rows.take() {
                // Still eligible for the direct path: probe the first keys.
                Some(staged_rows) => {
                    let mut exists = false;
                    if let [key] = plan.key.as_slice()
                        && !b.keys.is_empty()
                    {
                        exists = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                            "SELECT EXISTS (SELECT 1 FROM {} WHERE {} = ANY($1))",
                            plan.table.quoted(),
                            quote_ident(key)
                        )))
                        .bind(&b.keys)
                        .fetch_one(&mut *conn)
                        .await?;
                    }
                    if exists {
                        b.rows = staged_rows;
                    }
                    // The parser waits for this after a full first batch (not after its last).
                    let _ = decide_tx.try_send(!exists);
                    !exists
                }
                None => b.direct,
            },
            None => {
                // No row to send (none, or all rejected): nothing to COPY either way.
                drop(rx);
                let stats = parser
                    .await
                    .map_err(|e| permanent(format!("row reader panicked: {e}")))??;
                // Reported as direct: no staging table, no upsert, nothing inserted.
                return Ok(ParseStats {
                    direct: true,
                    ..stats
                });
            }
        };
        let statement = if direct {
            plan.copy_target()
        } else {
            sqlx::query(sqlx::AssertSqlSafe(plan.create_staging(STAGE)))
                .execute(&mut *conn)
                .await?;
            plan.copy_staging(STAGE)
        };
        let mut copy = conn.copy_in_raw(&statement).await?;
        let mut send_err = None;
        loop {
            let batch = match first.take() {
                Some(b) => b,
                None => match rx.recv().await {
                    Some(b) => b,
                    None => break,
                },
            };
            if let Err(e) = copy.send(batch.rows).await {
                send_err = Some(e);
                break;
            }
        }
        drop(rx);
        let parsed = parser
            .await
            .map_err(|e| permanent(format!("row reader panicked: {e}")));
        if let Some(e) = send_err {
            return Err(e.into());
        }
        let stats = match parsed {
            Ok(Ok(stats)) => stats,
            Ok(Err(f)) | Err(f) => {
                if f.fallback {
                    // Ending the COPY normally keeps the protocol in step whatever the server
                    // already said (a unique violation, say); the savepoint undoes it anyway.
                    let _ = copy.finish().await;
                } else {
                    let _ = copy.abort(f.message.clone()).await;
                }
                return Err(f);
            }
        };
        let staged = copy.finish().await?;
        debug_assert_eq!(staged, stats.staged);
        // The probe's answer decides, also for a first batch that was the parser's last.
        Ok(ParseStats { direct, ..stats })
    }
}

/// Reads the object a second time: the version the first read saw, where the bucket has
/// versions.
async fn open_again<S: Store>(
    store: &S,
    object: &ObjectRef,
) -> Result<Box<dyn io::Read + Send>, Fail> {
    let (_, raw) = store
        .open(&object.bucket, &object.key, object.version_id.as_deref())
        .await?;
    Ok(raw)
}

/// Runs blocking work (reading and parsing the object) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| permanent(format!("reader task failed: {e}")))
}

/// An I/O error while reading the object: transfer errors may be retried, bad bytes not.
fn read_fail(e: io::Error) -> Fail {
    let retryable = is_transfer_error(&e);
    Fail {
        message: if retryable {
            e.to_string()
        } else {
            format!("reading the object: {e}")
        },
        retryable,
        ..Fail::default()
    }
}

/// `quarantine/` + `raw/x/a.csv.gz` → `quarantine/raw/x/a.csv` (quarantine files are plain CSV).
pub fn quarantine_key(prefix: &str, key: &str) -> String {
    format!("{prefix}{}", key.strip_suffix(".gz").unwrap_or(key))
}

fn header_preview(header: &[String]) -> String {
    let mut s = header.join(",");
    if s.chars().count() > 200 {
        s = s.chars().take(200).collect::<String>() + "…";
    }
    s
}

/// Reads and checks the header; `None` for an empty object.
fn read_header(
    raw: Box<dyn io::Read + Send>,
) -> Result<(CsvReader<ObjectReader>, Option<Vec<String>>), Fail> {
    let mut reader = CsvReader::new(decode(raw).map_err(read_fail)?);
    let mut rec = CsvRecord::default();
    if !reader.read(&mut rec).map_err(read_fail)? {
        return Ok((reader, None));
    }
    let not_csv = |why: &str| permanent(format!("not a CSV file: {why}"));
    let first = rec.get(0).unwrap_or_default();
    if rec.iter().flatten().any(|f| f.contains(&0)) {
        return Err(not_csv("the header contains NUL bytes (binary data?)"));
    }
    if rec.len() == 1 && first.is_empty() {
        return Err(not_csv("line 1 (the header) is blank"));
    }
    if matches!(first.trim_ascii_start().first(), Some(b'{' | b'[')) {
        return Err(not_csv(
            "it looks like JSON (line 1 starts with '{' or '[')",
        ));
    }
    let mut header = Vec::with_capacity(rec.len());
    for (i, f) in rec.iter().enumerate() {
        let f = f.unwrap_or_default();
        let name = std::str::from_utf8(f).map_err(|e| {
            not_csv(&format!(
                "header column {} is not UTF-8 (byte {})",
                i + 1,
                e.valid_up_to()
            ))
        })?;
        if name.is_empty() {
            return Err(permanent(format!(
                "bad header: column {} has no name",
                i + 1
            )));
        }
        if header.iter().any(|h: &String| h == name) {
            return Err(permanent(format!(
                "bad header: column {name:?} appears twice"
            )));
        }
        header.push(name.to_owned());
    }
    Ok((reader, Some(header)))
}

/// Rows read to guess the types of new columns (more while one of them has shown only NULLs).
/// The load checks the guess: a later value that does not fit sends it back to infer from the
/// whole object.
const INFER_ROWS: u64 = 10_000;

/// Types inferred by [`infer`].
struct Inferred {
    types: Vec<ColumnType>,
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
) -> Result<Inferred, Fail> {
    let mut reader = CsvReader::new(decode(raw).map_err(read_fail)?);
    let mut rec = CsvRecord::default();
    reader.read(&mut rec).map_err(read_fail)?; // the header
    let mut inf = Inference::new(width);
    let mut rows = 0;
    loop {
        if limit.is_some_and(|l| rows >= l)
            && cols
                .iter()
                .all(|&i| inf.guesses().get(i).is_some_and(|g| *g != Guess::Unknown))
        {
            return Ok(Inferred {
                types: inf.types(),
                rows,
                whole: false,
            });
        }
        if !reader.read(&mut rec).map_err(read_fail)? {
            break;
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
        types: inf.types(),
        rows,
        whole: true,
    })
}

#[derive(Debug)]
struct Prepared {
    bound: BoundMapping,
    /// freeze: CSV columns the table lacks (position, target name); their values are refused.
    frozen: Vec<(usize, String)>,
    /// Target columns whose types were guessed from the first rows.
    guessed: Vec<String>,
}

#[derive(Debug)]
struct ParseStats {
    /// The rows went straight into the table.
    direct: bool,
    /// No key was staged twice (exact: decided on 64-bit hashes, a collision only says "maybe").
    keys_unique: bool,
    /// Text keys staged in strictly ascending byte order: already in lock order.
    presorted: bool,
    rows_read: u64,
    staged: u64,
    rejected: u64,
    samples: Vec<String>,
    quarantine: Option<std::fs::File>,
}

/// Keys of the first rows checked against the table before a direct `COPY`.
const PROBE_KEYS: usize = 1000;

/// `COPY` data for one send, and (first batch of a direct load) the keys to probe.
#[derive(Debug)]
struct Batch {
    rows: Vec<u8>,
    /// The rows are for the table (`direct`) rather than staging.
    direct: bool,
    /// First batch of a direct attempt: the first keys, to probe…
    keys: Vec<String>,
    /// …and the same rows in staging form, should the probe say no.
    staged_rows: Option<Vec<u8>>,
}

impl Batch {
    /// A batch; while the direct path is undecided, with the rows in staging form and the keys
    /// to probe (both taken, so only the first batch carries them).
    fn new(
        rows: Vec<u8>,
        direct: bool,
        staged: &mut Option<CsvWriter<Vec<u8>>>,
        probe: &mut Option<Vec<String>>,
    ) -> Result<Self, Fail> {
        let staged_rows = staged
            .take()
            .map(CsvWriter::into_inner)
            .transpose()
            .map_err(|e| permanent(e.to_string()))?;
        Ok(Self {
            rows,
            direct,
            keys: probe.take().unwrap_or_default(),
            staged_rows,
        })
    }
}

/// The blocking half: parse, transform, batch for COPY, quarantine.
struct RowJob {
    /// Positions of the key columns in the typed row.
    key_pos: Vec<usize>,
    /// Try the direct path: rows straight into the table (no line number). Until the first
    /// batch is decided, rows are kept in both forms.
    direct: bool,
    /// The async side's answer to the first direct batch: `true` to stay direct.
    decision: std::sync::mpsc::Receiver<bool>,
    /// Every key column is text (byte order is the lock order).
    text_key: bool,
    header: Vec<String>,
    bound: BoundMapping,
    frozen: Vec<(usize, String)>,
    guessed: Vec<String>,
    ctx: RowContext,
    batch_bytes: usize,
}

impl RowJob {
    fn run(
        self,
        mut reader: CsvReader<ObjectReader>,
        tx: mpsc::Sender<Batch>,
    ) -> Result<ParseStats, Fail> {
        // Direct path: the first keys travel with the first batch, to be probed.
        let mut probe: Option<Vec<String>> =
            (self.direct && self.key_pos.len() == 1).then(Vec::new);
        let mut stats = ParseStats {
            direct: self.direct,
            keys_unique: true,
            presorted: self.text_key,
            rows_read: 0,
            staged: 0,
            rejected: 0,
            samples: Vec::new(),
            quarantine: None,
        };
        let mut q: Option<CsvWriter<std::fs::File>> = None;
        let mut seen_keys = std::collections::HashSet::<u64>::new();
        // The previous key, text columns joined by NUL (which no value contains, so byte order
        // of the joined form is the tuple's order).
        let (mut prev_key, mut this_key) = (Vec::<u8>::new(), Vec::<u8>::new());
        let mut rec = CsvRecord::default();
        let mut typed = TypedRow::default();
        let new_buf = || Vec::with_capacity(self.batch_bytes + (128 << 10));
        let mut w = CsvWriter::new(new_buf());
        // While the first direct batch is undecided, the same rows in staging form.
        let mut w_staged = self.direct.then(|| CsvWriter::new(new_buf()));
        let width = self.header.len();
        let cancelled = || permanent("the COPY stopped before the rows did");
        while reader.read(&mut rec).map_err(read_fail)? {
            stats.rows_read += 1;
            let fields: Vec<Option<&[u8]>> = rec.iter().collect();
            let outcome = if fields.len() != width {
                Err(if fields.len() == 1 && fields[0].is_none() {
                    format!("blank line (the header has {width} columns)")
                } else {
                    format!("row has {} fields, the header has {width}", fields.len())
                })
            } else if let Some((_, name)) = self.frozen.iter().find(|(c, _)| fields[*c].is_some()) {
                Err(format!(
                    "column {name:?} has a value but is not in the table (schema_policy = \"freeze\")"
                ))
            } else {
                match self.bound.apply(&fields, &self.ctx, &mut typed) {
                    Ok(()) => Ok(()),
                    Err(e) if e.value.is_some() && self.guessed.contains(&e.column) => {
                        // Not a bad row but a wrong guess: infer again from the whole object.
                        return Err(Fail {
                            message: format!("line {}: {e}", rec.line),
                            reinfer: true,
                            ..Fail::default()
                        });
                    }
                    Err(e) => Err(e.to_string()),
                }
            };
            match outcome {
                Ok(()) => {
                    let line = rec.line.to_string();
                    let numbered = std::iter::once(Some(line.as_str())).chain(typed.iter());
                    if stats.direct {
                        w.write_fields(typed.iter())
                            .map_err(|e| permanent(e.to_string()))?;
                        if let Some(ws) = w_staged.as_mut() {
                            ws.write_fields(numbered)
                                .map_err(|e| permanent(e.to_string()))?;
                        }
                    } else {
                        w.write_fields(numbered)
                            .map_err(|e| permanent(e.to_string()))?;
                    }
                    stats.staged += 1;
                    if let Some(p) = probe.as_mut()
                        && p.len() < PROBE_KEYS
                    {
                        p.push(typed.get(self.key_pos[0]).unwrap_or_default().to_owned());
                    }
                    // Order and repeats matter to the staging path (its upsert skips the sort or
                    // the de-duplication when it can). A direct COPY needs them only while its
                    // first batch can still switch to staging; after that, a repeated key meets
                    // the unique index and falls back.
                    if !stats.direct || w_staged.is_some() {
                        if stats.presorted {
                            this_key.clear();
                            for (i, &k) in self.key_pos.iter().enumerate() {
                                if i > 0 {
                                    this_key.push(0);
                                }
                                this_key
                                    .extend_from_slice(typed.get(k).unwrap_or_default().as_bytes());
                            }
                            if stats.staged > 1 && this_key <= prev_key {
                                stats.presorted = false;
                            }
                            std::mem::swap(&mut prev_key, &mut this_key);
                        }
                        if stats.keys_unique {
                            let mut h = std::hash::DefaultHasher::new();
                            for &k in &self.key_pos {
                                std::hash::Hash::hash(&typed.get(k), &mut h);
                            }
                            if !seen_keys.insert(std::hash::Hasher::finish(&h)) {
                                // A repeated key (or a hash collision): de-duplicate in SQL.
                                stats.keys_unique = false;
                                seen_keys = std::collections::HashSet::new();
                                if let Some(ws) = w_staged.take() {
                                    // Nothing sent yet: carry on in staging form.
                                    stats.direct = false;
                                    probe = None;
                                    w = ws;
                                }
                            }
                        }
                    }
                    if w.get_mut().len() >= self.batch_bytes {
                        w.flush().map_err(|e| permanent(e.to_string()))?;
                        let rows = std::mem::replace(w.get_mut(), new_buf());
                        let batch = Batch::new(rows, stats.direct, &mut w_staged, &mut probe)?;
                        let undecided = batch.staged_rows.is_some();
                        tx.blocking_send(batch).map_err(|_| cancelled())?;
                        if undecided {
                            if self.decision.recv().unwrap_or(false) {
                                // Direct from here on: the unique index watches for repeats.
                                seen_keys = std::collections::HashSet::new();
                            } else {
                                // The probe found an existing key: the rest goes to staging.
                                stats.direct = false;
                            }
                        }
                    }
                }
                Err(reason) => {
                    stats.rejected += 1;
                    if stats.samples.len() < SAMPLE_LINES {
                        stats.samples.push(format!("line {}: {reason}", rec.line));
                    }
                    let qw = match &mut q {
                        Some(qw) => qw,
                        None => {
                            let file = tempfile::tempfile()
                                .map_err(|e| permanent(format!("quarantine file: {e}")))?;
                            let mut qw = CsvWriter::new(file);
                            qw.write_fields(
                                ["_line", "_error"]
                                    .into_iter()
                                    .chain(self.header.iter().map(String::as_str))
                                    .map(Some),
                            )
                            .map_err(|e| permanent(format!("quarantine file: {e}")))?;
                            q.insert(qw)
                        }
                    };
                    let line = rec.line.to_string();
                    qw.write_fields(
                        [Some(line.as_bytes()), Some(reason.as_bytes())]
                            .into_iter()
                            .chain(fields.iter().copied()),
                    )
                    .map_err(|e| permanent(format!("quarantine file: {e}")))?;
                }
            }
        }
        let last = w.into_inner().map_err(|e| permanent(e.to_string()))?;
        if !last.is_empty() {
            let batch = Batch::new(last, stats.direct, &mut w_staged, &mut probe)?;
            tx.blocking_send(batch).map_err(|_| cancelled())?;
        }
        if let Some(qw) = q {
            let mut file = qw
                .into_inner()
                .map_err(|e| permanent(format!("quarantine file: {e}")))?;
            file.rewind()
                .map_err(|e| permanent(format!("quarantine file: {e}")))?;
            stats.quarantine = Some(file);
        }
        Ok(stats)
    }
}

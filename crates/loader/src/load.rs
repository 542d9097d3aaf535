//! Loading one object, told as the steps of one attempt: open the object; lock its version and
//! skip it if the ledger has it; read the header; prepare the table; `COPY` the rows (straight
//! into the table, or into staging and then one upsert); upload the rejected rows; record the
//! load in the ledger; commit. A retryable failure runs the attempt again after a backoff; a
//! value that does not fit a type guessed from the first rows runs it again with types from the
//! whole object.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use sluice_edge::Failure;
use sluice_transform::{Mapping, RowContext};
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;

use crate::checks::isolate_violations;
use crate::config::{Config, DatabaseSource};
use crate::connect::{connect_options, is_auth_failure};
use crate::copy::{Attempt, Copied, CopyOptions, copy_rows, direct_attempt};
use crate::error::{Error, Fail, LoadError};
use crate::event::ObjectRef;
use crate::job::{Job, blocking, job, rules};
use crate::ledger;
use crate::prepare::{INFER_ROWS, prepare};
use crate::rows::{Rows, read_header};
use crate::store::Store;
use crate::summary::{LoadPath, ObjectStatus, ObjectSummary, logged, object_span};
use crate::upsert::upsert;

/// Attempts per object when the failure is retryable.
const MAX_ATTEMPTS: usize = 4;

/// The loader: a pool and the configuration, shared across invocations.
#[derive(Debug)]
pub struct Loader {
    pool: PgPool,
    config: Arc<Config>,
    /// Where the database secret is read again after a rotation (the environment's when `None`).
    aws: Option<aws_config::SdkConfig>,
    ledger_ready: tokio::sync::OnceCell<()>,
}

impl Loader {
    pub fn new(pool: PgPool, config: Arc<Config>) -> Self {
        Self {
            pool,
            config,
            aws: None,
            ledger_ready: tokio::sync::OnceCell::new(),
        }
    }

    /// Reads the database secret with `aws` when its password has rotated.
    pub fn with_aws(self, aws: aws_config::SdkConfig) -> Self {
        Self {
            aws: Some(aws),
            ..self
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Loads one object with the mapping of its source (from its key), retrying retryable
    /// failures with exponential backoff and jitter.
    pub async fn load<S: Store>(
        &self,
        store: &S,
        object: &ObjectRef,
    ) -> Result<ObjectSummary, LoadError> {
        let work = async {
            let Some(source) = self.config.layout.source_of(&object.key) else {
                tracing::info!("skipping: key is not <raw prefix><source>/…(.csv|.csv.gz)");
                return Ok(ObjectSummary {
                    bucket: object.bucket.clone(),
                    key: object.key.clone(),
                    status: ObjectStatus::Ignored,
                    ..ObjectSummary::default()
                });
            };
            let Some(mapping) = self.config.mappings.get(source) else {
                return Err(LoadError {
                    bucket: object.bucket.clone(),
                    key: object.key.clone(),
                    attempts: 0,
                    kind: Failure::Permanent,
                    error: Error::NoMapping {
                        name: source.to_owned(),
                    },
                });
            };
            self.load_retrying(store, object, source, mapping).await
        };
        logged(work).instrument(object_span(object)).await
    }

    /// Loads one object with an explicit mapping (the CLI's `--table/--key`).
    pub async fn load_with<S: Store>(
        &self,
        store: &S,
        object: &ObjectRef,
        source: &str,
        mapping: &Mapping,
    ) -> Result<ObjectSummary, LoadError> {
        logged(self.load_retrying(store, object, source, mapping))
            .instrument(object_span(object))
            .await
    }

    async fn load_retrying<S: Store>(
        &self,
        store: &S,
        object: &ObjectRef,
        source: &str,
        mapping: &Mapping,
    ) -> Result<ObjectSummary, LoadError> {
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let whole = AtomicBool::new(false);
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let infer_rows = (!whole.load(Ordering::Relaxed)).then_some(INFER_ROWS);
            match self
                .attempt(store, object, source, mapping, infer_rows)
                .await
            {
                Err(Fail::Reinfer(e)) => {
                    tracing::info!(reason = %e,
                        "a value does not fit the guessed types; inferring from the whole object");
                    whole.store(true, Ordering::Relaxed);
                    self.attempt(store, object, source, mapping, None).await
                }
                Err(f) => Err(self.after_auth_failure(f).await),
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
        .when(|f: &Fail| matches!(f, Fail::Retryable(_)))
        .notify(|f: &Fail, after: Duration| {
            tracing::warn!(error = %f.error(), retry_in_ms = after.as_millis() as u64,
                "retryable failure; trying again");
        })
        .await;
        let attempts = attempts.load(Ordering::Relaxed);
        match result {
            Ok(s) => Ok(ObjectSummary {
                attempts,
                duration_ms: started.elapsed().as_millis() as u64,
                ..s
            }),
            Err(f) => Err(LoadError {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                attempts,
                kind: Failure::when(matches!(f, Fail::Retryable(_))),
                error: f.into_error(),
            }),
        }
    }

    /// A refused login with credentials from a secret: the password may have rotated since the
    /// pool read it. Read the secret again, give the pool the new options, and try again.
    async fn after_auth_failure(&self, f: Fail) -> Fail {
        let refused = matches!(f.error(), Error::Database(e) if is_auth_failure(e));
        if !refused || !matches!(self.config.database, DatabaseSource::SecretArn(_)) {
            return f;
        }
        match connect_options(&self.config, self.aws.as_ref()).await {
            Ok(opts) => {
                tracing::warn!("the database refused the login; read its secret again");
                self.pool.set_connect_options(opts);
                Fail::Retryable(f.into_error())
            }
            Err(e) => {
                tracing::error!(error = %e, "could not read the database secret again");
                f
            }
        }
    }

    async fn ensure_ledger(&self) -> Result<(), Fail> {
        self.ledger_ready
            .get_or_try_init(|| async {
                let mut conn = self.pool.acquire().await?;
                ledger::ensure(&mut conn, &self.config.ledger_schema).await
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
        let job = job(store, object, &meta, mapping, infer_rows);
        tracing::Span::current().record("version", &job.version);
        let mut summary = ObjectSummary {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version: job.version.clone(),
            source: source.to_owned(),
            table: job.target.clone(),
            ..ObjectSummary::default()
        };
        self.ensure_ledger().await?;
        let schema = &self.config.ledger_schema;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL work_mem = '64MB'")
            .execute(&mut *tx)
            .await?;
        if ledger::lock_and_check(&mut tx, schema, &job.entry()).await? {
            tracing::info!("skipping: this object version was loaded before");
            summary.status = ObjectStatus::Skipped;
            return Ok(summary);
        }
        let (reader, header) = blocking(move || read_header(raw)).await??;
        let ctx = RowContext {
            load_time: started,
            source_key: object.key.clone(),
            object_time: meta.last_modified.or(object.event_time),
            salt: self.config.redact_salt.expose().to_owned(),
        };
        match header {
            None => tracing::info!("empty object: nothing to load"),
            Some(header) => match prepare(&mut tx, &self.pool, &job, &header).await? {
                None => tracing::info!("header only and no table yet: nothing to create or load"),
                Some(prepared) => {
                    let rules = rules(prepared, header, ctx)?;
                    self.load_rows(&mut tx, &job, Rows::new(reader, rules), &mut summary)
                        .await?;
                }
            },
        }
        ledger::record(&mut tx, schema, &job.entry(), &summary, started).await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// `COPY`s the rows, upserts them if they were staged, uploads the rejected ones.
    async fn load_rows<S: Store>(
        &self,
        tx: &mut PgConnection,
        job: &Job<'_, S>,
        rows: Rows,
        summary: &mut ObjectSummary,
    ) -> Result<(), Fail> {
        let t0 = Instant::now();
        let plan = rows.rules().bound.plan().clone();
        let checked = (!rows.rules().checks.is_empty()).then(|| rows.rules().clone());
        let mut copied = self.copy(tx, job, rows).await?;
        if let Some(rules) = &checked {
            isolate_violations(tx, job, rules, &mut copied).await?;
        }
        summary.copy_ms = t0.elapsed().as_millis() as u64;
        summary.path = Some(copied.path);
        summary.direct_rows = copied.direct;
        summary.held_rows = copied.held.rows();
        summary.rows.rows_read = copied.rows_read;
        summary.rows.rejected = copied.quarantined.rejected;
        copied
            .quarantined
            .check_ratio(copied.rows_read, self.config.max_reject_ratio)?;
        match copied.path {
            LoadPath::Direct => summary.rows.inserted = copied.sent,
            LoadPath::Staged | LoadPath::Split => upsert(tx, &plan, &copied, summary).await?,
        }
        if let Some(file) = copied.quarantined.file {
            // Before the commit: a failed commit leaves a file the retry overwrites, never a
            // committed load without its rejected rows.
            let qkey = self.config.layout.quarantine(&job.object.key);
            let bucket = self.config.quarantine_bucket.as_ref();
            let bucket = bucket.unwrap_or(&job.object.bucket);
            job.store.put_file(bucket, &qkey, file).await?;
            summary.quarantine_key = Some(qkey);
        }
        Ok(())
    }

    /// The direct path first when the key is text: new keys go straight into the table. Where
    /// the table's greatest key is known in byte order, keys above it go straight in and the
    /// rest are staged (a split). Otherwise the producer turns to staging by itself (no second
    /// read) when a key repeats within the first batch, or when the probe of the first keys
    /// finds one that exists. A conflict after that (a unique violation) rolls back to the
    /// savepoint, and the object is read again for the staging path.
    async fn copy<S: Store>(
        &self,
        tx: &mut PgConnection,
        job: &Job<'_, S>,
        rows: Rows,
    ) -> Result<Copied, Fail> {
        let options = CopyOptions {
            batch_bytes: self.config.batch_bytes,
            format: self.config.copy_format,
            held_rows: self.config.held_rows,
        };
        // CHECK constraints are evaluated on the staged rows: no direct path past them.
        if !rows.rules().bound.plan().text_key() || !rows.rules().checks.is_empty() {
            return copy_rows(tx, rows, Attempt::Staged, options).await;
        }
        let rules = rows.rules().clone();
        let attempt = direct_attempt(tx, rules.bound.plan()).await?;
        sqlx::query("SAVEPOINT sluice_direct")
            .execute(&mut *tx)
            .await?;
        match copy_rows(tx, rows, attempt, options).await {
            Err(Fail::Stage(e)) => {
                tracing::debug!(reason = %e, "direct COPY not possible; staging");
                sqlx::query("ROLLBACK TO SAVEPOINT sluice_direct")
                    .execute(&mut *tx)
                    .await?;
                let raw = job.open_again().await?;
                let reader = blocking(move || read_header(raw)).await??.0;
                copy_rows(tx, Rows::new(reader, rules), Attempt::Staged, options).await
            }
            copied => copied,
        }
    }
}

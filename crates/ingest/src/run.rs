//! One run of one source: read the watermark, fetch `[watermark − lookback, now − delay)` in
//! chunks of at most `max_span` (a chunk the API cannot answer — 502/504, timeouts — is halved
//! down to `min_span`), stream every page through `flatten` into CSV objects, and only then
//! advance the watermark with a conditional write on the state object's ETag.
//!
//! A record that adds columns in the middle of a run closes the current object and opens the
//! next one (`…_p2.csv`) whose header has them: no row is ever wider or narrower than its
//! header, and the loader's `evolve` adds the columns.
//!
//! A source's columns keep one order across runs: a run starts from the columns published in
//! `state/<source>.columns.json`, and appends new ones there (a conditional write) before an
//! object's header holds them. Every raw object's header is therefore a prefix of the source's
//! columns, which is what Athena's CSV tables need: they map columns by position.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sluice_edge::layout::{Layout, utc_day};
use sluice_flatten::{Flattener, Manifest, RecordReader, Schema};
use tokio_util::sync::CancellationToken;

use crate::http::{Api, ApiCounters, FetchError};
use crate::paging::{Early, Pager, Request, records_format};
use crate::sink::{ObjectInfo, ObjectWriter, S3Out, SinkError};
use crate::source::{CursorType, CursorValue, Incremental, Source};

/// Why a run failed (the watermark did not move).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("{url} (page {page}): {message}")]
    Parse {
        url: String,
        page: u64,
        message: String,
    },
    #[error("state s3://{bucket}/{key}: {message}")]
    State {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("source {0:?}: a backfill needs a source with a window")]
    NoWindow(String),
    /// The API's paging went wrong: a cursor or next link it sent before, or more pages than
    /// one run takes.
    #[error("{url} (page {page}): {message}")]
    Paging {
        url: String,
        page: u64,
        message: String,
    },
}

impl RunError {
    /// Worth running again soon (the API or S3 misbehaved), as opposed to a configuration error.
    pub fn is_retryable(&self) -> bool {
        match self {
            RunError::Fetch(e) => e.is_retryable(),
            RunError::Sink(_)
            | RunError::State { .. }
            | RunError::Parse { .. }
            | RunError::Paging { .. } => true,
            RunError::NoWindow(_) => false,
        }
    }
}

/// What a run is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// The scheduled pull: from the watermark to `now − delay`, then advance the watermark.
    Scheduled { now: Timestamp },
    /// A given window; the watermark is neither read nor moved.
    Backfill { start: Timestamp, end: Timestamp },
}

/// The per-source state object (`state/<source>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Everything before this instant has been fetched and written.
    pub watermark: Timestamp,
    pub run_id: String,
    pub updated_at: Timestamp,
    pub records: u64,
    pub objects: Vec<String>,
    /// An incremental source's cursor: the largest value its records held (RFC 3339 or an
    /// integer); the next run asks from it, less the lookback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The window a run covered (`end` exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowSpan {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Everything written, watermark advanced.
    Advanced,
    /// Everything written, but another run advanced the watermark first: this one leaves it
    /// (its objects are duplicates the loader's upsert absorbs).
    Superseded,
    /// A backfill: everything written, watermark untouched.
    Backfilled,
    /// Nothing to fetch yet (the window is empty).
    Empty,
    /// No window configured: everything fetched.
    Full,
    /// Stopped before Lambda's deadline: the watermark is at the last chunk done, and the next
    /// run goes on from there.
    Partial,
}

/// The result JSON of one source's run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub source: String,
    pub run_id: String,
    pub status: RunStatus,
    pub window: Option<WindowSpan>,
    pub watermark_before: Option<Timestamp>,
    pub watermark_after: Option<Timestamp>,
    /// An incremental source's cursor before and after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_after: Option<String>,
    /// Records without a readable cursor value: written, but the cursor did not move for them.
    #[serde(skip_serializing_if = "is_zero")]
    pub cursor_missing: u64,
    pub pages: u64,
    pub records: u64,
    /// Records set aside because they cannot be flattened (beside their object, in
    /// `_<stem>.rejected.jsonl`).
    pub rejected: u64,
    pub objects: Vec<ObjectInfo>,
    /// Chunks halved because the API could not answer them.
    pub splits: u64,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub api: ApiCounters,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The largest incremental cursor value among a run's records.
#[derive(Debug)]
struct CursorTracker {
    path: String,
    kind: CursorType,
    max: Option<CursorValue>,
    missing: u64,
}

impl CursorTracker {
    fn see(&mut self, record: &[u8]) {
        match json_path_string(record, &self.path).and_then(|t| CursorValue::parse(self.kind, &t)) {
            Some(v) => self.max = self.max.max(Some(v)),
            None => self.missing += 1,
        }
    }
}

/// Where a run writes: the bucket and prefixes.
#[derive(Debug, Clone)]
pub struct Lake {
    pub out: S3Out,
    /// Objects go to `raw/<source>/dt=YYYY-MM-DD/…`; a source's watermark is
    /// `state/<source>.json`.
    pub layout: Layout,
}

/// `20240115T100000Z`: a key-safe, sortable instant.
fn compact(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

impl Lake {
    pub fn state_key(&self, source: &str) -> String {
        self.layout.state(source)
    }

    /// Reads the state object and its ETag (`None` when there is none yet).
    pub async fn read_state(&self, source: &str) -> Result<Option<(State, String)>, RunError> {
        self.read_json(&self.state_key(source), "a sluice state object")
            .await
    }

    /// Reads the source's published columns and their ETag (`None` before its first object).
    pub async fn read_columns(&self, source: &str) -> Result<Option<(Schema, String)>, RunError> {
        let got: Option<(Manifest, String)> = self
            .read_json(&self.layout.columns(source), "a sluice columns object")
            .await?;
        Ok(got.map(|(m, etag)| (Schema::from_manifest(&m), etag)))
    }

    /// Reads a JSON object of ours and its ETag (`None` when there is none).
    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Option<(T, String)>, RunError> {
        let err = |message: String| RunError::State {
            bucket: self.out.bucket.clone(),
            key: key.to_owned(),
            message,
        };
        let got = self
            .out
            .client
            .get_object()
            .bucket(&self.out.bucket)
            .key(key)
            .send()
            .await;
        let obj = match got {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
                // S3 answers 403 for a missing key when the role may not list the bucket. A
                // denial is never taken for "none yet": a listing of the key must say so.
                let denied = aws_sdk_s3::error::DisplayErrorContext(e).to_string();
                return match self.state_exists(key).await {
                    Ok(false) => Ok(None),
                    Ok(true) => Err(err(denied)),
                    Err(list) => Err(err(format!("{denied}; listing the key: {list}"))),
                };
            }
            Err(e) => return Err(err(aws_sdk_s3::error::DisplayErrorContext(e).to_string())),
        };
        let etag = obj.e_tag().unwrap_or_default().to_owned();
        let body = obj
            .body
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?
            .into_bytes();
        let value: T =
            serde_json::from_slice(&body).map_err(|e| err(format!("not {what}: {e}")))?;
        Ok(Some((value, etag)))
    }

    /// Whether the state object `key` exists, by a listing of exactly that key (what the
    /// role's `s3:ListBucket` on `state/*` allows).
    async fn state_exists(&self, key: &str) -> Result<bool, String> {
        let page = self
            .out
            .client
            .list_objects_v2()
            .bucket(&self.out.bucket)
            .prefix(key)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
        Ok(page.contents().iter().any(|o| o.key() == Some(key)))
    }

    /// Writes the state if it is still the version `etag` names (`None`: if there is none).
    /// Returns the new ETag, or `None` when another run got there first.
    pub async fn advance(
        &self,
        source: &str,
        state: &State,
        etag: Option<&str>,
    ) -> Result<Option<String>, RunError> {
        let body = serde_json::to_vec_pretty(state).expect("state serialises");
        self.put_if(&self.state_key(source), body, etag).await
    }

    /// Publishes the source's columns if they are still the version `etag` names (`None`: if
    /// there are none). Returns the new ETag, or `None` when another run published first.
    pub async fn publish_columns(
        &self,
        source: &str,
        columns: &Manifest,
        etag: Option<&str>,
    ) -> Result<Option<String>, RunError> {
        let body = serde_json::to_vec_pretty(columns).expect("columns serialise");
        self.put_if(&self.layout.columns(source), body, etag).await
    }

    /// A conditional PUT: `If-Match: etag`, or `If-None-Match: *` without one. `None` when the
    /// condition failed (412, or 409 for a concurrent conditional write).
    async fn put_if(
        &self,
        key: &str,
        body: Vec<u8>,
        etag: Option<&str>,
    ) -> Result<Option<String>, RunError> {
        let mut req = self
            .out
            .client
            .put_object()
            .bucket(&self.out.bucket)
            .key(key)
            .content_type("application/json")
            .body(body.into());
        req = match etag {
            Some(e) => req.if_match(e),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_owned())),
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) =>
            {
                Ok(None)
            }
            Err(e) => Err(RunError::State {
                bucket: self.out.bucket.clone(),
                key: key.to_owned(),
                message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
            }),
        }
    }
}

pub use crate::json_path::json_path_string;

/// A run in progress: the open object and the counters.
struct Writer<'a> {
    lake: &'a Lake,
    source: String,
    run_id: String,
    window: Option<WindowSpan>,
    gzip: bool,
    flattener: Flattener,
    open: Option<ObjectWriter>,
    /// The schema hash of the open object's header.
    open_hash: String,
    done: Vec<ObjectInfo>,
    records: u64,
    pages: u64,
    /// Records set aside so far, and those of the open object (JSON Lines, written beside it).
    rejected: u64,
    open_rejected: Vec<u8>,
    open_rejected_count: u64,
    max_bad_records: u64,
    started: Timestamp,
    /// How many of the flattener's columns are published, as of which version.
    published: Published,
    /// An incremental source's cursor, as the records go by.
    cursor: Option<CursorTracker>,
}

/// Conditional writes of the columns a run tries before it fails (each lost to another run).
const PUBLISH_ATTEMPTS: u32 = 8;

/// The source's published columns, as this run last read or wrote them.
#[derive(Debug, Default)]
struct Published {
    len: usize,
    etag: Option<String>,
}

impl Writer<'_> {
    fn key(&self, part: usize) -> String {
        let (span, day) = match self.window {
            Some(w) => (
                format!("{}_{}", compact(w.start), compact(w.end)),
                utc_day(w.start),
            ),
            None => (
                format!("full_{}", compact(self.started)),
                utc_day(self.started),
            ),
        };
        let suffix = if part > 1 {
            format!("_p{part}")
        } else {
            String::new()
        };
        let ext = if self.gzip { "csv.gz" } else { "csv" };
        let file = format!("{span}_{}{suffix}.{ext}", self.run_id);
        self.lake.layout.raw_object(&self.source, day, &file)
    }

    /// Publishes the columns the flattener has beyond the published ones. When another run
    /// published first, this one takes its columns and appends its own after them: `record`
    /// (the one that added them) is flattened again, so its row matches the new order.
    async fn publish_columns(&mut self, record: Option<&[u8]>) -> Result<(), RunError> {
        let mut conflicts = 0;
        while self.flattener.schema().len() > self.published.len {
            let manifest = self.flattener.manifest();
            let etag = self.published.etag.as_deref();
            if let Some(etag) = self
                .lake
                .publish_columns(&self.source, &manifest, etag)
                .await?
            {
                self.published = Published {
                    len: manifest.columns.len(),
                    etag: Some(etag),
                };
                continue;
            }
            conflicts += 1;
            if conflicts > PUBLISH_ATTEMPTS {
                return Err(RunError::State {
                    bucket: self.lake.out.bucket.clone(),
                    key: self.lake.layout.columns(&self.source),
                    message: format!(
                        "the columns changed under {PUBLISH_ATTEMPTS} writes in a row; giving up"
                    ),
                });
            }
            let (theirs, etag) = match self.lake.read_columns(&self.source).await? {
                Some((schema, etag)) => (schema, Some(etag)),
                None => (Schema::default(), None),
            };
            tracing::info!(source = %self.source, columns = theirs.len(), "another run published columns first; appending ours after them");
            self.flattener = Flattener::with_schema(self.flattener.options().clone(), &theirs);
            self.published = Published {
                len: theirs.len(),
                etag,
            };
            if let Some(r) = record {
                self.flattener.flatten(r).map_err(|f| RunError::State {
                    bucket: self.lake.out.bucket.clone(),
                    key: self.lake.layout.columns(&self.source),
                    message: format!("a record flattened once failed again: {}", f.message),
                })?;
            }
        }
        Ok(())
    }

    /// Opens the next object, its header the columns so far (published first).
    async fn open_object(&mut self, record: Option<&[u8]>) -> Result<(), RunError> {
        self.publish_columns(record).await?;
        let part = self.done.len() + 1;
        let key = self.key(part);
        let schema = self.flattener.schema();
        let hash = schema.hash();
        let mut meta = HashMap::from([
            ("source".to_owned(), self.source.clone()),
            ("run-id".to_owned(), self.run_id.clone()),
            ("columns".to_owned(), schema.len().to_string()),
            ("schema-hash".to_owned(), hash.clone()),
            ("part".to_owned(), part.to_string()),
        ]);
        if let Some(w) = self.window {
            meta.insert("window-start".into(), w.start.to_string());
            meta.insert("window-end".into(), w.end.to_string());
        }
        let w = ObjectWriter::new(key.clone(), self.gzip, schema.names(), meta).map_err(|e| {
            SinkError {
                op: "write",
                bucket: self.lake.out.bucket.clone(),
                key,
                message: e.to_string(),
            }
        })?;
        self.open = Some(w);
        self.open_hash = hash;
        Ok(())
    }

    /// Abandons the open object (an unfinished chunk's): its rows do not count as written.
    async fn abandon(&mut self) {
        if let Some(w) = self.open.take() {
            self.records -= w.rows();
            self.rejected -= self.open_rejected_count;
            self.open_rejected.clear();
            self.open_rejected_count = 0;
            w.abort(&self.lake.out).await;
        }
    }

    /// Sets a record aside that cannot be flattened, to be written beside the open object;
    /// past the source's `max_bad_records` the run fails with `reason` instead.
    async fn set_aside(&mut self, url: &str, reason: String, record: &[u8]) -> Result<(), String> {
        if self.rejected >= self.max_bad_records {
            return Err(format!(
                "{reason} (and more than max_bad_records = {} records could not be flattened)",
                self.max_bad_records
            ));
        }
        if self.open.is_none() {
            self.open_object(None).await.map_err(|e| e.to_string())?;
        }
        self.rejected += 1;
        self.open_rejected_count += 1;
        let line = serde_json::json!({
            "url": url, "page": self.pages, "reason": reason,
            "record": String::from_utf8_lossy(record),
        });
        serde_json::to_writer(&mut self.open_rejected, &line).expect("JSON to memory");
        self.open_rejected.push(b'\n');
        Ok(())
    }

    /// Closes the open object and writes its manifest beside it.
    async fn close_object(&mut self) -> Result<(), RunError> {
        let Some(w) = self.open.take() else {
            return Ok(());
        };
        let width = w.width();
        let mut manifest = serde_json::to_value(self.flattener.manifest()).expect("manifest");
        // The manifest describes this object's columns: a prefix of the schema so far.
        if let Some(cols) = manifest["columns"].as_array_mut() {
            cols.truncate(width);
        }
        manifest["schema_hash"] = std::mem::take(&mut self.open_hash).into();
        manifest["object"] = serde_json::json!({
            "key": w.key, "records": w.rows(), "columns": width,
            "source": self.source, "run_id": self.run_id, "window": self.window,
        });
        // Before the object: its notification starts a loader, which reads the JSON types
        // here (a column of JSON strings stays text).
        self.lake
            .out
            .put(
                &manifest_key(&w.key),
                serde_json::to_vec_pretty(&manifest).expect("manifest"),
                "application/json",
            )
            .await?;
        let info = w.finish(&self.lake.out).await?;
        if !self.open_rejected.is_empty() {
            let rkey = rejected_key(&info.key);
            let lines = std::mem::take(&mut self.open_rejected);
            self.lake
                .out
                .put(&rkey, lines, "application/x-ndjson")
                .await?;
        }
        self.open_rejected_count = 0;
        self.done.push(info);
        Ok(())
    }

    /// Flattens one page's records into the open object (opening the next one when the schema
    /// grows); returns how many records the page held, set-aside ones included.
    async fn page(&mut self, url: &str, body: &[u8], records_path: &str) -> Result<u64, RunError> {
        self.pages += 1;
        if self.pages > MAX_PAGES_PER_RUN {
            return Err(RunError::Paging {
                url: url.to_owned(),
                page: self.pages,
                message: format!("more than {MAX_PAGES_PER_RUN} pages in one run; stopping"),
            });
        }
        let page = self.pages;
        let perr = |message: String| RunError::Parse {
            url: url.to_owned(),
            page,
            message,
        };
        let mut reader = RecordReader::new(body, records_format(records_path));
        while let Some(flat) = reader
            .next_flattened(&mut self.flattener)
            .map_err(|e| perr(e.to_string()))?
        {
            let rec = flat.record;
            let (number, offset) = (rec.number, rec.offset);
            if let Err(f) = flat.result {
                let reason = format!(
                    "record {number} (byte {}, at {}): {}",
                    offset + f.offset as u64,
                    f.path,
                    f.message
                );
                let bytes = rec.bytes.to_vec();
                self.set_aside(url, reason, &bytes).await.map_err(perr)?;
                continue;
            }
            if let Some(c) = self.cursor.as_mut() {
                c.see(rec.bytes);
            }
            let width = self.flattener.schema().len();
            if self.open.as_ref().is_some_and(|w| w.width() < width) {
                self.close_object().await?;
            }
            if self.open.is_none() {
                self.open_object(Some(rec.bytes)).await?;
            }
            let w = self.open.as_mut().expect("open object");
            w.write_row(self.flattener.row())
                .map_err(|e| perr(e.to_string()))?;
            // Counted as written, so an abandoned object's rows can be taken off again.
            self.records += 1;
        }
        if let Some(w) = self.open.as_mut() {
            w.upload_ready(&self.lake.out).await?;
        }
        Ok(reader.records())
    }
}

pub use sluice_edge::layout::{manifest_key, rejected_key};

/// Splits `[start, end)` into chunks of at most `span`.
pub fn chunks(start: Timestamp, end: Timestamp, span: SignedDuration) -> VecDeque<WindowSpan> {
    let mut out = VecDeque::new();
    let mut a = start;
    while a < end {
        let b = a.checked_add(span).map_or(end, |b| b.min(end));
        out.push_back(WindowSpan { start: a, end: b });
        a = b;
    }
    out
}

/// Runs one source once, to the end of its window.
pub async fn run(
    api: &Api,
    lake: &Lake,
    kind: RunKind,
    run_id: &str,
) -> Result<RunSummary, RunError> {
    run_until(api, lake, kind, run_id, &CancellationToken::new()).await
}

/// Runs one source until its window is done or `stop` is cancelled (the handler cancels it a
/// margin before Lambda's deadline). A scheduled run closes its object and advances the
/// watermark after each chunk, so what was fetched stays fetched: a stop, a failure or a
/// timeout later costs only the chunk under way, whose object is abandoned.
pub async fn run_until(
    api: &Api,
    lake: &Lake,
    kind: RunKind,
    run_id: &str,
    stop: &CancellationToken,
) -> Result<RunSummary, RunError> {
    let t0 = Instant::now();
    let source = &api.source;
    let before = api.counters();
    let (window, mut progress) = plan_window(lake, source, kind, run_id).await?;
    let (flattener, published) = match lake.read_columns(&source.name).await? {
        Some((schema, etag)) => (
            Flattener::with_schema(source.flatten.clone(), &schema),
            Published {
                len: schema.len(),
                etag: Some(etag),
            },
        ),
        None => (Flattener::new(source.flatten.clone()), Published::default()),
    };
    let mut writer = Writer {
        lake,
        source: source.name.clone(),
        run_id: run_id.to_owned(),
        window,
        gzip: source.gzip,
        flattener,
        published,
        open: None,
        open_hash: String::new(),
        done: Vec::new(),
        records: 0,
        pages: 0,
        rejected: 0,
        open_rejected: Vec::new(),
        open_rejected_count: 0,
        max_bad_records: source.max_bad_records,
        started: kind_now(kind),
        cursor: source.incremental.as_ref().map(|i| CursorTracker {
            path: i.cursor_path.clone(),
            kind: i.kind,
            max: None,
            missing: 0,
        }),
    };
    let mut splits = 0;
    let result = fetch_window(api, &mut writer, &mut progress, stop, &mut splits).await;
    let result = match result {
        Ok(Ended::Done)
            if writer.open.is_none() && writer.done.is_empty() && source.write_empty =>
        {
            match writer.open_object(None).await {
                Ok(()) => writer.close_object().await.map(|()| Ended::Done),
                Err(e) => Err(e),
            }
        }
        Ok(Ended::Done) => writer.close_object().await.map(|()| Ended::Done),
        other => other,
    };
    // Whatever is still open belongs to an unfinished chunk: abandoned.
    writer.abandon().await;
    let ended = result?;
    let status = match (&progress, ended) {
        (_, Ended::Stopped) => RunStatus::Partial,
        (_, Ended::Superseded) => RunStatus::Superseded,
        (Some(p), Ended::Done) if p.watermark.is_none() => RunStatus::Empty,
        (Some(_), Ended::Done) => RunStatus::Advanced,
        (None, Ended::Done) => match kind {
            RunKind::Backfill { .. } => RunStatus::Backfilled,
            RunKind::Scheduled { .. } => RunStatus::Full,
        },
    };
    let after = api.counters();
    Ok(RunSummary {
        source: source.name.clone(),
        run_id: run_id.to_owned(),
        status,
        window,
        watermark_before: progress.as_ref().and_then(|p| p.before),
        watermark_after: progress.as_ref().and_then(|p| p.watermark.or(p.before)),
        cursor_before: progress
            .as_ref()
            .and_then(|p| p.kept)
            .map(|v| v.to_string()),
        cursor_after: progress
            .as_ref()
            .and_then(|p| p.advanced_cursor.or(p.kept))
            .map(|v| v.to_string()),
        cursor_missing: writer.cursor.as_ref().map_or(0, |c| c.missing),
        pages: writer.pages,
        records: writer.records,
        rejected: writer.rejected,
        objects: writer.done,
        splits,
        duration_ms: t0.elapsed().as_millis() as u64,
        api: ApiCounters {
            requests: after.requests - before.requests,
            retries: after.retries - before.retries,
            token_requests: after.token_requests - before.token_requests,
            api_wait_ms: after.api_wait_ms - before.api_wait_ms,
        },
    })
}

/// How the fetching ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Done,
    /// Stopped before the deadline; the watermark is at the last chunk done.
    Stopped,
    /// Another run advanced the watermark first.
    Superseded,
}

/// The window to fetch, and for a scheduled run with a window, its watermark's progress.
async fn plan_window<'a>(
    lake: &'a Lake,
    source: &Source,
    kind: RunKind,
    run_id: &str,
) -> Result<(Option<WindowSpan>, Option<Progress<'a>>), RunError> {
    Ok(match (kind, &source.window) {
        (RunKind::Backfill { start, end }, Some(_)) => (Some(WindowSpan { start, end }), None),
        (RunKind::Backfill { .. }, None) => return Err(RunError::NoWindow(source.name.clone())),
        (RunKind::Scheduled { now }, None) => match &source.incremental {
            None => (None, None),
            Some(inc) => {
                let prior = lake.read_state(&source.name).await?;
                let kept = kept_cursor(lake, source, inc, prior.as_ref().map(|(s, _)| s))?;
                let progress = Progress::new(lake, source, run_id, now, prior);
                (None, Some(Progress { kept, ..progress }))
            }
        },
        (RunKind::Scheduled { now }, Some(w)) => {
            let prior = lake.read_state(&source.name).await?;
            let end = now.saturating_sub(w.delay).expect("in range");
            let start = match &prior {
                Some((s, _)) => s.watermark.saturating_sub(w.lookback).expect("in range"),
                None => w
                    .initial_start
                    .unwrap_or_else(|| now.saturating_sub(w.initial_span).expect("in range")),
            };
            let progress = Progress::new(lake, source, run_id, now, prior);
            (Some(WindowSpan { start, end }), Some(progress))
        }
    })
}

/// Every chunk of the window (halving those the API cannot answer), each into its own objects,
/// or the whole source; a scheduled run advances its watermark after each chunk.
async fn fetch_window(
    api: &Api,
    writer: &mut Writer<'_>,
    progress: &mut Option<Progress<'_>>,
    stop: &CancellationToken,
    splits: &mut u64,
) -> Result<Ended, RunError> {
    let source = &api.source;
    let (Some(span), Some(w)) = (writer.window, &source.window) else {
        return fetch_from_cursor(api, writer, progress, stop).await;
    };
    let mut todo = chunks(span.start, span.end, w.max_span);
    while let Some(c) = todo.pop_front() {
        let fetched = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(Ended::Stopped),
            r = fetch_all(api, writer, Some(c), None) => r,
        };
        match fetched {
            Ok(()) => {
                // Each chunk its own object, closed as soon as the chunk is done: its
                // notification starts a loader while the next chunk is fetched.
                writer.close_object().await?;
                if let Some(p) = progress.as_mut()
                    && !p.advance_to(c.end, writer).await?
                {
                    tracing::warn!(source = %source.name, "another run advanced the watermark first; leaving it");
                    return Ok(Ended::Superseded);
                }
            }
            Err(RunError::Fetch(e))
                if e.is_overload() && c.end.duration_since(c.start) >= w.min_span * 2 =>
            {
                let half = c.end.duration_since(c.start) / 2;
                let mid = c.start.checked_add(half).expect("in range");
                tracing::warn!(source = %source.name, error = %e, start = %c.start, end = %c.end, "the API could not answer this window; splitting it in half");
                *splits += 1;
                // The open object holds this chunk only: abandoned with it.
                writer.abandon().await;
                todo.push_front(WindowSpan {
                    start: mid,
                    end: c.end,
                });
                todo.push_front(WindowSpan {
                    start: c.start,
                    end: mid,
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Ended::Done)
}

/// A source without a window: all of it, or, for an incremental source, what its cursor has
/// not seen (less the lookback); the cursor moves once the objects are written.
async fn fetch_from_cursor(
    api: &Api,
    writer: &mut Writer<'_>,
    progress: &mut Option<Progress<'_>>,
    stop: &CancellationToken,
) -> Result<Ended, RunError> {
    let from = match (&api.source.incremental, progress.as_ref()) {
        (Some(inc), Some(p)) => p
            .kept
            .map(|v| inc.query_value(v))
            .or_else(|| inc.initial_value.map(|v| inc.query_value(v)))
            .map(|v| (inc.param.clone(), v)),
        _ => None,
    };
    let fetched = tokio::select! {
        r = fetch_all(api, writer, None, from) => r,
        () = stop.cancelled() => return Ok(Ended::Stopped),
    };
    fetched?;
    if let Some(p) = progress.as_mut()
        && writer.records > 0
    {
        writer.close_object().await?;
        if !p.advance_to(p.now, writer).await? {
            tracing::warn!(source = %api.source.name, "another run moved the cursor first; leaving it");
            return Ok(Ended::Superseded);
        }
    }
    Ok(Ended::Done)
}

/// A scheduled run's watermark, advanced chunk by chunk with conditional writes.
struct Progress<'a> {
    lake: &'a Lake,
    source: String,
    run_id: String,
    now: Timestamp,
    /// The watermark the run started from.
    before: Option<Timestamp>,
    /// The state object's ETag as last read or written (`None`: there is none).
    etag: Option<String>,
    /// Where this run has advanced it to.
    watermark: Option<Timestamp>,
    /// An incremental source's cursor as the run found it, and as it moved it.
    kept: Option<CursorValue>,
    advanced_cursor: Option<CursorValue>,
}

/// An incremental source's cursor as the state keeps it.
fn kept_cursor(
    lake: &Lake,
    source: &Source,
    inc: &Incremental,
    prior: Option<&State>,
) -> Result<Option<CursorValue>, RunError> {
    let Some(text) = prior.and_then(|s| s.cursor.as_deref()) else {
        return Ok(None);
    };
    CursorValue::parse(inc.kind, text)
        .map(Some)
        .ok_or_else(|| RunError::State {
            bucket: lake.out.bucket.clone(),
            key: lake.state_key(&source.name),
            message: format!("the kept cursor {text:?} is not of type {:?}", inc.kind),
        })
}

impl<'a> Progress<'a> {
    /// A scheduled run's progress from the state it read (`prior`, with its ETag).
    fn new(
        lake: &'a Lake,
        source: &Source,
        run_id: &str,
        now: Timestamp,
        prior: Option<(State, String)>,
    ) -> Self {
        Progress {
            lake,
            source: source.name.clone(),
            run_id: run_id.to_owned(),
            now,
            before: prior.as_ref().map(|(s, _)| s.watermark),
            etag: prior.map(|(_, e)| e),
            watermark: None,
            kept: None,
            advanced_cursor: None,
        }
    }

    /// Moves the watermark to `to` if the state is still the one this run last saw; false
    /// when another run got there first.
    async fn advance_to(&mut self, to: Timestamp, writer: &Writer<'_>) -> Result<bool, RunError> {
        let cursor = self.kept.max(writer.cursor.as_ref().and_then(|c| c.max));
        let state = State {
            watermark: to,
            run_id: self.run_id.clone(),
            updated_at: self.now,
            records: writer.records,
            objects: writer.done.iter().map(|o| o.key.clone()).collect(),
            cursor: cursor.map(|v| v.to_string()),
        };
        match self
            .lake
            .advance(&self.source, &state, self.etag.as_deref())
            .await?
        {
            Some(etag) => {
                self.etag = Some(etag);
                self.watermark = Some(to);
                self.advanced_cursor = cursor;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

fn kind_now(kind: RunKind) -> Timestamp {
    match kind {
        RunKind::Scheduled { now } => now,
        RunKind::Backfill { end, .. } => end,
    }
}

/// Pages one run takes at most: a paging loop the API does not end stops here.
const MAX_PAGES_PER_RUN: u64 = 100_000;

/// Every page of one chunk (or of the whole source when it has no window).
async fn fetch_all(
    api: &Api,
    writer: &mut Writer<'_>,
    chunk: Option<WindowSpan>,
    from: Option<(String, String)>,
) -> Result<(), RunError> {
    let source = &api.source;
    let mut base: Vec<(String, String)> = source.params.clone();
    base.extend(from);
    if let Some(p) = &source.page_size_param {
        base.push((p.clone(), source.page_size.to_string()));
    }
    if let (Some(c), Some(w)) = (chunk, &source.window) {
        // The API's bounds are inclusive; ours end before `end`.
        let last = c
            .end
            .saturating_sub(SignedDuration::from_millis(1))
            .expect("in range");
        base.push((w.start_param.clone(), w.format.format(c.start)));
        base.push((w.end_param.clone(), w.format.format(last)));
    }
    let mut pager = Pager::new(api, base);
    let mut req = pager.first();
    let mut page = api.get(&req.url, &req.query).await?;
    let records = &source.records_path;
    loop {
        let paging = |req: &Request, page: u64, message: String| RunError::Paging {
            url: req.url.clone(),
            page,
            message,
        };
        let early = pager
            .early(&req, &page)
            .map_err(|m| paging(&req, writer.pages + 1, m))?;
        let next = match early {
            // Known before the page is flattened: the next request goes out while this page is
            // flattened and written (one page in flight, memory stays bounded).
            Early::Next(next) => {
                let (n, fetched) = tokio::join!(
                    writer.page(&req.url, &page.body, records),
                    api.get(&next.url, &next.query)
                );
                n?;
                Some((next, fetched?))
            }
            Early::End => {
                writer.page(&req.url, &page.body, records).await?;
                None
            }
            Early::Later => {
                let n = writer.page(&req.url, &page.body, records).await?;
                match pager
                    .after(&page, n)
                    .map_err(|m| paging(&req, writer.pages, m))?
                {
                    Some(next) => {
                        let fetched = api.get(&next.url, &next.query).await?;
                        Some((next, fetched))
                    }
                    None => None,
                }
            }
        };
        match next {
            Some((r, p)) => (req, page) = (r, p),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_window_without_overlap() {
        let a: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let b: Timestamp = "2024-01-20T12:00:00Z".parse().unwrap();
        let c = chunks(a, b, SignedDuration::from_hours(7 * 24));
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].start, a);
        assert_eq!(c[2].end, b);
        assert!(
            c.iter()
                .zip(c.iter().skip(1))
                .all(|(x, y)| x.end == y.start)
        );
        assert!(chunks(b, a, SignedDuration::from_hours(1)).is_empty());
    }
}

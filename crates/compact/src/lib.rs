//! Compaction: each closed `dt=` partition of a dataset rewritten into objects of a target size,
//! and the per-request objects removed — while queries run.
//!
//! The guarantees (README, "Compaction"):
//! - **No record is ever missing.** Merged objects are written whole, then a commit record names
//!   them and the objects they replace; only then, and only `grace` later, are those deleted.
//! - **No record is seen twice.** Between the commit and the deletion a record is in two objects;
//!   readers query the dataset's view, which keeps one row per `(dt, _event_id, _row)`
//!   ([`sluice_api::catalog::Table::view_sql`]). Merged objects hold each request once.
//! - **A crash anywhere is safe, and a run again finishes the work.** An uncommitted object is
//!   an orphan (deleted `grace` later; its records are still where they were); a committed
//!   generation's deletions are repeated until done. A run with nothing to do changes nothing.
//!
//! ```no_run
//! # async fn f(client: aws_sdk_s3::Client, d: &sluice_api::Dataset) -> Result<(), sluice_compact::CompactError> {
//! use sluice_compact::{Compactor, plan::Settings};
//! let c = Compactor::new(client, "my-lake", sluice_edge::layout::Layout::default(), Settings::default());
//! let today = sluice_edge::layout::utc_day(jiff::Timestamp::now());
//! for report in c.dataset(d, today, jiff::Timestamp::now()).await? {
//!     println!("{}: {} objects merged into {}", report.day, report.merged, report.outputs.len());
//! }
//! # Ok(()) }
//! ```

use std::collections::HashSet;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;
use sluice_api::Dataset;
use sluice_edge::layout::{LakeFile, Layout, parse_partition};
use tracing::{Instrument, info, info_span, warn};

pub mod config;
pub mod merge;
pub mod plan;

use futures_util::{StreamExt, TryStreamExt};
use plan::{Commit, Listed, Settings, file_of};

/// Request objects read at once while merging.
const GETS_IN_FLIGHT: usize = 16;

/// What failed, on which object.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("s3://{bucket}/{key}: {operation}: {message}")]
    S3 {
        bucket: String,
        key: String,
        operation: &'static str,
        message: String,
    },
    #[error("s3://{bucket}/{key}: not a compaction record: {message}")]
    Record {
        bucket: String,
        key: String,
        message: String,
    },
    #[error(transparent)]
    Merge(#[from] merge::MergeError),
}

/// What one partition's run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dataset: String,
    pub day: Date,
    /// Objects deleted because a generation committed at least `grace` ago replaced them.
    pub retired: usize,
    /// Uncommitted merged objects deleted.
    pub orphans: usize,
    /// Objects merged into this run's generation (0: nothing to do).
    pub merged: usize,
    /// The generation's objects.
    pub outputs: Vec<String>,
    pub rows: u64,
    /// Records left out because another object already held their request.
    pub duplicates: u64,
}

/// Compacts the lake in one bucket.
#[derive(Debug, Clone)]
pub struct Compactor {
    client: aws_sdk_s3::Client,
    bucket: String,
    layout: Layout,
    settings: Settings,
}

impl Compactor {
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: &str,
        layout: Layout,
        settings: Settings,
    ) -> Self {
        Compactor {
            client,
            bucket: bucket.to_owned(),
            layout,
            settings,
        }
    }

    /// Every partition of `d` before `before` (closed days; the API still writes today's), in
    /// day order.
    pub async fn dataset(
        &self,
        d: &Dataset,
        before: Date,
        now: Timestamp,
    ) -> Result<Vec<Report>, CompactError> {
        let mut reports = Vec::new();
        for day in self.days(&d.name).await? {
            if day < before {
                reports.push(self.partition(d, day, now).await?);
            }
        }
        Ok(reports)
    }

    /// The days with a `dt=` partition under `lake/<dataset>/`.
    pub async fn days(&self, dataset: &str) -> Result<Vec<Date>, CompactError> {
        let prefix = self.layout.lake_dataset(dataset);
        let mut days = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.s3_error(&prefix, "ListObjectsV2", &e))?;
            for p in page.common_prefixes() {
                let segment = p.prefix().unwrap_or_default().trim_end_matches('/');
                let segment = segment.rsplit('/').next().unwrap_or_default();
                days.extend(parse_partition(segment));
            }
        }
        days.sort();
        Ok(days)
    }

    /// One partition: retire, clean up, merge, commit.
    pub async fn partition(
        &self,
        d: &Dataset,
        day: Date,
        now: Timestamp,
    ) -> Result<Report, CompactError> {
        let span = info_span!("compact", dataset = %d.name, %day);
        async {
            let (listed, commits) = self.list(&d.name, day).await?;
            let p = plan::plan(&listed, &commits, now, &self.settings);
            self.delete(&p.retire).await?;
            self.delete(&p.stale_commits).await?;
            self.delete(&p.orphans).await?;
            let mut report = Report {
                dataset: d.name.clone(),
                day,
                retired: p.retire.len(),
                orphans: p.orphans.len(),
                merged: p.merge.len(),
                outputs: Vec::new(),
                rows: 0,
                duplicates: 0,
            };
            if !p.merge.is_empty() {
                let commit = self.merge(d, day, &p, now).await?;
                report.outputs = commit.outputs;
                report.rows = commit.rows;
                report.duplicates = commit.duplicates;
            }
            info!(
                retired = report.retired,
                orphans = report.orphans,
                merged = report.merged,
                outputs = report.outputs.len(),
                rows = report.rows,
                duplicates = report.duplicates,
                "partition compacted"
            );
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Writes the plan's merge as a new generation and commits it.
    async fn merge(
        &self,
        d: &Dataset,
        day: Date,
        p: &plan::Plan,
        now: Timestamp,
    ) -> Result<Commit, CompactError> {
        let generation = generation(now);
        // Requests already in objects that stay: their copies in what is merged are left out.
        let mut known = HashSet::new();
        if p.merge
            .iter()
            .any(|l| matches!(file_of(&l.key), LakeFile::Request { .. }))
        {
            for key in &p.kept {
                known.extend(merge::events(key, self.get(key).await?)?);
            }
        }
        let mut merger = merge::Merger::new(d, self.settings.target_bytes, known);
        // Committed objects first: a request they hold is given by them, not by a late copy.
        let mut order: Vec<&Listed> = p.merge.iter().collect();
        order.sort_by_key(|l| {
            (
                matches!(file_of(&l.key), LakeFile::Request { .. }),
                l.key.clone(),
            )
        });
        // Committed objects (up to half the target each) one at a time; request objects (a few
        // KB) read GETS_IN_FLIGHT at once, in order.
        let split = order.partition_point(|l| !matches!(file_of(&l.key), LakeFile::Request { .. }));
        for l in &order[..split] {
            merger.add(&l.key, self.get(&l.key).await?)?;
        }
        let mut requests = futures_util::stream::iter(&order[split..])
            .map(|l| async move { self.get(&l.key).await.map(|bytes| (l, bytes)) })
            .buffered(GETS_IN_FLIGHT);
        while let Some((l, bytes)) = requests.try_next().await? {
            merger.add(&l.key, bytes)?;
        }
        let (objects, counts) = merger.finish()?;
        let mut outputs = Vec::new();
        for (part, bytes) in objects.into_iter().enumerate() {
            let key = self
                .layout
                .compacted_object(&d.name, day, &generation, part);
            self.put(&key, bytes, "application/vnd.apache.parquet")
                .await?;
            outputs.push(key);
        }
        let commit = Commit {
            generation: generation.clone(),
            committed_at: Timestamp::now().max(now),
            outputs,
            inputs: order.iter().map(|l| l.key.clone()).collect(),
            rows: counts.rows,
            duplicates: counts.duplicates,
        };
        let record = self.layout.compaction_record(&d.name, day, &generation);
        let body = serde_json::to_vec_pretty(&commit).expect("a commit serialises");
        self.put(&record, body, "application/json").await?;
        Ok(commit)
    }

    /// The partition's objects, and its commit records read.
    async fn list(
        &self,
        dataset: &str,
        day: Date,
    ) -> Result<(Vec<Listed>, Vec<(String, Commit)>), CompactError> {
        let prefix = self.layout.lake_partition(dataset, day);
        let mut listed = Vec::new();
        let mut records = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.s3_error(&prefix, "ListObjectsV2", &e))?;
            for o in page.contents() {
                let key = o.key().unwrap_or_default().to_owned();
                let modified = o
                    .last_modified()
                    .and_then(|t| Timestamp::from_second(t.secs()).ok())
                    .unwrap_or(Timestamp::UNIX_EPOCH);
                if let LakeFile::CompactionRecord { .. } = file_of(&key) {
                    records.push(key.clone());
                }
                listed.push(Listed {
                    key,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified,
                });
            }
        }
        let mut commits = Vec::new();
        for key in records {
            let bytes = self.get(&key).await?;
            let commit: Commit =
                serde_json::from_slice(&bytes).map_err(|e| CompactError::Record {
                    bucket: self.bucket.clone(),
                    key: key.clone(),
                    message: e.to_string(),
                })?;
            commits.push((key, commit));
        }
        Ok((listed, commits))
    }

    async fn get(&self, key: &str) -> Result<Bytes, CompactError> {
        let o = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.s3_error(key, "GetObject", &e))?;
        let body = o
            .body
            .collect()
            .await
            .map_err(|e| self.s3_error(key, "GetObject", &e))?;
        Ok(body.into_bytes())
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), CompactError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.s3_error(key, "PutObject", &e))?;
        Ok(())
    }

    /// Deletes `keys`, a thousand a request; a key already gone is not an error.
    async fn delete(&self, keys: &[String]) -> Result<(), CompactError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.s3_error(&chunk[0], "DeleteObjects", &e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| self.s3_error(&chunk[0], "DeleteObjects", &e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.s3_error(&chunk[0], "DeleteObjects", &e))?;
            if let Some(e) = out.errors().first() {
                warn!(failed = out.errors().len(), "objects not deleted");
                return Err(CompactError::S3 {
                    bucket: self.bucket.clone(),
                    key: e.key().unwrap_or_default().to_owned(),
                    operation: "DeleteObjects",
                    message: format!(
                        "{}: {}",
                        e.code().unwrap_or_default(),
                        e.message().unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }

    fn s3_error(
        &self,
        key: &str,
        operation: &'static str,
        e: &dyn std::error::Error,
    ) -> CompactError {
        CompactError::S3 {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            operation,
            message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        }
    }
}

/// `20240502T010000Z-1a2b3c4d`: sorts by time, and two runs in one second do not collide.
fn generation(now: Timestamp) -> String {
    let stamp = now.strftime("%Y%m%dT%H%M%SZ");
    let random = uuid::Uuid::now_v7().as_simple().to_string();
    format!("{stamp}-{}", &random[random.len() - 8..])
}

/// How long before the Lambda's deadline no partition is started (one partition of 128 MB
/// objects takes seconds; a partition left is done by the next run).
pub const STOP_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// What a scheduled run did: every dataset's closed partitions (days before `now`'s UTC day),
/// until [`STOP_MARGIN`] before `deadline`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub partitions: Vec<Report>,
    /// Partitions left for the next run because the deadline came near.
    pub left: usize,
}

/// The scheduled function's handler.
pub async fn handle(
    c: &Compactor,
    datasets: &sluice_api::Datasets,
    now: Timestamp,
    deadline: std::time::Instant,
) -> Result<Summary, CompactError> {
    let today = sluice_edge::layout::utc_day(now);
    let mut summary = Summary {
        partitions: Vec::new(),
        left: 0,
    };
    for d in datasets.iter() {
        for day in c
            .days(&d.name)
            .await?
            .into_iter()
            .filter(|day| *day < today)
        {
            if std::time::Instant::now() + STOP_MARGIN >= deadline {
                summary.left += 1;
                continue;
            }
            summary.partitions.push(c.partition(d, day, now).await?);
        }
    }
    Ok(summary)
}

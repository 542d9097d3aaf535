//! `sluice load`: local CSV files (optionally .gz), `s3://bucket/key` objects and
//! `s3://bucket/prefix/` listings, each loaded in its own transaction by the loader's code.
//! A local file is known to the ledger by the SHA-256 of its content, so loading the same
//! content again is `skipped`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_loader::store::{ObjectMeta, StoreError};
use sluice_loader::{Config, Loader, LocalStore, ObjectRef, RowCounts, S3Store, Store};

use crate::plan_cmd::MappingArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Postgres URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[command(flatten)]
    mapping: MappingArgs,
    /// Where rejected rows go: a directory, or s3://bucket/prefix.
    #[arg(long, default_value = "quarantine")]
    quarantine: String,
    /// Local CSV files, s3://bucket/key, or s3://bucket/prefix/ (every .csv and .csv.gz below).
    #[arg(required = true)]
    sources: Vec<String>,
}

const LOCAL: &str = "local";

/// Local files and S3 objects behind one store; quarantine files go to a directory or a bucket.
#[derive(Debug)]
struct CliStore {
    local: LocalStore,
    s3: Option<S3Store>,
    quarantine_bucket: Option<String>,
}

impl CliStore {
    fn s3(&self) -> Result<&S3Store, StoreError> {
        self.s3.as_ref().ok_or_else(|| StoreError {
            message: "no S3 client".into(),
            retryable: false,
        })
    }
}

impl Store for CliStore {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(ObjectMeta, Box<dyn Read + Send>), StoreError> {
        if bucket == LOCAL {
            self.local.open(bucket, key, None).await
        } else {
            self.s3()?.open(bucket, key, version_id).await
        }
    }

    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        file: std::fs::File,
    ) -> Result<(), StoreError> {
        match &self.quarantine_bucket {
            Some(q) => self.s3()?.put_file(q, key, file).await,
            None => {
                self.local
                    .put_file(bucket, key.trim_start_matches('/'), file)
                    .await
            }
        }
    }
}

fn sha256_of(path: &str) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| path.to_owned())?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("sha256:{:x}", h.finalize()))
}

/// `s3://bucket/rest` → (bucket, rest).
fn s3_url(s: &str) -> Option<(String, String)> {
    let rest = s.strip_prefix("s3://")?;
    let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
    Some((b.to_owned(), k.to_owned()))
}

async fn expand(sources: &[String], s3: Option<&aws_sdk_s3::Client>) -> Result<Vec<ObjectRef>> {
    let mut out = Vec::new();
    for src in sources {
        match s3_url(src) {
            Some((bucket, key)) if key.is_empty() || key.ends_with('/') => {
                let client = s3.context("S3 client")?;
                let mut pages = client
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(&key)
                    .into_paginator()
                    .send();
                let before = out.len();
                while let Some(page) = pages.next().await {
                    let page = page.with_context(|| format!("listing {src}"))?;
                    for o in page.contents() {
                        let k = o.key().unwrap_or_default();
                        if k.ends_with(".csv") || k.ends_with(".csv.gz") {
                            out.push(ObjectRef {
                                bucket: bucket.clone(),
                                key: k.to_owned(),
                                ..ObjectRef::default()
                            });
                        }
                    }
                }
                if out.len() == before {
                    bail!("{src}: no .csv or .csv.gz objects");
                }
            }
            Some((bucket, key)) => out.push(ObjectRef {
                bucket,
                key,
                ..ObjectRef::default()
            }),
            None => out.push(ObjectRef {
                bucket: LOCAL.into(),
                key: src.clone(),
                version_id: Some(sha256_of(src)?),
                ..ObjectRef::default()
            }),
        }
    }
    Ok(out)
}

pub fn run(a: Args) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let ok = rt.block_on(load(a))?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

async fn load(a: Args) -> Result<bool> {
    let mapping = a.mapping.mapping()?;
    let quarantine = s3_url(&a.quarantine);
    let needs_s3 = quarantine.is_some() || a.sources.iter().any(|s| s.starts_with("s3://"));
    let s3 = if needs_s3 {
        Some(sluice_edge::s3_client(&aws_config::load_from_env().await))
    } else {
        None
    };
    let prefix = match &quarantine {
        Some((_, p)) if !p.is_empty() && !p.ends_with('/') => format!("{p}/"),
        Some((_, p)) => p.clone(),
        None => String::new(),
    };
    let config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(a.database_url.clone()),
        "QUARANTINE_PREFIX" => Some(prefix.clone()),
        _ => None,
    })?;
    let pool = sluice_loader::pool(&config).await?;
    let loader = Loader::new(pool, Arc::new(config));
    let store = CliStore {
        local: LocalStore {
            quarantine_dir: PathBuf::from(&a.quarantine),
        },
        s3: s3.clone().map(|client| S3Store { client }),
        quarantine_bucket: quarantine.map(|(b, _)| b),
    };
    let objects = expand(&a.sources, s3.as_ref()).await?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(objects.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let source = mapping.table.name.clone();
    let (mut rows, mut loaded, mut skipped) = (RowCounts::default(), 0, 0);
    let (mut results, mut errors) = (Vec::new(), Vec::new());
    for o in &objects {
        bar.set_message(o.key.clone());
        match loader.load_with(&store, o, &source, &mapping).await {
            Ok(s) => {
                if s.status == "skipped" {
                    skipped += 1;
                } else {
                    loaded += 1;
                    rows += s.rows;
                }
                results.push(serde_json::to_value(&s)?);
            }
            Err(e) => errors
                .push(json!({"source": o.key, "error": e.to_string(), "retryable": e.retryable})),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut summary = json!({
        "sources": objects.len(), "loaded": loaded, "skipped": skipped, "failed": errors.len(),
    });
    if let (Some(m), serde_json::Value::Object(r)) =
        (summary.as_object_mut(), serde_json::to_value(rows)?)
    {
        m.extend(r);
    }
    summary["objects"] = results.into();
    summary["errors"] = errors.clone().into();
    println!("{summary}");
    Ok(errors.is_empty())
}

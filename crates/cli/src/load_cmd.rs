//! `sluice load`: local CSV files (optionally .gz), `s3://bucket/key` objects and
//! `s3://bucket/prefix/` listings, each loaded in its own transaction by the loader's code.
//! A local file is known to the ledger by the SHA-256 of its content (its ETag in the
//! [`LocalStore`]), so loading the same content again is `skipped`.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sluice_edge::layout::is_csv;
use sluice_loader::{
    Config, LoadError, Loader, LocalStore, ObjectRef, ObjectStatus, ObjectSummary, Routed,
    RowCounts, S3Store, Store,
};
use sluice_transform::Mapping;

use crate::plan_cmd::MappingArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Postgres URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[command(flatten)]
    mapping: MappingArgs,
    /// Where rejected rows go: a directory (each file's rejected rows at its absolute path
    /// below it), or s3://bucket/prefix.
    #[arg(long, default_value = "quarantine")]
    quarantine: String,
    /// Local CSV files, s3://bucket/key, or s3://bucket/prefix/ (every .csv and .csv.gz below).
    #[arg(required = true)]
    sources: Vec<String>,
}

/// `s3://bucket/rest` → (bucket, rest).
fn s3_url(s: &str) -> Option<(String, String)> {
    let rest = s.strip_prefix("s3://")?;
    let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
    Some((b.to_owned(), k.to_owned()))
}

/// One object to load and where it lies.
#[derive(Debug)]
enum Object {
    Local(ObjectRef),
    S3(ObjectRef),
}

async fn expand(sources: &[String], s3: Option<&aws_sdk_s3::Client>) -> Result<Vec<Object>> {
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
                        if is_csv(k) {
                            out.push(Object::S3(ObjectRef {
                                bucket: bucket.clone(),
                                key: k.to_owned(),
                                ..ObjectRef::default()
                            }));
                        }
                    }
                }
                if out.len() == before {
                    bail!("{src}: no .csv or .csv.gz objects");
                }
            }
            Some((bucket, key)) => out.push(Object::S3(ObjectRef {
                bucket,
                key,
                ..ObjectRef::default()
            })),
            None => {
                // A missing file fails the command before anything loads.
                std::fs::File::open(src).with_context(|| src.clone())?;
                // By its absolute path, so that the quarantine file (under the quarantine
                // directory, at that path) can never land on a source.
                let path = std::fs::canonicalize(src).with_context(|| src.clone())?;
                out.push(Object::Local(LocalStore::object(path)?));
            }
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
        Some(S3Store {
            client: sluice_edge::s3_client(&aws_config::load_from_env().await),
        })
    } else {
        None
    };
    // A local quarantine directory is, like the sources, a path below `/`.
    let (quarantine_bucket, prefix) = match &quarantine {
        Some((bucket, p)) if !p.is_empty() && !p.ends_with('/') => {
            (bucket.clone(), format!("{p}/"))
        }
        Some((bucket, p)) => (bucket.clone(), p.clone()),
        None => {
            let dir = LocalStore::object(std::path::absolute(&a.quarantine)?)
                .with_context(|| a.quarantine.clone())?;
            (
                dir.bucket,
                format!("{}/", dir.key).trim_start_matches('/').to_owned(),
            )
        }
    };
    let mut config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(a.database_url.clone()),
        "QUARANTINE_PREFIX" => Some(prefix.clone()),
        _ => None,
    })?;
    config.quarantine_bucket = Some(quarantine_bucket);
    let pool = sluice_loader::pool(&config).await?;
    let loader = Loader::new(pool, Arc::new(config));
    let objects = expand(&a.sources, s3.as_ref().map(|s| &s.client)).await?;
    let run = Run {
        loader: &loader,
        source: mapping.table.name.clone(),
        mapping: &mapping,
        s3: s3.as_ref(),
    };
    let (summary, ok) = match (&quarantine, &s3) {
        (Some(_), Some(q)) => run.each(&objects, q).await?,
        _ => run.each(&objects, &LocalStore).await?,
    };
    println!("{summary}");
    Ok(ok)
}

/// Loads objects through the loader's own code.
struct Run<'a> {
    loader: &'a Loader,
    source: String,
    mapping: &'a Mapping,
    s3: Option<&'a S3Store>,
}

impl Run<'_> {
    /// Loads every object, quarantining to `q`: the JSON summary, and whether every object
    /// loaded or was skipped.
    async fn each<Q: Store>(&self, objects: &[Object], q: &Q) -> Result<(Value, bool)> {
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new(objects.len() as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let (mut rows, mut loaded, mut skipped) = (RowCounts::default(), 0, 0);
        let (mut results, mut errors) = (Vec::new(), Vec::new());
        for o in objects {
            let (Object::Local(r) | Object::S3(r)) = o;
            bar.set_message(r.key.clone());
            match self.one(o, q).await {
                Ok(s) => {
                    if s.status == ObjectStatus::Skipped {
                        skipped += 1;
                    } else {
                        loaded += 1;
                        rows += s.rows;
                    }
                    results.push(serde_json::to_value(&s)?);
                }
                Err(e) => errors.push(
                    json!({"source": r.key, "error": e.to_string(), "retryable": e.is_retryable()}),
                ),
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let mut summary = json!({
            "sources": objects.len(), "loaded": loaded, "skipped": skipped, "failed": errors.len(),
        });
        if let (Some(m), Value::Object(r)) = (summary.as_object_mut(), serde_json::to_value(rows)?)
        {
            m.extend(r);
        }
        summary["objects"] = results.into();
        let ok = errors.is_empty();
        summary["errors"] = errors.into();
        Ok((summary, ok))
    }

    /// One object: read from where it lies, quarantined to `q`.
    async fn one<Q: Store>(&self, o: &Object, q: &Q) -> Result<ObjectSummary, LoadError> {
        let (loader, source, mapping) = (self.loader, &self.source, self.mapping);
        match (o, self.s3) {
            (Object::Local(r), _) => {
                let store = Routed {
                    objects: &LocalStore,
                    quarantine: q,
                };
                loader.load_with(&store, r, source, mapping).await
            }
            (Object::S3(r), Some(s3)) => {
                let store = Routed {
                    objects: s3,
                    quarantine: q,
                };
                loader.load_with(&store, r, source, mapping).await
            }
            (Object::S3(_), None) => unreachable!("an s3:// source makes the S3 client"),
        }
    }
}

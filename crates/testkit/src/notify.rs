//! A stand-in for S3 event notifications, for the demo and the bench: the objects a producer
//! creates under a prefix are handed to a fixed number of handler instances as they land, the
//! way each object's notification starts a loader Lambda while the ingest goes on.
//!
//! S3 notifies; the local endpoints do not, so new objects are found by listing the prefix
//! every `poll` (a notification's latency, about). Each object is delivered once. An instance
//! handles one object at a time, as a Lambda instance handles one event; an object that finds
//! every instance busy waits its turn, as an event waits in Lambda's queue.
//!
//! ```no_run
//! # async fn demo(client: aws_sdk_s3::Client) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use sluice_testkit::notify::{Created, Listing, deliver_while};
//! let listing = Listing::new(client, "lake", "raw/", &[".csv", ".csv.gz"]);
//! let produce = async { anyhow::Ok("the ingest's summary") };
//! let instances = vec![(), ()]; // two loaders at once
//! let (summary, handled) = deliver_while(listing, produce, instances, Duration::from_millis(20),
//!     |_: std::sync::Arc<()>, c: Created| async move { anyhow::Ok(c.key) }).await?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{Mutex, mpsc};

/// An object that landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub key: String,
    pub size: u64,
    /// Its place in delivery order, from 0 (a notification's `sequencer`).
    pub sequence: u64,
}

/// A prefix, listed for objects not seen before.
#[derive(Debug)]
pub struct Listing {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    suffixes: Vec<String>,
    seen: HashSet<String>,
    delivered: u64,
}

impl Listing {
    /// Objects under `prefix` whose keys end in one of `suffixes`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, prefix: &str, suffixes: &[&str]) -> Self {
        Listing {
            client,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            suffixes: suffixes.iter().map(|s| (*s).to_owned()).collect(),
            seen: HashSet::new(),
            delivered: 0,
        }
    }

    /// Like [`Listing::new`], but the objects already there are not new: only those created
    /// from now on are delivered.
    pub async fn from_now(
        client: aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        suffixes: &[&str],
    ) -> Result<Self> {
        let mut listing = Listing::new(client, bucket, prefix, suffixes);
        listing.created().await?;
        listing.delivered = 0;
        Ok(listing)
    }

    /// The objects created since the last call, in key order.
    pub async fn created(&mut self) -> Result<Vec<Created>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send();
        let mut new = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.with_context(|| format!("listing s3://{}/{}", self.bucket, self.prefix))?;
            for o in page.contents() {
                let key = o.key().unwrap_or_default();
                if self.suffixes.iter().any(|s| key.ends_with(s.as_str()))
                    && self.seen.insert(key.to_owned())
                {
                    let size = o.size().unwrap_or(0).max(0) as u64;
                    new.push((key.to_owned(), size));
                }
            }
        }
        new.sort();
        let first = self.delivered;
        self.delivered += new.len() as u64;
        Ok(new
            .into_iter()
            .enumerate()
            .map(|(i, (key, size))| Created {
                key,
                size,
                sequence: first + i as u64,
            })
            .collect())
    }
}

/// Runs `producer` and, while it runs and once more when it is done, hands each object it
/// created to `handle` on a free instance (at most `instances.len()` at once, each on its own
/// task). Returns the producer's output and every handled object's result, in delivery order.
/// The producer failing, or any object's handler, fails the whole.
pub async fn deliver_while<T, I, R, P, F, Fut>(
    mut listing: Listing,
    producer: P,
    instances: Vec<I>,
    poll: Duration,
    handle: F,
) -> Result<(T, Vec<R>)>
where
    P: Future<Output = Result<T>>,
    I: Send + Sync + 'static,
    R: Send + 'static,
    F: Fn(Arc<I>, Created) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<R>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<Created>();
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = tokio::task::JoinSet::new();
    for instance in instances {
        let (rx, handle, instance) = (rx.clone(), handle.clone(), Arc::new(instance));
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = rx.lock().await.recv().await;
                let Some(c) = next else {
                    return anyhow::Ok(done);
                };
                let (sequence, key) = (c.sequence, c.key.clone());
                let r = handle(instance.clone(), c).await.context(key)?;
                done.push((sequence, r));
            }
        });
    }
    tokio::pin!(producer);
    let mut output = None;
    loop {
        if output.is_none() {
            tokio::select! {
                r = &mut producer => output = Some(r?),
                () = tokio::time::sleep(poll) => {}
            }
        }
        for c in listing.created().await? {
            // The workers only stop when this sender is dropped or one fails.
            if tx.send(c).is_err() {
                break;
            }
        }
        if output.is_some() {
            break;
        }
    }
    drop(tx);
    let mut handled = Vec::new();
    while let Some(w) = workers.join_next().await {
        handled.extend(w.context("a handler panicked")??);
    }
    handled.sort_by_key(|(sequence, _)| *sequence);
    let output = output.expect("the producer finished");
    Ok((output, handled.into_iter().map(|(_, r)| r).collect()))
}

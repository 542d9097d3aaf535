//! What one compaction run does in one partition, decided from its listing alone (pure, so every
//! crash point can be replayed in a test).
//!
//! A run commits a *generation*: it writes the merged objects, then a commit record naming them
//! (`outputs`) and what they replace (`inputs`). Nothing is deleted before its replacement is
//! committed, and nothing committed is deleted before `grace` has passed since its commit, so a
//! query that listed the partition before the commit can still read every object it listed.
//!
//! ```
//! use sluice_compact::plan::{plan, Listed, Settings};
//! let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
//! let listed = [
//!     Listed { key: "lake/d/dt=2024-05-01/e1.parquet".into(), size: 900, modified: t("2024-05-01T10:00:00Z") },
//!     Listed { key: "lake/d/dt=2024-05-01/e2.parquet".into(), size: 800, modified: t("2024-05-01T11:00:00Z") },
//! ];
//! let p = plan(&listed, &[], t("2024-05-02T01:00:00Z"), &Settings::default());
//! assert_eq!(p.merge.len(), 2);
//! assert!(p.retire.is_empty() && p.orphans.is_empty());
//! ```

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sluice_edge::layout::LakeFile;

/// How big merged objects get, and how long replaced ones stay readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A merged object is closed once it reaches this many bytes (128 MiB by default).
    pub target_bytes: u64,
    /// How long a replaced object stays after its replacement is committed: longer than any
    /// query runs (1 hour by default; Athena stops DML queries at 30 minutes unless raised).
    pub grace: SignedDuration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            target_bytes: 128 << 20,
            grace: SignedDuration::from_hours(1),
        }
    }
}

/// An object of the partition, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: Timestamp,
}

/// A generation's commit record (`_compaction-<generation>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub generation: String,
    pub committed_at: Timestamp,
    /// The objects it wrote, each whole.
    pub outputs: Vec<String>,
    /// The objects whose records the outputs hold; deleted once `grace` has passed.
    pub inputs: Vec<String>,
    /// Records written, and records left out as copies of a record already written.
    pub rows: u64,
    pub duplicates: u64,
}

/// What to do, in this order: delete `retire`, then `stale_commits` and `orphans`; then merge
/// `merge` (when not empty) into a new generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Inputs of generations committed at least `grace` ago, oldest generation first.
    pub retire: Vec<String>,
    /// Commit records none of whose outputs will be left.
    pub stale_commits: Vec<String>,
    /// Merged objects that no commit names (a run that stopped before committing), older than
    /// `grace`: their records are still in the objects they were to replace.
    pub orphans: Vec<String>,
    /// What this run rewrites: request objects no commit has taken, and committed objects
    /// smaller than half the target; empty when there is nothing worth merging.
    pub merge: Vec<Listed>,
    /// Committed objects that stay as they are: their records are not merged again.
    pub kept: Vec<String>,
}

/// What the object at `key` is, by its file name.
pub(crate) fn file_of(key: &str) -> LakeFile<'_> {
    LakeFile::of(key.rsplit_once('/').map_or(key, |(_, f)| f))
}

/// The plan for a partition holding `listed` objects and `commits` (key, record), at `now`.
pub fn plan(listed: &[Listed], commits: &[(String, Commit)], now: Timestamp, s: &Settings) -> Plan {
    let present: BTreeSet<&str> = listed.iter().map(|l| l.key.as_str()).collect();
    let mut commits: Vec<&(String, Commit)> = commits.iter().collect();
    commits.sort_by(|a, b| a.1.generation.cmp(&b.1.generation));

    let mut out = Plan::default();
    let mut retiring: BTreeSet<&str> = BTreeSet::new();
    // Inputs of a commit whose outputs are all there: taken (not merged again), and retired
    // once the commit is old enough.
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    let mut committed_outputs: BTreeSet<&str> = BTreeSet::new();
    for (_, c) in &commits {
        let whole = c
            .outputs
            .iter()
            .all(|o| present.contains(o.as_str()) && !retiring.contains(o.as_str()));
        committed_outputs.extend(c.outputs.iter().map(String::as_str));
        if !whole {
            continue;
        }
        let old_enough = c.committed_at + s.grace <= now;
        for i in &c.inputs {
            if present.contains(i.as_str()) {
                taken.insert(i);
                if old_enough && retiring.insert(i) {
                    out.retire.push(i.clone());
                }
            }
        }
    }
    for (key, c) in &commits {
        let left = c
            .outputs
            .iter()
            .any(|o| present.contains(o.as_str()) && !retiring.contains(o.as_str()));
        if !left {
            out.stale_commits.push(key.clone());
        }
    }
    let mut requests = 0;
    for l in listed {
        let key = l.key.as_str();
        if retiring.contains(key) || taken.contains(key) {
            continue;
        }
        match file_of(key) {
            LakeFile::Request { .. } => {
                requests += 1;
                out.merge.push(l.clone());
            }
            LakeFile::Compacted { .. } if committed_outputs.contains(key) => {
                if l.size < s.target_bytes / 2 {
                    out.merge.push(l.clone());
                } else {
                    out.kept.push(l.key.clone());
                }
            }
            LakeFile::Compacted { .. } => {
                if l.modified + s.grace <= now {
                    out.orphans.push(l.key.clone());
                }
            }
            LakeFile::CompactionRecord { .. } | LakeFile::Other => {}
        }
    }
    // One small committed object alone is already as merged as it gets.
    if requests == 0 && out.merge.len() < 2 {
        out.kept.extend(out.merge.drain(..).map(|l| l.key));
    }
    out
}

#[cfg(test)]
mod tests {
    //! The plan driven against a model of a partition: objects hold requests; merging keeps each
    //! request once; any run may stop after any of its changes. Whatever happens, every request
    //! is in some object at every step, and runs without crashes end with each request in
    //! exactly one object.

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    const DIR: &str = "lake/d/dt=2024-05-01/";

    #[derive(Debug, Clone, Default)]
    struct Partition {
        /// key → (requests it holds, size, written at)
        objects: BTreeMap<String, (BTreeSet<u32>, u64, Timestamp)>,
        commits: BTreeMap<String, Commit>,
        generations: u32,
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// The API stores request n (again, when it was stored before: a retry).
        Store(u32),
        /// A compaction run that stops after this many changes (`None`: it finishes).
        Run(Option<usize>),
        Wait,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u32..12).prop_map(Step::Store),
            2 => proptest::option::of(0usize..6).prop_map(Step::Run),
            1 => Just(Step::Wait),
        ]
    }

    fn settings() -> Settings {
        Settings {
            target_bytes: 400,
            grace: SignedDuration::from_hours(1),
        }
    }

    impl Partition {
        fn listing(&self) -> (Vec<Listed>, Vec<(String, Commit)>) {
            let listed = self
                .objects
                .iter()
                .map(|(k, (_, size, at))| Listed {
                    key: k.clone(),
                    size: *size,
                    modified: *at,
                })
                .collect();
            let commits = self
                .commits
                .iter()
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect();
            (listed, commits)
        }

        /// One run; returns false when it stopped early (`budget` changes used up).
        fn run(&mut self, now: Timestamp, mut budget: Option<usize>) -> bool {
            let change = |budget: &mut Option<usize>| match budget {
                Some(0) => false,
                Some(n) => {
                    *n -= 1;
                    true
                }
                None => true,
            };
            let (listed, commits) = self.listing();
            let p = plan(&listed, &commits, now, &settings());
            for key in p.retire.iter().chain(&p.stale_commits).chain(&p.orphans) {
                if !change(&mut budget) {
                    return false;
                }
                self.objects.remove(key);
                self.commits.remove(key);
            }
            if p.merge.is_empty() {
                return true;
            }
            // Requests in kept objects are left out; the rest, each once, 100 bytes each.
            let mut known: BTreeSet<u32> = BTreeSet::new();
            for k in &p.kept {
                known.extend(&self.objects[k].0);
            }
            let mut order: Vec<&Listed> = p.merge.iter().collect();
            order.sort_by_key(|l| (!l.key.contains("~c"), l.key.clone()));
            let mut outputs: Vec<BTreeSet<u32>> = vec![BTreeSet::new()];
            for l in &order {
                for r in &self.objects[&l.key].0 {
                    if known.insert(*r) {
                        if outputs.last().unwrap().len() as u64 * 100 >= settings().target_bytes {
                            outputs.push(BTreeSet::new());
                        }
                        outputs.last_mut().unwrap().insert(*r);
                    }
                }
            }
            self.generations += 1;
            let generation = format!("{:04}", self.generations);
            let mut keys = Vec::new();
            for (part, requests) in outputs.into_iter().filter(|o| !o.is_empty()).enumerate() {
                if !change(&mut budget) {
                    return false;
                }
                let key = format!("{DIR}~c{generation}-{part:04}.parquet");
                let size = requests.len() as u64 * 100;
                self.objects.insert(key.clone(), (requests, size, now));
                keys.push(key);
            }
            if !change(&mut budget) {
                return false;
            }
            let record = format!("{DIR}_compaction-{generation}.json");
            self.commits.insert(
                record.clone(),
                Commit {
                    generation,
                    committed_at: now,
                    outputs: keys,
                    inputs: order.iter().map(|l| l.key.clone()).collect(),
                    rows: 0,
                    duplicates: 0,
                },
            );
            self.objects.insert(record, (BTreeSet::new(), 1, now));
            true
        }

        fn holders(&self, request: u32) -> usize {
            self.objects
                .iter()
                .filter(|(k, (rs, ..))| k.ends_with(".parquet") && rs.contains(&request))
                .count()
        }
    }

    proptest! {
        #[test]
        fn no_request_is_ever_missing_and_runs_end_with_each_once(
            steps in proptest::collection::vec(step(), 1..40)
        ) {
            let mut p = Partition::default();
            let mut now: Timestamp = "2024-05-02T00:00:00Z".parse().unwrap();
            let mut stored = BTreeSet::new();
            for s in steps {
                match s {
                    Step::Store(n) => {
                        p.objects.insert(
                            format!("{DIR}r{n:03}.parquet"),
                            (BTreeSet::from([n]), 100, now),
                        );
                        stored.insert(n);
                    }
                    Step::Run(budget) => {
                        p.run(now, budget);
                    }
                    Step::Wait => now += SignedDuration::from_mins(40),
                }
                now += SignedDuration::from_mins(1);
                for r in &stored {
                    prop_assert!(p.holders(*r) >= 1, "request {r} missing: {p:?}");
                }
            }
            // Runs an hour apart, without crashes, until one has nothing to do.
            for _ in 0..8 {
                now += SignedDuration::from_hours(2);
                p.run(now, None);
            }
            for r in &stored {
                prop_assert_eq!(p.holders(*r), 1, "request {} not once: {:?}", r, p);
            }
            let (listed, commits) = p.listing();
            let last = plan(&listed, &commits, now + SignedDuration::from_hours(2), &settings());
            prop_assert!(last.retire.is_empty() && last.orphans.is_empty() && last.merge.is_empty(), "{last:?}");
            prop_assert!(!p.objects.keys().any(|k| k.contains("/r")), "request objects left: {p:?}");
        }
    }
}

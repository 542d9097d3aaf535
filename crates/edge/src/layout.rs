//! Where sluice keeps things in its bucket: every key is built and parsed here, and nowhere else.
//!
//! | prefix (variable, default) | written by | keys |
//! |---|---|---|
//! | `RAW_PREFIX` (`raw/`) | ingest | `raw/<source>/dt=YYYY-MM-DD/<name>.csv[.gz]`, beside it `_<stem>.manifest.json` and `_<stem>.rejected.jsonl` |
//! | `STATE_PREFIX` (`state/`) | ingest | `state/<source>.json` (the watermark), `state/<source>.columns.json` (the source's columns, in their order) |
//! | `QUARANTINE_PREFIX` (`quarantine/`) | loader | `quarantine/<raw key without .gz>` |
//! | `LAKE_PREFIX` (`lake/`) | API | `lake/<dataset>/dt=YYYY-MM-DD/<event id>.parquet` |
//! | `REJECTED_PREFIX` (`rejected/`) | API | `rejected/<dataset>/dt=YYYY-MM-DD/<event id>.jsonl` |
//! | `IDEMPOTENCY_PREFIX` (`idempotency/`) | API | `idempotency/<dataset>/<key>.json` |
//!
//! A prefix is normalised once, when the layout is read: `raw` becomes `raw/`, and an empty one
//! stays empty (the bucket's root). The partition segment `dt=YYYY-MM-DD` is a UTC day, the
//! Hive-style layout Athena's partition projection and DataFusion's listing tables both read.
//!
//! ```
//! use sluice_edge::layout::Layout;
//!
//! let layout = Layout::default();
//! let day = jiff::civil::date(2024, 5, 1);
//! let key = layout.lake_object("unicorns", day, "01HX");
//! assert_eq!(key, "lake/unicorns/dt=2024-05-01/01HX.parquet");
//! let parsed = layout.parse_lake(&key).unwrap();
//! assert_eq!((parsed.name, parsed.day, parsed.file), ("unicorns", Some(day), "01HX.parquet"));
//! assert_eq!(layout.source_of("raw/hotmart-sales/dt=2024-05-01/a.csv.gz"), Some("hotmart-sales"));
//! ```

use jiff::civil::Date;

/// The key suffixes of the ingest's CSV objects, the only raw objects the loader takes.
pub const CSV_SUFFIXES: [&str; 2] = [".csv", ".csv.gz"];

/// Whether `key` names a CSV object the loader takes (it ends in one of [`CSV_SUFFIXES`]).
///
/// ```
/// use sluice_edge::layout::is_csv;
/// assert!(is_csv("raw/hotmart-sales/dt=2024-05-01/a.csv.gz"));
/// assert!(!is_csv("raw/hotmart-sales/dt=2024-05-01/a.manifest.json"));
/// ```
pub fn is_csv(key: &str) -> bool {
    CSV_SUFFIXES.iter().any(|s| key.ends_with(s))
}

/// The end of a source's columns key (see [`Layout::columns`]).
pub const COLUMNS_SUFFIX: &str = ".columns.json";

/// The bucket's prefixes. [`Layout::default`] is what the template and the demo use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    raw: String,
    state: String,
    quarantine: String,
    lake: String,
    rejected: String,
    idempotency: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            raw: "raw/".into(),
            state: "state/".into(),
            quarantine: "quarantine/".into(),
            lake: "lake/".into(),
            rejected: "rejected/".into(),
            idempotency: "idempotency/".into(),
        }
    }
}

/// One of the layout's prefixes, by the variable that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Raw,
    State,
    Quarantine,
    Lake,
    Rejected,
    Idempotency,
}

impl Area {
    pub const ALL: [Area; 6] = [
        Area::Raw,
        Area::State,
        Area::Quarantine,
        Area::Lake,
        Area::Rejected,
        Area::Idempotency,
    ];

    /// The environment variable that moves it (`RAW_PREFIX`, …).
    pub fn variable(self) -> &'static str {
        match self {
            Area::Raw => "RAW_PREFIX",
            Area::State => "STATE_PREFIX",
            Area::Quarantine => "QUARANTINE_PREFIX",
            Area::Lake => "LAKE_PREFIX",
            Area::Rejected => "REJECTED_PREFIX",
            Area::Idempotency => "IDEMPOTENCY_PREFIX",
        }
    }
}

/// A key below a `<name>/dt=YYYY-MM-DD/` partition: a raw object of a source, or a lake or
/// rejected object of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitioned<'k> {
    /// The source or dataset.
    pub name: &'k str,
    /// The `dt=` partition; `None` for a key with no partition segment (objects written before
    /// partitions, or by hand).
    pub day: Option<Date>,
    /// The object's name within its partition.
    pub file: &'k str,
}

impl Layout {
    /// The layout with the prefixes of `areas` read from their variables (`RAW_PREFIX`, …);
    /// the others, and those not set, as in [`Layout::default`]. Each function reads only the
    /// areas it writes or reads.
    pub fn from_env(areas: &[Area]) -> Layout {
        Layout::from_lookup(areas, |v| std::env::var(v).ok())
    }

    /// [`Layout::from_env`] over a variable lookup (tests, configurations read from a map).
    ///
    /// ```
    /// # use sluice_edge::layout::{Area, Layout};
    /// let get = |v: &str| Some(format!("analytics/{}", v.to_lowercase()));
    /// let l = Layout::from_lookup(&[Area::Lake], get);
    /// assert_eq!(l.prefix(Area::Lake), "analytics/lake_prefix/");
    /// assert_eq!(l.prefix(Area::Raw), "raw/");
    /// ```
    pub fn from_lookup(areas: &[Area], get: impl Fn(&str) -> Option<String>) -> Layout {
        let mut layout = Layout::default();
        for &area in areas {
            if let Some(p) = get(area.variable()) {
                *layout.slot(area) = normalise(p);
            }
        }
        layout
    }

    /// This layout with one prefix moved (normalised as [`Layout::from_lookup`] does).
    pub fn with(mut self, area: Area, prefix: impl Into<String>) -> Layout {
        *self.slot(area) = normalise(prefix.into());
        self
    }

    /// The prefix of `area`: empty, or ending in `/`.
    pub fn prefix(&self, area: Area) -> &str {
        match area {
            Area::Raw => &self.raw,
            Area::State => &self.state,
            Area::Quarantine => &self.quarantine,
            Area::Lake => &self.lake,
            Area::Rejected => &self.rejected,
            Area::Idempotency => &self.idempotency,
        }
    }

    fn slot(&mut self, area: Area) -> &mut String {
        match area {
            Area::Raw => &mut self.raw,
            Area::State => &mut self.state,
            Area::Quarantine => &mut self.quarantine,
            Area::Lake => &mut self.lake,
            Area::Rejected => &mut self.rejected,
            Area::Idempotency => &mut self.idempotency,
        }
    }

    /// `raw/<source>/`: everything a source's runs wrote.
    pub fn raw_source(&self, source: &str) -> String {
        format!("{}{source}/", self.raw)
    }

    /// `raw/<source>/dt=YYYY-MM-DD/<file>`: one object of an ingest run.
    pub fn raw_object(&self, source: &str, day: Date, file: &str) -> String {
        format!("{}{source}/{}/{file}", self.raw, partition(day))
    }

    /// The source of a raw CSV object (`raw/<source>/…` ending in `.csv` or `.csv.gz`); `None`
    /// for any other key, the manifests and set-aside records beside the CSV included.
    pub fn source_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(self.raw.as_str())?;
        let (source, _) = rest.split_once('/')?;
        (!source.is_empty() && is_csv(key)).then_some(source)
    }

    /// A raw key's parts: its source, its `dt=` day and its name.
    pub fn parse_raw<'k>(&self, key: &'k str) -> Option<Partitioned<'k>> {
        parse_partitioned(key.strip_prefix(self.raw.as_str())?)
    }

    /// `state/<source>.json`: the source's watermark.
    pub fn state(&self, source: &str) -> String {
        format!("{}{source}.json", self.state)
    }

    /// `state/<source>.columns.json`: the source's columns in the order every raw object's
    /// header keeps (known ones first, new ones appended), which the raw tables read.
    pub fn columns(&self, source: &str) -> String {
        format!("{}{source}{COLUMNS_SUFFIX}", self.state)
    }

    /// The source whose columns `key` holds (`state/<source>.columns.json`).
    pub fn columns_source<'k>(&self, key: &'k str) -> Option<&'k str> {
        let source = key
            .strip_prefix(self.state.as_str())?
            .strip_suffix(COLUMNS_SUFFIX)?;
        (!source.is_empty() && !source.contains('/')).then_some(source)
    }

    /// `quarantine/<key without .gz>`: the rows of a raw object that could not load, as CSV.
    pub fn quarantine(&self, raw_key: &str) -> String {
        format!(
            "{}{}",
            self.quarantine,
            raw_key.strip_suffix(".gz").unwrap_or(raw_key)
        )
    }

    /// `lake/<dataset>/`: the dataset's table location.
    pub fn lake_dataset(&self, dataset: &str) -> String {
        format!("{}{dataset}/", self.lake)
    }

    /// `lake/<dataset>/dt=YYYY-MM-DD/<event id>.parquet`: one accepted request's records.
    pub fn lake_object(&self, dataset: &str, day: Date, event_id: &str) -> String {
        format!(
            "{}{dataset}/{}/{event_id}.parquet",
            self.lake,
            partition(day)
        )
    }

    /// `lake/<dataset>/dt=YYYY-MM-DD/`: one day's objects.
    pub fn lake_partition(&self, dataset: &str, day: Date) -> String {
        format!("{}{dataset}/{}/", self.lake, partition(day))
    }

    /// `lake/<dataset>/dt=…/~c<generation>-<part>.parquet`: an object compaction wrote (`~` is
    /// in no `Idempotency-Key`, so it names no request's object).
    pub fn compacted_object(
        &self,
        dataset: &str,
        day: Date,
        generation: &str,
        part: usize,
    ) -> String {
        format!(
            "{}{COMPACTED_MARK}{generation}-{part:04}.parquet",
            self.lake_partition(dataset, day)
        )
    }

    /// `lake/<dataset>/dt=…/_compaction-<generation>.json`: a compaction's commit record, named
    /// with `_` so that Athena skips it as a hidden file.
    pub fn compaction_record(&self, dataset: &str, day: Date, generation: &str) -> String {
        format!(
            "{}{COMPACTION_RECORD}{generation}.json",
            self.lake_partition(dataset, day)
        )
    }

    /// A lake key's parts: its dataset, its `dt=` day and its file name.
    pub fn parse_lake<'k>(&self, key: &'k str) -> Option<Partitioned<'k>> {
        parse_partitioned(key.strip_prefix(self.lake.as_str())?)
    }

    /// `rejected/<dataset>/dt=YYYY-MM-DD/<event id>.jsonl`: a partial batch's rejected items.
    pub fn rejected_object(&self, dataset: &str, day: Date, event_id: &str) -> String {
        format!(
            "{}{dataset}/{}/{event_id}.jsonl",
            self.rejected,
            partition(day)
        )
    }

    /// `idempotency/<dataset>/<key>.json`: the claim of an `Idempotency-Key`.
    pub fn claim(&self, dataset: &str, idempotency_key: &str) -> String {
        format!("{}{dataset}/{idempotency_key}.json", self.idempotency)
    }
}

const COMPACTED_MARK: &str = "~c";
const COMPACTION_RECORD: &str = "_compaction-";

/// What an object in a lake partition is, by its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LakeFile<'k> {
    /// One request's records: `<event id>.parquet`.
    Request { event_id: &'k str },
    /// Written by compaction: `~c<generation>-<part>.parquet`.
    Compacted { generation: &'k str },
    /// A compaction's commit record: `_compaction-<generation>.json`.
    CompactionRecord { generation: &'k str },
    /// Anything else (not read by the tables).
    Other,
}

impl<'k> LakeFile<'k> {
    /// Classifies a file name (the part after `dt=…/`).
    pub fn of(file: &'k str) -> LakeFile<'k> {
        if let Some(g) = file
            .strip_prefix(COMPACTION_RECORD)
            .and_then(|f| f.strip_suffix(".json"))
        {
            return LakeFile::CompactionRecord { generation: g };
        }
        let Some(stem) = file.strip_suffix(".parquet") else {
            return LakeFile::Other;
        };
        match stem.strip_prefix(COMPACTED_MARK) {
            Some(rest) => match rest.rsplit_once('-') {
                Some((generation, _part)) => LakeFile::Compacted { generation },
                None => LakeFile::Other,
            },
            None => LakeFile::Request { event_id: stem },
        }
    }
}

/// `dt=YYYY-MM-DD`: the partition segment of a day.
pub fn partition(day: Date) -> String {
    format!("dt={day}")
}

/// The day of a `dt=YYYY-MM-DD` segment.
pub fn parse_partition(segment: &str) -> Option<Date> {
    let text = segment.strip_prefix("dt=")?;
    // Only the day's own form (`2024-05-01`), so a key built from the day is the key parsed.
    let day: Date = text.parse().ok()?;
    (day.to_string() == text).then_some(day)
}

/// The day a timestamp falls on in UTC: its partition.
pub fn utc_day(t: jiff::Timestamp) -> Date {
    t.to_zoned(jiff::tz::TimeZone::UTC).date()
}

/// A raw object's name without `.csv` or `.csv.gz`.
pub fn object_stem(key: &str) -> &str {
    key.strip_suffix(".csv.gz")
        .or_else(|| key.strip_suffix(".csv"))
        .unwrap_or(key)
}

/// `_<stem>.manifest.json`: the schema of a raw object, written beside it. The leading `_`
/// hides it from Athena, which reads every other object under a table's location as rows.
pub fn manifest_key(key: &str) -> String {
    sidecar(key, "manifest.json")
}

/// `_<stem>.rejected.jsonl`: the records of a raw object that could not be flattened, one JSON
/// line each (outside the loader's CSV suffixes, hidden from Athena like the manifest).
pub fn rejected_key(key: &str) -> String {
    sidecar(key, "rejected.jsonl")
}

/// `<dir>/_<stem>.<what>`.
fn sidecar(key: &str, what: &str) -> String {
    let stem = object_stem(key);
    let (dir, file) = stem.rsplit_once('/').map_or(("", stem), |(d, f)| (d, f));
    match dir {
        "" => format!("_{file}.{what}"),
        _ => format!("{dir}/_{file}.{what}"),
    }
}

/// `raw` → `raw/`; empty stays empty (the whole bucket).
fn normalise(p: String) -> String {
    if p.is_empty() || p.ends_with('/') {
        p
    } else {
        p + "/"
    }
}

/// `<name>/[dt=YYYY-MM-DD/]<file>`, with no further `/` in the file.
fn parse_partitioned(rest: &str) -> Option<Partitioned<'_>> {
    let (name, rest) = rest.split_once('/')?;
    let (day, file) = match rest.split_once('/') {
        Some((segment, file)) => (Some(parse_partition(segment)?), file),
        None => (None, rest),
    };
    let ok = !name.is_empty() && !file.is_empty() && !file.contains('/');
    ok.then_some(Partitioned { name, day, file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lake_files_are_told_apart_by_name() {
        let l = Layout::default();
        let day = jiff::civil::date(2024, 1, 15);
        let parts = |key: String| {
            let p = l
                .parse_lake(&key)
                .map(|p| (p.name.to_owned(), p.day, p.file.to_owned()));
            (key, p)
        };
        let (key, p) = parts(l.compacted_object("d", day, "20240116T010000Z-ab12", 3));
        assert_eq!(
            key,
            "lake/d/dt=2024-01-15/~c20240116T010000Z-ab12-0003.parquet"
        );
        let p = p.unwrap();
        assert_eq!((p.0.as_str(), p.1), ("d", Some(day)));
        assert_eq!(
            LakeFile::of(&p.2),
            LakeFile::Compacted {
                generation: "20240116T010000Z-ab12"
            }
        );
        let (key, p) = parts(l.compaction_record("d", day, "g1"));
        assert_eq!(key, "lake/d/dt=2024-01-15/_compaction-g1.json");
        assert_eq!(
            LakeFile::of(&p.unwrap().2),
            LakeFile::CompactionRecord { generation: "g1" }
        );
        let key = l.lake_object("d", day, "0190-abc");
        assert!(key.starts_with(&l.lake_partition("d", day)));
        assert_eq!(
            LakeFile::of(l.parse_lake(&key).unwrap().file),
            LakeFile::Request {
                event_id: "0190-abc"
            }
        );
        assert_eq!(LakeFile::of("notes.txt"), LakeFile::Other);
    }

    #[test]
    fn every_key_parses_back_to_what_built_it() {
        let day = jiff::civil::date(2024, 1, 15);
        for layout in [
            Layout::default(),
            Layout::default()
                .with(Area::Raw, "x/raw")
                .with(Area::Lake, ""),
        ] {
            let raw = layout.raw_object("s", day, "a_b_r.csv.gz");
            assert_eq!(layout.source_of(&raw), Some("s"));
            let p = layout.parse_raw(&raw).unwrap();
            assert_eq!((p.name, p.day, p.file), ("s", Some(day), "a_b_r.csv.gz"));
            let lake = layout.lake_object("unicorns", day, "e1");
            let p = layout.parse_lake(&lake).unwrap();
            assert_eq!(
                (p.name, p.day, p.file),
                ("unicorns", Some(day), "e1.parquet")
            );
            assert!(lake.starts_with(&layout.lake_dataset("unicorns")));
        }
    }

    #[test]
    fn prefixes_are_normalised_once() {
        let l = Layout::from_lookup(&Area::ALL, |v| match v {
            "RAW_PREFIX" => Some("in".into()),
            "STATE_PREFIX" => Some(String::new()),
            _ => None,
        });
        assert_eq!(l.raw_source("s"), "in/s/");
        assert_eq!(l.state("s"), "s.json");
        assert_eq!(l.claim("d", "k"), "idempotency/d/k.json");
        assert_eq!(l.quarantine("raw/s/a.csv.gz"), "quarantine/raw/s/a.csv");
    }

    #[test]
    fn keys_that_are_not_the_layouts_are_refused() {
        let l = Layout::default();
        for key in [
            "raw/a.csv",
            "state/x.csv",
            "raw/x/a.json",
            "raw//dt=2024-01-01/a.csv",
        ] {
            assert_eq!(l.source_of(key), None, "{key}");
        }
        assert_eq!(l.source_of("raw/x/a.csv.gz"), Some("x"));
        for key in [
            "lake/u/dt=2024-13-01/a.parquet",
            "lake/u/dt=2024-1-01/a.parquet",
            "lake/u/day=2024-01-01/a.parquet",
            "lake/u/dt=2024-01-01/deeper/a.parquet",
            "lake/u/",
            "rejected/u/dt=2024-01-01/a.jsonl",
        ] {
            assert_eq!(l.parse_lake(key), None, "{key}");
        }
        let flat = l.parse_lake("lake/u/a.parquet").unwrap();
        assert_eq!((flat.name, flat.day, flat.file), ("u", None, "a.parquet"));
    }

    #[test]
    fn sidecars_sit_beside_their_object_outside_the_csv_suffixes() {
        assert_eq!(
            manifest_key("raw/s/dt=2024-01-01/a_b_r.csv"),
            "raw/s/dt=2024-01-01/_a_b_r.manifest.json"
        );
        assert_eq!(
            manifest_key("raw/s/x_p2.csv.gz"),
            "raw/s/_x_p2.manifest.json"
        );
        assert_eq!(rejected_key("raw/s/x.csv.gz"), "raw/s/_x.rejected.jsonl");
        assert_eq!(manifest_key("x.csv"), "_x.manifest.json");
        let l = Layout::default();
        assert_eq!(l.source_of(&manifest_key("raw/s/x.csv")), None);
        assert_eq!(l.source_of(&rejected_key("raw/s/x.csv")), None);
    }

    #[test]
    fn a_sources_columns_are_state() {
        let l = Layout::default().with(Area::State, "st");
        assert_eq!(l.columns("hotmart"), "st/hotmart.columns.json");
        assert_eq!(l.columns_source("st/hotmart.columns.json"), Some("hotmart"));
        for key in [
            "st/hotmart.json",
            "st/.columns.json",
            "st/a/b.columns.json",
            "raw/a.columns.json",
        ] {
            assert_eq!(l.columns_source(key), None, "{key}");
        }
    }

    #[test]
    fn a_day_is_its_utc_day() {
        let t: jiff::Timestamp = "2024-01-15T23:30:00-03:00".parse().unwrap();
        assert_eq!(partition(utc_day(t)), "dt=2024-01-16");
    }
}

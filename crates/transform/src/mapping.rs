//! The mapping file (TOML): target table, key, guard, and per-column rename / type / timestamp
//! format / default / redact / drop, plus derived columns.
//!
//! ```
//! use sluice_transform::{Mapping, RowContext};
//!
//! let mapping = Mapping::from_toml(r#"
//!     [table]
//!     schema = "public"
//!     name = "sales"
//!     key = ["transaction"]
//!     guard = "approved_at"
//!
//!     [columns.purchase_approved_date]
//!     rename = "approved_at"
//!     type = "timestamptz"
//!     format = "epoch_millis"
//!
//!     [columns.buyer_email]
//!     redact = "hash"
//!
//!     [columns.internal_note]
//!     drop = true
//!
//!     [[derived]]
//!     name = "source_object"
//!     kind = "source_key"
//! "#).unwrap();
//! let header = ["transaction", "purchase_approved_date", "buyer_email", "internal_note"];
//! let bound = mapping.bind(&header, &[]).unwrap();
//! assert_eq!(bound.names(), ["transaction", "approved_at", "buyer_email", "source_object"]);
//!
//! let ctx = RowContext { source_key: "raw/hotmart/x.csv".into(), salt: "pepper".into(), ..RowContext::now() };
//! let mut out = sluice_transform::TypedRow::default();
//! let row = [Some(&b"HP1"[..]), Some(b"1700002467173"), Some(b"ana@example.com"), Some(b"secret")];
//! bound.apply(&row, &ctx, &mut out).unwrap();
//! assert_eq!(out.get(1), Some("2023-11-14T22:54:27.173Z"));
//! assert_eq!(out.get(2).unwrap().len(), 64);               // salted SHA-256, hex
//! assert_eq!(out.get(3), Some("raw/hotmart/x.csv"));
//! ```

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::limits::ColumnLimit;
use crate::plan::{PlanColumn, PlanError, TableRef, UpsertPlan};
use crate::types::{ColumnType, Conversion, TimeFormat, push_display};

/// What to do with columns that appear in new files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaPolicy {
    /// Add them to the table (`ALTER TABLE … ADD COLUMN`).
    #[default]
    Evolve,
    /// Send rows that have values in them to quarantine.
    Freeze,
}

/// How PII is redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Redact {
    /// Hex SHA-256 of salt + value: joinable, not reversible (with a secret salt: unsalted, an
    /// e-mail's hash is a dictionary look-up).
    Hash,
    /// Always NULL.
    Null,
}

impl Redact {
    /// `value` redacted: `None` or the salted hash.
    ///
    /// ```
    /// use sluice_transform::Redact;
    ///
    /// assert_eq!(Redact::Null.apply("pepper", b"ana@example.com"), None);
    /// let h = Redact::Hash.apply("pepper", b"ana@example.com").unwrap();
    /// assert_eq!(h.len(), 64);
    /// assert_ne!(Some(h), Redact::Hash.apply("salt", b"ana@example.com"));
    /// ```
    pub fn apply(self, salt: &str, value: &[u8]) -> Option<String> {
        match self {
            Self::Null => None,
            Self::Hash => {
                let mut h = Sha256::new();
                h.update(salt.as_bytes());
                h.update(value);
                Some(hex(&h.finalize()))
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[serde(default = "public")]
    schema: String,
    name: String,
    key: Vec<String>,
    guard: Option<String>,
    #[serde(default)]
    schema_policy: SchemaPolicy,
    fillfactor: Option<u8>,
}

fn public() -> String {
    "public".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    rename: Option<String>,
    #[serde(rename = "type")]
    ty: Option<String>,
    format: Option<String>,
    timezone: Option<String>,
    default: Option<String>,
    redact: Option<Redact>,
    #[serde(default)]
    drop: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDerived {
    name: String,
    kind: String,
    value: Option<String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    separator: String,
    #[serde(rename = "type")]
    ty: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    table: RawTable,
    #[serde(default)]
    columns: BTreeMap<String, RawColumn>,
    #[serde(default)]
    derived: Vec<RawDerived>,
}

/// A mapping file error, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("mapping TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("mapping: {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("mapping: {0}")]
    Plan(#[from] PlanError),
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> MappingError {
    MappingError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// One per-column rule, validated.
#[derive(Debug, Clone)]
pub struct ColumnRule {
    pub rename: Option<String>,
    pub conversion: Option<Conversion>,
    pub default: Option<String>,
    pub redact: Option<Redact>,
    pub drop: bool,
}

/// Where a derived column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerivedKind {
    Constant(String),
    /// Non-NULL values of these source columns joined by the separator (NULL if all are NULL).
    Concat {
        columns: Vec<String>,
        separator: String,
    },
    LoadTime,
    SourceKey,
    /// When the source object was written (S3 `LastModified`, else the event time): an
    /// ordering guard for files that carry no updated-at of their own.
    ObjectTime,
    /// A hash of the row's compared values ([`row_hash`]), as a `uuid`: a row the table holds
    /// with the same hash is unchanged without comparing each column (a lookback re-fetch).
    RowHash,
}

#[derive(Debug, Clone)]
pub struct DerivedRule {
    pub name: String,
    pub kind: DerivedKind,
    pub ty: ColumnType,
}

/// A validated mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub table: TableRef,
    pub key: Vec<String>,
    pub guard: Option<String>,
    pub schema_policy: SchemaPolicy,
    /// `table.fillfactor`: how full (percent) inserts leave each page of a table the loader
    /// creates; the room left lets an update keep the row on its page (a HOT update).
    pub fillfactor: Option<u8>,
    pub columns: BTreeMap<String, ColumnRule>,
    pub derived: Vec<DerivedRule>,
}

impl Mapping {
    /// Parses and validates a mapping file.
    pub fn from_toml(text: &str) -> Result<Self, MappingError> {
        let raw: RawMapping = toml::from_str(text)?;
        let mut columns = BTreeMap::new();
        for (source, c) in raw.columns {
            let key = format!("columns.{source}");
            let ty =
                c.ty.as_deref()
                    .map(str::parse::<ColumnType>)
                    .transpose()
                    .map_err(|e| invalid(format!("{key}.type"), e))?;
            let format = c
                .format
                .as_deref()
                .map(str::parse::<TimeFormat>)
                .transpose()
                .map_err(|e| invalid(format!("{key}.format"), e))?;
            if format.is_some() && !ty.is_some_and(ColumnType::is_temporal) {
                return Err(invalid(
                    format!("{key}.format"),
                    "a timestamp format needs type = \"timestamptz\", \"timestamp\" or \"date\"",
                ));
            }
            let tz = c
                .timezone
                .as_deref()
                .map(jiff::tz::TimeZone::get)
                .transpose()
                .map_err(|e| invalid(format!("{key}.timezone"), e.to_string()))?;
            if c.redact == Some(Redact::Hash) && ty.is_some_and(|t| t != ColumnType::Text) {
                return Err(invalid(
                    format!("{key}.redact"),
                    "redact = \"hash\" needs type = \"text\"",
                ));
            }
            let conversion = ty.map(|ty| Conversion { ty, format, tz });
            if let (Some(d), Some(conv)) = (&c.default, &conversion) {
                conv.convert(d)
                    .map_err(|e| invalid(format!("{key}.default"), format!("{d:?} {e}")))?;
            }
            columns.insert(
                source,
                ColumnRule {
                    rename: c.rename,
                    conversion,
                    default: c.default,
                    redact: c.redact,
                    drop: c.drop,
                },
            );
        }
        let mut derived = Vec::new();
        for (i, d) in raw.derived.into_iter().enumerate() {
            let key = format!("derived[{i}] ({})", d.name);
            let kind = match d.kind.as_str() {
                "constant" => DerivedKind::Constant(
                    d.value
                        .ok_or_else(|| invalid(&key, "kind = \"constant\" needs value"))?,
                ),
                "concat" if d.columns.is_empty() => {
                    return Err(invalid(&key, "kind = \"concat\" needs columns = [...]"));
                }
                "concat" => DerivedKind::Concat {
                    columns: d.columns,
                    separator: d.separator,
                },
                "load_time" => DerivedKind::LoadTime,
                "source_key" => DerivedKind::SourceKey,
                "object_time" => DerivedKind::ObjectTime,
                "row_hash" => DerivedKind::RowHash,
                other => {
                    return Err(invalid(
                        &key,
                        format!(
                            "unknown kind {other:?} (constant, concat, load_time, source_key, object_time, row_hash)"
                        ),
                    ));
                }
            };
            let default_ty = match kind {
                DerivedKind::LoadTime | DerivedKind::ObjectTime => ColumnType::Timestamptz,
                DerivedKind::RowHash => ColumnType::Uuid,
                _ => ColumnType::Text,
            };
            let ty =
                d.ty.as_deref()
                    .map(str::parse::<ColumnType>)
                    .transpose()
                    .map_err(|e| invalid(format!("{key}.type"), e))?
                    .unwrap_or(default_ty);
            if kind == DerivedKind::RowHash {
                if ty != ColumnType::Uuid {
                    return Err(invalid(
                        format!("{key}.type"),
                        "kind = \"row_hash\" needs type = \"uuid\"",
                    ));
                }
                if derived
                    .iter()
                    .any(|d: &DerivedRule| d.kind == DerivedKind::RowHash)
                {
                    return Err(invalid(&key, "only one derived column can be a row_hash"));
                }
            }
            if let DerivedKind::Constant(v) = &kind {
                Conversion::plain(ty)
                    .convert(v)
                    .map_err(|e| invalid(format!("{key}.value"), format!("{v:?} {e}")))?;
            }
            derived.push(DerivedRule {
                name: d.name,
                kind,
                ty,
            });
        }
        if let Some(f) = raw.table.fillfactor
            && !(10..=100).contains(&f)
        {
            return Err(invalid(
                "table.fillfactor",
                format!("{f}: a percentage from 10 to 100"),
            ));
        }
        Ok(Self {
            table: TableRef::new(raw.table.schema, raw.table.name),
            key: raw.table.key,
            guard: raw.table.guard,
            schema_policy: raw.table.schema_policy,
            fillfactor: raw.table.fillfactor,
            columns,
            derived,
        })
    }

    /// A mapping with no column rules (every column inferred): what `--table T --key K` means.
    pub fn inferred(table: TableRef, key: Vec<String>, guard: Option<String>) -> Self {
        Self {
            table,
            key,
            guard,
            schema_policy: SchemaPolicy::Evolve,
            fillfactor: None,
            columns: BTreeMap::new(),
            derived: Vec::new(),
        }
    }

    /// The target column a CSV column lands in (`None` if the mapping drops it).
    pub fn target_name<'a>(&'a self, source: &'a str) -> Option<&'a str> {
        match self.columns.get(source) {
            Some(r) if r.drop => None,
            Some(r) => Some(r.rename.as_deref().unwrap_or(source)),
            None => Some(source),
        }
    }

    /// Whether the mapping fixes the type of this CSV column (otherwise it is inferred).
    pub fn has_type(&self, source: &str) -> bool {
        self.columns
            .get(source)
            .is_some_and(|r| r.conversion.is_some())
    }

    /// Resolves the mapping against a CSV header. `inferred` gives types for unmapped columns
    /// (by header position; missing entries are `text`).
    pub fn bind(
        &self,
        header: &[&str],
        inferred: &[ColumnType],
    ) -> Result<BoundMapping, MappingError> {
        let mut targets = Vec::new();
        let mut names = HashSet::new();
        for (i, src) in header.iter().enumerate() {
            let rule = self.columns.get(*src);
            if rule.is_some_and(|r| r.drop) {
                continue;
            }
            let name = rule
                .and_then(|r| r.rename.clone())
                .unwrap_or_else(|| (*src).to_owned());
            let conversion = match rule.and_then(|r| r.conversion.clone()) {
                Some(c) => c,
                None => Conversion::plain(inferred.get(i).copied().unwrap_or(ColumnType::Text)),
            };
            if !names.insert(name.clone()) {
                return Err(invalid(
                    format!("columns.{src}"),
                    format!("target column {name:?} is produced twice"),
                ));
            }
            targets.push(Target {
                name,
                source: Source::Csv(i),
                conversion,
                default: rule.and_then(|r| r.default.clone()),
                redact: rule.and_then(|r| r.redact),
                limit: None,
            });
        }
        // Mapped columns absent from this file: present with their default, otherwise left out.
        for (src, rule) in &self.columns {
            if rule.drop || header.contains(&src.as_str()) {
                continue;
            }
            if let Some(d) = &rule.default {
                let name = rule.rename.clone().unwrap_or_else(|| src.clone());
                if names.insert(name.clone()) {
                    let conversion = rule
                        .conversion
                        .clone()
                        .unwrap_or(Conversion::plain(ColumnType::Text));
                    targets.push(Target {
                        name,
                        source: Source::Constant(d.clone()),
                        conversion,
                        default: None,
                        redact: rule.redact,
                        limit: None,
                    });
                }
            }
        }
        for d in &self.derived {
            if !names.insert(d.name.clone()) {
                return Err(invalid(
                    format!("derived ({})", d.name),
                    "name already used by a column",
                ));
            }
            let source = match &d.kind {
                DerivedKind::Constant(v) => Source::Constant(v.clone()),
                DerivedKind::LoadTime => Source::LoadTime,
                DerivedKind::SourceKey => Source::ObjectKey,
                DerivedKind::ObjectTime => Source::ObjectTime,
                DerivedKind::RowHash => Source::RowHash,
                DerivedKind::Concat { columns, separator } => {
                    let mut idx = Vec::new();
                    for c in columns {
                        let i = header.iter().position(|h| h == c).ok_or_else(|| {
                            invalid(
                                format!("derived ({})", d.name),
                                format!("concat column {c:?} is not in the file"),
                            )
                        })?;
                        idx.push(i);
                    }
                    Source::Concat(idx, separator.clone())
                }
            };
            targets.push(Target {
                name: d.name.clone(),
                source,
                conversion: Conversion::plain(d.ty),
                default: None,
                redact: None,
                limit: None,
            });
        }
        let plan = UpsertPlan::new(
            self.table.clone(),
            targets
                .iter()
                .map(|t| {
                    let c = PlanColumn::new(t.name.clone(), t.conversion.ty);
                    if t.source.is_lineage() {
                        c.lineage()
                    } else {
                        c
                    }
                })
                .collect(),
            self.key.clone(),
            self.guard.clone(),
        )?
        .with_fillfactor(self.fillfactor);
        let key_idx: Vec<usize> = self
            .key
            .iter()
            .filter_map(|k| targets.iter().position(|t| &t.name == k))
            .collect();
        let row_hash = RowHashSpec::new(&targets, &key_idx);
        let plan = plan.with_row_hash(row_hash.as_ref().map(|h| targets[h.target].name.clone()));
        Ok(BoundMapping {
            targets,
            plan,
            key_idx,
            row_hash,
            width: header.len(),
        })
    }
}

#[derive(Debug, Clone)]
enum Source {
    Csv(usize),
    Constant(String),
    Concat(Vec<usize>, String),
    LoadTime,
    ObjectKey,
    ObjectTime,
    /// Filled after the row's other values ([`RowHashSpec`]).
    RowHash,
}

impl Source {
    /// Written with a real change, never one by itself (see [`PlanColumn::lineage`]), and
    /// left out of the row hash.
    fn is_lineage(&self) -> bool {
        matches!(self, Self::LoadTime | Self::ObjectKey | Self::RowHash)
    }
}

#[derive(Debug, Clone)]
struct Target {
    name: String,
    source: Source,
    conversion: Conversion,
    default: Option<String>,
    redact: Option<Redact>,
    /// The existing column's limits (see [`BoundMapping::use_table`]).
    limit: Option<ColumnLimit>,
}

/// What a row is transformed with: load time, object key and the redaction salt.
#[derive(Debug, Clone)]
pub struct RowContext {
    pub load_time: jiff::Timestamp,
    pub source_key: String,
    /// When the source object was written (`None`: NULL).
    pub object_time: Option<jiff::Timestamp>,
    /// Salt for `redact = "hash"` (from configuration or a secret; never logged).
    pub salt: String,
}

impl RowContext {
    pub fn now() -> Self {
        Self {
            load_time: jiff::Timestamp::now(),
            source_key: String::new(),
            object_time: None,
            salt: String::new(),
        }
    }
}

/// A row's typed values as canonical text (`None` is NULL), reused across rows: one buffer
/// holds every value's text, so a row allocates nothing once the buffer has grown.
#[derive(Debug, Clone, Default)]
pub struct TypedRow {
    text: String,
    /// Each column's value: its span of `text`, `None` for NULL.
    values: Vec<Option<(usize, usize)>>,
    /// What the row hash is computed over (see [`row_hash`]), reused.
    hashed: Vec<u8>,
}

impl TypedRow {
    pub fn get(&self, i: usize) -> Option<&str> {
        let (start, end) = (*self.values.get(i)?)?;
        Some(&self.text[start..end])
    }
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = Option<&str>> {
        (0..self.values.len()).map(|i| self.get(i))
    }

    fn clear(&mut self) {
        self.text.clear();
        self.values.clear();
    }
}

/// Why one row cannot load: the column, the value (truncated) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column:?}: {reason}{}", value.as_ref().map(|v| format!(" (value {v:?})")).unwrap_or_default())]
pub struct RowError {
    pub column: String,
    pub value: Option<String>,
    pub reason: String,
}

/// Longest value quoted in an error.
pub const ERROR_VALUE_CHARS: usize = 60;

fn truncated(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    if s.chars().count() <= ERROR_VALUE_CHARS {
        s.into_owned()
    } else {
        let mut t: String = s.chars().take(ERROR_VALUE_CHARS).collect();
        t.push('…');
        t
    }
}

/// A mapping resolved against one file's header: applies to its rows.
#[derive(Debug, Clone)]
pub struct BoundMapping {
    targets: Vec<Target>,
    plan: UpsertPlan,
    key_idx: Vec<usize>,
    row_hash: Option<RowHashSpec>,
    width: usize,
}

impl BoundMapping {
    /// Takes what the existing table says of each column (`column` gives its `format_type`
    /// and whether it is NOT NULL): the plan stages keys with the table's own types (see
    /// [`UpsertPlan::use_table_types`]), and each row is checked against the column's limits
    /// ([`ColumnLimit`]), so a value the column cannot hold rejects its row only.
    pub fn use_table<'a>(&mut self, column: impl Fn(&str) -> Option<(&'a str, bool)>) {
        self.plan
            .use_table_types(|name| column(name).map(|(ty, _)| ty));
        let key = &self.plan.key;
        for t in &mut self.targets {
            // A key's NULL has a message of its own.
            let not_key = !key.contains(&t.name);
            t.limit = column(&t.name)
                .and_then(|(ty, not_null)| ColumnLimit::from_pg(ty, not_null && not_key));
        }
    }

    /// Target column names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.name.as_str()).collect()
    }
    /// The CSV column (by header position) that target column `i` is read from, if any.
    pub fn source_column(&self, i: usize) -> Option<usize> {
        match self.targets.get(i)?.source {
            Source::Csv(c) => Some(c),
            _ => None,
        }
    }
    /// The CSV columns (by header position) whose values are redacted, and how: what must
    /// not leave the loader in the clear (a quarantine file holds the row as read).
    pub fn redactions(&self) -> Vec<(usize, Redact)> {
        let mut out = Vec::new();
        for t in &self.targets {
            let Some(r) = t.redact else { continue };
            match &t.source {
                Source::Csv(i) => out.push((*i, r)),
                Source::Concat(idx, _) => out.extend(idx.iter().map(|i| (*i, r))),
                _ => {}
            }
        }
        out
    }

    /// The first column hashed with `redact = "hash"`, if any (it needs a salt).
    pub fn hashed_column(&self) -> Option<&str> {
        self.targets
            .iter()
            .find(|t| t.redact == Some(Redact::Hash))
            .map(|t| t.name.as_str())
    }

    /// The upsert plan for these columns.
    pub fn plan(&self) -> &UpsertPlan {
        &self.plan
    }

    /// Transforms one CSV row (fields as bytes, `None` = NULL) into typed values, or says which
    /// column failed and why. Never panics; a bad row is the caller's to quarantine.
    pub fn apply(
        &self,
        fields: &[Option<&[u8]>],
        ctx: &RowContext,
        out: &mut TypedRow,
    ) -> Result<(), RowError> {
        if fields.len() != self.width {
            return Err(RowError {
                column: String::new(),
                value: None,
                reason: format!(
                    "row has {} fields, the header has {}",
                    fields.len(),
                    self.width
                ),
            });
        }
        out.clear();
        for t in &self.targets {
            let value = match t.source {
                Source::RowHash => None,
                _ => self.value(t, fields, ctx, &mut out.text)?,
            };
            out.values.push(value);
        }
        if let Some(spec) = &self.row_hash {
            spec.fill(&self.targets, out);
        }
        for &k in &self.key_idx {
            match out.get(k) {
                None => {
                    return Err(key_error(
                        &self.targets[k].name,
                        "the key is missing (NULL)",
                    ));
                }
                Some("") => return Err(key_error(&self.targets[k].name, "the key is empty")),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

impl BoundMapping {
    /// Target `t`'s value for one row, appended to `text`: its span there, or `None` (NULL).
    fn value(
        &self,
        t: &Target,
        fields: &[Option<&[u8]>],
        ctx: &RowContext,
        text: &mut String,
    ) -> Result<Option<(usize, usize)>, RowError> {
        let start = text.len();
        let instant = match t.source {
            Source::LoadTime => Some(ctx.load_time),
            Source::ObjectTime => ctx.object_time,
            _ => None,
        };
        // A lineage time into a timestamptz column: its text as the conversion would write it,
        // without writing, reading and writing it again on every row.
        if let Some(at) = instant
            && t.redact.is_none()
            && t.conversion.keeps_instants()
        {
            push_display(text, at);
            return self.checked(t, Some((start, text.len())), text);
        }
        let raw: Option<std::borrow::Cow<'_, [u8]>> = match &t.source {
            Source::Csv(i) => fields[*i].map(std::borrow::Cow::Borrowed),
            Source::Constant(v) => Some(v.as_bytes().into()),
            Source::ObjectKey => Some(ctx.source_key.as_bytes().into()),
            Source::LoadTime | Source::ObjectTime => {
                instant.map(|t| t.to_string().into_bytes().into())
            }
            Source::RowHash => None,
            Source::Concat(idx, sep) => {
                let parts: Vec<&[u8]> = idx.iter().filter_map(|i| fields[*i]).collect();
                if parts.is_empty() {
                    None
                } else {
                    Some(parts.join(sep.as_bytes()).into())
                }
            }
        };
        let raw = raw.or_else(|| t.default.as_ref().map(|d| d.as_bytes().into()));
        let value = match raw {
            None => None,
            Some(bytes) => {
                // A redacted column's value is never quoted, not even in an error.
                let fail = |reason: String| RowError {
                    column: t.name.clone(),
                    value: t.redact.is_none().then(|| truncated(&bytes)),
                    reason,
                };
                let s = std::str::from_utf8(&bytes)
                    .map_err(|e| fail(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
                t.conversion.convert_into(s, text).map_err(fail)?;
                let kept = match t.redact {
                    None => true,
                    Some(r) => {
                        let converted = text.split_off(start);
                        let hash = r.apply(&ctx.salt, converted.as_bytes());
                        text.push_str(hash.as_deref().unwrap_or_default());
                        hash.is_some()
                    }
                };
                let stored = kept.then_some((start, text.len()));
                if let Some(limit) = &t.limit {
                    limit
                        .check(stored.map(|(a, b)| &text[a..b]))
                        .map_err(fail)?;
                }
                stored
            }
        };
        if value.is_none() {
            return self.checked(t, None, text);
        }
        Ok(value)
    }

    /// `value` (a span of `text`, its text as read too: lineage times and NULLs) against the
    /// column's limits.
    fn checked(
        &self,
        t: &Target,
        value: Option<(usize, usize)>,
        text: &str,
    ) -> Result<Option<(usize, usize)>, RowError> {
        if let Some(limit) = &t.limit {
            let shown = value.map(|(a, b)| &text[a..b]);
            limit.check(shown).map_err(|reason| RowError {
                column: t.name.clone(),
                value: shown.map(|v| truncated(v.as_bytes())),
                reason,
            })?;
        }
        Ok(value)
    }
}

/// Which values a row's hash covers, and where it goes.
#[derive(Debug, Clone)]
struct RowHashSpec {
    /// The hash column's target.
    target: usize,
    /// The compared targets (not key, not lineage), in order of their names.
    inputs: Vec<usize>,
}

impl RowHashSpec {
    fn new(targets: &[Target], key_idx: &[usize]) -> Option<Self> {
        let target = targets
            .iter()
            .position(|t| matches!(t.source, Source::RowHash))?;
        let mut inputs: Vec<usize> = (0..targets.len())
            .filter(|i| !key_idx.contains(i) && !targets[*i].source.is_lineage())
            .collect();
        inputs.sort_by(|&a, &b| targets[a].name.cmp(&targets[b].name));
        Some(Self { target, inputs })
    }

    /// Writes the row's hash into its column.
    fn fill(&self, targets: &[Target], row: &mut TypedRow) {
        let TypedRow {
            text,
            values,
            hashed,
        } = row;
        hashed.clear();
        let named = self.inputs.iter().map(|&i| {
            let value = values[i].map(|(a, b)| &text.as_bytes()[a..b]);
            (targets[i].name.as_str(), value)
        });
        let hash = row_hash_into(named, hashed);
        let start = text.len();
        let mut buf = uuid::Uuid::encode_buffer();
        text.push_str(
            uuid::Uuid::from_u128(hash)
                .hyphenated()
                .encode_lower(&mut buf),
        );
        values[self.target] = Some((start, text.len()));
    }
}

/// The hash `kind = "row_hash"` stores: XXH3-128 over a version tag and, for each non-NULL
/// value in order of the column names, the name and the value's canonical text (as the row
/// conversion writes it), each with its length. NULLs are left out, so a new column that
/// is NULL does not change the hash of rows loaded before it existed.
///
/// ```
/// use sluice_transform::row_hash;
///
/// let a = row_hash([("amount", Some(&b"97.00"[..])), ("note", None)]);
/// assert_eq!(a, row_hash([("amount", Some(&b"97.00"[..]))]));
/// assert_ne!(a, row_hash([("amount", Some(&b"97.0"[..]))]));
/// assert_ne!(a, row_hash([("amount", Some(&b""[..]))]));
/// ```
pub fn row_hash<'a>(values: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> u128 {
    row_hash_into(values, &mut Vec::new())
}

fn row_hash_into<'a>(
    values: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    buf: &mut Vec<u8>,
) -> u128 {
    buf.extend_from_slice(b"sluice-row-hash-1");
    for (name, value) in values {
        let Some(value) = value else { continue };
        buf.extend_from_slice(&(name.len() as u64).to_le_bytes());
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
        buf.extend_from_slice(value);
    }
    twox_hash::XxHash3_128::oneshot(buf)
}

fn key_error(column: &str, reason: &str) -> RowError {
    RowError {
        column: column.to_owned(),
        value: None,
        reason: reason.to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

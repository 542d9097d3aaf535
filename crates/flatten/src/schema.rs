//! The growing schema of a flattened stream: column name → source path, in first-seen order,
//! with the JSON types seen, serialisable as a manifest file.
//!
//! ```
//! use sluice_flatten::{Flattener, Options};
//!
//! let mut f = Flattener::new(Options::default());
//! f.flatten(br#"{"purchase":{"price":{"value":97}}}"#).unwrap();
//! let schema = f.schema();
//! assert_eq!(schema.columns()[0].name, "purchase_price_value");
//! assert_eq!(schema.columns()[0].path.to_string(), "$.purchase.price.value");
//! let manifest = serde_json::to_string(&f.manifest()).unwrap();
//! assert!(manifest.contains("purchase_price_value"));
//! ```

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name;

/// One step of a source path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Segment {
    Index(u32),
    Key(String),
}

/// Where a column's values come from in the source record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourcePath(pub Vec<Segment>);

impl SourcePath {
    /// Stable 64-bit hash of the path (used to keep shortened names distinct).
    pub fn stable_hash(&self) -> u64 {
        let mut bytes = Vec::new();
        for s in &self.0 {
            match s {
                Segment::Key(k) => {
                    bytes.push(b'k');
                    bytes.extend_from_slice(k.as_bytes());
                }
                Segment::Index(i) => {
                    bytes.push(b'i');
                    bytes.extend_from_slice(i.to_string().as_bytes());
                }
            }
            bytes.push(0x1f);
        }
        name::fnv1a(bytes)
    }
}

impl fmt::Display for SourcePath {
    /// A JSONPath: `$.purchase.price.value`, `$.commissions[0].value`, `$["a.b"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for s in &self.0 {
            match s {
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::Key(k)
                    if !k.is_empty()
                        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && !k.as_bytes()[0].is_ascii_digit() =>
                {
                    write!(f, ".{k}")?
                }
                Segment::Key(k) => write!(f, "[{}]", serde_json::Value::String(k.clone()))?,
            }
        }
        Ok(())
    }
}

/// Bit set of the JSON types seen in a column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonTypes(u8);

impl JsonTypes {
    pub const NULL: Self = Self(1);
    pub const BOOLEAN: Self = Self(2);
    pub const INTEGER: Self = Self(4);
    pub const FLOAT: Self = Self(8);
    pub const STRING: Self = Self(16);
    pub const OBJECT: Self = Self(32);
    pub const ARRAY: Self = Self(64);
    const NAMES: [(Self, &'static str); 7] = [
        (Self::NULL, "null"),
        (Self::BOOLEAN, "boolean"),
        (Self::INTEGER, "integer"),
        (Self::FLOAT, "float"),
        (Self::STRING, "string"),
        (Self::OBJECT, "object"),
        (Self::ARRAY, "array"),
    ];

    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(t, _)| self.contains(*t))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl Serialize for JsonTypes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for JsonTypes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut t = JsonTypes::default();
        for n in names {
            match Self::NAMES.iter().find(|(_, name)| *name == n) {
                Some((bit, _)) => t.insert(*bit),
                None => return Err(serde::de::Error::custom(format!("unknown JSON type {n:?}"))),
            }
        }
        Ok(t)
    }
}

/// One output column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub path: SourcePath,
    pub types: JsonTypes,
}

/// Two source paths that sanitize to one name: both survive, the later one renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collision {
    /// The name both paths wanted.
    pub wanted: String,
    /// The path that already held it.
    pub existing: SourcePath,
    /// The later path, and the name it got instead.
    pub path: SourcePath,
    pub assigned: String,
}

impl fmt::Display for Collision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "column name collision: {} and {} both map to \"{}\"; {} is named \"{}\"",
            self.existing, self.path, self.wanted, self.path, self.assigned
        )
    }
}

/// Column name → source path, first-seen order, JSON types seen. Only ever grows.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    columns: Vec<Column>,
    by_name: HashMap<String, usize>,
    collisions: Vec<Collision>,
}

/// A point in a schema's growth ([`Schema::mark`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SchemaMark {
    columns: usize,
    collisions: usize,
}

/// The manifest file written beside a CSV: the schema plus the options that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub separator: String,
    pub arrays: crate::ArrayPolicy,
    pub max_depth: Option<usize>,
    pub schema_hash: String,
    pub columns: Vec<Column>,
    pub collisions: Vec<Collision>,
}

impl Schema {
    pub fn len(&self) -> usize {
        self.columns.len()
    }
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
    pub fn collisions(&self) -> &[Collision] {
        &self.collisions
    }
    /// Column names in order: the CSV header.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Adds a column for `path`, named `wanted` unless another path has that name already.
    pub(crate) fn add(&mut self, path: SourcePath, wanted: String) -> usize {
        let mut name = wanted.clone();
        if let Some(&existing) = self.by_name.get(&name) {
            let mut n = 2;
            loop {
                name = name::with_suffix(&wanted, n);
                if !self.by_name.contains_key(&name) {
                    break;
                }
                n += 1;
            }
            self.collisions.push(Collision {
                wanted,
                existing: self.columns[existing].path.clone(),
                path: path.clone(),
                assigned: name.clone(),
            });
        }
        let idx = self.columns.len();
        self.by_name.insert(name.clone(), idx);
        self.columns.push(Column {
            name,
            path,
            types: JsonTypes::default(),
        });
        idx
    }

    /// Adds `t` to column `col`'s types; the types before, when that changed them.
    pub(crate) fn note_type(&mut self, col: usize, t: JsonTypes) -> Option<JsonTypes> {
        let types = &mut self.columns[col].types;
        if types.contains(t) {
            return None;
        }
        let before = *types;
        types.insert(t);
        Some(before)
    }

    /// Back to what it was at `mark`, given the types changed since (oldest first).
    pub(crate) fn roll_back(&mut self, mark: SchemaMark, changed: &[(usize, JsonTypes)]) {
        for &(col, before) in changed.iter().rev() {
            if col < mark.columns {
                self.columns[col].types = before;
            }
        }
        for c in self.columns.drain(mark.columns..) {
            self.by_name.remove(&c.name);
        }
        self.collisions.truncate(mark.collisions);
    }

    /// Where the schema is now, to roll back to.
    pub(crate) fn mark(&self) -> SchemaMark {
        SchemaMark {
            columns: self.columns.len(),
            collisions: self.collisions.len(),
        }
    }

    /// A stable hash of the column names and paths, in order (16 hex digits).
    pub fn hash(&self) -> String {
        let mut bytes = Vec::new();
        for c in &self.columns {
            bytes.extend_from_slice(c.name.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(&c.path.stable_hash().to_le_bytes());
        }
        format!("{:016x}", name::fnv1a(bytes))
    }

    /// Rebuilds a schema from a manifest (columns keep their names and order).
    pub fn from_manifest(m: &Manifest) -> Self {
        let mut s = Schema::default();
        for c in &m.columns {
            s.by_name.insert(c.name.clone(), s.columns.len());
            s.columns.push(c.clone());
        }
        s.collisions = m.collisions.clone();
        s
    }
}

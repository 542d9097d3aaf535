//! Datasets, declared in TOML files under `datasets/`: one file, one dataset. Everything else —
//! request validation, the OpenAPI schema, the lake's Arrow types — is derived from it.
//!
//! ```
//! use sluice_api::{Dataset, Kind};
//!
//! let d = Dataset::from_toml("pets.toml", r#"
//! [dataset]
//! name = "pets"
//! version = 1
//!
//! [fields.name]
//! type = "string"
//! min_length = 1
//!
//! [fields.age]
//! type = "integer"
//! ge = 0
//! optional = true
//! "#).unwrap();
//! assert_eq!(d.fields.len(), 2);
//! assert!(matches!(d.fields[1].kind, Kind::Integer(_)));
//!
//! let e = Dataset::from_toml("pets.toml", "[dataset]\nname = \"pets\"\nversion = 1\n\n[fields.n]\ntype = \"string\"\ngt = 1\n").unwrap_err();
//! assert_eq!(e.to_string(), "pets.toml:5:1: fields.n: gt applies to integer and number fields, not string");
//! ```

use std::ops::Range;
use std::path::Path;

use indexmap::IndexMap;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

/// Items in one batch request unless the dataset says otherwise.
pub const DEFAULT_MAX_BATCH: usize = 500;

/// A dataset file that cannot be used, and where.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// Not TOML, or a key or value the format does not have (toml's message names line and
    /// column).
    #[error("{file}: {source}")]
    Toml {
        file: String,
        #[source]
        source: toml::de::Error,
    },
    /// A rule that makes no sense for its field.
    #[error("{file}:{line}:{column}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        /// `fields.location.fields.lat`
        key: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{first} and {second} both declare dataset {name:?}")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
}

/// One dataset: its name (the route), version, and fields in file order.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub version: u32,
    pub description: Option<String>,
    /// Items a batch request may hold (1 to this).
    pub max_batch: usize,
    pub fields: Vec<Field>,
}

/// One field of a record or of a nested object.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub kind: Kind,
    pub presence: Presence,
    /// `null` is a value it accepts.
    pub nullable: bool,
    pub description: Option<String>,
}

/// Whether a field must be present.
#[derive(Debug, Clone, PartialEq)]
pub enum Presence {
    Required,
    /// May be absent; then it takes `default` (or null).
    Optional {
        default: Option<Value>,
    },
}

/// What a value must be.
#[derive(Debug, Clone)]
pub enum Kind {
    String(StringRule),
    Integer(Bounds),
    Number(Bounds),
    Boolean,
    /// One of these strings.
    Enum(Vec<String>),
    /// Exactly these fields (unknown ones are refused).
    Object(Vec<Field>),
    Array {
        items: Box<Kind>,
        min_items: Option<usize>,
        max_items: Option<usize>,
    },
}

/// A string's rules. Lengths count characters (Unicode scalar values), as pydantic does.
#[derive(Debug, Clone, Default)]
pub struct StringRule {
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub pattern: Option<Pattern>,
    pub format: Option<Format>,
}

/// A regular expression a string must match somewhere (anchor it with `^…$` for the whole).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: Regex,
}

/// A string format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Email,
    Uuid,
    /// `YYYY-MM-DD`
    Date,
    /// RFC 3339 with an offset: `2024-05-01T12:00:00Z`, `2024-05-01T09:00:00-03:00`.
    DateTime,
}

/// Numeric bounds: greater than, at least, less than, at most.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bounds {
    pub gt: Option<f64>,
    pub ge: Option<f64>,
    pub lt: Option<f64>,
    pub le: Option<f64>,
}

/// A bound as pydantic prints it and JSON Schema states it: `200`, not `200.0`.
pub(crate) fn json_number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        serde_json::json!(x as i64)
    } else {
        serde_json::json!(x)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    dataset: RawHeader,
    fields: IndexMap<String, Spanned<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    version: u32,
    description: Option<String>,
    max_batch: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(rename = "type")]
    ty: String,
    format: Option<String>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<String>,
    gt: Option<f64>,
    ge: Option<f64>,
    lt: Option<f64>,
    le: Option<f64>,
    values: Option<Vec<String>>,
    fields: Option<IndexMap<String, Spanned<RawField>>>,
    items: Option<Box<Spanned<RawField>>>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    nullable: bool,
    default: Option<toml::Value>,
    description: Option<String>,
}

/// Where a problem is: file, text, key path.
struct Place<'a> {
    file: &'a str,
    text: &'a str,
}

impl Place<'_> {
    fn invalid(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> DatasetError {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        DatasetError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl Dataset {
    /// Parses one dataset file; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Self, DatasetError> {
        let raw: RawFile = toml::from_str(text).map_err(|source| DatasetError::Toml {
            file: file.to_owned(),
            source,
        })?;
        let place = Place { file, text };
        let name = raw.dataset.name;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(place.invalid(
                0..0,
                "dataset.name",
                format!("{name:?}: 1-64 of a-z, 0-9, _ and - (it is a route and an S3 prefix)"),
            ));
        }
        if matches!(
            name.as_str(),
            "health" | "datasets" | "docs" | "openapi.json"
        ) {
            return Err(place.invalid(0..0, "dataset.name", format!("{name:?} is a route")));
        }
        let max_batch = raw.dataset.max_batch.unwrap_or(DEFAULT_MAX_BATCH);
        if max_batch == 0 {
            return Err(place.invalid(0..0, "dataset.max_batch", "must be at least 1"));
        }
        Ok(Dataset {
            name,
            version: raw.dataset.version,
            description: raw.dataset.description,
            max_batch,
            fields: fields(&place, "fields", raw.fields)?,
        })
    }

    /// Reads `path`.
    pub fn from_path(path: &Path) -> Result<Self, DatasetError> {
        let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&path.display().to_string(), &text)
    }
}

fn fields(
    place: &Place<'_>,
    prefix: &str,
    raw: IndexMap<String, Spanned<RawField>>,
) -> Result<Vec<Field>, DatasetError> {
    if raw.is_empty() {
        return Err(place.invalid(0..0, prefix, "declares no field"));
    }
    raw.into_iter()
        .map(|(name, f)| field(place, &format!("{prefix}.{name}"), name, f))
        .collect()
}

fn field(
    place: &Place<'_>,
    key: &str,
    name: String,
    raw: Spanned<RawField>,
) -> Result<Field, DatasetError> {
    let span = raw.span();
    let mut raw = raw.into_inner();
    if name.is_empty() || name.starts_with('_') {
        return Err(place.invalid(
            span,
            key,
            "field names are not empty and do not start with _ (the lake's own columns do)",
        ));
    }
    let default = raw.default.take();
    let (optional, nullable, description) = (raw.optional, raw.nullable, raw.description.take());
    let kind = kind(place, key, span.clone(), raw)?;
    let presence = match (optional, default) {
        (false, None) => Presence::Required,
        (false, Some(_)) => {
            return Err(place.invalid(span, key, "a default needs optional = true"));
        }
        (true, default) => Presence::Optional {
            default: default.map(|d| serde_json::to_value(d).unwrap_or(Value::Null)),
        },
    };
    Ok(Field {
        name,
        kind,
        presence,
        nullable,
        description,
    })
}

/// The kind of a field (or of an array's items), with only the rules that kind takes.
fn kind(
    place: &Place<'_>,
    key: &str,
    span: Range<usize>,
    mut raw: RawField,
) -> Result<Kind, DatasetError> {
    let ty = std::mem::take(&mut raw.ty);
    let bounds = Bounds {
        gt: raw.gt.take(),
        ge: raw.ge.take(),
        lt: raw.lt.take(),
        le: raw.le.take(),
    };
    let kind = match ty.as_str() {
        "string" => Kind::String(StringRule {
            min_length: raw.min_length.take(),
            max_length: raw.max_length.take(),
            pattern: match raw.pattern.take() {
                None => None,
                Some(source) => match Regex::new(&source) {
                    Ok(regex) => Some(Pattern { source, regex }),
                    Err(e) => return Err(place.invalid(span, key, format!("pattern: {e}"))),
                },
            },
            format: match raw.format.take().as_deref() {
                None => None,
                Some("email") => Some(Format::Email),
                Some("uuid") => Some(Format::Uuid),
                Some("date") => Some(Format::Date),
                Some("date-time") => Some(Format::DateTime),
                Some(other) => {
                    return Err(place.invalid(
                        span,
                        key,
                        format!("format {other:?}: one of email, uuid, date, date-time"),
                    ));
                }
            },
        }),
        "integer" | "number" => {
            let integral = |b: Option<f64>| b.is_none_or(|v| v.fract() == 0.0);
            if ty == "integer"
                && ![bounds.gt, bounds.ge, bounds.lt, bounds.le]
                    .into_iter()
                    .all(integral)
            {
                return Err(place.invalid(span, key, "an integer's bounds are whole numbers"));
            }
            if ty == "integer" {
                Kind::Integer(bounds)
            } else {
                Kind::Number(bounds)
            }
        }
        "boolean" => Kind::Boolean,
        "enum" => match raw.values.take() {
            Some(v) if !v.is_empty() => Kind::Enum(v),
            _ => return Err(place.invalid(span, key, "an enum needs values = [\"…\", …]")),
        },
        "object" => match raw.fields.take() {
            Some(f) => Kind::Object(fields(place, &format!("{key}.fields"), f)?),
            None => {
                return Err(place.invalid(span, key, "an object needs [….fields.<name>] tables"));
            }
        },
        "array" => {
            let Some(items) = raw.items.take() else {
                return Err(place.invalid(span, key, "an array needs items = { type = … }"));
            };
            let items_key = format!("{key}.items");
            let items_span = items.span();
            let items = items.into_inner();
            if items.optional || items.nullable || items.default.is_some() {
                return Err(place.invalid(
                    items_span,
                    &items_key,
                    "items are neither optional, nullable nor defaulted",
                ));
            }
            Kind::Array {
                items: Box::new(kind(place, &items_key, items_span, items)?),
                min_items: raw.min_items.take(),
                max_items: raw.max_items.take(),
            }
        }
        other => {
            return Err(place.invalid(
                span,
                key,
                format!(
                    "type {other:?}: one of string, integer, number, boolean, enum, object, array"
                ),
            ));
        }
    };
    if !matches!(kind, Kind::Integer(_) | Kind::Number(_)) && bounds != Bounds::default() {
        let which = [
            ("gt", bounds.gt),
            ("ge", bounds.ge),
            ("lt", bounds.lt),
            ("le", bounds.le),
        ]
        .into_iter()
        .find(|(_, b)| b.is_some())
        .map_or("", |(n, _)| n);
        return Err(place.invalid(
            span,
            key,
            format!("{which} applies to integer and number fields, not {ty}"),
        ));
    }
    let leftover = [
        ("format", raw.format.is_some()),
        ("min_length", raw.min_length.is_some()),
        ("max_length", raw.max_length.is_some()),
        ("pattern", raw.pattern.is_some()),
        ("values", raw.values.is_some()),
        ("fields", raw.fields.is_some()),
        ("items", raw.items.is_some()),
        ("min_items", raw.min_items.is_some()),
        ("max_items", raw.max_items.is_some()),
    ]
    .into_iter()
    .find(|(_, set)| *set);
    if let Some((rule, _)) = leftover {
        return Err(place.invalid(span, key, format!("{rule} does not apply to {ty} fields")));
    }
    Ok(kind)
}

/// The datasets a server serves, by name.
#[derive(Debug, Clone, Default)]
pub struct Datasets(std::collections::BTreeMap<String, std::sync::Arc<Dataset>>);

impl Datasets {
    /// Every `*.toml` file in `dir` (sorted by name), one dataset each.
    pub fn from_dir(dir: &Path) -> Result<Self, DatasetError> {
        let io = |source| DatasetError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
        paths.sort();
        let mut out = Datasets::default();
        let mut files = std::collections::BTreeMap::new();
        for p in paths {
            let d = Dataset::from_path(&p)?;
            if let Some(first) = files.insert(d.name.clone(), p.display().to_string()) {
                return Err(DatasetError::Duplicate {
                    name: d.name,
                    first,
                    second: p.display().to_string(),
                });
            }
            out.insert(d);
        }
        Ok(out)
    }

    /// Adds (or replaces) a dataset.
    pub fn insert(&mut self, d: Dataset) {
        self.0.insert(d.name.clone(), std::sync::Arc::new(d));
    }

    pub fn get(&self, name: &str) -> Option<&std::sync::Arc<Dataset>> {
        self.0.get(name)
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = &std::sync::Arc<Dataset>> {
        self.0.values()
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "[dataset]\nname = \"d\"\nversion = 1\n\n";

    fn error(fields: &str) -> String {
        Dataset::from_toml("d.toml", &format!("{HEAD}{fields}"))
            .unwrap_err()
            .to_string()
    }

    /// Each rule of the format, broken once: the message names the key and says what is allowed.
    #[test]
    fn every_rule_of_the_format_is_checked() {
        let whole = |text: &str| Dataset::from_toml("d.toml", text).unwrap_err().to_string();
        let cases: [(String, &str); 12] = [
            (
                whole(
                    "[dataset]\nname = \"Bad Name\"\nversion = 1\n[fields.a]\ntype = \"boolean\"\n",
                ),
                "dataset.name: \"Bad Name\": 1-64 of a-z, 0-9, _ and -",
            ),
            (
                whole("[dataset]\nname = \"docs\"\nversion = 1\n[fields.a]\ntype = \"boolean\"\n"),
                "dataset.name: \"docs\" is a route",
            ),
            (
                whole(
                    "[dataset]\nname = \"d\"\nversion = 1\nmax_batch = 0\n[fields.a]\ntype = \"boolean\"\n",
                ),
                "dataset.max_batch: must be at least 1",
            ),
            (
                error("[fields.a]\ntype = \"string\"\nformat = \"ipv4\"\n"),
                "format \"ipv4\": one of email, uuid, date, date-time",
            ),
            (
                error("[fields.a]\ntype = \"object\"\n"),
                "an object needs [….fields.<name>] tables",
            ),
            (
                error("[fields.a]\ntype = \"array\"\n"),
                "an array needs items = { type = … }",
            ),
            (
                error(
                    "[fields.a]\ntype = \"array\"\nitems = { type = \"string\", optional = true }\n",
                ),
                "fields.a.items: items are neither optional, nullable nor defaulted",
            ),
            (
                error("[fields.a]\ntype = \"decimal\"\n"),
                "type \"decimal\": one of string, integer",
            ),
            (
                error("[fields.a]\ntype = \"string\"\ngt = 1\n"),
                "gt applies to integer and number fields, not string",
            ),
            (
                error("[fields.a]\ntype = \"boolean\"\nformat = \"date\"\n"),
                "format does not apply to boolean fields",
            ),
            (
                error("[fields.a]\ntype = \"enum\"\nvalues = []\n"),
                "an enum needs values",
            ),
            (
                error("[fields.a]\ntype = \"integer\"\ngt = 0.5\n"),
                "an integer's bounds are whole numbers",
            ),
        ];
        for (got, want) in cases {
            assert!(got.starts_with("d.toml:"), "{got}");
            assert!(got.contains(want), "{got:?} names {want:?}");
        }
    }

    #[test]
    fn mistakes_are_named_with_file_line_and_key() {
        let e = error("[fields.a]\ntype = \"string\"\nmax_lenght = 3\n");
        assert!(e.starts_with("d.toml: TOML parse error at line 7"), "{e}");
        assert!(e.contains("unknown field `max_lenght`"), "{e}");
        assert_eq!(
            error(
                "[fields.a]\ntype = \"string\"\n\n[fields.b]\ntype = \"string\"\npattern = \"(\"\n"
            ),
            "d.toml:8:1: fields.b: pattern: regex parse error:\n    (\n    ^\nerror: unclosed group"
        );
        assert_eq!(
            error("[fields.n]\ntype = \"integer\"\nle = 1.5\n"),
            "d.toml:5:1: fields.n: an integer's bounds are whole numbers"
        );
        assert_eq!(
            error("[fields.n]\ntype = \"boolean\"\ndefault = true\n"),
            "d.toml:5:1: fields.n: a default needs optional = true"
        );
        assert_eq!(
            error("[fields.o]\ntype = \"object\"\n[fields.o.fields.x]\ntype = \"enum\"\n"),
            "d.toml:7:1: fields.o.fields.x: an enum needs values = [\"…\", …]"
        );
        assert_eq!(
            error("[fields.t]\ntype = \"array\"\nitems = { type = \"string\", max_items = 2 }\n"),
            "d.toml:7:9: fields.t.items: max_items does not apply to string fields"
        );
        assert_eq!(
            error("[fields._id]\ntype = \"string\"\n"),
            "d.toml:5:1: fields._id: field names are not empty and do not start with _ (the lake's own columns do)"
        );
    }

    #[test]
    fn fields_keep_their_file_order() {
        let d = Dataset::from_toml(
            "d.toml",
            &format!("{HEAD}[fields.z]\ntype = \"boolean\"\n[fields.a]\ntype = \"boolean\"\n"),
        )
        .unwrap();
        let names: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["z", "a"]);
    }

    #[test]
    fn two_files_cannot_declare_one_dataset() {
        let dir = std::env::temp_dir().join(format!("sluice-datasets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let body = format!("{HEAD}[fields.a]\ntype = \"boolean\"\n");
        std::fs::write(dir.join("a.toml"), &body).unwrap();
        std::fs::write(dir.join("b.toml"), &body).unwrap();
        let e = Datasets::from_dir(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.contains("a.toml and ") && e.contains("b.toml both declare dataset \"d\""),
            "{e}"
        );
    }
}

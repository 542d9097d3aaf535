//! The lake as Athena sees it: each dataset is a Glue table over `lake/<dataset>/`, Parquet,
//! partitioned by `dt` with partition projection (no `MSCK REPAIR`, no partition calls), its
//! columns the Parquet schema [`crate::lake::arrow_schema`] derives from the dataset file, in
//! Athena's type names. The template's tables and `sluice athena ddl` both come from here.
//!
//! | dataset kind | Parquet | Athena |
//! |---|---|---|
//! | string (email, uuid), enum | Utf8 | `string` |
//! | string, format date-time | Timestamp(µs, UTC) | `timestamp` |
//! | string, format date | Date32 | `date` |
//! | integer | Int64 | `bigint` |
//! | number | Float64 | `double` |
//! | boolean | Boolean | `boolean` |
//! | object | Struct | `struct<…>` |
//! | array | List | `array<…>` |
//!
//! ```
//! use sluice_api::{Dataset, catalog::Table};
//!
//! let d = Dataset::from_toml("d.toml", "[dataset]\nname = \"bird-counts\"\nversion = 1\n[fields.n]\ntype = \"integer\"\n").unwrap();
//! let t = Table::new(&d, "s3://b/lake/").unwrap();
//! assert_eq!(t.name, "bird_counts");
//! assert_eq!(t.columns[0].hive_type, "bigint");
//! assert_eq!(t.location, "s3://b/lake/bird-counts/");
//! assert!(t.ddl("sluice").contains("'projection.dt.type'='date'"));
//! ```

use arrow_schema::DataType;

use crate::dataset::{Dataset, Field, Kind};

/// The partition column: the UTC day the API received the request (`dt=YYYY-MM-DD`).
pub const PARTITION: &str = "dt";

/// The first day partition projection enumerates; queries without a `dt` filter read from it on.
pub const FIRST_DAY: &str = "2024-01-01";

/// A column: its name and its Athena (Hive DDL) type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub hive_type: String,
}

/// A dataset that cannot be an Athena table as it is declared.
#[derive(Debug, thiserror::Error)]
#[error("dataset {dataset}: {message}")]
pub struct CatalogError {
    pub dataset: String,
    pub message: String,
}

/// A dataset's Glue table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The dataset's name with `-` as `_` (Athena's table names are `[a-z0-9_]`).
    pub name: String,
    /// The dataset's columns, then `_event_id`, `_received_at`, `_schema_version`.
    pub columns: Vec<Column>,
    /// `s3://<bucket>/<lake prefix><dataset>/`, with a trailing `/`.
    pub location: String,
    pub description: Option<String>,
}

impl Table {
    /// The table of `d` under `lake` (`s3://<bucket>/<lake prefix>`, trailing `/`).
    pub fn new(d: &Dataset, lake: &str) -> Result<Table, CatalogError> {
        check_names(d, &d.fields)?;
        let columns = crate::lake::arrow_schema(d)
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                hive_type: hive_type(f.data_type()),
            })
            .collect();
        Ok(Table {
            name: d.name.replace('-', "_"),
            columns,
            location: format!("{lake}{}/", d.name),
            description: d.description.clone(),
        })
    }

    /// The table properties: Parquet, and partition projection over `dt` by day from
    /// [`FIRST_DAY`] to now, each day's objects under `<location>dt=<day>/`.
    pub fn properties(&self) -> Vec<(String, String)> {
        [
            ("classification", "parquet".to_owned()),
            ("parquet.compression", "SNAPPY".to_owned()),
            ("projection.enabled", "true".to_owned()),
            ("projection.dt.type", "date".to_owned()),
            ("projection.dt.format", "yyyy-MM-dd".to_owned()),
            ("projection.dt.range", format!("{FIRST_DAY},NOW")),
            ("projection.dt.interval", "1".to_owned()),
            ("projection.dt.interval.unit", "DAYS".to_owned()),
            (
                "storage.location.template",
                format!("{}{PARTITION}=${{{PARTITION}}}/", self.location),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `CREATE EXTERNAL TABLE IF NOT EXISTS` for Athena, in `database`.
    pub fn ddl(&self, database: &str) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("  `{}` {}", c.name, c.hive_type))
            .collect();
        let properties: Vec<String> = self
            .properties()
            .iter()
            .map(|(k, v)| format!("  '{k}'='{v}'"))
            .collect();
        let comment = self
            .description
            .as_ref()
            .map(|d| format!("COMMENT '{}'\n", d.replace('\'', "''")))
            .unwrap_or_default();
        format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{name}` (\n{columns}\n)\n{comment}\
             PARTITIONED BY (`{PARTITION}` string)\n\
             ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'\n\
             STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat'\n\
             OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat'\n\
             LOCATION '{location}'\n\
             TBLPROPERTIES (\n{properties}\n);\n",
            name = self.name,
            columns = columns.join(",\n"),
            location = self.location,
            properties = properties.join(",\n"),
        )
    }
}

/// The Athena (Hive) name of an Arrow type the lake writes (see [`crate::lake`]'s table).
pub fn hive_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "string".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Date32 => "date".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "int".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), hive_type(f.data_type())))
                .collect();
            format!("struct<{}>", inner.join(","))
        }
        DataType::List(item) => format!("array<{}>", hive_type(item.data_type())),
        other => unreachable!("the lake writes no {other} column"),
    }
}

/// Athena folds names to lower case and quotes with backticks: two names that fold to one, or a
/// backtick, colon or comma in a name, cannot be a table's columns.
fn check_names(d: &Dataset, fields: &[Field]) -> Result<(), CatalogError> {
    let refuse = |message: String| CatalogError {
        dataset: d.name.clone(),
        message,
    };
    let mut seen = std::collections::BTreeMap::new();
    for f in fields {
        let folded = f.name.to_lowercase();
        if f.name.contains('`') || f.name.contains(':') || f.name.contains(',') {
            return Err(refuse(format!(
                "field {:?}: a backtick, colon or comma cannot be in an Athena column name",
                f.name
            )));
        }
        if let Some(other) = seen.insert(folded, &f.name) {
            return Err(refuse(format!(
                "fields {other:?} and {:?} are one column in Athena (names are case-insensitive)",
                f.name
            )));
        }
        if let Kind::Object(inner) = &f.kind {
            // A struct's member names are bare in its type (`struct<lat:double>`).
            if let Some(bad) = inner.iter().find(|m| {
                !m.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            }) {
                return Err(refuse(format!(
                    "field {:?}.{:?}: a nested field's name is a-z, A-Z, 0-9 and _ in Athena",
                    f.name, bad.name
                )));
            }
            check_names(d, inner)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(fields: &str) -> Dataset {
        Dataset::from_toml(
            "t.toml",
            &format!("[dataset]\nname = \"t\"\nversion = 2\n{fields}"),
        )
        .unwrap()
    }

    #[test]
    fn unicorns_columns_are_the_parquet_schema_in_hive_names() {
        let d = Dataset::from_path(std::path::Path::new("../../datasets/unicorns.toml")).unwrap();
        let t = Table::new(&d, "s3://b/lake/").unwrap();
        let got: Vec<(&str, &str)> = t
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.hive_type.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("name", "string"),
                ("rainbow", "boolean"),
                ("color", "string"),
                ("horn_length_cm", "double"),
                ("age_years", "bigint"),
                ("sighted_at", "timestamp"),
                ("location", "struct<lat:double,lon:double>"),
                ("tags", "array<string>"),
                ("observer_email", "string"),
                ("_event_id", "string"),
                ("_received_at", "timestamp"),
                ("_schema_version", "int"),
            ]
        );
        // Every Parquet column has its Athena column, in the same order.
        let arrow = crate::lake::arrow_schema(&d);
        let names: Vec<&str> = arrow.fields().iter().map(|f| f.name().as_str()).collect();
        let ours: Vec<&str> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ours);
    }

    #[test]
    fn the_location_template_is_the_layouts_partition() {
        let d = dataset("[fields.n]\ntype = \"string\"\n");
        let t = Table::new(&d, "s3://b/lake/").unwrap();
        let props: std::collections::BTreeMap<_, _> = t.properties().into_iter().collect();
        assert_eq!(
            props["storage.location.template"],
            "s3://b/lake/t/dt=${dt}/"
        );
        let day = jiff::civil::date(2024, 5, 1);
        let key = sluice_edge::layout::Layout::default().lake_object("t", day, "e");
        let filled = props["storage.location.template"].replace("${dt}", &day.to_string());
        assert!(format!("s3://b/{key}").starts_with(&filled), "{key}");
    }

    #[test]
    fn names_athena_cannot_tell_apart_are_refused() {
        let d = dataset("[fields.Name]\ntype = \"string\"\n[fields.name]\ntype = \"string\"\n");
        let e = Table::new(&d, "s3://b/").unwrap_err().to_string();
        assert_eq!(
            e,
            "dataset t: fields \"Name\" and \"name\" are one column in Athena (names are case-insensitive)"
        );
        let d = dataset("[fields.\"a`b\"]\ntype = \"string\"\n");
        assert!(Table::new(&d, "s3://b/").is_err());
    }

    #[test]
    fn the_ddl_quotes_names_and_escapes_the_comment() {
        let d = Dataset::from_toml(
            "t.toml",
            "[dataset]\nname = \"t\"\nversion = 1\ndescription = \"it's\"\n[fields.\"first name\"]\ntype = \"string\"\n",
        )
        .unwrap();
        let ddl = Table::new(&d, "s3://b/lake/").unwrap().ddl("sluice");
        assert!(ddl.contains("  `first name` string,\n"), "{ddl}");
        assert!(ddl.contains("COMMENT 'it''s'\n"), "{ddl}");
        assert!(ddl.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `sluice`.`t` ("));
        assert!(ddl.contains("PARTITIONED BY (`dt` string)"));
    }
}

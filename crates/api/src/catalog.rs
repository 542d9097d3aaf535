//! The lake as Athena sees it. Each dataset is two catalog entries:
//!
//! - a Glue table `<dataset>_objects` over `lake/<dataset>/`: Parquet, partitioned by `dt` with
//!   partition projection (no `MSCK REPAIR`, no partition calls), its columns the Parquet schema
//!   [`crate::lake::arrow_schema`] derives from the dataset file, in Athena's type names;
//! - a view `<dataset>` over it that keeps one copy of each record (`_event_id`, `_row`) in each
//!   `dt`: compaction writes a partition's records into new objects before it deletes the small
//!   ones, so for a while a record is in two objects (README, "Compaction"). Analysts query the
//!   view; `sluice query` registers the same two names with the same SQL.
//!
//! The template's tables and views, `sluice athena ddl` and `sluice query` all come from here.
//!
//! | dataset kind | Parquet | Athena (table) | Athena (view) |
//! |---|---|---|---|
//! | string (email, uuid), enum | Utf8 | `string` | `varchar` |
//! | string, format date-time | Timestamp(µs, UTC) | `timestamp` | `timestamp(3)` |
//! | string, format date | Date32 | `date` | `date` |
//! | integer | Int64 | `bigint` | `bigint` |
//! | number | Float64 | `double` | `double` |
//! | boolean | Boolean | `boolean` | `boolean` |
//! | object | Struct | `struct<…>` | `row(…)` |
//! | array | List | `array<…>` | `array(…)` |
//!
//! ```
//! use sluice_api::{Dataset, catalog::Table};
//!
//! let d = Dataset::from_toml("d.toml", "[dataset]\nname = \"bird-counts\"\nversion = 1\n[fields.n]\ntype = \"integer\"\n").unwrap();
//! let t = Table::new(&d, "s3://b/lake/").unwrap();
//! assert_eq!((t.name.as_str(), t.view.as_str()), ("bird_counts_objects", "bird_counts"));
//! assert_eq!(t.columns[0].hive_type, "bigint");
//! assert_eq!(t.location, "s3://b/lake/bird-counts/");
//! assert!(t.ddl("sluice").contains("'projection.dt.type'='date'"));
//! assert!(t.view_sql().contains("row_number() OVER (PARTITION BY \"dt\", \"_event_id\", \"_row\")"));
//! ```

use arrow_schema::DataType;
use base64::Engine as _;

use crate::dataset::{Dataset, Field, Kind};
use crate::lake::{EVENT_ID, ROW};

/// The partition column: the UTC day the API received the request (`dt=YYYY-MM-DD`).
pub const PARTITION: &str = "dt";

/// The first day partition projection enumerates; queries without a `dt` filter read from it on.
pub const FIRST_DAY: &str = "2024-01-01";

/// The suffix of a dataset's table; the dataset's own name is its view's.
pub const OBJECTS_SUFFIX: &str = "_objects";

/// The view's column numbering the copies of a record (never in its output).
const COPY: &str = "_copy";

/// A column: its name and its Athena (Hive DDL) type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub hive_type: String,
    /// The type in a view's definition (Trino's names).
    pub view_type: String,
}

/// A dataset that cannot be an Athena table as it is declared.
#[derive(Debug, thiserror::Error)]
#[error("dataset {dataset}: {message}")]
pub struct CatalogError {
    pub dataset: String,
    pub message: String,
}

/// A dataset's Glue table and the view analysts query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The table over the objects: the dataset's name with `-` as `_` (Athena's names are
    /// `[a-z0-9_]`), then [`OBJECTS_SUFFIX`].
    pub name: String,
    /// The view that keeps one copy of each record: the dataset's name with `-` as `_`.
    pub view: String,
    /// The dataset's columns, then `_event_id`, `_row`, `_received_at`, `_schema_version`.
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
                view_type: view_type(f.data_type()),
            })
            .collect();
        let view = athena_name(&d.name);
        Ok(Table {
            name: format!("{view}{OBJECTS_SUFFIX}"),
            view,
            columns,
            location: format!("{lake}{}/", d.name),
            description: d.description.clone(),
        })
    }

    /// The table properties: Parquet, and partition projection over `dt` by day from
    /// [`FIRST_DAY`] to now, each day's objects under `<location>dt=<day>/`.
    pub fn properties(&self) -> Vec<(String, String)> {
        let mut p = vec![
            ("classification".to_owned(), "parquet".to_owned()),
            ("parquet.compression".to_owned(), "SNAPPY".to_owned()),
        ];
        p.extend(projection(&self.location));
        p
    }

    /// The view's query, in the SQL both Athena (Trino) and DataFusion read: every column of the
    /// table and `dt`, one row per `(dt, _event_id, _row)`. The window is partitioned by `dt`, so
    /// a filter on `dt` still prunes partitions.
    pub fn view_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| quoted(&c.name))
            .chain([quoted(PARTITION)])
            .collect();
        format!(
            "SELECT {columns} FROM (SELECT *, row_number() OVER (PARTITION BY {dt}, {event}, {row}) AS {copy} FROM {table}) WHERE {copy} = 1",
            columns = columns.join(", "),
            dt = quoted(PARTITION),
            event = quoted(EVENT_ID),
            row = quoted(ROW),
            copy = quoted(COPY),
            table = quoted(&self.name),
        )
    }

    /// The view as Athena stores it in Glue: the query, the database and each column's Trino
    /// type (the template gives it with `${LakeDatabaseName}` for the database).
    pub fn glue_view(&self, database: &str) -> serde_json::Value {
        let columns: Vec<serde_json::Value> = self
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.view_type.as_str()))
            .chain([(PARTITION, "varchar")])
            .map(|(name, ty)| serde_json::json!({"name": name, "type": ty}))
            .collect();
        serde_json::json!({
            "originalSql": self.view_sql(),
            "catalog": "awsdatacatalog",
            "schema": database,
            "columns": columns,
        })
    }

    /// [`Table::glue_view`] as a Glue table's `ViewOriginalText`: `/* Presto View: <base64> */`.
    pub fn glue_view_text(&self, database: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(self.glue_view(database).to_string());
        format!("/* Presto View: {encoded} */")
    }

    /// Athena DDL, in `database`: `CREATE EXTERNAL TABLE IF NOT EXISTS` for the table, then
    /// `CREATE OR REPLACE VIEW` for the view (Athena runs one statement per query).
    pub fn ddl(&self, database: &str) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("  `{}` {}", c.name, c.hive_type))
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
             TBLPROPERTIES (\n{properties}\n);\n\n\
             CREATE OR REPLACE VIEW {view_database}.{view} AS\n{sql};\n",
            name = self.name,
            columns = columns.join(",\n"),
            location = self.location,
            properties = property_lines(&self.properties()),
            view_database = quoted(database),
            view = quoted(&self.view),
            sql = self.view_sql(),
        )
    }
}

/// Partition projection over `dt` by day from [`FIRST_DAY`] to now, each day's objects under
/// `<location>dt=<day>/`.
fn projection(location: &str) -> Vec<(String, String)> {
    [
        ("projection.enabled", "true".to_owned()),
        ("projection.dt.type", "date".to_owned()),
        ("projection.dt.format", "yyyy-MM-dd".to_owned()),
        ("projection.dt.range", format!("{FIRST_DAY},NOW")),
        ("projection.dt.interval", "1".to_owned()),
        ("projection.dt.interval.unit", "DAYS".to_owned()),
        (
            "storage.location.template",
            format!("{location}{PARTITION}=${{{PARTITION}}}/"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `'k'='v'` lines for a DDL statement.
fn property_lines(properties: &[(String, String)]) -> String {
    properties
        .iter()
        .map(|(k, v)| format!("  '{k}'='{v}'"))
        .collect::<Vec<_>>()
        .join(",\n")
}

/// The suffix of an ingest source's raw table.
pub const RAW_SUFFIX: &str = "_raw";

/// An ingest source's raw CSV as Athena and `sluice query` read it: what the API returned,
/// flattened, before any transform.
///
/// Athena's CSV reader maps columns by position, so the columns are the source's published
/// list (`state/<source>.columns.json`), in the order every raw object's header keeps: an older
/// object with fewer columns reads NULL for the later ones. Every column is `string`: the
/// values are the API's text, exact numbers included. A column named `dt` is called `dt_raw`
/// here (`dt` is the partition).
///
/// ```
/// use sluice_api::catalog::RawTable;
///
/// let t = RawTable::new("hotmart-sales", vec!["id".into(), "purchase_price_value".into()], "s3://b/raw/");
/// assert_eq!(t.name, "hotmart_sales_raw");
/// assert_eq!(t.location, "s3://b/raw/hotmart-sales/");
/// let ddl = t.ddl("sluice");
/// assert!(ddl.contains("`purchase_price_value` string"));
/// assert!(ddl.contains("'skip.header.line.count'='1'"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTable {
    /// The source's name, `[a-z0-9_]` (others as `_`), then [`RAW_SUFFIX`].
    pub name: String,
    pub source: String,
    pub columns: Vec<String>,
    /// `s3://<bucket>/<raw prefix><source>/`, with a trailing `/`.
    pub location: String,
}

/// A dataset's or a source's name as Athena can name a table: lower case, `[a-z0-9_]`, any
/// other character as `_` (Glue folds names to lower case; a `-` would need quoting).
///
/// ```
/// assert_eq!(sluice_api::catalog::athena_name("Hotmart-Sales.v2"), "hotmart_sales_v2");
/// ```
pub fn athena_name(name: &str) -> String {
    name.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect()
}

impl RawTable {
    /// The raw table of `source` under `raw` (`s3://<bucket>/<raw prefix>`, trailing `/`).
    pub fn new(source: &str, columns: Vec<String>, raw: &str) -> RawTable {
        let mut columns = columns;
        // Positions are what Athena maps, so a column named like the partition can be renamed.
        if let Some(i) = columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(PARTITION))
        {
            let mut name = format!("{PARTITION}{RAW_SUFFIX}");
            while columns.contains(&name) {
                name.push('_');
            }
            columns[i] = name;
        }
        RawTable {
            name: format!("{}{RAW_SUFFIX}", athena_name(source)),
            source: source.to_owned(),
            columns,
            location: format!("{raw}{source}/"),
        }
    }

    /// The table properties: CSV with one header line, and partition projection over `dt`.
    pub fn properties(&self) -> Vec<(String, String)> {
        let mut p = vec![
            ("classification".to_owned(), "csv".to_owned()),
            ("skip.header.line.count".to_owned(), "1".to_owned()),
        ];
        p.extend(projection(&self.location));
        p
    }

    /// Athena DDL, in `database`: `DROP TABLE IF EXISTS`, then `CREATE EXTERNAL TABLE` (the
    /// columns grow as the source does, so the table is replaced; dropping an external table
    /// deletes no object).
    pub fn ddl(&self, database: &str) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("  `{}` string", c.replace('`', "``")))
            .collect();
        format!(
            "DROP TABLE IF EXISTS `{database}`.`{name}`;\n\n\
             CREATE EXTERNAL TABLE `{database}`.`{name}` (\n{columns}\n)\n\
             COMMENT 'The raw CSV of ingest source {source}'\n\
             PARTITIONED BY (`{PARTITION}` string)\n\
             ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'\n\
             WITH SERDEPROPERTIES ('separatorChar'=',', 'quoteChar'='\"')\n\
             STORED AS TEXTFILE\n\
             LOCATION '{location}'\n\
             TBLPROPERTIES (\n{properties}\n);\n",
            name = self.name,
            source = self.source.replace('\'', "''"),
            columns = columns.join(",\n"),
            location = self.location,
            properties = property_lines(&self.properties()),
        )
    }
}

/// A name in double quotes, as Trino and DataFusion read it (`"` doubled).
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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

/// The Trino name of an Arrow type the lake writes, as a view's column types are given.
pub fn view_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "varchar".into(),
        // The Hive connector reads Parquet timestamps at millisecond precision by default.
        DataType::Timestamp(..) => "timestamp(3)".into(),
        DataType::Int32 => "integer".into(),
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.name(), view_type(f.data_type())))
                .collect();
            format!("row({})", inner.join(", "))
        }
        DataType::List(item) => format!("array({})", view_type(item.data_type())),
        other => hive_type(other),
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
        if folded == PARTITION {
            return Err(refuse(format!(
                "field {:?} is the partition column's name in Athena",
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
                ("_row", "int"),
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
        assert!(ddl.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `sluice`.`t_objects` ("));
        assert!(ddl.contains("PARTITIONED BY (`dt` string)"));
        assert!(
            ddl.contains("CREATE OR REPLACE VIEW \"sluice\".\"t\" AS\nSELECT \"first name\", ")
        );
    }

    #[test]
    fn the_view_keeps_one_copy_of_each_record_and_every_column() {
        let d = dataset("[fields.\"say \\\"hi\\\"\"]\ntype = \"string\"\n");
        let t = Table::new(&d, "s3://b/lake/").unwrap();
        assert_eq!(
            t.view_sql(),
            "SELECT \"say \"\"hi\"\"\", \"_event_id\", \"_row\", \"_received_at\", \"_schema_version\", \"dt\" \
             FROM (SELECT *, row_number() OVER (PARTITION BY \"dt\", \"_event_id\", \"_row\") AS \"_copy\" \
             FROM \"t_objects\") WHERE \"_copy\" = 1"
        );
    }

    #[test]
    fn the_glue_view_names_the_query_and_trinos_types() {
        let d = Dataset::from_path(std::path::Path::new("../../datasets/unicorns.toml")).unwrap();
        let t = Table::new(&d, "s3://b/lake/").unwrap();
        let text = t.glue_view_text("sluice");
        let encoded = text
            .strip_prefix("/* Presto View: ")
            .and_then(|s| s.strip_suffix(" */"))
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(json["originalSql"], t.view_sql());
        assert_eq!(
            (&json["catalog"], &json["schema"]),
            (&"awsdatacatalog".into(), &"sluice".into())
        );
        let types: Vec<(&str, &str)> = json["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
            .collect();
        assert_eq!(types[5], ("sighted_at", "timestamp(3)"));
        assert_eq!(types[6], ("location", "row(lat double, lon double)"));
        assert_eq!(types[7], ("tags", "array(varchar)"));
        assert_eq!(types.last(), Some(&("dt", "varchar")));
        assert_eq!(types.len(), t.columns.len() + 1);
    }

    #[test]
    fn a_field_named_like_the_partition_is_refused() {
        let d = dataset("[fields.DT]\ntype = \"string\"\n");
        let e = Table::new(&d, "s3://b/").unwrap_err().to_string();
        assert_eq!(
            e,
            "dataset t: field \"DT\" is the partition column's name in Athena"
        );
    }

    #[test]
    fn a_raw_table_is_text_in_the_sources_order_with_dt_renamed() {
        let cols = ["id", "dt", "dt_raw", "price"].map(String::from).to_vec();
        let t = RawTable::new("Hotmart.Sales", cols, "s3://b/raw/");
        assert_eq!(t.name, "hotmart_sales_raw");
        assert_eq!(t.columns, ["id", "dt_raw_", "dt_raw", "price"]);
        assert_eq!(t.location, "s3://b/raw/Hotmart.Sales/");
        let props: std::collections::BTreeMap<_, _> = t.properties().into_iter().collect();
        assert_eq!(
            props["storage.location.template"],
            "s3://b/raw/Hotmart.Sales/dt=${dt}/"
        );
        assert_eq!(props["skip.header.line.count"], "1");
        let ddl = t.ddl("db");
        assert!(ddl.starts_with("DROP TABLE IF EXISTS `db`.`hotmart_sales_raw`;"));
        let body = ddl.split_once('(').unwrap().1.split_once(')').unwrap().0;
        assert_eq!(
            body.trim(),
            "`id` string,\n  `dt_raw_` string,\n  `dt_raw` string,\n  `price` string"
        );
        assert!(ddl.contains("PARTITIONED BY (`dt` string)"));
        assert!(ddl.contains("'org.apache.hadoop.hive.serde2.OpenCSVSerde'"));
    }
}

//! The upsert plan: every statement the loader runs, generated from table, columns, key and guard,
//! with every identifier quoted. This is the "code generator" the tutorial's author wished for.
//!
//! ```
//! use sluice_transform::{ColumnType, PlanColumn, TableRef, UpsertPlan};
//!
//! let plan = UpsertPlan::new(
//!     TableRef::new("public", "sales"),
//!     vec![
//!         PlanColumn::new("purchase_transaction", ColumnType::Text),
//!         PlanColumn::new("status", ColumnType::Text),
//!         PlanColumn::new("approved_at", ColumnType::Timestamptz),
//!     ],
//!     vec!["purchase_transaction".into()],
//!     Some("approved_at".into()),
//! ).unwrap();
//! let sql = plan.upsert("sluice_stage");
//! assert!(sql.contains(r#"ON CONFLICT ("purchase_transaction") DO UPDATE SET"#));
//! assert!(sql.contains(r#"EXCLUDED."approved_at" >= t."approved_at""#));
//! ```

use std::collections::HashSet;

use crate::copy_format::CopyFormat;
use crate::types::ColumnType;

/// The staging table's line-number column: the last line of a file wins for a key.
pub const LINE_COLUMN: &str = "_sluice_line";

/// Quotes an identifier: `a"b` → `"a""b"`.
pub fn quote_ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The comment on a column whose type sluice inferred from the data (see
/// [`UpsertPlan::mark_inferred`]).
pub const INFERRED_COMMENT: &str = "sluice: type inferred from the data; widened when a later value does not fit (schema = evolve)";

/// A schema-qualified table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
}

impl TableRef {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }
    /// `"schema"."name"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// One target column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanColumn {
    pub name: String,
    pub ty: ColumnType,
    /// Lineage (load time, source object): written with a real change, but no change by itself,
    /// so a redelivered row with new lineage still counts as unchanged.
    pub lineage: bool,
    /// The existing column's own type (`format_type`: `citext`, `numeric(12,2)`, …), when the
    /// table exists. Key columns are staged with it, so the de-duplication compares keys as
    /// the table's unique index does.
    pub sql_type: Option<String>,
}

impl PlanColumn {
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        Self {
            name: name.into(),
            ty,
            lineage: false,
            sql_type: None,
        }
    }
    /// Marks the column as lineage.
    pub fn lineage(mut self) -> Self {
        self.lineage = true;
        self
    }

    /// Whether two values are equal exactly when their texts (as the row conversion writes
    /// them) are: plain `text`/`varchar`, and the types whose conversion is canonical. Not
    /// `numeric` (`1.0` = `1.00`), `double`, `jsonb`, timestamps (Postgres rounds to
    /// microseconds), `citext`, `char(n)` (padding) or a column of another type.
    ///
    /// ```
    /// use sluice_transform::{ColumnType, PlanColumn};
    ///
    /// assert!(PlanColumn::new("id", ColumnType::Text).exact());
    /// assert!(!PlanColumn::new("id", ColumnType::Numeric).exact());
    /// let mut ci = PlanColumn::new("email", ColumnType::Text);
    /// ci.sql_type = Some("citext".into());
    /// assert!(!ci.exact());
    /// ```
    pub fn exact(&self) -> bool {
        let own = self.sql_type.as_deref();
        match self.ty {
            ColumnType::Text => {
                own.is_none_or(|t| t == "text" || t.starts_with("character varying"))
            }
            ColumnType::Bigint | ColumnType::Integer => {
                own.is_none_or(|t| matches!(t, "bigint" | "integer" | "smallint"))
            }
            ColumnType::Boolean | ColumnType::Uuid | ColumnType::Date => {
                own.is_none_or(|t| t == self.ty.sql())
            }
            _ => false,
        }
    }

    /// The type to stage the column with: its own, or the one sluice gives it.
    fn staged_type(&self) -> &str {
        self.sql_type.as_deref().unwrap_or(self.ty.sql())
    }
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the key is empty: name at least one key column")]
    NoKey,
    #[error("key column {0:?} is not among the columns")]
    KeyNotAColumn(String),
    #[error("guard column {0:?} is not among the columns")]
    GuardNotAColumn(String),
    #[error("column {0:?} appears twice")]
    Duplicate(String),
    #[error("invalid identifier {0:?}: {1}")]
    BadIdentifier(String, &'static str),
}

fn check_ident(s: &str) -> Result<(), PlanError> {
    if s.is_empty() {
        return Err(PlanError::BadIdentifier(s.into(), "empty"));
    }
    if s.contains('\0') {
        return Err(PlanError::BadIdentifier(s.into(), "contains NUL"));
    }
    if s.len() > 63 {
        return Err(PlanError::BadIdentifier(
            s.into(),
            "longer than 63 bytes (Postgres would truncate it)",
        ));
    }
    if s == LINE_COLUMN {
        return Err(PlanError::BadIdentifier(
            s.into(),
            "reserved for the staging table",
        ));
    }
    Ok(())
}

/// The staged rows' count where every staged key is distinct: bound by the caller.
const STAGED_ROWS: &str = "SELECT $1::bigint";

/// Table, typed columns, key and optional ordering guard, and the SQL that follows from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertPlan {
    pub table: TableRef,
    pub columns: Vec<PlanColumn>,
    pub key: Vec<String>,
    pub guard: Option<String>,
    /// The `fillfactor` of a table [`create_table`](Self::create_table) creates (Postgres'
    /// default, 100, when `None`).
    pub fillfactor: Option<u8>,
    /// The column holding each row's hash of its compared values (a lineage column the
    /// mapping fills: `kind = "row_hash"`). Where set, a row the table holds with the same
    /// hash is unchanged, without comparing each column.
    pub row_hash: Option<String>,
}

impl UpsertPlan {
    pub fn new(
        table: TableRef,
        columns: Vec<PlanColumn>,
        key: Vec<String>,
        guard: Option<String>,
    ) -> Result<Self, PlanError> {
        check_ident(&table.schema)?;
        check_ident(&table.name)?;
        let mut seen = HashSet::new();
        for c in &columns {
            check_ident(&c.name)?;
            if !seen.insert(c.name.as_str()) {
                return Err(PlanError::Duplicate(c.name.clone()));
            }
        }
        if key.is_empty() {
            return Err(PlanError::NoKey);
        }
        for k in &key {
            if !seen.contains(k.as_str()) {
                return Err(PlanError::KeyNotAColumn(k.clone()));
            }
        }
        if let Some(g) = &guard
            && !seen.contains(g.as_str())
        {
            return Err(PlanError::GuardNotAColumn(g.clone()));
        }
        Ok(Self {
            table,
            columns,
            key,
            guard,
            fillfactor: None,
            row_hash: None,
        })
    }

    /// The plan, with `column` holding each row's hash of its compared values (see
    /// [`row_hash`](Self::row_hash)). The column must be one of the plan's lineage columns,
    /// or it is ignored: its own value is no change.
    pub fn with_row_hash(mut self, column: Option<String>) -> Self {
        self.row_hash = column.filter(|h| {
            self.columns
                .iter()
                .any(|c| &c.name == h && c.lineage && c.ty == ColumnType::Uuid)
        });
        self
    }

    /// The plan, creating its table with this `fillfactor` (10 to 100, as the mapping checks):
    /// inserts fill each page only so far, so that an update finds room on the row's own page.
    pub fn with_fillfactor(mut self, fillfactor: Option<u8>) -> Self {
        self.fillfactor = fillfactor;
        self
    }

    fn col_list(&self, prefix: &str) -> String {
        self.columns
            .iter()
            .map(|c| format!("{prefix}{}", quote_ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn key_list(&self) -> String {
        self.key
            .iter()
            .map(|k| quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn non_key(&self) -> impl Iterator<Item = &PlanColumn> {
        self.columns.iter().filter(|c| !self.key.contains(&c.name))
    }

    /// `CREATE TABLE IF NOT EXISTS` with the key as PRIMARY KEY, and the fillfactor if set.
    pub fn create_table(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let not_null = if self.key.contains(&c.name) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {}{not_null}", quote_ident(&c.name), c.ty.sql())
            })
            .collect();
        let with = match self.fillfactor {
            Some(f) => format!(" WITH (fillfactor = {f})"),
            None => String::new(),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({})){with}",
            self.table.quoted(),
            cols.join(", "),
            self.key_list()
        )
    }

    /// `ALTER TABLE … ADD COLUMN IF NOT EXISTS` for each column not in `existing`.
    pub fn add_columns(&self, existing: &[String]) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| !existing.contains(&c.name))
            .map(|c| {
                format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                    self.table.quoted(),
                    quote_ident(&c.name),
                    c.ty.sql()
                )
            })
            .collect()
    }

    /// `COMMENT ON COLUMN` marking `column` as typed by inference ([`INFERRED_COMMENT`]): under
    /// `schema = "evolve"` a later value that does not fit widens it.
    pub fn mark_inferred(&self, column: &str) -> String {
        format!(
            "COMMENT ON COLUMN {}.{} IS '{INFERRED_COMMENT}'",
            self.table.quoted(),
            quote_ident(column)
        )
    }

    /// `ALTER COLUMN … TYPE` widening inferred column `column` to `to`. Values keep their text:
    /// a number's digits as they are, and a timestamp in ISO 8601 (`to_json`, in the session's
    /// time zone) when it becomes text.
    ///
    /// ```
    /// use sluice_transform::{ColumnType, Mapping};
    ///
    /// let m = Mapping::from_toml("[table]\nname = \"t\"\nkey = [\"id\"]\n").unwrap();
    /// let plan = m.bind(&["id", "n"], &[ColumnType::Bigint; 2]).unwrap().plan().clone();
    /// assert_eq!(
    ///     plan.widen_column("n", ColumnType::Text),
    ///     r#"ALTER TABLE "public"."t" ALTER COLUMN "n" TYPE text USING to_json("n") #>> '{}'"#
    /// );
    /// ```
    pub fn widen_column(&self, column: &str, to: ColumnType) -> String {
        let c = quote_ident(column);
        let using = match to {
            ColumnType::Text => format!("to_json({c}) #>> '{{}}'"),
            other => format!("{c}::{}", other.sql()),
        };
        format!(
            "ALTER TABLE {} ALTER COLUMN {c} TYPE {} USING {using}",
            self.table.quoted(),
            to.sql()
        )
    }

    /// The index to create when the target table has no unique constraint on the key.
    pub fn unique_index(&self) -> String {
        format!(
            "CREATE UNIQUE INDEX ON {} ({})",
            self.table.quoted(),
            self.key_list()
        )
    }

    /// A temporary staging table typed like the target (key columns with the table's own
    /// types), plus the line number; dropped at commit.
    pub fn create_staging(&self, staging: &str) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let ty = if self.key.contains(&c.name) {
                    c.staged_type()
                } else {
                    c.ty.sql()
                };
                format!("{} {ty}", quote_ident(&c.name))
            })
            .collect();
        format!(
            "CREATE TEMP TABLE {} ({} bigint NOT NULL, {}) ON COMMIT DROP",
            quote_ident(staging),
            quote_ident(LINE_COLUMN),
            cols.join(", ")
        )
    }

    /// `COPY` of rows in text format ([`CopyText`](crate::CopyText): the line number first,
    /// then the columns) into the staging table.
    pub fn copy_staging(&self, staging: &str) -> String {
        format!(
            "COPY {} ({}, {}) FROM STDIN",
            quote_ident(staging),
            quote_ident(LINE_COLUMN),
            self.col_list("")
        )
    }

    /// The greatest key the table holds, and whether its collation orders text as bytes do (C,
    /// POSIX, C.UTF-8, libc's): then any key above it in byte order is new, and can be
    /// `COPY`ed straight into the table. For a single exact text key only; `None` otherwise.
    /// Binds the table's quoted name (`$1`) and the key's name (`$2`); returns one row:
    /// `ceiling` (text, NULL for an empty table) and `byte_order` (boolean). The greatest key is
    /// taken in the column's own collation (the key index's order); only the result is labelled
    /// `"C"`, so the result type stays the same when the column's collation changes and the
    /// statement can stay prepared.
    ///
    /// ```
    /// use sluice_transform::{ColumnType, PlanColumn, TableRef, UpsertPlan};
    ///
    /// let plan = UpsertPlan::new(
    ///     TableRef::new("public", "sales"),
    ///     vec![PlanColumn::new("id", ColumnType::Text), PlanColumn::new("v", ColumnType::Bigint)],
    ///     vec!["id".into()],
    ///     None,
    /// )
    /// .unwrap();
    /// assert!(plan.key_ceiling().unwrap().starts_with(r#"SELECT max(t."id") COLLATE "C" AS ceiling"#));
    /// ```
    pub fn key_ceiling(&self) -> Option<String> {
        let [key] = self.key.as_slice() else {
            return None;
        };
        if !self.text_key() {
            return None;
        }
        const BYTES: &str = "('C', 'POSIX', 'C.UTF-8', 'C.utf8')";
        Some(format!(
            "SELECT max(t.{key}) COLLATE \"C\" AS ceiling, \
             (SELECT CASE WHEN c.collname = 'default' \
               THEN coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') = 'c' AND d.datcollate IN {BYTES} \
               ELSE c.collprovider = 'c' AND c.collcollate IN {BYTES} END \
              FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation \
              JOIN pg_database d ON d.datname = current_database() \
              WHERE a.attrelid = $1::regclass AND a.attname = $2) AS byte_order \
             FROM {table} t",
            key = quote_ident(key),
            table = self.table.quoted(),
        ))
    }

    /// The format the rows can be sent in: binary when every column's binary form is the one
    /// sluice writes for its type (the table's own type is that type exactly, or the table does
    /// not exist yet), else text. Text and binary load the same values.
    ///
    /// ```
    /// use sluice_transform::{ColumnType, CopyFormat, PlanColumn, TableRef, UpsertPlan};
    ///
    /// let id = PlanColumn::new("id", ColumnType::Text);
    /// let mut n = PlanColumn::new("n", ColumnType::Integer);
    /// let plan = |n: PlanColumn| {
    ///     UpsertPlan::new(TableRef::new("public", "t"), vec![id.clone(), n], vec!["id".into()], None)
    ///         .unwrap()
    /// };
    /// let binary = CopyFormat::Binary([ColumnType::Text, ColumnType::Integer].into());
    /// assert_eq!(plan(n.clone()).copy_format(), binary);
    /// n.sql_type = Some("smallint".into()); // the table's column is narrower: text
    /// assert_eq!(plan(n).copy_format(), CopyFormat::Text);
    /// ```
    pub fn copy_format(&self) -> CopyFormat {
        let exact = |c: &PlanColumn| c.sql_type.as_deref().is_none_or(|t| c.ty.is_pg(t));
        if self.columns.iter().all(exact) {
            CopyFormat::Binary(self.columns.iter().map(|c| c.ty).collect())
        } else {
            CopyFormat::Text
        }
    }

    /// `COPY` of rows in text format ([`CopyText`](crate::CopyText)) straight into the target
    /// table (the loader's direct path for new keys); [`CopyFormat::options`] says what to
    /// append for another format.
    pub fn copy_target(&self) -> String {
        format!(
            "COPY {} ({}) FROM STDIN",
            self.table.quoted(),
            self.col_list("")
        )
    }

    /// The key in lock order: byte order (`COLLATE "C"`) for exact text keys, so every loader
    /// takes row locks in the same order whatever the database's collation (and sorts faster).
    /// Other text keys (`citext`) keep their own equality, the unique index's.
    fn lock_order(&self) -> String {
        self.key
            .iter()
            .map(|k| {
                let text = self
                    .columns
                    .iter()
                    .any(|c| &c.name == k && c.ty == ColumnType::Text && c.exact());
                if text {
                    format!("{} COLLATE \"C\"", quote_ident(k))
                } else {
                    quote_ident(k)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn on_conflict(&self) -> String {
        let keys = self.key_list();
        let compared: Vec<&PlanColumn> = self.non_key().filter(|c| !c.lineage).collect();
        if compared.is_empty() {
            return format!("ON CONFLICT ({keys}) DO NOTHING");
        }
        let set: Vec<String> = self
            .non_key()
            .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(&c.name)))
            .collect();
        let t: Vec<String> = compared
            .iter()
            .map(|c| format!("t.{}", quote_ident(&c.name)))
            .collect();
        let e: Vec<String> = compared
            .iter()
            .map(|c| format!("EXCLUDED.{}", quote_ident(&c.name)))
            .collect();
        let mut cond = format!(
            "ROW({}) IS DISTINCT FROM ROW({})",
            t.join(", "),
            e.join(", ")
        );
        if let Some(g) = &self.guard {
            let g = quote_ident(g);
            cond = format!("{cond} AND (t.{g} IS NULL OR EXCLUDED.{g} >= t.{g})");
        }
        format!(
            "ON CONFLICT ({keys}) DO UPDATE SET {} WHERE {cond}",
            set.join(", ")
        )
    }

    /// One statement: the last line per key wins, rows go in key order (a deterministic lock
    /// order across concurrent loaders), unchanged rows are not rewritten (lineage columns
    /// don't count as a change), the guard holds back older versions. Returns one row:
    /// `inserted`, `updated`, `distinct_rows` (bigint).
    pub fn upsert(&self, staging: &str) -> String {
        let cols = self.col_list("");
        let order = self.lock_order();
        let stage = quote_ident(staging);
        let line = quote_ident(LINE_COLUMN);
        self.counted(
            &format!(
                "SELECT {cols} FROM (SELECT DISTINCT ON ({order}) {cols} FROM {stage} ORDER BY {order}, {line} DESC) src "
            ),
            &format!(
                "SELECT count(*) FROM (SELECT 1 FROM {stage} GROUP BY {}) d",
                self.key_list()
            ),
        )
    }

    /// `rows` (a `SELECT` of the columns, ending in a space) into the table under the conflict
    /// clause, with the result row every upsert returns: `inserted`, `updated`, and
    /// `distinct_rows` counted by `distinct_rows` (a `SELECT count(*)`, or [`STAGED_ROWS`]).
    fn counted(&self, rows: &str, distinct_rows: &str) -> String {
        format!(
            "WITH up AS (INSERT INTO {table} AS t ({cols}) \
             {rows}{conflict} RETURNING (xmax = 0) AS inserted) \
             SELECT count(*) FILTER (WHERE inserted) AS inserted, \
             count(*) FILTER (WHERE NOT inserted) AS updated, \
             ({distinct_rows}) AS distinct_rows FROM up",
            table = self.table.quoted(),
            cols = self.col_list(""),
            conflict = self.on_conflict(),
        )
    }

    /// True when every key column is exact text ([`PlanColumn::exact`]): then byte order is
    /// the lock order, and a file whose keys already ascend in byte order needs no sort
    /// ([`upsert_unique`](Self::upsert_unique)).
    pub fn text_key(&self) -> bool {
        self.key.iter().all(|k| {
            self.columns
                .iter()
                .any(|c| &c.name == k && c.ty == ColumnType::Text && c.exact())
        })
    }

    /// True when keys equal as values are equal as text ([`PlanColumn::exact`] for every key
    /// column): only then may a loader that saw no key text twice skip the de-duplication.
    /// Otherwise `1.0` and `1.00`, or `ABC` and `abc` in a `citext` key, reach `ON CONFLICT`
    /// together and Postgres refuses the statement (21000).
    pub fn exact_key(&self) -> bool {
        self.key
            .iter()
            .all(|k| self.columns.iter().any(|c| &c.name == k && c.exact()))
    }

    /// Gives each column the existing table's own type (`type_of` a column name, as the
    /// catalog's `format_type` prints it).
    pub fn use_table_types<'a>(&mut self, type_of: impl Fn(&str) -> Option<&'a str>) {
        for c in &mut self.columns {
            c.sql_type = type_of(&c.name).map(str::to_owned);
        }
    }

    /// Whether [`upsert_unique_changed`](Self::upsert_unique_changed) may be used: every
    /// compared column is staged in the table's own type, so the staged value is the one the
    /// `INSERT` would write (a cast to the table's type, `varchar(5)` say, could turn a value
    /// the `INSERT` refuses into one equal to the stored value).
    pub fn can_skip_unchanged_first(&self) -> bool {
        self.unchanged_by()
            .iter()
            .all(|c| c.sql_type.as_deref().is_none_or(|t| c.ty.is_pg(t)))
    }

    /// How many of the first `n` staged rows the table holds already, unchanged, and how many
    /// were looked at: `SELECT unchanged, sampled`. A cheap probe (`n` index lookups) for a
    /// file that is mostly a re-fetch.
    pub fn probe_unchanged(&self, staging: &str, n: u32) -> String {
        format!(
            "SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM {table} e WHERE {same})) AS unchanged, \
             count(*) AS sampled FROM (SELECT {cols} FROM {stage} LIMIT {n}) s",
            table = self.table.quoted(),
            same = self.held_unchanged(),
            cols = self.col_list(""),
            stage = quote_ident(staging),
        )
    }

    /// The columns that say, before the upsert, whether the table holds a staged row
    /// unchanged (the anti-join's and the loader's read-back): the row hash where the plan has
    /// one, else the compared columns (not key, not lineage).
    pub fn unchanged_by(&self) -> Vec<&PlanColumn> {
        let hash = self.row_hash.as_ref();
        match hash.and_then(|h| self.columns.iter().find(|c| &c.name == h)) {
            Some(h) => vec![h],
            None => self.non_key().filter(|c| !c.lineage).collect(),
        }
    }

    /// The condition that a table row `e` holds staged row `s` unchanged: the same key, and
    /// the same row hash where the plan has one, else the compared columns (not lineage) not
    /// distinct. A stored hash that is NULL (a row written before the column existed) or
    /// differs leaves the row to the upsert's own column-by-column test.
    fn held_unchanged(&self) -> String {
        let mut same: Vec<String> = self
            .key
            .iter()
            .map(|k| format!("e.{0} = s.{0}", quote_ident(k)))
            .collect();
        let compared = self.unchanged_by();
        if let [h] = compared.as_slice()
            && self.row_hash.as_ref() == Some(&h.name)
        {
            // `=`, never NULL on the staged side: the join can hash on it.
            same.push(format!("e.{0} = s.{0}", quote_ident(&h.name)));
        } else if !compared.is_empty() {
            let side = |p: &str| {
                compared
                    .iter()
                    .map(|c| format!("{p}.{}", quote_ident(&c.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            same.push(format!(
                "ROW({}) IS NOT DISTINCT FROM ROW({})",
                side("e"),
                side("s")
            ));
        }
        same.join(" AND ")
    }

    /// [`upsert_unique`](Self::upsert_unique) that first leaves out the staged rows the table
    /// already holds unchanged (an anti-join on the key and the compared columns), so they are
    /// neither locked nor written: `ON CONFLICT … DO UPDATE … WHERE` locks each conflicting row
    /// before it tests it, which writes WAL for a row that does not change. For a re-fetch of
    /// rows the table holds; slower when most rows are new (the join finds nothing to leave
    /// out). Same result row. Only where [`can_skip_unchanged_first`](Self::can_skip_unchanged_first).
    /// The rows left are always sorted: a join need not keep the staged order (Postgres 16 may
    /// hash the staged side of an anti-join), and the sort is what keeps the lock order.
    /// Binds `$1`, the number of staged rows, as [`upsert_unique`](Self::upsert_unique) does.
    pub fn upsert_unique_changed(&self, staging: &str) -> String {
        let stage = quote_ident(staging);
        self.counted(
            &format!(
                "SELECT {s_cols} FROM {stage} s WHERE NOT EXISTS (SELECT 1 FROM {table} e WHERE {same}) ORDER BY {order} ",
                s_cols = self.col_list("s."),
                table = self.table.quoted(),
                same = self.held_unchanged(),
                order = self.lock_order(),
            ),
            STAGED_ROWS,
        )
    }

    /// [`upsert`](Self::upsert) for a staging table whose keys are known to be unique (the
    /// loader saw no key twice): no de-duplication step. `presorted`: the rows were staged in
    /// strictly ascending byte order of a text key, which is already the lock order, so they go
    /// in as staged, without a sort. Same result row, whose `distinct_rows` is the number of
    /// staged rows, bound as `$1` (the caller's `COPY` counted them: no scan to count them
    /// again).
    ///
    /// ```
    /// # use sluice_transform::{ColumnType, PlanColumn, TableRef, UpsertPlan};
    /// let plan = UpsertPlan::new(
    ///     TableRef::new("public", "t"),
    ///     vec![PlanColumn::new("id", ColumnType::Text), PlanColumn::new("v", ColumnType::Integer)],
    ///     vec!["id".into()],
    ///     None,
    /// )
    /// .unwrap();
    /// let sql = plan.upsert_unique("stage", true);
    /// assert!(sql.contains(r#"FROM "stage" ON CONFLICT ("id") DO UPDATE"#));
    /// assert!(sql.ends_with("(SELECT $1::bigint) AS distinct_rows FROM up"));
    /// ```
    pub fn upsert_unique(&self, staging: &str, presorted: bool) -> String {
        let order = if presorted {
            String::new()
        } else {
            format!("ORDER BY {} ", self.lock_order())
        };
        let stage = quote_ident(staging);
        self.counted(
            &format!("SELECT {} FROM {stage} {order}", self.col_list("")),
            STAGED_ROWS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(guard: Option<&str>) -> UpsertPlan {
        UpsertPlan::new(
            TableRef::new("public", "sales"),
            vec![
                PlanColumn::new("id", ColumnType::Text),
                PlanColumn::new("we\"ird col", ColumnType::Numeric),
                PlanColumn::new("v", ColumnType::Bigint),
            ],
            vec!["id".into()],
            guard.map(Into::into),
        )
        .unwrap()
    }

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        let p = plan(None);
        assert_eq!(
            p.create_table(),
            r#"CREATE TABLE IF NOT EXISTS "public"."sales" ("id" text NOT NULL, "we""ird col" numeric, "v" bigint, PRIMARY KEY ("id"))"#
        );
        assert_eq!(
            p.add_columns(&["id".into(), "v".into()]),
            [r#"ALTER TABLE "public"."sales" ADD COLUMN IF NOT EXISTS "we""ird col" numeric"#]
        );
        assert_eq!(
            p.unique_index(),
            r#"CREATE UNIQUE INDEX ON "public"."sales" ("id")"#
        );
        assert!(
            p.create_staging("s")
                .starts_with(r#"CREATE TEMP TABLE "s" ("_sluice_line" bigint NOT NULL, "id" text"#)
        );
        assert_eq!(
            p.copy_target(),
            r#"COPY "public"."sales" ("id", "we""ird col", "v") FROM STDIN"#
        );
        assert_eq!(
            p.copy_staging("s"),
            r#"COPY "s" ("_sluice_line", "id", "we""ird col", "v") FROM STDIN"#
        );
    }

    #[test]
    fn upsert_unique_changed_leaves_out_unchanged_rows_first() {
        let mut p = plan(Some("v"));
        let sql = p.upsert_unique_changed("s");
        assert!(
            sql.contains(r#"SELECT s."id", s."we""ird col", s."v" FROM "s" s WHERE NOT EXISTS (SELECT 1 FROM "public"."sales" e WHERE e."id" = s."id" AND ROW(e."we""ird col", e."v") IS NOT DISTINCT FROM ROW(s."we""ird col", s."v")) ORDER BY "id" COLLATE "C" ON CONFLICT"#),
            "{sql}"
        );
        // The same conflict clause (guard, no-op test) and result row as upsert_unique.
        let unique = p.upsert_unique("s", false);
        let tail = |q: &str| q[q.find("ON CONFLICT").unwrap()..].to_owned();
        assert_eq!(tail(&sql), tail(&unique));
        assert!(p.can_skip_unchanged_first());
        assert_eq!(
            p.probe_unchanged("s", 1000),
            r#"SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM "public"."sales" e WHERE e."id" = s."id" AND ROW(e."we""ird col", e."v") IS NOT DISTINCT FROM ROW(s."we""ird col", s."v"))) AS unchanged, count(*) AS sampled FROM (SELECT "id", "we""ird col", "v" FROM "s" LIMIT 1000) s"#
        );
        // A compared column of another type in the table: the staged value is not the one the
        // INSERT would write, so no pre-filter.
        p.use_table_types(|c| (c == "v").then_some("numeric(5,0)"));
        assert!(!p.can_skip_unchanged_first());
        p.use_table_types(|c| (c == "v").then_some("bigint"));
        assert!(p.can_skip_unchanged_first());
    }

    #[test]
    fn a_row_hash_is_what_the_pre_filter_compares() {
        let cols = vec![
            PlanColumn::new("id", ColumnType::Text),
            PlanColumn::new("v", ColumnType::Jsonb),
            PlanColumn::new("h", ColumnType::Uuid).lineage(),
            PlanColumn::new("w", ColumnType::Uuid),
        ];
        let p =
            UpsertPlan::new(TableRef::new("public", "t"), cols, vec!["id".into()], None).unwrap();
        // Only a lineage uuid column can hold the hash.
        assert_eq!(p.clone().with_row_hash(Some("w".into())).row_hash, None);
        let mut p = p.with_row_hash(Some("h".into()));
        let sql = p.upsert_unique_changed("s");
        assert!(
            sql.contains(r#"WHERE NOT EXISTS (SELECT 1 FROM "public"."t" e WHERE e."id" = s."id" AND e."h" = s."h")"#),
            "{sql}"
        );
        // The upsert itself still compares the values: a row whose stored hash is NULL or
        // stale is not rewritten when its values are the same.
        let unique = p.upsert_unique("s", true);
        assert!(
            unique.contains(r#"ROW(t."v", t."w") IS DISTINCT FROM"#),
            "{unique}"
        );
        assert!(p.probe_unchanged("s", 10).contains(r#"AND e."h" = s."h")"#));
        // The compared columns' own types no longer matter; the hash column's does.
        p.use_table_types(|c| (c == "v").then_some("json"));
        assert!(p.can_skip_unchanged_first());
        p.use_table_types(|c| (c == "h").then_some("text"));
        assert!(!p.can_skip_unchanged_first());
    }

    #[test]
    fn upsert_has_last_wins_distinct_and_guard() {
        let sql = plan(Some("v")).upsert("s");
        assert!(sql.contains(r#"SELECT DISTINCT ON ("id" COLLATE "C") "id", "we""ird col", "v" FROM "s" ORDER BY "id" COLLATE "C", "_sluice_line" DESC"#), "{sql}");
        let unique = plan(Some("v")).upsert_unique("s", false);
        assert!(
            unique.contains(r#"FROM "s" ORDER BY "id" COLLATE "C" ON CONFLICT"#),
            "{unique}"
        );
        assert!(!unique.contains("DISTINCT ON"));
        let sorted = plan(Some("v")).upsert_unique("s", true);
        assert!(sorted.contains(r#"FROM "s" ON CONFLICT"#), "{sorted}");
        assert!(plan(None).text_key());
        assert!(sql.contains(r#"WHERE ROW(t."we""ird col", t."v") IS DISTINCT FROM ROW(EXCLUDED."we""ird col", EXCLUDED."v")"#));
        assert!(sql.contains(r#"AND (t."v" IS NULL OR EXCLUDED."v" >= t."v")"#));
        assert!(!plan(None).upsert("s").contains(">="));
    }

    #[test]
    fn lineage_columns_are_written_but_not_compared() {
        let p = UpsertPlan::new(
            TableRef::new("public", "t"),
            vec![
                PlanColumn::new("id", ColumnType::Text),
                PlanColumn::new("v", ColumnType::Text),
                PlanColumn::new("loaded_at", ColumnType::Timestamptz).lineage(),
            ],
            vec!["id".into()],
            None,
        )
        .unwrap();
        let sql = p.upsert("s");
        assert!(
            sql.contains(r#""loaded_at" = EXCLUDED."loaded_at""#),
            "{sql}"
        );
        assert!(
            sql.contains(r#"ROW(t."v") IS DISTINCT FROM ROW(EXCLUDED."v")"#),
            "{sql}"
        );
    }

    #[test]
    fn key_only_tables_do_nothing_on_conflict() {
        let p = UpsertPlan::new(
            TableRef::new("public", "k"),
            vec![PlanColumn::new("id", ColumnType::Text)],
            vec!["id".into()],
            None,
        )
        .unwrap();
        assert!(p.upsert("s").contains("ON CONFLICT (\"id\") DO NOTHING"));
    }

    #[test]
    fn invalid_plans_are_rejected() {
        let cols = || vec![PlanColumn::new("id", ColumnType::Text)];
        let t = || TableRef::new("public", "t");
        assert_eq!(
            UpsertPlan::new(t(), cols(), vec![], None),
            Err(PlanError::NoKey)
        );
        assert!(matches!(
            UpsertPlan::new(t(), cols(), vec!["x".into()], None),
            Err(PlanError::KeyNotAColumn(_))
        ));
        assert!(matches!(
            UpsertPlan::new(t(), cols(), vec!["id".into()], Some("g".into())),
            Err(PlanError::GuardNotAColumn(_))
        ));
        let dup = vec![
            PlanColumn::new("id", ColumnType::Text),
            PlanColumn::new("id", ColumnType::Text),
        ];
        assert!(matches!(
            UpsertPlan::new(t(), dup, vec!["id".into()], None),
            Err(PlanError::Duplicate(_))
        ));
        let line = vec![PlanColumn::new(LINE_COLUMN, ColumnType::Text)];
        assert!(UpsertPlan::new(t(), line, vec![LINE_COLUMN.into()], None).is_err());
    }
}

//! The named example queries in `queries/`: SQL that Athena (Trino) and DataFusion both read, over
//! the views the catalog defines. Each file is `<name>.sql`; its first `-- ` lines describe it.
//!
//! ```
//! let examples = sluice_query::examples::load("../../queries".as_ref()).unwrap();
//! let first = &examples[0];
//! assert!(!first.description.is_empty() && first.sql.contains("SELECT"));
//! ```

use std::path::Path;

/// One named query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The file's stem: `sluice query --example <name>`.
    pub name: String,
    /// Its leading `-- ` comment lines, joined.
    pub description: String,
    /// The whole file.
    pub sql: String,
}

/// Every `*.sql` in `dir`, by name.
pub fn load(dir: &Path) -> std::io::Result<Vec<Example>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let sql = std::fs::read_to_string(&path)?;
        let description = sql
            .lines()
            .map_while(|l| l.strip_prefix("-- "))
            .collect::<Vec<_>>()
            .join(" ");
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(Example {
            name,
            description,
            sql,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The example called `name` in `dir`.
pub fn find(dir: &Path, name: &str) -> std::io::Result<Option<Example>> {
    Ok(load(dir)?.into_iter().find(|e| e.name == name))
}

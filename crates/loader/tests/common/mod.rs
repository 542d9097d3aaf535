//! Shared by the loader's integration tests: a database and a bucket of the test's own, a
//! loader configured against them, the event fixtures from `events/`, and table readers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;
use sluice_loader::{Config, InvocationSummary, Loader, S3Store, handle};
use sluice_testkit::{TestBucket, TestDb};
use sqlx::Row;

/// The mapping most tests use: `raw/sales/…` → `public.sales`, key `id`, guard `updated_at`.
pub const SALES: &str = r#"
[table]
name = "sales"
key = ["id"]
guard = "updated_at"

[columns.updated_at]
type = "timestamptz"

[columns.price]
type = "numeric"
"#;

/// `raw/plain/…` → `public.plain`, key `id`, no guard, everything else inferred.
pub const PLAIN: &str = r#"
[table]
name = "plain"
key = ["id"]
"#;

/// `raw/frozen/…` → `public.frozen`, key `id`, `schema_policy = "freeze"`.
pub const FROZEN: &str = r#"
[table]
name = "frozen"
key = ["id"]
schema_policy = "freeze"
"#;

pub const HEADER: &str = "id,status,price,updated_at\n";

#[derive(Debug)]
pub struct Env {
    pub db: TestDb,
    pub bucket: TestBucket,
    pub loader: Loader,
    pub store: S3Store,
    pub mappings: tempfile::TempDir,
}

/// A database, a bucket and a loader with the `sales` and `plain` mappings plus `extra` vars.
pub async fn env_with(extra: &[(&str, &str)], mappings: &[(&str, &str)]) -> Result<Env> {
    let db = sluice_testkit::database().await?;
    let bucket = sluice_testkit::bucket().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("sales.toml"), SALES)?;
    std::fs::write(dir.path().join("plain.toml"), PLAIN)?;
    for (name, text) in mappings {
        std::fs::write(dir.path().join(format!("{name}.toml")), text)?;
    }
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.url.clone()),
        ("MAPPINGS".into(), dir.path().display().to_string()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config =
        Config::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))?;
    let config = Arc::new(config);
    let pool = sluice_loader::pool(&config).await?;
    let store = S3Store {
        client: bucket.client.clone(),
    };
    Ok(Env {
        db,
        bucket,
        loader: Loader::new(pool, config),
        store,
        mappings: dir,
    })
}

pub async fn env() -> Result<Env> {
    env_with(&[], &[]).await
}

impl Env {
    /// Uploads `body` at `key` and loads it through a replay event.
    pub async fn put_and_load(
        &self,
        key: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<InvocationSummary> {
        self.bucket.put(key, body).await?;
        self.replay(key).await
    }

    pub async fn replay(&self, key: &str) -> Result<InvocationSummary> {
        let ev = serde_json::json!({"bucket": self.bucket.name, "key": key});
        Ok(handle(&ev, &self.loader, &self.store).await?)
    }

    /// `SELECT <cols> FROM <table> ORDER BY 1` as text (NULL → None).
    pub async fn rows(&self, table: &str, cols: &str) -> Result<Vec<Vec<Option<String>>>> {
        let sql = format!("SELECT {cols} FROM {table} ORDER BY 1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.try_get::<Option<String>, _>(i).map_err(Into::into))
                    .collect()
            })
            .collect()
    }

    pub async fn count(&self, table: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&self.db.pool)
                .await?,
        )
    }

    pub async fn ledger(&self) -> Result<i64> {
        self.count("sluice_loads").await
    }

    pub async fn table_exists(&self, table: &str) -> Result<bool> {
        let oid: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(table)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(oid.is_some())
    }
}

/// An event fixture from `events/`, pointed at `bucket`.
pub fn fixture(name: &str, bucket: &str) -> Result<Value> {
    let path: PathBuf = sluice_testkit::workspace_root().join("events").join(name);
    let mut ev: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    if let Some(records) = ev.get_mut("Records").and_then(Value::as_array_mut) {
        for r in records {
            r["s3"]["bucket"]["name"] = bucket.into();
        }
    } else if ev.get("detail-type").is_some() {
        ev["detail"]["bucket"]["name"] = bucket.into();
    } else {
        ev["bucket"] = bucket.into();
    }
    Ok(ev)
}

/// The rows-read identity every load keeps.
pub fn balanced(s: &InvocationSummary) -> bool {
    s.rows.rows_read
        == s.rows.inserted + s.rows.updated + s.rows.unchanged + s.rows.rejected + s.rows.duplicates
}

/// `n` CSV rows `id-00001,NEW,<i>.50,2024-01-01T00:00:00Z` after the header.
pub fn sales_csv(ids: std::ops::Range<u32>, status: &str, ts: &str) -> String {
    let mut s = String::from(HEADER);
    for i in ids {
        s.push_str(&format!("id-{i:06},{status},{i}.50,{ts}\n"));
    }
    s
}

//! The ledger's identity: an object version is loaded once into each target table.

use std::sync::Arc;

use crate::common::sales_csv;
use sluice_loader::{Loader, ObjectRef, ObjectStatus};
use sluice_transform::Mapping;

/// The `sales` mapping, pointed at `table`.
fn sales_into(table: &str) -> Mapping {
    Mapping::from_toml(
        &crate::common::SALES.replace("name = \"sales\"", &format!("name = \"{table}\"")),
    )
    .unwrap()
}

#[tokio::test]
async fn the_same_object_loads_once_into_each_target_table() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    let key = "raw/sales/a.csv";
    env.bucket
        .put(key, sales_csv(0..10, "NEW", "2024-01-01T00:00:00Z"))
        .await?;
    let object = ObjectRef {
        bucket: env.bucket.name.clone(),
        key: key.into(),
        ..ObjectRef::default()
    };
    let load = |table: &str| {
        let mapping = sales_into(table);
        let (loader, store, object) = (&env.loader, &env.store, &object);
        async move { loader.load_with(store, object, "sales", &mapping).await }
    };
    assert_eq!(load("t1").await?.status, ObjectStatus::Loaded);
    // A replay of the same version into a second table loads there…
    let s = load("t2").await?;
    assert_eq!((s.status, s.rows.inserted), (ObjectStatus::Loaded, 10));
    assert_eq!(env.count("t2").await?, 10);
    // …and into either table again is a redelivery.
    assert_eq!(load("t1").await?.status, ObjectStatus::Skipped);
    assert_eq!(load("t2").await?.status, ObjectStatus::Skipped);
    assert_eq!(env.ledger().await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_ledger_keyed_without_the_target_migrates_in_place() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    env.put_and_load(
        "raw/sales/a.csv",
        sales_csv(0..5, "NEW", "2024-01-01T00:00:00Z"),
    )
    .await?;
    // The ledger as earlier releases made it: its primary key without the target.
    let pool = &env.db.pool;
    sqlx::query("ALTER TABLE sluice_loads DROP CONSTRAINT sluice_loads_pkey")
        .execute(pool)
        .await?;
    sqlx::query("ALTER TABLE sluice_loads ADD PRIMARY KEY (bucket, key, version)")
        .execute(pool)
        .await?;
    // A new container: the ledger is checked again.
    let config = Arc::new(env.loader.config().clone());
    let loader = Loader::new(sluice_loader::pool(&config).await?, config);
    let object = ObjectRef {
        bucket: env.bucket.name.clone(),
        key: "raw/sales/a.csv".into(),
        ..ObjectRef::default()
    };
    let s = loader.load(&env.store, &object).await?;
    assert_eq!(s.status, ObjectStatus::Skipped, "the history is kept");
    let mapping = sales_into("sales_copy");
    let s = loader
        .load_with(&env.store, &object, "sales", &mapping)
        .await?;
    assert_eq!((s.status, s.rows.inserted), (ObjectStatus::Loaded, 5));
    let pkey: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
         WHERE i.indrelid = 'sluice_loads'::regclass AND i.indisprimary ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    assert_eq!(pkey, ["bucket", "key", "target", "version"]);
    assert_eq!(env.ledger().await?, 2);
    Ok(())
}

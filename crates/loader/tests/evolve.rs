//! Schema changes and readers: new columns are added in a short transaction of their own, so a
//! long load does not keep readers of the table waiting behind `ALTER TABLE`'s lock.

use anyhow::Result;
use sluice_loader::{ObjectRef, ObjectStatus, S3Store};
use sluice_testkit::{GateProxy, S3Endpoint};

/// `raw/wide/…` → `public.wide`; `extra` has a type, so nothing is inferred for it.
const WIDE: &str = r#"
[table]
name = "wide"
key = ["id"]

[columns.extra]
type = "bigint"
"#;

#[tokio::test]
async fn new_columns_are_committed_before_the_load_and_hold_no_lock_during_it() -> Result<()> {
    let env = crate::common::env_with(&[], &[("wide", WIDE)]).await?;
    env.put_and_load("raw/wide/1.csv", "id,v\nk0,first\n")
        .await?;
    // ~32 MB with a new column, read through a proxy that holds the body after 16 MB: well
    // into the COPY, past what socket buffers can take ahead of the reader.
    let mut csv = String::from("id,v,extra\n");
    for i in 0..400_000 {
        csv.push_str(&format!("k{i:07},value-{i:0>50},{i}\n"));
    }
    env.bucket.put("raw/wide/2.csv", csv).await?;
    let s3 = sluice_testkit::s3_endpoint()?;
    let proxy = GateProxy::start(s3.url.trim_start_matches("http://").parse()?, 16 << 20).await?;
    let store = S3Store {
        client: S3Endpoint {
            url: format!("http://{}", proxy.addr),
            ..s3
        }
        .client(),
    };
    let object = ObjectRef {
        bucket: env.bucket.name.clone(),
        key: "raw/wide/2.csv".into(),
        ..ObjectRef::default()
    };
    let pool = &env.db.pool;
    let while_held = async {
        proxy.held().await;
        let exclusive: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE relation = 'wide'::regclass \
             AND mode = 'AccessExclusiveLock' AND granted",
        )
        .fetch_one(pool)
        .await?;
        let column: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_name = 'wide' AND column_name = 'extra'",
        )
        .fetch_one(pool)
        .await?;
        // A reader does not wait for the load: it sees the rows committed before it. (Under
        // an exclusive lock it would wait for the gate: the test would hang, not fail.)
        let rows: i64 = if exclusive == 0 {
            sqlx::query_scalar("SELECT count(*) FROM wide")
                .fetch_one(pool)
                .await?
        } else {
            -1
        };
        proxy.open();
        anyhow::Ok((exclusive, column, rows))
    };
    let (loaded, held) = tokio::join!(env.loader.load(&store, &object), while_held);
    assert_eq!(
        held?,
        (0, 1, 1),
        "(exclusive locks, the new column, rows) mid-load"
    );
    let s = loaded?;
    assert_eq!((s.status, s.rows.inserted), (ObjectStatus::Loaded, 400_000));
    assert_eq!(env.count("wide").await?, 400_001);
    Ok(())
}

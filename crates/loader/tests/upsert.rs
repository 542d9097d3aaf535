//! Loading semantics against real Postgres and a real S3 endpoint: fresh loads, redelivery,
//! updates, in-file duplicates, the ordering guard, concurrency, a connection killed mid-COPY,
//! schema evolution and a 100k-row file.

use std::ops::Range;

use crate::common::{balanced, sales_csv};
use sluice_loader::{Config, InvocationSummary, LoadPath, Loader, S3Store};

const DIRECT: Option<LoadPath> = Some(LoadPath::Direct);
const STAGED: Option<LoadPath> = Some(LoadPath::Staged);
const SPLIT: Option<LoadPath> = Some(LoadPath::Split);

#[tokio::test]
async fn fresh_load_then_redelivery_changes_nothing() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    let csv = sales_csv(0..100, "NEW", "2024-01-01T00:00:00Z");
    let s = env.put_and_load("raw/sales/a.csv", csv).await?;
    assert_eq!(
        (
            s.rows.rows_read,
            s.rows.inserted,
            s.rows.updated,
            s.rows.unchanged
        ),
        (100, 100, 0, 0)
    );
    assert!(balanced(&s));
    let before: Vec<String> =
        sqlx::query_scalar("SELECT xmin::text || ctid::text FROM sales ORDER BY id")
            .fetch_all(&env.db.pool)
            .await?;

    let again = env.replay("raw/sales/a.csv").await?;
    assert_eq!(
        (again.skipped, again.rows.rows_read, again.rows.inserted),
        (1, 0, 0)
    );
    let after: Vec<String> =
        sqlx::query_scalar("SELECT xmin::text || ctid::text FROM sales ORDER BY id")
            .fetch_all(&env.db.pool)
            .await?;
    assert_eq!(before, after, "no row rewritten");
    assert_eq!(env.ledger().await?, 1);
    let (read, ins): (i64, i64) = sqlx::query_as("SELECT rows_read, inserted FROM sluice_loads")
        .fetch_one(&env.db.pool)
        .await?;
    assert_eq!((read, ins), (100, 100));
    Ok(())
}

#[tokio::test]
async fn a_new_version_updates_changed_rows_only() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    env.put_and_load(
        "raw/sales/a.csv",
        sales_csv(0..10, "NEW", "2024-01-01T00:00:00Z"),
    )
    .await?;
    // Same keys plus five new ones; rows 0..3 change status and time.
    let mut csv = sales_csv(0..3, "PAID", "2024-01-02T00:00:00Z");
    csv.push_str(&sales_csv(3..15, "NEW", "2024-01-01T00:00:00Z")[crate::common::HEADER.len()..]);
    // The same key rewritten by a content change counts as a new version of the object.
    let s = env.put_and_load("raw/sales/a.csv", csv).await?;
    assert_eq!(
        (
            s.rows.rows_read,
            s.rows.inserted,
            s.rows.updated,
            s.rows.unchanged,
            s.skipped
        ),
        (15, 5, 3, 7, 0)
    );
    assert_eq!(
        s.results[0].path, STAGED,
        "existing keys roll the direct COPY back"
    );
    let rows = env.rows("sales", "id, status").await?;
    assert_eq!(rows.len(), 15);
    assert_eq!(rows[0][1].as_deref(), Some("PAID"));
    assert_eq!(rows[5][1].as_deref(), Some("NEW"));
    assert_eq!(env.ledger().await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_refetch_locks_and_writes_none_of_its_unchanged_rows() -> anyhow::Result<()> {
    // A lookback re-fetch: another object with the rows the table holds, five of them changed.
    let env = crate::common::env().await?;
    env.put_and_load(
        "raw/sales/a.csv",
        sales_csv(0..100, "NEW", "2024-01-01T00:00:00Z"),
    )
    .await?;
    let versions = "SELECT id, xmin::text, xmax::text FROM sales ORDER BY id";
    let before: Vec<(String, String, String)> =
        sqlx::query_as(versions).fetch_all(&env.db.pool).await?;
    let mut csv = sales_csv(0..5, "PAID", "2024-01-02T00:00:00Z");
    csv.push_str(&sales_csv(5..100, "NEW", "2024-01-01T00:00:00Z")[crate::common::HEADER.len()..]);
    let s = env.put_and_load("raw/sales/b.csv", csv).await?;
    assert_eq!(
        (s.rows.inserted, s.rows.updated, s.rows.unchanged),
        (0, 5, 95)
    );
    let after: Vec<(String, String, String)> =
        sqlx::query_as(versions).fetch_all(&env.db.pool).await?;
    for (b, a) in before.iter().zip(&after).skip(5) {
        // `ON CONFLICT … DO UPDATE … WHERE` would have locked it: xmax set, WAL written.
        assert_eq!(b, a, "row {} neither rewritten nor locked", a.0);
        assert_eq!(a.2, "0");
    }
    for (b, a) in before.iter().zip(&after).take(5) {
        assert_ne!(b.1, a.1, "row {} rewritten", a.0);
    }
    let rows = env.rows("sales", "id, status").await?;
    assert_eq!(rows[0][1].as_deref(), Some("PAID"));
    assert_eq!(rows[5][1].as_deref(), Some("NEW"));
    Ok(())
}

#[tokio::test]
async fn lineage_follows_changes_only() -> anyhow::Result<()> {
    let lineage = r#"
        [table]
        name = "lin"
        key = ["id"]
        [[derived]]
        name = "source_object"
        kind = "source_key"
        [[derived]]
        name = "loaded_at"
        kind = "load_time"
    "#;
    let env = crate::common::env_with(&[], &[("lin", lineage)]).await?;
    env.put_and_load("raw/lin/1.csv", "id,v\na,1\nb,1\n")
        .await?;
    let s = env
        .put_and_load("raw/lin/2.csv", "id,v\na,2\nb,1\n")
        .await?;
    assert_eq!(
        (s.rows.updated, s.rows.unchanged),
        (1, 1),
        "new lineage alone is no change"
    );
    assert_eq!(
        env.rows("lin", "id, source_object").await?,
        [
            [Some("a".into()), Some("raw/lin/2.csv".into())],
            [Some("b".into()), Some("raw/lin/1.csv".into())]
        ]
    );
    Ok(())
}

#[tokio::test]
async fn the_direct_path_keeps_quarantine_and_stages_repeats() -> anyhow::Result<()> {
    let env = crate::common::env_with(&[("MAX_REJECT_RATIO", "0.5")], &[]).await?;
    let csv = "id,status,price,updated_at\n\
               a,NEW,1,2024-01-01T00:00:00Z\n\
               b,NEW,oops,2024-01-01T00:00:00Z\n\
               c,NEW,3,2024-01-01T00:00:00Z\n";
    let s = env.put_and_load("raw/sales/1.csv", csv).await?;
    assert_eq!(
        (s.results[0].path, s.rows.inserted, s.rows.rejected),
        (DIRECT, 2, 1)
    );
    assert!(env.bucket.get("quarantine/raw/sales/1.csv").await.is_ok());
    // New keys out of order: still direct (the order of new keys does not matter).
    let csv = "id,status,price,updated_at\n\
               f,NEW,1,2024-01-01T00:00:00Z\n\
               d,NEW,1,2024-01-01T00:00:00Z\n\
               e,NEW,1,2024-01-01T00:00:00Z\n";
    let s = env.put_and_load("raw/sales/2.csv", csv).await?;
    assert_eq!((s.results[0].path, s.rows.inserted), (DIRECT, 3));
    // A repeated key: staging, last row wins.
    let csv = "id,status,price,updated_at\n\
               g,NEW,1,2024-01-01T00:00:00Z\n\
               g,PAID,2,2024-01-01T00:00:00Z\n";
    let s = env.put_and_load("raw/sales/3.csv", csv).await?;
    assert_eq!(
        (s.results[0].path, s.rows.inserted, s.rows.duplicates),
        (STAGED, 1, 1)
    );
    assert_eq!(env.count("sales").await?, 6);
    assert_eq!(env.ledger().await?, 3);
    Ok(())
}

/// The real S3 store, counting how often an object is opened.
struct CountingStore {
    inner: S3Store,
    opens: std::sync::atomic::AtomicUsize,
}

impl sluice_loader::Store for CountingStore {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(sluice_loader::ObjectMeta, Box<dyn std::io::Read + Send>), sluice_loader::StoreError>
    {
        // Reads of the object itself (not of a manifest beside it).
        if key.ends_with(".csv") {
            self.opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.open(bucket, key, version_id).await
    }
    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        file: std::fs::File,
    ) -> Result<(), sluice_loader::StoreError> {
        self.inner.put_file(bucket, key, file).await
    }
}

#[tokio::test]
async fn the_path_is_chosen_without_reading_the_object_twice() -> anyhow::Result<()> {
    // Small batches, so the first one is decided long before the end of the file.
    let env = crate::common::env_with(&[("COPY_BATCH_BYTES", "1024")], &[]).await?;
    let store = CountingStore {
        inner: env.store.clone(),
        opens: 0.into(),
    };
    let load = |key: &'static str| {
        let ev = serde_json::json!({"bucket": env.bucket.name, "key": key});
        let store = &store;
        let loader = &env.loader;
        async move {
            store.opens.store(0, std::sync::atomic::Ordering::SeqCst);
            let s = sluice_loader::handle(&ev, loader, store).await?;
            anyhow::Ok((
                s.results[0].path,
                store.opens.load(std::sync::atomic::Ordering::SeqCst),
                s,
            ))
        }
    };
    env.bucket
        .put(
            "raw/sales/1.csv",
            sales_csv(0..500, "NEW", "2024-01-01T00:00:00Z"),
        )
        .await?;
    let (path, opens, s) = load("raw/sales/1.csv").await?;
    // Two reads: the table is new, so one pass infers the unmapped columns' types.
    assert_eq!((path, opens, s.rows.inserted), (DIRECT, 2, 500));
    // A key whose collation does not order text as bytes: no greatest key to split on, so the
    // first keys are probed.
    sqlx::query(r#"ALTER TABLE sales ALTER COLUMN id TYPE text COLLATE "und-x-icu""#)
        .execute(&env.db.pool)
        .await?;

    // Existing keys first: the probe sends it to staging, same read.
    env.bucket
        .put(
            "raw/sales/2.csv",
            sales_csv(0..600, "PAID", "2024-01-02T00:00:00Z"),
        )
        .await?;
    let (path, opens, s) = load("raw/sales/2.csv").await?;
    assert_eq!(
        (path, opens, s.rows.inserted, s.rows.updated),
        (STAGED, 1, 100, 500)
    );

    // New keys out of order: direct, one read.
    let mut csv = String::from(crate::common::HEADER);
    csv.push_str("zz,NEW,1,2024-01-01T00:00:00Z\nyy,NEW,1,2024-01-01T00:00:00Z\n");
    env.bucket.put("raw/sales/3.csv", csv).await?;
    let (path, opens, s) = load("raw/sales/3.csv").await?;
    assert_eq!((path, opens, s.rows.inserted), (DIRECT, 1, 2));

    // A key repeated within the first batch: staging, same read.
    let mut csv = String::from(crate::common::HEADER);
    csv.push_str("xa,NEW,1,2024-01-01T00:00:00Z\nxb,NEW,1,2024-01-01T00:00:00Z\n");
    csv.push_str("xa,PAID,1,2024-01-01T00:00:00Z\n");
    env.bucket.put("raw/sales/3b.csv", csv).await?;
    let (path, opens, s) = load("raw/sales/3b.csv").await?;
    assert_eq!(
        (path, opens, s.rows.inserted, s.rows.duplicates),
        (STAGED, 1, 2, 1)
    );

    // New first keys, an existing one past the first batch (batches of 1 KiB, about 25 rows):
    // the direct COPY meets it, rolls back, and the object is read again for staging.
    let mut csv = sales_csv(600..3000, "NEW", "2024-01-03T00:00:00Z");
    csv.push_str("zz,LATE,1,2024-01-03T00:00:00Z\n");
    env.bucket.put("raw/sales/4.csv", csv).await?;
    let (path, opens, s) = load("raw/sales/4.csv").await?;
    assert_eq!(
        (path, opens, s.rows.inserted, s.rows.updated),
        (STAGED, 2, 2400, 1)
    );
    assert_eq!(env.count("sales").await?, 3004);

    // New keys, one repeated past the first batch: the unique index stops the direct COPY, it
    // rolls back, and the second read stages and de-duplicates (the last row wins).
    let mut csv = sales_csv(5000..7400, "NEW", "2024-01-04T00:00:00Z");
    csv.push_str("id-005000,LAST,1,2024-01-04T00:00:00Z\n");
    env.bucket.put("raw/sales/5.csv", csv).await?;
    let (path, opens, s) = load("raw/sales/5.csv").await?;
    assert_eq!(
        (path, opens, s.rows.inserted, s.rows.duplicates),
        (STAGED, 2, 2400, 1)
    );
    assert_eq!(env.count("sales").await?, 5404);
    let status: String = sqlx::query_scalar("SELECT status FROM sales WHERE id = 'id-005000'")
        .fetch_one(&env.db.pool)
        .await?;
    assert_eq!(status, "LAST");
    Ok(())
}

#[tokio::test]
async fn a_key_collation_changed_between_loads_re_plans_the_greatest_key() -> anyhow::Result<()> {
    // The greatest key's statement stays prepared on the pool's connections. Loads one after
    // the other go round both of them before the key's collation changes under them.
    let env = crate::common::env().await?;
    let mut paths = Vec::new();
    for i in 0..4u32 {
        let key = format!("raw/sales/{i}.csv");
        let rows = sales_csv(i * 500..(i + 1) * 500, "NEW", "2024-01-01T00:00:00Z");
        env.bucket.put(&key, rows).await?;
        paths.push(env.replay(&key).await?.results[0].path);
    }
    assert_eq!(paths, [DIRECT; 4]);
    sqlx::query(r#"ALTER TABLE sales ALTER COLUMN id TYPE text COLLATE "und-x-icu""#)
        .execute(&env.db.pool)
        .await?;
    // A cached plan whose result type followed the column's collation would fail here ("cached
    // plan must not change result type"). With no byte-order greatest key, the held keys are
    // staged rather than split.
    for (i, ids) in [(4u32, 1500..2600), (5, 2000..3700)] {
        let key = format!("raw/sales/{i}.csv");
        env.bucket
            .put(&key, sales_csv(ids, "PAID", "2024-01-02T00:00:00Z"))
            .await?;
        let s = env.replay(&key).await?;
        assert_eq!(s.results[0].path, STAGED, "{key}");
    }
    assert_eq!(env.count("sales").await?, 3700);
    Ok(())
}

/// A CSV row of the `sales` mapping for key `id-<i>`.
fn sale(i: u32, status: &str, ts: &str) -> String {
    format!("id-{i:06},{status},{i}.50,{ts}\n")
}

/// The schedule's updates: a held key, then four new ones, and again (the header first).
fn updates(held: Range<u32>, new: Range<u32>, status: &str, ts: &str) -> String {
    let mut csv = String::from(crate::common::HEADER);
    for (h, n) in held.zip(new.clone().step_by(4)) {
        csv.push_str(&sale(h, status, ts));
        (n..(n + 4).min(new.end)).for_each(|i| csv.push_str(&sale(i, status, ts)));
    }
    csv
}

#[tokio::test]
async fn keys_above_the_greatest_held_go_straight_in_and_the_rest_are_staged() -> anyhow::Result<()>
{
    // Small batches: a split keeps at most 32 of them (32 KiB). The first batch is 1 KiB of
    // rows, about 25 of these: 5 held keys and 20 new ones.
    let env = crate::common::env_with(&[("COPY_BATCH_BYTES", "1024")], &[]).await?;
    let store = CountingStore {
        inner: env.store.clone(),
        opens: 0.into(),
    };
    let load = |key: &'static str, csv: String| {
        let ev = serde_json::json!({"bucket": env.bucket.name, "key": key});
        let (store, env) = (&store, &env);
        async move {
            env.bucket.put(key, csv).await?;
            store.opens.store(0, std::sync::atomic::Ordering::SeqCst);
            let s = sluice_loader::handle(&ev, &env.loader, store).await?;
            assert!(balanced(&s), "{s:?}");
            let r = &s.rows;
            anyhow::Ok((
                s.results[0].path,
                store.opens.load(std::sync::atomic::Ordering::SeqCst),
                (r.inserted, r.updated, r.duplicates),
                s.results[0].direct_rows,
            ))
        }
    };
    let status = |id: &'static str| {
        sqlx::query_scalar::<_, String>("SELECT status FROM sales WHERE id = $1")
            .bind(id)
            .fetch_one(&env.db.pool)
    };
    load(
        "raw/sales/0.csv",
        sales_csv(0..400, "NEW", "2024-01-01T00:00:00Z"),
    )
    .await?;

    // The probe finds held keys in the first batch, most above the greatest: the first batch
    // is staged, then new keys go straight in and held ones are kept for staging.
    let csv = updates(0..400, 400..2000, "PAID", "2024-01-02T00:00:00Z");
    let (path, opens, counts, direct) = load("raw/sales/1.csv", csv).await?;
    assert_eq!((path, opens, counts), (SPLIT, 1, (1600, 400, 0)));
    // The first batch (about 20 new rows) staged, the 1,580 or so new rows after it not.
    assert!((1500..1600).contains(&direct), "{direct}");
    assert_eq!(env.count("sales").await?, 2000);
    let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM sales WHERE status = 'PAID'")
        .fetch_one(&env.db.pool)
        .await?;
    assert_eq!(paid, 2000);

    // More held rows than a split keeps: the new rows so far go in, and the rest of the
    // object is staged as it comes, after the kept rows. One read.
    let mut csv = updates(0..400, 2000..3600, "PAID2", "2024-01-03T00:00:00Z");
    (400..1600).for_each(|i| csv.push_str(&sale(i, "PAID2", "2024-01-03T00:00:00Z")));
    (3600..4000).for_each(|i| csv.push_str(&sale(i, "NEW", "2024-01-01T00:00:00Z")));
    let (path, opens, counts, direct) = load("raw/sales/2.csv", csv).await?;
    assert_eq!((path, opens, counts), (SPLIT, 1, (2000, 1600, 0)));
    // The new rows between the first batch and the turn (about 1,580): the last 400 came
    // after the turn, and were staged (without it, about 1,980 would be direct).
    assert!((1500..1600).contains(&direct), "{direct}");
    assert_eq!(env.count("sales").await?, 4000);

    // A first batch of mostly held keys stages everything, same read.
    let mut csv = sales_csv(0..100, "PAID3", "2024-01-04T00:00:00Z");
    (4000..4050).for_each(|i| csv.push_str(&sale(i, "NEW", "2024-01-01T00:00:00Z")));
    assert_eq!(
        load("raw/sales/3.csv", csv).await?,
        (STAGED, 1, (50, 100, 0), 0)
    );

    // A new key of the (staged) first batch again past it: staged too, and the last row wins.
    let mut csv = updates(0..400, 4050..5650, "PAID4", "2024-01-05T00:00:00Z");
    csv.push_str(&sale(4060, "LAST", "2024-01-05T00:00:00Z"));
    let (path, opens, counts, _) = load("raw/sales/5.csv", csv).await?;
    assert_eq!((path, opens, counts), (SPLIT, 1, (1600, 400, 1)));
    assert_eq!(status("id-004060").await?, "LAST");

    // A new key repeated past the first batch meets the unique index: the direct COPY rolls
    // back and the object is read again for staging. The last row wins.
    let mut csv = updates(0..400, 5650..7250, "PAID5", "2024-01-06T00:00:00Z");
    csv.push_str(&sale(7249, "LAST", "2024-01-06T00:00:00Z"));
    assert_eq!(
        load("raw/sales/6.csv", csv).await?,
        (STAGED, 2, (1600, 400, 1), 0)
    );
    assert_eq!(status("id-007249").await?, "LAST");
    assert_eq!(env.count("sales").await?, 7250);
    Ok(())
}

/// Loads objects `a` and `b` at once, each with its own loader and pool, as when S3 fans out
/// to two Lambda instances.
async fn at_once(
    env: &crate::common::Env,
    a: &str,
    b: &str,
) -> anyhow::Result<(InvocationSummary, InvocationSummary)> {
    let other = Loader::new(
        sluice_loader::pool(env.loader.config()).await?,
        std::sync::Arc::new(env.loader.config().clone()),
    );
    let (ra, rb) = tokio::join!(env.replay(a), async {
        let ev = serde_json::json!({"bucket": env.bucket.name, "key": b});
        sluice_loader::handle(&ev, &other, &env.store).await
    });
    Ok((ra?, rb?))
}

#[tokio::test]
async fn concurrent_split_loads_equal_serial_application() -> anyhow::Result<()> {
    // Both files hold changed keys and new ones above the table's greatest, overlapping on
    // 2,000 new keys: a direct COPY meets the other load's rows and falls back to staging.
    let a = updates(0..1000, 5000..9000, "A", "2024-01-02T00:00:00Z");
    let b = updates(500..1500, 7000..11000, "B", "2024-01-03T00:00:00Z");
    let seed = sales_csv(0..2000, "NEW", "2024-01-01T00:00:00Z");
    // Batches of 1 KiB: the first (about 25 rows, most of them new) is staged, the rest split.
    let small = [("COPY_BATCH_BYTES", "1024")];
    let serial = crate::common::env_with(&small, &[]).await?;
    serial
        .put_and_load("raw/sales/seed.csv", seed.clone())
        .await?;
    let sa = serial.put_and_load("raw/sales/a.csv", a.clone()).await?;
    assert_eq!(sa.results[0].path, SPLIT);
    serial.put_and_load("raw/sales/b.csv", b.clone()).await?;
    let expected = serial.rows("sales", "id, status, updated_at::text").await?;
    assert_eq!(expected.len(), 2000 + 6000);

    for round in 0..3 {
        let env = crate::common::env_with(&small, &[]).await?;
        env.put_and_load("raw/sales/seed.csv", seed.clone()).await?;
        env.bucket.put("raw/sales/a.csv", a.clone()).await?;
        env.bucket.put("raw/sales/b.csv", b.clone()).await?;
        let (ra, rb) = at_once(&env, "raw/sales/a.csv", "raw/sales/b.csv").await?;
        assert!(balanced(&ra) && balanced(&rb), "round {round}");
        assert_eq!(ra.rows.inserted + rb.rows.inserted, 6000, "round {round}");
        assert_eq!(
            env.rows("sales", "id, status, updated_at::text").await?,
            expected,
            "round {round}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_last_row_of_a_file_wins_for_a_key() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    let csv = "id,status,price,updated_at\n\
               a,NEW,1,2024-01-01T00:00:00Z\n\
               b,NEW,1,2024-01-01T00:00:00Z\n\
               a,PAID,2,2024-01-01T00:00:00Z\n\
               a,REFUNDED,3,2024-01-01T00:00:00Z\n";
    let s = env.put_and_load("raw/sales/dups.csv", csv).await?;
    assert_eq!(
        (s.rows.rows_read, s.rows.inserted, s.rows.duplicates),
        (4, 2, 2)
    );
    assert!(balanced(&s));
    assert_eq!(
        env.rows("sales", "id, status, price::text").await?[0],
        [Some("a".into()), Some("REFUNDED".into()), Some("3".into())]
    );
    Ok(())
}

/// Keys that differ as text but are one value to the table's unique index: one row, the last
/// line wins, the rest count as duplicates (Postgres refused the whole object with 21000).
#[tokio::test]
async fn keys_equal_as_values_are_one_key() -> anyhow::Result<()> {
    let numeric = r#"
[table]
name = "amounts"
key = ["id"]

[columns.id]
type = "numeric"
"#;
    let env = crate::common::env_with(&[], &[("amounts", numeric)]).await?;
    let s = env
        .put_and_load(
            "raw/amounts/a.csv",
            "id,v\n1.0,first\n1.00,second\n2,other\n",
        )
        .await?;
    assert_eq!(
        (s.rows.rows_read, s.rows.inserted, s.rows.duplicates),
        (3, 2, 1)
    );
    assert!(balanced(&s));
    assert_eq!(
        env.rows("amounts", "id::text, v").await?[0],
        [Some("1.00".into()), Some("second".into())]
    );
    // A citext key of a table the user made: `ABC` and `abc` are one person.
    for sql in [
        "CREATE EXTENSION IF NOT EXISTS citext",
        "CREATE TABLE plain (id citext PRIMARY KEY, name text)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&env.db.pool)
            .await?;
    }
    let s = env
        .put_and_load(
            "raw/plain/p.csv",
            "id,name\nABC,upper\nabc,lower\nÉtienne,e\n",
        )
        .await?;
    assert_eq!((s.rows.inserted, s.rows.duplicates), (2, 1));
    assert_eq!(
        env.rows("plain", "id::text, name").await?,
        [
            [Some("abc".into()), Some("lower".into())],
            [Some("Étienne".into()), Some("e".into())]
        ]
    );
    // Again, now that the keys exist (staged, one unchanged, one updated).
    let s = env
        .put_and_load("raw/plain/q.csv", "id,name\nabc,lower\nABC,again\n")
        .await?;
    assert_eq!((s.rows.updated, s.rows.duplicates), (1, 1), "{s:?}");
    assert_eq!(env.count("plain").await?, 2);
    Ok(())
}

#[tokio::test]
async fn an_older_file_after_a_newer_one_changes_nothing() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    let newer = sales_csv(0..50, "PAID", "2024-01-02T00:00:00Z");
    let older = sales_csv(0..50, "NEW", "2024-01-01T00:00:00Z");
    let s = env.put_and_load("raw/sales/newer.csv", newer).await?;
    assert_eq!(s.rows.inserted, 50);
    let s = env.put_and_load("raw/sales/older.csv", older).await?;
    assert_eq!(
        (s.rows.rows_read, s.rows.updated, s.rows.unchanged),
        (50, 0, 50),
        "held back by the guard"
    );
    let statuses = env.rows("sales", "DISTINCT status").await?;
    assert_eq!(statuses, [[Some("PAID".to_string())]]);
    // A file with the same guard value replaces (≥): a correction at the same instant.
    let same = sales_csv(0..1, "CORRECTED", "2024-01-02T00:00:00Z");
    let s = env.put_and_load("raw/sales/same.csv", same).await?;
    assert_eq!(s.rows.updated, 1);
    Ok(())
}

/// Each load sees rows 0..N; A and B overlap on half of them with different values.
fn overlapping(n: u32) -> (String, String) {
    let a = sales_csv(0..n, "A", "2024-01-01T00:00:00Z");
    let b = sales_csv(n / 2..n + n / 2, "B", "2024-01-02T00:00:00Z");
    (a, b)
}

#[tokio::test]
async fn concurrent_loads_of_overlapping_keys_equal_serial_application() -> anyhow::Result<()> {
    let n = 20_000;
    let (a, b) = overlapping(n);
    // Reference: A then B, serially, in a database of its own.
    let serial = crate::common::env().await?;
    serial.put_and_load("raw/sales/a.csv", a.clone()).await?;
    serial.put_and_load("raw/sales/b.csv", b.clone()).await?;
    let expected = serial.rows("sales", "id, status, updated_at::text").await?;

    for round in 0..3 {
        let env = crate::common::env().await?;
        // Guarded table: the result is the same whatever the commit order.
        env.bucket.put("raw/sales/a.csv", a.clone()).await?;
        env.bucket.put("raw/sales/b.csv", b.clone()).await?;
        let (ra, rb) = at_once(&env, "raw/sales/a.csv", "raw/sales/b.csv").await?;
        assert_eq!(
            ra.rows.inserted + rb.rows.inserted,
            u64::from(n + n / 2),
            "round {round}"
        );
        assert_eq!(
            env.rows("sales", "id, status, updated_at::text").await?,
            expected,
            "round {round}"
        );
    }

    // Without a guard the last commit wins, but each key's row comes from one whole file.
    let env = crate::common::env().await?;
    let plain = |csv: &str| csv.replace("id,status,price,updated_at", "id,status,price,ts");
    env.bucket.put("raw/plain/a.csv", plain(&a)).await?;
    env.bucket.put("raw/plain/b.csv", plain(&b)).await?;
    // Create the table first so both loads race on rows, not on DDL.
    env.put_and_load(
        "raw/plain/seed.csv",
        "id,status,price,ts\nzzz,X,1.5,2024-01-01T00:00:00Z\n",
    )
    .await?;
    at_once(&env, "raw/plain/a.csv", "raw/plain/b.csv").await?;
    let overlap: Vec<Vec<Option<String>>> = env
        .rows("plain", "DISTINCT status")
        .await?
        .into_iter()
        .collect();
    assert!(overlap.len() <= 3, "{overlap:?}");
    let mixed: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT status) FROM plain WHERE id >= $1 AND id < $2")
            .bind(format!("id-{:06}", n / 2))
            .bind(format!("id-{:06}", n))
            .fetch_one(&env.db.pool)
            .await?;
    assert_eq!(
        mixed, 1,
        "the overlap comes from one file, as in some serial order"
    );
    Ok(())
}

#[tokio::test]
async fn a_connection_killed_mid_copy_is_retried_to_completion() -> anyhow::Result<()> {
    let env = crate::common::env_with(&[("COPY_BATCH_BYTES", "16384")], &[]).await?;
    // The table exists first, so the big load goes straight to COPY.
    env.put_and_load(
        "raw/sales/seed.csv",
        sales_csv(0..1, "NEW", "2024-01-01T00:00:00Z"),
    )
    .await?;
    let n = 50_000;
    env.bucket
        .put(
            "raw/sales/big.csv",
            sales_csv(0..n, "PAID", "2024-01-02T00:00:00Z"),
        )
        .await?;

    // The S3 endpoint behind a proxy that holds the response after 512 KiB: the loader has
    // COPYed some batches and waits for more bytes.
    let upstream: std::net::SocketAddr = env
        .bucket
        .endpoint
        .url
        .trim_start_matches("http://")
        .parse()?;
    let gate = sluice_testkit::GateProxy::start(upstream, 512 * 1024).await?;
    let mut endpoint = env.bucket.endpoint.clone();
    endpoint.url = format!("http://{}", gate.addr);
    let store = S3Store {
        client: endpoint.client(),
    };

    let ev = serde_json::json!({"bucket": env.bucket.name, "key": "raw/sales/big.csv"});
    let load = sluice_loader::handle(&ev, &env.loader, &store);
    let kill = async {
        gate.held().await;
        // Find the loader's backend in COPY and terminate it, as a failover would.
        let pid = loop {
            let pid: Option<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'sluice-loader' AND query LIKE 'COPY %'",
            )
            .fetch_optional(&env.db.pool)
            .await?;
            if let Some(pid) = pid {
                break pid;
            }
            tokio::task::yield_now().await;
        };
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&env.db.pool)
            .await?;
        gate.open();
        anyhow::Ok(killed)
    };
    let (summary, killed) = tokio::join!(load, kill);
    assert!(killed?);
    let s = summary?;
    assert_eq!(s.results[0].attempts, 2, "{s:?}");
    assert_eq!(
        (s.rows.rows_read, s.rows.inserted, s.rows.updated),
        (u64::from(n), u64::from(n) - 1, 1)
    );
    assert_eq!(env.count("sales").await?, i64::from(n));
    assert_eq!(env.ledger().await?, 2);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_database_is_a_retryable_failure() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    env.bucket
        .put(
            "raw/sales/a.csv",
            sales_csv(0..1, "NEW", "2024-01-01T00:00:00Z"),
        )
        .await?;
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let vars = [
        (
            "DATABASE_URL",
            format!("postgres://nobody@127.0.0.1:{port}/none"),
        ),
        ("DATABASE_ACQUIRE_TIMEOUT_SECS", "0.2".into()),
    ];
    let cfg = Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))?;
    let mut cfg = cfg;
    cfg.mappings = env.loader.config().mappings.clone();
    let cfg = std::sync::Arc::new(cfg);
    let loader = Loader::new(sluice_loader::pool(&cfg).await?, cfg);
    let ev = serde_json::json!({"bucket": env.bucket.name, "key": "raw/sales/a.csv"});
    let e = sluice_loader::handle(&ev, &loader, &env.store)
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.message.contains("after 4 attempts"), "{}", e.message);
    let d: lambda_runtime::Diagnostic = e.into();
    assert_eq!(d.error_type, "sluice.Retryable");
    Ok(())
}

#[tokio::test]
async fn evolve_adds_columns_and_freeze_quarantines_their_values() -> anyhow::Result<()> {
    let env = crate::common::env_with(&[], &[("frozen", crate::common::FROZEN)]).await?;
    env.put_and_load("raw/plain/1.csv", "id,a\n1,x\n").await?;
    let s = env
        .put_and_load("raw/plain/2.csv", "id,a,b\n2,y,42\n")
        .await?;
    assert_eq!(s.rows.inserted, 1);
    assert_eq!(
        env.rows("plain", "id::text, a, b::text").await?,
        [
            [Some("1".into()), Some("x".into()), None],
            [Some("2".into()), Some("y".into()), Some("42".into())]
        ]
    );
    let ty: String = sqlx::query_scalar(
        "SELECT data_type::text FROM information_schema.columns WHERE table_name = 'plain' AND column_name = 'b'",
    )
    .fetch_one(&env.db.pool)
    .await?;
    assert_eq!(ty, "bigint", "new columns get inferred types");

    env.put_and_load("raw/frozen/1.csv", "id,a\n1,x\n").await?;
    let csv = "id,a,b\n2,y,\n3,z,oops\n4,w,\n5,v,\n6,u,\n7,t,\n8,s,\n9,r,\n10,q,\n11,p,\n";
    let s = env.put_and_load("raw/frozen/2.csv", csv).await?;
    assert_eq!((s.rows.inserted, s.rows.rejected), (9, 1));
    let cols: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'frozen'",
    )
    .fetch_one(&env.db.pool)
    .await?;
    assert_eq!(cols, 2, "no column added");
    let q = String::from_utf8(env.bucket.get("quarantine/raw/frozen/2.csv").await?)?;
    assert!(
        q.contains("3,\"column \"\"b\"\" has a value but is not in the table"),
        "{q}"
    );
    Ok(())
}

#[tokio::test]
async fn a_table_without_a_unique_key_names_the_index_to_create() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    sqlx::query("CREATE TABLE plain (id text, v text)")
        .execute(&env.db.pool)
        .await?;
    env.bucket.put("raw/plain/a.csv", "id,v\n1,x\n").await?;
    let e = env.replay("raw/plain/a.csv").await.unwrap_err();
    let e = e.downcast::<sluice_loader::HandlerError>()?;
    assert!(!e.is_retryable());
    assert!(
        e.message
            .contains(r#"CREATE UNIQUE INDEX ON "public"."plain" ("id")"#),
        "{}",
        e.message
    );
    // Following the advice makes the load work.
    sqlx::query(r#"CREATE UNIQUE INDEX ON "public"."plain" ("id")"#)
        .execute(&env.db.pool)
        .await?;
    assert_eq!(env.replay("raw/plain/a.csv").await?.rows.inserted, 1);
    Ok(())
}

#[tokio::test]
async fn a_100k_row_file_loads() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    let n = 100_000;
    let s = env
        .put_and_load(
            "raw/sales/big.csv",
            sales_csv(0..n, "NEW", "2024-01-01T00:00:00Z"),
        )
        .await?;
    assert_eq!(
        (s.rows.rows_read, s.rows.inserted),
        (u64::from(n), u64::from(n))
    );
    assert_eq!(env.count("sales").await?, i64::from(n));
    let sum: String = sqlx::query_scalar("SELECT sum(price)::text FROM sales")
        .fetch_one(&env.db.pool)
        .await?;
    // Σ (i + 0.5) for i < n.
    assert_eq!(
        sum,
        format!(
            "{}.00",
            u64::from(n) * u64::from(n - 1) / 2 + u64::from(n) / 2
        )
    );
    Ok(())
}

#[tokio::test]
async fn types_guessed_from_the_first_rows_are_checked_by_the_load() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    let store = CountingStore {
        inner: env.store.clone(),
        opens: 0.into(),
    };
    let column_type = |col: &'static str| {
        let pool = env.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT data_type::text FROM information_schema.columns \
                 WHERE table_name = 'plain' AND column_name = $1",
            )
            .bind(col)
            .fetch_one(&pool)
            .await
        }
    };
    // 12,000 rows: `n` is an integer throughout, `late` is NULL for the first 11,000 rows (the
    // guess reads on until it shows a value), `odd` turns to text on the very last row.
    let mut csv = String::from("id,n,late,odd\n");
    for i in 0..12_000 {
        let late = if i >= 11_000 { "7" } else { "" };
        let odd = if i == 11_999 {
            "n/a".to_owned()
        } else {
            i.to_string()
        };
        csv.push_str(&format!("k{i:05},{i},{late},{odd}\n"));
    }
    env.bucket.put("raw/plain/1.csv", csv).await?;
    let ev = serde_json::json!({"bucket": env.bucket.name, "key": "raw/plain/1.csv"});
    let s = sluice_loader::handle(&ev, &env.loader, &store).await?;
    // The guess (odd: bigint) met "n/a": rolled back, then typed from the whole file. Two
    // attempts of two reads each, nothing rejected, one attempt counted.
    assert_eq!(
        (
            store.opens.load(std::sync::atomic::Ordering::SeqCst),
            s.rows.inserted,
            s.rows.rejected,
            s.results[0].attempts
        ),
        (4, 12_000, 0, 1)
    );
    assert_eq!(column_type("n").await?, "bigint");
    assert_eq!(column_type("late").await?, "bigint");
    assert_eq!(column_type("odd").await?, "text");
    assert_eq!(env.count("plain").await?, 12_000);
    assert_eq!(env.ledger().await?, 1);

    // A new column of an existing table: typed from the whole object (it is committed before
    // the load, for good), so one read for its type and one for the load.
    let mut csv = String::from("id,extra\n");
    for i in 0..12_000 {
        csv.push_str(&format!("k{i:05},{}.5\n", i));
    }
    env.bucket.put("raw/plain/2.csv", csv).await?;
    store.opens.store(0, std::sync::atomic::Ordering::SeqCst);
    let ev = serde_json::json!({"bucket": env.bucket.name, "key": "raw/plain/2.csv"});
    let s = sluice_loader::handle(&ev, &env.loader, &store).await?;
    assert_eq!(
        (
            store.opens.load(std::sync::atomic::Ordering::SeqCst),
            s.rows.updated
        ),
        (2, 12_000)
    );
    assert_eq!(column_type("extra").await?, "numeric");
    Ok(())
}

/// A re-fetch reads the table's rows back with a statement the connection keeps prepared. A
/// column widened by a later object changes that statement's result type: the read-back must
/// not fail with "cached plan must not change result type".
#[tokio::test]
async fn a_column_widened_between_refetches_is_read_back_in_its_new_type() -> anyhow::Result<()> {
    // Loads one after another reuse the pool's connection, and its prepared statements.
    let env = crate::common::env_with(&[("HELD_ROWS", "read_back")], &[]).await?;
    let csv = |last: &str| {
        let mut s = String::from("id,v\n");
        for i in 0..50 {
            s.push_str(&format!("k{i:03},{i}\n"));
        }
        s.push_str(&format!("k050,{last}\n"));
        s
    };
    env.put_and_load("raw/plain/1.csv", csv("50")).await?;
    let s = env.put_and_load("raw/plain/2.csv", csv("50")).await?;
    assert_eq!((s.rows.unchanged, s.results[0].held_rows), (51, 51));
    // Every row held: no COPY, no staging table, no upsert statement.
    assert_eq!(s.results[0].path, Some(LoadPath::Staged));
    let s = env.put_and_load("raw/plain/3.csv", csv("50.5")).await?;
    assert_eq!(s.failed, 0, "{:?}", s.errors);
    assert_eq!((s.rows.updated, s.rows.unchanged), (1, 50));
    assert!(s.results[0].held_rows >= 25, "{}", s.results[0].held_rows);
    let v = env.rows("plain", "id, v::text").await?;
    assert_eq!(v[50][1].as_deref(), Some("50.5"));
    Ok(())
}

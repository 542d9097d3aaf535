//! The test services themselves: a database per test, a bucket per test, real protocols.

#[tokio::test]
async fn each_test_gets_its_own_database() -> anyhow::Result<()> {
    let a = sluice_testkit::database().await?;
    let b = sluice_testkit::database().await?;
    assert_ne!(a.name, b.name);
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&a.pool)
        .await?;
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&b.pool)
        .await?;
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&a.pool)
        .await?;
    assert_eq!(name, a.name);
    let admin = sluice_testkit::admin_url()?;
    let dropped = a.name.clone();
    drop(a);
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&dropped)
        .fetch_one(&mut c)
        .await?;
    assert_eq!(left, 0, "database dropped with its handle");
    Ok(())
}

#[tokio::test]
async fn s3_endpoint_speaks_the_real_protocol() -> anyhow::Result<()> {
    let bucket = sluice_testkit::bucket().await?;
    let other = sluice_testkit::bucket().await?;
    assert_ne!(bucket.name, other.name);
    let body = "ação,😀\n".repeat(10_000);
    bucket
        .put("raw/hotmart/dt=2024-01-01/a b+c.csv", body.clone())
        .await?;
    assert_eq!(
        bucket.get("raw/hotmart/dt=2024-01-01/a b+c.csv").await?,
        body.as_bytes()
    );
    assert_eq!(
        bucket.keys("raw/").await?,
        ["raw/hotmart/dt=2024-01-01/a b+c.csv"]
    );
    assert!(other.keys("").await?.is_empty(), "buckets are separate");
    // Wrong credentials are refused: SigV4 is really checked.
    let bad = sluice_testkit::S3Endpoint {
        secret_key: "wrong".into(),
        ..bucket.endpoint.clone()
    };
    let denied = bad
        .client()
        .list_objects_v2()
        .bucket(&bucket.name)
        .send()
        .await;
    assert!(denied.is_err());
    Ok(())
}

#[test]
fn urls_print_without_passwords() {
    assert_eq!(
        sluice_testkit::redact_url("postgres://app:hunter2@db:5432/x"),
        "postgres://app:***@db:5432/x"
    );
    assert_eq!(
        sluice_testkit::redact_url("postgres://app@db/x"),
        "postgres://app@db/x"
    );
}

#[tokio::test]
async fn objects_are_handed_over_once_each_as_they_land() -> anyhow::Result<()> {
    use sluice_testkit::notify::{Created, Listing, deliver_while};
    use std::time::Duration;
    let bucket = sluice_testkit::bucket().await?;
    let listing = Listing::new(bucket.client.clone(), &bucket.name, "raw/", &[".csv"]);
    let (handled_tx, mut handled) = tokio::sync::mpsc::unbounded_channel::<String>();
    let producer = async {
        bucket.put("raw/a.csv", "1").await?;
        bucket.put("raw/a.manifest.json", "{}").await?;
        // The first object is handled while the producer is still running.
        let first = tokio::time::timeout(Duration::from_secs(60), handled.recv()).await;
        anyhow::ensure!(
            first.is_ok_and(|k| k.as_deref() == Some("raw/a.csv")),
            "the first object was not handed over before the producer ended"
        );
        bucket.put("raw/b.csv", "22").await?;
        bucket.put("raw/c.csv", "333").await?;
        anyhow::Ok("produced")
    };
    let handle = move |_: std::sync::Arc<()>, c: Created| {
        let tx = handled_tx.clone();
        async move {
            let _ = tx.send(c.key.clone());
            anyhow::Ok((c.key, c.size, c.sequence))
        }
    };
    let (out, done) = deliver_while(
        listing,
        producer,
        vec![(), ()],
        Duration::from_millis(5),
        handle,
    )
    .await?;
    assert_eq!(out, "produced");
    let want = [
        ("raw/a.csv", 1, 0),
        ("raw/b.csv", 2, 1),
        ("raw/c.csv", 3, 2),
    ];
    assert_eq!(done, want.map(|(k, s, q)| (k.to_owned(), s, q)));
    Ok(())
}

#[tokio::test]
async fn a_failing_handler_fails_the_delivery_naming_the_object() -> anyhow::Result<()> {
    use sluice_testkit::notify::{Listing, deliver_while};
    let bucket = sluice_testkit::bucket().await?;
    let listing = Listing::new(bucket.client.clone(), &bucket.name, "raw/", &[".csv"]);
    let producer = async { bucket.put("raw/bad.csv", "x").await };
    let err = deliver_while(
        listing,
        producer,
        vec![()],
        std::time::Duration::from_millis(5),
        |_, _| async { anyhow::Result::<()>::Err(anyhow::anyhow!("refused")) },
    )
    .await
    .unwrap_err();
    assert_eq!(format!("{err:#}"), "raw/bad.csv: refused");
    Ok(())
}

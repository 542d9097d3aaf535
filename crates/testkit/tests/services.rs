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

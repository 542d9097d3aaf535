//! The generated SQL against a real Postgres: create, stage, COPY, upsert; counts, last-wins,
//! unchanged rows untouched, and the ordering guard.

use sluice_transform::{ColumnType, CopyText, PlanColumn, TableRef, UpsertPlan};
use sqlx::{PgPool, Row};

fn plan(guard: bool) -> UpsertPlan {
    UpsertPlan::new(
        TableRef::new("public", "Sales \"2024\""),
        vec![
            PlanColumn::new("id", ColumnType::Text),
            PlanColumn::new("status", ColumnType::Text),
            PlanColumn::new("price", ColumnType::Numeric),
            PlanColumn::new("updated_at", ColumnType::Timestamptz),
        ],
        vec!["id".into()],
        guard.then(|| "updated_at".into()),
    )
    .unwrap()
}

/// Loads rows (in file order) the way the loader does; returns (inserted, updated, unchanged).
async fn load(
    pool: &PgPool,
    plan: &UpsertPlan,
    rows: &[[Option<&str>; 4]],
) -> anyhow::Result<(i64, i64, i64)> {
    let mut tx = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(plan.create_staging("stage")))
        .execute(&mut *tx)
        .await?;
    let mut w = CopyText::default();
    for (line, r) in rows.iter().enumerate() {
        let line = (line + 2).to_string();
        w.write_fields(std::iter::once(Some(line.as_str())).chain(r.iter().copied()));
    }
    let mut copy = tx.copy_in_raw(&plan.copy_staging("stage")).await?;
    copy.send(w.as_bytes()).await?;
    copy.finish().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(plan.upsert("stage")))
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let (ins, upd, distinct): (i64, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    Ok((ins, upd, distinct - ins - upd))
}

async fn table(pool: &PgPool) -> anyhow::Result<Vec<(String, Option<String>, Option<String>)>> {
    let rows =
        sqlx::query(r#"SELECT id, status, price::text FROM "public"."Sales ""2024""" ORDER BY id"#)
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

#[tokio::test]
async fn upsert_counts_last_wins_and_leaves_unchanged_rows_alone() -> anyhow::Result<()> {
    let db = sluice_testkit::database().await?;
    let p = plan(false);
    sqlx::query(sqlx::AssertSqlSafe(p.create_table()))
        .execute(&db.pool)
        .await?;
    let t = Some("2024-01-01T00:00:00Z");
    let first = [
        [Some("a"), Some("NEW"), Some("97.00"), t],
        [Some("b"), Some("NEW"), Some("1e400"), t],
        [Some("a"), Some("APPROVED"), Some("97.00"), t], // same key later in the file: wins
    ];
    assert_eq!(load(&db.pool, &p, &first).await?, (2, 0, 0));
    let rows = table(&db.pool).await?;
    assert_eq!(
        rows[0],
        ("a".into(), Some("APPROVED".into()), Some("97.00".into()))
    );
    assert_eq!(
        rows[1].2.as_ref().map(String::len),
        Some(401),
        "1e400 stored exactly"
    );

    let xmin_before: Vec<String> =
        sqlx::query_scalar(r#"SELECT xmin::text FROM "public"."Sales ""2024""" ORDER BY id"#)
            .fetch_all(&db.pool)
            .await?;
    // Redelivery: nothing changes, nothing is rewritten.
    assert_eq!(load(&db.pool, &p, &first).await?, (0, 0, 2));
    let xmin_after: Vec<String> =
        sqlx::query_scalar(r#"SELECT xmin::text FROM "public"."Sales ""2024""" ORDER BY id"#)
            .fetch_all(&db.pool)
            .await?;
    assert_eq!(xmin_before, xmin_after, "unchanged rows are not rewritten");

    let second = [
        [Some("b"), Some("REFUNDED"), Some("1e400"), t],
        [Some("a"), Some("APPROVED"), Some("97.00"), t],
        [Some("c"), None, None, None],
    ];
    assert_eq!(load(&db.pool, &p, &second).await?, (1, 1, 1));
    let rows = table(&db.pool).await?;
    assert_eq!(rows[1].1.as_deref(), Some("REFUNDED"));
    assert_eq!(rows[2], ("c".into(), None, None));
    // NULL vs value is a change; NULL vs NULL is not.
    assert_eq!(
        load(&db.pool, &p, &[[Some("c"), None, None, None]]).await?,
        (0, 0, 1)
    );
    assert_eq!(
        load(&db.pool, &p, &[[Some("c"), Some(""), None, None]]).await?,
        (0, 1, 0)
    );
    Ok(())
}

/// Values that the text format must escape reach the table as they were: tabs, line breaks,
/// backslashes, text that reads like `COPY`'s NULL or end-of-data marker, and the empty string
/// (not NULL).
#[tokio::test]
async fn awkward_values_reach_the_table_unchanged() -> anyhow::Result<()> {
    let db = sluice_testkit::database().await?;
    let p = plan(false);
    sqlx::query(sqlx::AssertSqlSafe(p.create_table()))
        .execute(&db.pool)
        .await?;
    let awkward = [
        "tab\there",
        "line\nbreak\r\n",
        r"C:\dir\",
        r"\N",
        r"\.",
        "",
        r#"a,"b";c"#,
        "ação",
    ];
    let keys = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"];
    let rows: Vec<[Option<&str>; 4]> = keys
        .iter()
        .zip(awkward)
        .map(|(k, v)| [Some(*k), Some(v), None, None])
        .collect();
    assert_eq!(load(&db.pool, &p, &rows).await?, (8, 0, 0));
    let stored: Vec<Option<String>> = table(&db.pool).await?.into_iter().map(|r| r.1).collect();
    let expected: Vec<Option<String>> = awkward.iter().map(|v| Some(v.to_string())).collect();
    assert_eq!(stored, expected);
    Ok(())
}

#[tokio::test]
async fn guard_holds_back_older_versions() -> anyhow::Result<()> {
    let db = sluice_testkit::database().await?;
    let p = plan(true);
    sqlx::query(sqlx::AssertSqlSafe(p.create_table()))
        .execute(&db.pool)
        .await?;
    let newer = [[
        Some("a"),
        Some("REFUNDED"),
        Some("50"),
        Some("2024-02-01T00:00:00Z"),
    ]];
    let older = [[
        Some("a"),
        Some("APPROVED"),
        Some("97"),
        Some("2024-01-01T00:00:00Z"),
    ]];
    assert_eq!(load(&db.pool, &p, &newer).await?, (1, 0, 0));
    assert_eq!(
        load(&db.pool, &p, &older).await?,
        (0, 0, 1),
        "an older file processed later changes nothing"
    );
    assert_eq!(table(&db.pool).await?[0].1.as_deref(), Some("REFUNDED"));
    let same_time = [[
        Some("a"),
        Some("CHARGEBACK"),
        Some("50"),
        Some("2024-02-01T00:00:00Z"),
    ]];
    assert_eq!(
        load(&db.pool, &p, &same_time).await?,
        (0, 1, 0),
        "equal guard values replace (>=)"
    );
    // A stored NULL guard is replaced by any version.
    load(&db.pool, &p, &[[Some("n"), Some("X"), None, None]]).await?;
    assert_eq!(
        load(
            &db.pool,
            &p,
            &[[Some("n"), Some("Y"), None, Some("2020-01-01T00:00:00Z")]]
        )
        .await?,
        (0, 1, 0)
    );
    Ok(())
}

#[tokio::test]
async fn a_created_table_has_the_plans_fillfactor() -> anyhow::Result<()> {
    let db = sluice_testkit::database().await?;
    let p = plan(false).with_fillfactor(Some(70));
    sqlx::query(sqlx::AssertSqlSafe(p.create_table()))
        .execute(&db.pool)
        .await?;
    let options: Option<Vec<String>> = sqlx::query_scalar(
        r#"SELECT reloptions FROM pg_class WHERE oid = '"public"."Sales ""2024"""'::regclass"#,
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(options, Some(vec!["fillfactor=70".to_owned()]));
    let t = Some("2024-01-01T00:00:00Z");
    assert_eq!(
        load(&db.pool, &p, &[[Some("a"), Some("new"), None, t]]).await?,
        (1, 0, 0)
    );
    assert_eq!(
        load(&db.pool, &p, &[[Some("a"), Some("paid"), None, t]]).await?,
        (0, 1, 0)
    );
    Ok(())
}

#[tokio::test]
async fn add_columns_and_unique_index_statements_run() -> anyhow::Result<()> {
    let db = sluice_testkit::database().await?;
    let p = plan(false);
    sqlx::query(r#"CREATE TABLE "public"."Sales ""2024""" (id text, status text)"#)
        .execute(&db.pool)
        .await?;
    for sql in p.add_columns(&["id".into(), "status".into()]) {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&db.pool)
            .await?;
    }
    // Without a unique constraint on the key the upsert fails; the suggested index fixes it.
    let t = Some("2024-01-01T00:00:00Z");
    let err = load(&db.pool, &p, &[[Some("a"), None, None, t]])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no unique or exclusion constraint"), "{err}");
    sqlx::query(sqlx::AssertSqlSafe(p.unique_index()))
        .execute(&db.pool)
        .await?;
    assert_eq!(
        load(&db.pool, &p, &[[Some("a"), None, None, t]]).await?,
        (1, 0, 0)
    );
    Ok(())
}

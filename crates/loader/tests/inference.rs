//! Inferred types never change a value's text on its way in.

#[tokio::test]
async fn numbers_postgres_would_rewrite_stay_text() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    // No mapping types these columns: `plain` infers everything but the key's uniqueness.
    let csv = "id,cpf,amount,sci\n0123,01234567890,+1.50,1e3\n123,12345678901,2.50,2e3\n";
    let s = env.put_and_load("raw/plain/a.csv", csv).await?;
    assert_eq!(
        (s.rows.inserted, s.rows.duplicates, s.rows.rejected),
        (2, 0, 0),
        "0123 and 123 are two keys"
    );
    assert_eq!(
        env.rows("plain", "id, cpf, amount, sci").await?,
        [
            ["0123", "01234567890", "+1.50", "1e3"].map(|v| Some(v.to_string())),
            ["123", "12345678901", "2.50", "2e3"].map(|v| Some(v.to_string())),
        ]
    );
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'plain'::regclass AND attnum > 0 ORDER BY attnum",
    )
    .fetch_all(&env.db.pool)
    .await?;
    assert_eq!(types, ["text"; 4]);
    Ok(())
}

/// The types of `table`'s columns, in order.
async fn types(env: &crate::common::Env, table: &str) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = $1::regclass AND attnum > 0 ORDER BY attnum",
    )
    .bind(table)
    .fetch_all(&env.db.pool)
    .await?)
}

/// Columns the ingest saw only as JSON strings ("123", a code) stay text: its manifest beside
/// the object says so. Without a manifest (a CSV from elsewhere) the values decide.
#[tokio::test]
async fn json_strings_stay_text_by_the_manifest() -> anyhow::Result<()> {
    let more = r#"
[table]
name = "codes"
key = ["id"]
"#;
    let env = crate::common::env_with(&[], &[("codes", more)]).await?;
    let csv = "id,code,qty\nk1,123,1\nk2,456,2\n";
    let manifest = serde_json::json!({
        "columns": [
            {"name": "id", "path": [], "types": ["string"]},
            {"name": "code", "path": [], "types": ["string", "null"]},
            {"name": "qty", "path": [], "types": ["integer"]},
        ],
        "object": {"records": 2},
    });
    env.bucket
        .put(
            "raw/codes/dt=2024-01-01/_a.manifest.json",
            manifest.to_string(),
        )
        .await?;
    env.put_and_load("raw/codes/dt=2024-01-01/a.csv", csv)
        .await?;
    assert_eq!(types(&env, "codes").await?, ["text", "text", "bigint"]);
    // The same file without a manifest: `code` is a number.
    env.put_and_load("raw/plain/b.csv", csv).await?;
    assert_eq!(types(&env, "plain").await?, ["text", "bigint", "bigint"]);
    Ok(())
}

/// Under `evolve`, a later value that does not fit a column whose type sluice inferred widens
/// the column (bigint → numeric → text) instead of being rejected in every object to come; each
/// value keeps its text. Columns a user typed, and tables under `freeze`, are not touched.
#[tokio::test]
async fn a_value_that_outgrows_an_inferred_column_widens_it_under_evolve() -> anyhow::Result<()> {
    let env = crate::common::env_with(&[], &[("frozen", crate::common::FROZEN)]).await?;
    let header = "id,n,at,flag\n";
    env.put_and_load(
        "raw/plain/a.csv",
        format!("{header}k1,7,2024-01-02T03:04:05Z,true\n"),
    )
    .await?;
    assert_eq!(
        types(&env, "plain").await?,
        ["text", "bigint", "timestamp with time zone", "boolean"]
    );
    let s = env
        .put_and_load("raw/plain/b.csv", format!("{header}k2,1.50,,false\n"))
        .await?;
    assert_eq!((s.rows.inserted, s.rows.rejected), (1, 0));
    assert_eq!(
        types(&env, "plain").await?,
        ["text", "numeric", "timestamp with time zone", "boolean"]
    );
    let s = env
        .put_and_load("raw/plain/c.csv", format!("{header}k3,n/a,soon,yes\n"))
        .await?;
    assert_eq!(
        (s.rows.inserted, s.rows.rejected),
        (1, 0),
        "nothing rejected"
    );
    assert_eq!(types(&env, "plain").await?, ["text"; 4]);
    let text = |row: [&str; 4]| row.map(|v| (!v.is_empty()).then(|| v.to_owned()));
    assert_eq!(
        env.rows("plain", "id, n, at, flag").await?,
        [
            text(["k1", "7", "2024-01-02T03:04:05+00:00", "true"]),
            text(["k2", "1.50", "", "false"]),
            text(["k3", "n/a", "soon", "yes"]),
        ]
    );

    // A column the user added is theirs: a value that does not fit it rejects its row.
    sqlx::query("ALTER TABLE plain ADD COLUMN m bigint")
        .execute(&env.db.pool)
        .await?;
    // (Good rows enough to stay under MAX_REJECT_RATIO.)
    let good: String = (10..20).map(|i| format!("k{i},{i}\n")).collect();
    let s = env
        .put_and_load("raw/plain/d.csv", format!("id,m\nk4,x\n{good}"))
        .await?;
    assert_eq!((s.rows.inserted, s.rows.rejected), (10, 1));
    assert_eq!(types(&env, "plain").await?[4], "bigint");

    // freeze: the inferred column keeps its type, the row is rejected.
    env.put_and_load("raw/frozen/a.csv", "id,n\nk1,7\n").await?;
    let s = env
        .put_and_load("raw/frozen/b.csv", format!("id,n\nk2,n/a\n{good}"))
        .await?;
    assert_eq!((s.rows.inserted, s.rows.rejected), (10, 1));
    assert_eq!(types(&env, "frozen").await?, ["text", "bigint"]);
    Ok(())
}

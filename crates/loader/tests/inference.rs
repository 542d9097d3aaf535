//! Inferred types never change a value's text on its way in.

mod common;

#[tokio::test]
async fn numbers_postgres_would_rewrite_stay_text() -> anyhow::Result<()> {
    let env = common::env().await?;
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

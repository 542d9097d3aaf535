//! Redacted columns never leave the loader in the clear: not in the table, not in quarantine,
//! not in error messages; and a hash needs a salt.

use sluice_transform::Redact;

const PII: &str = r#"
[table]
name = "people"
key = ["id"]

[columns.email]
redact = "hash"

[columns.cpf]
type = "bigint"
redact = "null"

[columns.score]
type = "numeric"
"#;

const CSV: &str = "id,email,cpf,score\n\
                   p1,ana@example.com,12345678901,1.5\n\
                   p2,bia@example.com,98765432100,not-a-score\n\
                   p3,caio@example.com,not-a-cpf,3.5\n";

#[tokio::test]
async fn quarantine_files_and_errors_keep_redacted_values_redacted() -> anyhow::Result<()> {
    let env = crate::common::env_with(
        &[("REDACT_SALT", "pepper"), ("MAX_REJECT_RATIO", "0.9")],
        &[("people", PII)],
    )
    .await?;
    let s = env.put_and_load("raw/people/a.csv", CSV).await?;
    assert_eq!((s.rows.inserted, s.rows.rejected), (1, 2), "{s:?}");
    let q = env
        .bucket
        .get(s.results[0].quarantine_key.as_deref().unwrap())
        .await?;
    let q = String::from_utf8(q)?;
    for clear in [
        "bia@example.com",
        "caio@example.com",
        "98765432100",
        "not-a-cpf",
    ] {
        assert!(!q.contains(clear), "{clear} in quarantine: {q}");
    }
    let hashed = Redact::Hash.apply("pepper", b"bia@example.com").unwrap();
    assert!(
        q.contains(&hashed),
        "the hash stands in for the e-mail: {q}"
    );
    assert!(q.contains("not-a-score"), "other columns stay as read: {q}");
    let stored: Vec<Vec<Option<String>>> = env.rows("people", "email, cpf::text").await?;
    let ana = Redact::Hash.apply("pepper", b"ana@example.com");
    assert_eq!(stored, [[ana, None]]);
    Ok(())
}

#[tokio::test]
async fn a_redacted_value_is_not_quoted_in_the_error() -> anyhow::Result<()> {
    let env = crate::common::env_with(&[("REDACT_SALT", "pepper")], &[("people", PII)]).await?;
    let csv = "id,email,cpf,score\np1,ana@example.com,not-a-cpf,1\n";
    let e = env.put_and_load("raw/people/a.csv", csv).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("column \"cpf\""), "{msg}");
    assert!(!msg.contains("not-a-cpf"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn hashing_without_a_salt_is_refused() -> anyhow::Result<()> {
    let env = crate::common::env_with(&[], &[("people", PII)]).await?;
    let e = env.put_and_load("raw/people/a.csv", CSV).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("REDACT_SALT"), "{msg}");
    assert!(!env.table_exists("people").await?, "nothing created");
    Ok(())
}

//! The CSV convention against a real Postgres: `COPY … FROM STDIN (FORMAT csv)` reads exactly what
//! flatten wrote (NULL vs empty string, quotes, newlines, unicode, huge numbers), and what
//! `COPY … TO STDOUT (FORMAT csv)` writes reads back identically through `CsvReader`.

use sluice_flatten::{CsvPipeline, CsvReader, CsvRecord, InputFormat, Options};
use sqlx::Row;

const TRICKY: &[Option<&str>] = &[
    None,
    Some(""),
    Some("plain"),
    Some("with,comma"),
    Some("say \"hi\""),
    Some("line\nbreak"),
    Some("crlf\r\nbreak"),
    Some("lone\rreturn"),
    Some("\\."),
    Some("multi\n\\.\nline"),
    Some("\\N"),
    Some("NULL"),
    Some("back\\slash"),
    Some("  padded  "),
    Some("ação São Paulo 北京 😀"),
    Some("\u{7f}\u{1}tab\there"),
    Some("\""),
    Some(","),
];

fn records_jsonl() -> String {
    TRICKY
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let v = serde_json::to_string(v).unwrap();
            format!("{{\"id\":{i},\"v\":{v},\"n\":{{\"big\":18446744073709551616,\"exp\":1e400,\"scale\":97.00}}}}\n")
        })
        .collect()
}

#[tokio::test]
async fn flatten_csv_copies_into_postgres_exactly() -> anyhow::Result<()> {
    let db = sluice_testkit::database().await?;
    let input = records_jsonl();
    let mut p = CsvPipeline::new(input.as_bytes(), InputFormat::JsonLines, Options::default())?;
    let mut csv = Vec::new();
    p.write_part(&mut csv)?;
    assert!(csv.starts_with(b"id,v,n_big,n_exp,n_scale\n"));

    sqlx::query("CREATE TABLE t (id int PRIMARY KEY, v text, n_big numeric, n_exp numeric, n_scale numeric)")
        .execute(&db.pool)
        .await?;
    let mut conn = db.pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw("COPY t FROM STDIN (FORMAT csv, HEADER true)")
        .await?;
    copy.send(csv.as_slice()).await?;
    let n = copy.finish().await?;
    assert_eq!(
        n as usize,
        TRICKY.len(),
        "every record loaded (no early end-of-data)"
    );

    let rows = sqlx::query(
        "SELECT id, v, n_big::text AS big, n_exp = 1e400::numeric AS exp_ok, \
         length(n_exp::text) AS exp_len, n_scale::text AS scale FROM t ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await?;
    for (row, want) in rows.iter().zip(TRICKY) {
        let v: Option<String> = row.try_get("v")?;
        assert_eq!(v.as_deref(), *want, "row {}", row.try_get::<i32, _>("id")?);
        assert_eq!(row.try_get::<String, _>("big")?, "18446744073709551616");
        assert!(row.try_get::<bool, _>("exp_ok")?);
        assert_eq!(row.try_get::<i32, _>("exp_len")?, 401);
        assert_eq!(row.try_get::<String, _>("scale")?, "97.00");
    }

    // And back out: Postgres' own CSV reads identically through CsvReader.
    let mut out = Vec::new();
    {
        use futures_util::TryStreamExt;
        let mut stream = conn
            .copy_out_raw("COPY (SELECT v FROM t ORDER BY id) TO STDOUT (FORMAT csv)")
            .await?;
        while let Some(chunk) = stream.try_next().await? {
            out.extend_from_slice(&chunk);
        }
    }
    let mut r = CsvReader::new(out.as_slice());
    let mut rec = CsvRecord::default();
    let mut i = 0;
    while r.read(&mut rec)? {
        assert_eq!(
            rec.get(0),
            TRICKY[i].map(str::as_bytes),
            "value {i} read back"
        );
        i += 1;
    }
    assert_eq!(i, TRICKY.len());
    Ok(())
}

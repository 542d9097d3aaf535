//! Bad input: a clear error naming the line and column, nothing lost. Rows that cannot load are
//! quarantined with `_line` and `_error`; the rest load; above MAX_REJECT_RATIO nothing does.

use crate::common::balanced;
use sluice_flatten::{CsvReader, CsvRecord};
use sluice_loader::HandlerError;

/// Reads a quarantine file back: (line, error, fields…) per row, header first.
fn quarantine_rows(bytes: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
    let mut r = CsvReader::new(bytes);
    let mut rec = CsvRecord::default();
    let mut out = Vec::new();
    while r.read(&mut rec).unwrap() {
        out.push(rec.iter().map(|f| f.map(<[u8]>::to_vec)).collect());
    }
    out
}

fn text(f: &Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(f.as_deref().unwrap_or(b"<NULL>")).into_owned()
}

#[tokio::test]
async fn bad_rows_are_quarantined_with_line_and_reason_and_the_rest_load() -> anyhow::Result<()> {
    let env = crate::common::env_with(&[("MAX_REJECT_RATIO", "0.8")], &[]).await?;
    let big = "x".repeat(150_000);
    let mut csv = Vec::new();
    csv.extend_from_slice(b"id,status,price,updated_at\n");
    csv.extend_from_slice(b"ok1,NEW,1.5,2024-01-01T00:00:00Z\n"); // line 2
    csv.extend_from_slice(b"ragged,NEW,1.5\n"); // 3: too few fields, never padded
    csv.extend_from_slice(b"wide,NEW,1.5,2024-01-01T00:00:00Z,extra\n"); // 4
    csv.extend_from_slice(b"badnum,NEW,abc,2024-01-01T00:00:00Z\n"); // 5
    csv.extend_from_slice(b"badtime,NEW,1,yesterday\n"); // 6
    csv.extend_from_slice(b",NEW,1,2024-01-01T00:00:00Z\n"); // 7: missing key (NULL)
    csv.extend_from_slice(b"\"\",NEW,1,2024-01-01T00:00:00Z\n"); // 8: empty key
    csv.extend_from_slice(b"utf8,N\xc3\x28W,1,2024-01-01T00:00:00Z\n"); // 9: invalid UTF-8
    csv.extend_from_slice(b"nul,N\x00W,1,2024-01-01T00:00:00Z\n"); // 10: NUL
    csv.extend_from_slice(format!("big,{big},2.5,2024-01-01T00:00:00Z\n").as_bytes()); // 11
    csv.extend_from_slice(b"\n"); // 12: blank line
    csv.extend_from_slice(b"\"multi\nline\",\"a \"\"quoted\"\", comma\",3,2024-01-01T00:00:00Z\n"); // 13-14
    csv.extend_from_slice(b"empty,\"\",,2024-01-01T00:00:00Z\n"); // 15: "" and NULL
    let s = env
        .put_and_load("raw/sales/dt=2024-01-01/mixed file.csv", csv)
        .await?;
    assert_eq!(
        (s.rows.rows_read, s.rows.inserted, s.rows.rejected),
        (13, 4, 9),
        "{s:?}"
    );
    assert!(balanced(&s));
    let r = &s.results[0];
    assert_eq!(
        r.quarantine_key.as_deref(),
        Some("quarantine/raw/sales/dt=2024-01-01/mixed file.csv")
    );

    let rows = env
        .rows("sales", "id, status, price::text, length(status)::text")
        .await?;
    let ids: Vec<_> = rows.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(ids, ["big", "empty", "multi\nline", "ok1"]);
    assert_eq!(
        rows[0][3].as_deref(),
        Some("150000"),
        "a 150 KB field loads"
    );
    assert_eq!(rows[1][1].as_deref(), Some(""), "\"\" is an empty string");
    assert_eq!(rows[1][2], None, "an unquoted empty field is NULL");
    assert_eq!(rows[2][1].as_deref(), Some("a \"quoted\", comma"));

    let q = quarantine_rows(&env.bucket.get(r.quarantine_key.as_deref().unwrap()).await?);
    assert_eq!(
        q[0].iter().map(text).collect::<Vec<_>>(),
        ["_line", "_error", "id", "status", "price", "updated_at"]
    );
    let reasons: Vec<(String, String)> =
        q[1..].iter().map(|r| (text(&r[0]), text(&r[1]))).collect();
    let expect = [
        ("3", "row has 3 fields, the header has 4"),
        ("4", "row has 5 fields, the header has 4"),
        ("5", "column \"price\": not a number (value \"abc\")"),
        ("6", "column \"updated_at\": not an RFC 3339 timestamp"),
        ("7", "column \"id\": the key is missing (NULL)"),
        ("8", "column \"id\": the key is empty"),
        ("9", "column \"status\": invalid UTF-8 at byte 1"),
        ("10", "column \"status\": contains a NUL character"),
        ("12", "blank line (the header has 4 columns)"),
    ];
    assert_eq!(reasons.len(), 9, "{reasons:?}");
    for ((line, reason), (el, er)) in reasons.iter().zip(expect) {
        assert_eq!(line, el);
        assert!(
            reason.starts_with(er),
            "line {line}: {reason:?} should start with {er:?}"
        );
    }
    // The raw fields travel with the reason, bytes as they were.
    assert_eq!(q[2].len(), 2 + 5, "the wide row keeps all its fields");
    assert_eq!(q[7][3].as_deref(), Some(&b"N\xc3\x28W"[..]));
    let ledger: (i64, Option<String>) =
        sqlx::query_as("SELECT rejected, quarantine_key FROM sluice_loads")
            .fetch_one(&env.db.pool)
            .await?;
    assert_eq!(ledger.0, 9);
    Ok(())
}

/// A table of the user's with limits beyond its base types and CHECK constraints: a value a
/// column cannot hold, or a row a constraint refuses, rejects its row, with the reason; the
/// others load (the `COPY` aborted, and the object went to the dead-letter queue).
#[tokio::test]
async fn values_the_table_cannot_hold_reject_their_row_only() -> anyhow::Result<()> {
    let env = crate::common::env_with(&[("MAX_REJECT_RATIO", "0.9")], &[]).await?;
    sqlx::query(
        "CREATE TABLE plain (id text PRIMARY KEY, \
         code varchar(3) CONSTRAINT code_upper CHECK (code = upper(code)), n smallint, \
         amount numeric(5,2) CHECK (amount >= 0), ratio real, note text NOT NULL)",
    )
    .execute(&env.db.pool)
    .await?;
    let csv = "id,code,n,amount,ratio,note\n\
               ok,ABC,1,999.994,1.5,x\n\
               pad,AB  ,1,1,1,x\n\
               long,abcd,1,1,1,x\n\
               small,a,40000,1,1,x\n\
               money,a,1,999.995,1,x\n\
               real,a,1,1,1e39,x\n\
               null,a,1,1,1,\n\
               negative,A,1,-1,1,x\n\
               lower,abc,1,1,1,x\n";
    let s = env.put_and_load("raw/plain/limits.csv", csv).await?;
    assert_eq!((s.rows.inserted, s.rows.rejected), (2, 7), "{s:?}");
    assert!(balanced(&s));
    let rows = env.rows("plain", "id, code, amount::text").await?;
    assert_eq!(
        rows,
        [
            [Some("ok".into()), Some("ABC".into()), Some("999.99".into())],
            [Some("pad".into()), Some("AB ".into()), Some("1.00".into())]
        ]
    );
    let key = s.results[0].quarantine_key.as_deref().unwrap();
    let q = quarantine_rows(&env.bucket.get(key).await?);
    let reasons: Vec<String> = q[1..].iter().map(|r| text(&r[1])).collect();
    let expect = [
        "column \"code\": 4 characters, more than character varying(3) holds",
        "column \"n\": out of range for smallint",
        "column \"amount\": more than 3 digits before the point",
        "column \"ratio\": out of range for real",
        "column \"note\": NULL in a NOT NULL column",
        "violates check constraint \"plain_amount_check\"",
        "violates check constraint \"code_upper\"",
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:?}");
    for (got, want) in reasons.iter().zip(expect) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    // The refused rows travel as they were read.
    assert_eq!(text(&q[6][2]), "negative");
    assert_eq!(text(&q[7][3]), "abc");
    Ok(())
}

#[tokio::test]
async fn above_the_reject_ratio_nothing_is_committed_and_the_error_names_lines()
-> anyhow::Result<()> {
    let env = crate::common::env().await?;
    // The table exists with one row; the bad file must not change it.
    env.put_and_load(
        "raw/sales/seed.csv",
        "id,status,price,updated_at\nk,NEW,1,2024-01-01T00:00:00Z\n",
    )
    .await?;
    let mut csv = String::from("id,status,price,updated_at\n");
    for i in 0..8 {
        csv.push_str(&format!("good{i},NEW,1,2024-01-01T00:00:00Z\n"));
    }
    csv.push_str("k,CHANGED,1,2024-01-02T00:00:00Z\n"); // line 10, good
    csv.push_str("bad1,NEW,x,2024-01-01T00:00:00Z\n"); // line 11
    csv.push_str("bad2,NEW,1\n"); // line 12
    let e = env
        .put_and_load("raw/sales/bad.csv", csv)
        .await
        .unwrap_err()
        .downcast::<HandlerError>()?;
    assert!(!e.is_retryable());
    assert!(e.message.contains("2 of 11 rows rejected"), "{}", e.message);
    assert!(
        e.message.contains("line 11: column \"price\""),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("line 12: row has 3 fields"),
        "{}",
        e.message
    );
    assert_eq!(env.count("sales").await?, 1, "nothing committed");
    assert_eq!(
        env.rows("sales", "status").await?,
        [[Some("NEW".to_string())]]
    );
    assert_eq!(
        env.ledger().await?,
        1,
        "no ledger row for the failed object"
    );
    let d: lambda_runtime::Diagnostic = e.into();
    assert_eq!(d.error_type, "sluice.Permanent");
    Ok(())
}

#[tokio::test]
async fn empty_header_only_bom_and_crlf_files() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    // Empty: nothing to do, but recorded, so a redelivery is a skip.
    let s = env.put_and_load("raw/plain/empty.csv", "").await?;
    assert_eq!((s.loaded, s.rows.rows_read), (1, 0));
    assert_eq!(env.replay("raw/plain/empty.csv").await?.skipped, 1);
    // Header only and no table yet: nothing to create (no values to take types from).
    let s = env.put_and_load("raw/plain/header.csv", "id,v\n").await?;
    assert_eq!((s.loaded, s.rows.rows_read), (1, 0));
    assert!(!env.table_exists("plain").await?);
    // A BOM and CRLF line ends, as spreadsheets write them.
    let s = env
        .put_and_load(
            "raw/plain/excel.csv",
            "\u{feff}id,v\r\n1,\"a\r\nb\"\r\n2,c\r\n",
        )
        .await?;
    assert_eq!(
        (s.rows.rows_read, s.rows.inserted, s.rows.rejected),
        (2, 2, 0)
    );
    assert_eq!(
        env.rows("plain", "id::text, v").await?,
        [
            [Some("1".into()), Some("a\r\nb".into())],
            [Some("2".into()), Some("c".into())]
        ],
        "the BOM is not part of the first column's name; CRLF ends rows, not values"
    );
    // Header only once the table exists: a load of nothing.
    let s = env.put_and_load("raw/plain/header2.csv", "id,v\n").await?;
    assert_eq!((s.loaded, s.rows.rows_read, s.rows.inserted), (1, 0, 0));
    Ok(())
}

#[tokio::test]
async fn files_that_are_not_csv_fail_permanently_with_a_reason() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    let gz_garbage = [0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00];
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("raw/plain/f.csv", b"id\x00,v\n1,2\n".to_vec(), "NUL bytes"),
        (
            "raw/plain/a.csv",
            br#"{"id": 1, "v": "x"}"#.to_vec(),
            "looks like JSON",
        ),
        (
            "raw/plain/b.csv",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec(),
            "not a CSV file",
        ),
        (
            "raw/plain/c.csv.gz",
            gz_garbage.to_vec(),
            "reading the object",
        ),
        (
            "raw/plain/d.csv",
            b"id,id\n1,2\n".to_vec(),
            "column \"id\" appears twice",
        ),
        (
            "raw/plain/e.csv",
            b"name,v\nx,1\n".to_vec(),
            "key column \"id\" is not among the columns",
        ),
    ];
    for (key, body, why) in cases {
        let e = env
            .put_and_load(key, body)
            .await
            .unwrap_err()
            .downcast::<HandlerError>()?;
        assert!(!e.is_retryable(), "{key}: {e}");
        assert!(
            e.message.contains(key),
            "{key}: the error names the object: {e}"
        );
        assert!(e.message.contains(why), "{key}: {e}");
    }
    assert_eq!(env.ledger().await?, 0);
    Ok(())
}

//! The two formats rows can go to Postgres in: the same objects load the same rows and the same
//! counts whether the loader sends `COPY`'s binary format (the default) or its text format, on
//! the direct path and the staged one. (Tables whose column types sluice does not write exactly,
//! such as `bad_input`'s `smallint` and `varchar(3)`, get text either way.)

use crate::common::{HEADER, env_with, sales_csv};

pub(crate) type Rows = Vec<Vec<Option<String>>>;

/// A first object of new keys (the direct path), then a second of changed, unchanged and new
/// keys (staged), loaded with `COPY_FORMAT=format`: the table as text, and each load's
/// (read, inserted, updated, unchanged).
async fn two_loads(format: &str) -> anyhow::Result<(Rows, Vec<[u64; 4]>)> {
    let env = env_with(&[("COPY_FORMAT", format)], &[]).await?;
    let mut first = sales_csv(0..50, "NEW", "2024-01-01T00:00:00.1234565Z");
    first.push_str("id-x,\"tab\there \\N ação\",-0.000,1999-12-31T23:59:59.9999995-03:00\n");
    let mut second = sales_csv(0..10, "PAID", "2024-01-02T00:00:00.0000005Z");
    second.push_str(&sales_csv(10..60, "NEW", "2024-01-01T00:00:00.1234565Z")[HEADER.len()..]);
    let mut counts = Vec::new();
    for (key, csv) in [("raw/sales/a.csv", first), ("raw/sales/b.csv", second)] {
        let s = env.put_and_load(key, csv).await?;
        let r = s.rows;
        counts.push([r.rows_read, r.inserted, r.updated, r.unchanged]);
    }
    let rows = env
        .rows("sales", "id, status, price::text, updated_at::text")
        .await?;
    Ok((rows, counts))
}

#[tokio::test]
async fn binary_and_text_load_the_same_rows_and_counts() -> anyhow::Result<()> {
    let (binary, binary_counts) = two_loads("binary").await?;
    let (text, text_counts) = two_loads("text").await?;
    assert_eq!(binary_counts, [[51, 51, 0, 0], [60, 10, 10, 40]]);
    assert_eq!(text_counts, binary_counts);
    assert_eq!(binary.len(), 61);
    assert_eq!(binary, text);
    let x = binary.last().unwrap();
    assert_eq!(x[1].as_deref(), Some("tab\there \\N ação"));
    assert_eq!(x[2].as_deref(), Some("0.000"));
    Ok(())
}

/// A lookback re-fetch in small batches, loaded with `COPY_FORMAT=format`: unchanged rows,
/// changed ones, new ones, and keys repeated across batches, where a row the table holds
/// unchanged comes before or after a changed row with its key. The table as text, the second
/// load's (read, inserted, updated, unchanged, duplicates), and its rows left out unsent.
async fn refetch(format: &str) -> anyhow::Result<(Rows, [u64; 5], u64)> {
    let vars = [
        ("COPY_FORMAT", format),
        ("COPY_BATCH_BYTES", "1024"),
        ("HELD_ROWS", "read_back"),
    ];
    refetch_with(&vars, &[]).await
}

/// [`refetch`] with these variables and mappings.
pub(crate) async fn refetch_with(
    vars: &[(&str, &str)],
    mappings: &[(&str, &str)],
) -> anyhow::Result<(Rows, [u64; 5], u64)> {
    let env = env_with(vars, mappings).await?;
    let (t1, t2) = ("2024-01-01T00:00:00.5Z", "2024-01-02T00:00:00Z");
    env.put_and_load("raw/sales/a.csv", sales_csv(0..200, "NEW", t1))
        .await?;
    let body = |ids, status, ts| sales_csv(ids, status, ts)[HEADER.len()..].to_owned();
    let mut b = sales_csv(0..100, "NEW", t1); // id-000000 first as held, then changed
    b.push_str(&body(100..101, "PAID", t2)); // id-000100 changed, then as held: held wins
    b.push_str(&body(0..1, "PAID", t2));
    b.push_str(&body(101..150, "NEW", t1));
    b.push_str(&body(100..101, "NEW", t1));
    b.push_str(&body(150..151, "NEW", t1)); // id-000150 twice as held
    b.push_str(&body(150..190, "NEW", t1));
    b.push_str(&body(190..200, "PAID", t2));
    b.push_str(&body(200..210, "NEW", t1));
    let s = env.put_and_load("raw/sales/b.csv", b).await?;
    let r = s.rows;
    let counts = [
        r.rows_read,
        r.inserted,
        r.updated,
        r.unchanged,
        r.duplicates,
    ];
    let rows = env
        .rows("sales", "id, status, price::text, updated_at::text")
        .await?;
    Ok((rows, counts, s.results[0].held_rows))
}

#[tokio::test]
async fn rows_held_unchanged_are_left_out_with_the_same_rows_and_counts() -> anyhow::Result<()> {
    let (binary, binary_counts, held) = refetch("binary").await?;
    let (text, text_counts, text_held) = refetch("text").await?;
    // 213 lines: 10 new, 11 changed (id-000000 and id-190..199), 189 unchanged, 3 repeats.
    assert_eq!(binary_counts, [213, 10, 11, 189, 3]);
    assert_eq!(text_counts, binary_counts);
    assert_eq!(binary, text);
    assert_eq!(binary.len(), 210);
    assert_eq!(text_held, 0, "the text format stages every row");
    assert!(held >= 150, "most unchanged rows were never sent: {held}");
    let status = |id: &str| binary.iter().find(|r| r[0].as_deref() == Some(id)).unwrap()[1].clone();
    assert_eq!(status("id-000000").as_deref(), Some("PAID"));
    assert_eq!(status("id-000100").as_deref(), Some("NEW"));
    assert_eq!(status("id-000195").as_deref(), Some("PAID"));
    Ok(())
}

/// A re-fetch of 2,000 unchanged rows, one batch: its keys (26 KB) are read back in several
/// requests, each under one TLS record, and every row is held, not only the first request's.
#[tokio::test]
async fn a_batch_read_back_in_several_requests_is_held_whole() -> anyhow::Result<()> {
    let env = env_with(&[("HELD_ROWS", "read_back")], &[]).await?;
    let csv = sales_csv(0..2000, "NEW", "2024-01-01T00:00:00Z");
    env.put_and_load("raw/sales/a.csv", csv.clone()).await?;
    let s = env.put_and_load("raw/sales/b.csv", csv).await?;
    let r = s.rows;
    assert_eq!(s.results[0].held_rows, 2000);
    assert_eq!(
        [r.rows_read, r.inserted, r.updated, r.unchanged],
        [2000, 0, 0, 2000]
    );
    Ok(())
}

//! The two formats rows can go to Postgres in: the same objects load the same rows and the same
//! counts whether the loader sends `COPY`'s binary format (the default) or its text format, on
//! the direct path and the staged one. (Tables whose column types sluice does not write exactly,
//! such as `bad_input`'s `smallint` and `varchar(3)`, get text either way.)

use crate::common::{HEADER, env_with, sales_csv};

type Rows = Vec<Vec<Option<String>>>;

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

//! A mapping's `row_hash` column: each row's hash of its compared values, stored with it. A
//! re-fetch then reads back only keys and hashes (the default, `HELD_ROWS=auto`), and the rows
//! the table holds unchanged are never sent. The table and the counts are the ones a load
//! without the hash gives.

use crate::common::{Env, SALES, env_with, sales_csv};
use crate::copy_format::refetch_with;

/// `sales` (see `common::SALES`) with a `row_hash` column.
fn sales_hashed() -> String {
    format!("{SALES}\n[[derived]]\nname = \"row_hash\"\nkind = \"row_hash\"\n")
}

#[tokio::test]
async fn a_refetch_reads_back_hashes_and_gives_the_same_rows_and_counts() -> anyhow::Result<()> {
    let small = ("COPY_BATCH_BYTES", "1024");
    let mapping = sales_hashed();
    let hashed = [("sales", mapping.as_str())];
    let (plain, plain_counts, _) = refetch_with(&[small, ("HELD_ROWS", "stage")], &[]).await?;
    assert_eq!(plain_counts, [213, 10, 11, 189, 3]);
    // The default reads back keys and hashes; `stage` and the text format stage every row
    // and leave the unchanged ones out by the hash in the statement.
    for vars in [
        &[small][..],
        &[small, ("HELD_ROWS", "stage")],
        &[small, ("COPY_FORMAT", "text")],
    ] {
        let (rows, counts, held) = refetch_with(vars, &hashed).await?;
        assert_eq!(counts, plain_counts, "{vars:?}");
        assert_eq!(rows, plain, "{vars:?}");
        if vars.len() == 1 {
            assert!(held >= 150, "most unchanged rows were never sent: {held}");
        } else {
            assert_eq!(held, 0, "{vars:?}");
        }
    }
    Ok(())
}

/// Each row's stored hash, in key order.
async fn hashes(env: &Env) -> anyhow::Result<Vec<Option<String>>> {
    let rows = env.rows("sales", "id, row_hash::text").await?;
    Ok(rows.into_iter().map(|r| r[1].clone()).collect())
}

#[tokio::test]
async fn the_stored_hash_follows_the_values_it_covers() -> anyhow::Result<()> {
    let env = env_with(&[], &[("sales", sales_hashed().as_str())]).await?;
    let t1 = "2024-01-01T00:00:00Z";
    env.put_and_load("raw/sales/a.csv", sales_csv(0..3, "NEW", t1))
        .await?;
    let first = hashes(&env).await?;
    assert!(first.iter().all(Option::is_some), "{first:?}");
    assert_ne!(first[0], first[1], "rows with other values, other hashes");

    // id-000001 changes; the others come again unchanged, unsent.
    let mut b = sales_csv(0..1, "NEW", t1);
    b.push_str(
        "id-000001,PAID,1.50,2024-01-02T00:00:00Z\nid-000002,NEW,2.50,2024-01-01T00:00:00Z\n",
    );
    let s = env.put_and_load("raw/sales/b.csv", b.clone()).await?;
    assert_eq!([s.rows.updated, s.rows.unchanged], [1, 2]);
    assert_eq!(s.results[0].held_rows, 2);
    let second = hashes(&env).await?;
    assert_eq!((&second[0], &second[2]), (&first[0], &first[2]));
    assert_ne!(second[1], first[1]);

    // A row with no hash (written before the column existed) is compared column by column:
    // unchanged, and not rewritten. A row changed by another writer keeps its stored hash, so
    // the same source row counts as unchanged and does not overwrite that change.
    sqlx::raw_sql(
        "UPDATE sales SET row_hash = NULL WHERE id = 'id-000000'; \
         UPDATE sales SET status = 'EDITED' WHERE id = 'id-000002'",
    )
    .execute(&env.db.pool)
    .await?;
    let s = env.put_and_load("raw/sales/c.csv", b).await?;
    assert_eq!([s.rows.updated, s.rows.unchanged], [0, 3]);
    assert_eq!(s.results[0].held_rows, 2);
    let rows = env
        .rows("sales", "id, status, (row_hash IS NULL)::text")
        .await?;
    assert_eq!(rows[0][2].as_deref(), Some("true"));
    assert_eq!(rows[2][1].as_deref(), Some("EDITED"));
    Ok(())
}

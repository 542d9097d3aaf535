//! The handler with the fixtures `cargo lambda invoke --data-file` uses: URL-encoded keys,
//! EventBridge delivery, replay, keys the loader leaves alone; Hotmart records through the
//! built-in mapping.

use sluice_flatten::{CsvPipeline, InputFormat, Options};
use sluice_loader::handle;

/// Two Hotmart sales flattened exactly as the ingest writes them.
fn hotmart_csv(status: &str) -> Vec<u8> {
    let records = format!(
        r#"{{"transaction": "HP0000001", "product": {{"id": 1200006, "name": "Formação Python do Zero"}}, "buyer": {{"name": "Diego Gomes", "email": "diego.gomes1@example.com"}}, "purchase": {{"transaction": "HP0000001", "approved_date": 1700002467173, "order_date": 1700000078129, "status": "{status}", "is_subscription": false, "is_funnel": false, "date_next_charge": null, "recurrency_number": 1, "price": {{"value": 297.0, "currency_code": "BRL"}}, "payment": {{"installments_number": 2}}, "hotmart_fee": {{"total": 30.4, "fixed": 1.0, "base": 297.0, "percentage": 9.9}}}}, "commissions": [{{"value": 187.11, "source": "PRODUCER"}}, {{"value": 80.19, "source": "AFFILIATE"}}]}}
{{"transaction": "HP0000002", "product": {{"id": 1200007, "name": "Curso de Rust"}}, "buyer": {{"name": "Ana Lima", "email": "ana@example.com"}}, "purchase": {{"transaction": "HP0000002", "approved_date": 1700002467999, "order_date": 1700000078000, "status": "APPROVED", "is_subscription": true, "is_funnel": false, "date_next_charge": 1702594467173, "recurrency_number": 3, "price": {{"value": 97.5, "currency_code": "BRL"}}, "payment": {{"installments_number": 1}}, "hotmart_fee": {{"total": 9.9, "fixed": 1.0, "base": 97.5, "percentage": 9.9}}}}, "commissions": []}}
"#
    );
    let mut p = CsvPipeline::new(
        records.as_bytes(),
        InputFormat::JsonLines,
        Options::default(),
    )
    .unwrap();
    let mut out = Vec::new();
    p.write_part(&mut out).unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn s3_notification_fixture_loads_the_decoded_key() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    // The fixture's key is form-encoded: `%3D` is `=`, `+` a space, `%C3%A9` é, `%2B` a plus.
    let key = "raw/hotmart-sales/dt=2024-01-15/20240115T100000Z_20240115T100700Z_run é+1.csv";
    env.bucket.put(key, hotmart_csv("APPROVED")).await?;
    let ev = crate::common::fixture("s3-object-created.json", &env.bucket.name)?;
    let s = handle(&ev, &env.loader, &env.store).await?;
    assert_eq!(
        (s.objects, s.loaded, s.rows.inserted, s.rows.rows_read),
        (1, 1, 2, 2)
    );
    assert_eq!(s.results[0].key, key);
    let rows = env
        .rows(
            "hotmart_sales",
            "purchase_transaction, purchase_status, purchase_approved_date::text, purchase_price_value::text, \
             purchase_is_subscription::text, commissions->1->>'source', _sluice_source_key",
        )
        .await?;
    assert_eq!(
        rows[0],
        [
            Some("HP0000001".into()),
            Some("APPROVED".into()),
            Some("2023-11-14 22:54:27.173+00".into()),
            Some("297.0".into()),
            Some("false".into()),
            Some("AFFILIATE".into()),
            Some(key.into()),
        ]
    );
    // Column types come from the mapping; the ones it doesn't name are inferred.
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_name = 'hotmart_sales' AND column_name IN \
         ('purchase_approved_date', 'commissions', 'product_id', 'purchase_payment_installments_number', 'transaction', 'buyer_name') \
         ORDER BY 1",
    )
    .fetch_all(&env.db.pool)
    .await?;
    assert_eq!(
        types,
        [
            ("buyer_name".into(), "text".into()),
            ("commissions".into(), "jsonb".into()),
            ("product_id".into(), "bigint".into()),
            (
                "purchase_approved_date".into(),
                "timestamp with time zone".into()
            ),
            (
                "purchase_payment_installments_number".into(),
                "integer".into()
            ),
        ],
        "`transaction` is dropped by the mapping"
    );

    // The same event again: skipped, nothing rewritten, one ledger row.
    let xmin: Vec<String> = sqlx::query_scalar("SELECT xmin::text FROM hotmart_sales ORDER BY 1")
        .fetch_all(&env.db.pool)
        .await?;
    let again = handle(&ev, &env.loader, &env.store).await?;
    assert_eq!(
        (again.skipped, again.rows.inserted, again.rows.updated),
        (1, 0, 0)
    );
    let xmin2: Vec<String> = sqlx::query_scalar("SELECT xmin::text FROM hotmart_sales ORDER BY 1")
        .fetch_all(&env.db.pool)
        .await?;
    assert_eq!(xmin, xmin2);
    assert_eq!(env.ledger().await?, 1);
    Ok(())
}

#[tokio::test]
async fn eventbridge_fixture_loads_gzip_and_a_later_file_updates() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    let first = "raw/hotmart-sales/dt=2024-01-15/20240115T100000Z_20240115T100700Z_run é+1.csv";
    env.bucket
        .put(first, hotmart_csv("WAITING_PAYMENT"))
        .await?;
    let s3 = crate::common::fixture("s3-object-created.json", &env.bucket.name)?;
    handle(&s3, &env.loader, &env.store).await?;

    let key = "raw/hotmart-sales/dt=2024-01-15/20240115T100700Z_20240115T101400Z_run 2.csv.gz";
    env.bucket.put(key, gzip(&hotmart_csv("APPROVED"))).await?;
    let ev = crate::common::fixture("s3-eventbridge-object-created.json", &env.bucket.name)?;
    let s = handle(&ev, &env.loader, &env.store).await?;
    assert_eq!(s.results[0].key, key);
    // Both rows are rewritten or one is unchanged, depending on whether the second object's
    // LastModified (the guard, `_sluice_object_time`) is later than the first's.
    assert_eq!(
        (s.rows.rows_read, s.rows.updated + s.rows.unchanged),
        (2, 2),
        "{s:?}"
    );
    let status = env
        .rows("hotmart_sales", "purchase_transaction, purchase_status")
        .await?;
    assert_eq!(status[0][1].as_deref(), Some("APPROVED"));
    Ok(())
}

#[tokio::test]
async fn replay_fixture_takes_the_key_as_is() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    let key = "raw/hotmart-sales/dt=2024-01-15/20240115T101400Z_20240115T102100Z_run 3.csv";
    env.bucket.put(key, hotmart_csv("APPROVED")).await?;
    let ev = crate::common::fixture("loader-replay.json", &env.bucket.name)?;
    let s = handle(&ev, &env.loader, &env.store).await?;
    assert_eq!((s.loaded, s.rows.inserted), (1, 2));
    Ok(())
}

#[tokio::test]
async fn keys_outside_the_prefix_or_suffix_are_ignored() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    for key in [
        "state/hotmart-sales.json",
        "raw/hotmart-sales/x.json",
        "quarantine/raw/sales/a.csv",
    ] {
        let s = env.replay(key).await?;
        assert_eq!((s.ignored, s.loaded), (1, 0), "{key}");
    }
    // Removal events in a notification are not loads.
    let mut ev = crate::common::fixture("s3-object-created.json", &env.bucket.name)?;
    ev["Records"][0]["eventName"] = "ObjectRemoved:Delete".into();
    assert_eq!(handle(&ev, &env.loader, &env.store).await?.objects, 0);
    assert!(!env.table_exists("hotmart_sales").await?);
    Ok(())
}

#[tokio::test]
async fn a_source_without_mapping_is_a_permanent_error() -> anyhow::Result<()> {
    let env = crate::common::env().await?;
    env.bucket.put("raw/unknown/a.csv", "id\n1\n").await?;
    let e = env.replay("raw/unknown/a.csv").await.unwrap_err();
    let e = e.downcast::<sluice_loader::HandlerError>()?;
    assert!(!e.is_retryable());
    assert!(
        e.message.contains("no mapping for source \"unknown\""),
        "{}",
        e.message
    );
    Ok(())
}

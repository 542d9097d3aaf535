//! `sluice query`'s engine over the lake the API wrote: the API stores posted unicorns through
//! real HTTP into the S3 endpoint, DataFusion reads them back over the S3 protocol, and each
//! named example query answers what was posted.

use std::sync::Arc;

use anyhow::Result;
use serde_json::{Value, json};
use sluice_api::{Api, Datasets, LakeStore, Settings, router};
use sluice_edge::layout::Layout;
use sluice_query::{Lake, Location, examples};
use sluice_testkit::TestBucket;

fn datasets() -> Datasets {
    Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets")).unwrap()
}

fn unicorn(name: &str, color: &str, lat: f64, email: Option<&str>) -> Value {
    json!({
        "name": name,
        "rainbow": color == "gold",
        "color": color,
        "horn_length_cm": 40.0 + lat.abs() / 10.0,
        "age_years": 7,
        "sighted_at": "2024-05-01T09:00:00-03:00",
        "location": {"lat": lat, "lon": -46.63},
        "tags": ["shy", "fast"],
        "observer_email": email,
    })
}

/// Posts `bodies` to the API over `bucket`, each to `path`; every answer must be 201.
async fn post_all(bucket: &TestBucket, requests: &[(&str, Value)]) -> Result<()> {
    let api = Api {
        datasets: datasets(),
        store: Some(LakeStore::new(bucket.client.clone(), &bucket.name)),
        settings: Settings::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(api))).await });
    let http = reqwest::Client::new();
    for (path, body) in requests {
        let r = http
            .post(format!("{url}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 201, "{path}: {}", r.text().await?);
    }
    Ok(())
}

/// The bucket over the S3 protocol, as `sluice query --bucket` reads it.
async fn lake_over_s3(bucket: &TestBucket) -> Result<Lake> {
    let aws = bucket.endpoint.sdk_config();
    let location = Location::bucket(&bucket.name, &aws, Some(&bucket.endpoint.url))?;
    Ok(Lake::open(&location, &Layout::default(), &datasets()).await?)
}

fn example(name: &str) -> String {
    examples::find(&sluice_testkit::workspace_root().join("queries"), name)
        .unwrap()
        .unwrap_or_else(|| panic!("no example {name}"))
        .sql
}

/// Three requests: one unicorn, a batch of three, one more.
async fn posted_lake() -> Result<(TestBucket, Lake)> {
    let bucket = sluice_testkit::bucket().await?;
    post_all(
        &bucket,
        &[
            (
                "/unicorns",
                unicorn("Sparkle", "gold", -23.5, Some("ana@example.org")),
            ),
            (
                "/unicorns/batch",
                json!([
                    unicorn("Nimbus", "white", 60.1, None),
                    unicorn("Comet", "gold", 10.0, Some("bo@example.org")),
                    unicorn("Dusk", "black", 45.0, None),
                ]),
            ),
            ("/unicorns", unicorn("Pearl", "white", 70.2, None)),
        ],
    )
    .await?;
    let lake = lake_over_s3(&bucket).await?;
    Ok((bucket, lake))
}

#[tokio::test]
async fn the_example_queries_answer_what_was_posted() -> Result<()> {
    let (_bucket, lake) = posted_lake().await?;
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();

    let a = lake.query(&example("sightings-per-color")).await?;
    assert_eq!(
        a.columns,
        ["dt", "color", "sightings", "with_rainbow", "mean_horn_cm"]
    );
    let per_color: Vec<(String, String, i64, i64)> = a
        .rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
                r[2].as_i64().unwrap(),
                r[3].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_color,
        [
            (today.clone(), "black".into(), 1, 0),
            (today.clone(), "gold".into(), 2, 2),
            (today.clone(), "white".into(), 2, 0),
        ]
    );
    assert_eq!(a.rows[1][4], json!(41.68)); // gold: (42.35 + 41.0) / 2

    let a = lake.query(&example("requests-per-hour")).await?;
    let totals: (i64, i64) = a.rows.iter().fold((0, 0), |(q, n), r| {
        (q + r[1].as_i64().unwrap(), n + r[2].as_i64().unwrap())
    });
    assert_eq!(totals, (3, 5), "{:?}", a.rows);

    let a = lake.query(&example("northernmost-sightings")).await?;
    let names: Vec<&str> = a.rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(names, ["Pearl", "Nimbus", "Dusk", "Comet", "Sparkle"]);
    assert_eq!((&a.rows[0][2], &a.rows[0][4]), (&json!(70.2), &json!(2)));

    let a = lake.query(&example("observers")).await?;
    assert_eq!(
        a.rows,
        [
            vec![json!("black"), json!(0), json!(1)],
            vec![json!("gold"), json!(2), json!(0)],
            vec![json!("white"), json!(0), json!(2)],
        ]
    );
    Ok(())
}

#[tokio::test]
async fn every_example_is_ansi_sql_over_the_catalogs_views() -> Result<()> {
    use datafusion::sql::sqlparser::dialect::AnsiDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let all = examples::load(&sluice_testkit::workspace_root().join("queries"))?;
    assert!(all.len() >= 4, "{all:?}");
    let views: Vec<String> = datasets()
        .iter()
        .map(|d| sluice_api::catalog::Table::new(d, "s3://b/").unwrap().view)
        .collect();
    for e in &all {
        assert!(!e.description.is_empty(), "{}: no description", e.name);
        Parser::parse_sql(&AnsiDialect {}, &e.sql)
            .unwrap_or_else(|err| panic!("{}: not ANSI SQL: {err}", e.name));
        assert!(
            views.iter().any(|v| e.sql.contains(&format!("FROM {v}\n"))),
            "{}: reads no view of {views:?}",
            e.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_record_in_two_objects_is_one_row_of_the_view() -> Result<()> {
    let (bucket, lake) = posted_lake().await?;
    // Compaction's middle: a partition's records written again into another object, the small
    // ones not yet deleted.
    let keys = bucket.keys("lake/unicorns/").await?;
    let batch = keys.iter().find(|k| k.contains("dt=")).unwrap();
    let (dir, _) = batch.rsplit_once('/').unwrap();
    for (i, k) in keys.iter().enumerate() {
        bucket
            .put(
                &format!("{dir}/compacted-{i}.parquet"),
                bucket.get(k).await?,
            )
            .await?;
    }
    let count = |sql: &'static str| {
        let lake = &lake;
        async move { lake.query(sql).await.map(|a| a.rows[0][0].clone()) }
    };
    assert_eq!(
        count("SELECT count(*) FROM unicorns_objects").await?,
        json!(10)
    );
    assert_eq!(count("SELECT count(*) FROM unicorns").await?, json!(5));
    assert_eq!(
        count("SELECT count(*) FROM unicorns WHERE dt = '2000-01-01'").await?,
        json!(0)
    );
    Ok(())
}

/// Compaction deleting an object between a query's listing and its read: S3 answers 404, and
/// the query is planned again over what is there.
#[tokio::test]
async fn an_object_gone_after_the_listing_is_listed_again() -> Result<()> {
    let (bucket, _) = posted_lake().await?;
    let key = bucket.keys("lake/unicorns/").await?.remove(0);
    let proxy = sluice_testkit::S3Proxy::start(
        &bucket.endpoint.url,
        sluice_testkit::Fault::VanishOnce {
            suffix: key.rsplit('/').next().unwrap().to_owned(),
        },
    )
    .await?;
    let through = proxy.endpoint(&bucket.endpoint);
    let location = Location::bucket(&bucket.name, &through.sdk_config(), Some(&through.url))?;
    let lake = Lake::open(&location, &Layout::default(), &datasets()).await?;
    let a = lake.query("SELECT count(*) FROM unicorns").await?;
    assert_eq!(a.rows, [vec![json!(5)]]);
    assert!(
        proxy.count() >= 2,
        "the object was read again after its 404"
    );
    Ok(())
}

#[tokio::test]
async fn a_directory_laid_out_as_the_bucket_is_a_lake() -> Result<()> {
    let d = datasets();
    let unicorns = d.get("unicorns").unwrap();
    let dir = tempfile::tempdir()?;
    let stamp = sluice_api::lake::Stamp {
        event_id: "e1".into(),
        received_at: "2024-05-01T12:00:00Z".parse()?,
        body_sha256: String::new(),
    };
    let checked = sluice_api::validate::record(unicorns, &unicorn("Solo", "pink", 1.0, None), &[])
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let key = Layout::default().lake_object("unicorns", jiff::civil::date(2024, 5, 1), "e1");
    let path = dir.path().join(key);
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(
        &path,
        sluice_api::lake::parquet(unicorns, &[checked], &stamp)?,
    )?;

    let lake = Lake::open(&Location::Dir(dir.path().into()), &Layout::default(), &d).await?;
    let a = lake
        .query("SELECT name, dt, _event_id, _row, _received_at FROM unicorns")
        .await?;
    assert_eq!(
        a.rows,
        [vec![
            json!("Solo"),
            json!("2024-05-01"),
            json!("e1"),
            json!(0),
            json!("2024-05-01T12:00:00Z")
        ]]
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_query_names_what_is_wrong() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = Lake::open(
        &Location::Dir(dir.path().into()),
        &Layout::default(),
        &datasets(),
    )
    .await?;
    let e = lake.query("SELECT horn FROM unicorns").await.unwrap_err();
    assert!(e.to_string().contains("horn"), "{e}");
    // An empty lake is empty, not an error.
    let a = lake.query("SELECT count(*) AS n FROM unicorns").await?;
    assert_eq!(a.rows, [vec![json!(0)]]);
    Ok(())
}

/// The sample API's `n` sales (items from `grow_at` on have a coupon) ingested in two runs:
/// those approved before minute `grow_at` (none has a coupon), then the rest.
async fn ingested(n: u64, grow_at: u64) -> Result<TestBucket> {
    use sluice_ingest::run::run;
    use sluice_ingest::{Api, Credentials, Lake as RawLake, RunKind, S3Out, Sources};
    use sluice_sample_api::data::BASE_TS;

    let api = sluice_sample_api::SampleApi::start(sluice_sample_api::Settings {
        n,
        ..Default::default()
    })
    .await?;
    api.set_rules(sluice_sample_api::Rules {
        grow_schema_at: Some(grow_at),
        ..Default::default()
    });
    let toml = format!(
        "[source.hotmart-sales]\npreset = \"hotmart-sales\"\nbase_url = \"{}\"\n\
         [source.hotmart-sales.window]\ninitial_start = \"2023-11-14T00:00:00Z\"\n",
        api.base_url()
    );
    let source = Sources::from_toml(&toml)?
        .get("hotmart-sales")
        .unwrap()
        .clone();
    let creds = Credentials::resolve(&source, sluice_sample_api::hotmart_env, None)?;
    let client = Api::new(source, creds)?;
    let bucket = sluice_testkit::bucket().await?;
    let out = RawLake {
        out: S3Out {
            client: bucket.client.clone(),
            bucket: bucket.name.clone(),
            part_size: 8 << 20,
        },
        layout: Layout::default(),
    };
    let at = |i: u64| jiff::Timestamp::from_millisecond(BASE_TS + i as i64 * 60_000).unwrap();
    for (from, to, id) in [(0, grow_at, "early"), (grow_at, n * 100, "late")] {
        let kind = RunKind::Backfill {
            start: at(from),
            end: at(to),
        };
        run(&client, &out, kind, id).await?;
    }
    Ok(bucket)
}

#[tokio::test]
async fn each_sources_raw_csv_is_a_table_of_text_in_the_sources_order() -> Result<()> {
    let bucket = ingested(300, 200).await?;
    let lake = lake_over_s3(&bucket).await?;
    let raw: Vec<&str> = lake.raw_tables().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(raw, ["hotmart_sales_raw"]);
    // The early object has no coupon columns: they read NULL there. Each run's objects are in
    // the day its window starts: 2023-11-14 and, 200 minutes later, 2023-11-15.
    let a = lake
        .query("SELECT count(*) AS n, count(coupon_code) AS coupons, count(DISTINCT dt) AS days FROM hotmart_sales_raw")
        .await?;
    assert_eq!(a.rows, [[json!(300), json!(100), json!(2)]]);
    // Values are the API's text, exact numbers included.
    let a = lake
        .query("SELECT \"transaction\", purchase_price_value, coupon_discount_label FROM hotmart_sales_raw WHERE \"transaction\" IN ('HP0000001', 'HP0000300') ORDER BY 1")
        .await?;
    assert_eq!(a.rows[0][0], json!("HP0000001"));
    assert!(
        a.rows[0][1]
            .as_str()
            .is_some_and(|p| p.parse::<f64>().is_ok()),
        "{:?}",
        a.rows
    );
    assert_eq!(a.rows[0][2], Value::Null);
    assert_eq!(a.rows[1][2], json!("Promoção ✓"));
    Ok(())
}

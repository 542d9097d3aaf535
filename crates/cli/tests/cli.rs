//! The `sluice` binary end to end: real Postgres, a real S3 endpoint, real files.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use anyhow::Result;
use serde_json::Value;

fn sluice(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        // A command that refuses its arguments exits without reading its input: the pipe is
        // closed then, which is not the test's failure.
        match input.write_all(bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    drop(input);
    Ok(child.wait_with_output()?)
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn count(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn flatten_writes_one_header_even_when_a_column_appears_late() -> Result<()> {
    let input = b"{\"id\":1,\"a\":{\"b\":\"x\"}}\n{\"id\":2,\"a\":{\"b\":\"y\",\"c\":1.50}}\n";
    let dir = tempfile::tempdir()?;
    let schema = dir.path().join("schema.json");
    let out = sluice(
        &["flatten", "--schema-out", schema.to_str().unwrap(), "-"],
        Some(input),
        &[],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout)?,
        "id,a_b,a_c\n1,x,\n2,y,1.50\n"
    );
    let manifest: Value = serde_json::from_slice(&std::fs::read(schema)?)?;
    assert_eq!(manifest["columns"].as_array().unwrap().len(), 3);
    // A page: the records at a path.
    let page = br#"{"items":[{"k":"a","n":[1,2]}],"page_info":{}}"#;
    let out = sluice(
        &["flatten", "--records-path", "items", "--arrays", "index"],
        Some(page),
        &[],
    )?;
    assert_eq!(String::from_utf8(out.stdout)?, "k,n_0,n_1\na,1,2\n");
    let out = sluice(&["flatten", "--sep", "."], Some(page), &[])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("separator"));
    Ok(())
}

#[test]
fn plan_prints_the_ddl_and_the_upsert() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("s.csv");
    std::fs::write(&csv, "id,price,at\nA,1.5,2024-01-01T00:00:00Z\n")?;
    let out = sluice(
        &[
            "plan",
            "--csv",
            csv.to_str().unwrap(),
            "--table",
            "shop.sales",
            "--key",
            "id",
            "--guard",
            "at",
        ],
        None,
        &[],
    )?;
    let sql = String::from_utf8(out.stdout)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        sql.contains(r#"CREATE TABLE IF NOT EXISTS "shop"."sales""#),
        "{sql}"
    );
    assert!(sql.contains(r#""price" numeric"#), "{sql}");
    assert!(sql.contains(r#"ON CONFLICT ("id") DO UPDATE"#), "{sql}");
    let out = sluice(&["plan", "--csv", csv.to_str().unwrap()], None, &[])?;
    assert!(!out.status.success());
    Ok(())
}

#[test]
fn athena_ddl_prints_each_datasets_table_where_the_layout_puts_it() -> Result<()> {
    let datasets = sluice_testkit::workspace_root().join("datasets");
    let datasets = datasets.to_str().unwrap();
    let args = [
        "athena",
        "ddl",
        "--bucket",
        "my-lake",
        "--datasets",
        datasets,
    ];
    let out = sluice(&args, None, &[("LAKE_PREFIX", "analytics/lake")])?;
    let ddl = String::from_utf8(out.stdout)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ddl.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `sluice`.`unicorns_objects` ("),
        "{ddl}"
    );
    // Then the view analysts query, over that table.
    assert!(
        ddl.contains("CREATE OR REPLACE VIEW \"sluice\".\"unicorns\" AS\nSELECT \"name\", "),
        "{ddl}"
    );
    assert!(
        ddl.contains(" FROM \"unicorns_objects\") WHERE \"_copy\" = 1;\n"),
        "{ddl}"
    );
    assert!(
        ddl.contains("LOCATION 's3://my-lake/analytics/lake/unicorns/'"),
        "{ddl}"
    );
    assert!(
        ddl.contains(
            "'storage.location.template'='s3://my-lake/analytics/lake/unicorns/dt=${dt}/'"
        ),
        "{ddl}"
    );
    assert!(
        ddl.contains("  `location` struct<lat:double,lon:double>,\n"),
        "{ddl}"
    );
    let out = sluice(&[&args[..], &["--dataset", "dragons"]].concat(), None, &[])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no dataset \"dragons\""), "{err}");
    Ok(())
}

/// `sluice athena query` against moto's server (results seeded: moto runs no SQL), in each
/// output format.
#[tokio::test]
async fn athena_query_prints_the_rows_in_each_format() -> Result<()> {
    let moto = sluice_testkit::moto()?;
    let cell = |v: Option<&str>| {
        v.map_or(
            serde_json::json!({}),
            |s| serde_json::json!({"VarCharValue": s}),
        )
    };
    let row = |a: Option<&str>, b: Option<&str>| serde_json::json!({"Data": [cell(a), cell(b)]});
    let result = serde_json::json!({
        "rows": [row(Some("color"), Some("n")), row(Some("gold, bright"), Some("3")), row(Some(""), None)],
        "column_info": [{"Name": "color", "Label": "color", "Type": "varchar", "Nullable": "NULLABLE", "CaseSensitive": true},
                        {"Name": "n", "Label": "n", "Type": "bigint", "Nullable": "NULLABLE", "CaseSensitive": false}],
    });
    // One result a query: moto hands them out in order.
    moto.seed_athena_results(&[result.clone(), result.clone(), result])
        .await?;
    let env = [
        ("AWS_ENDPOINT_URL", moto.url.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let sql = "SELECT color, count(*) AS n FROM unicorns WHERE dt = ? GROUP BY 1";
    let run = |format: &str| -> Result<String> {
        let args = [
            "athena",
            "query",
            sql,
            "--param",
            "'2024-05-01'",
            "--workgroup",
            "primary",
            "--format",
            format,
        ];
        let out = sluice(&args, None, &env)?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    assert_eq!(run("csv")?, "color,n\n\"gold, bright\",3\n\"\",\n");
    assert_eq!(
        run("jsonl")?,
        "{\"color\":\"gold, bright\",\"n\":3}\n{\"color\":\"\",\"n\":null}\n"
    );
    assert_eq!(run("table")?, "color         n\ngold, bright  3\n\n");
    Ok(())
}

#[tokio::test]
async fn load_twice_skips_the_same_content_and_bad_rows_are_counted() -> Result<()> {
    let db = sluice_testkit::database().await?;
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("sales.csv");
    let mut body = String::from("id,status,price\n");
    for i in 0..200 {
        body.push_str(&format!("S{i:04},APPROVED,{i}.50\n"));
    }
    std::fs::write(&csv, &body)?;
    let q = dir.path().join("q");
    let args = |file: &str| {
        vec![
            "load".to_owned(),
            "--table".into(),
            "sales".into(),
            "--key".into(),
            "id".into(),
            "--quarantine".into(),
            q.display().to_string(),
            file.to_owned(),
        ]
    };
    let env = [("DATABASE_URL", db.url.as_str())];
    let run = |file: &str| {
        let a = args(file);
        sluice(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
            &env,
        )
    };
    let first = run(csv.to_str().unwrap())?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let s = json(&first);
    assert_eq!(
        (
            count(&s, "loaded"),
            count(&s, "rows_read"),
            count(&s, "inserted")
        ),
        (1, 200, 200)
    );
    let again = json(&run(csv.to_str().unwrap())?);
    assert_eq!((count(&again, "skipped"), count(&again, "loaded")), (1, 0));
    assert_eq!(count(&again, "inserted") + count(&again, "updated"), 0);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sales")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(n, 200);
    // Changed content loads again: two rows change, one is bad (ragged: a value that does not
    // fit the inferred `price` would widen it to text instead), one repeats a key.
    let mut body2 = String::from("id,status,price\n");
    body2.push_str("S0001,REFUNDED,1.50\nS0002,APPROVED,9.99\nS0003,APPROVED,3.50,surplus\nS0004,APPROVED,4.50\n");
    body2.push_str("S0005,APPROVED,5.50\nS0005,CANCELLED,5.50\n");
    for i in 6..30 {
        body2.push_str(&format!("S{i:04},APPROVED,{i}.50\n"));
    }
    let csv2 = dir.path().join("sales2.csv");
    std::fs::write(&csv2, &body2)?;
    let out = run(csv2.to_str().unwrap())?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = json(&out);
    let parts =
        ["inserted", "updated", "unchanged", "rejected", "duplicates"].map(|k| count(&s, k));
    assert_eq!(count(&s, "rows_read"), parts.iter().sum::<u64>(), "{s}");
    assert_eq!(parts, [0, 3, 25, 1, 1], "{s}");
    let quarantined =
        std::fs::read_to_string(q.join(csv2.to_str().unwrap().trim_start_matches('/')))?;
    assert!(
        quarantined.contains("S0003") && quarantined.contains("surplus"),
        "{quarantined}"
    );
    // A missing file fails the command.
    let out = run("/nonexistent/file.csv")?;
    assert!(!out.status.success());
    Ok(())
}

#[tokio::test]
async fn quarantining_into_the_sources_directory_never_overwrites_a_source() -> Result<()> {
    let db = sluice_testkit::database().await?;
    let dir = tempfile::tempdir()?;
    let body = "id,price\nA1,1.50\nA2,2.50,extra\nA3,3.50\nA4,4.50\nA5,5.50\nA6,6.50\nA7,7.50\nA8,8.50\nA9,9.50\nA10,10.50\n";
    std::fs::write(dir.path().join("x.csv"), body)?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(dir.path())
        .args([
            "load",
            "--table",
            "q_sales",
            "--key",
            "id",
            "--quarantine",
            ".",
            "x.csv",
        ])
        .env("DATABASE_URL", &db.url)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&json(&out), "rejected"), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("x.csv"))?,
        body,
        "the source is intact"
    );
    let abs = std::fs::canonicalize(dir.path().join("x.csv"))?;
    let q = dir.path().join(abs.strip_prefix("/")?);
    let quarantined = std::fs::read_to_string(&q)?;
    assert!(quarantined.contains("A2,2.50,extra"), "{quarantined}");
    Ok(())
}

#[tokio::test]
async fn load_replays_an_s3_prefix() -> Result<()> {
    let db = sluice_testkit::database().await?;
    let bucket = sluice_testkit::bucket().await?;
    bucket
        .put("raw/x/dt=2024-01-01/a.csv", "id,v\n1,a\n2,b\n")
        .await?;
    bucket
        .put("raw/x/dt=2024-01-02/b.csv", "id,v\n2,c\n3,d\n")
        .await?;
    bucket
        .put("raw/x/dt=2024-01-02/_b.manifest.json", "{}")
        .await?;
    let ep = &bucket.endpoint;
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("S3_ENDPOINT_URL", ep.url.as_str()),
        ("AWS_ACCESS_KEY_ID", ep.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", ep.secret_key.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    let src = format!("s3://{}/raw/x/", bucket.name);
    let q = format!("s3://{}/quarantine", bucket.name);
    let out = sluice(
        &[
            "load",
            "--table",
            "x",
            "--key",
            "id",
            "--quarantine",
            &q,
            &src,
        ],
        None,
        &env,
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = json(&out);
    assert_eq!((count(&s, "sources"), count(&s, "loaded")), (2, 2));
    assert_eq!((count(&s, "inserted"), count(&s, "updated")), (3, 1));
    let v: String = sqlx::query_scalar("SELECT v FROM x WHERE id = 2")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(v, "c", "objects load in key order: the later day wins");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_pulls_the_sample_api_into_s3() -> Result<()> {
    let api = sluice_sample_api::SampleApi::start(sluice_sample_api::Settings {
        n: 120,
        ..Default::default()
    })
    .await?;
    let bucket = sluice_testkit::bucket().await?;
    let (_dir, config) = sample_sources(&api.base_url())?;
    let env = ingest_env(&bucket);
    let cfg = config.as_str();
    let window = "2023-11-14T00:00:00Z..2023-11-16T00:00:00Z";
    // The CLI is a blocking child process: run it off the runtime that serves the sample API.
    let args = [
        "ingest",
        "--config",
        cfg,
        "--source",
        "hotmart-sales",
        "--window",
        window,
    ];
    let out = tokio::task::block_in_place(|| sluice(&args, None, &env))?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = json(&out);
    assert_eq!((count(&s, "records"), count(&s, "objects")), (120, 1));
    assert_eq!(s["runs"][0]["status"], "backfilled");
    assert_eq!(
        bucket.keys("raw/hotmart-sales/").await?.len(),
        2,
        "the CSV and its manifest"
    );
    let out = tokio::task::block_in_place(|| {
        sluice(&["ingest", "--config", cfg], None, &[("BUCKET", "b")])
    })?;
    assert!(!out.status.success(), "no credentials");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOTMART_CLIENT_ID is not set"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn athena_ddl_raw_prints_each_sources_raw_table_from_its_published_columns() -> Result<()> {
    let bucket = sluice_testkit::bucket().await?;
    let columns = serde_json::json!({
        "format": "csv", "separator": "_", "arrays": "index", "max_depth": null,
        "schema_hash": "0", "collisions": [],
        "columns": [
            {"name": "transaction", "path": ["transaction"], "types": ["string"]},
            {"name": "dt", "path": ["dt"], "types": ["string"]},
            {"name": "price_value", "path": ["price", "value"], "types": ["float"]},
        ],
    });
    bucket
        .put("state/hotmart-sales.columns.json", columns.to_string())
        .await?;
    bucket.put("state/hotmart-sales.json", "{}").await?;
    let ep = &bucket.endpoint;
    let env = [
        ("S3_ENDPOINT_URL", ep.url.as_str()),
        ("AWS_ACCESS_KEY_ID", ep.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", ep.secret_key.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    let datasets = sluice_testkit::workspace_root().join("datasets");
    let args = [
        "athena",
        "ddl",
        "--raw",
        "--bucket",
        &bucket.name,
        "--datasets",
        datasets.to_str().unwrap(),
    ];
    let out = tokio::task::block_in_place(|| sluice(&args, None, &env))?;
    let ddl = String::from_utf8(out.stdout)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = ddl
        .split_once("DROP TABLE IF EXISTS `sluice`.`hotmart_sales_raw`;")
        .map(|(_, raw)| raw)
        .unwrap_or_else(|| panic!("no raw table in {ddl}"));
    let expected = "CREATE EXTERNAL TABLE `sluice`.`hotmart_sales_raw` (\n  `transaction` string,\n  \
         `dt_raw` string,\n  `price_value` string\n)";
    assert!(raw.contains(expected), "{raw}");
    let location = format!("LOCATION 's3://{}/raw/hotmart-sales/'", bucket.name);
    assert!(raw.contains(&location), "{raw}");
    Ok(())
}

#[tokio::test]
async fn the_demo_runs_twice_inserting_then_updating() -> Result<()> {
    let db = sluice_testkit::database().await?;
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().unwrap();
    let env = [("DATABASE_URL", db.url.as_str()), ("S3_ENDPOINT_URL", "")];
    let args = ["demo", "--records", "300", "--dir", d, "--json"];
    let first = sluice(&args, None, &env)?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let r1 = json(&first);
    let rows1 = &r1["rows"];
    assert_eq!(r1["run"], 1);
    assert!(count(&r1, "records_fetched") > 50, "{r1}");
    assert_eq!(
        count(rows1, "inserted"),
        count(&r1, "records_fetched"),
        "{r1}"
    );
    // The collection API's part: good, batch, bad (422 with every problem), partial.
    let api = &r1["api"];
    let statuses: Vec<u64> = api["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 201, 422, 201], "{api}");
    assert!(
        api["requests"][2]["answer"]["detail"]
            .as_array()
            .unwrap()
            .len()
            >= 5
    );
    assert_eq!(api["requests"][3]["answer"]["rejected"], 1, "{api}");
    assert_eq!(
        (api["lake_objects"].as_u64(), api["lake_rows"].as_u64()),
        (Some(3), Some(5))
    );
    // It ends with an example query over what it posted, run by DataFusion over the bucket.
    let query = &api["query"];
    assert_eq!(query["example"], "sightings-per-color");
    let sightings: u64 = query["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[2].as_u64().unwrap())
        .sum();
    assert_eq!(sightings, 5, "{query}");
    // And a query over the ingest's raw CSV: every record the loader read, as the API sent it.
    let raw = &r1["raw_query"];
    let records: u64 = raw["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_u64().unwrap())
        .sum();
    assert_eq!(records, count(&r1["rows"], "rows_read"), "{raw}");
    assert_eq!(raw["columns"][3], "max_price_text");
    assert!(
        raw["rows"][0][3].is_string(),
        "text, as the API sent it: {raw}"
    );
    let second = sluice(&args, None, &env)?;
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let r2 = json(&second);
    let rows2 = &r2["rows"];
    assert_eq!(r2["run"], 2);
    assert!(
        r2["window"]["start"].as_str() < r1["window"]["end"].as_str(),
        "the lookback overlaps"
    );
    assert!(
        count(rows2, "inserted") > 0 && count(rows2, "updated") > 0,
        "{r2}"
    );
    let parts =
        ["inserted", "updated", "unchanged", "rejected", "duplicates"].map(|k| count(rows2, k));
    assert_eq!(count(rows2, "rows_read"), parts.iter().sum::<u64>());
    assert_eq!(
        count(&r2, "table_rows"),
        count(rows1, "inserted") + count(rows2, "inserted")
    );
    assert_eq!(
        r2["api"]["lake_rows"], 10,
        "the lake keeps the first run's rows"
    );
    // The human report.
    let out = sluice(&["demo", "--records", "300", "--dir", d], None, &env)?;
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.contains("sluice demo, run 3")
            && text.contains("inserted")
            && text.contains("\"type\":\"string_too_short\"")
            && text.contains("lake/unicorns/: 9 Parquet object(s), 15 row(s)")
            && text.contains("query   sluice query --example sightings-per-color"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_api_serves_the_ingest_until_interrupted() -> Result<()> {
    let (child, url) = serve(&["sample-api", "--port", "0", "--records", "50"])?;

    let bucket = sluice_testkit::bucket().await?;
    let (_dir, config) = sample_sources(&url)?;
    let env = ingest_env(&bucket);
    let args = [
        "ingest",
        "--config",
        config.as_str(),
        "--source",
        "hotmart-sales",
        "--window",
        "2023-01-01T00:00:00Z..2025-01-01T00:00:00Z",
    ];
    let out = tokio::task::block_in_place(|| sluice(&args, None, &env))?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&json(&out), "records"), 50);

    // Ctrl-C: the server stops and prints what it served.
    let stats = json(&interrupt(child)?);
    assert_eq!(
        (
            count(&stats, "items_served"),
            count(&stats, "token_requests")
        ),
        (50, 1)
    );
    Ok(())
}

/// A sources file with the hotmart-sales preset pointed at the sample API at `url`: the
/// directory holding it, and its path.
fn sample_sources(url: &str) -> Result<(tempfile::TempDir, String)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sources.toml");
    std::fs::write(
        &config,
        format!("[source.hotmart-sales]\npreset = \"hotmart-sales\"\nbase_url = \"{url}\"\n"),
    )?;
    let config = config.to_str().unwrap().to_owned();
    Ok((dir, config))
}

/// The environment of `sluice ingest` into `bucket` with the sample API's credentials.
fn ingest_env(bucket: &sluice_testkit::TestBucket) -> [(&str, &str); 7] {
    let ep = &bucket.endpoint;
    [
        ("BUCKET", bucket.name.as_str()),
        ("S3_ENDPOINT_URL", ep.url.as_str()),
        ("AWS_ACCESS_KEY_ID", ep.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", ep.secret_key.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("HOTMART_CLIENT_ID", "mock-id"),
        ("HOTMART_CLIENT_SECRET", "mock-secret"),
    ]
}

/// Starts a `sluice` server command; its URL is on the first line of stderr.
fn serve(args: &[&str]) -> Result<(std::process::Child, String)> {
    serve_with(args, &[])
}

/// [`serve`] with environment variables.
fn serve_with(args: &[&str], env: &[(&str, &str)]) -> Result<(std::process::Child, String)> {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut line)?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    Ok((child, url))
}

/// Ctrl-C to a server command: it must exit 0.
fn interrupt(child: std::process::Child) -> Result<Output> {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    let out = child.wait_with_output()?;
    assert!(out.status.success(), "exit status {:?}", out.status);
    Ok(out)
}

#[tokio::test]
async fn s3_serves_a_directory_as_buckets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_str().unwrap();
    let (child, url) = serve(&[
        "s3",
        "--dir",
        root,
        "--port",
        "0",
        "--buckets",
        "lake,other",
    ])?;
    let client = sluice_testkit::S3Endpoint {
        url,
        access_key: sluice_testkit::S3_ACCESS_KEY.into(),
        secret_key: sluice_testkit::S3_SECRET_KEY.into(),
    }
    .client();
    client
        .put_object()
        .bucket("lake")
        .key("raw/a b/x.csv")
        .body(b"id\n1\n".to_vec().into())
        .send()
        .await?;
    let listed = client.list_objects_v2().bucket("lake").send().await?;
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["raw/a b/x.csv"]);
    assert!(client.head_bucket().bucket("other").send().await.is_ok());
    assert!(client.head_bucket().bucket("missing").send().await.is_err());
    assert_eq!(
        std::fs::read(dir.path().join("lake/raw/a b/x.csv"))?,
        b"id\n1\n"
    );
    interrupt(child)?;
    Ok(())
}

#[tokio::test]
async fn serve_stores_accepted_records_in_the_lake_until_interrupted() -> Result<()> {
    let bucket = sluice_testkit::bucket().await?;
    let datasets = sluice_testkit::workspace_root().join("datasets");
    // The prefixes come from the environment, as for the `sluice-api` binary.
    let env = [
        &ingest_env(&bucket)[..],
        &[("LAKE_PREFIX", "analytics/lake")],
    ]
    .concat();
    let args = [
        "serve",
        "--port",
        "0",
        "--datasets",
        datasets.to_str().unwrap(),
    ];
    let (child, url) = serve_with(&args, &env)?;
    let unicorn = serde_json::json!({
        "name": "Sparkle", "rainbow": true, "color": "pink", "horn_length_cm": 12,
        "age_years": 3, "sighted_at": "2024-05-01T12:00:00Z",
        "location": {"lat": 1.5, "lon": 2.5},
    });
    let post = |body: String| {
        reqwest::Client::new()
            .post(format!("{url}/unicorns"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post(unicorn.to_string()).await?;
    assert_eq!(r.status().as_u16(), 201);
    let body: Value = serde_json::from_str(&r.text().await?)?;
    let key = body["key"].as_str().unwrap();
    assert!(key.starts_with("analytics/lake/unicorns/dt="), "{key}");
    assert_eq!(bucket.keys("analytics/lake/").await?, [key]);
    assert_eq!(post("{}".into()).await?.status().as_u16(), 422);
    interrupt(child)?;
    Ok(())
}

/// Two requests' Parquet objects under `root` (a directory laid out as the bucket), `DAY`.
fn lake_objects(names: &[&[&str]]) -> Vec<(String, Vec<u8>)> {
    let datasets =
        sluice_api::Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets")).unwrap();
    let d = datasets.get("unicorns").unwrap();
    let day = jiff::civil::date(2024, 5, 1);
    names
        .iter()
        .enumerate()
        .map(|(i, names)| {
            let event = format!("e{i}");
            let stamp = sluice_api::lake::Stamp {
                event_id: event.clone(),
                received_at: "2024-05-01T12:00:00Z".parse().unwrap(),
                body_sha256: String::new(),
            };
            let rows: Vec<serde_json::Value> = names
                .iter()
                .map(|name| {
                    let u = serde_json::json!({"name": name, "rainbow": true, "color": "gold",
                        "horn_length_cm": 20.5, "age_years": 7, "sighted_at": "2024-05-01T12:00:00Z",
                        "location": {"lat": 1.0, "lon": 2.0}});
                    sluice_api::validate::record(d, &u, &[]).unwrap()
                })
                .collect();
            let key = sluice_edge::layout::Layout::default().lake_object("unicorns", day, &event);
            (key, sluice_api::lake::parquet(d, &rows, &stamp).unwrap())
        })
        .collect()
}

#[test]
fn query_runs_sql_and_the_named_examples_over_a_directory() -> Result<()> {
    let root = tempfile::tempdir()?;
    for (key, bytes) in lake_objects(&[&["Pip", "Ada"], &["Zed"]]) {
        let path = root.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(path, bytes)?;
    }
    let ws = sluice_testkit::workspace_root();
    let (datasets, queries) = (ws.join("datasets"), ws.join("queries"));
    let base = [
        "query",
        "--dir",
        root.path().to_str().unwrap(),
        "--datasets",
        datasets.to_str().unwrap(),
        "--queries",
        queries.to_str().unwrap(),
    ];
    let run = |extra: &[&str]| -> Result<(bool, String, String)> {
        let out = sluice(&[&base[..], extra].concat(), None, &[])?;
        Ok((
            out.status.success(),
            String::from_utf8(out.stdout)?,
            String::from_utf8(out.stderr)?,
        ))
    };
    let (ok, out, err) = run(&[
        "--format",
        "csv",
        "SELECT name, dt, _row FROM unicorns ORDER BY name",
    ])?;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "name,dt,_row\nAda,2024-05-01,1\nPip,2024-05-01,0\nZed,2024-05-01,0\n"
    );
    let (ok, out, err) = run(&["--example", "sightings-per-color", "--format", "jsonl"])?;
    assert!(ok, "{err}");
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap())?;
    assert_eq!(
        (&row["color"], &row["sightings"]),
        (&"gold".into(), &3.into()),
        "{out}"
    );
    let (ok, out, _) = run(&["--list"])?;
    assert!(
        ok && out.contains("sightings-per-color") && out.contains("per day and color"),
        "{out}"
    );
    let (ok, _, err) = run(&["--example", "nope"])?;
    assert!(!ok && err.contains("no example \"nope\""), "{err}");
    let (ok, _, err) = run(&["SELECT horn FROM unicorns"])?;
    assert!(!ok && err.contains("horn"), "{err}");
    Ok(())
}

/// `sluice compact` against the S3 endpoint: the first run merges and commits, the next one
/// (its grace 0) deletes what was merged; `sluice query --bucket` answers the same throughout.
#[tokio::test]
async fn compact_merges_a_closed_day_and_queries_answer_the_same() -> Result<()> {
    let bucket = sluice_testkit::bucket().await?;
    for (key, bytes) in lake_objects(&[&["Pip", "Ada"], &["Zed"], &["Kit"]]) {
        bucket.put(&key, bytes).await?;
    }
    let ep = &bucket.endpoint;
    let env = [
        ("S3_ENDPOINT_URL", ep.url.as_str()),
        ("AWS_ACCESS_KEY_ID", ep.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", ep.secret_key.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("BUCKET", bucket.name.as_str()),
        ("DATASETS", "datasets"),
    ];
    let ws = sluice_testkit::workspace_root();
    let in_ws = |args: &[&str]| -> Result<Output> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(args).current_dir(&ws).envs(env.iter().copied());
        Ok(cmd.output()?)
    };
    let count = || -> Result<String> {
        let out = in_ws(&[
            "query",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM unicorns",
        ])?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    assert_eq!(count()?, "n\n4\n");
    let compact = ["compact", "--dataset", "unicorns", "--grace-minutes", "0"];
    let out = in_ws(&compact)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        (&report["day"], &report["merged"], &report["rows"]),
        (&"2024-05-01".into(), &3.into(), &4.into())
    );
    assert_eq!(count()?, "n\n4\n");
    let out = in_ws(&compact)?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["retired"], 3, "{report}");
    assert_eq!(count()?, "n\n4\n");
    let keys = bucket.keys("lake/unicorns/").await?;
    assert!(keys.iter().all(|k| !k.ends_with("/e0.parquet")), "{keys:?}");
    Ok(())
}

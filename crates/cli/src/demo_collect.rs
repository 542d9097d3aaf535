//! The demo's second half: the collection API served on this machine over the demo's bucket,
//! good and bad unicorns posted through real HTTP, what landed in the lake read back, and an
//! example query over it (`sluice query --example`).

use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_api::{Api, Datasets, LakeStore, Settings};
use sluice_edge::layout::Layout;

/// What the collection part did: each request and its answer, and the lake's rows.
pub struct Collected {
    /// `(what, status, answer)`, in order.
    pub requests: Vec<(String, u16, Value)>,
    /// The Parquet objects under `lake/unicorns/`.
    pub objects: Vec<String>,
    /// Their rows, read back.
    pub rows: Vec<Value>,
    /// [`EXAMPLE`]'s answer, over the bucket with DataFusion.
    pub query: sluice_query::Answer,
    /// [`RAW_QUERY`]'s answer: the ingest's CSV as a table.
    pub raw: sluice_query::Answer,
}

/// A query over the raw table of the demo's ingest source: what the API returned, before the
/// loader's mapping.
pub const RAW_QUERY: &str = "SELECT dt, count(*) AS records, count(DISTINCT \"transaction\") AS transactions, max(purchase_price_value) AS max_price_text FROM hotmart_sales_raw GROUP BY dt ORDER BY dt";

/// The example query the demo ends with.
pub const EXAMPLE: &str = "sightings-per-color";

fn unicorn(name: &str, color: &str, horn: f64, day: u32) -> Value {
    json!({
        "name": name,
        "rainbow": day.is_multiple_of(2),
        "color": color,
        "horn_length_cm": horn,
        "age_years": 100 + day,
        "sighted_at": format!("2024-05-{day:02}T09:30:00-03:00"),
        "location": {"lat": -23.55, "lon": -46.63},
        "tags": ["demo"],
    })
}

/// Serves the API over `bucket`, posts, reads the lake back.
pub async fn run(
    client: aws_sdk_s3::Client,
    bucket: &str,
    location: &sluice_query::Location,
    run: u64,
) -> Result<Collected> {
    let datasets = Datasets::from_dir("datasets".as_ref())
        .or_else(|_| Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets")))
        .context("the datasets/ directory")?;
    let queries = [
        "queries".into(),
        sluice_testkit::workspace_root().join("queries"),
    ];
    let example = queries
        .iter()
        .find_map(|dir| sluice_query::examples::find(dir, EXAMPLE).ok().flatten())
        .context("the queries/ directory")?;
    let api = Api {
        datasets: datasets.clone(),
        store: Some(LakeStore::new(client.clone(), bucket)),
        settings: Settings::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server =
        tokio::spawn(async move { axum::serve(listener, sluice_api::router(Arc::new(api))).await });
    let http = reqwest::Client::new();
    let day = (run % 28) as u32 + 1;
    let mut bad = unicorn("", "purple", -1.0, day);
    bad["location"] = json!({"lat": 91.5});
    bad["age_years"] = json!("old");
    let posts = [
        (
            "one unicorn",
            "/unicorns",
            unicorn("Sparkle", "gold", 42.5, day),
        ),
        (
            "a batch of three",
            "/unicorns/batch",
            json!([
                unicorn("Moonbeam", "silver", 30.0, day),
                unicorn("Nimbus", "white", 55.25, day),
                unicorn("Pip", "pink", 12.0, day),
            ]),
        ),
        ("a bad unicorn", "/unicorns", bad.clone()),
        (
            "a partial batch, one bad",
            "/unicorns/batch?partial=true",
            json!([unicorn("Zephyr", "black", 80.0, day), bad]),
        ),
    ];
    let mut requests = Vec::new();
    for (what, path, body) in posts {
        let r = http
            .post(format!("{url}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = r.status().as_u16();
        let answer: Value = serde_json::from_str(&r.text().await?)?;
        requests.push((format!("{what}: POST {path}"), status, answer));
    }
    server.abort();
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(Layout::default().lake_dataset("unicorns"))
        .send()
        .await?;
    let objects: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    let mut rows = Vec::new();
    for key in &objects {
        let o = client.get_object().bucket(bucket).key(key).send().await?;
        let bytes = o.body.collect().await?.into_bytes();
        rows.extend(sluice_api::lake::rows(bytes).with_context(|| key.clone())?);
    }
    let lake = sluice_query::Lake::open(location, &Layout::default(), &datasets).await?;
    let query = lake.query(&example.sql).await?;
    let raw = lake.query(RAW_QUERY).await?;
    Ok(Collected {
        requests,
        objects,
        rows,
        query,
        raw,
    })
}

/// The report's text.
pub fn print(c: &Collected, bucket: &str) {
    println!("api     the collection API (datasets/unicorns.toml) → s3://{bucket}/lake/");
    for (what, status, answer) in &c.requests {
        let summary = match *status {
            201 if answer.get("rejected").is_some() => format!(
                "accepted {}, set aside {} → {}",
                answer["accepted"], answer["rejected"], answer["rejected_key"]
            ),
            201 => format!("accepted {} → {}", answer["accepted"], answer["key"]),
            _ => String::new(),
        };
        println!("        {what:<52} {status} {summary}");
        if *status == 422 {
            // The body as sent, one problem a line.
            let problems = answer["detail"].as_array().map_or(&[][..], Vec::as_slice);
            println!("          {{\"detail\": [");
            for (i, p) in problems.iter().enumerate() {
                let comma = if i + 1 < problems.len() { "," } else { "" };
                println!("            {p}{comma}");
            }
            println!("          ]}}");
        }
    }
    println!(
        "lake    s3://{bucket}/lake/unicorns/: {} Parquet object(s), {} row(s); the latest:",
        c.objects.len(),
        c.rows.len()
    );
    println!(
        "        {:<10} {:<7} {:>6}  {:<25} received",
        "name", "color", "horn", "sighted_at"
    );
    let mut latest: Vec<&Value> = c.rows.iter().collect();
    latest.sort_by_key(|r| std::cmp::Reverse(r["_received_at"].as_str().map(str::to_owned)));
    for r in latest.iter().take(5) {
        println!(
            "        {:<10} {:<7} {:>6}  {:<25} {}",
            r["name"].as_str().unwrap_or(""),
            r["color"].as_str().unwrap_or(""),
            r["horn_length_cm"].to_string(),
            r["sighted_at"].as_str().unwrap_or(""),
            r["_received_at"].as_str().unwrap_or("")
        );
    }
    println!("query   sluice query --example {EXAMPLE} (DataFusion over s3://{bucket}/lake/):");
    print_answer(&c.query);
    println!(
        "raw     sluice query over hotmart_sales_raw (the ingest's CSV in s3://{bucket}/raw/, every column text):"
    );
    println!("        {RAW_QUERY}");
    print_answer(&c.raw);
}

/// An answer as an indented table.
fn print_answer(answer: &sluice_query::Answer) {
    let names: Vec<&str> = answer.columns.iter().map(String::as_str).collect();
    let mut table = Vec::new();
    // Writing to memory cannot fail.
    let _ = crate::rows_out::print_rows(
        &names,
        &answer.rows,
        crate::rows_out::Format::Table,
        &mut table,
    );
    for line in String::from_utf8_lossy(&table).lines() {
        println!("        {line}");
    }
}

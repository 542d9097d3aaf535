//! The API through real HTTP, storing into the in-process S3 endpoint; what lands is read back
//! from Parquet and compared value by value.

use std::sync::Arc;

use anyhow::Result;
use serde_json::{Value, json};
use sluice_api::{Api, Datasets, LakeStore, Settings, router};
use sluice_testkit::TestBucket;

struct Server {
    url: String,
    bucket: TestBucket,
    http: reqwest::Client,
}

/// The API over a bucket of the test's own.
async fn api(settings: Settings) -> Result<(Api, TestBucket)> {
    let datasets = Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets"))?;
    let bucket = sluice_testkit::bucket().await?;
    let api = Api {
        datasets,
        store: Some(LakeStore::new(bucket.client.clone(), &bucket.name)),
        settings,
    };
    Ok((api, bucket))
}

async fn server(settings: Settings) -> Result<Server> {
    let (api, bucket) = api(settings).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(api))).await });
    Ok(Server {
        url,
        bucket,
        http: reqwest::Client::new(),
    })
}

impl Server {
    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.post_raw(path, "application/json", body.to_string(), &[])
            .await
    }

    async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value)> {
        let mut r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// The rows of one Parquet object, as JSON objects.
    async fn parquet_rows(&self, key: &str) -> Result<Vec<Value>> {
        Ok(sluice_api::lake::rows(self.bucket.get(key).await?)?)
    }
}

fn unicorn(name: &str) -> Value {
    json!({
        "name": name,
        "rainbow": true,
        "color": "gold",
        "horn_length_cm": 42.5,
        "age_years": 7,
        "sighted_at": "2024-05-01T09:00:00-03:00",
        "location": {"lat": -23.55, "lon": -46.63},
        "tags": ["shy"],
        "observer_email": "ana@example.org",
    })
}

#[tokio::test]
async fn an_accepted_record_is_in_the_lake_as_typed_parquet() -> Result<()> {
    let s = server(Settings::default()).await?;
    let (status, body) = s.post("/unicorns", &unicorn("Sparkle")).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["accepted"], 1);
    let key = body["key"].as_str().unwrap();
    assert!(
        key.starts_with("lake/unicorns/dt=") && key.ends_with(".parquet"),
        "{key}"
    );
    let rows = s.parquet_rows(key).await?;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["name"], "Sparkle");
    assert_eq!(r["rainbow"], true);
    assert_eq!(r["color"], "gold");
    assert_eq!(r["horn_length_cm"], 42.5);
    assert_eq!(r["age_years"], 7);
    assert_eq!(r["location"], json!({"lat": -23.55, "lon": -46.63}));
    assert_eq!(r["tags"], json!(["shy"]));
    assert_eq!(r["observer_email"], "ana@example.org");
    assert_eq!(r["_schema_version"], 1);
    assert_eq!(r["_event_id"], body["event_id"]);
    // 09:00 at -03:00 is 12:00 UTC.
    assert!(
        r["sighted_at"]
            .as_str()
            .unwrap()
            .starts_with("2024-05-01T12:00:00"),
        "{r}"
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_lands_as_one_object_and_absent_optionals_take_their_defaults() -> Result<()> {
    let s = server(Settings::default()).await?;
    let mut bare = unicorn("Bare");
    bare.as_object_mut().unwrap().remove("tags");
    bare.as_object_mut().unwrap().remove("observer_email");
    let (status, body) = s
        .post("/unicorns/batch", &json!([unicorn("A"), bare]))
        .await?;
    assert_eq!((status, &body["accepted"]), (201, &json!(2)), "{body}");
    let rows = s.parquet_rows(body["key"].as_str().unwrap()).await?;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["tags"], json!([]));
    assert!(rows[1].get("observer_email").is_none_or(Value::is_null));
    assert_eq!(s.bucket.keys("lake/").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_writes_nothing_twice() -> Result<()> {
    let s = server(Settings::default()).await?;
    let body = unicorn("Once").to_string();
    let key = [("idempotency-key", "order-42")];
    let (a, first) = s
        .post_raw("/unicorns", "application/json", body.clone(), &key)
        .await?;
    let stored = s.parquet_rows(first["key"].as_str().unwrap()).await?;
    let (b, second) = s
        .post_raw("/unicorns", "application/json", body, &key)
        .await?;
    assert_eq!((a, b), (201, 201), "{first} {second}");
    assert_eq!(first["key"], second["key"]);
    // Not written again: the row still has the first request's receipt time.
    let now = s.parquet_rows(first["key"].as_str().unwrap()).await?;
    assert_eq!(now, stored);
    assert_eq!(now[0]["_event_id"], "order-42");
    assert!(
        first["key"]
            .as_str()
            .unwrap()
            .ends_with("/order-42.parquet")
    );
    assert_eq!(s.bucket.keys("lake/").await?.len(), 1);
    // The same key with another body is refused, and the stored object stays.
    let other = unicorn("Twice").to_string();
    let (status, answer) = s
        .post_raw("/unicorns", "application/json", other, &key)
        .await?;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        s.parquet_rows(first["key"].as_str().unwrap()).await?,
        stored
    );
    let (status, _) = s
        .post_raw(
            "/unicorns",
            "application/json",
            "{}",
            &[("idempotency-key", "../x")],
        )
        .await?;
    assert_eq!(status, 400);
    // A key starting with `_` would name an object Athena skips as hidden.
    let (status, _) = s
        .post_raw(
            "/unicorns",
            "application/json",
            unicorn("Hidden").to_string(),
            &[("idempotency-key", "_hidden")],
        )
        .await?;
    assert_eq!(status, 400);
    Ok(())
}

/// A retry after midnight UTC: the claim of the key (written by the first request, here
/// yesterday) gives the first request's time, so the retry's objects have the first request's
/// keys and partition, and nothing lands under today.
#[tokio::test]
async fn a_retry_the_next_utc_day_writes_nothing_twice() -> Result<()> {
    let s = server(Settings::default()).await?;
    let body = unicorn("Midnight").to_string();
    let yesterday = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
    let day = yesterday.to_zoned(jiff::tz::TimeZone::UTC).date();
    let claim = json!({
        "request_sha256": format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(body.as_bytes())),
        "received_at": yesterday.to_string(),
    });
    s.bucket
        .put("idempotency/unicorns/late-7.json", claim.to_string())
        .await?;
    let (status, answer) = s
        .post_raw(
            "/unicorns",
            "application/json",
            body,
            &[("idempotency-key", "late-7")],
        )
        .await?;
    assert_eq!(status, 201, "{answer}");
    let key = format!("lake/unicorns/dt={day}/late-7.parquet");
    assert_eq!(answer["key"], key.as_str());
    let rows = s.parquet_rows(&key).await?;
    let received: jiff::Timestamp = rows[0]["_received_at"].as_str().unwrap().parse()?;
    assert_eq!(
        received.as_microsecond(),
        yesterday.as_microsecond(),
        "the first request's time"
    );
    assert_eq!(s.bucket.keys("lake/").await?, [key]);
    Ok(())
}

/// (loc, type) of each problem in a 422 body.
fn problems(body: &Value) -> Vec<(Value, String)> {
    body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["loc"].clone(), p["type"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn every_problem_is_reported_where_pydantic_reports_it() -> Result<()> {
    let s = server(Settings::default()).await?;
    let mut u = unicorn("");
    let o = u.as_object_mut().unwrap();
    o.insert("rainbow".into(), json!("true"));
    o.insert("color".into(), json!("blue"));
    o.insert("horn_length_cm".into(), json!(0));
    o.insert("age_years".into(), json!(1.5));
    o.insert("sighted_at".into(), json!("2024-05-01T09:00:00"));
    o.insert("location".into(), json!({"lat": 91, "lon": "0", "alt": 1}));
    o.insert("tags".into(), json!(["", "ok"]));
    o.insert("observer_email".into(), json!("nope"));
    o.insert("wings".into(), json!(2));
    o.remove("name");
    let (status, body) = s.post("/unicorns", &u).await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        problems(&body),
        [
            (json!(["body", "name"]), "missing"),
            (json!(["body", "rainbow"]), "bool_type"),
            (json!(["body", "color"]), "enum"),
            (json!(["body", "horn_length_cm"]), "greater_than"),
            (json!(["body", "age_years"]), "int_type"),
            (json!(["body", "sighted_at"]), "timezone_aware"),
            (json!(["body", "location", "lat"]), "less_than_equal"),
            (json!(["body", "location", "lon"]), "float_type"),
            (json!(["body", "location", "alt"]), "extra_forbidden"),
            (json!(["body", "tags", 0]), "string_too_short"),
            (json!(["body", "observer_email"]), "string_pattern_mismatch"),
            (json!(["body", "wings"]), "extra_forbidden"),
        ]
        .map(|(l, t)| (l, t.to_owned()))
    );
    let enum_problem = &body["detail"][2];
    assert_eq!(
        enum_problem["msg"],
        "Input should be 'white', 'black', 'silver', 'gold' or 'pink'"
    );
    assert_eq!(enum_problem["input"], "blue");

    // In a batch, the item's index comes first.
    let mut bad = unicorn("x");
    bad["age_years"] = json!(true);
    let (status, body) = s
        .post(
            "/unicorns/batch",
            &json!([unicorn("a"), unicorn("b"), unicorn("c"), bad]),
        )
        .await?;
    assert_eq!(status, 422);
    assert_eq!(
        problems(&body),
        [(json!(["body", 3, "age_years"]), "int_type".to_owned())]
    );
    assert!(s.bucket.keys("lake/").await?.is_empty(), "nothing stored");
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_never_a_5xx() -> Result<()> {
    let s = server(Settings {
        max_body_bytes: 1000,
        ..Settings::default()
    })
    .await?;
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("/nope", "application/json", b"{}".to_vec(), 404),
        ("/unicorns", "text/plain", b"{}".to_vec(), 415),
        ("/unicorns", "application/json", vec![b' '; 1001], 413),
        (
            "/unicorns",
            "application/json",
            b"{\"name\": ".to_vec(),
            422,
        ),
        (
            "/unicorns",
            "application/json",
            b"{\"name\": \"\xff\"}".to_vec(),
            422,
        ),
        (
            "/unicorns",
            "application/json",
            "[".repeat(600).into_bytes(),
            422,
        ),
        (
            "/unicorns",
            "application/json",
            b"{\"age_years\": 1e999}".to_vec(),
            422,
        ),
        ("/unicorns", "application/json", b"[]".to_vec(), 422),
        ("/unicorns/batch", "application/json", b"[]".to_vec(), 422),
        ("/unicorns/batch", "application/json", b"{}".to_vec(), 422),
    ];
    for (path, ct, body, want) in cases {
        let (status, answer) = s.post_raw(path, ct, body.clone(), &[]).await?;
        assert_eq!(
            status,
            want,
            "{path} {:?}: {answer}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            answer["detail"].is_string() || answer["detail"].is_array(),
            "{answer}"
        );
    }
    let (_, answer) = s
        .post_raw("/unicorns", "application/json", &b"{\"name\": "[..], &[])
        .await?;
    assert_eq!(
        problems(&answer),
        [(json!(["body", 9]), "json_invalid".to_owned())]
    );
    let (_, answer) = s.post("/unicorns/batch", &json!([])).await?;
    assert_eq!(
        problems(&answer),
        [(json!(["body"]), "too_short".to_owned())]
    );
    Ok(())
}

#[tokio::test]
async fn inputs_can_be_left_out_of_errors() -> Result<()> {
    let s = server(Settings {
        error_input: sluice_api::ErrorInput::Omit,
        ..Settings::default()
    })
    .await?;
    let mut u = unicorn("x");
    u["observer_email"] = json!("not an email, but personal");
    let (status, body) = s.post("/unicorns", &u).await?;
    assert_eq!(status, 422);
    assert!(!body.to_string().contains("personal"), "{body}");
    Ok(())
}

#[tokio::test]
async fn the_openapi_documents_describe_every_route_and_response() -> Result<()> {
    let s = server(Settings::default()).await?;
    for (path, version) in [("/openapi.json", "3.1.0"), ("/openapi-3.0.json", "3.0.3")] {
        let r = s.http.get(format!("{}{path}", s.url)).send().await?;
        assert_eq!(r.status().as_u16(), 200);
        let doc: Value = serde_json::from_str(&r.text().await?)?;
        assert_eq!(doc["openapi"], version);
        for route in ["/unicorns", "/unicorns/batch"] {
            let responses = &doc["paths"][route]["post"]["responses"];
            for status in ["201", "400", "404", "409", "413", "415", "422", "503"] {
                assert!(responses[status].is_object(), "{path} {route} {status}");
            }
        }
        let unicorn = &doc["components"]["schemas"]["unicorns"];
        assert_eq!(unicorn["additionalProperties"], false);
        assert_eq!(
            unicorn["required"],
            json!([
                "name",
                "rainbow",
                "color",
                "horn_length_cm",
                "age_years",
                "sighted_at",
                "location"
            ])
        );
        assert_eq!(
            unicorn["properties"]["location"]["properties"]["lat"]["minimum"],
            -90
        );
        assert_eq!(unicorn["properties"]["tags"]["maxItems"], 10);
        assert_eq!(
            doc["paths"]["/unicorns/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
                ["maxItems"],
            500
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_partial_batch_stores_the_good_items_and_sets_the_bad_aside() -> Result<()> {
    let s = server(Settings::default()).await?;
    let mut bad = unicorn("Bad");
    bad["age_years"] = json!(-1);
    let batch = json!([unicorn("a"), bad, unicorn("c")]);
    let (status, body) = s.post("/unicorns/batch?partial=true", &batch).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["accepted"], &body["rejected"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(
        problems(&body),
        [(
            json!(["body", 1, "age_years"]),
            "greater_than_equal".to_owned()
        )]
    );
    let rows = s.parquet_rows(body["key"].as_str().unwrap()).await?;
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "c"]);
    let key = body["rejected_key"].as_str().unwrap();
    assert!(
        key.starts_with("rejected/unicorns/dt=") && key.ends_with(".jsonl"),
        "{key}"
    );
    let text = String::from_utf8(s.bucket.get(key).await?)?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["index"], 1);
    assert_eq!(lines[0]["item"], bad, "the item as posted");
    assert_eq!(lines[0]["problems"][0]["type"], "greater_than_equal");
    assert_eq!(lines[0]["event_id"], body["event_id"]);

    // Without ?partial, the same batch stores nothing.
    let before = s.bucket.keys("").await?.len();
    let (status, _) = s.post("/unicorns/batch", &batch).await?;
    assert_eq!(status, 422);
    assert_eq!(s.bucket.keys("").await?.len(), before);
    // All bad: 422, and still nothing lost.
    let (status, body) = s.post("/unicorns/batch?partial=true", &json!([{}])).await?;
    assert_eq!(
        (status, &body["accepted"], &body["key"]),
        (422, &json!(0), &Value::Null)
    );
    assert!(body["rejected_key"].is_string());
    let (status, _) = s.post("/unicorns/batch?partial=maybe", &batch).await?;
    assert_eq!(status, 400);
    Ok(())
}

/// On Lambda the router gets what `lambda_http` makes of API Gateway's HTTP API event.
#[tokio::test]
async fn an_api_gateway_http_event_reaches_the_routes() -> Result<()> {
    use tower::ServiceExt;
    let (api, bucket) = api(Settings::default()).await?;
    let path = sluice_testkit::workspace_root().join("events/apigw-http-post-unicorn.json");
    let request = lambda_http::request::from_str(&std::fs::read_to_string(path)?)?;
    let response = router(Arc::new(api)).oneshot(request).await?;
    assert_eq!(response.status().as_u16(), 201);
    let keys = bucket.keys("lake/unicorns/").await?;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].ends_with("/apigw-1.parquet"), "{keys:?}");
    Ok(())
}

/// The binary's way: `Config` from its variables, then `Api::from_config`. The prefixes it
/// names are the ones written under.
#[tokio::test]
async fn the_configured_prefixes_are_where_objects_land() -> Result<()> {
    let bucket = sluice_testkit::bucket().await?;
    let datasets = sluice_testkit::workspace_root().join("datasets");
    let env = [
        ("BUCKET", bucket.name.clone()),
        ("DATASETS", datasets.display().to_string()),
        ("LAKE_PREFIX", "collected".to_owned()),
        ("IDEMPOTENCY_PREFIX", "claims/".to_owned()),
        ("API_ERROR_INPUT", "omit".to_owned()),
    ];
    let config = sluice_api::config::Config::from_lookup(|k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })?;
    let api = Api::from_config(&config, Some(bucket.client.clone()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(api))).await });
    let r = reqwest::Client::new()
        .post(format!("{url}/unicorns"))
        .header("content-type", "application/json")
        .header("idempotency-key", "cfg-1")
        .body(unicorn("Configured").to_string())
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let lake = bucket.keys("collected/unicorns/").await?;
    assert_eq!(lake.len(), 1, "LAKE_PREFIX gets its slash: {lake:?}");
    assert_eq!(
        bucket.keys("claims/unicorns/").await?,
        ["claims/unicorns/cfg-1.json"]
    );
    // API_ERROR_INPUT=omit: a 422 quotes nothing.
    let bad = reqwest::Client::new()
        .post(format!("{url}/unicorns"))
        .header("content-type", "application/json")
        .body(r#"{"name": "secret@example.org"}"#)
        .send()
        .await?;
    assert_eq!(bad.status(), 422);
    assert!(!bad.text().await?.contains("secret@example.org"));
    Ok(())
}

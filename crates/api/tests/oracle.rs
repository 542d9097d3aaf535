//! The 422 conformance test: a corpus of bad bodies posted to sluice and to FastAPI itself (the
//! same contract as a pydantic v2 model, `tests/oracle/unicorns_fastapi.py`, from a pinned venv
//! under `target/`). Status and every `(loc, type)` pair must agree, in order, except where
//! sluice is stricter on purpose (date-times), which is asserted too.

mod common;

use anyhow::Result;
use serde_json::{Value, json};

async fn sluice() -> Result<String> {
    common::validating_server().await
}

/// Status and the (loc, type) pairs of a 422.
async fn answer(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<(Value, String)>)> {
    let r = http
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await?;
    let status = r.status().as_u16();
    let json: Value = serde_json::from_str(&r.text().await?).unwrap_or(Value::Null);
    let pairs = json["detail"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["loc"].clone(),
                        p["type"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((status, pairs))
}

fn unicorn() -> Value {
    json!({
        "name": "Sparkle", "rainbow": true, "color": "gold", "horn_length_cm": 42.5,
        "age_years": 7, "sighted_at": "2024-05-01T09:00:00-03:00",
        "location": {"lat": -23.55, "lon": -46.63}, "tags": ["shy"],
        "observer_email": "ana@example.org",
    })
}

/// A unicorn with `field` set to `value` (`None`: removed).
fn with(field: &str, value: Option<Value>) -> Value {
    let mut u = unicorn();
    let o = u.as_object_mut().unwrap();
    match value {
        Some(v) => o.insert(field.to_owned(), v),
        None => o.remove(field),
    };
    u
}

/// One body per bad value of each field, and whole-body mistakes.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let bad: Vec<(&str, Vec<Option<Value>>)> = vec![
        (
            "name",
            vec![
                None,
                Some(json!("")),
                Some(json!("x".repeat(65))),
                Some(json!(5)),
                Some(Value::Null),
                Some(json!(["a"])),
            ],
        ),
        (
            "rainbow",
            vec![
                None,
                Some(json!("true")),
                Some(json!(1)),
                Some(Value::Null),
                Some(json!(0.0)),
            ],
        ),
        (
            "color",
            vec![
                None,
                Some(json!("blue")),
                Some(json!("GOLD")),
                Some(json!(5)),
                Some(Value::Null),
            ],
        ),
        (
            "horn_length_cm",
            vec![
                Some(json!(0)),
                Some(json!(-1.5)),
                Some(json!(200.5)),
                Some(json!("3")),
                Some(json!(true)),
                Some(Value::Null),
                Some(json!(201)),
            ],
        ),
        (
            "age_years",
            vec![
                Some(json!(1.5)),
                Some(json!(true)),
                Some(json!("3")),
                Some(json!(-1)),
                Some(json!(10001)),
                Some(Value::Null),
                Some(json!(1.0)),
            ],
        ),
        (
            "sighted_at",
            vec![
                None,
                Some(json!("yesterday")),
                Some(Value::Null),
                Some(json!(true)),
                Some(json!(["2024-05-01T00:00:00Z"])),
            ],
        ),
        (
            "location",
            vec![
                None,
                Some(json!("here")),
                Some(json!([])),
                Some(json!({"lat": 1})),
                Some(json!({"lat": 1, "lon": 2, "alt": 3})),
                Some(json!({"lat": "1", "lon": 2})),
                Some(json!({"lat": 91, "lon": -181})),
                Some(Value::Null),
            ],
        ),
        (
            "tags",
            vec![
                Some(json!("x")),
                Some(json!(["", "a"])),
                Some(json!(["a".repeat(33)])),
                Some(json!([1])),
                Some(json!(vec!["t"; 11])),
                Some(Value::Null),
            ],
        ),
        (
            "observer_email",
            vec![
                Some(json!("nope")),
                Some(json!(5)),
                Some(json!(format!("a@b.c{}", "x".repeat(300)))),
                Some(json!("a b@c.d")),
            ],
        ),
        ("wings", vec![Some(json!(2))]),
    ];
    let mut out: Vec<(&str, Vec<u8>)> = Vec::new();
    for (field, values) in bad {
        for v in values {
            out.push(("/unicorns", with(field, v).to_string().into_bytes()));
        }
    }
    let mut many = with("name", Some(json!("")));
    many["age_years"] = json!("old");
    many["location"] = json!({"lat": 100});
    many["extra"] = json!(1);
    out.push(("/unicorns", many.to_string().into_bytes()));
    for body in ["[]", "\"x\"", "null", "5", "{}", "[{}]"] {
        out.push(("/unicorns", body.as_bytes().to_vec()));
    }
    for body in ["{\"name\": ", "{\"a\": x}", "{\"a\":1,}", "", "  "] {
        out.push(("/unicorns", body.as_bytes().to_vec()));
    }
    let good = unicorn();
    let batches = [
        json!([]),
        json!({}),
        json!("x"),
        json!(["x"]),
        json!([
            good,
            with("age_years", Some(json!(true))),
            good,
            with("name", None)
        ]),
        Value::Array(vec![good.clone(); 501]),
    ];
    for b in batches {
        out.push(("/unicorns/batch", b.to_string().into_bytes()));
    }
    out
}

#[tokio::test]
async fn every_bad_body_gets_the_422_fastapi_gives() -> Result<()> {
    let ours = sluice().await?;
    let oracle = sluice_testkit::script_server("scripts/fastapi-oracle")?;
    let http = reqwest::Client::new();
    // The oracle takes a valid unicorn: the two agree on what is good.
    assert_eq!(
        answer(
            &http,
            &oracle,
            "/unicorns",
            unicorn().to_string().as_bytes()
        )
        .await?
        .0,
        201
    );
    let mut differences = Vec::new();
    let corpus = corpus();
    for (path, body) in &corpus {
        let theirs = answer(&http, &oracle, path, body).await?;
        let mine = answer(&http, &ours, path, body).await?;
        if theirs != mine {
            differences.push(format!(
                "{path} {}\n  FastAPI: {theirs:?}\n  sluice:  {mine:?}",
                String::from_utf8_lossy(&body[..body.len().min(160)])
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} bodies answered differently:\n{}",
        differences.len(),
        corpus.len(),
        differences.join("\n")
    );
    Ok(())
}

/// Where pydantic is laxer than the contract, sluice refuses: FastAPI stores these.
#[tokio::test]
async fn date_times_without_an_offset_are_refused_where_fastapi_takes_them() -> Result<()> {
    let ours = sluice().await?;
    let oracle = sluice_testkit::script_server("scripts/fastapi-oracle")?;
    let http = reqwest::Client::new();
    let cases = [
        (json!("2024-05-01T09:00:00"), "timezone_aware"),
        (json!("2024-05-01"), "datetime_parsing"),
        (json!(1714554000), "datetime_type"),
    ];
    for (value, ty) in cases {
        let body = with("sighted_at", Some(value.clone())).to_string();
        let theirs = answer(&http, &oracle, "/unicorns", body.as_bytes()).await?;
        let mine = answer(&http, &ours, "/unicorns", body.as_bytes()).await?;
        assert_eq!(theirs.0, 201, "FastAPI takes {value}");
        assert_eq!(
            mine,
            (422, vec![(json!(["body", "sighted_at"]), ty.to_owned())]),
            "{value}"
        );
    }
    Ok(())
}

//! The Athena client over real HTTP: against moto's server (the API calls, seeded results), and
//! against a stub of Athena's JSON protocol that a test scripts (paging, failures, throttling,
//! the deadline), each request it received kept for the assertions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_athena::config::{Credentials, Region};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sluice_athena::{Athena, AthenaError, Ended, Poll, Query};

/// A request the stub received: the operation (`StartQueryExecution`, …) and its JSON body.
type Call = (String, Value);

/// What the stub answers to the `n`th call (from 0) of an operation.
type Script = Arc<dyn Fn(&str, usize, &Value) -> (StatusCode, Value) + Send + Sync>;

/// A stub of Athena on 127.0.0.1: `POST /` with `X-Amz-Target: AmazonAthena.<operation>`.
struct Stub {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Stub {
    async fn start(script: Script) -> Result<Stub> {
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let seen = calls.clone();
        let answer = move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            let script = script.clone();
            async move {
                let op = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|t| t.strip_prefix("AmazonAthena."))
                    .unwrap_or("")
                    .to_owned();
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let n = {
                    let mut calls = seen.lock().unwrap();
                    let n = calls.iter().filter(|(o, _)| *o == op).count();
                    calls.push((op.clone(), body.clone()));
                    n
                };
                let (status, json) = script(&op, n, &body);
                (
                    status,
                    [("content-type", "application/x-amz-json-1.1")],
                    json.to_string(),
                )
            }
        };
        let app = axum::Router::new().route("/", axum::routing::post(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Stub { url, calls })
    }

    fn athena(&self) -> Athena {
        client(&self.url).with_poll(Poll {
            first: Duration::from_millis(1),
            max: Duration::from_millis(5),
        })
    }

    fn calls(&self, op: &str) -> Vec<Value> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

fn client(url: &str) -> Athena {
    let config = aws_sdk_athena::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(url)
        .retry_config(
            aws_sdk_athena::config::retry::RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .build();
    Athena::new(aws_sdk_athena::Client::from_conf(config))
}

fn ok(v: Value) -> (StatusCode, Value) {
    (StatusCode::OK, v)
}

fn state(s: &str) -> Value {
    json!({"QueryExecution": {"QueryExecutionId": "q1", "StatementType": "DML",
        "Status": {"State": s}, "Statistics": {"DataScannedInBytes": 1234}}})
}

fn row(values: &[Option<&str>]) -> Value {
    let data: Vec<Value> = values
        .iter()
        .map(|v| v.map_or(json!({}), |s| json!({"VarCharValue": s})))
        .collect();
    json!({ "Data": data })
}

fn page(rows: Vec<Value>, next: Option<&str>) -> Value {
    let mut page = json!({"ResultSet": {"Rows": rows, "ResultSetMetadata": {"ColumnInfo": [
        {"Name": "color", "Type": "varchar"}, {"Name": "n", "Type": "bigint"}]}}});
    if let Some(t) = next {
        page["NextToken"] = json!(t);
    }
    page
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[tokio::test]
async fn every_page_is_read_and_the_header_dropped_from_the_first_only() -> Result<()> {
    let script: Script = Arc::new(|op, n, _| match (op, n) {
        ("StartQueryExecution", _) => ok(json!({"QueryExecutionId": "q1"})),
        ("GetQueryExecution", 0 | 1) => ok(state("RUNNING")),
        ("GetQueryExecution", _) => ok(state("SUCCEEDED")),
        ("GetQueryResults", 0) => ok(page(
            vec![
                row(&[Some("color"), Some("n")]),
                row(&[Some("gold"), Some("3")]),
            ],
            Some("t1"),
        )),
        // A later page whose first row looks like the header is data.
        ("GetQueryResults", 1) => ok(page(
            vec![row(&[Some("color"), Some("7")]), row(&[None, Some("1")])],
            Some("t2"),
        )),
        ("GetQueryResults", _) => ok(page(vec![row(&[Some("pink"), None])], None)),
        _ => (
            StatusCode::BAD_REQUEST,
            json!({"__type": "InvalidRequestException"}),
        ),
    });
    let stub = Stub::start(script).await?;
    let q = Query::new("SELECT color, count(*) AS n FROM unicorns WHERE dt = ? GROUP BY 1")
        .param("'2024-05-01'")
        .workgroup("sluice-lake")
        .database("sluice")
        .reuse_results(Duration::from_secs(3600));
    let rows = stub.athena().run(&q, far()).await?;
    assert_eq!(
        rows.rows,
        vec![
            vec![json!("gold"), json!(3)],
            vec![json!("color"), json!(7)],
            vec![Value::Null, json!(1)],
            vec![json!("pink"), Value::Null],
        ]
    );
    assert_eq!(
        (rows.query_id.as_str(), rows.bytes_scanned),
        ("q1", Some(1234))
    );
    let start = &stub.calls("StartQueryExecution")[0];
    assert_eq!(
        start["QueryString"],
        json!(q.sql),
        "the value is not in the SQL"
    );
    assert_eq!(start["ExecutionParameters"], json!(["'2024-05-01'"]));
    assert_eq!(start["ClientRequestToken"], json!(q.token));
    assert_eq!(start["WorkGroup"], "sluice-lake");
    assert_eq!(start["QueryExecutionContext"]["Database"], "sluice");
    assert_eq!(
        start["ResultReuseConfiguration"]["ResultReuseByAgeConfiguration"],
        json!({"Enabled": true, "MaxAgeInMinutes": 60})
    );
    assert_eq!(stub.calls("GetQueryExecution").len(), 3);
    let pages = stub.calls("GetQueryResults");
    let tokens: Vec<&Value> = pages.iter().map(|p| &p["NextToken"]).collect();
    assert_eq!(tokens, [&Value::Null, &json!("t1"), &json!("t2")]);
    assert!(pages.iter().all(|p| p["MaxResults"] == 1000));
    Ok(())
}

#[tokio::test]
async fn a_failed_or_cancelled_query_says_why() -> Result<()> {
    for (state, ended) in [("FAILED", Ended::Failed), ("CANCELLED", Ended::Cancelled)] {
        let script: Script = Arc::new(move |op, _, _| match op {
            "StartQueryExecution" => ok(json!({"QueryExecutionId": "q1"})),
            _ => ok(
                json!({"QueryExecution": {"QueryExecutionId": "q1", "Status": {
                "State": state,
                "StateChangeReason": "COLUMN_NOT_FOUND: line 1:8: Column 'colour' cannot be resolved",
                "AthenaError": {"ErrorCategory": 2, "ErrorType": 1006, "Retryable": false,
                    "ErrorMessage": "Column 'colour' cannot be resolved"}}}}),
            ),
        });
        let stub = Stub::start(script).await?;
        let e = stub
            .athena()
            .run(&Query::new("SELECT colour FROM unicorns"), far())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, AthenaError::Ended { ended: got, .. } if *got == ended),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "query q1 {ended:?}: COLUMN_NOT_FOUND: line 1:8: Column 'colour' cannot be resolved \
                 (category 2, type 1006, retryable false: Column 'colour' cannot be resolved)"
            )
        );
        assert!(stub.calls("GetQueryResults").is_empty());
    }
    Ok(())
}

/// Throttled calls are retried, and the retried start carries the same token, so Athena runs
/// the query once.
#[tokio::test]
async fn throttling_is_retried_and_a_retried_start_keeps_its_token() -> Result<()> {
    let throttled = || {
        (
            StatusCode::BAD_REQUEST,
            json!({"__type": "TooManyRequestsException", "Message": "Rate exceeded", "Reason": "CONCURRENT_QUERY_LIMIT_EXCEEDED"}),
        )
    };
    let script: Script = Arc::new(move |op, n, _| match (op, n) {
        ("StartQueryExecution", 0) | ("GetQueryExecution", 0) | ("GetQueryResults", 0) => {
            throttled()
        }
        ("StartQueryExecution", _) => ok(json!({"QueryExecutionId": "q1"})),
        ("GetQueryExecution", _) => ok(state("SUCCEEDED")),
        _ => ok(page(
            vec![
                row(&[Some("color"), Some("n")]),
                row(&[Some("gold"), Some("1")]),
            ],
            None,
        )),
    });
    let stub = Stub::start(script).await?;
    let q = Query::new("SELECT 1");
    let rows = stub.athena().run(&q, far()).await?;
    assert_eq!(rows.rows, vec![vec![json!("gold"), json!(1)]]);
    let starts = stub.calls("StartQueryExecution");
    assert_eq!(starts.len(), 2);
    assert!(
        starts
            .iter()
            .all(|s| s["ClientRequestToken"] == json!(q.token))
    );
    assert_eq!(stub.calls("GetQueryExecution").len(), 2);
    assert_eq!(stub.calls("GetQueryResults").len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_query_still_running_at_the_deadline_is_stopped() -> Result<()> {
    let script: Script = Arc::new(|op, _, _| match op {
        "StartQueryExecution" => ok(json!({"QueryExecutionId": "q1"})),
        "GetQueryExecution" => ok(state("RUNNING")),
        _ => ok(json!({})),
    });
    let stub = Stub::start(script).await?;
    let deadline = Instant::now() + Duration::from_millis(30);
    let e = stub
        .athena()
        .run(&Query::new("SELECT 1"), deadline)
        .await
        .unwrap_err();
    match &e {
        AthenaError::Deadline {
            query_id,
            state,
            stopped,
            ..
        } => assert_eq!(
            (query_id.as_str(), state.as_str(), *stopped),
            ("q1", "RUNNING", true)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        stub.calls("StopQueryExecution"),
        vec![json!({"QueryExecutionId": "q1"})]
    );
    assert!(stub.calls("GetQueryExecution").len() >= 2, "it polled");
    assert!(stub.calls("GetQueryResults").is_empty());
    Ok(())
}

/// moto's server takes the calls as AWS's API defines them; its results are seeded (moto runs
/// no SQL), with the header row Athena puts first.
#[tokio::test]
async fn moto_takes_a_parameterised_query_in_a_workgroup() -> Result<()> {
    let moto = sluice_testkit::moto()?;
    moto.seed_athena_results(&[json!({
        "rows": [row(&[Some("color"), Some("n")]), row(&[Some("gold"), Some("3")]), row(&[Some("pink"), None])],
        "column_info": [{"Name": "color", "Label": "color", "Type": "varchar", "Nullable": "NULLABLE", "CaseSensitive": true},
                        {"Name": "n", "Label": "n", "Type": "bigint", "Nullable": "NULLABLE", "CaseSensitive": false}],
    })])
    .await?;
    let aws = moto.sdk_config().await;
    let sdk = aws_sdk_athena::Client::new(&aws);
    let athena = Athena::new(sdk.clone());
    let q = Query::new("SELECT color, count(*) FROM unicorns WHERE dt = ? GROUP BY 1")
        .param("'2024-05-01'")
        .workgroup("primary");
    let rows = athena.run(&q, far()).await?;
    assert_eq!(
        rows.rows,
        vec![
            vec![json!("gold"), json!(3)],
            vec![json!("pink"), Value::Null]
        ]
    );
    let columns: Vec<(&str, &str)> = rows
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.athena_type.as_str()))
        .collect();
    assert_eq!(columns, [("color", "varchar"), ("n", "bigint")]);
    let seen = sdk
        .get_query_execution()
        .query_execution_id(&rows.query_id)
        .send()
        .await?;
    let seen = seen.query_execution.unwrap();
    assert_eq!(seen.query.as_deref(), Some(q.sql.as_str()));
    assert_eq!(seen.execution_parameters(), ["'2024-05-01'"]);
    assert_eq!(seen.work_group.as_deref(), Some("primary"));
    Ok(())
}

//! Each function run the way its `main.rs` runs it (configuration from the template's
//! `Environment`, clients built from an AWS configuration, the handler given an event), under
//! credentials that hold exactly the template's policy for its role, against moto's server with
//! IAM enforced. A grant the code needs and the template lacks fails here, not on AWS.
//!
//! What moto checks, and what it does not:
//! - S3: the action and the object's ARN, as AWS does (`GetObject` vs `GetObjectVersion` too).
//! - Other services (Secrets Manager here): the action only; moto authorizes them against `*`,
//!   so their statements' resources are widened to `*` for moto. `template.rs` checks that those
//!   resources name the right secrets.
//! - DeleteObjects: moto asks for `s3:DeleteObject` on the bucket (AWS: on each key), so the
//!   statements granting it name the bucket too, for moto only.
//! - Conditions are not evaluated, and a GET of a missing key is a 404 whatever the grants
//!   (AWS answers 403 without `s3:ListBucket`): the ingest's state read under that rule is
//!   tested with the S3 stand-in that emulates it (`client_without_list`).
//!
//! Every statement is accounted for: removing one the code uses fails a run, and the rest are
//! exactly those the Lambda service uses on the function's behalf (logs, the dead-letter queue,
//! VPC interfaces) or that AWS's 403-for-missing-keys rule needs (`ListState`). Statements of
//! one non-S3 action (the loader's two secrets) can only be removed together, since moto cannot
//! tell their resources apart.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use aws_sdk_s3::config::Credentials;
use serde_json::{Value, json};
use sluice_infra::{Stack, template};
use sluice_sample_api::{SampleApi, Settings, data::BASE_TS};
use sluice_testkit::{Moto, TestDb, unique_name};

const ACCOUNT: &str = "123456789012";
const RECORDS: u64 = 40;

/// Statements no code of ours exercises: the Lambda service's, and `ListState` (see above).
const INGEST_SERVICE_SIDE: &[&str] = &["ListState", "Logs"];
const LOADER_SERVICE_SIDE: &[&str] =
    &["DeadLetters", "Logs", "VpcDescribe", "VpcNetworkInterfaces"];
const API_SERVICE_SIDE: &[&str] = &["Logs"];
const COMPACT_SERVICE_SIDE: &[&str] = &["Logs"];

/// What one run needs: a bucket, the secrets, and the user holding the policy under test.
struct Case {
    /// The statements left out (`A+B` for two), or `None` for the whole policy.
    without: Option<String>,
    bucket: String,
    user: Credentials,
}

struct World {
    moto: Moto,
    api: SampleApi,
    /// The loader's database, dropped with the world.
    _db: TestDb,
    secrets: BTreeMap<&'static str, String>,
    /// Full access, for what the test itself reads and writes once IAM is enforced.
    admin: Credentials,
}

#[tokio::test]
async fn each_function_needs_exactly_the_grants_its_template_policy_holds() -> Result<()> {
    let moto = Moto::start_own()?;
    let setup = moto.sdk_config().await; // any key works until IAM is enforced
    let api = SampleApi::start(Settings {
        n: RECORDS,
        ..Settings::default()
    })
    .await?;
    let db = sluice_testkit::database().await?;
    let secrets = make_secrets(&setup, &db).await?;
    let admin = moto
        .user_with_policy(
            "admin",
            &json!({"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        )
        .await?;
    let t = template();
    let world = World {
        moto,
        api,
        _db: db,
        secrets,
        admin,
    };
    let ingest_cases = cases(&world, &setup, &t, "IngestRole").await?;
    let loader_cases = cases(&world, &setup, &t, "LoaderRole").await?;
    let api_cases = cases(&world, &setup, &t, "ApiRole").await?;
    let compact_cases = cases(&world, &setup, &t, "CompactRole").await?;
    for case in &compact_cases {
        seed_lake(&setup, &case.bucket).await?;
    }
    world.moto.enforce_iam().await?;

    // Enforcement is on: the setup key is no longer anyone.
    let stranger = sluice_edge::s3_client(&setup);
    let denied = stranger
        .list_buckets()
        .send()
        .await
        .expect_err("an unknown key is refused");
    assert!(
        format!("{denied:?}").contains("InvalidAccessKeyId"),
        "{denied:?}"
    );

    let mut object = None;
    let mut unused = Vec::new();
    for case in &ingest_cases {
        match (run_ingest(&world, &t, case).await, &case.without) {
            (Ok(key), None) => object = Some((case.bucket.clone(), key)),
            (Ok(_), Some(sid)) => unused.push(sid.clone()),
            (Err(e), None) => return Err(e.context("the ingest under its whole policy")),
            (Err(e), Some(sid)) => assert_denied(&e, sid),
        }
    }
    unused.sort();
    assert_eq!(
        unused, INGEST_SERVICE_SIDE,
        "ingest statements no run needed"
    );
    let (from, key) = object.context("the whole policy's ingest run wrote an object")?;

    let mut unused = Vec::new();
    for case in &loader_cases {
        let version = stage_object(&world, &from, &key, &case.bucket).await?;
        match (
            run_loader(&world, &t, case, &key, &version).await,
            &case.without,
        ) {
            (Ok(()), None) => {}
            (Ok(()), Some(sid)) => unused.push(sid.clone()),
            (Err(e), None) => return Err(e.context("the loader under its whole policy")),
            (Err(e), Some(sid)) => assert_denied(&e, sid),
        }
    }
    unused.sort();
    assert_eq!(
        unused, LOADER_SERVICE_SIDE,
        "loader statements no run needed"
    );

    let mut unused = Vec::new();
    for case in &api_cases {
        match (run_api(&world, &t, case).await, &case.without) {
            (Ok(()), None) => {}
            (Ok(()), Some(sid)) => unused.push(sid.clone()),
            (Err(e), None) => return Err(e.context("the API under its whole policy")),
            (Err(e), Some(sid)) => assert_denied(&e, sid),
        }
    }
    unused.sort();
    assert_eq!(unused, API_SERVICE_SIDE, "API statements no run needed");

    let mut unused = Vec::new();
    for case in &compact_cases {
        match (run_compact(&world, &t, case).await, &case.without) {
            (Ok(()), None) => {}
            (Ok(()), Some(sid)) => unused.push(sid.clone()),
            (Err(e), None) => return Err(e.context("compaction under its whole policy")),
            (Err(e), Some(sid)) => assert_denied(&e, sid),
        }
    }
    unused.sort();
    assert_eq!(
        unused, COMPACT_SERVICE_SIDE,
        "compaction statements no run needed"
    );
    Ok(())
}

/// Three requests' objects in yesterday's partition, as the API leaves them.
async fn seed_lake(setup: &aws_config::SdkConfig, bucket: &str) -> Result<()> {
    let s3 = sluice_edge::s3_client(setup);
    let datasets =
        sluice_api::Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets"))?;
    let d = datasets.get("unicorns").context("unicorns")?;
    let day = sluice_edge::layout::utc_day(jiff::Timestamp::now()) - jiff::ToSpan::days(1);
    let unicorn = json!({"name": "Iam", "rainbow": true, "color": "gold", "horn_length_cm": 20.5,
        "age_years": 7, "sighted_at": "2024-05-01T12:00:00Z", "location": {"lat": 1.0, "lon": 2.0}});
    let checked =
        sluice_api::validate::record(d, &unicorn, &[]).map_err(|p| anyhow::anyhow!("{p:?}"))?;
    for event in ["e1", "e2", "e3"] {
        let stamp = sluice_api::lake::Stamp {
            event_id: event.into(),
            received_at: jiff::Timestamp::now(),
            body_sha256: String::new(),
        };
        let body = sluice_api::lake::parquet(d, std::slice::from_ref(&checked), &stamp)?;
        s3.put_object()
            .bucket(bucket)
            .key(sluice_edge::layout::Layout::default().lake_object("unicorns", day, event))
            .body(body.into())
            .send()
            .await?;
    }
    Ok(())
}

/// The scheduled compaction twice: a generation merged and committed, then (its grace passed)
/// what it replaced deleted.
async fn run_compact(world: &World, t: &serde_yaml_ng::Value, case: &Case) -> Result<()> {
    let mut env = stack(world, t, &case.bucket)
        .environment("CompactFunction")
        .map_err(anyhow::Error::msg)?;
    let datasets = sluice_testkit::workspace_root().join("datasets");
    env.insert("DATASETS".into(), datasets.display().to_string());
    let config = sluice_compact::config::Config::from_lookup(|k| env.get(k).cloned())?;
    let datasets = sluice_api::Datasets::from_dir(&config.datasets)?;
    let aws = world.moto.sdk_config_as(case.user.clone()).await;
    let c = sluice_compact::Compactor::new(
        sluice_edge::s3_client(&aws),
        &config.bucket,
        config.layout.clone(),
        config.settings,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    let now = jiff::Timestamp::now();
    let first = sluice_compact::handle(&c, &datasets, now, deadline).await?;
    let later = now + config.settings.grace + jiff::SignedDuration::from_mins(1);
    let second = sluice_compact::handle(&c, &datasets, later, deadline).await?;
    let merged: usize = first.partitions.iter().map(|p| p.merged).sum();
    let retired: usize = second.partitions.iter().map(|p| p.retired).sum();
    anyhow::ensure!(
        (merged, retired) == (3, 3),
        "merged {merged}, retired {retired}"
    );
    Ok(())
}

fn assert_denied(e: &anyhow::Error, sid: &str) {
    let text = format!("{e:#}");
    assert!(
        text.contains("AccessDenied") || text.contains("not authorized"),
        "without {sid}: failed, but not on a denial: {text}"
    );
}

/// The secrets both functions read: the API's credentials, the database's (the shape of a
/// secret attached to an RDS instance), the redaction salt.
async fn make_secrets(
    aws: &aws_config::SdkConfig,
    db: &TestDb,
) -> Result<BTreeMap<&'static str, String>> {
    let sm = aws_sdk_secretsmanager::Client::new(aws);
    let url = url_parts(&db.url)?;
    let s = Settings::default();
    let values = [
        (
            "api",
            json!({"client_id": s.client_id, "client_secret": s.client_secret}).to_string(),
        ),
        (
            "database",
            json!({"engine": "postgres", "host": url.0, "port": url.1, "username": url.2,
                   "password": "unused-with-trust-auth", "dbname": db.name})
            .to_string(),
        ),
        ("salt", "a-salt-of-this-test".to_owned()),
    ];
    let mut arns = BTreeMap::new();
    for (name, value) in values {
        let out = sm
            .create_secret()
            .name(unique_name(name))
            .secret_string(value)
            .send()
            .await?;
        arns.insert(
            name,
            out.arn().context("CreateSecret returns an ARN")?.to_owned(),
        );
    }
    Ok(arns)
}

/// (host, port, user) of a `postgres://user@host:port/db` URL.
fn url_parts(url: &str) -> Result<(String, u16, String)> {
    let rest = url.strip_prefix("postgres://").context("a postgres URL")?;
    let (auth, rest) = rest.split_once('@').context("a user in the URL")?;
    let user = auth.split(':').next().unwrap_or(auth).to_owned();
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    Ok((host.to_owned(), port.parse()?, user))
}

/// One case per statement of `role` left out, and one with all of them (last), each with a
/// bucket and a user of its own.
async fn cases(
    world: &World,
    setup: &aws_config::SdkConfig,
    t: &serde_yaml_ng::Value,
    role: &str,
) -> Result<Vec<Case>> {
    let s3 = sluice_edge::s3_client(setup);
    let whole = stack(world, t, "any")
        .role_policy(role)
        .map_err(anyhow::Error::msg)?;
    let statements = whole["Statement"].as_array().context("statements")?;
    let mut groups: Vec<(Vec<String>, String)> = Vec::new();
    for st in statements {
        let sid = st["Sid"].as_str().context("every statement has a Sid")?;
        // moto checks non-S3 grants by action alone: statements of one such action go together.
        let action = st["Action"].to_string();
        let by_action = !action.contains("s3:");
        match groups.iter_mut().find(|(_, a)| by_action && *a == action) {
            Some((sids, _)) => sids.push(sid.to_owned()),
            None => groups.push((vec![sid.to_owned()], action)),
        }
    }
    let cases = groups
        .into_iter()
        .map(|(sids, _)| Some(sids.join("+")))
        .chain([None]);
    let mut out = Vec::new();
    for without in cases {
        let bucket = unique_name("lake").to_lowercase().replace('_', "-");
        s3.create_bucket().bucket(&bucket).send().await?;
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await?;
        let mut policy = stack(world, t, &bucket)
            .role_policy(role)
            .map_err(anyhow::Error::msg)?;
        let statements = policy["Statement"].as_array_mut().context("statements")?;
        statements.retain(|s| {
            let sid = s["Sid"].as_str().unwrap_or_default();
            without
                .as_deref()
                .is_none_or(|w| !w.split('+').any(|x| x == sid))
        });
        for s in statements.iter_mut() {
            widen_for_moto(s);
        }
        let name = format!("{role}-{}", without.as_deref().unwrap_or("whole"));
        let user = world.moto.user_with_policy(&name, &policy).await?;
        out.push(Case {
            without,
            bucket,
            user,
        });
    }
    Ok(out)
}

/// moto authorizes services other than S3 against resource `*` (see the module's text).
fn widen_for_moto(statement: &mut Value) {
    let actions = match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(xs) => xs
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    };
    if actions.iter().all(|a| !a.starts_with("s3:")) {
        statement["Resource"] = json!("*");
    }
    // moto authorizes a DeleteObjects request as s3:DeleteObject on the bucket itself, then
    // fails every key when that is denied; AWS checks s3:DeleteObject on each key. So for moto
    // a statement that grants s3:DeleteObject on keys also names their bucket.
    if actions.iter().any(|a| a == "s3:DeleteObject")
        && let Some(key_arn) = statement["Resource"].as_str()
        && let Some((bucket_arn, _)) = key_arn.split_once('/')
    {
        statement["Resource"] = json!([key_arn, bucket_arn]);
    }
}

/// The template's stack for bucket `bucket`, with this test's secrets and sample API.
fn stack<'t>(world: &World, t: &'t serde_yaml_ng::Value, bucket: &str) -> Stack<'t> {
    let arn = |kind: &str, name: &str| format!("arn:aws:{kind}:us-east-1:{ACCOUNT}:{name}");
    Stack::new(t)
        .condition("MakeDatabase", false)
        .value("LakeBucket", bucket)
        .value("LakeBucket.Arn", format!("arn:aws:s3:::{bucket}"))
        .value("IngestLogGroup.Arn", arn("logs", "log-group:ingest"))
        .value("LoaderLogGroup.Arn", arn("logs", "log-group:loader"))
        .value("ApiLogGroup.Arn", arn("logs", "log-group:api"))
        .value("CompactLogGroup.Arn", arn("logs", "log-group:compact"))
        .value("LoaderDeadLetterQueue.Arn", arn("sqs", "loader-dlq"))
        .value("LoaderSecurityGroupId", "sg-0123456789abcdef0")
        .value("ApiCredentialsSecretArn", &world.secrets["api"])
        .value("DatabaseSecretArn", &world.secrets["database"])
        .value("RedactSalt", &world.secrets["salt"])
        .value("SourcesToml", sources_toml(&world.api.base_url()))
}

fn sources_toml(base_url: &str) -> String {
    format!(
        r#"
[source.hotmart-sales]
preset = "hotmart-sales"
base_url = "{base_url}"
page_size = 100
[source.hotmart-sales.window]
initial_start = "2023-11-14T00:00:00Z"
max_span = "60d"
"#
    )
}

/// The ingest as `main.rs` builds it, one scheduled run; the key of the object it wrote.
async fn run_ingest(world: &World, t: &serde_yaml_ng::Value, case: &Case) -> Result<String> {
    let env = stack(world, t, &case.bucket)
        .environment("IngestFunction")
        .map_err(anyhow::Error::msg)?;
    let config = sluice_ingest::Config::from_lookup(|k| env.get(k).cloned())?;
    let aws = world.moto.sdk_config_as(case.user.clone()).await;
    let ingest = sluice_ingest::build(&config, &aws)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = jiff::Timestamp::from_millisecond(BASE_TS + RECORDS as i64 * 60_000 + 3_600_000)?;
    let summary = sluice_ingest::handle(&json!({}), &ingest, now, "iam")
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    anyhow::ensure!(summary.records == RECORDS, "records: {}", summary.records);
    let admin = sluice_edge::s3_client(&world.moto.sdk_config_as(world.admin.clone()).await);
    let listed = admin
        .list_objects_v2()
        .bucket(&case.bucket)
        .prefix("raw/")
        .send()
        .await?;
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .find(|k| k.ends_with(".csv") || k.ends_with(".csv.gz"))
        .map(str::to_owned)
        .context("the run wrote a CSV object")
}

/// Copies the ingest's object and its manifest into `to` with one ragged row more (so the loader
/// quarantines something); returns the object's version id.
async fn stage_object(world: &World, from: &str, key: &str, to: &str) -> Result<String> {
    let admin = sluice_edge::s3_client(&world.moto.sdk_config_as(world.admin.clone()).await);
    let get = |k: String| {
        let admin = admin.clone();
        async move {
            let o = admin.get_object().bucket(from).key(&k).send().await?;
            anyhow::Ok(o.body.collect().await?.into_bytes().to_vec())
        }
    };
    let mut csv = get(key.to_owned()).await?;
    anyhow::ensure!(key.ends_with(".csv"), "a plain CSV object: {key}");
    csv.extend_from_slice(b"ragged\n");
    let manifest = sluice_edge::layout::manifest_key(key);
    let body = get(manifest.clone()).await?;
    admin
        .put_object()
        .bucket(to)
        .key(&manifest)
        .body(body.into())
        .send()
        .await?;
    let put = admin
        .put_object()
        .bucket(to)
        .key(key)
        .body(csv.into())
        .send()
        .await?;
    put.version_id()
        .map(str::to_owned)
        .context("a versioned bucket")
}

/// The loader as `main.rs` builds it, given the S3 notification of `key`.
async fn run_loader(
    world: &World,
    t: &serde_yaml_ng::Value,
    case: &Case,
    key: &str,
    version: &str,
) -> Result<()> {
    let mut env = stack(world, t, &case.bucket)
        .environment("LoaderFunction")
        .map_err(anyhow::Error::msg)?;
    // The test's Postgres has no TLS (verify-full is tested for real in the loader's
    // connect.rs), and the CA bundle is packaged by `make deploy` only.
    env.insert("DATABASE_SSLMODE".into(), "disable".into());
    env.remove("DATABASE_CA_BUNDLE");
    let aws = world.moto.sdk_config_as(case.user.clone()).await;
    let mut config = sluice_loader::Config::from_lookup(|k| env.get(k).cloned())?;
    sluice_loader::connect::read_secrets(&mut config, &aws).await?;
    let config = Arc::new(config);
    let pool = sluice_loader::pool_with(&config, Some(&aws)).await?;
    let store = sluice_loader::S3Store {
        client: sluice_edge::s3_client(&aws),
    };
    let loader = sluice_loader::Loader::new(pool, config).with_aws(aws);
    let event = s3_event(&case.bucket, key, version)?;
    let summary = sluice_loader::handle(&event, &loader, &store)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    anyhow::ensure!(
        summary.rows.rejected == 1,
        "one row quarantined: {summary:?}"
    );
    Ok(())
}

/// `events/s3-object-created.json` for `bucket`/`key` at `version` (the key URL-encoded, as S3
/// sends it).
fn s3_event(bucket: &str, key: &str, version: &str) -> Result<Value> {
    let path = sluice_testkit::workspace_root().join("events/s3-object-created.json");
    let mut e: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let s3 = &mut e["Records"][0]["s3"];
    s3["bucket"]["name"] = json!(bucket);
    s3["bucket"]["arn"] = json!(format!("arn:aws:s3:::{bucket}"));
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect();
    s3["object"]["key"] = json!(encoded);
    s3["object"]["versionId"] = json!(version);
    Ok(e)
}

/// The log lines of one request, kept to find the denial behind a 503 (whose body says only
/// "retry").
#[derive(Clone, Default)]
struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The API as `main.rs` builds it, given the requests that reach S3: a record (`PutObject` on
/// `lake/`), its retry (the key is taken: `HEAD`, which is `s3:GetObject`), and a partial batch
/// with a bad item (`PutObject` on `rejected/`).
async fn run_api(world: &World, t: &serde_yaml_ng::Value, case: &Case) -> Result<()> {
    use tower::ServiceExt;
    use tracing::instrument::WithSubscriber;

    let mut env = stack(world, t, &case.bucket)
        .environment("ApiFunction")
        .map_err(anyhow::Error::msg)?;
    // On Lambda the datasets are packaged beside bootstrap (make deploy).
    let datasets = sluice_testkit::workspace_root().join("datasets");
    env.insert("DATASETS".into(), datasets.display().to_string());
    let config = sluice_api::config::Config::from_lookup(|k| env.get(k).cloned())?;
    let aws = world.moto.sdk_config_as(case.user.clone()).await;
    let api = sluice_api::Api::from_config(&config, Some(sluice_edge::s3_client(&aws)))?;
    let app = sluice_api::router(Arc::new(api));
    let unicorn = json!({"name": "Iam", "rainbow": true, "color": "gold", "horn_length_cm": 20.5,
        "age_years": 7, "sighted_at": "2024-05-01T12:00:00Z", "location": {"lat": 1.0, "lon": 2.0}});
    let requests = [
        ("/unicorns", unicorn.clone()),
        ("/unicorns", unicorn.clone()),
        (
            "/unicorns/batch?partial=true",
            json!([unicorn, {"name": ""}]),
        ),
    ];
    for (path, body) in requests {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let request = axum::http::Request::post(path)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("iam-{}", path.len()))
            .body(axum::body::Body::from(body.to_string()))?;
        let response = app
            .clone()
            .oneshot(request)
            .with_subscriber(subscriber)
            .await?;
        let status = response.status();
        if status != 201 {
            let logged =
                String::from_utf8_lossy(&lines.0.lock().expect("not poisoned")).into_owned();
            anyhow::bail!("POST {path}: {status}; logged: {logged}");
        }
    }
    Ok(())
}

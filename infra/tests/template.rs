//! What cfn-lint and `sam validate --lint` let through (`rate(7 minute)`, unknown runtimes,
//! references to nothing, wildcard grants, public ingress, env var names the code never reads),
//! checked on `infra/template.yaml` itself.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;
use sluice_edge::layout::{Area, Layout};
use sluice_infra::{tagged, template};

fn text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap()
}

fn resources(t: &Value) -> &serde_yaml_ng::Mapping {
    t["Resources"].as_mapping().unwrap()
}

fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .map(|(k, r)| (k.as_str().unwrap(), r))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    match tagged(v).1 {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(xs) => xs.iter().flat_map(strings).collect(),
        _ => vec![],
    }
}

/// Every IAM statement of every function and role.
fn statements(t: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for (name, f) in of_type(t, "AWS::Serverless::Function") {
        for p in f["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for s in p["Statement"].as_sequence().into_iter().flatten() {
                out.push((name.to_owned(), s));
            }
        }
    }
    for (name, r) in of_type(t, "AWS::IAM::Role")
        .into_iter()
        .chain(of_type(t, "AWS::IAM::Policy"))
    {
        let docs = r["Properties"]["Policies"]
            .as_sequence()
            .map(|ps| ps.iter().map(|p| &p["PolicyDocument"]).collect::<Vec<_>>())
            .unwrap_or_else(|| vec![&r["Properties"]["PolicyDocument"]]);
        for d in docs {
            for s in d["Statement"].as_sequence().into_iter().flatten() {
                out.push((name.to_owned(), s));
            }
        }
    }
    out
}

#[test]
fn grants_are_least_privilege() {
    let t = template();
    let st = statements(&t);
    assert!(st.len() >= 8, "the functions' statements are found");
    for (who, s) in &st {
        assert_eq!(
            s["Effect"], "Allow",
            "{who}: only Allow statements in roles"
        );
        let actions = strings(&s["Action"]);
        for a in &actions {
            assert!(!a.contains('*'), "{who}: wildcard action {a}");
        }
        for r in resources_of(s) {
            if r == "*" {
                assert!(
                    actions.iter().all(|a| a.starts_with("ec2:Describe")),
                    "{who}: Resource \"*\" only for Describe calls, which take no resource ARNs ({actions:?})"
                );
            } else if r.contains('*') {
                let ok = [
                    "${LakeBucket.Arn}/raw/*",
                    "${LakeBucket.Arn}/state/*",
                    "${LakeBucket.Arn}/quarantine/*",
                    "${LakeBucket.Arn}/lake/*",
                    "${LakeBucket.Arn}/rejected/*",
                    "${LakeBucket.Arn}/idempotency/*",
                ]
                .contains(&r.as_str())
                    || r.ends_with(":network-interface/*")
                    || r.ends_with(":subnet/*");
                assert!(ok, "{who}: wildcard resource {r}");
            }
        }
    }
    // Exactly the grants the functions need.
    let grants = |who: &str| -> BTreeSet<(String, String)> {
        st.iter()
            .filter(|(w, _)| w == who)
            .flat_map(|(_, s)| {
                let rs = resources_of(s);
                strings(&s["Action"])
                    .into_iter()
                    .flat_map(move |a| rs.clone().into_iter().map(move |r| (a.clone(), r)))
            })
            .filter(|(a, _)| a.starts_with("s3:"))
            .collect()
    };
    // The prefix a role may list (a condition keeps the rest of the lake's keys out).
    let listing_prefix = |who: &str| -> String {
        let (_, list) = st
            .iter()
            .find(|(w, s)| w == who && strings(&s["Action"]) == ["s3:ListBucket"])
            .unwrap_or_else(|| panic!("{who} lists nothing"));
        list["Condition"]["StringLike"]["s3:prefix"]
            .as_str()
            .unwrap_or_else(|| panic!("{who} lists without a prefix condition"))
            .to_owned()
    };
    let pairs = |xs: &[(&str, &str)]| -> BTreeSet<(String, String)> {
        xs.iter()
            .map(|(a, r)| (a.to_string(), r.to_string()))
            .collect()
    };
    assert_eq!(
        grants("IngestRole"),
        pairs(&[
            ("s3:PutObject", "${LakeBucket.Arn}/raw/*"),
            ("s3:AbortMultipartUpload", "${LakeBucket.Arn}/raw/*"),
            ("s3:GetObject", "${LakeBucket.Arn}/state/*"),
            ("s3:PutObject", "${LakeBucket.Arn}/state/*"),
            ("s3:ListBucket", "GetAtt:LakeBucket.Arn"),
        ])
    );
    // Listing is for the state only (the watermarks and the sources' columns).
    assert_eq!(listing_prefix("IngestRole"), "state/*");
    assert_eq!(
        grants("LoaderRole"),
        pairs(&[
            ("s3:GetObject", "${LakeBucket.Arn}/raw/*"),
            ("s3:GetObjectVersion", "${LakeBucket.Arn}/raw/*"),
            ("s3:PutObject", "${LakeBucket.Arn}/quarantine/*"),
        ])
    );
    // The API writes its three prefixes and reads only its claims: not the lake, no listing,
    // no delete.
    assert_eq!(
        grants("ApiRole"),
        pairs(&[
            ("s3:PutObject", "${LakeBucket.Arn}/lake/*"),
            ("s3:PutObject", "${LakeBucket.Arn}/rejected/*"),
            ("s3:PutObject", "${LakeBucket.Arn}/idempotency/*"),
            ("s3:GetObject", "${LakeBucket.Arn}/idempotency/*"),
        ])
    );
    // Compaction rewrites the lake and nothing else, and lists only the lake.
    assert_eq!(
        grants("CompactRole"),
        pairs(&[
            ("s3:GetObject", "${LakeBucket.Arn}/lake/*"),
            ("s3:PutObject", "${LakeBucket.Arn}/lake/*"),
            ("s3:DeleteObject", "${LakeBucket.Arn}/lake/*"),
            ("s3:ListBucket", "GetAtt:LakeBucket.Arn"),
        ])
    );
    assert_eq!(listing_prefix("CompactRole"), "lake/*");
    // Each function runs as its own role: no SAM-generated role, so no managed policy is
    // attached behind our back (AWSLambdaBasicExecutionRole and the VPC one grant on "*").
    let mut roles = BTreeSet::new();
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        assert!(
            f["Properties"].get("Policies").is_none(),
            "{name}: policies live on its role"
        );
        let (tag, v) = tagged(&f["Properties"]["Role"]);
        assert_eq!(tag, "GetAtt", "{name}: Role is !GetAtt <role>.Arn");
        let role = v.as_str().unwrap().trim_end_matches(".Arn").to_owned();
        assert_eq!(
            resources(&t)[role.as_str()]["Type"],
            "AWS::IAM::Role",
            "{name}"
        );
        let logs = st
            .iter()
            .filter(|(w, _)| *w == role)
            .find(|(_, s)| strings(&s["Action"]).contains(&"logs:PutLogEvents".to_owned()))
            .unwrap_or_else(|| panic!("{role} can write its logs"));
        assert!(
            resources_of(logs.1)[0].ends_with("LogGroup.Arn"),
            "{role}: logs to its own group"
        );
        roles.insert(role);
    }
    assert_eq!(roles.len(), 4, "one role per function");
    let all = text();
    assert!(!all.contains("AdministratorAccess"));
    assert!(!all.contains("PowerUserAccess"));
    assert!(
        !all.contains("ManagedPolicyArns"),
        "no managed policies: every grant is spelled out"
    );
}

/// A statement's resources as text: `!Sub` bodies, `!Ref`/`!GetAtt` as `Ref:X`, `!If` branches.
fn resources_of(s: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        let (tag, inner) = tagged(v);
        match (tag.as_str(), inner) {
            ("If", Value::Sequence(xs)) => xs[1..].iter().for_each(|x| walk(x, out)),
            ("Ref" | "GetAtt", Value::String(s)) => out.push(format!("{tag}:{s}")),
            (_, Value::String(s)) => out.push(s.clone()),
            (_, Value::Sequence(xs)) => xs.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&s["Resource"], &mut out);
    out
}

#[test]
fn nothing_is_public_and_everything_is_encrypted() {
    let t = template();
    let all = text();
    assert!(
        !all.contains("0.0.0.0/0") && !all.contains("::/0"),
        "no open CIDR"
    );
    for (name, sg) in of_type(&t, "AWS::EC2::SecurityGroup") {
        for rule in sg["Properties"]["SecurityGroupIngress"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            assert!(
                rule.get("CidrIp").is_none() && rule.get("CidrIpv6").is_none(),
                "{name}: ingress by CIDR"
            );
            assert!(
                rule.get("SourceSecurityGroupId").is_some(),
                "{name}: ingress from a security group only"
            );
            assert_eq!(
                (rule["FromPort"].as_u64(), rule["ToPort"].as_u64()),
                (Some(5432), Some(5432))
            );
        }
    }
    let (_, bucket) = of_type(&t, "AWS::S3::Bucket")[0];
    let p = &bucket["Properties"];
    assert_eq!(p["VersioningConfiguration"]["Status"], "Enabled");
    let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert_eq!(
        sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    assert_eq!(sse["BucketKeyEnabled"], true);
    let block = &p["PublicAccessBlockConfiguration"];
    for k in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[k], true, "{k}");
    }
    assert_eq!(
        p["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
        "BucketOwnerEnforced"
    );
    let rules = p["LifecycleConfiguration"]["Rules"].as_sequence().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["Prefix"] == "quarantine/" && r.get("ExpirationInDays").is_some())
    );
    assert!(
        rules
            .iter()
            .any(|r| r.get("NoncurrentVersionExpiration").is_some())
    );
    // TLS only.
    let (_, policy) = of_type(&t, "AWS::S3::BucketPolicy")[0];
    let deny = &policy["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");
    // The database: private, encrypted, managed secret, backups.
    let (_, db) = of_type(&t, "AWS::RDS::DBInstance")[0];
    let p = &db["Properties"];
    assert_eq!(p["PubliclyAccessible"], false);
    assert_eq!(p["StorageEncrypted"], true);
    assert_eq!(p["ManageMasterUserPassword"], true);
    assert!(p.get("MasterUserPassword").is_none());
    assert!(p["BackupRetentionPeriod"].as_u64().unwrap() >= 1);
    let (_, q) = of_type(&t, "AWS::SQS::Queue")[0];
    assert_eq!(q["Properties"]["SqsManagedSseEnabled"], true);
}

/// `rate(1 minute)`, `rate(7 minutes)`: EventBridge wants the singular for 1 and the plural
/// otherwise; cfn-lint accepts `rate(7 minute)`.
fn valid_rate(expr: &str) -> bool {
    let Some(inner) = expr.strip_prefix("rate(").and_then(|e| e.strip_suffix(')')) else {
        return expr.starts_with("cron(") && expr.ends_with(')');
    };
    let Some((n, unit)) = inner.split_once(' ') else {
        return false;
    };
    let Ok(n) = n.parse::<u32>() else {
        return false;
    };
    match (n, unit) {
        (0, _) => false,
        (1, u) => ["minute", "hour", "day"].contains(&u),
        (_, u) => ["minutes", "hours", "days"].contains(&u),
    }
}

#[test]
fn the_schedule_is_a_valid_expression() {
    assert!(valid_rate("rate(7 minutes)") && valid_rate("rate(1 hour)"));
    assert!(
        !valid_rate("rate(7 minute)")
            && !valid_rate("rate(1 minutes)")
            && !valid_rate("rate(0 days)")
    );
    let t = template();
    let default = t["Parameters"]["ScheduleExpression"]["Default"]
        .as_str()
        .unwrap();
    assert_eq!(default, "rate(7 minutes)");
    assert!(valid_rate(default));
    let (_, ingest) = of_type(&t, "AWS::Serverless::Function")
        .into_iter()
        .find(|(n, _)| *n == "IngestFunction")
        .unwrap();
    let ev = &ingest["Properties"]["Events"]["Schedule"];
    assert!(ev["Type"].as_str().unwrap().starts_with("Schedule"));
    let (tag, v) = tagged(&ev["Properties"]["ScheduleExpression"]);
    assert_eq!(
        (tag.as_str(), v.as_str()),
        ("Ref", Some("ScheduleExpression"))
    );
}

fn function<'a>(t: &'a Value, name: &str) -> &'a Value {
    &resources(t)[name]["Properties"]
}

#[test]
fn functions_are_arm64_al2023_with_the_limits_asked() {
    let t = template();
    let g = &t["Globals"]["Function"];
    assert_eq!(g["Runtime"], "provided.al2023");
    assert_eq!(g["Architectures"][0], "arm64");
    assert_eq!(g["Handler"], "bootstrap");
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        assert!(
            f["Properties"]
                .get("Runtime")
                .is_none_or(|r| r == "provided.al2023"),
            "{name}"
        );
        // The code is cargo-lambda's output for this function's binary.
        let code = f["Properties"]["CodeUri"].as_str().unwrap();
        let bin = format!(
            "sluice-{}",
            name.trim_end_matches("Function").to_lowercase()
        );
        assert_eq!(code, format!("../target/lambda/{bin}/"), "{name}");
        assert!(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../crates"))
                .join(bin.trim_start_matches("sluice-"))
                .join("src/main.rs")
                .exists(),
            "{name}: {bin} is a binary of the workspace"
        );
        // A log group with retention of its own.
        let (tag, lg) = tagged(&f["Properties"]["LoggingConfig"]["LogGroup"]);
        assert_eq!(tag, "Ref", "{name}");
        let lg = &resources(&t)[lg.as_str().unwrap()];
        assert_eq!(lg["Type"], "AWS::Logs::LogGroup");
        assert!(lg["Properties"].get("RetentionInDays").is_some());
    }
    let ingest = function(&t, "IngestFunction");
    assert!(ingest["Timeout"].as_u64().unwrap() <= 300);
    assert_eq!(ingest["ReservedConcurrentExecutions"], 1);
    assert_eq!(t["Parameters"]["IngestMemorySize"]["Default"], 128);
    let loader = function(&t, "LoaderFunction");
    assert!(loader["Timeout"].as_u64().unwrap() <= 900);
    // The managed master secret holds only username and password: the host comes from the
    // instance the template creates.
    let vars = &loader["Environment"]["Variables"];
    for (var, att) in [
        ("DATABASE_HOST", "Database.Endpoint.Address"),
        ("DATABASE_PORT", "Database.Endpoint.Port"),
    ] {
        let (tag, branches) = tagged(&vars[var]);
        assert_eq!(tag, "If", "{var}");
        assert_eq!(branches[0], "MakeDatabase", "{var}");
        assert_eq!(
            tagged(&branches[1]),
            ("GetAtt".to_owned(), &Value::from(att)),
            "{var}"
        );
    }
    // The certificate is verified by default, against the bundle packaged beside bootstrap.
    assert_eq!(
        tagged(&vars["DATABASE_SSLMODE"]),
        ("Ref".to_owned(), &Value::from("DatabaseSslMode"))
    );
    assert_eq!(t["Parameters"]["DatabaseSslMode"]["Default"], "verify-full");
    assert_eq!(
        vars["DATABASE_CA_BUNDLE"],
        "/var/task/rds-global-bundle.pem"
    );
    // Hashed columns get a generated salt, kept across stack updates; only the loader reads it.
    assert_eq!(
        tagged(&vars["REDACT_SALT_SECRET_ARN"]),
        ("Ref".to_owned(), &Value::from("RedactSalt"))
    );
    let salt = &resources(&t)["RedactSalt"];
    assert_eq!(salt["Type"], "AWS::SecretsManager::Secret");
    assert_eq!(salt["DeletionPolicy"], "Retain");
    assert!(salt["Properties"]["GenerateSecretString"]["PasswordLength"].as_u64() >= Some(32));
    let readers: Vec<String> = statements(&t)
        .into_iter()
        .filter(|(_, s)| resources_of(s) == ["Ref:RedactSalt"])
        .map(|(who, _)| who)
        .collect();
    assert_eq!(readers, ["LoaderRole"]);
    // Bounded concurrency: a backfill cannot open more connections than a small RDS allows
    // (2 per loader; a db.t4g.micro allows about a hundred).
    let (tag, p) = tagged(&loader["ReservedConcurrentExecutions"]);
    assert_eq!(
        (tag.as_str(), p.as_str()),
        ("Ref", Some("LoaderReservedConcurrency"))
    );
    let param = &t["Parameters"]["LoaderReservedConcurrency"];
    let default = param["Default"].as_u64().unwrap();
    assert!(
        (1..=20).contains(&default),
        "2 x {default} connections by default"
    );
    assert_eq!(param["MinValue"], 1);
    let on_failure = &loader["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
    assert_eq!(on_failure["Type"], "SQS");
    assert!(
        loader["EventInvokeConfig"]
            .get("MaximumRetryAttempts")
            .is_some()
    );
    assert!(
        loader["VpcConfig"].get("SubnetIds").is_some()
            && loader["VpcConfig"].get("SecurityGroupIds").is_some()
    );
    // Alarms on both functions' errors and on the dead-letter queue.
    let alarms: Vec<String> = of_type(&t, "AWS::CloudWatch::Alarm")
        .iter()
        .map(|(_, a)| a["Properties"]["MetricName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(alarms.iter().filter(|m| *m == "Errors").count(), 3);
    assert!(alarms.contains(&"5xx".to_owned()), "the HTTP API's 5xx");
    assert!(alarms.contains(&"ApproximateNumberOfMessagesVisible".to_owned()));
    for o in [
        "BucketName",
        "IngestFunctionName",
        "LoaderFunctionName",
        "DeadLetterQueueUrl",
        "ApiFunctionName",
        "ApiUrl",
    ] {
        assert!(t["Outputs"].get(o).is_some(), "output {o}");
    }
}

#[test]
fn the_s3_trigger_matches_what_the_loader_expects() {
    let t = template();
    let loader = function(&t, "LoaderFunction");
    let defaults = sluice_loader::Config::from_lookup(|k| {
        (k == "DATABASE_URL").then(|| "postgres://u@127.0.0.1/d".to_owned())
    })
    .unwrap();
    let raw = loader["Environment"]["Variables"]["RAW_PREFIX"]
        .as_str()
        .unwrap();
    assert_eq!(
        raw,
        defaults.layout.prefix(Area::Raw),
        "the loader's prefix"
    );
    let mut suffixes = BTreeSet::new();
    for (_, ev) in loader["Events"].as_mapping().unwrap() {
        assert_eq!(ev["Type"], "S3");
        let (tag, bucket) = tagged(&ev["Properties"]["Bucket"]);
        assert_eq!((tag.as_str(), bucket.as_str()), ("Ref", Some("LakeBucket")));
        let rules = ev["Properties"]["Filter"]["S3Key"]["Rules"]
            .as_sequence()
            .unwrap();
        let rule = |n: &str| {
            rules.iter().find(|r| r["Name"] == n).unwrap()["Value"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(rule("prefix"), raw);
        suffixes.insert(rule("suffix"));
    }
    assert_eq!(
        suffixes,
        BTreeSet::from([".csv".to_owned(), ".csv.gz".to_owned()])
    );
    // The ingest writes where the loader listens.
    let ingest = function(&t, "IngestFunction");
    assert_eq!(
        ingest["Environment"]["Variables"]["RAW_PREFIX"].as_str(),
        Some(raw)
    );
    assert_eq!(
        loader["Environment"]["Variables"]["QUARANTINE_PREFIX"].as_str(),
        Some(defaults.layout.prefix(Area::Quarantine))
    );
}

#[test]
fn env_var_names_are_those_the_functions_read() {
    let t = template();
    for (name, known) in [
        ("IngestFunction", sluice_ingest::config::ENV_VARS),
        ("LoaderFunction", sluice_loader::config::ENV_VARS),
        ("ApiFunction", sluice_api::config::ENV_VARS),
        ("CompactFunction", sluice_compact::config::ENV_VARS),
    ] {
        let vars = function(&t, name)["Environment"]["Variables"]
            .as_mapping()
            .unwrap();
        assert!(!vars.is_empty());
        for (k, _) in vars {
            let k = k.as_str().unwrap();
            assert!(
                known.contains(&k),
                "{name} sets {k}, which it never reads ({known:?})"
            );
        }
    }
}

/// Every `!Ref`, `!GetAtt`, `${…}` in `!Sub` and `Condition` names something defined.
#[test]
fn every_reference_is_defined() {
    let t = template();
    let mut defined: BTreeSet<String> = BTreeSet::new();
    for section in ["Parameters", "Resources"] {
        for (k, _) in t[section].as_mapping().unwrap() {
            defined.insert(k.as_str().unwrap().to_owned());
        }
    }
    let conditions: BTreeSet<String> = t["Conditions"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let mut refs = Vec::new();
    fn walk(v: &Value, refs: &mut Vec<(String, String)>) {
        match v {
            Value::Tagged(tv) => {
                let tag = tv.tag.to_string().trim_start_matches('!').to_owned();
                match (tag.as_str(), &tv.value) {
                    ("Ref", Value::String(s)) => refs.push(("Ref".into(), s.clone())),
                    ("GetAtt", Value::String(s)) => {
                        refs.push(("GetAtt".into(), s.split('.').next().unwrap().to_owned()))
                    }
                    ("Sub", Value::String(s)) => {
                        for part in s.split("${").skip(1) {
                            let name = part.split('}').next().unwrap();
                            if name.starts_with('!') {
                                continue; // `${!dt}`: a literal `${dt}`, no reference
                            }
                            refs.push(("Sub".into(), name.split('.').next().unwrap().to_owned()));
                        }
                    }
                    ("If", Value::Sequence(xs)) => {
                        refs.push(("If".into(), xs[0].as_str().unwrap().to_owned()));
                        xs[1..].iter().for_each(|x| walk(x, refs));
                    }
                    (_, inner) => walk(inner, refs),
                }
            }
            Value::Mapping(m) => {
                for (k, v) in m {
                    if k == "Condition"
                        && let Some(c) = v.as_str()
                    {
                        refs.push(("If".into(), c.to_owned()));
                    }
                    walk(v, refs);
                }
            }
            Value::Sequence(xs) => xs.iter().for_each(|x| walk(x, refs)),
            _ => {}
        }
    }
    walk(&t["Resources"], &mut refs);
    walk(&t["Outputs"], &mut refs);
    assert!(refs.len() > 20);
    for (kind, name) in refs {
        match kind.as_str() {
            "If" => assert!(
                conditions.contains(&name),
                "condition {name} is not defined"
            ),
            _ => assert!(
                defined.contains(&name) || name.starts_with("AWS::"),
                "{kind} {name} names nothing defined"
            ),
        }
    }
}

/// The API function's `HttpApi` events as `METHOD /path`.
fn http_routes(t: &Value) -> BTreeSet<String> {
    let events = function(t, "ApiFunction")["Events"].as_mapping().unwrap();
    events
        .values()
        .map(|e| {
            assert_eq!(e["Type"], "HttpApi");
            let p = &e["Properties"];
            assert_eq!(
                tagged(&p["ApiId"]),
                ("Ref".to_owned(), &Value::from("HttpApi")),
                "every route is on the template's HTTP API"
            );
            format!(
                "{} {}",
                p["Method"].as_str().unwrap(),
                p["Path"].as_str().unwrap()
            )
        })
        .collect()
}

/// The HTTP API routes exactly what the router serves: every route reaches a handler (no 404 or
/// 405 from the router), every documented operation and every docs asset has a route, and
/// nothing else reaches the function.
#[tokio::test]
async fn the_http_api_routes_what_the_router_serves() {
    use tower::ServiceExt;
    let t = template();
    let routes = http_routes(&t);
    let datasets =
        sluice_api::Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets")).unwrap();
    let app = sluice_api::router(std::sync::Arc::new(sluice_api::Api {
        datasets: datasets.clone(),
        store: None,
        settings: sluice_api::Settings::default(),
    }));
    let call = |method: &str, path: String| {
        let app = app.clone();
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        async move { app.oneshot(request).await.unwrap() }
    };
    for route in &routes {
        let (method, path) = route.split_once(' ').unwrap();
        let concrete = path
            .replace("{dataset}", "unicorns")
            .replace("{asset}", "swagger-ui.css");
        let status = call(method, concrete).await.status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{route} reaches a handler ({status})"
        );
    }
    // Every operation of the OpenAPI document is routed.
    let doc = sluice_api::openapi::document(&datasets, sluice_api::openapi::Version::V3_1);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let mut generic = path.clone();
        for name in datasets.names() {
            if let Some(rest) = path.strip_prefix(&format!("/{name}")) {
                generic = format!("/{{dataset}}{rest}");
            }
        }
        for method in ops.as_object().unwrap().keys() {
            let route = format!("{} {generic}", method.to_uppercase());
            assert!(routes.contains(&route), "{route} is routed");
        }
    }
    // The documents, the docs page and each asset it loads.
    for route in [
        "GET /",
        "GET /openapi.json",
        "GET /openapi-3.0.json",
        "GET /docs",
    ] {
        assert!(routes.contains(route), "{route} is routed");
    }
    let page = call("GET", "/docs".into()).await;
    let html = axum::body::to_bytes(page.into_body(), 1 << 20)
        .await
        .unwrap();
    let html = String::from_utf8(html.to_vec()).unwrap();
    let assets: Vec<&str> = html
        .split(['"', '?'])
        .filter(|s| s.starts_with("docs/"))
        .collect();
    assert!(assets.len() >= 3, "{html}");
    for a in assets {
        assert!(
            a.matches('/').count() == 1 && routes.contains("GET /docs/{asset}"),
            "{a} is routed"
        );
        let status = call("GET", format!("/{a}")).await.status();
        assert_eq!(status, 200, "{a}");
    }
    // Nothing else: the routes are these, and no catch-all.
    assert!(
        !routes
            .iter()
            .any(|r| r.contains("proxy+") || r.contains("$default") || r.starts_with("ANY"))
    );
    assert_eq!(routes.len(), 9, "{routes:?}");
}

/// The HTTP API is throttled and access-logged (without PII) to a log group with retention; the
/// function answers within API Gateway's 30 s and its 422s quote no input.
#[test]
fn the_http_api_is_throttled_and_logged_and_the_function_fits_it() {
    let t = template();
    let api = &resources(&t)["HttpApi"];
    assert_eq!(api["Type"], "AWS::Serverless::HttpApi");
    let p = &api["Properties"];
    for (setting, param) in [
        ("ThrottlingRateLimit", "ApiThrottleRateLimit"),
        ("ThrottlingBurstLimit", "ApiThrottleBurstLimit"),
    ] {
        assert_eq!(
            tagged(&p["DefaultRouteSettings"][setting]),
            ("Ref".to_owned(), &Value::from(param)),
            "{setting}"
        );
        assert!(t["Parameters"][param]["Default"].as_u64().unwrap() >= 1);
        assert_eq!(
            t["Parameters"][param]["MinValue"], 1,
            "{param}: 0 would close the API"
        );
    }
    let rate = t["Parameters"]["ApiThrottleRateLimit"]["Default"].as_u64();
    assert!(t["Parameters"]["ApiThrottleBurstLimit"]["Default"].as_u64() >= rate);

    let logs = &p["AccessLogSettings"];
    let (tag, dest) = tagged(&logs["DestinationArn"]);
    assert_eq!(
        (tag.as_str(), dest.as_str()),
        ("GetAtt", Some("ApiAccessLogGroup.Arn"))
    );
    let group = &resources(&t)["ApiAccessLogGroup"];
    assert_eq!(group["Type"], "AWS::Logs::LogGroup");
    assert!(group["Properties"].get("RetentionInDays").is_some());
    let format: serde_json::Value =
        serde_json::from_str(logs["Format"].as_str().unwrap()).expect("a JSON log format");
    let format = format.to_string();
    for needed in ["$context.requestId", "$context.status", "$context.routeKey"] {
        assert!(format.contains(needed), "access logs have {needed}");
    }
    for pii in ["sourceIp", "userAgent", "identity", "authorizer"] {
        assert!(!format.contains(pii), "access logs leave out {pii}");
    }

    let f = function(&t, "ApiFunction");
    assert!(
        f["Timeout"].as_u64().unwrap() < 30,
        "under API Gateway's 30 s"
    );
    let vars = &f["Environment"]["Variables"];
    assert_eq!(vars["API_ERROR_INPUT"], "omit");
    // The function writes where the layout says, and its grants (the role test) name the same.
    let layout = Layout::default();
    for area in sluice_api::config::AREAS {
        assert_eq!(vars[area.variable()], layout.prefix(area), "{area:?}");
    }
    // Claims expire: a lifecycle rule on exactly the prefix the function claims under.
    let rules = &resources(&t)["LakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"];
    let expiry = rules
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["Prefix"] == layout.prefix(Area::Idempotency))
        .expect("a lifecycle rule expires the claims");
    assert_eq!(
        tagged(&expiry["ExpirationInDays"]),
        ("Ref".to_owned(), &Value::from("IdempotencyDays"))
    );
    assert_eq!(vars["DATASETS"], "/var/task/datasets");
    let makefile =
        std::fs::read_to_string(sluice_testkit::workspace_root().join("Makefile")).unwrap();
    for f in ["sluice-api", "sluice-compact"] {
        assert!(
            makefile.contains(&format!("cp -r datasets target/lambda/{f}/datasets")),
            "make deploy packages the datasets where {f}'s DATASETS points"
        );
    }
    assert_eq!(
        function(&t, "CompactFunction")["Environment"]["Variables"]["DATASETS"],
        "/var/task/datasets"
    );
    let build =
        std::fs::read_to_string(sluice_testkit::workspace_root().join("scripts/build-lambda"))
            .unwrap();
    assert!(
        makefile.contains("\tscripts/build-lambda\n") && build.contains(" sluice-api "),
        "make deploy builds the API (scripts/build-lambda, each function on its own)"
    );
}

/// The lake's Glue tables, generated from the dataset files: each dataset under `datasets/` has
/// its table with exactly the columns, partition, projection and location that
/// `sluice athena ddl` prints, and no table is left without a dataset.
#[test]
fn the_glue_tables_are_the_datasets() {
    let t = template();
    let datasets =
        sluice_api::Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets")).unwrap();
    let tables: Vec<_> = of_type(&t, "AWS::Glue::Table")
        .into_iter()
        .filter(|(_, r)| r["Properties"]["TableInput"]["TableType"] == "EXTERNAL_TABLE")
        .collect();
    let lake = format!(
        "s3://${{LakeBucket}}/{}",
        Layout::default().prefix(Area::Lake)
    );
    let sub = |v: &Value| {
        let (tag, inner) = tagged(v);
        assert_eq!(tag, "Sub", "{v:?}");
        inner.as_str().unwrap().replace("${!", "${")
    };
    let mut seen = BTreeSet::new();
    for d in datasets.iter() {
        let want = sluice_api::catalog::Table::new(d, &lake).unwrap();
        let (id, table) = tables
            .iter()
            .find(|(_, r)| r["Properties"]["TableInput"]["Name"].as_str() == Some(&want.name))
            .unwrap_or_else(|| panic!("no Glue table for dataset {}", d.name));
        seen.insert(*id);
        let p = &table["Properties"];
        assert_eq!(
            tagged(&p["DatabaseName"]),
            ("Ref".into(), &Value::from("LakeDatabase"))
        );
        let input = &p["TableInput"];
        assert_eq!(input["TableType"], "EXTERNAL_TABLE");
        assert_eq!(input["Description"].as_str(), want.description.as_deref());
        let sd = &input["StorageDescriptor"];
        let columns: Vec<(String, String)> = sd["Columns"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| (strings(&c["Name"]).concat(), strings(&c["Type"]).concat()))
            .collect();
        let expected: Vec<(String, String)> = want
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.hive_type.clone()))
            .collect();
        assert_eq!(columns, expected, "{id}: the columns of {}", d.name);
        assert_eq!(sub(&sd["Location"]), want.location, "{id}");
        assert_eq!(
            sd["SerdeInfo"]["SerializationLibrary"],
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
        );
        assert_eq!(
            sd["InputFormat"],
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
        );
        let keys = input["PartitionKeys"].as_sequence().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            (&keys[0]["Name"], &keys[0]["Type"]),
            (
                &Value::from(sluice_api::catalog::PARTITION),
                &Value::from("string")
            )
        );
        let params = input["Parameters"].as_mapping().unwrap();
        assert_eq!(
            params.len(),
            want.properties().len(),
            "{id}: its parameters"
        );
        for (k, v) in want.properties() {
            let got = &params[k.as_str()];
            let got = match tagged(got).0.as_str() {
                "Sub" => sub(got),
                _ => got.as_str().unwrap().to_owned(),
            };
            assert_eq!(got, v, "{id}: {k}");
        }
    }
    assert_eq!(seen.len(), tables.len(), "a Glue table with no dataset");
}

#[test]
fn each_dataset_has_its_view_over_its_table() {
    let t = template();
    let datasets =
        sluice_api::Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets")).unwrap();
    let views: Vec<_> = of_type(&t, "AWS::Glue::Table")
        .into_iter()
        .filter(|(_, r)| r["Properties"]["TableInput"]["TableType"] == "VIRTUAL_VIEW")
        .collect();
    assert_eq!(views.len(), datasets.iter().count(), "a view per dataset");
    for d in datasets.iter() {
        let want = sluice_api::catalog::Table::new(d, "s3://b/lake/").unwrap();
        let (id, view) = views
            .iter()
            .find(|(_, r)| r["Properties"]["TableInput"]["Name"].as_str() == Some(&want.view))
            .unwrap_or_else(|| panic!("no Glue view for dataset {}", d.name));
        let input = &view["Properties"]["TableInput"];
        assert_eq!(
            tagged(&view["Properties"]["DatabaseName"]),
            ("Ref".into(), &Value::from("LakeDatabase"))
        );
        assert_eq!(input["Parameters"]["presto_view"], "true", "{id}");
        assert_eq!(input["ViewExpandedText"], "/* Presto View */", "{id}");
        assert_eq!(input["Description"].as_str(), want.description.as_deref());
        // !Join ["", ["/* Presto View: ", {Fn::Base64: !Sub <json>}, " */"]]
        let (tag, join) = tagged(&input["ViewOriginalText"]);
        assert_eq!(tag, "Join", "{id}");
        let parts = join[1].as_sequence().unwrap();
        assert_eq!(
            (&parts[0], &parts[2]),
            (&Value::from("/* Presto View: "), &Value::from(" */"))
        );
        let (tag, json) = tagged(&parts[1]["Fn::Base64"]);
        assert_eq!(tag, "Sub", "{id}");
        let json = json
            .as_str()
            .unwrap()
            .replace("${LakeDatabaseName}", "sluice");
        let got: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(got, want.glue_view("sluice"), "{id}: the view's definition");
        // Glue's own column list, for tools that read it rather than the definition.
        let columns: Vec<(String, String)> = input["StorageDescriptor"]["Columns"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| (strings(&c["Name"]).concat(), strings(&c["Type"]).concat()))
            .collect();
        let expected: Vec<(String, String)> = want
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.hive_type.clone()))
            .chain([(
                sluice_api::catalog::PARTITION.to_owned(),
                "string".to_owned(),
            )])
            .collect();
        assert_eq!(columns, expected, "{id}: the view's columns");
    }
}

/// Queries run in the stack's workgroup: results encrypted in their own bucket, a bytes-scanned
/// cap, the workgroup's settings enforced over a client's.
#[test]
fn the_workgroup_caps_and_encrypts_queries() {
    let t = template();
    let wg = &resources(&t)["WorkGroup"]["Properties"]["WorkGroupConfiguration"];
    assert_eq!(wg["EnforceWorkGroupConfiguration"], true);
    assert_eq!(
        tagged(&wg["BytesScannedCutoffPerQuery"]),
        ("Ref".into(), &Value::from("AthenaBytesScannedCutoff"))
    );
    let results = &wg["ResultConfiguration"];
    assert_eq!(
        results["EncryptionConfiguration"]["EncryptionOption"],
        "SSE_S3"
    );
    let (tag, location) = tagged(&results["OutputLocation"]);
    assert_eq!(
        (tag.as_str(), location.as_str()),
        ("Sub", Some("s3://${QueryResultsBucket}/"))
    );
    let bucket = &resources(&t)["QueryResultsBucket"]["Properties"];
    assert!(
        bucket["LifecycleConfiguration"]["Rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|r| r.get("ExpirationInDays").is_some()),
        "query results expire"
    );
    assert_eq!(
        bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"],
        true
    );
}

/// The query policy reaches the workgroup, the lake's database and the readable prefixes, and
/// writes only query results: it cannot change the lake.
#[test]
fn the_query_policy_is_scoped_to_the_workgroup_database_and_prefixes() {
    let t = template();
    let doc = &resources(&t)["AthenaQueryPolicy"]["Properties"]["PolicyDocument"];
    let layout = Layout::default();
    for s in doc["Statement"].as_sequence().unwrap() {
        let sid = s["Sid"].as_str().unwrap();
        let actions = strings(&s["Action"]);
        let targets = resources_of(s);
        assert!(
            !targets.iter().any(|r| r == "*"),
            "{sid}: no wildcard resource"
        );
        for a in &actions {
            let service = a.split(':').next().unwrap();
            let scoped = targets.iter().all(|r| match service {
                "athena" => r.ends_with(":workgroup/${WorkGroup}"),
                "glue" => {
                    r.ends_with(":catalog")
                        || r.ends_with(":database/${LakeDatabase}")
                        || r.ends_with(":table/${LakeDatabase}/*")
                }
                _ => r.contains("QueryResultsBucket") || r.contains("LakeBucket"),
            });
            assert!(scoped, "{sid}: {a} on {targets:?}");
            if a.starts_with("s3:Put") || a.starts_with("s3:Delete") {
                assert!(
                    targets.iter().all(|r| r.contains("QueryResultsBucket")),
                    "{sid}: {a} only on query results"
                );
            }
        }
        if actions.iter().any(|a| a == "s3:GetObject")
            && targets.iter().any(|r| r.contains("LakeBucket"))
        {
            let readable: BTreeSet<String> = targets.iter().cloned().collect();
            let expected: BTreeSet<String> = [Area::Lake, Area::Raw]
                .iter()
                .map(|a| format!("${{LakeBucket.Arn}}/{}*", layout.prefix(*a)))
                .collect();
            assert_eq!(
                readable, expected,
                "{sid}: reads the lake and the raw CSV only"
            );
        }
    }
}

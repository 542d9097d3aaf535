//! moto's server, for the AWS APIs tests cannot run for real (Secrets Manager, IAM enforcement):
//! one shared per test process, or one of a test's own; started by `scripts/moto-server` (a
//! pinned venv under `target/`), stopped when the process exits.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let moto = sluice_testkit::moto()?;
//! let aws = moto.sdk_config().await;
//! assert_eq!(aws.endpoint_url(), Some(moto.url.as_str())); // e.g. aws_sdk_secretsmanager::Client::new(&aws)
//! # Ok(()) }
//! ```

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use aws_sdk_s3::config::{Credentials, Region};

use crate::workspace_root;

/// A running moto server.
#[derive(Debug, Clone)]
pub struct Moto {
    /// `http://127.0.0.1:<port>`
    pub url: String,
}

impl Moto {
    /// An AWS configuration for every service, on this server (region us-east-1, test keys).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .endpoint_url(&self.url)
            .load()
            .await
    }

    /// A server of the caller's own, not the process's shared one: IAM enforcement
    /// ([`Moto::enforce_iam`]) is server-wide.
    pub fn start_own() -> Result<Moto> {
        start()
    }

    /// An AWS configuration for every service on this server, acting as `credentials`.
    pub async fn sdk_config_as(&self, credentials: Credentials) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(&self.url)
            .load()
            .await
    }

    /// Creates IAM user `name` whose only permissions are `policy` (one inline policy), and an
    /// access key for it. The calls are not signed, so make every user before
    /// [`Moto::enforce_iam`].
    ///
    /// ```no_run
    /// # async fn demo() -> anyhow::Result<()> {
    /// let moto = sluice_testkit::Moto::start_own()?;
    /// let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
    ///     {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/raw/*"}]});
    /// let reader = moto.user_with_policy("reader", &policy).await?;
    /// moto.enforce_iam().await?;
    /// let aws = moto.sdk_config_as(reader).await; // may get raw/ objects of bucket b, nothing else
    /// # Ok(()) }
    /// ```
    pub async fn user_with_policy(
        &self,
        name: &str,
        policy: &serde_json::Value,
    ) -> Result<Credentials> {
        let policy = policy.to_string();
        self.iam(&[("Action", "CreateUser"), ("UserName", name)])
            .await?;
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "template"),
            ("PolicyDocument", &policy),
        ])
        .await?;
        let xml = self
            .iam(&[("Action", "CreateAccessKey"), ("UserName", name)])
            .await?;
        let field = |tag: &str| -> Result<String> {
            let open = format!("<{tag}>");
            let start = xml.find(&open).map(|i| i + open.len());
            let end = xml.find(&format!("</{tag}>"));
            match (start, end) {
                (Some(s), Some(e)) if s <= e => Ok(xml[s..e].to_owned()),
                _ => bail!("CreateAccessKey for {name}: no {tag} in {xml}"),
            }
        };
        Ok(Credentials::new(
            field("AccessKeyId")?,
            field("SecretAccessKey")?,
            None,
            None,
            "moto-iam-user",
        ))
    }

    /// From now on every request to this server must be signed by a user whose policies allow
    /// it, resource by resource for S3 (moto checks other services' actions against `*`).
    pub async fn enforce_iam(&self) -> Result<()> {
        let r = reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", self.url))
            .body("0")
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("moto reset-auth: {}", r.status());
        }
        Ok(())
    }

    /// Queues Athena results: moto runs no SQL, and hands each `GetQueryResults` of a new query
    /// the next of these (`{"rows": [...], "column_info": [...]}`, Athena's shapes; put the
    /// header row first, as Athena does for a `SELECT`).
    pub async fn seed_athena_results(&self, results: &[serde_json::Value]) -> Result<()> {
        let r = reqwest::Client::new()
            .post(format!("{}/moto-api/static/athena/query-results", self.url))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "results": results }).to_string())
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            bail!("moto athena query-results: {}", r.status());
        }
        Ok(())
    }

    /// One IAM query-protocol call, unsigned (moto checks nothing before enforcement).
    async fn iam(&self, params: &[(&str, &str)]) -> Result<String> {
        let r = reqwest::Client::new()
            .post(&self.url)
            .query(&[("Version", "2010-05-08")])
            .query(params)
            .header("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0")
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("IAM {params:?}: {status}: {body}");
        }
        Ok(body)
    }
}

static MOTO: OnceLock<std::result::Result<Moto, String>> = OnceLock::new();

/// This process's moto server, started on first use (installing the venv the first time).
pub fn moto() -> Result<Moto> {
    MOTO.get_or_init(|| start().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn start() -> Result<Moto> {
    Ok(Moto {
        url: script_server("scripts/moto-server")?,
    })
}

/// Starts `script` (`scripts/moto-server`, `scripts/fastapi-oracle`: a server from a pinned venv
/// under `target/`, given a port and this process's id, which it stops with) on a free port;
/// returns its URL once it listens. The first start may install the venv (about a minute).
///
/// ```no_run
/// let url = sluice_testkit::script_server("scripts/fastapi-oracle").unwrap();
/// assert!(url.starts_with("http://127.0.0.1:"));
/// ```
pub fn script_server(script: &str) -> Result<String> {
    let port = private_port()?;
    Command::new("bash")
        .arg(workspace_root().join(script))
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !answers_http(port) {
        if Instant::now() > deadline {
            bail!("{script} did not start on port {port} (run {script} {port} to see why)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(format!("http://127.0.0.1:{port}"))
}

/// Whether an HTTP server answers on `port`: a request gets a status line back. A bare connect
/// is not enough: right after a run that made the venv, the connect succeeded and the first
/// request was then refused (seen with the FastAPI oracle), so readiness is an answer.
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let probe = || -> std::io::Result<bool> {
        let mut conn = TcpStream::connect(("127.0.0.1", port))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut head = [0u8; 5];
        conn.read_exact(&mut head)?;
        Ok(&head == b"HTTP/")
    };
    probe().unwrap_or(false)
}

/// A free port outside the kernel's ephemeral range, for a server in another process.
///
/// A port found by binding `:0` and letting go is in the ephemeral range, where this process's
/// own listeners (`bind(":0")` in tests running alongside) are allocated too: one could take it
/// before the script's server does, and the readiness probe would then reach that listener.
/// Below the range, only another script server can take it, and each tries a random start.
fn private_port() -> Result<u16> {
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low: u16 = range
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(32768);
    let (first, last) = if low > 12000 {
        (10000, low - 1)
    } else {
        (61000, 65000)
    };
    let span = u64::from(last - first);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64)
        ^ (u64::from(std::process::id()) << 16);
    for i in 0..200 {
        let port = first
            + ((seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(i * 7919))
                % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in {first}..{last}")
}

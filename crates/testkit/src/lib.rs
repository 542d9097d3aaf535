//! Real services for tests and the demo, shared by every crate's integration tests.
//!
//! - **Postgres**: `DATABASE_URL` if set; else a server on 127.0.0.1:5432 if one answers; else the
//!   throwaway cluster that `scripts/pg-cluster` started (it records its URL under `target/`),
//!   starting one if needed. Each test gets its own database, dropped when the handle drops.
//! - **S3**: `S3_ENDPOINT_URL` if set; else an in-process `s3s-fs` endpoint on 127.0.0.1 (one per
//!   test process, real SigV4 auth), used through the real `aws-sdk-s3` client. Each test gets
//!   its own bucket.
//! - **A cluster of a test's own** ([`Cluster`]) with password logins or TLS, and **moto's server**
//!   ([`moto`]) for AWS APIs that cannot run here.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let db = sluice_testkit::database().await?;
//! sqlx::query("CREATE TABLE t (id int PRIMARY KEY)").execute(&db.pool).await?;
//! let bucket = sluice_testkit::bucket().await?;
//! bucket.client.put_object().bucket(&bucket.name).key("k").body(b"x".to_vec().into()).send().await?;
//! # Ok(()) }
//! ```

mod cluster;
mod moto;
pub mod notify;

pub use cluster::{Cluster, ClusterOptions};
pub use moto::{Moto, moto, script_server};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_s3::config::{Credentials, Region};
use sluice_transform::quote_ident;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Access key the in-process S3 endpoint accepts.
pub const S3_ACCESS_KEY: &str = "sluice-test";
/// Secret key the in-process S3 endpoint accepts.
pub const S3_SECRET_KEY: &str = "sluice-test-secret";
/// Credentials of the in-process endpoint that act as a role without `s3:ListBucket` except on
/// `state/` (the ingest's role in the template): a GET of a missing key is 403, as on AWS.
pub const S3_NO_LIST_ACCESS_KEY: &str = "sluice-test-nolist";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process and call, usable as a database or bucket name.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// The workspace root (this crate lives at `crates/testkit`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

// ---------------------------------------------------------------- Postgres

/// A database of its own for one test; dropped (with FORCE) when this handle drops.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside or outside a runtime: use one of its own.
        on_own_runtime(async move {
            if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                let sql = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                );
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
            }
        });
    }
}

/// Runs `work` to completion on a current-thread runtime in a thread of its own, so it can be
/// called from sync code and from inside another runtime alike. `None` if that runtime failed.
fn on_own_runtime<F>(work: F) -> Option<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        Some(rt.block_on(work))
    })
    .join()
    .ok()
    .flatten()
}

static ADMIN_URL: OnceLock<std::result::Result<String, String>> = OnceLock::new();

/// The URL of a Postgres server the tests may create databases on.
pub fn admin_url() -> Result<String> {
    ADMIN_URL
        .get_or_init(|| find_postgres().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn find_postgres() -> Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        return Ok(url);
    }
    let local = "postgres://postgres@127.0.0.1:5432/postgres";
    if answers(local) {
        return Ok(local.to_owned());
    }
    let env_file = target_dir().join("sluice-services/pg.env");
    if let Some(url) = read_env_url(&env_file)
        && answers(&url)
    {
        return Ok(url);
    }
    let script = workspace_root().join("scripts/pg-cluster");
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .env("SLUICE_SERVICES_DIR", target_dir().join("sluice-services"))
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "no Postgres: DATABASE_URL is unset, nothing answers on 127.0.0.1:5432, and starting a \
             throwaway cluster failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    read_env_url(&env_file).ok_or_else(|| anyhow!("{} did not record a URL", script.display()))
}

fn read_env_url(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("DATABASE_URL="))
        .map(str::to_owned)
}

/// True if a trust-auth connection to `url` succeeds within a few seconds.
fn answers(url: &str) -> bool {
    let Ok(opts) = url.parse::<PgConnectOptions>() else {
        return false;
    };
    on_own_runtime(async move {
        matches!(
            tokio::time::timeout(Duration::from_secs(3), opts.connect()).await,
            Ok(Ok(_))
        )
    })
    .unwrap_or(false)
}

/// A fresh, empty database for one test.
pub async fn database() -> Result<TestDb> {
    let admin_url = admin_url()?;
    let name = unique_name("sluice_t").replace('-', "_");
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .with_context(|| format!("connecting to {}", redact_url(&admin_url)))?;
    let sql = format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'",
        quote_ident(&name)
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let opts: PgConnectOptions = admin_url.parse()?;
    let opts = opts.database(&name);
    let url = opts.to_url_lossy().to_string();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await?;
    Ok(TestDb {
        name,
        url,
        pool,
        admin_url,
    })
}

/// `postgres://user:***@host/db`: a URL safe to print.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

// ---------------------------------------------------------------- S3

/// An S3 endpoint: its URL and credentials.
#[derive(Debug, Clone)]
pub struct S3Endpoint {
    pub url: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Endpoint {
    /// A real `aws-sdk-s3` client for this endpoint (path-style addressing).
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_as(&self.access_key, &self.secret_key)
    }

    /// A client acting as a role that may list `state/` only (see [`S3_NO_LIST_ACCESS_KEY`]);
    /// `None` when the endpoint is not the in-process one, which alone emulates it.
    pub fn client_without_list(&self) -> Option<aws_sdk_s3::Client> {
        (self.access_key == S3_ACCESS_KEY)
            .then(|| self.client_as(S3_NO_LIST_ACCESS_KEY, S3_SECRET_KEY))
    }

    /// An SDK configuration with this endpoint's credentials and region (not its URL: the
    /// caller points the S3 client, or `sluice query`, at [`S3Endpoint::url`]).
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        let creds = Credentials::new(
            &self.access_key,
            &self.secret_key,
            None,
            None,
            "sluice-testkit",
        );
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(creds))
            .build()
    }

    fn client_as(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        let creds = Credentials::new(access_key, secret_key, None, None, "sluice-testkit");
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .force_path_style(true)
            .credentials_provider(creds)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

static S3: OnceLock<std::result::Result<S3Endpoint, String>> = OnceLock::new();

/// The S3 endpoint for this process: `S3_ENDPOINT_URL` or an in-process `s3s-fs` server.
pub fn s3_endpoint() -> Result<S3Endpoint> {
    S3.get_or_init(|| {
        if let Ok(url) = std::env::var("S3_ENDPOINT_URL")
            && !url.is_empty()
        {
            return Ok(S3Endpoint {
                url,
                access_key: std::env::var("AWS_ACCESS_KEY_ID")
                    .unwrap_or_else(|_| S3_ACCESS_KEY.into()),
                secret_key: std::env::var("AWS_SECRET_ACCESS_KEY")
                    .unwrap_or_else(|_| S3_SECRET_KEY.into()),
            });
        }
        // One directory per test process under target/; those of processes that have ended
        // are removed here, so test data does not pile up.
        let parent = target_dir().join("sluice-services").join("s3");
        remove_stale_roots(&parent);
        let root = parent.join(unique_name("sluice-s3"));
        serve_s3_in_background(root, "127.0.0.1:0".parse().expect("literal address"))
            .map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Removes `sluice-s3-<pid>-…` directories whose process no longer runs (Linux `/proc`).
fn remove_stale_roots(parent: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("sluice-s3-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Serves `root` as an S3 endpoint on `addr` from a dedicated thread; returns once it listens.
pub fn serve_s3_in_background(root: PathBuf, addr: SocketAddr) -> Result<S3Endpoint> {
    std::fs::create_dir_all(&root)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("s3s-fs".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow!(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(listener) => {
                        let local = listener.local_addr();
                        let _ = tx.send(local.map_err(Into::into));
                        if let Err(e) = serve_s3(root, listener).await {
                            eprintln!("s3s-fs endpoint stopped: {e:#}");
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(anyhow!(e).context(format!("binding {addr}"))));
                    }
                }
            });
        })?;
    let local = rx.recv().context("S3 endpoint thread died")??;
    Ok(S3Endpoint {
        url: format!("http://{local}"),
        access_key: S3_ACCESS_KEY.into(),
        secret_key: S3_SECRET_KEY.into(),
    })
}

/// Where `s3s-fs` is more lenient than S3, answers as S3 does.
/// - Its buckets have no versioning, yet it ignores a `versionId` and serves the current bytes;
///   S3 refuses a version id on such a bucket (400 InvalidArgument).
/// - Under [`S3_NO_LIST_ACCESS_KEY`], a GET of a missing key is 403 AccessDenied, not 404 (S3
///   without `s3:ListBucket`), and only listings under `state/` are allowed.
#[derive(Debug, Clone)]
struct AwsLike {
    root: PathBuf,
}

fn without_list(req: &s3s::S3Request<impl Send>) -> bool {
    req.credentials
        .as_ref()
        .is_some_and(|c| c.access_key == S3_NO_LIST_ACCESS_KEY)
}

#[async_trait::async_trait]
impl s3s::access::S3Access for AwsLike {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        match cx.credentials() {
            Some(_) => Ok(()),
            None => Err(s3s::s3_error!(AccessDenied, "Signature is required")),
        }
    }

    async fn get_object(
        &self,
        req: &mut s3s::S3Request<s3s::dto::GetObjectInput>,
    ) -> s3s::S3Result<()> {
        if !matches!(req.input.version_id.as_deref(), None | Some("null")) {
            return Err(s3s::s3_error!(
                InvalidArgument,
                "Invalid version id specified"
            ));
        }
        let path = self.root.join(&req.input.bucket).join(&req.input.key);
        if without_list(req) && !path.is_file() {
            return Err(s3s::s3_error!(AccessDenied, "Access Denied"));
        }
        Ok(())
    }

    async fn list_objects_v2(
        &self,
        req: &mut s3s::S3Request<s3s::dto::ListObjectsV2Input>,
    ) -> s3s::S3Result<()> {
        let prefix = req.input.prefix.as_deref().unwrap_or_default();
        if without_list(req) && !prefix.starts_with("state/") {
            return Err(s3s::s3_error!(AccessDenied, "Access Denied"));
        }
        Ok(())
    }
}

/// Serves `root` as an S3 endpoint on an already bound listener, until the task is dropped.
pub async fn serve_s3(root: PathBuf, listener: tokio::net::TcpListener) -> Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;

    let fs = s3s_fs::FileSystem::new(&root).map_err(|e| anyhow!("{e:?}"))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    let mut auth = s3s::auth::SimpleAuth::from_single(S3_ACCESS_KEY, S3_SECRET_KEY);
    auth.register(S3_NO_LIST_ACCESS_KEY.into(), S3_SECRET_KEY.into());
    builder.set_auth(auth);
    builder.set_access(AwsLike { root });
    let service = builder.build();
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => continue,
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _ = ConnBuilder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// A bucket of its own for one test, on [`s3_endpoint`].
#[derive(Debug, Clone)]
pub struct TestBucket {
    pub name: String,
    pub client: aws_sdk_s3::Client,
    pub endpoint: S3Endpoint,
}

impl TestBucket {
    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let out = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .with_context(|| format!("GET s3://{}/{key}", self.name))?;
        Ok(out.body.collect().await?.into_bytes().to_vec())
    }

    /// Writes a whole object.
    pub async fn put(&self, key: &str, body: impl Into<Vec<u8>>) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(body.into().into())
            .send()
            .await
            .with_context(|| format!("PUT s3://{}/{key}", self.name))?;
        Ok(())
    }

    /// Keys under `prefix`, sorted.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for o in page?.contents() {
                if let Some(k) = o.key() {
                    keys.push(k.to_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// A fresh, empty bucket for one test.
pub async fn bucket() -> Result<TestBucket> {
    let endpoint = s3_endpoint()?;
    let client = endpoint.client();
    let name = unique_name("t").to_ascii_lowercase();
    client
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .with_context(|| format!("creating bucket {name} on {}", endpoint.url))?;
    Ok(TestBucket {
        name,
        client,
        endpoint,
    })
}

// ---------------------------------------------------------------- fault injection

/// A TCP proxy in front of a real server that can hold a response mid-stream: requests pass
/// through untouched; once a connection has relayed `after_bytes` bytes of response while the
/// gate is closed, that connection stalls until [`GateProxy::open`]. Used to freeze a loader in
/// the middle of a transfer (and so in the middle of its `COPY`) at a known point.
#[derive(Debug, Clone)]
pub struct GateProxy {
    pub addr: SocketAddr,
    gate: tokio::sync::watch::Sender<bool>,
    held: std::sync::Arc<tokio::sync::Notify>,
}

impl GateProxy {
    /// Starts a proxy to `upstream` (`host:port`), gate closed.
    pub async fn start(upstream: SocketAddr, after_bytes: u64) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (gate, rx) = tokio::sync::watch::channel(false);
        let held = std::sync::Arc::new(tokio::sync::Notify::new());
        let held2 = held.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rx = rx.clone();
                let held = held2.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    });
                    let _ = relay_gated(&mut sr, &mut cw, after_bytes, rx, &held).await;
                    up.abort();
                });
            }
        });
        Ok(Self { addr, gate, held })
    }

    /// Waits until some connection is being held at the gate.
    pub async fn held(&self) {
        self.held.notified().await;
    }

    /// Opens the gate: held connections resume, new ones pass freely.
    pub fn open(&self) {
        let _ = self.gate.send(true);
    }
}

async fn relay_gated(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    after_bytes: u64,
    mut gate: tokio::sync::watch::Receiver<bool>,
    held: &tokio::sync::Notify,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    let mut relayed = 0u64;
    loop {
        if relayed >= after_bytes && !*gate.borrow() {
            held.notify_one();
            while !*gate.borrow_and_update() {
                if gate.changed().await.is_err() {
                    return Ok(());
                }
            }
        }
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        relayed += n as u64;
    }
}

/// What an [`S3Proxy`] does to the requests it forwards.
#[derive(Debug)]
pub enum Fault {
    /// Forward the first `allowed` requests that change something (PUT, POST, DELETE), then
    /// refuse every request (400 `Stopped`, which no SDK retries), as if the process had stopped
    /// there: a crash after exactly that many changes. Reads before the limit pass.
    StopAfter { allowed: u64 },
    /// Answer the first GET of a key ending in `suffix` with 404 `NoSuchKey`, as S3 does for an
    /// object deleted after a reader listed it; everything else passes.
    VanishOnce { suffix: String },
    /// Before forwarding the first PUT of a key ending in `suffix`, run `first` (another writer
    /// getting there first: it writes the key itself); everything else passes.
    BeforeFirstPut { suffix: String, first: Hook },
}

/// Something an [`S3Proxy`] runs (once) in the middle of forwarding a request.
#[derive(Clone)]
pub struct Hook(
    pub  std::sync::Arc<
        dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
    >,
);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// An HTTP proxy in front of an S3 endpoint that injects a [`Fault`]. It forwards requests with
/// their signed headers as they are, so the endpoint checks the client's signature.
#[derive(Debug, Clone)]
pub struct S3Proxy {
    pub url: String,
    state: std::sync::Arc<ProxyState>,
}

#[derive(Debug)]
struct ProxyState {
    http: reqwest::Client,
    upstream: String,
    fault: Fault,
    /// Changes forwarded (`StopAfter`), or GETs of the key seen (`VanishOnce`).
    count: AtomicU64,
}

impl S3Proxy {
    /// Starts the proxy in front of `upstream` (an endpoint URL).
    pub async fn start(upstream: &str, fault: Fault) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = std::sync::Arc::new(ProxyState {
            http: reqwest::Client::new(),
            upstream: upstream.trim_end_matches('/').to_owned(),
            fault,
            count: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(S3Proxy { url, state })
    }

    /// Changes forwarded (`StopAfter`), GETs of the key seen (`VanishOnce`; the first was
    /// answered 404), or PUTs of the key seen (`BeforeFirstPut`).
    pub fn count(&self) -> u64 {
        self.state.count.load(Ordering::SeqCst)
    }

    /// `endpoint` reached through this proxy.
    pub fn endpoint(&self, endpoint: &S3Endpoint) -> S3Endpoint {
        S3Endpoint {
            url: self.url.clone(),
            ..endpoint.clone()
        }
    }
}

fn s3_error(status: axum::http::StatusCode, code: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = format!("<Error><Code>{code}</Code><Message>{code}</Message></Error>");
    (status, [("content-type", "application/xml")], body).into_response()
}

async fn forward(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ProxyState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let stopped = || s3_error(StatusCode::BAD_REQUEST, "Stopped");
    match &state.fault {
        Fault::StopAfter { allowed } => {
            let changing = matches!(req.method().as_str(), "PUT" | "POST" | "DELETE");
            if state.count.load(Ordering::SeqCst) >= *allowed
                || (changing && state.count.fetch_add(1, Ordering::SeqCst) >= *allowed)
            {
                return stopped();
            }
        }
        Fault::VanishOnce { suffix } => {
            if req.method() == "GET"
                && req.uri().path().ends_with(suffix.as_str())
                && state.count.fetch_add(1, Ordering::SeqCst) == 0
            {
                return s3_error(StatusCode::NOT_FOUND, "NoSuchKey");
            }
        }
        Fault::BeforeFirstPut { suffix, first } => {
            if req.method() == "PUT"
                && req.uri().path().ends_with(suffix.as_str())
                && state.count.fetch_add(1, Ordering::SeqCst) == 0
            {
                (first.0)().await;
            }
        }
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return stopped();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = state
        .http
        .request(parts.method.clone(), format!("{}{path}", state.upstream));
    for (k, v) in &parts.headers {
        if k != "transfer-encoding" && k != "content-length" {
            out = out.header(k, v);
        }
    }
    match out.body(body).send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut response = (status, bytes).into_response();
            for (k, v) in &headers {
                if k != "transfer-encoding" && k != "content-length" {
                    response.headers_mut().insert(k, v.clone());
                }
            }
            response
        }
        Err(_) => stopped(),
    }
}

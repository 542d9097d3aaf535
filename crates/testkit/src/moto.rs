//! moto's server, for the AWS APIs tests cannot run for real (Secrets Manager here): one per
//! test process, started by `scripts/moto-server` (a pinned venv under `target/`), stopped when
//! the process exits.
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
}

static MOTO: OnceLock<std::result::Result<Moto, String>> = OnceLock::new();

/// This process's moto server, started on first use (installing the venv the first time).
pub fn moto() -> Result<Moto> {
    MOTO.get_or_init(|| start().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn start() -> Result<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Command::new("bash")
        .arg(workspace_root().join("scripts/moto-server"))
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // The first start may install the venv (about a minute); later ones take a second.
    let deadline = Instant::now() + Duration::from_secs(300);
    let addr = ("127.0.0.1", port);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!(
                "moto's server did not start on port {port} (run scripts/moto-server {port} to see why)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Moto {
        url: format!("http://127.0.0.1:{port}"),
    })
}

//! A Postgres cluster of a test's own, for what the shared server cannot show: password logins
//! (the shared one trusts everyone) and TLS with a certificate the test made.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! let cluster = sluice_testkit::Cluster::start(sluice_testkit::ClusterOptions {
//!     passwords: true,
//!     tls_dir: None,
//! })?;
//! println!("{}", cluster.port); // postgres@127.0.0.1:<port> logs in without a password
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace_root;

/// What the cluster does unlike the shared one.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Every role but `postgres` logs in over TCP with a password (scram-sha-256).
    pub passwords: bool,
    /// TLS on, with `server.crt` and `server.key` from this directory.
    pub tls_dir: Option<PathBuf>,
}

/// A running cluster (`scripts/pg-cluster` in a directory of its own), stopped on drop.
#[derive(Debug)]
pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:<port>/postgres` (trusted).
    pub url: String,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a cluster (initdb and start take about a second).
    pub fn start(options: ClusterOptions) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        // A port the system just gave out: clusters started at once do not race for one.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new("bash");
        cmd.arg(workspace_root().join("scripts/pg-cluster"))
            .arg("start")
            .env("SLUICE_SERVICES_DIR", dir.path())
            .env("PG_CLUSTER_PORT", port.to_string());
        if options.passwords {
            cmd.env("PG_CLUSTER_PASSWORDS", "1");
        }
        if let Some(tls) = &options.tls_dir {
            cmd.env("PG_CLUSTER_TLS_DIR", tls);
        }
        let out = cmd.output().context("running scripts/pg-cluster")?;
        if !out.status.success() {
            bail!(
                "scripts/pg-cluster start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env = std::fs::read_to_string(dir.path().join("pg.env"))?;
        let url = env
            .lines()
            .find_map(|l| l.strip_prefix("DATABASE_URL="))
            .context("pg.env has no DATABASE_URL")?
            .to_owned();
        Ok(Self { url, port, dir })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_root().join("scripts/pg-cluster"))
            .arg("stop")
            .env("SLUICE_SERVICES_DIR", self.dir.path())
            .output();
    }
}

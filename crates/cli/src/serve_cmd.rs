//! `sluice serve`: the collection API as a plain HTTP server, storing into the lake bucket (S3
//! from the usual variables, `S3_ENDPOINT_URL` for a local endpoint), configured as the
//! `sluice-api` binary is (`Config`), with its flags over the environment.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use sluice_api::Api;
use sluice_api::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The dataset files (`*.toml`).
    #[arg(long, default_value = "datasets")]
    datasets: PathBuf,
    /// The lake bucket (not needed with --validate-only).
    #[arg(long, env = "BUCKET", required_unless_present = "validate_only")]
    bucket: Option<String>,
    /// Validate and answer, store nothing (to measure validation alone).
    #[arg(long)]
    validate_only: bool,
    /// Leave the offending values (`input`) out of 422 bodies: they can hold PII.
    #[arg(long)]
    omit_inputs: bool,
}

pub fn run(a: Args) -> Result<()> {
    // The flags over the environment: the rest (LAKE_PREFIX, REJECTED_PREFIX, …) is read as the
    // `sluice-api` binary reads it. The port is the flag's alone (`0` picks a free one).
    let flags = [
        ("DATASETS", Some(a.datasets.display().to_string())),
        ("BUCKET", a.bucket.clone()),
        (
            "API_VALIDATE_ONLY",
            a.validate_only.then(|| "true".to_owned()),
        ),
        ("API_ERROR_INPUT", a.omit_inputs.then(|| "omit".to_owned())),
    ];
    let config = Config::from_lookup(|k| match flags.iter().find(|(n, _)| *n == k) {
        Some((_, flag)) => flag.clone().or_else(|| std::env::var(k).ok()),
        None if k == "PORT" => None,
        None => std::env::var(k).ok(),
    })?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let s3 = match config.bucket {
            Some(_) => Some(sluice_edge::s3_client(&aws_config::load_from_env().await)),
            None => None,
        };
        let api = Api::from_config(&config, s3)?;
        let names = api.datasets.names().join(", ");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.port))
            .await
            .with_context(|| format!("port {}", a.port))?;
        eprintln!(
            "collection API on http://{} (datasets: {names}); Ctrl-C stops",
            listener.local_addr()?
        );
        axum::serve(listener, sluice_api::router(Arc::new(api)))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

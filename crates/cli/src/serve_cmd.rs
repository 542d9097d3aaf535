//! `sluice serve`: the collection API as a plain HTTP server, storing into the lake bucket (S3
//! from the usual variables, `S3_ENDPOINT_URL` for a local endpoint).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use sluice_api::{Api, Datasets, ErrorInput, LakeStore, Settings};

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
    let datasets = Datasets::from_dir(&a.datasets)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = match (&a.bucket, a.validate_only) {
            (Some(bucket), false) => {
                let aws = aws_config::load_from_env().await;
                Some(LakeStore::new(sluice_edge::s3_client(&aws), bucket))
            }
            _ => None,
        };
        let settings = Settings {
            error_input: if a.omit_inputs {
                ErrorInput::Omit
            } else {
                ErrorInput::Include
            },
            ..Settings::default()
        };
        let names = datasets.names().join(", ");
        let api = Api {
            datasets,
            store,
            settings,
        };
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

//! # sluice-ingest
//!
//! The ingest Lambda's library: on an EventBridge schedule, pull each configured source (any
//! paginated JSON API; Hotmart's sales history built in) incrementally, flatten every record
//! into CSV and upload it to `raw/<source>/dt=YYYY-MM-DD/<start>_<end>_<run-id>.csv[.gz]`,
//! then advance the source's watermark with a conditional write — no gaps, no double advance.
pub mod config;
mod handler;
pub mod http;
pub mod json_path;
mod paging;
pub mod run;
pub mod sink;
pub mod source;

pub use crate::config::{Config, ConfigError};
pub use crate::handler::{
    EventError, HandlerError, Ingest, InvocationSummary, Request, RunFailure, STOP_MARGIN,
    emf_line, handle, handle_until, new_run_id, parse_event, stop_before,
};
pub use crate::http::{Api, Credentials, FetchError, RetryPolicy};
pub use crate::run::{Lake, RunError, RunKind, RunStatus, RunSummary, State};
pub use crate::sink::S3Out;
pub use crate::source::{Source, Sources};

/// Builds the per-source API clients: credentials from the source's own secret, else
/// `API_CREDENTIALS_SECRET_ARN` (the object under the source's name when the secret has one,
/// else the whole secret), else the environment.
pub async fn build(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> Result<Ingest, Box<dyn std::error::Error + Send + Sync>> {
    let mut apis = std::collections::BTreeMap::new();
    let mut shared: Option<serde_json::Value> = None;
    for (name, source) in &config.sources.0 {
        let secret = match (&source.secret_arn, &config.credentials_secret_arn) {
            (Some(arn), _) => Some(
                sluice_edge::secret_string(aws, arn)
                    .await?
                    .expose()
                    .to_owned(),
            ),
            (None, Some(arn)) => {
                if shared.is_none() {
                    let s = sluice_edge::secret_string(aws, arn).await?;
                    shared = Some(serde_json::from_str(s.expose()).map_err(|e| {
                        format!("API_CREDENTIALS_SECRET_ARN {arn}: not a JSON object: {e}")
                    })?);
                }
                let all = shared.as_ref().expect("read above");
                Some(all.get(name).unwrap_or(all).to_string())
            }
            (None, None) => None,
        };
        let creds = Credentials::resolve(source, |k| std::env::var(k).ok(), secret.as_deref())?;
        apis.insert(name.clone(), Api::new(source.clone(), creds)?);
    }
    Ok(Ingest {
        apis,
        lake: Lake {
            out: S3Out {
                client: sluice_edge::s3_client(aws),
                bucket: config.bucket.clone(),
                part_size: config.part_size,
            },
            layout: config.layout.clone(),
        },
    })
}

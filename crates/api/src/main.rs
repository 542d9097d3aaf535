//! `sluice-api`: the collection API's one binary. On AWS Lambda (behind an API Gateway HTTP
//! API, `AWS_LAMBDA_RUNTIME_API` set) it answers through `lambda_http`; anywhere else (a
//! container) it serves HTTP on `PORT`. The configuration, the datasets and the S3 client are
//! built once, before the first request.

use std::sync::Arc;

use sluice_api::config::Config;
use sluice_api::{Api, Datasets, LakeStore, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let datasets = Datasets::from_dir(&config.datasets)?;
    let store = match &config.bucket {
        Some(bucket) => {
            let aws = aws_config::load_from_env().await;
            Some(LakeStore {
                client: sluice_edge::s3_client(&aws),
                bucket: bucket.clone(),
                lake_prefix: config.lake_prefix.clone(),
                rejected_prefix: config.rejected_prefix.clone(),
            })
        }
        None => None,
    };
    let app = router(Arc::new(Api {
        datasets,
        store,
        settings: config.settings.clone(),
    }));
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda_http::run(app).await;
    }
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

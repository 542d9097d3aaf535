//! `sluice-api`: the collection API's one binary. On AWS Lambda (behind an API Gateway HTTP
//! API, `AWS_LAMBDA_RUNTIME_API` set) it answers through `lambda_http`; anywhere else (a
//! container) it serves HTTP on `PORT`. The configuration, the datasets and the S3 client are
//! built once, before the first request.

use std::sync::Arc;

use sluice_api::config::Config;
use sluice_api::{Api, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let s3 = match &config.bucket {
        Some(_) => Some(sluice_edge::s3_client(&aws_config::load_from_env().await)),
        None => None,
    };
    let app = router(Arc::new(Api::from_config(&config, s3)?));
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

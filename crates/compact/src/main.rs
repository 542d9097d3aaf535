//! The compaction Lambda: builds the S3 client and reads the datasets once, then on each
//! scheduled event compacts every dataset's closed partitions ([`sluice_compact::handle`]).

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use sluice_compact::{Compactor, config::Config};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let datasets = sluice_api::Datasets::from_dir(&config.datasets)?;
    let aws = aws_config::load_from_env().await;
    let compactor = Compactor::new(
        sluice_edge::s3_client(&aws),
        &config.bucket,
        config.layout.clone(),
        config.settings,
    );
    let (compactor, datasets) = (&compactor, &datasets);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let now = jiff::Timestamp::now();
        let deadline = std::time::Instant::now()
            + event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
        let result = sluice_compact::handle(compactor, datasets, now, deadline).await;
        match &result {
            Ok(summary) => tracing::info!(
                partitions = summary.partitions.len(),
                left = summary.left,
                "compaction run done"
            ),
            Err(e) => tracing::error!(error = %e, "compaction run failed"),
        }
        result.map_err(lambda_runtime::Error::from)
    }))
    .await
}

//! The loader Lambda: builds the configuration, S3 client and Postgres pool once, then hands
//! each event to [`sluice_loader::handle`].
// The handler futures nest deeply; release builds (fat LTO) exceed the default query depth.
#![recursion_limit = "256"]

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use sluice_loader::{Config, Loader, S3Store, emf_line, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = aws_config::load_from_env().await;
    let mut config = Config::from_env()?;
    sluice_loader::connect::read_secrets(&mut config, &aws).await?;
    let config = Arc::new(config);
    let pool = sluice_loader::pool_with(&config, Some(&aws)).await?;
    let store = S3Store {
        client: sluice_edge::s3_client(&aws),
    };
    let loader = Loader::new(pool, config).with_aws(aws);
    let (loader, store) = (&loader, &store);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let result = handle(&event.payload, loader, store).await;
        sluice_edge::report(&result, |s| emf_line("loader", s));
        result
    }))
    .await
}

//! The ingest Lambda: builds the configuration, the per-source API clients (their OAuth tokens
//! live as long as the container) and the S3 client once, then hands each event to
//! [`sluice_ingest::handle_until`] with the Lambda request id as the run id, stopping cleanly
//! [`sluice_ingest::STOP_MARGIN`] before the deadline.
// The handler futures nest deeply; release builds (fat LTO) exceed the default query depth.
#![recursion_limit = "256"]

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use sluice_ingest::{Config, emf_line, handle_until, stop_before};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = aws_config::load_from_env().await;
    let ingest = sluice_ingest::build(&config, &aws).await?;
    let ingest = &ingest;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let now = jiff::Timestamp::now();
        let (stop, timer) = stop_before(event.context.deadline);
        let id = &event.context.request_id;
        let result = handle_until(&event.payload, ingest, now, id, &stop).await;
        timer.abort();
        sluice_edge::report(&result, emf_line);
        result
    }))
    .await
}

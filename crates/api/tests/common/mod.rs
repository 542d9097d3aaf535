//! What several test files of this crate share.

use std::sync::Arc;

use sluice_api::{Api, Datasets, Settings, router};

/// A validate-only API over `datasets/` on a free port of 127.0.0.1; its base URL.
pub async fn validating_server() -> anyhow::Result<String> {
    let datasets = Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets"))?;
    let api = Api {
        datasets,
        store: None,
        settings: Settings::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(api))).await });
    Ok(url)
}

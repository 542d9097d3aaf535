//! The other pagination and authentication styles a source can declare, against the sample
//! API's generic routes: page numbers with an API key, offsets with a bearer token, RFC 8288
//! Link headers without auth; windows in RFC 3339.

use crate::common::*;
use anyhow::Result;
use sluice_ingest::{RunKind, run::run};
use sluice_sample_api::{SampleApi, Settings};

fn sources(url: &str) -> String {
    let window = r#"
start_param = "start"
end_param = "end"
format = "rfc3339"
initial_start = "2023-11-14T00:00:00Z"
"#;
    format!(
        r#"
[source.pages]
base_url = "{url}"
path = "/api/sales/pages"
records_path = "data"
page_size = 70
page_size_param = "per_page"
pagination = {{ kind = "page_number" }}
auth = {{ kind = "api_key", header = "X-API-Key", key_env = "SAMPLE_KEY" }}
[source.pages.window]{window}
[source.offset]
base_url = "{url}"
path = "/api/sales/offset"
records_path = "data"
page_size = 70
page_size_param = "limit"
pagination = {{ kind = "offset" }}
auth = {{ kind = "bearer", token_env = "SAMPLE_TOKEN" }}
[source.offset.window]{window}
[source.linked]
base_url = "{url}"
path = "/api/sales/linked"
page_size = 70
page_size_param = "per_page"
pagination = {{ kind = "link_header" }}
[source.linked.window]{window}
"#
    )
}

async fn pull(name: &str, n: u64) -> Result<()> {
    pull_with(name, n, sluice_sample_api::Rules::default()).await
}

async fn pull_with(name: &str, n: u64, rules: sluice_sample_api::Rules) -> Result<()> {
    let pulled = pull_source(sources, name, n, rules).await?;
    let objects = pulled.all(n).await?;
    let dt = format!("raw/{name}/dt=2023-11-14/");
    assert!(objects[0].0.starts_with(&dt), "{name}");
    Ok(())
}

#[tokio::test]
async fn page_numbers_with_an_api_key() -> Result<()> {
    pull("pages", 333).await?;
    // An exact multiple of the page size ends on an empty page.
    pull("pages", 350).await
}

#[tokio::test]
async fn offsets_with_a_bearer_token() -> Result<()> {
    pull("offset", 333).await
}

#[tokio::test]
async fn link_headers_without_auth() -> Result<()> {
    pull("linked", 333).await
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused() -> Result<()> {
    let api = SampleApi::start(Settings {
        n: 300,
        ..Settings::default()
    })
    .await?;
    let elsewhere = SampleApi::start(Settings::default()).await?;
    let host = elsewhere
        .base_url()
        .trim_start_matches("http://")
        .to_owned();
    api.set_rules(sluice_sample_api::Rules {
        link_host: Some(host),
        ..Default::default()
    });
    let bucket = sluice_testkit::bucket().await?;
    let client = source_client(&sources(&api.base_url()), "linked")?;
    let now = after_all(300);
    let err = run(
        &client,
        &lake(&bucket, 8 << 20),
        RunKind::Scheduled { now },
        "r",
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("refused: not on the source's origin"),
        "{err}"
    );
    assert_eq!(
        elsewhere.stats().page_requests,
        0,
        "nothing went to the other host"
    );
    assert!(watermarks(&bucket).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed() -> Result<()> {
    let e = env(300, "").await?;
    let elsewhere = SampleApi::start(Settings::default()).await?;
    e.api.push_faults([sluice_sample_api::Fault::Redirect {
        location: format!("{}/payments/api/v1/sales/history", elsewhere.base_url()),
    }]);
    let api = &e.ingest.apis["hotmart-sales"];
    let now = after_all(300);
    let err = run(api, &e.ingest.lake, RunKind::Scheduled { now }, "r")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 302"), "{err}");
    let other = elsewhere.stats();
    assert_eq!(
        (other.page_requests, other.unauthorized),
        (0, 0),
        "never asked"
    );
    Ok(())
}

#[tokio::test]
async fn pages_shorter_than_asked_are_not_the_last() -> Result<()> {
    // The API serves 50 a page when 70 are asked for: only an empty page ends the paging.
    for name in ["pages", "offset"] {
        let capped = sluice_sample_api::Rules {
            max_page_size: Some(50),
            ..Default::default()
        };
        pull_with(name, 333, capped).await?;
    }
    Ok(())
}

//! The pagination and authentication styles of APIs no one here wrote, against the sample
//! API's routes in their shapes (`sluice_sample_api::styles`; GitHub's `Link` headers are
//! `pagination.rs`'s): a DRF `next` with HTTP Basic,
//! HAL links with a key in the query, OData's `@odata.nextLink` with an OAuth2 token from
//! another host, Stripe's `has_more` + `starting_after` with its key as the Basic user, a
//! cursor in a header, and page numbers and offsets that stop on a total. Then the faults
//! per style: a repeated cursor, a next URL on another host, a total that lies, an empty page
//! in the middle.

use crate::common::*;
use anyhow::Result;
use sluice_sample_api::{Rules, SampleApi, Settings};

const WINDOW: &str = r#"start_param = "start"
end_param = "end"
format = "rfc3339"
initial_start = "2023-11-14T00:00:00Z""#;

/// The sources of this file, on the sample API at `url` (the OAuth2 token from `token_host`).
fn sources_with_token_host(url: &str, token_host: &str) -> String {
    format!(
        r#"
[source.drf]
base_url = "{url}"
path = "/drf/sales/"
records_path = "results"
page_size = 70
page_size_param = "page_size"
pagination = {{ kind = "next_url", path = "next" }}
auth = {{ kind = "basic", username_env = "SAMPLE_USER", password_env = "SAMPLE_PASS" }}
window = {{ {window} }}

[source.hal]
base_url = "{url}"
path = "/hal/sales"
records_path = "_embedded.sales"
page_size = 70
page_size_param = "size"
params = {{ page = "0" }}
pagination = {{ kind = "next_url", path = "_links.next.href" }}
auth = {{ kind = "api_key", param = "api_key", key_env = "SAMPLE_KEY" }}
window = {{ {window} }}

[source.hal-pages]
base_url = "{url}"
path = "/hal/sales"
records_path = "_embedded.sales"
page_size = 70
page_size_param = "size"
pagination = {{ kind = "page_number", first = 0, total_pages_path = "page.totalPages" }}
auth = {{ kind = "api_key", param = "api_key", key_env = "SAMPLE_KEY" }}
window = {{ {window} }}

[source.odata]
base_url = "{url}"
path = "/odata/Sales"
records_path = "value"
page_size = 70
page_size_param = "$top"
pagination = {{ kind = "next_url", path = "@odata.nextLink" }}
auth = {{ kind = "oauth2_client_credentials", token_url = "{token_host}/oauth2/token", client_auth = "form", scope = "sales.read offline", audience = "sample-api", client_id_env = "SAMPLE_CLIENT_ID", client_secret_env = "SAMPLE_CLIENT_SECRET" }}
window = {{ {window} }}

[source.odata-basic]
base_url = "{url}"
path = "/odata/Sales"
records_path = "value"
page_size = 70
page_size_param = "$top"
pagination = {{ kind = "next_url", path = "@odata.nextLink" }}
auth = {{ kind = "oauth2_client_credentials", token_url = "/oauth2/token", scope = "sales.read", audience = "sample-api", client_id_env = "SAMPLE_CLIENT_ID", client_secret_env = "SAMPLE_CLIENT_SECRET" }}
window = {{ {window} }}

[source.stripe]
base_url = "{url}"
path = "/v1/charges"
records_path = "data"
page_size = 70
page_size_param = "limit"
pagination = {{ kind = "last_item", id_path = "transaction", param = "starting_after", has_more_path = "has_more" }}
auth = {{ kind = "basic", username_env = "STRIPE_KEY" }}
window = {{ start_param = "created[gte]", end_param = "created[lte]", format = "epoch_seconds", initial_start = "2023-11-14T00:00:00Z" }}

[source.github]
base_url = "{url}"
path = "/api/sales/linked"
page_size = 70
page_size_param = "per_page"
pagination = {{ kind = "link_header" }}
window = {{ {window} }}

[source.since]
base_url = "{url}"
path = "/api/sales/since"
page_size = 70
page_size_param = "limit"
pagination = {{ kind = "last_item", id_path = "transaction", param = "since_id" }}

[source.header]
base_url = "{url}"
path = "/api/sales/cursor"
page_size = 70
page_size_param = "limit"
pagination = {{ kind = "header_cursor", header = "X-Next-Cursor", param = "cursor" }}
auth = {{ kind = "bearer", token_env = "SAMPLE_TOKEN" }}
window = {{ {window} }}

[source.pages-total]
base_url = "{url}"
path = "/api/sales/pages"
records_path = "data"
page_size = 70
page_size_param = "per_page"
pagination = {{ kind = "page_number", total_path = "meta.total" }}
auth = {{ kind = "api_key", header = "X-API-Key", key_env = "SAMPLE_KEY" }}
window = {{ {window} }}

[source.offset-total]
base_url = "{url}"
path = "/api/sales/offset"
records_path = "data"
page_size = 70
page_size_param = "limit"
pagination = {{ kind = "offset", total_header = "X-Total-Count" }}
auth = {{ kind = "bearer", token_env = "SAMPLE_TOKEN" }}
window = {{ {window} }}
"#,
        window = WINDOW.replace('\n', ", ")
    )
}

fn sources(url: &str) -> String {
    sources_with_token_host(url, url)
}

async fn pull(name: &str, n: u64, rules: Rules) -> Result<Pulled> {
    pull_source(sources, name, n, rules).await
}

#[tokio::test]
async fn drf_next_urls_with_http_basic() -> Result<()> {
    pull("drf", 333, Rules::default()).await?.all(333).await?;
    Ok(())
}

#[tokio::test]
async fn hal_links_with_the_key_in_the_query() -> Result<()> {
    // The links echo `api_key`: it is taken out of them and sent once per request.
    pull("hal", 333, Rules::default()).await?.all(333).await?;
    // Spring's pages count from 0 and say how many there are: no request past the last.
    let p = pull("hal-pages", 333, Rules::default()).await?;
    p.all(333).await?;
    assert_eq!(p.api.stats().page_requests, 5, "333 sales, 70 a page");
    Ok(())
}

#[tokio::test]
async fn a_key_in_the_query_never_reaches_an_error() -> Result<()> {
    let elsewhere = SampleApi::start(Settings::default()).await?;
    let host = elsewhere.addr().to_string();
    let rules = Rules {
        link_host: Some(host),
        ..Rules::default()
    };
    let p = pull("hal", 333, rules).await?;
    let e = p.failed("refused: not on the source's origin").await?;
    assert!(!e.contains("sample-key") && !e.contains("api_key"), "{e}");
    assert_eq!(elsewhere.stats().page_requests, 0);
    Ok(())
}

#[tokio::test]
async fn odata_next_links_with_a_token_from_another_host() -> Result<()> {
    let token_host = SampleApi::start(Settings::default()).await?;
    let t = token_host.base_url();
    let p = pull_source(
        |url| sources_with_token_host(url, &t),
        "odata",
        333,
        Rules::default(),
    )
    .await?;
    p.all(333).await?;
    // The token came from the other host, with the credentials in the form body.
    assert_eq!(token_host.stats().token_requests, 1);
    assert_eq!(token_host.stats().unauthorized, 0);
    assert_eq!(p.api.stats().token_requests, 0);
    // RFC 6749's client_secret_basic, the default, to the same strict endpoint.
    let p = pull("odata-basic", 150, Rules::default()).await?;
    p.all(150).await?;
    assert_eq!(p.api.stats().token_requests, 1);
    Ok(())
}

#[tokio::test]
async fn stripe_has_more_and_starting_after() -> Result<()> {
    // Windows in epoch seconds, `created[lte]` inclusive of its second.
    let p = pull("stripe", 333, Rules::default()).await?;
    p.all(333).await?;
    assert_eq!(p.api.stats().page_requests, 5, "has_more ends it");
    Ok(())
}

#[tokio::test]
async fn since_id_until_an_empty_page() -> Result<()> {
    let p = pull_source(sources, "since", 333, Rules::default()).await?;
    let s = p.result.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    // No window: the whole source, once.
    assert_eq!((s.status, s.records), (sluice_ingest::RunStatus::Full, 333));
    assert_eq!(
        p.api.stats().page_requests,
        6,
        "five pages and an empty one"
    );
    Ok(())
}

#[tokio::test]
async fn a_cursor_in_a_header() -> Result<()> {
    pull("header", 333, Rules::default())
        .await?
        .all(333)
        .await?;
    Ok(())
}

#[tokio::test]
async fn page_numbers_and_offsets_stop_on_their_total() -> Result<()> {
    for name in ["pages-total", "offset-total"] {
        let p = pull(name, 333, Rules::default()).await?;
        p.all(333).await?;
        assert_eq!(
            p.api.stats().page_requests,
            5,
            "{name}: no empty page asked for"
        );
    }
    // An exact multiple of the page size needs no empty page either.
    let p = pull("pages-total", 350, Rules::default()).await?;
    p.all(350).await?;
    assert_eq!(p.api.stats().page_requests, 5);
    Ok(())
}

#[tokio::test]
async fn a_repeated_cursor_fails_the_run() -> Result<()> {
    let stuck = || Rules {
        stuck_cursor: true,
        ..Rules::default()
    };
    for name in ["drf", "hal", "odata", "header", "stripe", "github"] {
        let p = pull(name, 333, stuck()).await?;
        p.failed("again").await?;
        assert!(p.api.stats().page_requests <= 3, "{name} stopped at once");
    }
    Ok(())
}

#[tokio::test]
async fn a_next_url_on_another_host_is_refused() -> Result<()> {
    let elsewhere = SampleApi::start(Settings::default()).await?;
    let host = elsewhere.addr().to_string();
    for name in ["drf", "odata"] {
        let rules = Rules {
            link_host: Some(host.clone()),
            ..Rules::default()
        };
        let p = pull(name, 333, rules).await?;
        p.failed("refused: not on the source's origin").await?;
    }
    let other = elsewhere.stats();
    assert_eq!((other.page_requests, other.unauthorized), (0, 0));
    Ok(())
}

#[tokio::test]
async fn a_total_that_lies_fails_the_run() -> Result<()> {
    for name in ["pages-total", "offset-total"] {
        let low = Rules {
            total_bias: -10,
            ..Rules::default()
        };
        pull(name, 333, low)
            .await?
            .failed("the total cannot be trusted")
            .await?;
        let high = Rules {
            total_bias: 10,
            ..Rules::default()
        };
        let p = pull(name, 333, high).await?;
        p.failed("an empty page before the end: 333 of the API's total of 343")
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn an_empty_page_in_the_middle() -> Result<()> {
    let empty = || Rules {
        empty_page_at: Some(2),
        ..Rules::default()
    };
    // The API names the next page: paging goes on, and nothing is missed.
    for name in ["header", "odata"] {
        pull(name, 333, empty()).await?.all(333).await?;
    }
    // Page numbers and offsets with a total: the records of that page are missing, so the
    // run fails rather than skipping them.
    for name in ["pages-total", "offset-total"] {
        pull(name, 333, empty())
            .await?
            .failed("an empty page before the end: 140 of the API's total of 333")
            .await?;
    }
    // Stripe's `has_more` with no record to continue after.
    pull("stripe", 333, empty())
        .await?
        .failed("no record to continue after")
        .await?;
    Ok(())
}

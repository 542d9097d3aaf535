//! The docs page: its assets come from the binary, gzipped, and it renders in a real browser
//! (headless Chromium, installed by `scripts/chromium` when missing) with every operation.

use std::io::Read;
use std::process::Command;

use anyhow::{Context, Result, ensure};

mod common;

async fn serve() -> Result<String> {
    common::validating_server().await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

#[tokio::test]
async fn the_root_leads_to_the_docs_page_which_loads_nothing_from_elsewhere() -> Result<()> {
    let url = serve().await?;
    let http = no_redirects();
    let root = http.get(format!("{url}/")).send().await?;
    assert_eq!(root.status(), 307);
    assert_eq!(root.headers()["location"], "docs");
    let slash = http.get(format!("{url}/docs/")).send().await?;
    assert_eq!(slash.status(), 308);
    assert_eq!(slash.headers()["location"], "../docs");

    let page = http.get(format!("{url}/docs")).send().await?;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("connect-src 'self';"), "{csp}");
    let html = page.text().await?;
    for src in html
        .split("src=\"")
        .skip(1)
        .chain(html.split("href=\"").skip(1))
    {
        let link = src.split('"').next().unwrap_or_default();
        assert!(
            link.starts_with("docs/"),
            "a relative link to our own: {link}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn assets_are_served_gzipped_and_inflated_for_clients_without_gzip() -> Result<()> {
    let url = serve().await?;
    let http = no_redirects();
    for (path, content_type, marker) in [
        (
            "docs/swagger-ui-bundle.js",
            "text/javascript",
            "SwaggerUIBundle",
        ),
        ("docs/swagger-ui.css", "text/css", ".swagger-ui"),
    ] {
        let gz = http
            .get(format!("{url}/{path}"))
            .header("accept-encoding", "br, gzip")
            .send()
            .await?;
        assert_eq!(gz.status(), 200, "{path}");
        assert_eq!(gz.headers()["content-encoding"], "gzip", "{path}");
        assert_eq!(gz.headers()["content-type"], content_type, "{path}");
        assert_eq!(gz.headers()["vary"], "accept-encoding", "{path}");
        let gz = gz.bytes().await?;
        let mut inflated = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut inflated)?;
        assert!(inflated.contains(marker), "{path}");
        assert!(gz.len() * 3 < inflated.len(), "{path}: compressed");

        let plain = http.get(format!("{url}/{path}")).send().await?;
        assert!(plain.headers().get("content-encoding").is_none(), "{path}");
        assert_eq!(plain.text().await?, inflated, "{path}");
    }
    Ok(())
}

/// Rows of the screenshot that hold a badge's width of `rgb`, grouped into bands of adjacent
/// rows: one band per operation whose method badge has that colour. (The operation's border has
/// the colour too, across the whole width: those rows are not badges.)
fn bands_of(png_bytes: &[u8], rgb: [u8; 3]) -> Result<usize> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().context("the image's size")?];
    let info = reader.next_frame(&mut buf)?;
    let channels = info.color_type.samples();
    ensure!(
        channels >= 3,
        "an RGB screenshot, got {:?}",
        info.color_type
    );
    let (mut bands, mut inside) = (0, false);
    for row in buf[..info.buffer_size()].chunks(info.line_size) {
        let hits = row.chunks(channels).filter(|px| px[..3] == rgb[..]).count();
        let badge = (40..=300).contains(&hits);
        if badge && !inside {
            bands += 1;
        }
        inside = badge;
    }
    Ok(bands)
}

// Chromium is run from a blocking thread: the server needs this runtime's other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_renders_every_operation_in_a_headless_browser() -> Result<()> {
    let url = serve().await?;
    let chromium = sluice_testkit::workspace_root().join("scripts/chromium");
    let run = |args: &[&str]| -> Result<Vec<u8>> {
        let out = Command::new(&chromium)
            .args(args)
            .arg("--virtual-time-budget=15000")
            .arg(format!("{url}/docs"))
            .output()
            .with_context(|| format!("run {}", chromium.display()))?;
        ensure!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.stdout)
    };

    let dom = String::from_utf8(run(&["--dump-dom"])?)?;
    for path in ["/unicorns", "/unicorns/batch", "/datasets", "/health"] {
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "{path} is on the rendered page"
        );
    }

    let dir = tempfile::tempdir()?;
    let shot = dir.path().join("docs.png");
    run(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,1400",
    ])?;
    let png_bytes = std::fs::read(&shot)?;
    // Swagger UI's method badges: POST #49cc90, GET #61affe.
    assert_eq!(
        bands_of(&png_bytes, [0x49, 0xcc, 0x90])?,
        2,
        "POST /unicorns and /unicorns/batch"
    );
    assert_eq!(
        bands_of(&png_bytes, [0x61, 0xaf, 0xfe])?,
        2,
        "GET /datasets and /health"
    );
    Ok(())
}

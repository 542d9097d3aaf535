//! `sluice-api`: the collection API's one binary. On AWS Lambda (behind an API Gateway HTTP
//! API, `AWS_LAMBDA_RUNTIME_API` set) it answers through `lambda_http`; anywhere else (a
//! container) it serves HTTP on `PORT`. The configuration, the datasets and the S3 client are
//! built once, before the first request.
//!
//! `sluice-api health` asks the server on `PORT` for `/health` and exits 0 on 200: the
//! container's health check, where the image has no shell and no curl.

use std::sync::Arc;

use sluice_api::config::Config;
use sluice_api::{Api, router};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// GET /health from the server on `PORT` (127.0.0.1), answered 200 within 2 s.
fn health() -> std::process::ExitCode {
    use std::io::{Read, Write};
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let check = || -> std::io::Result<bool> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let timeout = std::time::Duration::from_secs(2);
        let mut conn = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        conn.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    match check() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) | Err(_) => std::process::ExitCode::FAILURE,
    }
}

fn main() -> Result<std::process::ExitCode, lambda_http::Error> {
    if std::env::args().nth(1).as_deref() == Some("health") {
        return Ok(health());
    }
    tokio::runtime::Runtime::new()?.block_on(serve())?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn serve() -> Result<(), lambda_http::Error> {
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

//! `sluice-sample-api [--port P] [--records N] [--mode initial|updates] [--seed S]`: serves the
//! sample Hotmart sales API on 127.0.0.1 until interrupted. Credentials: `mock-id` /
//! `mock-secret` (as the Python mock), or `SAMPLE_CLIENT_ID` / `SAMPLE_CLIENT_SECRET`.

use std::net::SocketAddr;

use sluice_sample_api::{SampleApi, Settings};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "sluice-sample-api [--port P] [--records N] [--mode initial|updates] [--seed S]\n\n\
             Example: sluice-sample-api --port 18080 --records 100000"
        );
        return Ok(());
    }
    let mut s = Settings::default();
    let port: u16 = opt("--port").map_or(Ok(18080), |p| p.parse())?;
    s.addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Some(n) = opt("--records") {
        s.n = n.parse()?;
    }
    if let Some(m) = opt("--mode") {
        s.mode = m.parse()?;
    }
    if let Some(seed) = opt("--seed") {
        s.seed = seed.parse()?;
    }
    if let Ok(id) = std::env::var("SAMPLE_CLIENT_ID") {
        s.client_id = id;
    }
    if let Ok(secret) = std::env::var("SAMPLE_CLIENT_SECRET") {
        s.client_secret = secret;
    }
    let api = SampleApi::start(s).await?;
    eprintln!("sample API on {} (Ctrl-C stops)", api.base_url());
    tokio::signal::ctrl_c().await?;
    println!("{}", serde_json::to_string(&api.stats())?);
    Ok(())
}

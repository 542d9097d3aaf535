//! schemathesis (PyPI, pinned in `scripts/schemathesis-requirements.txt`, a venv under
//! `target/`) against `/openapi.json` of a running server that stores into the in-process S3
//! endpoint: bodies generated from the document, valid and not, and every response checked
//! against it — no 5xx, documented statuses, content types and schemas, schema-valid bodies
//! accepted, invalid ones refused.
//!
//! One rule of the contract has no JSON Schema: an integer is written without a point (`299.0`
//! is refused, as pydantic's `StrictInt` refuses it). `schemathesis/sluice_hooks.py` writes
//! generated whole-number floats as integers.
//!
//! Two runs with fixed seeds (reproducible):
//! - ASCII strings, every check.
//! - Any Unicode string, every check but the two that compare our pattern engine with
//!   schemathesis': OpenAPI patterns are ECMA-262, where `\s` takes U+FEFF and not U+0085;
//!   sluice, like pydantic-core, uses Rust's `regex`, where it is the other way round. The
//!   FastAPI oracle test pins that we match pydantic.

use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use sluice_api::{Api, Datasets, LakeStore, Settings, router};

fn venv() -> Result<std::path::PathBuf> {
    let root = sluice_testkit::workspace_root();
    let out = Command::new(root.join("scripts/venv"))
        .args(["schemathesis", "scripts/schemathesis-requirements.txt"])
        .current_dir(&root)
        .output()
        .context("scripts/venv")?;
    ensure!(
        out.status.success(),
        "scripts/venv schemathesis: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().into())
}

// The runs block a thread; the server needs the runtime's other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_documented_answers_and_never_a_5xx() -> Result<()> {
    let venv = venv()?;
    let bucket = sluice_testkit::bucket().await?;
    let api = Api {
        datasets: Datasets::from_dir(&sluice_testkit::workspace_root().join("datasets"))?,
        store: Some(LakeStore::new(bucket.client.clone(), &bucket.name)),
        settings: Settings::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/openapi.json", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(api))).await });

    let runs: [(&str, &[&str]); 2] = [
        ("ascii", &["--generation-codec", "ascii", "--seed", "7"]),
        (
            "unicode",
            &[
                "--exclude-checks",
                "positive_data_acceptance,negative_data_rejection",
                "--seed",
                "8",
            ],
        ),
    ];
    let scratch = tempfile::tempdir()?;
    for (name, extra) in runs {
        let (venv, url, dir) = (venv.clone(), url.clone(), scratch.path().to_owned());
        let hooks = sluice_testkit::workspace_root().join("crates/api/tests/schemathesis");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(venv.join("bin/schemathesis"))
                .args(["run", &url, "--checks", "all", "--max-examples", "100"])
                .args(["--generation-database", "none", "--no-color"])
                .args(&extra)
                .current_dir(dir)
                .env("SCHEMATHESIS_HOOKS", "sluice_hooks")
                .env("PYTHONPATH", hooks)
                .output()
        })
        .await??;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "schemathesis ({name}) found failures:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(stdout.contains(" passed"), "{name}: {stdout}");
    }
    // The generated valid bodies were stored, not only validated.
    let stored = bucket.keys("lake/unicorns/").await?;
    ensure!(
        !stored.is_empty(),
        "schemathesis' valid records are in the lake"
    );
    Ok(())
}

//! `scripts/rds-ca-bundle`, which `make deploy` runs to package the RDS CA bundle: it takes only
//! RDS CA certificates, pins the bundle on first use, and refuses a bundle that changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A self-signed CA certificate with this subject (openssl, as the script itself uses).
fn ca(dir: &Path, name: &str, subject: &str) -> PathBuf {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", subject, "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cert
}

fn bundle(dir: &Path, name: &str, parts: &[&Path]) -> PathBuf {
    let text: String = parts
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(dir: &Path, file: &Path, update: bool) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/rds-ca-bundle"));
    if update {
        cmd.arg("--update");
    }
    cmd.arg(dir.join("out/rds-global-bundle.pem"))
        .env("RDS_CA_FILE", file)
        .env("RDS_CA_PIN", dir.join("pin.sha256"))
        .output()
        .expect("bash")
}

#[test]
fn the_bundle_is_checked_and_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = ca(
        d,
        "a",
        "/CN=Amazon RDS us-east-1 Root CA RSA2048 G1/OU=Amazon RDS",
    );
    let b = ca(
        d,
        "b",
        "/CN=Amazon RDS eu-west-1 Root CA ECC384 G1/OU=Amazon RDS",
    );
    let evil = ca(d, "evil", "/CN=Someone Else Root CA");
    let first = bundle(d, "first.pem", &[&a]);
    // First use: checked, written, pinned.
    let out = run(d, &first, false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(d.join("out/rds-global-bundle.pem")).unwrap(),
        std::fs::read(&first).unwrap()
    );
    assert!(std::fs::read_to_string(d.join("pin.sha256")).unwrap().len() >= 64);
    assert!(
        run(d, &first, false).status.success(),
        "the pinned bundle again"
    );
    // A bundle that changed is refused until --update; one with a foreign CA always is.
    let grown = bundle(d, "grown.pem", &[&a, &b]);
    let out = run(d, &grown, false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the pinned"));
    assert!(run(d, &grown, true).status.success());
    assert!(run(d, &grown, false).status.success());
    let tampered = bundle(d, "tampered.pem", &[&a, &evil]);
    let out = run(d, &tampered, true);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an RDS CA"));
}

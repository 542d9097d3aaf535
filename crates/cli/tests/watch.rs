//! `make watch` (scripts/cargo-lambda watch): what the watched functions are given.

#[test]
fn make_watch_honours_an_exported_database_url() -> std::io::Result<()> {
    // A stand-in cargo-lambda that prints its arguments and the env file it is given.
    let bin = tempfile::tempdir()?;
    let fake = bin.path().join("cargo-lambda");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"args: $*\"\nwhile [ $# -gt 0 ]; do [ \"$1\" = --env-file ] && cat \"$2\"; shift; done\n",
    )?;
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let root = sluice_testkit::workspace_root();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(root.join("scripts/cargo-lambda"))
        .arg("watch")
        .env("PATH", path)
        .env("DATABASE_URL", "postgres://me@db.example:5432/mine")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("--env-file"), "{text}");
    assert!(
        !text
            .lines()
            .next()
            .unwrap_or_default()
            .contains("postgres://"),
        "not in argv: {text}"
    );
    assert!(
        text.lines().last() == Some("DATABASE_URL=postgres://me@db.example:5432/mine"),
        "the exported URL comes last, over .env: {text}"
    );
    Ok(())
}

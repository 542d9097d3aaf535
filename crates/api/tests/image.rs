//! The container image, checked without a container engine: the Dockerfile's parts agree with
//! each other (what is copied is what is run, where the environment says), and the binary runs
//! the way the image runs it — its `ENV`, a non-root user, the health check as its `CMD`.
//!
//! `make image` runs this test against the static (musl) binary the Dockerfile builds
//! (`SLUICE_API_BIN`); `make test` against the debug build.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, ensure};

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions() -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(sluice_testkit::workspace_root().join("Dockerfile"))?;
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                let (op, args) = pending.trim().split_once(' ').unwrap_or((&pending, ""));
                out.push((op.to_uppercase(), args.trim().to_owned()));
                pending.clear();
            }
        }
    }
    Ok(out)
}

/// The final stage's instructions (after the last `FROM`), and that `FROM`'s image.
fn final_stage(all: &[(String, String)]) -> (String, Vec<(String, String)>) {
    let at = all
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("a FROM");
    (all[at].1.clone(), all[at + 1..].to_vec())
}

/// `ENV A=1 B=2` lines of a stage.
fn env_of(stage: &[(String, String)]) -> BTreeMap<String, String> {
    stage
        .iter()
        .filter(|(op, _)| op == "ENV")
        .flat_map(|(_, args)| args.split_whitespace().map(str::to_owned))
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// A JSON-array instruction (`["a", "b"]`) as its words.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|_| panic!("exec form, not shell form: {args}"))
}

#[test]
fn the_dockerfile_runs_what_it_copies_as_a_non_root_user() -> Result<()> {
    let all = instructions()?;
    let (base, stage) = final_stage(&all);
    assert!(
        base.starts_with("gcr.io/distroless/static") || base == "scratch",
        "a static base with no shell: {base}"
    );
    // The build stage builds with the script `make image` checks, and its binary is copied in.
    let (binary, datasets_dest) = image_paths(&all)?;
    let entrypoint = stage
        .iter()
        .find(|(op, _)| op == "ENTRYPOINT")
        .context("ENTRYPOINT")?;
    assert_eq!(exec_form(&entrypoint.1), [binary.as_str()]);
    let health = stage
        .iter()
        .find(|(op, _)| op == "HEALTHCHECK")
        .context("HEALTHCHECK")?;
    let cmd = health.1.split("CMD ").nth(1).context("HEALTHCHECK CMD")?;
    assert_eq!(exec_form(cmd), [binary.as_str(), "health"]);
    // The datasets are where DATASETS says, and the port exposed is PORT.
    let env = env_of(&stage);
    assert_eq!(env["DATASETS"], datasets_dest);
    let expose = stage
        .iter()
        .find(|(op, _)| op == "EXPOSE")
        .context("EXPOSE")?;
    assert_eq!(env["PORT"], expose.1);
    // Not root, by number.
    let user = stage.iter().rfind(|(op, _)| op == "USER").context("USER")?;
    let uid: u32 = user.1.split(':').next().unwrap().parse()?;
    assert_ne!(uid, 0, "not root");
    // What the build copies in is not excluded from the context.
    let ignored = std::fs::read_to_string(sluice_testkit::workspace_root().join(".dockerignore"))?;
    for needed in ["datasets", "scripts", "crates", "Cargo.lock"] {
        assert!(
            !ignored.lines().any(|l| l.trim_end_matches('/') == needed),
            "{needed} is in the build context"
        );
    }
    Ok(())
}

/// Where the final stage copies the built binary and the datasets.
fn image_paths(all: &[(String, String)]) -> Result<(String, String)> {
    let build_run = all
        .iter()
        .find(|(op, args)| op == "RUN" && args.contains("scripts/build-static"))
        .context("the build stage runs scripts/build-static")?;
    let built = build_run.1.split_whitespace().last().unwrap_or_default();
    let (_, stage) = final_stage(all);
    let copied = |prefix: &str| {
        stage
            .iter()
            .filter(|(op, _)| op == "COPY")
            .find_map(|(_, a)| a.strip_prefix(prefix).map(str::to_owned))
    };
    Ok((
        copied(&format!("--from=build {built} ")).context("the binary is copied")?,
        copied("datasets ").context("datasets/ is copied")?,
    ))
}

/// The binary under test: `SLUICE_API_BIN` (the image's static build), else this build's.
fn binary() -> PathBuf {
    std::env::var_os("SLUICE_API_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice-api")))
}

/// `cmd` as the image's user (uid:gid from `USER`) when this test runs as root.
fn as_image_user(bin: &PathBuf, user: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        return Command::new(bin);
    }
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
    ]);
    c.arg(bin);
    c
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_as_the_image_runs_it_and_its_health_check_tells() -> Result<()> {
    let all = instructions()?;
    let (_, stage) = final_stage(&all);
    let mut env = env_of(&stage);
    let user = stage
        .iter()
        .rfind(|(op, _)| op == "USER")
        .unwrap()
        .1
        .clone();
    // The image's files, laid out as its COPY lines place them under a root of the test's own
    // that anyone may read (a checkout or a temp dir may not be readable by the image's user).
    let root = tempfile::tempdir()?;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
    let (binary_dest, datasets_dest) = image_paths(&all)?;
    let inside = |p: &str| root.path().join(p.trim_start_matches('/'));
    std::fs::create_dir_all(inside(&datasets_dest))?;
    for entry in std::fs::read_dir(sluice_testkit::workspace_root().join("datasets"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), inside(&datasets_dest).join(entry.file_name()))?;
    }
    let bin = inside(&binary_dest);
    std::fs::create_dir_all(bin.parent().context("a directory")?)?;
    std::fs::copy(binary(), &bin)?;
    // Readable and searchable by anyone whatever the umask, as an image's layers are.
    for dir in [
        inside(&datasets_dest),
        bin.parent().context("a directory")?.to_owned(),
    ] {
        for d in dir.ancestors().take_while(|d| d.starts_with(root.path())) {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    env.insert(
        "DATASETS".into(),
        inside(&env["DATASETS"]).display().to_string(),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    env.insert("PORT".into(), port.to_string());
    env.insert("API_VALIDATE_ONLY".into(), "true".into());
    let health = || {
        Command::new(&bin)
            .arg("health")
            .env("PORT", port.to_string())
            .status()
            .map(|s| s.success())
    };
    assert!(!health()?, "nothing serves yet: the check fails");

    let mut child = as_image_user(&bin, &user)
        .env_clear()
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let server = Running(child);
    // Its log says when it listens.
    let mut lines = BufReader::new(stdout).lines();
    let serving = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("serving"));
    ensure!(serving.is_some(), "the server logged that it serves");
    assert!(health()?, "the health check passes while it serves");

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let unicorn = serde_json::json!({"name": "Img", "rainbow": false, "color": "pink",
        "horn_length_cm": 3.5, "age_years": 1, "sighted_at": "2024-05-01T12:00:00+02:00",
        "location": {"lat": 10.0, "lon": 20.0}});
    let posted = http
        .post(format!("{url}/unicorns"))
        .header("content-type", "application/json")
        .body(unicorn.to_string())
        .send()
        .await?;
    assert_eq!(posted.status(), 201);
    assert_eq!(http.get(format!("{url}/docs")).send().await?.status(), 200);

    drop(server);
    assert!(!health()?, "the check fails once the server is gone");
    Ok(())
}

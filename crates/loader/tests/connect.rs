//! Connecting with the secret RDS manages for a master password: `username` and `password`
//! only, the endpoint from the environment (as the template sets it).

use sluice_loader::RdsSecret;
use sluice_loader::config::Endpoint;
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

#[tokio::test]
async fn a_username_and_password_secret_connects_with_the_endpoint_from_the_environment()
-> anyhow::Result<()> {
    let db = sluice_testkit::database().await?;
    let url: PgConnectOptions = db.url.parse()?;
    // The test database's password, if its URL has one (`scheme://user:password@host/…`).
    let userinfo = db
        .url
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
        .map(|(u, _)| u);
    let password = userinfo.and_then(|u| u.split_once(':')).map(|(_, p)| p);
    let secret = serde_json::json!({
        "username": url.get_username(),
        "password": password.unwrap_or_default(),
    });
    let secret = RdsSecret::parse(&secret.to_string())?;
    let endpoint = Endpoint {
        host: Some(url.get_host().to_owned()),
        port: Some(url.get_port()),
        name: url.get_database().map(str::to_owned),
    };
    let mut conn = secret.connect_options(&endpoint)?.connect().await?;
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(Some(name.as_str()), url.get_database());
    Ok(())
}

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use sluice_edge::Failure;
use sluice_loader::{Config, Loader, ObjectRef, ObjectStatus, S3Store};
use sluice_testkit::{Cluster, ClusterOptions};

fn config(vars: &[(&str, String)]) -> Result<Config> {
    Ok(Config::from_lookup(|k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })?)
}

/// A CA of the test's own (`ca.crt`) and a server certificate it signed for `localhost` only
/// (`server.crt`, `server.key`).
fn authority(dir: &Path, name: &str) -> Result<()> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("sluice test CA {name}"));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let server = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &ca)?;
    std::fs::write(dir.join("ca.crt"), ca.pem())?;
    std::fs::write(dir.join("server.crt"), server.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(())
}

/// Whether the loader's pool gets a connection to `host` with `DATABASE_CA_BUNDLE=ca` (which
/// implies verify-full), and whether that connection is encrypted.
async fn connects(host: &str, port: u16, ca: &Path) -> Result<bool> {
    let cfg = config(&[
        (
            "DATABASE_URL",
            format!("postgres://postgres@{host}:{port}/postgres"),
        ),
        ("DATABASE_CA_BUNDLE", ca.display().to_string()),
    ])?;
    let pool = sluice_loader::pool(&cfg).await?;
    match sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
    {
        Ok(ssl) => Ok(ssl),
        Err(e) => {
            eprintln!("{host}: {e}");
            Ok(false)
        }
    }
}

#[tokio::test]
async fn verify_full_checks_the_certificate_and_the_host_name() -> Result<()> {
    let ours = tempfile::tempdir()?;
    let theirs = tempfile::tempdir()?;
    authority(ours.path(), "ours")?;
    authority(theirs.path(), "theirs")?;
    let cluster = Cluster::start(ClusterOptions {
        passwords: false,
        tls_dir: Some(ours.path().to_owned()),
    })?;
    let (ca, other_ca) = (ours.path().join("ca.crt"), theirs.path().join("ca.crt"));
    assert!(
        connects("localhost", cluster.port, &ca).await?,
        "the certificate's own name and CA"
    );
    // The same server by another name than the certificate's: refused.
    assert!(!connects("127.0.0.1", cluster.port, &ca).await?);
    // A certificate from a CA we do not trust: refused.
    assert!(!connects("localhost", cluster.port, &other_ca).await?);
    Ok(())
}

#[tokio::test]
async fn a_rotated_password_is_read_again_from_the_secret() -> Result<()> {
    let cluster = Cluster::start(ClusterOptions {
        passwords: true,
        tls_dir: None,
    })?;
    let admin = sqlx::PgPool::connect(&cluster.url).await?;
    for sql in [
        "CREATE ROLE rotating LOGIN PASSWORD 'first-password'",
        "CREATE DATABASE rot OWNER rotating",
    ] {
        sqlx::query(sql).execute(&admin).await?;
    }
    let aws = sluice_testkit::moto()?.sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let secret = |password: &str| {
        serde_json::json!({"username": "rotating", "password": password,
            "host": "127.0.0.1", "port": cluster.port, "dbname": "rot"})
        .to_string()
    };
    let arn = secrets
        .create_secret()
        .name(sluice_testkit::unique_name("db"))
        .secret_string(secret("first-password"))
        .send()
        .await?
        .arn()
        .unwrap_or_default()
        .to_owned();
    let mappings = tempfile::tempdir()?;
    std::fs::write(mappings.path().join("sales.toml"), crate::common::SALES)?;
    let cfg = Arc::new(config(&[
        ("DATABASE_SECRET_ARN", arn.clone()),
        ("MAPPINGS", mappings.path().display().to_string()),
    ])?);
    let pool = sluice_loader::pool_with(&cfg, Some(&aws)).await?;
    let loader = Loader::new(pool, cfg).with_aws(aws);
    let bucket = sluice_testkit::bucket().await?;
    let store = S3Store {
        client: bucket.client.clone(),
    };
    let load = |key: &'static str, from: u32| {
        let (loader, store, bucket) = (&loader, &store, &bucket);
        async move {
            bucket
                .put(
                    key,
                    crate::common::sales_csv(from..from + 10, "NEW", "2024-01-01T00:00:00Z"),
                )
                .await?;
            let object = ObjectRef {
                bucket: bucket.name.clone(),
                key: key.into(),
                ..ObjectRef::default()
            };
            anyhow::Ok(loader.load(store, &object).await)
        }
    };
    assert_eq!(
        load("raw/sales/a.csv", 0).await??.status,
        ObjectStatus::Loaded
    );
    // The password rotates in the database; the pool's sessions end (a new container, an idle
    // timeout) and new logins with the old password are refused.
    sqlx::query("ALTER ROLE rotating PASSWORD 'second-password'")
        .execute(&admin)
        .await?;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'rotating'",
    )
    .execute(&admin)
    .await?;
    // Until the secret has the new password (rotation is under way), a refused login may pass
    // later: retryable, never the dead-letter queue.
    let e = load("raw/sales/b.csv", 10).await?.unwrap_err();
    assert_eq!(e.kind, Failure::Retryable, "{e}");
    assert!(
        e.to_string().contains("28P01") || e.to_string().contains("password"),
        "{e}"
    );
    secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(secret("second-password"))
        .send()
        .await?;
    let s = load("raw/sales/b.csv", 10).await??;
    assert_eq!((s.status, s.rows.inserted), (ObjectStatus::Loaded, 10));
    assert!(
        s.attempts >= 2,
        "a refused login, then the secret read again"
    );
    let rot = format!("postgres://postgres@127.0.0.1:{}/rot", cluster.port);
    let rot = sqlx::PgPool::connect(&rot).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sales")
        .fetch_one(&rot)
        .await?;
    assert_eq!(n, 20);
    Ok(())
}

#[tokio::test]
async fn the_salt_comes_from_its_secret_unless_set() -> Result<()> {
    let aws = sluice_testkit::moto()?.sdk_config().await;
    let arn = aws_sdk_secretsmanager::Client::new(&aws)
        .create_secret()
        .name(sluice_testkit::unique_name("salt"))
        .secret_string("generated-salt-48-characters")
        .send()
        .await?
        .arn()
        .unwrap_or_default()
        .to_owned();
    let url = ("DATABASE_URL", "postgres://u@127.0.0.1/db".to_owned());
    let mut cfg = config(&[url.clone(), ("REDACT_SALT_SECRET_ARN", arn.clone())])?;
    assert!(!format!("{cfg:?}").contains("generated-salt"));
    sluice_loader::connect::read_secrets(&mut cfg, &aws).await?;
    assert_eq!(cfg.redact_salt.expose(), "generated-salt-48-characters");
    let mut cfg = config(&[
        url,
        ("REDACT_SALT_SECRET_ARN", arn),
        ("REDACT_SALT", "set-by-hand".to_owned()),
    ])?;
    sluice_loader::connect::read_secrets(&mut cfg, &aws).await?;
    assert_eq!(cfg.redact_salt.expose(), "set-by-hand");
    Ok(())
}

//! Connections: the pool built once per container, its options (from `DATABASE_URL` or a
//! Secrets Manager secret), their renewal when the secret's password rotates, and the other
//! secrets the loader reads at start.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sluice_loader::{Config, connect};
//!
//! let aws = aws_config::load_from_env().await;
//! let mut config = Config::from_env()?;
//! connect::read_secrets(&mut config, &aws).await?; // REDACT_SALT_SECRET_ARN
//! let pool = connect::pool_with(&config, Some(&aws)).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use aws_config::SdkConfig;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::{Config, ConfigError, DatabaseSource, RdsSecret, Secret, apply_tls};

/// A small pool, built once per container: connections are made lazily (a database that is
/// down fails the invocation as retryable, not the cold start) and checked before use, so a
/// broken one is replaced. A secret is read with the environment's AWS configuration.
pub async fn pool(config: &Config) -> Result<PgPool, ConfigError> {
    pool_with(config, None).await
}

/// [`pool`], reading a secret with `aws` (the environment's configuration when `None`).
pub async fn pool_with(config: &Config, aws: Option<&SdkConfig>) -> Result<PgPool, ConfigError> {
    let opts = connect_options(config, aws).await?;
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
        .connect_lazy_with(opts))
}

/// Connection options from the URL, or from the secret read now (so a rotated password is
/// picked up by calling this again).
pub(crate) async fn connect_options(
    config: &Config,
    aws: Option<&SdkConfig>,
) -> Result<PgConnectOptions, ConfigError> {
    let base = match &config.database {
        DatabaseSource::Url(url) => url.expose().parse::<PgConnectOptions>().map_err(|e| {
            ConfigError::Invalid {
                var: "DATABASE_URL",
                // sqlx's message may quote the URL; never echo it.
                message: format!(
                    "not a Postgres URL ({})",
                    e.to_string().replace(url.expose(), "***")
                ),
            }
        })?,
        DatabaseSource::SecretArn(arn) => {
            let secret = read_secret(aws, "DATABASE_SECRET_ARN", arn).await?;
            RdsSecret::parse(secret.expose())?.connect_options(&config.endpoint)?
        }
    };
    // Staging tables are temporary: keep them in memory (the default 8 MB spills to disk).
    Ok(apply_tls(base, &config.tls).options([("temp_buffers", "64MB")]))
}

/// Reads the secrets named by ARN that the configuration holds as values: the redaction salt
/// (`REDACT_SALT_SECRET_ARN`, the whole secret string) unless `REDACT_SALT` is set.
pub async fn read_secrets(config: &mut Config, aws: &SdkConfig) -> Result<(), ConfigError> {
    if let Some(arn) = &config.redact_salt_secret
        && config.redact_salt.expose().is_empty()
    {
        config.redact_salt = read_secret(Some(aws), "REDACT_SALT_SECRET_ARN", arn).await?;
    }
    Ok(())
}

async fn read_secret(
    aws: Option<&SdkConfig>,
    var: &'static str,
    arn: &str,
) -> Result<Secret, ConfigError> {
    let loaded;
    let aws = match aws {
        Some(aws) => aws,
        None => {
            loaded = aws_config::load_from_env().await;
            &loaded
        }
    };
    sluice_edge::secret_string(aws, arn)
        .await
        .map_err(|e| ConfigError::Invalid {
            var,
            message: e.to_string(),
        })
}

/// The server refused the credentials: a wrong password (28P01, as after a rotation) or a
/// login it does not allow (28000).
pub fn is_auth_failure(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("28P01" | "28000")))
}

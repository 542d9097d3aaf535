//! # sluice-edge
//!
//! What the Lambdas share at their edges, so each `main.rs` stays a few lines of wiring:
//!
//! - [`Secret`]: a string that never prints (`Debug` and `Display` show `***`);
//! - [`secret_string`]: one Secrets Manager read;
//! - [`layout`]: every key in the bucket (`raw/`, `state/`, `quarantine/`, `lake/`, …), built
//!   and parsed in one place;
//! - [`s3_client`]: the S3 client, pointed at `S3_ENDPOINT_URL` (path-style) when it is set;
//! - [`emf_line`]: one CloudWatch embedded-metric-format line, and [`report`], which logs an
//!   invocation's summary and prints its metrics;
//! - [`HandlerError`]: a failed invocation, which Lambda sees as `sluice.Retryable` or
//!   `sluice.Permanent` ([`Failure`]).
//!
//! ```
//! use sluice_edge::{Secret, emf_line};
//!
//! let s = Secret::new("hunter2");
//! assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
//! let line = emf_line("ingest", &[("Records", 10, "Count")]);
//! assert_eq!(line["Records"], 10);
//! ```

use std::fmt;

pub mod layout;

use serde_json::{Value, json};

/// A secret (a password, a token, a database URL with a password): never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A Secrets Manager read that failed, naming the secret (never its value).
#[derive(Debug, thiserror::Error)]
#[error("GetSecretValue {arn}: {message}")]
pub struct SecretError {
    pub arn: String,
    pub message: String,
}

/// The `SecretString` of a Secrets Manager secret.
pub async fn secret_string(aws: &aws_config::SdkConfig, arn: &str) -> Result<Secret, SecretError> {
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError {
            arn: arn.to_owned(),
            message: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
    Ok(Secret::new(out.secret_string().unwrap_or_default()))
}

/// The S3 client for `aws`. An endpoint set on `aws` itself (`AWS_ENDPOINT_URL`, or a test's
/// stand-in) is used with path-style addressing; else `S3_ENDPOINT_URL` when that is set (a local
/// S3-compatible endpoint); else AWS.
pub fn s3_client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let mut s3 = aws_sdk_s3::config::Builder::from(aws);
    if aws.endpoint_url().is_some() {
        s3 = s3.force_path_style(true);
    } else if let Ok(url) = std::env::var("S3_ENDPOINT_URL")
        && !url.is_empty()
    {
        s3 = s3.endpoint_url(url).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(s3.build())
}

/// Whether a failure may pass on a later try: what Lambda's error type says, so that a retry
/// policy or an alarm can tell the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Failure {
    /// The database, the store or the API was unreachable or busy: try again later.
    Retryable,
    /// Bad input or configuration: another try fails the same way.
    Permanent,
}

impl Failure {
    /// `Retryable` when `retryable`, else `Permanent`.
    pub fn when(retryable: bool) -> Self {
        if retryable {
            Self::Retryable
        } else {
            Self::Permanent
        }
    }
    pub fn is_retryable(self) -> bool {
        self == Self::Retryable
    }
    /// Lambda's `errorType`: `sluice.Retryable` or `sluice.Permanent`.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::Retryable => "sluice.Retryable",
            Self::Permanent => "sluice.Permanent",
        }
    }
}

/// A failed invocation: the message and kind Lambda is told, and the summary of what was done
/// before it failed (`S`, the function's own summary type).
///
/// ```
/// use sluice_edge::{Failure, HandlerError};
///
/// let e: HandlerError<()> = HandlerError::new("1 of 2 objects failed", Failure::Retryable);
/// let d: lambda_runtime::Diagnostic = e.into();
/// assert_eq!(d.error_type, "sluice.Retryable");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError<S: fmt::Debug> {
    pub message: String,
    pub kind: Failure,
    pub summary: Option<Box<S>>,
}

impl<S: fmt::Debug> HandlerError<S> {
    /// A failure before anything was done.
    pub fn new(message: impl Into<String>, kind: Failure) -> Self {
        Self {
            message: message.into(),
            kind,
            summary: None,
        }
    }
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl<S: fmt::Debug> From<HandlerError<S>> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError<S>) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.kind.error_type().into(),
            error_message: e.message,
        }
    }
}

/// The end of an invocation, failed or not: its summary as one structured log line, then the
/// summary's EMF line (`emf`) on stdout, where CloudWatch picks up metrics.
pub fn report<S: serde::Serialize + fmt::Debug>(
    result: &Result<S, HandlerError<S>>,
    emf: impl FnOnce(&S) -> Value,
) {
    let summary = match result {
        Ok(s) => Some(s),
        Err(e) => e.summary.as_deref(),
    };
    let Some(summary) = summary else { return };
    match serde_json::to_string(summary) {
        Ok(json) => tracing::info!(summary = %json, "invocation done"),
        Err(e) => tracing::error!(error = %e, "summary not serialisable"),
    }
    println!("{}", emf(summary));
}

/// One CloudWatch embedded-metric-format line: namespace `sluice`, dimension `Function`, one
/// `(name, value, unit)` per metric.
pub fn emf_line(function: &str, metrics: &[(&str, u64, &str)]) -> Value {
    let mut line = json!({
        "_aws": {
            "Timestamp": jiff::Timestamp::now().as_millisecond(),
            "CloudWatchMetrics": [{
                "Namespace": "sluice",
                "Dimensions": [["Function"]],
                "Metrics": metrics.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        },
        "Function": function,
    });
    for (n, v, _) in metrics {
        line[*n] = json!(v);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_it_carries() {
        let line = emf_line(
            "loader",
            &[("RowsRead", 10, "Count"), ("DurationMs", 5, "Milliseconds")],
        );
        let decl = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(decl["Namespace"], "sluice");
        assert_eq!(decl["Dimensions"], json!([["Function"]]));
        assert_eq!(line["Function"], "loader");
        for m in decl["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(line[name].is_u64(), "{name} has a value");
        }
        assert_eq!(line["DurationMs"], 5);
        assert!(line["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    }

    #[test]
    fn diagnostics_tell_retryable_from_permanent() {
        for (retryable, ty) in [(true, "sluice.Retryable"), (false, "sluice.Permanent")] {
            let d: lambda_runtime::Diagnostic =
                HandlerError::<()>::new("m", Failure::when(retryable)).into();
            assert_eq!((d.error_type.as_str(), d.error_message.as_str()), (ty, "m"));
        }
    }
}

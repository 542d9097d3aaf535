//! Where the lake is: a directory that holds a bucket's keys as paths, or a bucket read over S3
//! (AWS, or the local endpoint at `S3_ENDPOINT_URL`) with credentials from aws-config's chain,
//! the one every other sluice command uses (profiles and SSO included, which `object_store`'s own
//! chain does not read).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use datafusion::prelude::SessionContext;
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::{CredentialProvider, ObjectStore};

use crate::QueryError;

/// The lake's root.
///
/// ```
/// use sluice_query::Location;
///
/// let here = Location::Dir("target/local-s3/sluice-local".into());
/// assert!(here.url().unwrap().starts_with("file:///"));
/// ```
#[derive(Debug, Clone)]
pub enum Location {
    /// A directory laid out as the bucket (`<dir>/lake/unicorns/dt=…/<id>.parquet`): what
    /// `sluice s3` and the tests' endpoint serve, one directory per bucket.
    Dir(PathBuf),
    /// A bucket, read through `store`.
    Bucket {
        bucket: String,
        store: Arc<dyn ObjectStore>,
    },
}

impl Location {
    /// `bucket` over S3: `endpoint` (path-style, plain HTTP allowed) when given, else AWS in the
    /// configuration's region; credentials from the configuration's provider.
    pub fn bucket(
        bucket: &str,
        aws: &aws_config::SdkConfig,
        endpoint: Option<&str>,
    ) -> Result<Location, QueryError> {
        let region = aws.region().map_or("us-east-1", |r| r.as_ref());
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region);
        if let Some(provider) = aws.credentials_provider() {
            builder = builder.with_credentials(Arc::new(SdkCredentials::new(provider)));
        }
        if let Some(url) = endpoint {
            builder = builder
                .with_endpoint(url)
                .with_allow_http(url.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| QueryError::Location {
            location: format!("s3://{bucket}"),
            message: e.to_string(),
        })?;
        Ok(Location::Bucket {
            bucket: bucket.to_owned(),
            store: Arc::new(store),
        })
    }

    /// The root as a URL with a trailing `/`: `file:///…/` or `s3://<bucket>/`.
    pub fn url(&self) -> Result<String, QueryError> {
        match self {
            Location::Dir(dir) => {
                let absolute = absolute(dir)?;
                let url = url::Url::from_directory_path(&absolute).map_err(|()| {
                    QueryError::Location {
                        location: dir.display().to_string(),
                        message: "not a directory path".into(),
                    }
                })?;
                Ok(url.to_string())
            }
            Location::Bucket { bucket, .. } => Ok(format!("s3://{bucket}/")),
        }
    }

    /// Makes the root readable by `ctx` (a bucket's store; a directory needs nothing).
    pub(crate) fn register(&self, ctx: &SessionContext) -> Result<(), QueryError> {
        if let Location::Bucket { store, .. } = self {
            let url = url::Url::parse(&self.url()?).map_err(|e| QueryError::Location {
                location: self.url().unwrap_or_default(),
                message: e.to_string(),
            })?;
            ctx.register_object_store(&url, store.clone());
        }
        Ok(())
    }
}

fn absolute(dir: &Path) -> Result<PathBuf, QueryError> {
    std::path::absolute(dir).map_err(|e| QueryError::Location {
        location: dir.display().to_string(),
        message: e.to_string(),
    })
}

/// aws-config's credentials for `object_store`, kept until five minutes before they expire.
#[derive(Debug)]
struct SdkCredentials {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl SdkCredentials {
    fn new(provider: SharedCredentialsProvider) -> Self {
        SdkCredentials {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

#[async_trait::async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|at| SystemTime::now() + REFRESH_BEFORE_EXPIRY < at);
            if fresh {
                return Ok(credential.clone());
            }
        }
        let c = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            }
        })?;
        let credential = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_owned(),
            secret_key: c.secret_access_key().to_owned(),
            token: c.session_token().map(str::to_owned),
        });
        *cached = Some((credential.clone(), c.expiry()));
        Ok(credential)
    }
}

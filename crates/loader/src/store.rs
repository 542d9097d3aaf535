//! Where objects come from and where quarantine files go: S3 (the Lambda) or local files (the
//! CLI and the benchmark). The one port of the loader, because both implementations exist.

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use aws_sdk_s3::primitives::ByteStream;

/// A blocking reader over an object's bytes (gzip already undone), used on a blocking thread.
pub type ObjectReader = Box<dyn BufRead + Send>;

/// What the store says about the object it opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<jiff::Timestamp>,
    pub size: Option<u64>,
}

/// A store error; `retryable` when trying again may help (network, throttling, 5xx).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub message: String,
    pub retryable: bool,
}

/// An I/O error raised while reading the object's bytes from the store (not while decoding
/// them): the transfer broke, so a retry may succeed.
#[derive(Debug, thiserror::Error)]
#[error("reading the object: {0}")]
pub struct TransferError(#[source] pub io::Error);

/// True if `e` came from the transfer rather than from the bytes themselves.
pub fn is_transfer_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TransferError>())
}

struct Transfer<R>(R);

impl<R: Read> Read for Transfer<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), TransferError(e)))
    }
}

/// Wraps raw object bytes: marks transfer errors and undoes gzip when the bytes start with the
/// gzip magic (whatever the key's suffix says).
pub fn decode<R: Read + Send + 'static>(raw: R) -> io::Result<ObjectReader> {
    let mut buffered = BufReader::with_capacity(256 * 1024, Transfer(raw));
    let gz = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::read::MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    })
}

/// Objects in and quarantine files out.
pub trait Store: Send + Sync {
    /// Opens an object for reading (the reader is for a blocking thread).
    fn open(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<(ObjectMeta, Box<dyn Read + Send>), StoreError>> + Send;

    /// Writes a finished quarantine file.
    fn put_file(
        &self,
        bucket: &str,
        key: &str,
        file: std::fs::File,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// S3 through aws-sdk-s3.
#[derive(Debug, Clone)]
pub struct S3Store {
    pub client: aws_sdk_s3::Client,
}

fn s3_error<E>(what: String, e: aws_sdk_s3::error::SdkError<E>) -> StoreError
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + Send + Sync + 'static,
{
    use aws_sdk_s3::error::SdkError;
    let (retryable, detail) = match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("").to_owned();
            let retry = status >= 500 || status == 429 || code == "SlowDown";
            (
                retry,
                format!("{status} {code} {}", se.err().message().unwrap_or_default()),
            )
        }
        SdkError::ConstructionFailure(_) => (false, format!("{e:?}")),
        _ => (true, aws_sdk_s3::error::DisplayErrorContext(&e).to_string()),
    };
    StoreError {
        message: format!("{what}: {detail}"),
        retryable,
    }
}

impl Store for S3Store {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(ObjectMeta, Box<dyn Read + Send>), StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| s3_error(format!("GET s3://{bucket}/{key}"), e))?;
        let meta = ObjectMeta {
            version_id: out
                .version_id()
                .filter(|v| !v.is_empty() && *v != "null")
                .map(str::to_owned),
            etag: out.e_tag().map(str::to_owned),
            last_modified: out
                .last_modified()
                .and_then(|t| jiff::Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()),
            size: out.content_length().and_then(|n| u64::try_from(n).ok()),
        };
        let body = out.body.into_async_read();
        let reader = tokio_util::io::SyncIoBridge::new(body);
        Ok((meta, Box::new(reader)))
    }

    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        file: std::fs::File,
    ) -> Result<(), StoreError> {
        let what = || format!("PUT s3://{bucket}/{key}");
        let body = ByteStream::read_from()
            .file(tokio::fs::File::from_std(file))
            .build()
            .await
            .map_err(|e| StoreError {
                message: format!("{}: {e}", what()),
                retryable: false,
            })?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("text/csv; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|e| s3_error(what(), e))?;
        Ok(())
    }
}

/// Local files: the key is a path (the bucket is ignored on read); quarantine files go under
/// `quarantine_dir`.
#[derive(Debug, Clone)]
pub struct LocalStore {
    pub quarantine_dir: PathBuf,
}

impl Store for LocalStore {
    async fn open(
        &self,
        _bucket: &str,
        key: &str,
        _version_id: Option<&str>,
    ) -> Result<(ObjectMeta, Box<dyn Read + Send>), StoreError> {
        let fail = |e: io::Error| StoreError {
            message: format!("{key}: {e}"),
            retryable: false,
        };
        let file = std::fs::File::open(key).map_err(fail)?;
        let md = file.metadata().map_err(fail)?;
        let modified = md
            .modified()
            .ok()
            .and_then(|m| jiff::Timestamp::try_from(m).ok());
        let meta = ObjectMeta {
            version_id: None,
            // Size and modification time: a changed file loads again.
            etag: Some(format!(
                "{}-{}",
                md.len(),
                modified.map(|m| m.as_nanosecond()).unwrap_or_default()
            )),
            last_modified: modified,
            size: Some(md.len()),
        };
        Ok((meta, Box::new(file)))
    }

    async fn put_file(
        &self,
        _bucket: &str,
        key: &str,
        mut file: std::fs::File,
    ) -> Result<(), StoreError> {
        let path = self.quarantine_dir.join(key);
        let fail = |e: io::Error| StoreError {
            message: format!("{}: {e}", path.display()),
            retryable: false,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        let mut out = std::fs::File::create(&path).map_err(fail)?;
        io::copy(&mut file, &mut out).map_err(fail)?;
        Ok(())
    }
}

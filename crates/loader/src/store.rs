//! Where objects come from and where quarantine files go: S3 (the Lambda) or local files (the
//! CLI and the benchmark). The one port of the loader, because both implementations exist; one
//! conformance suite (`tests/store.rs`) runs against both.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;

use crate::event::ObjectRef;

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

/// What kind of store failure this is: what the loader may do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// No such bucket, object or version (S3's 404; a missing file). Never inferred from a
    /// 403: where a role lacks `s3:ListBucket`, S3 answers a missing key with AccessDenied.
    NotFound,
    /// The network, throttling or a 5xx: trying again may help.
    Transient,
    /// Anything else (denied, invalid): trying again will not help.
    Other,
}

/// A store operation that failed: what it was (`GET s3://bucket/key`, a path) and why.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    /// The operation and the object.
    pub what: String,
    pub detail: String,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, what: impl Into<String>, detail: impl ToString) -> Self {
        Self {
            kind,
            what: what.into(),
            detail: detail.to_string(),
        }
    }
    pub fn is_retryable(&self) -> bool {
        self.kind == StoreErrorKind::Transient
    }
    fn io(what: String, e: &io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::NotFound => StoreErrorKind::NotFound,
            io::ErrorKind::Interrupted | io::ErrorKind::TimedOut => StoreErrorKind::Transient,
            _ => StoreErrorKind::Other,
        };
        Self::new(kind, what, e)
    }
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
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let kind = if status >= 500 || status == 429 || code == "SlowDown" {
                StoreErrorKind::Transient
            } else if matches!(code, "NoSuchKey" | "NoSuchVersion" | "NoSuchBucket") {
                StoreErrorKind::NotFound
            } else {
                StoreErrorKind::Other
            };
            let message = se.err().message().unwrap_or_default();
            StoreError::new(kind, what, format!("{status} {code} {message}"))
        }
        SdkError::ConstructionFailure(_) => {
            StoreError::new(StoreErrorKind::Other, what, format!("{e:?}"))
        }
        _ => StoreError::new(
            StoreErrorKind::Transient,
            what,
            aws_sdk_s3::error::DisplayErrorContext(&e),
        ),
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
            .map_err(|e| StoreError::new(StoreErrorKind::Other, what(), e))?;
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

/// Local files, in S3's terms: a bucket is a directory, a key a relative path in it (no `..`).
/// The ETag is the SHA-256 of the content (`sha256:<hex>`), so the same bytes are the same
/// version wherever they lie and whenever they were written. Local files have no versions: asking
/// for one is an error, as it is on an S3 bucket without versioning.
///
/// ```
/// use sluice_loader::LocalStore;
///
/// let o = LocalStore::object("./data/2024/sales.csv")?;
/// assert_eq!((o.bucket.as_str(), o.key.as_str()), (".", "data/2024/sales.csv"));
/// let o = LocalStore::object("/srv/data/sales.csv")?;
/// assert_eq!((o.bucket.as_str(), o.key.as_str()), ("/", "srv/data/sales.csv"));
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalStore;

impl LocalStore {
    /// The object a file path names: bucket `.` and the path for a relative path, bucket `/`
    /// and the path below the root for an absolute one (a path that climbs with `..` is made
    /// absolute first).
    pub fn object(path: impl AsRef<Path>) -> io::Result<ObjectRef> {
        use std::path::Component::{CurDir, Normal, RootDir};
        let path = path.as_ref();
        let mut rel: PathBuf = path.components().filter(|c| *c != CurDir).collect();
        if !rel.components().all(|c| matches!(c, Normal(_) | RootDir)) {
            rel = path.canonicalize()?;
        }
        let (bucket, key) = match rel.strip_prefix("/") {
            Ok(below_root) => ("/", below_root),
            Err(_) => (".", rel.as_path()),
        };
        Ok(ObjectRef {
            bucket: bucket.to_owned(),
            key: key.display().to_string(),
            ..ObjectRef::default()
        })
    }

    fn path(bucket: &str, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        let plain = rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if key.is_empty() || !plain {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("{bucket}/{key}"),
                "a key is a relative path without '..'",
            ));
        }
        Ok(Path::new(bucket).join(rel))
    }
}

/// `sha256:<hex>` of a file's content, and its length.
fn sha256_of(file: &mut std::fs::File) -> io::Result<(String, u64)> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let n = io::copy(file, &mut h)?;
    io::Seek::rewind(file)?;
    Ok((format!("sha256:{:x}", h.finalize()), n))
}

impl Store for LocalStore {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(ObjectMeta, Box<dyn Read + Send>), StoreError> {
        let path = Self::path(bucket, key)?;
        let fail = |e: io::Error| StoreError::io(path.display().to_string(), &e);
        if let Some(v) = version_id {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                path.display().to_string(),
                format!("no version {v:?}: local files have no versions"),
            ));
        }
        let mut file = std::fs::File::open(&path).map_err(fail)?;
        let modified = file.metadata().map_err(fail)?.modified().ok();
        let (etag, size) = sha256_of(&mut file).map_err(fail)?;
        let meta = ObjectMeta {
            version_id: None,
            etag: Some(etag),
            last_modified: modified.and_then(|m| jiff::Timestamp::try_from(m).ok()),
            size: Some(size),
        };
        Ok((meta, Box::new(file)))
    }

    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        mut file: std::fs::File,
    ) -> Result<(), StoreError> {
        let path = Self::path(bucket, key)?;
        let fail = |e: io::Error| StoreError::io(path.display().to_string(), &e);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        let mut out = std::fs::File::create(&path).map_err(fail)?;
        io::copy(&mut file, &mut out).map_err(fail)?;
        Ok(())
    }
}

/// Objects from one store, quarantine files to another (the CLI reads local files and may
/// quarantine to S3, or the other way round).
#[derive(Debug, Clone, Copy)]
pub struct Routed<'a, R, W> {
    pub objects: &'a R,
    pub quarantine: &'a W,
}

impl<R: Store, W: Store> Store for Routed<'_, R, W> {
    fn open(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<(ObjectMeta, Box<dyn Read + Send>), StoreError>> + Send {
        self.objects.open(bucket, key, version_id)
    }

    fn put_file(
        &self,
        bucket: &str,
        key: &str,
        file: std::fs::File,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.quarantine.put_file(bucket, key, file)
    }
}

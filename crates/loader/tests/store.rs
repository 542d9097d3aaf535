//! One conformance suite for the `Store` port, run against every implementation (S3 through
//! `aws-sdk-s3` on a real S3 protocol endpoint, and local files), in the style of
//! `object_store`'s integration tests: what one store does, the other must do too.

use std::io::{Read, Write};

use anyhow::{Result, ensure};
use sluice_loader::store::decode;
use sluice_loader::{LocalStore, ObjectMeta, S3Store, Store, StoreErrorKind};
use sluice_testkit::TestBucket;

/// A store under test, and how to write an object into it behind its back.
trait Backend {
    type Store: Store;
    fn store(&self) -> &Self::Store;
    fn bucket(&self) -> &str;
    fn put(&self, key: &str, body: &[u8]) -> impl Future<Output = Result<()>>;
}

struct S3 {
    bucket: TestBucket,
    store: S3Store,
}

impl Backend for S3 {
    type Store = S3Store;
    fn store(&self) -> &S3Store {
        &self.store
    }
    fn bucket(&self) -> &str {
        &self.bucket.name
    }
    async fn put(&self, key: &str, body: &[u8]) -> Result<()> {
        self.bucket.put(key, body.to_vec()).await
    }
}

struct Local {
    dir: tempfile::TempDir,
    bucket: String,
}

impl Backend for Local {
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &LocalStore
    }
    fn bucket(&self) -> &str {
        &self.bucket
    }
    async fn put(&self, key: &str, body: &[u8]) -> Result<()> {
        let path = self.dir.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap())?;
        Ok(std::fs::write(path, body)?)
    }
}

async fn read<B: Backend>(
    b: &B,
    key: &str,
    version: Option<&str>,
) -> Result<(ObjectMeta, Vec<u8>)> {
    let (meta, mut r) = b.store().open(b.bucket(), key, version).await?;
    let mut bytes = Vec::new();
    tokio::task::block_in_place(|| r.read_to_end(&mut bytes))?;
    Ok((meta, bytes))
}

const CSV: &[u8] = b"id,v\n1,a\n2,b\n";

/// Every check, in order, against one backend.
async fn conforms<B: Backend>(b: &B) -> Result<()> {
    reads_what_was_written(b).await?;
    a_missing_object_is_not_found(b).await?;
    etags_follow_the_content(b).await?;
    versions_are_never_made_up(b).await?;
    gzip_is_told_by_its_bytes(b).await?;
    quarantine_files_read_back(b).await?;
    Ok(())
}

async fn reads_what_was_written<B: Backend>(b: &B) -> Result<()> {
    b.put("raw/s/a.csv", CSV).await?;
    let (meta, bytes) = read(b, "raw/s/a.csv", None).await?;
    ensure!(
        bytes == CSV,
        "bytes read back: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    ensure!(meta.size == Some(CSV.len() as u64), "size: {:?}", meta.size);
    let modified = meta.last_modified.expect("a last-modified time");
    let age = jiff::Timestamp::now().duration_since(modified);
    ensure!(
        age.as_secs() < 3600,
        "last modified {modified}: not the time of the write"
    );
    Ok(())
}

async fn a_missing_object_is_not_found<B: Backend>(b: &B) -> Result<()> {
    let Err(e) = b.store().open(b.bucket(), "raw/s/missing.csv", None).await else {
        anyhow::bail!("a missing object opened");
    };
    ensure!(e.kind == StoreErrorKind::NotFound, "{e}: {:?}", e.kind);
    ensure!(!e.is_retryable(), "{e}");
    ensure!(
        e.to_string().contains("raw/s/missing.csv"),
        "names the key: {e}"
    );
    Ok(())
}

async fn etags_follow_the_content<B: Backend>(b: &B) -> Result<()> {
    b.put("raw/s/e.csv", CSV).await?;
    b.put("raw/s/same.csv", CSV).await?;
    let (first, _) = read(b, "raw/s/e.csv", None).await?;
    let (again, _) = read(b, "raw/s/e.csv", None).await?;
    let (twin, _) = read(b, "raw/s/same.csv", None).await?;
    let etag = first.etag.clone().expect("an ETag");
    ensure!(!etag.is_empty());
    ensure!(
        again.etag == first.etag,
        "the same bytes read twice: one ETag"
    );
    ensure!(
        twin.etag == first.etag,
        "the same bytes under another key: the same ETag"
    );
    b.put("raw/s/e.csv", b"id,v\n1,changed\n").await?;
    let (changed, _) = read(b, "raw/s/e.csv", None).await?;
    ensure!(changed.etag != first.etag, "new content, new ETag ({etag})");
    Ok(())
}

async fn versions_are_never_made_up<B: Backend>(b: &B) -> Result<()> {
    b.put("raw/s/v.csv", CSV).await?;
    let (meta, _) = read(b, "raw/s/v.csv", None).await?;
    ensure!(
        meta.version_id.is_none(),
        "no versioning: {:?}",
        meta.version_id
    );
    // Reading "the version the first read saw" where there are no versions: the object.
    let (_, bytes) = read(b, "raw/s/v.csv", meta.version_id.as_deref()).await?;
    ensure!(bytes == CSV);
    // A version the store does not have is an error, never some other version's bytes.
    let Err(e) = b
        .store()
        .open(b.bucket(), "raw/s/v.csv", Some("3HL4kqtJlcpXroDTDmJ"))
        .await
    else {
        anyhow::bail!("an unknown version id opened");
    };
    ensure!(!e.is_retryable(), "{e}");
    Ok(())
}

async fn gzip_is_told_by_its_bytes<B: Backend>(b: &B) -> Result<()> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(CSV)?;
    let gz = gz.finish()?;
    // Gzip under a plain name, and plain bytes under a .gz name: both read as the CSV.
    b.put("raw/s/g.csv", &gz).await?;
    b.put("raw/s/p.csv.gz", CSV).await?;
    for key in ["raw/s/g.csv", "raw/s/p.csv.gz"] {
        let (meta, raw) = b.store().open(b.bucket(), key, None).await?;
        let mut csv = Vec::new();
        tokio::task::block_in_place(|| decode(raw)?.read_to_end(&mut csv))?;
        ensure!(csv == CSV, "{key}: {:?}", String::from_utf8_lossy(&csv));
        let stored = if key.ends_with(".gz") {
            CSV.len()
        } else {
            gz.len()
        };
        ensure!(meta.size == Some(stored as u64), "{key}: the stored size");
    }
    Ok(())
}

async fn quarantine_files_read_back<B: Backend>(b: &B) -> Result<()> {
    let mut file = tempfile::tempfile()?;
    file.write_all(b"_line,_error,id\n2,bad,x\n")?;
    std::io::Seek::rewind(&mut file)?;
    b.store()
        .put_file(b.bucket(), "quarantine/raw/s/a.csv", file)
        .await?;
    let (_, bytes) = read(b, "quarantine/raw/s/a.csv", None).await?;
    ensure!(bytes == b"_line,_error,id\n2,bad,x\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_store_conforms() -> Result<()> {
    let bucket = sluice_testkit::bucket().await?;
    let store = S3Store {
        client: bucket.client.clone(),
    };
    conforms(&S3 { bucket, store }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_store_conforms() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bucket = dir.path().display().to_string();
    conforms(&Local { dir, bucket }).await
}

#[tokio::test]
async fn local_keys_stay_inside_their_bucket() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bucket = dir.path().join("b");
    std::fs::create_dir_all(&bucket)?;
    std::fs::write(dir.path().join("secret.csv"), CSV)?;
    let bucket = bucket.display().to_string();
    for key in ["../secret.csv", "/etc/passwd", "", "a/../../secret.csv"] {
        let Err(e) = LocalStore.open(&bucket, key, None).await else {
            anyhow::bail!("{key:?} opened");
        };
        ensure!(e.kind == StoreErrorKind::Other, "{key:?}: {e}");
        let put = LocalStore
            .put_file(&bucket, key, tempfile::tempfile()?)
            .await;
        ensure!(put.is_err(), "{key:?} written");
    }
    Ok(())
}

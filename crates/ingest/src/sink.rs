//! CSV objects streamed to S3: rows are written into an in-memory part (gzip optional) that is
//! uploaded as a multipart part whenever it reaches the part size, so memory is bounded by the
//! part size, not by the run. An object smaller than one part is a single `PutObject`.

use std::collections::HashMap;
use std::io::{self, Write};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use sluice_flatten::{CsvWriter, Row};

/// S3 writes failing, naming the object.
#[derive(Debug, thiserror::Error)]
#[error("{op} s3://{bucket}/{key}: {message}")]
pub struct SinkError {
    pub op: &'static str,
    pub bucket: String,
    pub key: String,
    pub message: String,
}

/// Where objects go.
#[derive(Debug, Clone)]
pub struct S3Out {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    /// Multipart part size (S3's minimum is 5 MiB).
    pub part_size: usize,
}

impl S3Out {
    fn err<E: std::error::Error + 'static>(&self, op: &'static str, key: &str, e: E) -> SinkError {
        SinkError {
            op,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        }
    }

    /// A whole small object (manifests, state).
    pub async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.err("PutObject", key, e))?;
        Ok(())
    }
}

#[derive(Debug)]
enum Body {
    Plain(Vec<u8>),
    // Boxed: the encoder's state is hundreds of bytes, the plain body's 24.
    Gzip(Box<GzEncoder<Vec<u8>>>),
}

impl Write for Body {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Body::Plain(v) => v.write(buf),
            Body::Gzip(g) => g.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Body {
    /// Bytes ready to upload (for gzip: the compressed output so far).
    fn ready(&mut self) -> &mut Vec<u8> {
        match self {
            Body::Plain(v) => v,
            Body::Gzip(g) => g.get_mut(),
        }
    }
}

/// What was written: one line of the run summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    pub key: String,
    pub records: u64,
    pub columns: usize,
    pub bytes: u64,
    pub parts: usize,
}

/// One CSV object being written.
#[derive(Debug)]
pub struct ObjectWriter {
    pub key: String,
    csv: CsvWriter<Body>,
    width: usize,
    rows: u64,
    metadata: HashMap<String, String>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    bytes: u64,
}

impl ObjectWriter {
    /// Starts an object with this header; `metadata` becomes `x-amz-meta-*`.
    pub fn new<'a>(
        key: String,
        gzip: bool,
        header: impl Iterator<Item = &'a str>,
        metadata: HashMap<String, String>,
    ) -> io::Result<Self> {
        let body = if gzip {
            Body::Gzip(Box::new(GzEncoder::new(Vec::new(), Compression::fast())))
        } else {
            Body::Plain(Vec::new())
        };
        let mut csv = CsvWriter::new(body);
        let names: Vec<&str> = header.collect();
        // No columns known (an empty window): an empty CSV, not a blank header line.
        if !names.is_empty() {
            csv.write_fields(names.iter().map(|n| Some(*n)))?;
        }
        Ok(Self {
            key,
            csv,
            width: names.len(),
            rows: 0,
            metadata,
            upload_id: None,
            parts: Vec::new(),
            bytes: 0,
        })
    }

    /// Columns in this object's header.
    pub fn width(&self) -> usize {
        self.width
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn write_row(&mut self, row: &Row) -> io::Result<()> {
        self.rows += 1;
        self.csv.write_row(row, self.width)
    }

    /// Uploads a part when a part's worth of bytes is ready (call between pages).
    pub async fn upload_ready(&mut self, out: &S3Out) -> Result<(), SinkError> {
        self.csv.flush().map_err(|e| SinkError {
            op: "write",
            bucket: out.bucket.clone(),
            key: self.key.clone(),
            message: e.to_string(),
        })?;
        if self.csv.get_mut().ready().len() >= out.part_size {
            let bytes = std::mem::take(self.csv.get_mut().ready());
            self.upload_part(out, bytes).await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self, out: &S3Out, bytes: Vec<u8>) -> Result<(), SinkError> {
        if self.upload_id.is_none() {
            let created = out
                .client
                .create_multipart_upload()
                .bucket(&out.bucket)
                .key(&self.key)
                .content_type("text/csv; charset=utf-8")
                .set_content_encoding(self.key.ends_with(".gz").then(|| "gzip".to_owned()))
                .set_metadata(Some(self.metadata.clone()))
                .send()
                .await
                .map_err(|e| out.err("CreateMultipartUpload", &self.key, e))?;
            self.upload_id = created.upload_id().map(str::to_owned);
        }
        let number = self.parts.len() as i32 + 1;
        self.bytes += bytes.len() as u64;
        let part = out
            .client
            .upload_part()
            .bucket(&out.bucket)
            .key(&self.key)
            .upload_id(self.upload_id.clone().unwrap_or_default())
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| out.err("UploadPart", &self.key, e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(part.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    /// Uploads the rest and completes the object.
    pub async fn finish(mut self, out: &S3Out) -> Result<ObjectInfo, SinkError> {
        let write_err = |key: &str, e: io::Error| SinkError {
            op: "write",
            bucket: out.bucket.clone(),
            key: key.to_owned(),
            message: e.to_string(),
        };
        let key = self.key.clone();
        let body = self.csv.into_inner().map_err(|e| write_err(&key, e))?;
        let rest = match body {
            Body::Plain(v) => v,
            Body::Gzip(g) => g.finish().map_err(|e| write_err(&key, e))?,
        };
        self.csv = CsvWriter::new(Body::Plain(Vec::new()));
        let mut nparts = 1;
        match self.upload_id.clone() {
            None => {
                self.bytes = rest.len() as u64;
                self.metadata
                    .insert("records".into(), self.rows.to_string());
                let mut req = out
                    .client
                    .put_object()
                    .bucket(&out.bucket)
                    .key(&key)
                    .content_type("text/csv; charset=utf-8")
                    .set_metadata(Some(self.metadata.clone()))
                    .body(ByteStream::from(rest));
                if key.ends_with(".gz") {
                    req = req.content_encoding("gzip");
                }
                req.send()
                    .await
                    .map_err(|e| out.err("PutObject", &key, e))?;
            }
            Some(id) => {
                if !rest.is_empty() {
                    self.upload_part(out, rest).await?;
                }
                nparts = self.parts.len();
                out.client
                    .complete_multipart_upload()
                    .bucket(&out.bucket)
                    .key(&key)
                    .upload_id(id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(std::mem::take(&mut self.parts)))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| out.err("CompleteMultipartUpload", &key, e))?;
            }
        }
        Ok(ObjectInfo {
            key,
            records: self.rows,
            columns: self.width,
            bytes: self.bytes,
            parts: nparts,
        })
    }

    /// Abandons the object (a failed run): an open multipart upload is aborted.
    pub async fn abort(self, out: &S3Out) {
        if let Some(id) = &self.upload_id
            && let Err(e) = out
                .client
                .abort_multipart_upload()
                .bucket(&out.bucket)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await
        {
            tracing::warn!(key = %self.key, error = %aws_sdk_s3::error::DisplayErrorContext(e), "could not abort the multipart upload");
        }
    }
}

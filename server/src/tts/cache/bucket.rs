//! Finished audio in an S3 bucket through `aws-sdk-s3`: Postgres keeps the
//! index (`tts_cache`), the bucket the bytes. Entries move here once
//! complete; while a synthesis is under way its chunks stay in Postgres,
//! where followers on every instance read them.
//!
//! A bucket that fails never fails a request: the caller answers by
//! synthesis instead (see `Tts::serve`). Every request is bounded by
//! `VOXGATE_AUDIO_BUCKET_TIMEOUT_MS`, each read of a body too, so a slow
//! bucket counts as a failing one.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use secrecy::ExposeSecret;

use crate::config::{AwsConfig, BucketConfig};

/// Bytes per ranged GET when streaming a long entry.
const WINDOW: u64 = 128 * 1024;

/// Where a stream from the bucket is.
struct Reader {
    bucket: Bucket,
    object: String,
    /// The first byte not yet asked for.
    next: u64,
    end: u64,
    body: Option<ByteStream>,
}

/// The audio bucket.
pub struct Bucket {
    client: aws_sdk_s3::Client,
    name: String,
    prefix: String,
    presign: Option<Duration>,
    timeout: Duration,
}

/// Why a bucket request failed.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The object is not there (deleted behind the index's back).
    #[error("the object is missing")]
    Missing,
    #[error("{0}")]
    Failed(String),
}

fn failed<E, R>(e: SdkError<E, R>) -> BucketError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .map(str::to_string);
    match code.as_deref() {
        Some("NoSuchKey") | Some("NotFound") => BucketError::Missing,
        _ => BucketError::Failed(match code {
            Some(code) => format!("{code}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)),
            None => aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        }),
    }
}

impl Bucket {
    /// A client for the configured bucket. Credentials are the bucket's
    /// own when given, else those Polly uses (the same AWS account, or the
    /// standard credential chain).
    pub async fn new(config: &BucketConfig, aws: &AwsConfig) -> Bucket {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            // One retry: a request a user waits on should rather be
            // answered by synthesis than by a long wait.
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.timeout)
                    .operation_attempt_timeout(config.timeout)
                    .build(),
            );
        let credentials = match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => Some((id, secret, None)),
            _ => match (&aws.access_key_id, &aws.secret_access_key) {
                (Some(id), Some(secret)) => Some((id, secret, aws.session_token.as_ref())),
                _ => None,
            },
        };
        if let Some((id, secret, token)) = credentials {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret.expose_secret(),
                token.map(|t| t.expose_secret().to_string()),
                None,
                "voxgate-config",
            ));
        } else if let Some(profile) = &aws.profile {
            loader = loader.profile_name(profile);
        }
        let shared = loader.load().await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            // Checksums only where S3 requires them: stores other than
            // AWS differ in which of the newer ones they know.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &config.endpoint_url {
            s3 = s3.endpoint_url(endpoint);
        }
        Bucket {
            client: aws_sdk_s3::Client::from_conf(s3.build()),
            name: config.name.clone(),
            prefix: config.prefix.clone(),
            presign: config.presign,
            timeout: config.timeout,
        }
    }

    /// A new object name for a cache entry: its key, the hash of its bytes
    /// and a part of its own, so no two uploads ever share a name (a
    /// deterministic voice speaks the same bytes again, and an object of
    /// that name may still be waiting for deletion).
    pub fn object_name(&self, key: &str, etag: &str) -> String {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        format!("{}{key}.{etag}.{}", self.prefix, &unique[..12])
    }

    /// Whether `object` is there (for a redirect: the bucket must have it).
    pub async fn exists(&self, object: &str) -> Result<(), BucketError> {
        self.client
            .head_object()
            .bucket(&self.name)
            .key(object)
            .send()
            .await
            .map(|_| ())
            .map_err(failed)
    }

    /// Whether hits are answered with a presigned redirect.
    pub fn presigns(&self) -> bool {
        self.presign.is_some()
    }

    pub async fn put(
        &self,
        object: &str,
        content_type: &str,
        data: Bytes,
    ) -> Result<(), BucketError> {
        self.client
            .put_object()
            .bucket(&self.name)
            .key(object)
            .content_type(content_type)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Bytes `start..=end` of `object`, once the bucket has answered: a
    /// bucket that does not answer in time is an error here, before any
    /// response is made. Each later read waits at most the timeout too.
    ///
    /// The range is fetched [`WINDOW`] bytes per request, the next asked
    /// for when the last is used up: the HTTP client buffers what the
    /// bucket sends ahead of the listener, so one request for a whole
    /// long entry would hold hundreds of KiB per slow listener.
    pub async fn open(
        &self,
        object: &str,
        start: u64,
        end: u64,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, BucketError> {
        let first_end = end.min(start + WINDOW - 1);
        let first = self.window(object, start, first_end).await?;
        let reader = Reader {
            bucket: self.clone_client(),
            object: object.to_string(),
            next: first_end + 1,
            end,
            body: Some(first),
        };
        Ok(futures::stream::try_unfold(reader, |mut r| async move {
            loop {
                if let Some(body) = r.body.as_mut() {
                    match tokio::time::timeout(r.bucket.timeout, body.next()).await {
                        Ok(Some(Ok(bytes))) => return Ok(Some((bytes, r))),
                        Ok(None) => r.body = None,
                        Ok(Some(Err(e))) => return Err(std::io::Error::other(e)),
                        Err(_) => return Err(std::io::Error::other("the audio bucket stalled")),
                    }
                }
                if r.next > r.end {
                    return Ok(None);
                }
                let to = r.end.min(r.next + WINDOW - 1);
                let body = r
                    .bucket
                    .window(&r.object, r.next, to)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                r.body = Some(body);
                r.next = to + 1;
            }
        })
        .boxed())
    }

    /// The first `size` bytes of `object` (all of it), in one request, for
    /// an entry small enough to be held whole.
    pub async fn read_whole(&self, object: &str, size: u64) -> Result<Bytes, BucketError> {
        let body = self.window(object, 0, size.saturating_sub(1)).await?;
        let read = tokio::time::timeout(self.timeout * 4, body.collect())
            .await
            .map_err(|_| BucketError::Failed("the audio bucket stalled".into()))?
            .map_err(|e| BucketError::Failed(e.to_string()))?;
        Ok(read.into_bytes())
    }

    /// One ranged GET, checked to send exactly the bytes asked for.
    async fn window(&self, object: &str, start: u64, end: u64) -> Result<ByteStream, BucketError> {
        let got = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(object)
            .range(format!("bytes={start}-{end}"))
            .send()
            .await
            .map_err(failed)?;
        let expected = end - start + 1;
        if got.content_length().is_some_and(|n| n as u64 != expected) {
            return Err(BucketError::Failed(format!(
                "asked for {expected} bytes, the bucket sends {:?}",
                got.content_length()
            )));
        }
        Ok(got.body)
    }

    /// A handle for a stream to keep (the client is shared, cheap to clone).
    fn clone_client(&self) -> Bucket {
        Bucket {
            client: self.client.clone(),
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            presign: self.presign,
            timeout: self.timeout,
        }
    }

    /// A URL that fetches `object` for a short while without credentials.
    pub async fn presigned(&self, object: &str) -> Result<String, BucketError> {
        let expires = self.presign.unwrap_or(Duration::from_secs(60));
        let config = PresigningConfig::expires_in(expires)
            .map_err(|e| BucketError::Failed(e.to_string()))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(object)
            .presigned(config)
            .await
            .map_err(failed)?;
        Ok(request.uri().to_string())
    }

    pub async fn delete(&self, object: &str) -> Result<(), BucketError> {
        self.client
            .delete_object()
            .bucket(&self.name)
            .key(object)
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Whether the bucket answers (for `/readyz`, where a failing bucket
    /// is reported but does not make the instance unready).
    pub async fn check(&self) -> Result<(), String> {
        self.client
            .head_bucket()
            .bucket(&self.name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed(e).to_string())
    }
}

//! [`S3`]: the [`Backend`] of `git hypha serve --s3-bucket ...`, one S3 object per key, through
//! aws-sdk-s3 (docs/design.md §2, §3, §10).
//!
//! Owns the S3 side of every trait method: key prefixing (`--s3-prefix`, so that many servers
//! or test runs share one bucket), conditional writes (`If-None-Match: *` to create,
//! `If-Match: <etag>` to replace; `412` becomes [`Error::AlreadyExists`] / [`Error::Conflict`]),
//! ranged reads, paginated listings, and presigned `GET`/`PUT` URLs whose signed headers are
//! returned for the client to send. Multipart uploads for large packs live in [`multipart`].
//!
//! It deliberately does not load configuration (no aws-config: the client is built by hand
//! from [`Config`], which the binary fills from flags and `AWS_*` variables) and knows nothing
//! of the repository layout, which is the layer above's.
//!
//! Etags are S3's, quoted as S3 sends them. Errors name the key and the bucket; they carry what
//! S3 answered (status, code, message) but never credentials or a presigned URL.
//!
//! Conditional deletes: `DeleteObject` with `If-Match` is recent on AWS and ignored by some
//! S3-compatible stores, so a delete first reads the etag (a `HEAD`) and then sends the
//! conditional delete; the repository layer holds its lock around both, so within one
//! server the check cannot be overtaken.

pub mod multipart;

pub use multipart::{Multipart, MultipartUpload, UploadPlan};

use super::{
    check_key, Backend, Error, Object, ObjectMeta, PresignMethod, PresignedTransfer, PutMode,
    MAX_KEY_LEN,
};
use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials as SdkCredentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::time::{Duration, SystemTime};

/// Region used when none is configured (S3-compatible stores accept any).
pub const DEFAULT_REGION: &str = "us-east-1";

/// The content type of every presigned `PUT` (packs and idx files are opaque bytes).
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Longest lifetime S3 accepts for a presigned URL (SigV4: one week).
pub const MAX_PRESIGN_EXPIRES_IN: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often a conditional write is retried after `409 ConditionalRequestConflict` (AWS:
/// another conditional write to the key was in flight; the answer is "try again").
const CONFLICT_RETRIES: u32 = 3;

/// Where the bucket is and how to reach it. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Config {
    /// `http(s)://host:port` of an S3-compatible store; `None` = AWS for `region`.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Prepended (with a `/`) to every key, so that several servers share one bucket.
    pub prefix: Option<String>,
    pub region: String,
    /// `http://host/bucket/key` instead of `http://bucket.host/key` (MinIO, s3s-fs, moto).
    pub path_style: bool,
    pub credentials: Credentials,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// Static S3 credentials, as the standard `AWS_*` variables give them.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

// Neither the secret nor the session token may reach a log.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Why an [`S3`] store could not be set up. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set for the S3 store")]
    MissingCredentials,
    #[error("invalid S3 bucket name {0:?}")]
    InvalidBucket(String),
    #[error("invalid S3 key prefix {0:?}")]
    InvalidPrefix(String),
    #[error("invalid S3 endpoint {endpoint:?}")]
    InvalidEndpoint {
        endpoint: String,
        #[source]
        source: url::ParseError,
    },
    #[error("cannot reach S3 bucket {bucket}")]
    Unreachable {
        bucket: String,
        #[source]
        source: RequestFailed,
    },
    #[error(
        "S3 bucket {bucket} does not honour conditional writes ({what}); the server needs them to          compare-and-swap refs and to keep stored packs from being overwritten (AWS S3 and          current MinIO have them); set {UNSAFE_NO_CONDITIONAL_WRITES}=1 to run without"
    )]
    NoConditionalWrites { bucket: String, what: &'static str },
    #[error("cannot check conditional writes on S3 bucket {bucket}")]
    ProbeFailed {
        bucket: String,
        #[source]
        source: Error,
    },
}

/// The environment variable that lets `git hypha serve` run on a store without conditional
/// writes (then a second writer can overwrite what the first wrote).
pub const UNSAFE_NO_CONDITIONAL_WRITES: &str = "HYPHA_GIT_S3_UNSAFE_NO_CONDITIONAL_WRITES";

impl Credentials {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optional) `AWS_SESSION_TOKEN` from
    /// `env`; empty values count as unset.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Credentials, ConfigError> {
        let get = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
                access_key_id,
                secret_access_key,
                session_token: get("AWS_SESSION_TOKEN"),
            }),
            _ => Err(ConfigError::MissingCredentials),
        }
    }
}

/// The region to use: the flag, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else
/// [`DEFAULT_REGION`].
pub fn region_from(flag: Option<&str>, env: &HashMap<String, String>) -> String {
    flag.map(str::to_owned)
        .or_else(|| env.get("AWS_REGION").cloned())
        .or_else(|| env.get("AWS_DEFAULT_REGION").cloned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_REGION.to_owned())
}

/// The endpoint to use: the flag, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (the
/// variables the AWS SDKs read), else `None` (AWS itself).
pub fn endpoint_from(flag: Option<String>, env: &HashMap<String, String>) -> Option<String> {
    flag.or_else(|| env.get("AWS_ENDPOINT_URL_S3").cloned())
        .or_else(|| env.get("AWS_ENDPOINT_URL").cloned())
        .filter(|e| !e.is_empty())
}

/// What S3 answered to one request, without the request itself: safe to log and to return.
#[derive(Debug, thiserror::Error)]
#[error("{operation} in bucket {bucket} failed: {detail}")]
pub struct RequestFailed {
    operation: &'static str,
    bucket: String,
    detail: String,
}

/// A [`Backend`] over one S3 bucket (and key prefix). Cheap to clone.
#[derive(Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// `""` or `"prefix/"`.
    prefix: String,
    endpoint: Option<String>,
    /// Keys per `ListObjectsV2` page (S3's maximum is 1000; tests lower it).
    page_size: i32,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How a failed request is treated.
enum Failure {
    /// 404 on the key (not on the bucket).
    NotFound,
    /// 412: a condition did not hold.
    Precondition,
    /// 409 `ConditionalRequestConflict`: a concurrent conditional write; retry.
    ConditionalConflict,
    /// 416.
    Range,
    /// 501 / `NotImplemented`: the store does not support what was asked (a conditional
    /// delete on some S3-compatible stores).
    NotImplemented,
    Other(RequestFailed),
}

impl S3 {
    /// A store over `config.bucket`; makes no request (see [`S3::check_bucket`]).
    pub fn new(config: &Config) -> Result<S3, ConfigError> {
        if !is_valid_bucket(&config.bucket) {
            return Err(ConfigError::InvalidBucket(config.bucket.clone()));
        }
        let prefix = match config.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p) => {
                if check_key(p).is_err() || p.len() > MAX_KEY_LEN / 2 {
                    return Err(ConfigError::InvalidPrefix(p.to_owned()));
                }
                format!("{p}/")
            }
        };
        if let Some(endpoint) = &config.endpoint {
            url::Url::parse(endpoint).map_err(|source| ConfigError::InvalidEndpoint {
                endpoint: endpoint.clone(),
                source,
            })?;
        }
        let creds = &config.credentials;
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(SdkCredentials::new(
                creds.access_key_id.clone(),
                creds.secret_access_key.clone(),
                creds.session_token.clone(),
                None,
                "hypha-git",
            ))
            .force_path_style(config.path_style)
            // Refs are a few bytes and packs never pass through the server: checksums on
            // every request buy nothing and older S3-compatible stores reject them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint.trim_end_matches('/'));
        }
        Ok(S3 {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            prefix,
            endpoint: config.endpoint.clone(),
            page_size: 1000,
        })
    }

    /// Fail early, with the bucket named, when the bucket is missing or the credentials are
    /// refused: better at startup than on the first push.
    pub async fn check_bucket(&self) -> Result<(), ConfigError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(drop)
            .map_err(|e| ConfigError::Unreachable {
                bucket: self.bucket.clone(),
                source: self.request_failed("HeadBucket", &e),
            })
    }

    /// That the store refuses what the repository's rules rely on (issue 21): a second
    /// create of one key (`If-None-Match: *`, create-only uploads) and a write over another
    /// etag (`If-Match`, ref compare-and-swap). An old store that ignores those headers would
    /// let a writer replace a live pack and lose pushes silently. Three writes and a delete of
    /// one probe object under the prefix, at startup.
    pub async fn check_conditional_writes(&self) -> Result<(), ConfigError> {
        let key = format!("hypha-git-probe-{}", hex::encode(rand::random::<[u8; 8]>()));
        let failed = |source| ConfigError::ProbeFailed {
            bucket: self.bucket.clone(),
            source,
        };
        let missing = |what| ConfigError::NoConditionalWrites {
            bucket: self.bucket.clone(),
            what,
        };
        self.put(&key, Bytes::from_static(b"1"), PutMode::IfNoneMatch)
            .await
            .map_err(failed)?;
        let second = self
            .put(&key, Bytes::from_static(b"2"), PutMode::IfNoneMatch)
            .await;
        let other_etag = self
            .put(
                &key,
                Bytes::from_static(b"3"),
                PutMode::IfMatch("\"0123456789abcdef0123456789abcdef\"".into()),
            )
            .await;
        let _ = self.delete(&key, None).await;
        match second {
            Err(Error::AlreadyExists { .. } | Error::Conflict { .. }) => {}
            Ok(_) => return Err(missing("a second PUT with If-None-Match: * succeeded")),
            Err(e) => return Err(failed(e)),
        }
        match other_etag {
            Err(Error::Conflict { .. } | Error::NotFound { .. }) => Ok(()),
            Ok(_) => Err(missing("a PUT with If-Match of another etag succeeded")),
            Err(e) => Err(failed(e)),
        }
    }

    /// Keys per listing page; S3's maximum (1000) by default. Lower only to test pagination.
    pub fn with_page_size(mut self, keys: u16) -> S3 {
        self.page_size = i32::from(keys.clamp(1, 1000));
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, `""` or ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The S3 key of a store key.
    fn full_key(&self, key: &str) -> Result<String, Error> {
        check_key(key)?;
        let full = format!("{}{key}", self.prefix);
        if full.len() > MAX_KEY_LEN {
            return Err(Error::InvalidKey {
                key: super::shorten(key),
                reason: "too long",
            });
        }
        Ok(full)
    }

    fn request_failed<E>(&self, operation: &'static str, err: &SdkError<E>) -> RequestFailed
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let detail = match err {
            SdkError::ServiceError(inner) => {
                let e = inner.err();
                let status = status_of(err).map(|s| format!("HTTP {s}"));
                // HEAD answers have no body, hence often neither code nor message.
                [status.as_deref(), e.code(), e.message()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            // Dispatch and timeout failures: the chain says "connection refused" and the
            // like; the SDK puts neither credentials nor URLs into it.
            other => DisplayErrorContext(other).to_string(),
        };
        RequestFailed {
            operation,
            bucket: self.bucket.clone(),
            detail,
        }
    }

    fn classify<E>(&self, operation: &'static str, err: &SdkError<E>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = err.code();
        match (status_of(err), code) {
            (_, Some("NoSuchBucket")) => {}
            (Some(404), _) | (_, Some("NoSuchKey")) => return Failure::NotFound,
            (Some(412), _) | (_, Some("PreconditionFailed")) => return Failure::Precondition,
            (Some(409), Some("ConditionalRequestConflict")) => return Failure::ConditionalConflict,
            (Some(416), _) | (_, Some("InvalidRange")) => return Failure::Range,
            (Some(501), _) | (_, Some("NotImplemented")) => return Failure::NotImplemented,
            _ => {}
        }
        Failure::Other(self.request_failed(operation, err))
    }

    /// A failure that means nothing special for this call, as a storage error on `key`.
    fn fail(&self, key: &str, operation: &'static str, failure: Failure) -> Error {
        let failed = |detail: &str| {
            Error::backend(
                key,
                RequestFailed {
                    operation,
                    bucket: self.bucket.clone(),
                    detail: detail.to_owned(),
                },
            )
        };
        match failure {
            Failure::NotFound => Error::NotFound { key: key.into() },
            Failure::Precondition | Failure::ConditionalConflict => {
                Error::Conflict { key: key.into() }
            }
            Failure::Range => failed("range not satisfiable"),
            Failure::NotImplemented => failed("not implemented by this store"),
            Failure::Other(e) => Error::backend(key, e),
        }
    }

    /// `err` of `operation` on `key` as a storage error, for a call with no special case:
    /// [`S3::classify`], then [`S3::fail`].
    fn error<E>(&self, key: &str, operation: &'static str, err: &SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.fail(key, operation, self.classify(operation, err))
    }

    /// [`S3::error`] for a listing of `prefix`: a 404 there is the bucket's, never a key's.
    fn listing_error<E>(&self, prefix: &str, operation: &'static str, err: &SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let failure = match self.classify(operation, err) {
            Failure::NotFound => Failure::Other(self.request_failed(operation, err)),
            f => f,
        };
        self.fail(prefix, operation, failure)
    }

    /// The outcome of a removal (`operation` on `key`): a key that is already gone is done.
    fn removed<T, E>(
        &self,
        key: &str,
        operation: &'static str,
        result: Result<T, SdkError<E>>,
    ) -> Result<(), Error>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match result {
            Ok(_) => Ok(()),
            Err(e) => match self.classify(operation, &e) {
                Failure::NotFound => Ok(()),
                f => Err(self.fail(key, operation, f)),
            },
        }
    }

    fn presign_config(key: &str, expires_in: Duration) -> Result<PresigningConfig, Error> {
        if expires_in.is_zero() || expires_in > MAX_PRESIGN_EXPIRES_IN {
            return Err(Error::Invalid {
                detail: format!(
                    "{key}: a presigned url must expire within 1 s to {} s",
                    MAX_PRESIGN_EXPIRES_IN.as_secs()
                ),
            });
        }
        PresigningConfig::expires_in(expires_in).map_err(|e| Error::backend(key, e))
    }

    /// Presign with an explicit start time: only tests need URLs that are already expired.
    #[doc(hidden)]
    pub async fn presign_get_at(
        &self,
        key: &str,
        start: SystemTime,
        expires_in: Duration,
    ) -> Result<PresignedTransfer, Error> {
        let full = self.full_key(key)?;
        let config = PresigningConfig::builder()
            .start_time(start)
            .expires_in(expires_in)
            .build()
            .map_err(|e| Error::backend(key, e))?;
        Ok(to_transfer(&self.presigned_get(key, &full, config).await?))
    }

    /// A presigned `GetObject` of `full`, the S3 key of `key`.
    async fn presigned_get(
        &self,
        key: &str,
        full: &str,
        config: PresigningConfig,
    ) -> Result<aws_sdk_s3::presigning::PresignedRequest, Error> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(full)
            .presigned(config)
            .await
            .map_err(|e| Error::backend(key, self.request_failed("presign GetObject", &e)))
    }

    /// `etag` as a `PUT` of `key` answered it, or read back when the store answered none
    /// (racy, but only on such a store).
    async fn etag_or_head(&self, key: &str, etag: &str) -> Result<String, Error> {
        if !etag.is_empty() {
            return Ok(etag.to_owned());
        }
        self.head(key)
            .await?
            .etag
            .ok_or_else(|| Error::backend(key, "the store returns no etags"))
    }

    async fn get_range_inner(&self, key: &str, range: Range<u64>) -> Result<Bytes, Error> {
        let full = self.full_key(key)?;
        let invalid = || Error::InvalidRange {
            key: key.into(),
            start: range.start,
            end: range.end,
        };
        if range.start > range.end {
            return Err(invalid());
        }
        if range.start == range.end {
            // HTTP cannot ask for zero bytes; the object must still exist and be long enough.
            let meta = self.head(key).await?;
            return if range.end <= meta.size {
                Ok(Bytes::new())
            } else {
                Err(invalid())
            };
        }
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return Err(match self.classify("GetObject", &e) {
                    Failure::Range => invalid(),
                    f => self.fail(key, "GetObject", f),
                })
            }
        };
        // S3 answers a range that runs past the end with the bytes that exist: the total in
        // `Content-Range` tells whether the whole range was there.
        let total = out.content_range().and_then(content_range_total);
        let body = collect(key, out.body).await?;
        let (want, len) = (range.end - range.start, body.len() as u64);
        match total {
            Some(total) if range.end > total => Err(invalid()),
            Some(_) if len == want => Ok(body),
            Some(_) => Err(invalid()),
            None if len == want => Ok(body),
            // No `Content-Range`: a store that ignored `Range` sent the whole object.
            None if range.end <= len => {
                Ok(body.slice(to_usize(key, range.start)?..to_usize(key, range.end)?))
            }
            None => Err(invalid()),
        }
    }

    async fn put_once(
        &self,
        full: &str,
        body: &Bytes,
        mode: &PutMode,
    ) -> Result<String, SdkError<aws_sdk_s3::operation::put_object::PutObjectError>> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .content_length(i64::try_from(body.len()).unwrap_or(i64::MAX))
            .body(ByteStream::from(body.clone()));
        req = match mode {
            PutMode::Overwrite => req,
            PutMode::IfNoneMatch => req.if_none_match("*"),
            PutMode::IfMatch(etag) => req.if_match(etag),
        };
        let out = req.send().await?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    /// Every object under the full key prefix `full_prefix`, as S3 lists them.
    async fn list_full(&self, full_prefix: &str) -> Result<Vec<aws_sdk_s3::types::Object>, Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(full_prefix)
                .max_keys(self.page_size)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.listing_error(full_prefix, "ListObjectsV2", &e))?;
            out.extend(page.contents().iter().cloned());
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(next)) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Backend for S3 {
    async fn get(&self, key: &str) -> Result<Object, Error> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.error(key, "GetObject", &e))?;
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let body = collect(key, out.body).await?;
        Ok(Object { body, etag })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, Error> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.error(key, "HeadObject", &e))?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: out
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            etag: out.e_tag().map(str::to_owned),
            last_modified: out
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok()),
        })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, Error> {
        self.get_range_inner(key, range).await
    }

    /// One streamed `PutObject` (S3 takes up to 5 GiB that way), unconditional.
    async fn put_file(&self, key: &str, file: std::fs::File, size: u64) -> Result<String, Error> {
        let full = self.full_key(key)?;
        // The builder reads on from where the handle stands, whatever `offset` says.
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))
            .map_err(|e| Error::backend(key, e))?;
        let body = ByteStream::read_from()
            .file(tokio::fs::File::from_std(file))
            .length(aws_sdk_s3::primitives::Length::Exact(size))
            .build()
            .await
            .map_err(|e| Error::backend(key, e))?;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .body(body)
            .send()
            .await
            .map_err(|e| self.error(key, "PutObject", &e))?;
        self.etag_or_head(key, out.e_tag().unwrap_or_default())
            .await
    }

    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<String, Error> {
        let full = self.full_key(key)?;
        let mut attempt = 0;
        let etag = loop {
            match self.put_once(&full, &body, &mode).await {
                Ok(etag) => break etag,
                Err(e) => match (self.classify("PutObject", &e), &mode) {
                    (Failure::ConditionalConflict, _) if attempt < CONFLICT_RETRIES => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    }
                    (Failure::Precondition, PutMode::IfNoneMatch) => {
                        return Err(Error::AlreadyExists { key: key.into() })
                    }
                    (f, _) => return Err(self.fail(key, "PutObject", f)),
                },
            }
        };
        self.etag_or_head(key, &etag).await
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), Error> {
        let full = self.full_key(key)?;
        let send = |etag: Option<&str>| {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&full)
                .set_if_match(etag.map(str::to_owned))
                .send()
        };
        let Some(expected) = if_match else {
            return self.removed(key, "DeleteObject", send(None).await);
        };
        // Checked first: stores that ignore `If-Match` on deletes would delete anything.
        let current = self.head(key).await?;
        if !current
            .etag
            .as_deref()
            .is_some_and(|e| same_etag(e, expected))
        {
            return Err(Error::Conflict { key: key.into() });
        }
        match send(Some(expected)).await {
            Ok(_) => Ok(()),
            Err(e) => match self.classify("DeleteObject", &e) {
                // The store cannot delete conditionally: the check above is all there is.
                Failure::NotImplemented => send(None)
                    .await
                    .map(drop)
                    .map_err(|e| self.error(key, "DeleteObject", &e)),
                f => Err(self.fail(key, "DeleteObject", f)),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
        if prefix.chars().any(char::is_control) {
            return Err(Error::InvalidKey {
                key: super::shorten(prefix),
                reason: "forbidden character",
            });
        }
        let full_prefix = format!("{}{prefix}", self.prefix);
        let mut out: Vec<ObjectMeta> = self
            .list_full(&full_prefix)
            .await?
            .into_iter()
            .filter_map(|obj| {
                let key = obj.key()?.strip_prefix(&self.prefix)?;
                // Folder markers some tools create are not objects of ours.
                if key.ends_with('/') {
                    return None;
                }
                Some(ObjectMeta {
                    key: key.to_owned(),
                    size: obj.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    etag: obj.e_tag().map(str::to_owned),
                    last_modified: obj
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires_in: Duration,
        content_length: Option<u64>,
    ) -> Result<PresignedTransfer, Error> {
        let full = self.full_key(key)?;
        let config = Self::presign_config(key, expires_in)?;
        let req = match method {
            PresignMethod::Get => self.presigned_get(key, &full, config).await?,
            PresignMethod::Put | PresignMethod::Create => {
                let Some(len) = content_length else {
                    return Err(Error::Invalid {
                        detail: format!("{key}: a presigned PUT needs a content length"),
                    });
                };
                // Content-Length is signed: S3 refuses an upload of any other size. `Create`
                // signs `If-None-Match: *` (sent by the client with the URL's headers): once
                // stored, the object is never replaced (issue 21: a repository's packs).
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .content_length(to_i64(key, len)?)
                    .content_type(OCTET_STREAM)
                    .set_if_none_match((method == PresignMethod::Create).then(|| "*".to_owned()))
                    .presigned(config)
                    .await
                    .map_err(|e| {
                        Error::backend(key, self.request_failed("presign PutObject", &e))
                    })?
            }
        };
        let transfer = to_transfer(&req);
        if method.is_put() && !transfer.headers.contains_key("Content-Length") {
            return Err(Error::backend(
                key,
                "the presigned PUT does not sign its length",
            ));
        }
        Ok(transfer)
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }
}

/// The SDK's presigned request as the server hands it out: headers in their usual spelling
/// (`Content-Length`), as HTTP names are case-insensitive and clients look them up so.
fn to_transfer(req: &aws_sdk_s3::presigning::PresignedRequest) -> PresignedTransfer {
    let headers: BTreeMap<String, String> = req
        .headers()
        .map(|(name, value)| (header_case(name), value.to_owned()))
        .collect();
    PresignedTransfer {
        method: req.method().to_owned(),
        url: req.uri().to_owned(),
        headers,
    }
}

/// `content-length` -> `Content-Length`.
fn header_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn status_of<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// `bytes 0-9/10` -> 10; `None` when the total is unknown (`*`) or the header is malformed.
fn content_range_total(header: &str) -> Option<u64> {
    header.rsplit_once('/')?.1.trim().parse().ok()
}

/// Etags compare without their quotes and weak marker (stores differ in what they echo).
fn same_etag(a: &str, b: &str) -> bool {
    let bare = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    bare(a) == bare(b)
}

/// S3's bucket naming rules, loosely: 3-63 of lowercase letters, digits, `.` and `-`
/// (underscores and capitals are accepted too, as older and compatible stores allow them).
fn is_valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !name.starts_with(['.', '-'])
}

async fn collect(key: &str, body: ByteStream) -> Result<Bytes, Error> {
    body.collect()
        .await
        .map(|b| b.into_bytes())
        .map_err(|e| Error::backend(key, e))
}

fn to_i64(key: &str, n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|e| Error::backend(key, e))
}

fn to_usize(key: &str, n: u64) -> Result<usize, Error> {
    usize::try_from(n).map_err(|e| Error::backend(key, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_spelled_as_usual() {
        assert_eq!(header_case("content-length"), "Content-Length");
        assert_eq!(header_case("if-none-match"), "If-None-Match");
        assert_eq!(header_case("x-amz-acl"), "X-Amz-Acl");
    }

    #[test]
    fn content_range_totals() {
        assert_eq!(content_range_total("bytes 0-9/10"), Some(10));
        assert_eq!(content_range_total("bytes 0-9/*"), None);
        assert_eq!(content_range_total("garbage"), None);
    }

    #[test]
    fn etags_compare_without_quotes() {
        assert!(same_etag("\"abc\"", "abc"));
        assert!(same_etag("W/\"abc\"", "\"abc\""));
        assert!(!same_etag("\"abc\"", "\"abd\""));
    }

    fn config(prefix: Option<&str>) -> Config {
        Config {
            endpoint: Some("http://127.0.0.1:1".into()),
            bucket: "bucket".into(),
            prefix: prefix.map(str::to_owned),
            region: DEFAULT_REGION.into(),
            path_style: true,
            credentials: Credentials {
                access_key_id: "AKID".into(),
                secret_access_key: "very-secret".into(),
                session_token: Some("token-secret".into()),
            },
        }
    }

    #[test]
    fn prefixes_and_keys() {
        let s3 = S3::new(&config(Some("/runs/42/"))).unwrap();
        assert_eq!(s3.prefix(), "runs/42/");
        assert_eq!(s3.full_key("ws/a").unwrap(), "runs/42/ws/a");
        assert!(matches!(s3.full_key("../a"), Err(Error::InvalidKey { .. })));
        assert_eq!(S3::new(&config(None)).unwrap().full_key("k").unwrap(), "k");
        assert!(matches!(
            S3::new(&config(Some("a/../b"))),
            Err(ConfigError::InvalidPrefix(_))
        ));
        let mut bad = config(None);
        bad.bucket = "x".into();
        assert!(matches!(S3::new(&bad), Err(ConfigError::InvalidBucket(_))));
    }

    #[test]
    fn debug_hides_secrets() {
        let c = config(None);
        let shown = format!("{c:?} {:?}", S3::new(&c).unwrap());
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("token-secret"), "{shown}");
        assert!(shown.contains("AKID"));
    }

    #[test]
    fn credentials_and_region_from_env() {
        let env: HashMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_SESSION_TOKEN", ""),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let creds = Credentials::from_env(&env).unwrap();
        assert_eq!(creds.access_key_id, "a");
        assert_eq!(creds.session_token, None);
        assert_eq!(region_from(None, &env), "eu-west-1");
        assert_eq!(region_from(Some("us-west-2"), &env), "us-west-2");
        assert_eq!(region_from(None, &HashMap::new()), DEFAULT_REGION);
        let env: HashMap<String, String> = [("AWS_ENDPOINT_URL", "http://minio:9000")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            endpoint_from(None, &env).as_deref(),
            Some("http://minio:9000")
        );
        assert_eq!(
            endpoint_from(Some("http://x".into()), &env).as_deref(),
            Some("http://x")
        );
        assert_eq!(endpoint_from(None, &HashMap::new()), None);
        assert!(matches!(
            Credentials::from_env(&HashMap::new()),
            Err(ConfigError::MissingCredentials)
        ));
    }

    #[tokio::test]
    async fn presigned_put_signs_length_and_type() {
        let s3 = S3::new(&config(Some("p"))).unwrap();
        let put = s3
            .presign(
                "ws/x.pack",
                PresignMethod::Put,
                Duration::from_secs(60),
                Some(42),
            )
            .await
            .unwrap();
        assert_eq!(put.method, "PUT");
        assert_eq!(
            put.headers.get("Content-Length").map(String::as_str),
            Some("42")
        );
        assert_eq!(
            put.headers.get("Content-Type").map(String::as_str),
            Some(OCTET_STREAM)
        );
        assert!(
            put.url
                .starts_with("http://127.0.0.1:1/bucket/p/ws/x.pack?"),
            "path style"
        );
        let signed = put.url.to_ascii_lowercase();
        assert!(
            signed.contains("x-amz-signedheaders=content-length%3bcontent-type%3bhost"),
            "{}",
            put.headers.len()
        );
        assert!(!put.url.contains("very-secret"));
        assert!(s3
            .presign(
                "k",
                PresignMethod::Get,
                Duration::from_secs(8 * 24 * 3600),
                None
            )
            .await
            .is_err());
    }
}

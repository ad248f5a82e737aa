//! The `object-store` capability: S3-compatible buckets (AWS S3, Cloudflare R2, Backblaze
//! B2, MinIO, Garage, Ceph...) reached natively through `object_store`, for sink plugins.
//!
//! The host signs requests, retries transient failures with exponential backoff and
//! jitter (inside `object_store`, then again in [`crate::sink::SinkPool`]), never retries
//! authentication or permission errors, and uploads large objects as parallel parts.
//! Credentials never enter error messages, and connections go only to a granted endpoint
//! or to the official endpoints of AWS, R2 and B2.

mod host;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig,
    WriteMultipart,
};

use crate::plugin_api::PluginError;
use crate::plugin_api::object_store::{ObjectEntry, S3Config};
use crate::sandbox::{HostPort, host_granted};

/// Objects larger than this go up as a multipart upload, in parts of this size.
const MULTIPART_PART: usize = 8 * 1024 * 1024;
/// Parts of one object in flight at once.
const MULTIPART_PARALLEL: usize = 4;

/// Hosts a sink may reach without an explicit grant: the providers' own endpoints.
const PROVIDER_DOMAINS: &[&str] = &[
    ".amazonaws.com",
    ".r2.cloudflarestorage.com",
    ".backblazeb2.com",
];

pub struct Bucket {
    store: Arc<AmazonS3>,
    /// "bucket `b` at https://endpoint": what every error names.
    label: String,
}

impl Bucket {
    fn error(&self, key: &str, e: object_store::Error) -> PluginError {
        classify(&self.label, key, e)
    }
}

/// Maps an `object_store` error to what a plugin and the host's retry logic act on.
fn classify(label: &str, key: &str, e: object_store::Error) -> PluginError {
    use object_store::Error as E;
    let what = if key.is_empty() {
        label.to_string()
    } else {
        format!("{key} in {label}")
    };
    match e {
        E::NotFound { .. } => PluginError::NotFound(what),
        E::AlreadyExists { .. } | E::Precondition { .. } => PluginError::AlreadyExists(what),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => PluginError::Denied(format!(
            "{label} refused the credentials ({}): check the access key and secret, and that they may use this bucket",
            short(&e.to_string())
        )),
        E::NotSupported { .. } | E::NotImplemented { .. } | E::InvalidPath { .. } => {
            PluginError::Permanent(format!("{what}: {e}"))
        }
        // Some requests (listing) report every status as a generic error: read it back.
        other => {
            let message = other.to_string();
            match http_status(&message) {
                Some(401 | 403) => PluginError::Denied(format!(
                    "{label} refused the credentials ({}): check the access key and secret, and that they may use this bucket",
                    short(&message)
                )),
                Some(404) => PluginError::NotFound(format!("{what}: {}", short(&message))),
                Some(400..=499) => PluginError::Permanent(format!("{what}: {}", short(&message))),
                // Server errors, timeouts and resets that outlasted object_store's retries.
                _ => PluginError::Retryable(format!("{what}: {}", short(&message))),
            }
        }
    }
}

/// The HTTP status an `object_store` error message reports, if any.
fn http_status(message: &str) -> Option<u16> {
    let at = message.find("status code: ")? + "status code: ".len();
    message.get(at..at + 3)?.parse().ok()
}

/// The first line of an error, without the response bodies some servers echo.
fn short(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    if line.len() > 300 {
        format!("{}…", &line[..line.floor_char_boundary(300)])
    } else {
        line.to_string()
    }
}

/// The host of an `http(s)://` endpoint, and its port (the scheme's when it names none).
fn endpoint_host(endpoint: &str) -> Option<(String, u16)> {
    let (rest, default_port) = match endpoint.strip_prefix("https://") {
        Some(rest) => (rest, 443),
        None => (endpoint.strip_prefix("http://")?, 80),
    };
    let authority = rest.split('/').next()?;
    let HostPort { host, port } = HostPort::parse(authority);
    Some((host, port.unwrap_or(default_port)))
}

/// Whether the sink may connect to `endpoint`: a granted host (`host` or `host:port`), or
/// a provider's official domain over HTTPS.
pub fn endpoint_permitted(granted: &[String], endpoint: &str) -> bool {
    let Some((host, port)) = endpoint_host(endpoint) else {
        return false;
    };
    if host_granted(granted, &host, port) {
        return true;
    }
    endpoint.starts_with("https://") && PROVIDER_DOMAINS.iter().any(|d| host.ends_with(d))
}

fn build(config: &S3Config, endpoint: &str) -> Result<AmazonS3, PluginError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let access_key = config
        .access_key_id
        .clone()
        .or_else(|| env("AWS_ACCESS_KEY_ID"));
    let secret_key = config
        .secret_access_key
        .clone()
        .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
    let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
        return Err(PluginError::Denied(format!(
            "no credentials for bucket `{}` at {endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name them in the options (access-key-id = \"env:NAME\" or \"file:PATH\")",
            config.bucket
        )));
    };
    let token = config
        .session_token
        .clone()
        .or_else(|| env("AWS_SESSION_TOKEN"));
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(30),
    };
    let client = ClientOptions::new()
        .with_allow_http(endpoint.starts_with("http://"))
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(120));
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_endpoint(endpoint)
        .with_virtual_hosted_style_request(config.virtual_hosted_style)
        .with_access_key_id(access_key)
        .with_secret_access_key(secret_key)
        .with_retry(retry)
        .with_client_options(client);
    if let Some(token) = token {
        builder = builder.with_token(token);
    }
    builder.build().map_err(|e| {
        PluginError::Permanent(format!(
            "bucket `{}` at {endpoint}: {}",
            config.bucket,
            short(&e.to_string())
        ))
    })
}

fn key_path(key: &str) -> Result<ObjectPath, PluginError> {
    ObjectPath::parse(key)
        .map_err(|e| PluginError::Permanent(format!("invalid object key `{key}`: {e}")))
}

impl Bucket {
    async fn get(&self, key: &str) -> Result<Bytes, PluginError> {
        let path = key_path(key)?;
        let got = match self.store.get(&path).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        got.map_err(|e| self.error(key, e))
    }

    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Bytes, PluginError> {
        let path = key_path(key)?;
        self.store
            .get_range(&path, offset..offset + length)
            .await
            .map_err(|e| self.error(key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, PluginError> {
        // object_store lists whole path segments; filter to the exact string prefix.
        let dir = prefix
            .rfind('/')
            .map(|slash| ObjectPath::from(&prefix[..slash]));
        let listed: Vec<_> = self
            .store
            .list(dir.as_ref())
            .try_collect()
            .await
            .map_err(|e| self.error(prefix, e))?;
        Ok(listed
            .into_iter()
            .map(|m| ObjectEntry {
                key: m.location.to_string(),
                size: m.size,
            })
            .filter(|o| o.key.starts_with(prefix))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), PluginError> {
        let path = key_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    async fn put(&self, key: &str, data: Bytes, create_only: bool) -> Result<(), PluginError> {
        let path = key_path(key)?;
        // Create-only objects (snapshots, keys) are small: one conditional PUT, atomic on
        // the server. Large objects (packs) are content-addressed, so a multipart upload,
        // which cannot be conditional, is safe for them.
        if create_only || data.len() <= MULTIPART_PART {
            let opts = if create_only {
                PutMode::Create.into()
            } else {
                Default::default()
            };
            self.store
                .put_opts(&path, PutPayload::from_bytes(data), opts)
                .await
                .map(drop)
                .map_err(|e| self.error(key, e))
        } else {
            let upload = self
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| self.error(key, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
            let mut offset = 0;
            while offset < data.len() {
                writer
                    .wait_for_capacity(MULTIPART_PARALLEL)
                    .await
                    .map_err(|e| self.error(key, e))?;
                let end = (offset + MULTIPART_PART).min(data.len());
                writer.put(data.slice(offset..end));
                offset = end;
            }
            writer
                .finish()
                .await
                .map(drop)
                .map_err(|e| self.error(key, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_back_from_generic_errors() {
        let denied = object_store::Error::Generic {
            store: "S3",
            source: "Error performing GET http://x/b in 6ms - Server returned non-2xx status code: 403 Forbidden: <Error/>".into(),
        };
        assert!(matches!(
            classify("bucket", "", denied),
            PluginError::Denied(_)
        ));
        let down = object_store::Error::Generic {
            store: "S3",
            source: "error sending request: connection refused".into(),
        };
        assert!(matches!(
            classify("bucket", "k", down),
            PluginError::Retryable(_)
        ));
        assert_eq!(
            http_status("status code: 503 Service Unavailable"),
            Some(503)
        );
    }

    #[test]
    fn endpoints_need_a_grant_unless_they_are_a_providers_own() {
        let granted = vec!["127.0.0.1:9000".to_string(), "minio.lan".to_string()];
        assert!(endpoint_permitted(&granted, "http://127.0.0.1:9000"));
        assert!(!endpoint_permitted(&granted, "http://127.0.0.1:9001"));
        assert!(endpoint_permitted(&granted, "https://minio.lan:443/"));
        assert!(endpoint_permitted(
            &[],
            "https://s3.eu-west-1.amazonaws.com"
        ));
        assert!(endpoint_permitted(
            &[],
            "https://abc.r2.cloudflarestorage.com"
        ));
        assert!(!endpoint_permitted(
            &[],
            "http://s3.eu-west-1.amazonaws.com"
        ));
        assert!(!endpoint_permitted(
            &[],
            "https://amazonaws.com.evil.example"
        ));
        assert!(!endpoint_permitted(&granted, "ftp://127.0.0.1:9000"));
    }
}

//! The `s3` sink (also built in as `r2` and `b2`): a repository in an S3-compatible bucket.
//! The host's object-store capability does the HTTP, signing, retries and multipart
//! uploads; this plugin turns options and provider presets into a bucket connection and
//! maps object names below the configured prefix.

use cairn_sdk::object_store::{self, Bucket, S3Config};
use cairn_sdk::{Blob, Info, ObjectInfo, PluginError, RestoreTarget, Result, Sink, Store, host};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Options {
    /// Which service: sets the endpoint, region and addressing style it needs.
    #[serde(default)]
    provider: Provider,
    bucket: String,
    /// Keys of the repository start with this (`hosts/web1`); empty for the bucket root.
    #[serde(default)]
    prefix: String,
    /// `https://host[:port]` of any S3-compatible service (MinIO, Garage, Ceph, Wasabi).
    endpoint: Option<String>,
    region: Option<String>,
    /// Cloudflare R2: the account id that names the endpoint.
    account_id: Option<String>,
    /// `host/bucket/key` addressing (default for custom endpoints) instead of
    /// `bucket.host/key`.
    path_style: Option<bool>,
    /// `env:NAME` or `file:PATH`; the standard AWS environment variables when absent.
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Provider {
    #[default]
    S3,
    R2,
    B2,
}

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["bucket"],
  "additionalProperties": false,
  "properties": {
    "provider": {
      "enum": ["s3", "r2", "b2"],
      "description": "Preset for endpoint, region and addressing; set by using the sink names r2 or b2."
    },
    "bucket": { "type": "string", "description": "The bucket; it must exist." },
    "prefix": { "type": "string", "description": "Key prefix of the repository inside the bucket." },
    "endpoint": {
      "type": "string",
      "description": "https://host[:port] of an S3-compatible service; AWS's endpoint for the region when absent.",
      "x-cairn-grant": "connect"
    },
    "region": { "type": "string", "description": "Region (s3: default us-east-1; r2: auto; b2: required, e.g. us-west-004)." },
    "account-id": { "type": "string", "description": "r2: the Cloudflare account id." },
    "path-style": { "type": "boolean", "description": "Path-style addressing; default true for custom endpoints, false for AWS." },
    "access-key-id": { "type": "string", "description": "env:NAME or file:PATH; AWS_ACCESS_KEY_ID when absent." },
    "secret-access-key": { "type": "string", "description": "env:NAME or file:PATH; AWS_SECRET_ACCESS_KEY when absent." },
    "session-token": { "type": "string", "description": "env:NAME or file:PATH; AWS_SESSION_TOKEN when absent." }
  }
}"#;

struct S3;

cairn_sdk::export_sink!(S3);

impl Sink for S3 {
    type Options = Options;
    type Store = S3Store;

    fn info() -> Info {
        Info {
            name: "s3",
            version: env!("CARGO_PKG_VERSION"),
            description: "A repository in an S3-compatible bucket: AWS S3, Cloudflare R2 (sink = \"r2\"), Backblaze B2 (sink = \"b2\"), MinIO, Garage, Ceph, Wasabi.",
            options_schema: SCHEMA,
            restore_target: RestoreTarget::Directory,
        }
    }

    fn validate(options: &Options) -> Result<()> {
        if options.bucket.is_empty() {
            return Err(PluginError::config("bucket", "must not be empty"));
        }
        if let Some(endpoint) = &options.endpoint
            && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        {
            return Err(PluginError::config(
                "endpoint",
                "must start with https:// (or http:// for a local test server)",
            ));
        }
        match options.provider {
            Provider::R2 if options.endpoint.is_none() && options.account_id.is_none() => {
                return Err(PluginError::config(
                    "account-id",
                    "r2 needs the Cloudflare account id (or an endpoint)",
                ));
            }
            Provider::B2 if options.endpoint.is_none() && options.region.is_none() => {
                return Err(PluginError::config(
                    "region",
                    "b2 needs the bucket's region, e.g. us-west-004 (or an endpoint)",
                ));
            }
            _ => {}
        }
        for (field, value) in [
            ("access-key-id", &options.access_key_id),
            ("secret-access-key", &options.secret_access_key),
            ("session-token", &options.session_token),
        ] {
            if let Some(value) = value
                && !is_reference(value)
            {
                host::warn(format!(
                    "option `{field}` holds a secret in clear in the config file: use \"env:NAME\" or \"file:PATH\" instead"
                ));
            }
        }
        Ok(())
    }

    fn open(options: &Options) -> Result<S3Store> {
        let (endpoint, region, path_style) = preset(options);
        let config = S3Config {
            bucket: options.bucket.clone(),
            endpoint,
            region,
            virtual_hosted_style: !path_style,
            access_key_id: secret(&options.access_key_id)?,
            secret_access_key: secret(&options.secret_access_key)?,
            session_token: secret(&options.session_token)?,
        };
        let bucket = object_store::connect(&config)?;
        let prefix = options.prefix.trim_matches('/');
        Ok(S3Store {
            bucket,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }
}

/// Endpoint, region and path-style addressing for the provider and options.
fn preset(options: &Options) -> (Option<String>, String, bool) {
    let custom = options.endpoint.clone();
    let (endpoint, region) = match options.provider {
        Provider::S3 => (
            custom,
            options.region.clone().unwrap_or_else(|| "us-east-1".into()),
        ),
        Provider::R2 => (
            custom.or_else(|| {
                options
                    .account_id
                    .as_ref()
                    .map(|id| format!("https://{id}.r2.cloudflarestorage.com"))
            }),
            options.region.clone().unwrap_or_else(|| "auto".into()),
        ),
        Provider::B2 => {
            let region = options.region.clone().unwrap_or_default();
            (
                custom.or_else(|| Some(format!("https://s3.{region}.backblazeb2.com"))),
                region,
            )
        }
    };
    // AWS prefers virtual-hosted addressing; other services all accept path style, and
    // many local ones (MinIO, s3s) accept nothing else.
    let path_style = options
        .path_style
        .unwrap_or(options.endpoint.is_some() || options.provider != Provider::S3);
    (endpoint, region, path_style)
}

fn is_reference(value: &str) -> bool {
    value.starts_with("env:") || value.starts_with("file:")
}

fn secret(value: &Option<String>) -> Result<Option<String>> {
    match value {
        Some(v) if is_reference(v) => host::secret(v).map(Some),
        Some(v) => Ok(Some(v.clone())),
        None => Ok(None),
    }
}

struct S3Store {
    bucket: Bucket,
    /// Empty, or the prefix with a trailing `/`.
    prefix: String,
}

impl S3Store {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl Store for S3Store {
    fn put(&self, name: &str, contents: &Blob) -> Result<()> {
        self.bucket.put(&self.key(name), contents, false)
    }

    fn put_new(&self, name: &str, contents: &Blob) -> Result<()> {
        self.bucket.put(&self.key(name), contents, true)
    }

    fn get(&self, name: &str) -> Result<Blob> {
        self.bucket.get(&self.key(name))
    }

    fn get_range(&self, name: &str, offset: u64, length: u64) -> Result<Blob> {
        self.bucket.get_range(&self.key(name), offset, length)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .bucket
            .list(&self.key(prefix))?
            .into_iter()
            .filter_map(|o| {
                let name = o.key.strip_prefix(&self.prefix)?.to_string();
                Some(ObjectInfo { name, size: o.size })
            })
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.bucket.delete(&self.key(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: &str) -> Options {
        cairn_sdk::options::parse(json).unwrap()
    }

    #[test]
    fn presets_name_each_providers_endpoint_and_addressing() {
        let aws = options(r#"{"bucket": "b", "region": "eu-west-1"}"#);
        assert_eq!(preset(&aws), (None, "eu-west-1".into(), false));
        let r2 = options(r#"{"provider": "r2", "bucket": "b", "account-id": "abc"}"#);
        assert_eq!(
            preset(&r2),
            (
                Some("https://abc.r2.cloudflarestorage.com".into()),
                "auto".into(),
                true
            )
        );
        let b2 = options(r#"{"provider": "b2", "bucket": "b", "region": "us-west-004"}"#);
        assert_eq!(
            preset(&b2),
            (
                Some("https://s3.us-west-004.backblazeb2.com".into()),
                "us-west-004".into(),
                true
            )
        );
        let minio = options(r#"{"bucket": "b", "endpoint": "http://127.0.0.1:9000"}"#);
        assert_eq!(
            preset(&minio),
            (
                Some("http://127.0.0.1:9000".into()),
                "us-east-1".into(),
                true
            )
        );
        let forced =
            options(r#"{"bucket": "b", "endpoint": "https://s3.lan", "path-style": false}"#);
        assert!(!preset(&forced).2);
    }

    #[test]
    fn presets_without_what_they_need_are_config_errors() {
        let r2 = options(r#"{"provider": "r2", "bucket": "b"}"#);
        assert!(
            matches!(S3::validate(&r2), Err(PluginError::Config(c)) if c.field == "account-id")
        );
        let b2 = options(r#"{"provider": "b2", "bucket": "b"}"#);
        assert!(matches!(S3::validate(&b2), Err(PluginError::Config(c)) if c.field == "region"));
    }
}

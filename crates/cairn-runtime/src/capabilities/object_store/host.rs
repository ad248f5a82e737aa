//! The `object-store` interface for a plugin instance: buckets and their objects.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStore;
use wasmtime::component::Resource;

use super::*;
use crate::capabilities::bulk::Blob;
use crate::plugin_api::PluginError;
use crate::plugin_api::object_store::{self as wit, ObjectEntry, S3Config};
use crate::state::PluginState;

impl wit::Host for PluginState {
    async fn connect(
        &mut self,
        config: S3Config,
    ) -> wasmtime::Result<Result<Resource<Bucket>, PluginError>> {
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region));
        let label = format!("bucket `{}` at {endpoint}", config.bucket);
        if !endpoint_permitted(&self.grants.hosts, &endpoint) {
            return Ok(Err(PluginError::Denied(format!(
                "{label}: the endpoint is not granted to this sink; grant it with hosts = [\"host:port\"] under [repository.grants]"
            ))));
        }
        let store = match build(&config, &endpoint) {
            Ok(store) => Arc::new(store),
            Err(e) => return Ok(Err(e)),
        };
        // One cheap request proves endpoint, bucket and credentials before any work.
        let probe = store.list(None).next().await.transpose();
        if let Err(e) = probe {
            let error = match classify(&label, "", e) {
                PluginError::NotFound(_) => PluginError::Permanent(format!(
                    "{label}: the bucket does not exist; create it, or fix `bucket` and `endpoint`"
                )),
                PluginError::Retryable(m) => PluginError::Retryable(format!(
                    "{m}: is the endpoint right and the server reachable?"
                )),
                other => other,
            };
            return Ok(Err(error));
        }
        self.push_made(Ok(Bucket { store, label }))
    }
}

impl wit::HostBucket for PluginState {
    async fn put(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        contents: Resource<Blob>,
        create_only: bool,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let data = {
            let blob = self.table.get_mut(&contents)?;
            let blob = std::mem::replace(blob, Blob::from_bytes(Bytes::new()));
            match blob.into_bytes().await {
                Ok(data) => data,
                Err(e) => return Ok(Err(PluginError::Permanent(e.to_string()))),
            }
        };
        let bucket = self.table.get(&bucket)?;
        Ok(bucket.put(&key, data, create_only).await)
    }

    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Blob>, PluginError>> {
        let got = self.table.get(&bucket)?.get(&key).await;
        self.push_made(got.map(Blob::from_bytes))
    }

    async fn get_range(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        offset: u64,
        length: u64,
    ) -> wasmtime::Result<Result<Resource<Blob>, PluginError>> {
        let got = self
            .table
            .get(&bucket)?
            .get_range(&key, offset, length)
            .await;
        self.push_made(got.map(Blob::from_bytes))
    }

    async fn list(
        &mut self,
        bucket: Resource<Bucket>,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<ObjectEntry>, PluginError>> {
        Ok(self.table.get(&bucket)?.list(&prefix).await)
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        Ok(self.table.get(&bucket)?.delete(&key).await)
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

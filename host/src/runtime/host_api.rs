//! The `host` and `bulk` interfaces: logging, progress, secrets, and blobs a plugin builds
//! or reads itself.

use wasmtime::component::Resource;

use super::bindings::PluginError;
use super::bindings::source::cairn::plugin::types::LogLevel;
use super::bindings::source::cairn::plugin::{bulk, host, types};
use super::blob::Blob;
use super::state::PluginState;

/// The most a plugin may read from a blob in one call: bounds what one call can make a
/// plugin allocate.
const MAX_READ: u32 = 16 * 1024 * 1024;

impl types::Host for PluginState {}

impl host::Host for PluginState {
    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        let plugin = self.plugin.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }

    async fn progress(&mut self, phase: String, done: u64, total: u64) -> wasmtime::Result<()> {
        if let Some(hook) = &self.progress {
            hook(&self.plugin, &phase, done, total);
        }
        Ok(())
    }

    async fn secret(&mut self, reference: String) -> wasmtime::Result<Result<String, PluginError>> {
        Ok(resolve_secret(&self.grants.secrets, &reference))
    }
}

/// Resolves `env:NAME` or `file:PATH` if the plugin was granted that reference.
pub fn resolve_secret(
    granted: &std::collections::HashSet<String>,
    reference: &str,
) -> Result<String, PluginError> {
    if !granted.contains(reference) {
        return Err(PluginError::Denied(format!(
            "secret `{reference}` is not granted: name it in this plugin's options or grants.secrets"
        )));
    }
    if let Some(name) = reference.strip_prefix("env:") {
        std::env::var(name)
            .map_err(|_| PluginError::NotFound(format!("environment variable {name} is not set")))
    } else if let Some(path) = reference.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| PluginError::NotFound(format!("secret file {path}: {e}")))
    } else {
        Err(PluginError::Permanent(format!(
            "secret reference `{reference}` must start with env: or file:"
        )))
    }
}

impl bulk::Host for PluginState {}

impl bulk::HostBlob for PluginState {
    async fn new(&mut self, bytes: Vec<u8>) -> wasmtime::Result<Resource<Blob>> {
        Ok(self.table.push(Blob::Memory {
            data: bytes::BytesMut::from(&bytes[..]),
            pos: 0,
        })?)
    }

    async fn append(
        &mut self,
        blob: Resource<Blob>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        match self.table.get_mut(&blob)? {
            Blob::Memory { data, .. } => {
                data.extend_from_slice(&bytes);
                Ok(Ok(()))
            }
            _ => Ok(Err(PluginError::Permanent(
                "only blobs built by the plugin can be appended to".into(),
            ))),
        }
    }

    async fn size(&mut self, blob: Resource<Blob>) -> wasmtime::Result<Option<u64>> {
        Ok(self.table.get(&blob)?.size())
    }

    async fn read(
        &mut self,
        blob: Resource<Blob>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        let blob = self.table.get_mut(&blob)?;
        Ok(match blob.next_piece(max.min(MAX_READ) as usize).await {
            Ok(Some(piece)) => Ok(piece.to_vec()),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(PluginError::Permanent(e.to_string())),
        })
    }

    async fn drop(&mut self, rep: Resource<Blob>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

//! The `host` interface for a plugin instance: its log lines (tagged with its name), its
//! progress (to the hook the caller set), and the secrets its grants name.

use super::resolve_secret;
use crate::plugin_api::types::LogLevel;
use crate::plugin_api::{PluginError, host, types};
use crate::state::PluginState;

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

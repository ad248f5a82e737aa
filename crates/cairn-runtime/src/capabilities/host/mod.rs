//! The `host` capability: what every plugin may ask of the host whatever it does, with
//! secrets limited to the references its grants name.

// Every capability keeps its `Host` impl in `host.rs`; this one serves the WIT interface
// that is itself called `host`.
#[allow(clippy::module_inception)]
mod host;

use std::collections::HashSet;
use std::sync::Arc;

use crate::plugin_api::types::PluginError;

/// Called with (plugin, phase, done, total) when a plugin reports progress.
pub type ProgressHook = Arc<dyn Fn(&str, &str, u64, u64) + Send + Sync>;

/// Resolves `env:NAME` or `file:PATH` if the plugin was granted that reference.
pub fn resolve_secret(granted: &HashSet<String>, reference: &str) -> Result<String, PluginError> {
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

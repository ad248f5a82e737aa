//! Host failures as the plugin error kinds a plugin can act on.

use crate::plugin_api::PluginError;
use crate::sandbox::grants::Denied;

pub fn denied(d: Denied) -> PluginError {
    PluginError::Denied(d.to_string())
}

/// Maps an I/O error on `what` to the plugin error kind a plugin can act on.
pub fn io_error(what: &str, e: std::io::Error) -> PluginError {
    use std::io::ErrorKind;
    let message = format!("{what}: {e}");
    match e.kind() {
        ErrorKind::NotFound => PluginError::NotFound(message),
        ErrorKind::AlreadyExists => PluginError::AlreadyExists(message),
        ErrorKind::PermissionDenied => PluginError::Denied(message),
        ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            PluginError::Retryable(message)
        }
        _ => PluginError::Permanent(message),
    }
}

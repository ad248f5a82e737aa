//! Services the host offers every plugin: logging, progress and secrets.

use crate::bindings::cairn::plugin::host as wit;
use crate::{LogLevel, Result};

/// Writes to the host's log, tagged with the plugin's name.
pub fn log(level: LogLevel, message: impl AsRef<str>) {
    wit::log(level, message.as_ref());
}

pub fn debug(message: impl AsRef<str>) {
    log(LogLevel::Debug, message);
}

pub fn info(message: impl AsRef<str>) {
    log(LogLevel::Info, message);
}

pub fn warn(message: impl AsRef<str>) {
    log(LogLevel::Warn, message);
}

/// Reports progress of the current phase (`total` 0 when unknown).
pub fn progress(phase: &str, done: u64, total: u64) {
    wit::progress(phase, done, total);
}

/// Resolves `env:NAME` or `file:PATH`. Only references written in this plugin's own
/// options (or its grants) resolve, so a plugin cannot read arbitrary secrets.
pub fn secret(reference: &str) -> Result<String> {
    wit::secret(reference)
}

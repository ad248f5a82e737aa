//! Constructors and conversions for [`PluginError`], the error every plugin call returns.

use crate::{ConfigError, PluginError};

/// The result of a plugin call.
pub type Result<T, E = PluginError> = core::result::Result<T, E>;

impl PluginError {
    /// The option at `field` (a dotted path into the options) is missing or invalid.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError::Config(ConfigError {
            field: field.into(),
            message: message.into(),
        })
    }

    /// A failure that repeating will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        PluginError::Permanent(message.into())
    }

    /// A transient failure: the host retries the call with backoff.
    pub fn retryable(message: impl Into<String>) -> Self {
        PluginError::Retryable(message.into())
    }

    /// What went wrong, without the kind.
    pub fn message(&self) -> &str {
        match self {
            PluginError::Config(c) => &c.message,
            PluginError::Retryable(m)
            | PluginError::Permanent(m)
            | PluginError::NotFound(m)
            | PluginError::AlreadyExists(m)
            | PluginError::Denied(m) => m,
        }
    }

    /// Adds what was being done to the message, keeping the kind.
    pub fn context(self, what: impl core::fmt::Display) -> Self {
        match self {
            PluginError::Config(c) => PluginError::Config(ConfigError {
                field: c.field,
                message: format!("{what}: {}", c.message),
            }),
            PluginError::Retryable(m) => PluginError::Retryable(format!("{what}: {m}")),
            PluginError::Permanent(m) => PluginError::Permanent(format!("{what}: {m}")),
            PluginError::NotFound(m) => PluginError::NotFound(format!("{what}: {m}")),
            PluginError::AlreadyExists(m) => PluginError::AlreadyExists(format!("{what}: {m}")),
            PluginError::Denied(m) => PluginError::Denied(format!("{what}: {m}")),
        }
    }
}

impl From<std::io::Error> for PluginError {
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match err.kind() {
            ErrorKind::NotFound => PluginError::NotFound(err.to_string()),
            ErrorKind::PermissionDenied => PluginError::Denied(err.to_string()),
            ErrorKind::AlreadyExists => PluginError::AlreadyExists(err.to_string()),
            ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                PluginError::Retryable(err.to_string())
            }
            _ => PluginError::Permanent(err.to_string()),
        }
    }
}

impl From<crate::options::OptionsError> for PluginError {
    fn from(err: crate::options::OptionsError) -> Self {
        PluginError::config(err.field, err.message)
    }
}

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

    /// Adds what was being done to the message, keeping the kind. A message that already
    /// starts with it (a host error naming the same path) is left as it is.
    pub fn context(self, what: impl core::fmt::Display) -> Self {
        let what = what.to_string();
        let add = |message: String| {
            let named = message
                .strip_prefix(what.as_str())
                .is_some_and(|rest| rest.starts_with(':'));
            if named {
                message
            } else {
                format!("{what}: {message}")
            }
        };
        match self {
            PluginError::Config(c) => PluginError::Config(ConfigError {
                field: c.field,
                message: add(c.message),
            }),
            PluginError::Retryable(m) => PluginError::Retryable(add(m)),
            PluginError::Permanent(m) => PluginError::Permanent(add(m)),
            PluginError::NotFound(m) => PluginError::NotFound(add(m)),
            PluginError::AlreadyExists(m) => PluginError::AlreadyExists(add(m)),
            PluginError::Denied(m) => PluginError::Denied(add(m)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_added_once() {
        let err =
            PluginError::permanent("/srv/app.db: no room for the copy").context("/srv/app.db");
        assert_eq!(err.message(), "/srv/app.db: no room for the copy");
        let err = PluginError::retryable("locked").context("/srv/app.db");
        assert!(matches!(err, PluginError::Retryable(_)));
        assert_eq!(err.message(), "/srv/app.db: locked");
        // A longer path that merely begins with the context is not the context.
        let err = PluginError::permanent("/srv/app.db2: gone").context("/srv/app.db");
        assert_eq!(err.message(), "/srv/app.db: /srv/app.db2: gone");
    }
}

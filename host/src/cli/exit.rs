//! Exit codes, a contract with scripts (documented in the README):
//! 0 success; 1 an operation failed (a source's backup, a check found damage, a restore);
//! 2 usage or configuration error (the config file, plugin options, an unknown plugin);
//! 3 the repository cannot be opened (wrong password, no repository, storage refused).

use crate::config::ConfigError;
use crate::repo::RepoError;
use crate::repo::backend::{BackendError, BackendErrorKind};
use crate::runtime::{CallError, LoadError, PluginError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitStatus {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    Repository = 3,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status as u8)
    }
}

/// Picks the exit status for an error from what caused it.
pub fn classify(error: &anyhow::Error) -> ExitStatus {
    for cause in error.chain() {
        if cause.is::<ConfigError>() || cause.is::<LoadError>() {
            return ExitStatus::Usage;
        }
        if let Some(CallError::Failed {
            error: PluginError::Config(_),
            ..
        }) = cause.downcast_ref::<CallError>()
        {
            return ExitStatus::Usage;
        }
        if let Some(e) = cause.downcast_ref::<RepoError>() {
            return match e {
                RepoError::WrongPassword(_)
                | RepoError::NotInitialised(_)
                | RepoError::AlreadyInitialised(_) => ExitStatus::Repository,
                RepoError::Backend(b) => backend_status(b),
                _ => ExitStatus::Failed,
            };
        }
        if let Some(b) = cause.downcast_ref::<BackendError>() {
            return backend_status(b);
        }
    }
    ExitStatus::Failed
}

fn backend_status(e: &BackendError) -> ExitStatus {
    match e.kind {
        BackendErrorKind::Denied | BackendErrorKind::Config => ExitStatus::Repository,
        _ => ExitStatus::Failed,
    }
}

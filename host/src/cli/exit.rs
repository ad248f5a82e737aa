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
            return repo_status(e);
        }
        if let Some(b) = cause.downcast_ref::<BackendError>() {
            return backend_status(b);
        }
    }
    ExitStatus::Failed
}

fn repo_status(e: &RepoError) -> ExitStatus {
    match e {
        RepoError::WrongPassword(_)
        | RepoError::KeySlotsDamaged { .. }
        | RepoError::NotInitialised(_)
        | RepoError::AlreadyInitialised(_)
        | RepoError::ConfigMissing { .. } => ExitStatus::Repository,
        RepoError::Backend(b) => backend_status(b),
        // What was being done: its cause decides.
        RepoError::Context { cause, .. } => repo_status(cause),
        _ => ExitStatus::Failed,
    }
}

fn backend_status(e: &BackendError) -> ExitStatus {
    match e.kind {
        BackendErrorKind::Denied | BackendErrorKind::Config => ExitStatus::Repository,
        _ => ExitStatus::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_being_done_does_not_hide_the_cause() {
        let denied = BackendError::new(BackendErrorKind::Denied, "403 Forbidden");
        let wrapped = RepoError::from(denied).within("deleting pack 00ff");
        assert_eq!(
            classify(&anyhow::Error::new(wrapped)),
            ExitStatus::Repository
        );
        let damaged = RepoError::Corrupt("bad tag".into()).within("reading the items of x");
        let error = anyhow::Error::new(damaged);
        assert_eq!(classify(&error), ExitStatus::Failed);
        assert_eq!(
            format!("{error:#}"),
            "reading the items of x: repository data is damaged: bad tag"
        );
    }
}

//! The storage a repository lives on: put/get/list/delete of immutable named objects.
//! The real implementation runs a sink plugin (see `runtime::sink`); the repository only
//! needs this small trait.

use bytes::Bytes;
use futures::future::BoxFuture;

/// What kind of failure a storage operation met; decides retries and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    NotFound,
    AlreadyExists,
    Denied,
    /// The sink's options are wrong.
    Config,
    /// Still failing after retries.
    Transient,
    Permanent,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub kind: BackendErrorKind,
    pub message: String,
}

impl BackendError {
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            message: message.into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == BackendErrorKind::NotFound
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

pub trait Backend: Send + Sync {
    /// Stores an object; with `exclusive`, fails with `AlreadyExists` if it exists.
    fn put<'a>(
        &'a self,
        name: &'a str,
        data: Bytes,
        exclusive: bool,
    ) -> BoxFuture<'a, BackendResult<()>>;
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BackendResult<Bytes>>;
    fn get_range<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        length: u64,
    ) -> BoxFuture<'a, BackendResult<Bytes>>;
    /// Names and sizes of the objects whose name starts with `prefix`.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, BackendResult<Vec<(String, u64)>>>;
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BackendResult<()>>;
    /// Where the objects are, for messages ("local sink at /srv/backups").
    fn describe(&self) -> String;
}

//! Objects in memory: a [`Backend`] for unit tests of what sits above the storage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::Repository;
use super::backend::{Backend, BackendError, BackendErrorKind, BackendResult};

/// A new repository on an empty [`Memory`], without a local cache.
pub async fn repository() -> Arc<Repository> {
    Arc::new(
        Repository::init(Arc::new(Memory::default()), b"test")
            .await
            .expect("a repository in memory")
            .without_cache(),
    )
}

#[derive(Default)]
pub struct Memory(Mutex<HashMap<String, Bytes>>);

impl Backend for Memory {
    fn put<'a>(
        &'a self,
        name: &'a str,
        data: Bytes,
        exclusive: bool,
    ) -> BoxFuture<'a, BackendResult<()>> {
        let mut objects = self.0.lock().unwrap();
        let result = if exclusive && objects.contains_key(name) {
            Err(BackendError::new(BackendErrorKind::AlreadyExists, name))
        } else {
            objects.insert(name.to_string(), data);
            Ok(())
        };
        Box::pin(async move { result })
    }
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BackendResult<Bytes>> {
        let found = self.0.lock().unwrap().get(name).cloned();
        Box::pin(
            async move { found.ok_or_else(|| BackendError::new(BackendErrorKind::NotFound, name)) },
        )
    }
    fn get_range<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        length: u64,
    ) -> BoxFuture<'a, BackendResult<Bytes>> {
        let whole = self.get(name);
        Box::pin(async move {
            let whole = whole.await?;
            let end = (offset + length).min(whole.len() as u64) as usize;
            Ok(whole.slice(offset as usize..end))
        })
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, BackendResult<Vec<(String, u64)>>> {
        let names = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, b)| (n.clone(), b.len() as u64))
            .collect();
        Box::pin(async move { Ok(names) })
    }
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BackendResult<()>> {
        self.0.lock().unwrap().remove(name);
        Box::pin(async { Ok(()) })
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

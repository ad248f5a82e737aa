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

/// A file's record at `path`, with no contents: for tests that build item lists.
pub fn file_item(path: &str) -> crate::tree::ItemRecord {
    crate::tree::ItemRecord {
        path: path.to_string(),
        kind: crate::tree::ItemKind::File,
        size: 0,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 1,
        target: None,
        chunks: Vec::new(),
        changed_while_read: false,
    }
}

/// A manifest of source `test` naming the item list `tree` of `items` items, taken now:
/// for tests that write snapshots by hand.
pub fn manifest(tree: Vec<crate::crypto::ChunkId>, items: u64) -> crate::snapshot::SourceSnapshot {
    crate::snapshot::SourceSnapshot {
        version: 1,
        snapshot: crate::snapshot::new_snapshot_id(),
        time: chrono::Utc::now(),
        seq: 0,
        hostname: "test".into(),
        username: "test".into(),
        tags: Vec::new(),
        source: "test".into(),
        plugin: "test".into(),
        plugin_version: "0".into(),
        tree,
        items,
        bytes: 0,
        annotations: Default::default(),
        duration_secs: 0.0,
        program: "test".into(),
        changed_while_read: 0,
        options: None,
    }
}

/// Stores `items` as a snapshot's item list (their chunks are not stored); returns the
/// repository's index with it and the manifest that names it, unwritten: for tests of
/// what reads item lists.
pub async fn item_list(
    repo: &Arc<Repository>,
    items: impl IntoIterator<Item = crate::tree::ItemRecord>,
) -> crate::RepoResult<(crate::Indexed, crate::snapshot::SourceSnapshot)> {
    let indexed = &repo.load_index().await?;
    use crate::chunker::Chunking;
    use crate::pack::ChunkKind;
    use crate::write::{ChunkWriter, ContentWriter};
    let writer = Arc::new(ChunkWriter::start(indexed)?);
    let cdc = indexed.config().chunker;
    let mut tree = ContentWriter::new(
        writer.clone(),
        Chunking::ContentDefined(cdc),
        ChunkKind::Tree,
    );
    let mut count = 0;
    for item in items {
        tree.write(&item.to_line()).await?;
        count += 1;
    }
    let (tree, _) = tree.finish().await?;
    writer.flush().await?;
    let manifest = manifest(tree.into_iter().map(|(id, _)| id).collect(), count);
    Ok((repo.load_index().await?, manifest))
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

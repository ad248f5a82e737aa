//! The `backup-io` interface for a plugin instance: item writers, store-ahead and item streams.

use wasmtime::component::Resource;

use super::*;
use crate::capabilities::bulk::Blob;
use crate::pipeline::store_ahead::StoreAhead;
use crate::plugin_api::backup_io;
use crate::plugin_api::types::Chunking as WitChunking;
use crate::plugin_api::{ItemKind, ItemMeta, PluginError};
use crate::repo::chunker::Chunking;
use crate::repo::tree::ItemRecord;
use crate::state::PluginState;

/// Reads of a file that keeps changing before it is stored flagged.
const READ_ATTEMPTS: u32 = 3;

/// What tells that an open file changed: writes move its mtime and ctime (on every
/// filesystem, unlike change notification), truncation and appends its size.
#[derive(Debug, PartialEq, Eq)]
struct ReadState {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl ReadState {
    fn of(file: &std::fs::File) -> std::io::Result<ReadState> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        Ok(ReadState {
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

impl PluginState {
    fn capture(&mut self) -> Result<&mut Capture, PluginError> {
        self.capture.as_mut().ok_or_else(|| {
            PluginError::Permanent("the item writer is only usable during backup".into())
        })
    }

    async fn add_file_inner(
        &mut self,
        mut meta: ItemMeta,
        source: String,
    ) -> Result<(), PluginError> {
        check_item_path(&meta.path)?;
        meta.kind = ItemKind::File;
        if let Some(old) = self.capture()?.take_unchanged(&meta).await {
            let capture = self.capture()?;
            capture.counts.files_unchanged += 1;
            return capture
                .record(ItemRecord {
                    mode: meta.mode,
                    uid: meta.uid,
                    gid: meta.gid,
                    ..old
                })
                .await;
        }
        let (mut file, _) = self.open_native(&source)?;
        let io = |e| crate::errors::io_error(&source, e);
        let capture = self.capture()?;
        // A file written while it is read would be stored as a mix of its old and new
        // bytes, a state it never had: compare what fstat says before and after each
        // read, and read again (bounded) until nothing changed in between.
        let mut attempt = 1;
        let (chunks, size, changed) = loop {
            let before = ReadState::of(&file).map_err(io)?;
            if attempt > 1 {
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).map_err(io)?;
            }
            let mut content = capture.content(Chunking::ContentDefined(capture.cdc));
            content
                .read_all(&mut file, Some(before.size))
                .await
                .map_err(io)?
                .map_err(repo_error)?;
            let (chunks, size) = content.finish().await.map_err(repo_error)?;
            let after = ReadState::of(&file).map_err(io)?;
            if before == after && size == after.size {
                break (chunks, size, false);
            }
            if attempt == READ_ATTEMPTS {
                break (chunks, size, true);
            }
            attempt += 1;
        };
        if changed {
            if capture.changed_files == ChangedFiles::Fail {
                return Err(PluginError::Permanent(format!(
                    "{source} changed while it was read, {READ_ATTEMPTS} times in a row; stop what writes it during the backup, exclude it, or set `changed-files = \"warn\"` on the source to store such files as read, flagged"
                )));
            }
            tracing::warn!(
                "{source} changed while it was read, {READ_ATTEMPTS} times in a row: stored as last read and flagged (`cairn ls` shows it); its contents may be a state the file never had"
            );
            capture.counts.files_changed_while_read += 1;
        }
        // The file may have grown or shrunk since it was listed: record what was read.
        meta.size = size;
        capture.counts.files_read += 1;
        let mut record = record_from_meta(&meta, chunks);
        record.changed_while_read = changed;
        capture.record(record).await
    }

    /// Stores blobs as items, `parallel` at a time, each on its own task so that chunking
    /// and the streams' producers (database connections) overlap. Items are recorded in
    /// the order given; the first failure aborts the rest.
    async fn add_blobs_inner(
        &mut self,
        items: Vec<backup_io::BlobItem>,
        parallel: u32,
    ) -> Result<Vec<u64>, PluginError> {
        let mut jobs = Vec::with_capacity(items.len());
        for item in items {
            check_item_path(&item.meta.path)?;
            let chunking = self.capture()?.chunking(item.chunking)?;
            let content = self.capture()?.content(chunking);
            let blob = self
                .table
                .delete(item.contents)
                .map_err(|e| PluginError::Permanent(format!("blob: {e}")))?;
            jobs.push((item.meta, content, blob));
        }
        let limit = parallel.clamp(1, 64) as usize;
        let done = crate::parallel::in_order(
            limit,
            jobs,
            |(mut meta, mut content, mut blob)| async move {
                pump(&mut blob, &mut content).await?;
                let (chunks, size) = content.finish().await.map_err(repo_error)?;
                meta.size = size;
                Ok(record_from_meta(&meta, chunks))
            },
        )
        .await?;
        let mut sizes = Vec::with_capacity(done.len());
        for record in done {
            sizes.push(record.size);
            self.capture()?.record(record).await?;
        }
        Ok(sizes)
    }

    async fn add_blob_inner(
        &mut self,
        mut meta: ItemMeta,
        chunking: WitChunking,
        blob: Resource<Blob>,
    ) -> Result<u64, PluginError> {
        check_item_path(&meta.path)?;
        let chunking = self.capture()?.chunking(chunking)?;
        let mut content = self.capture()?.content(chunking);
        let known = match self.table.get(&blob) {
            Ok(Blob::File {
                known: Some(known),
                remaining,
                size,
                ..
            }) if remaining == size && chunking == Chunking::Fixed(known.chunk_size()) => {
                Some(known.clone())
            }
            _ => None,
        };
        match known {
            Some(known) => splice_known(&mut self.table, &blob, &mut content, &known).await?,
            None => splice_blob(&mut self.table, &blob, &mut content).await?,
        };
        let (chunks, size) = content.finish().await.map_err(repo_error)?;
        meta.size = size;
        self.capture()?
            .record(record_from_meta(&meta, chunks))
            .await?;
        Ok(size)
    }
}

impl backup_io::Host for PluginState {}

impl backup_io::HostItemWriter for PluginState {
    async fn add_entry(
        &mut self,
        _writer: Resource<ItemWriter>,
        meta: ItemMeta,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let result = async {
            check_item_path(&meta.path)?;
            if matches!(meta.kind, ItemKind::File | ItemKind::Data) {
                return Err(PluginError::Permanent(format!(
                    "`{}` has contents: store it with add-file, add-blob or begin-stream",
                    meta.path
                )));
            }
            self.capture()?
                .record(record_from_meta(&meta, Vec::new()))
                .await
        };
        Ok(result.await)
    }

    async fn add_file(
        &mut self,
        _writer: Resource<ItemWriter>,
        meta: ItemMeta,
        source: String,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        Ok(self.add_file_inner(meta, source).await)
    }

    async fn add_blob(
        &mut self,
        _writer: Resource<ItemWriter>,
        meta: ItemMeta,
        chunking: WitChunking,
        contents: Resource<Blob>,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        Ok(self.add_blob_inner(meta, chunking, contents).await)
    }

    async fn add_blobs(
        &mut self,
        _writer: Resource<ItemWriter>,
        items: Vec<backup_io::BlobItem>,
        parallel: u32,
    ) -> wasmtime::Result<Result<Vec<u64>, PluginError>> {
        Ok(self.add_blobs_inner(items, parallel).await)
    }

    async fn begin_stream(
        &mut self,
        _writer: Resource<ItemWriter>,
        meta: ItemMeta,
        chunking: WitChunking,
    ) -> wasmtime::Result<Result<Resource<ItemStream>, PluginError>> {
        let result = (|| {
            check_item_path(&meta.path)?;
            let chunking = self.capture()?.chunking(chunking)?;
            Ok(self.capture()?.content(chunking))
        })();
        match result {
            Ok(content) => Ok(Ok(self.table.push(ItemStream {
                meta,
                content: Some(content),
            })?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn annotate(
        &mut self,
        _writer: Resource<ItemWriter>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        if let Some(capture) = self.capture.as_mut() {
            capture.annotations.insert(key, value);
        }
        Ok(())
    }

    async fn store_ahead(
        &mut self,
        _writer: Resource<ItemWriter>,
        source: String,
        chunking: WitChunking,
    ) -> wasmtime::Result<Result<Resource<StoreAhead>, PluginError>> {
        let started = (|| {
            let chunking = self.capture()?.chunking(chunking)?;
            let (file, _) = self.open_native(&source)?;
            let capture = self.capture()?;
            let fixed = match chunking {
                Chunking::Fixed(size) => Some(size),
                Chunking::ContentDefined(_) => None,
            };
            let ahead = StoreAhead::start(source, file, capture.content(chunking).ahead(), fixed);
            capture.ahead.push(ahead.task());
            Ok(ahead)
        })();
        match started {
            Ok(ahead) => Ok(Ok(self.table.push(ahead)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn drop(&mut self, rep: Resource<ItemWriter>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl backup_io::HostStoreAhead for PluginState {
    async fn drop(&mut self, rep: Resource<StoreAhead>) -> wasmtime::Result<()> {
        let ahead = self.table.delete(rep)?;
        ahead.task().stop().await;
        Ok(())
    }
}

impl backup_io::HostItemStream for PluginState {
    async fn write(
        &mut self,
        stream: Resource<ItemStream>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let stream = self.table.get_mut(&stream)?;
        let Some(content) = stream.content.as_mut() else {
            return Ok(Err(PluginError::Permanent("write after finish".into())));
        };
        Ok(content.write(&bytes).await.map_err(repo_error))
    }

    async fn splice(
        &mut self,
        stream: Resource<ItemStream>,
        contents: Resource<Blob>,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        // Take the content writer out so the table can lend the blob meanwhile.
        let Some(mut content) = self.table.get_mut(&stream)?.content.take() else {
            return Ok(Err(PluginError::Permanent("splice after finish".into())));
        };
        let result = splice_blob(&mut self.table, &contents, &mut content).await;
        self.table.get_mut(&stream)?.content = Some(content);
        Ok(result)
    }

    async fn finish(
        &mut self,
        stream: Resource<ItemStream>,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        let entry = self.table.get_mut(&stream)?;
        let Some(content) = entry.content.take() else {
            return Ok(Err(PluginError::Permanent("finish called twice".into())));
        };
        let mut meta = entry.meta.clone();
        let result = async {
            let (chunks, size) = content.finish().await.map_err(repo_error)?;
            meta.size = size;
            self.capture()?
                .record(record_from_meta(&meta, chunks))
                .await?;
            Ok(size)
        };
        Ok(result.await)
    }

    async fn drop(&mut self, rep: Resource<ItemStream>) -> wasmtime::Result<()> {
        // An unfinished stream records nothing: its chunks are stored but unreferenced.
        self.table.delete(rep)?;
        Ok(())
    }
}

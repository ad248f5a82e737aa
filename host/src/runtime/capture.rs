//! The backup side of a source: the `item-writer` and `item-stream` resources, and the
//! [`Capture`] session that turns what a source emits into chunks and an item list.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use wasmtime::component::Resource;

use super::bindings::source::cairn::plugin::backup_io;
use super::bindings::source::cairn::plugin::types::Chunking as WitChunking;
use super::bindings::{ItemKind, ItemMeta, PluginError};
use super::blob::Blob;
use super::copy_tap::KnownChunks;
use super::files::open_native;
use super::state::PluginState;
use super::store_ahead::{AheadTask, StoreAhead};
use crate::repo::chunker::{CdcParams, Chunking, FIXED_MAX, FIXED_MIN};
use crate::repo::crypto::ChunkId;
use crate::repo::pack::ChunkKind;
use crate::repo::tree::{self, ItemRecord};
use crate::repo::writer::{ChunkWriter, ContentWriter};

/// The writer a source's `backup` receives; its state lives in [`PluginState::capture`].
pub struct ItemWriter;

/// An item whose bytes the plugin writes itself.
pub struct ItemStream {
    meta: ItemMeta,
    content: Option<ContentWriter>,
}

/// One source's backup in progress.
pub struct Capture {
    writer: Arc<ChunkWriter>,
    cdc: CdcParams,
    tree: ContentWriter,
    /// The previous snapshot's items of this source, to skip reading unchanged files.
    parent: HashMap<String, ItemRecord>,
    counts: CaptureCounts,
    annotations: BTreeMap<String, String>,
    /// Stores ahead the plugin started; stopped when the capture ends, whatever the
    /// plugin did with them, so that none outlives the flush of the data.
    ahead: Vec<Arc<AheadTask>>,
}

/// What a capture saw: items and bytes recorded, files read and files reused unread.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CaptureCounts {
    pub items: u64,
    pub bytes: u64,
    pub files_read: u64,
    pub files_unchanged: u64,
}

/// What a finished capture stores in the snapshot manifest.
pub struct Captured {
    pub tree: Vec<ChunkId>,
    pub counts: CaptureCounts,
    pub annotations: BTreeMap<String, String>,
}

impl Capture {
    pub fn new(writer: Arc<ChunkWriter>, cdc: CdcParams, parent: Vec<ItemRecord>) -> Capture {
        Capture {
            tree: ContentWriter::new(
                writer.clone(),
                Chunking::ContentDefined(cdc),
                ChunkKind::Tree,
            ),
            writer,
            cdc,
            parent: parent.into_iter().map(|r| (r.path.clone(), r)).collect(),
            counts: CaptureCounts::default(),
            annotations: BTreeMap::new(),
            ahead: Vec::new(),
        }
    }

    async fn record(&mut self, record: ItemRecord) -> Result<(), PluginError> {
        self.counts.items += 1;
        if matches!(record.kind, tree::ItemKind::File | tree::ItemKind::Data) {
            self.counts.bytes += record.size;
        }
        self.tree.write(&record.to_line()).await.map_err(repo_error)
    }

    /// Stops the store-ahead of `source` if the plugin started one with fixed chunks of at
    /// most `largest_chunk` bytes, and returns the writer and chunk size to store the
    /// chunks of `source`'s copy with as it is written (`copy_tap`): reading the live
    /// file too would only compete with that.
    pub async fn take_over_store_ahead(
        &mut self,
        source: &str,
        largest_chunk: u32,
    ) -> Option<(Arc<ChunkWriter>, u32)> {
        let task = self.ahead.iter().find(|task| {
            task.source == source && task.fixed_chunk.is_some_and(|size| size <= largest_chunk)
        })?;
        task.stop().await;
        Some((self.writer.clone(), task.fixed_chunk?))
    }

    fn content(&self, chunking: Chunking) -> ContentWriter {
        ContentWriter::new(self.writer.clone(), chunking, ChunkKind::Data)
    }

    fn chunking(&self, chunking: WitChunking) -> Result<Chunking, PluginError> {
        match chunking {
            WitChunking::ContentDefined => Ok(Chunking::ContentDefined(self.cdc)),
            WitChunking::Fixed(size) if (FIXED_MIN..=FIXED_MAX).contains(&size) => {
                Ok(Chunking::Fixed(size))
            }
            WitChunking::Fixed(size) => Err(PluginError::Permanent(format!(
                "fixed chunk size {size} is outside {FIXED_MIN}..={FIXED_MAX} bytes"
            ))),
        }
    }

    /// Takes the parent's record of the same file if the file is unchanged and its chunks
    /// are still stored. Each path is looked up once, so taking it (rather than cloning)
    /// also lets the parent's items go as the walk proceeds.
    fn take_unchanged(&mut self, meta: &ItemMeta) -> Option<ItemRecord> {
        let old = self.parent.get(&meta.path)?;
        let same = old.kind == tree::ItemKind::File
            && old.size == meta.size
            && old.mtime_ns == meta.mtime_ns
            && old.ctime_ns == meta.ctime_ns
            && old.inode == meta.inode
            && old.chunks.iter().all(|(id, _)| self.writer.holds(id));
        if same {
            self.parent.remove(&meta.path)
        } else {
            None
        }
    }

    pub async fn finish(self) -> Result<Captured, PluginError> {
        for task in &self.ahead {
            task.stop().await;
        }
        let (chunks, _) = self.tree.finish().await.map_err(repo_error)?;
        Ok(Captured {
            tree: chunks.into_iter().map(|(id, _)| id).collect(),
            counts: self.counts,
            annotations: self.annotations,
        })
    }
}

fn repo_error(e: crate::repo::RepoError) -> PluginError {
    PluginError::Permanent(format!("repository: {e}"))
}

/// Item paths are relative, `/`-separated, without `.`, `..` or empty parts; "" is the root.
fn check_item_path(path: &str) -> Result<(), PluginError> {
    let bad = path.starts_with('/')
        || path.contains('\0')
        || (!path.is_empty()
            && path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == ".."));
    if bad {
        return Err(PluginError::Permanent(format!(
            "invalid item path `{path}`: use a relative path without `.`, `..` or empty parts"
        )));
    }
    Ok(())
}

pub fn record_from_meta(meta: &ItemMeta, chunks: Vec<(ChunkId, u32)>) -> ItemRecord {
    ItemRecord {
        path: meta.path.clone(),
        kind: match meta.kind {
            ItemKind::File => tree::ItemKind::File,
            ItemKind::Directory => tree::ItemKind::Dir,
            ItemKind::Symlink => tree::ItemKind::Symlink,
            ItemKind::Data => tree::ItemKind::Data,
        },
        size: meta.size,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
        mtime_ns: meta.mtime_ns,
        ctime_ns: meta.ctime_ns,
        inode: meta.inode,
        target: meta.symlink_target.clone(),
        chunks,
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
        if let Some(old) = self.capture()?.take_unchanged(&meta) {
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
        let (mut file, file_size) = open_native(self, &source)?;
        let capture = self.capture()?;
        let mut content = capture.content(Chunking::ContentDefined(capture.cdc));
        content
            .read_all(&mut file, Some(file_size))
            .await
            .map_err(|e| super::state::io_error(&source, e))?
            .map_err(repo_error)?;
        let (chunks, size) = content.finish().await.map_err(repo_error)?;
        // The file may have grown or shrunk since it was listed: record what was read.
        meta.size = size;
        capture.counts.files_read += 1;
        capture.record(record_from_meta(&meta, chunks)).await
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
        let done = super::parallel::in_order(
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
            Some(known) => splice_known(self, &blob, &mut content, &known).await?,
            None => splice_blob(self, &blob, &mut content).await?,
        };
        let (chunks, size) = content.finish().await.map_err(repo_error)?;
        meta.size = size;
        self.capture()?
            .record(record_from_meta(&meta, chunks))
            .await?;
        Ok(size)
    }
}

/// Reads a blob natively into an item's content.
async fn splice_blob(
    state: &mut PluginState,
    blob: &Resource<Blob>,
    content: &mut ContentWriter,
) -> Result<u64, PluginError> {
    let blob = state
        .table
        .get_mut(blob)
        .map_err(|e| PluginError::Permanent(format!("blob: {e}")))?;
    pump(blob, content).await
}

/// Stores a database copy whose chunks were stored as it was written: those are added by
/// id, and only the rest is read (see `copy_tap`).
async fn splice_known(
    state: &mut PluginState,
    blob: &Resource<Blob>,
    content: &mut ContentWriter,
    known: &KnownChunks,
) -> Result<u64, PluginError> {
    let blob = state
        .table
        .get_mut(blob)
        .map_err(|e| PluginError::Permanent(format!("blob: {e}")))?;
    let Blob::File {
        file,
        remaining,
        size,
        ..
    } = blob
    else {
        return Err(PluginError::Permanent("blob: not a file".into()));
    };
    let (total, chunk) = (*size, u64::from(known.chunk_size()));
    // Where the chunks not stored yet begin.
    let mut unread = 0;
    // A partial last chunk is never known: it is read with the rest.
    for index in 0..total / chunk {
        let Some(id) = known.get(index) else {
            continue;
        };
        let at = index * chunk;
        read_range(file, unread..at, content).await?;
        content.push_known(id, chunk as u32).map_err(repo_error)?;
        unread = at + chunk;
    }
    read_range(file, unread..total, content).await?;
    *remaining = 0;
    Ok(total)
}

/// Reads `range` of `file` natively into `content`, through its usual read path.
async fn read_range(
    file: &std::fs::File,
    range: std::ops::Range<u64>,
    content: &mut ContentWriter,
) -> Result<(), PluginError> {
    use std::io::{Read, Seek, SeekFrom};
    let read_error =
        |e: std::io::Error| PluginError::Permanent(format!("reading the database copy: {e}"));
    let len = range.end.saturating_sub(range.start);
    if len == 0 {
        return Ok(());
    }
    let mut file = file;
    file.seek(SeekFrom::Start(range.start))
        .map_err(read_error)?;
    let before = content.size();
    content
        .read_all(&mut file.take(len), Some(len))
        .await
        .map_err(read_error)?
        .map_err(repo_error)?;
    if content.size() - before != len {
        return Err(PluginError::Permanent(
            "the database copy is shorter than it was when taken".into(),
        ));
    }
    Ok(())
}

async fn pump(blob: &mut Blob, content: &mut ContentWriter) -> Result<u64, PluginError> {
    let mut total = 0u64;
    while let Some(piece) = blob
        .next_piece(4 * 1024 * 1024)
        .await
        .map_err(|e| PluginError::Permanent(e.to_string()))?
    {
        total += piece.len() as u64;
        content.write(&piece).await.map_err(repo_error)?;
    }
    Ok(total)
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
            let (file, _) = open_native(self, &source)?;
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
        let result = splice_blob(self, &contents, &mut content).await;
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

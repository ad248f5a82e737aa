//! The backup side of a source: the `item-writer` and `item-stream` resources, and the
//! [`Capture`] session that turns what a source emits into chunks and an item list.

mod host;
mod parent;

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};

use crate::capabilities::bulk::Blob;
use crate::capabilities::sqlite::{Handover, StoreAheadHandover};
use crate::pipeline::store_ahead::AheadTask;
use crate::plugin_api::types::Chunking as WitChunking;
use crate::plugin_api::{ItemKind, ItemMeta, PluginError};
use crate::repo::chunker::{CdcParams, Chunking, FIXED_MAX, FIXED_MIN};
use crate::repo::crypto::ChunkId;
use crate::repo::known::KnownChunks;
use crate::repo::pack::ChunkKind;
use crate::repo::tree::{self, ItemRecord};
use crate::repo::write::{ChunkWriter, ContentWriter};

pub use parent::Parent;

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
    parent: Parent,
    counts: CaptureCounts,
    annotations: BTreeMap<String, String>,
    /// Stores ahead the plugin started; stopped when the capture ends, whatever the
    /// plugin did with them, so that none outlives the flush of the data.
    ahead: Vec<Arc<AheadTask>>,
    changed_files: ChangedFiles,
}

/// What a capture saw: items and bytes recorded, files read and files reused unread.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CaptureCounts {
    pub items: u64,
    pub bytes: u64,
    pub files_read: u64,
    pub files_unchanged: u64,
    /// Files that changed during every one of their reads, stored flagged.
    pub files_changed_while_read: u64,
}

/// What a backup does with a file that changes during each of its reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangedFiles {
    /// Store what was read, flagged in the item and counted in the manifest, with a
    /// warning (a log file that is always appended to should not fail every backup).
    #[default]
    Warn,
    /// Fail the source's backup.
    Fail,
}

/// What a finished capture stores in the snapshot manifest.
pub struct Captured {
    pub tree: Vec<ChunkId>,
    pub counts: CaptureCounts,
    pub annotations: BTreeMap<String, String>,
}

impl Capture {
    pub fn new(writer: Arc<ChunkWriter>, cdc: CdcParams, parent: Parent) -> Capture {
        Capture {
            tree: ContentWriter::new(
                writer.clone(),
                Chunking::ContentDefined(cdc),
                ChunkKind::Tree,
            ),
            writer,
            cdc,
            parent,
            counts: CaptureCounts::default(),
            annotations: BTreeMap::new(),
            ahead: Vec::new(),
            changed_files: ChangedFiles::default(),
        }
    }

    /// What to do with a file that changes during each of its reads.
    pub fn on_changed_files(mut self, policy: ChangedFiles) -> Capture {
        self.changed_files = policy;
        self
    }

    async fn record(&mut self, record: ItemRecord) -> Result<(), PluginError> {
        self.counts.items += 1;
        if matches!(record.kind, tree::ItemKind::File | tree::ItemKind::Data) {
            self.counts.bytes += record.size;
        }
        self.tree.write(&record.to_line()).await.map_err(repo_error)
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
    /// are still stored.
    async fn take_unchanged(&mut self, meta: &ItemMeta) -> Option<ItemRecord> {
        let old = match self.parent.take(&meta.path).await {
            Ok(old) => old?,
            Err(e) => {
                self.parent.give_up(&e);
                return None;
            }
        };
        let same = old.kind == tree::ItemKind::File
            && old.size == meta.size
            && old.mtime_ns == meta.mtime_ns
            && old.ctime_ns == meta.ctime_ns
            && old.inode == meta.inode
            && !old.changed_while_read
            && old.chunks.iter().all(|(id, _)| self.writer.holds(id));
        same.then_some(old)
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

/// A snapshot of a database the plugin is storing ahead stops that store-ahead and stores
/// its copy's chunks as they are written (`copy_tap`) with the writer and chunk size it
/// hands over: reading the live file too would only compete with the copy.
impl StoreAheadHandover for Capture {
    fn take_over<'a>(&'a mut self, source: &'a str, largest_chunk: u32) -> Handover<'a> {
        Box::pin(async move {
            let task = self.ahead.iter().find(|task| {
                task.source == source && task.fixed_chunk.is_some_and(|size| size <= largest_chunk)
            })?;
            task.stop().await;
            Some((self.writer.clone(), task.fixed_chunk?))
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
        changed_while_read: false,
    }
}

/// Reads a blob natively into an item's content.
pub(super) async fn splice_blob(
    table: &mut ResourceTable,
    blob: &Resource<Blob>,
    content: &mut ContentWriter,
) -> Result<u64, PluginError> {
    let blob = table
        .get_mut(blob)
        .map_err(|e| PluginError::Permanent(format!("blob: {e}")))?;
    pump(blob, content).await
}

/// Stores a database copy whose chunks were stored as it was written: those are added by
/// id, and only the rest is read (see `copy_tap`).
pub(super) async fn splice_known(
    table: &mut ResourceTable,
    blob: &Resource<Blob>,
    content: &mut ContentWriter,
    known: &KnownChunks,
) -> Result<u64, PluginError> {
    let blob = table
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

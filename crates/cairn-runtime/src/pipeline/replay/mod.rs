//! The restore side of a source: the `item-reader` resource and the [`Replay`] session it
//! reads from (one source of one snapshot).

mod host;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::plugin_api::restore_io::RestoreFlags;
use crate::plugin_api::{ItemKind, ItemMeta};
use crate::repo::read::{ChunkReader, Prefetch};
use crate::repo::tree::{self, ItemRecord};

/// A plain restore: nothing forced, cleaned, kept, nor aimed at the live system.
pub const NO_FLAGS: RestoreFlags = RestoreFlags {
    force: false,
    clean: false,
    into_live: false,
    keep: false,
};

/// The reader a source's `restore` and `verify` receive; its state lives in
/// [`PluginState::replay`].
pub struct ItemReader;

pub struct Replay {
    reader: Arc<tokio::sync::Mutex<ChunkReader>>,
    prefetch: Option<Arc<tokio::sync::Mutex<Prefetch>>>,
    /// Where each item's chunks start in the prefetch sequence.
    first_chunk: Vec<usize>,
    items: Vec<ItemRecord>,
    by_path: HashMap<String, usize>,
    cursor: usize,
    annotations: Vec<(String, String)>,
    flags: RestoreFlags,
    named_flags: Vec<String>,
    /// Items found whole on this machine (by item index): their contents are read from
    /// that file, not the repository.
    present: HashMap<usize, PathBuf>,
}

impl Replay {
    /// A replay of `items`; with `prefetch` (a second reader), their chunks are opened
    /// ahead of use, in item order.
    pub fn new(
        reader: ChunkReader,
        prefetch: Option<ChunkReader>,
        items: Vec<ItemRecord>,
        annotations: Vec<(String, String)>,
    ) -> Replay {
        Self::resuming(reader, prefetch, items, annotations, HashMap::new())
    }

    /// A replay of `items` of which those in `present` (by index) are already on this
    /// machine, verified whole at the path given: they are read from there, and their
    /// chunks are left out of the prefetch.
    pub fn resuming(
        reader: ChunkReader,
        prefetch: Option<ChunkReader>,
        items: Vec<ItemRecord>,
        annotations: Vec<(String, String)>,
        present: HashMap<usize, PathBuf>,
    ) -> Replay {
        let by_path = items
            .iter()
            .enumerate()
            .map(|(i, r)| (r.path.clone(), i))
            .collect();
        let mut first_chunk = Vec::with_capacity(items.len());
        let mut plan = Vec::new();
        for (i, item) in items.iter().enumerate() {
            first_chunk.push(plan.len());
            if !present.contains_key(&i) {
                plan.extend(item.chunks.iter().map(|(id, _)| *id));
            }
        }
        let prefetch =
            prefetch.map(|r| Arc::new(tokio::sync::Mutex::new(Prefetch::start(r, plan))));
        Replay {
            reader: Arc::new(tokio::sync::Mutex::new(reader)),
            prefetch,
            first_chunk,
            items,
            by_path,
            cursor: 0,
            annotations,
            flags: NO_FLAGS,
            named_flags: Vec::new(),
            present,
        }
    }

    /// What the user asked of this restore or verify (`--clean`, `--keep`...).
    pub fn with_flags(mut self, flags: RestoreFlags) -> Replay {
        self.flags = flags;
        self
    }

    /// The flags a source reads by name (`no-owner`, `no-privileges`).
    pub fn with_named_flags(mut self, named: Vec<String>) -> Replay {
        self.named_flags = named;
        self
    }
}

pub fn meta_from_record(r: &ItemRecord) -> ItemMeta {
    ItemMeta {
        path: r.path.clone(),
        kind: match r.kind {
            tree::ItemKind::File => ItemKind::File,
            tree::ItemKind::Dir => ItemKind::Directory,
            tree::ItemKind::Symlink => ItemKind::Symlink,
            tree::ItemKind::Data => ItemKind::Data,
        },
        size: r.size,
        mode: r.mode,
        uid: r.uid,
        gid: r.gid,
        mtime_ns: r.mtime_ns,
        ctime_ns: r.ctime_ns,
        inode: r.inode,
        symlink_target: r.target.clone(),
    }
}

//! The restore side of a source: the `item-reader` resource and the [`Replay`] session it
//! reads from (one source of one snapshot).

mod host;
mod listing;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use listing::ItemList;
use listing::Listing;

pub use crate::plugin_api::restore_io::RestoreFlags;
use crate::plugin_api::{ItemKind, ItemMeta};
use crate::repo::read::{ChunkReader, Prefetch};
use crate::repo::tree::{self, ItemRecord};
use crate::repo::{RepoError, RepoResult};

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
    prefetch: Arc<tokio::sync::Mutex<Prefetch>>,
    listing: Listing,
    annotations: Vec<(String, String)>,
    flags: RestoreFlags,
    named_flags: Vec<String>,
    /// Items found whole on this machine (by item index): their contents are read from
    /// that file, not the repository.
    present: Arc<HashMap<usize, PathBuf>>,
    /// Why the item list stopped before its end, if it could not be read on: the plugin
    /// saw a shorter list, so its restore fails whatever it returned.
    failed: Option<RepoError>,
}

impl Replay {
    /// A replay of `list`, whose chunks are opened ahead of use in item order, except
    /// those of the items in `present` (by index): they are already on this machine,
    /// verified whole at the path given, and are read from there.
    pub async fn resuming(
        list: ItemList,
        annotations: Vec<(String, String)>,
        present: HashMap<usize, PathBuf>,
    ) -> RepoResult<Replay> {
        let present = Arc::new(present);
        let listing = Listing::start(list.clone(), &present).await?;
        let prefetch = Prefetch::start(list.reader(), list.plan(present.clone()));
        Ok(Replay {
            reader: Arc::new(tokio::sync::Mutex::new(list.reader())),
            prefetch: Arc::new(tokio::sync::Mutex::new(prefetch)),
            listing,
            annotations,
            flags: NO_FLAGS,
            named_flags: Vec::new(),
            present,
            failed: None,
        })
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

    /// Why the plugin saw less than the whole item list, if it did.
    pub fn failure(self) -> Option<RepoError> {
        self.failed
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

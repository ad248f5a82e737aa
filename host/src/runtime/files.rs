//! The `files` capability: native filesystem access inside a plugin's grants. Metadata WASI
//! cannot express (mode, owner, inode, ctime) and bulk contents go through here. Every
//! path is resolved through the grants and then reached through a cap-std directory, so
//! neither `..` nor a symlink can lead outside a grant.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cap_fs_ext::{DirExt, SystemTimeSpec};
use cap_std::fs::{Dir, MetadataExt, OpenOptions, Permissions, PermissionsExt};
use wasmtime::component::Resource;

use super::bindings::source::cairn::plugin::files::{self, WriteOptions};
use super::bindings::{ItemKind, ItemMeta, PluginError};
use super::blob::Blob;
use super::state::{PluginState, io_error};

fn kind_of(meta: &cap_std::fs::Metadata) -> Option<ItemKind> {
    let t = meta.file_type();
    if t.is_symlink() {
        Some(ItemKind::Symlink)
    } else if t.is_dir() {
        Some(ItemKind::Directory)
    } else if t.is_file() {
        Some(ItemKind::File)
    } else {
        None
    }
}

fn item_meta(
    name: &str,
    meta: &cap_std::fs::Metadata,
    kind: ItemKind,
    target: Option<String>,
) -> ItemMeta {
    ItemMeta {
        path: name.to_string(),
        kind,
        size: if kind == ItemKind::File {
            meta.len()
        } else {
            0
        },
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        inode: meta.ino(),
        symlink_target: target,
    }
}

fn link_target(dir: &Dir, name: &Path) -> Option<String> {
    dir.read_link_contents(name)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The directory holding `relative` and the final name, or the grant root itself when
/// `relative` is empty.
fn split(root: &Dir, relative: &Path) -> std::io::Result<(Dir, std::path::PathBuf)> {
    match (relative.parent(), relative.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            Ok((root.open_dir(parent)?, name.into()))
        }
        (_, Some(name)) => Ok((root.try_clone()?, name.into())),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the grant root itself",
        )),
    }
}

fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Opens a regular file inside the grants for native reading; returns it with its size.
pub fn open_native(
    state: &mut PluginState,
    path: &str,
) -> Result<(std::fs::File, u64), PluginError> {
    let (root, resolved) = state.resolve(path, false)?;
    let file = if resolved.relative.as_os_str().is_empty() {
        std::fs::File::open(&resolved.root)
    } else {
        root.open(&resolved.relative).map(|f| f.into_std())
    };
    let file = file.map_err(|e| io_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(PluginError::Permanent(format!(
            "{path} is not a regular file"
        )));
    }
    Ok((file, meta.len()))
}

/// A blob of a file's bytes from `offset`, at most `length` of them.
pub fn open_file(
    state: &mut PluginState,
    path: &str,
    offset: u64,
    length: Option<u64>,
) -> Result<Blob, PluginError> {
    let (mut file, size) = open_native(state, path)?;
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(path, e))?;
    }
    let available = size.saturating_sub(offset);
    let remaining = length.map_or(available, |l| l.min(available));
    Ok(Blob::File {
        file,
        remaining,
        size: remaining,
        known: None,
    })
}

impl PluginState {
    fn stat_inner(&mut self, path: &str) -> Result<ItemMeta, PluginError> {
        let (root, resolved) = self.resolve(path, false)?;
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = if resolved.relative.as_os_str().is_empty() {
            root.dir_metadata()
        } else {
            root.symlink_metadata(&resolved.relative)
        }
        .map_err(|e| io_error(path, e))?;
        let kind = kind_of(&meta).ok_or_else(|| {
            PluginError::Permanent(format!("{path} is not a file, directory or symlink"))
        })?;
        let target = (kind == ItemKind::Symlink)
            .then(|| link_target(&root, &resolved.relative))
            .flatten();
        Ok(item_meta(&name, &meta, kind, target))
    }

    fn read_dir_inner(&mut self, path: &str) -> Result<Vec<ItemMeta>, PluginError> {
        let (root, resolved) = self.resolve(path, false)?;
        let dir = if resolved.relative.as_os_str().is_empty() {
            root.try_clone()
        } else {
            root.open_dir(&resolved.relative)
        }
        .map_err(|e| io_error(path, e))?;
        let mut out = Vec::new();
        for entry in dir.entries().map_err(|e| io_error(path, e))? {
            let entry = entry.map_err(|e| io_error(path, e))?;
            let name = entry.file_name();
            let Some(name_str) = name.to_str() else {
                tracing::warn!(plugin = %self.plugin, "skipping {path}/{}: the name is not UTF-8", name.to_string_lossy());
                continue;
            };
            let meta = match dir.symlink_metadata(&name) {
                Ok(m) => m,
                // Removed between listing and stat: it is simply not part of this instant.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&format!("{path}/{name_str}"), e)),
            };
            let Some(kind) = kind_of(&meta) else {
                tracing::debug!(plugin = %self.plugin, "skipping {path}/{name_str}: not a file, directory or symlink");
                continue;
            };
            let target = (kind == ItemKind::Symlink)
                .then(|| link_target(&dir, Path::new(&name)))
                .flatten();
            out.push(item_meta(name_str, &meta, kind, target));
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn write_inner(
        &mut self,
        path: &str,
        contents: &Resource<Blob>,
        options: WriteOptions,
    ) -> Result<u64, PluginError> {
        let (root, resolved) = self.resolve(path, true)?;
        let target = WriteTarget::new(root, resolved, path);
        let blob = self
            .table
            .get_mut(contents)
            .map_err(|e| PluginError::Permanent(format!("blob: {e}")))?;
        let read_error = |e: super::blob::BlobError| PluginError::Permanent(e.to_string());
        if options.deferred && blob.size().is_some_and(|size| size <= DEFERRABLE) {
            let mut pieces = Vec::new();
            let mut written = 0u64;
            while let Some(piece) = blob
                .next_piece(DEFERRABLE as usize)
                .await
                .map_err(read_error)?
            {
                written += piece.len() as u64;
                pieces.push(piece);
            }
            self.deferred.submit(target, pieces, options).await?;
            return Ok(written);
        }
        let (dir, name) = target.open_parent()?;
        let (mut file, tmp) = target.create_temp(&dir, &name, &options)?;
        let mut written = 0u64;
        let streamed = async {
            while let Some(piece) = blob.next_piece(4 * 1024 * 1024).await.map_err(read_error)? {
                file.write_all(&piece).map_err(|e| io_error(path, e))?;
                written += piece.len() as u64;
            }
            Ok(())
        }
        .await;
        target.place(&dir, file, &tmp, &name, &options, streamed)?;
        Ok(written)
    }

    fn set_metadata_inner(&mut self, path: &str, meta: &ItemMeta) -> Result<(), PluginError> {
        let (root, resolved) = self.resolve(path, true)?;
        let mtime = SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(system_time(
            meta.mtime_ns,
        )));
        if resolved.relative.as_os_str().is_empty() {
            let root_path = &resolved.root;
            if is_root() {
                let _ = std::os::unix::fs::chown(root_path, Some(meta.uid), Some(meta.gid));
            }
            std::fs::set_permissions(
                root_path,
                std::os::unix::fs::PermissionsExt::from_mode(meta.mode & 0o7777),
            )
            .map_err(|e| io_error(path, e))?;
            let dir = std::fs::File::open(root_path).map_err(|e| io_error(path, e))?;
            dir.set_modified(system_time(meta.mtime_ns))
                .map_err(|e| io_error(path, e))?;
            return Ok(());
        }
        let (dir, name) = split(&root, &resolved.relative).map_err(|e| io_error(path, e))?;
        let current = dir.symlink_metadata(&name).map_err(|e| io_error(path, e))?;
        if is_root() {
            chown_nofollow(&dir, &name, meta.uid, meta.gid).map_err(|e| io_error(path, e))?;
        }
        if current.file_type().is_symlink() {
            dir.set_symlink_times(&name, None, Some(mtime))
                .map_err(|e| io_error(path, e))?;
        } else {
            dir.set_permissions(&name, Permissions::from_mode(meta.mode & 0o7777))
                .map_err(|e| io_error(path, e))?;
            dir.set_times(&name, None, Some(mtime))
                .map_err(|e| io_error(path, e))?;
        }
        Ok(())
    }
}

/// Files of at most this size may be written after `write` returns (`deferred`): their
/// bytes are taken into memory first. Larger ones stream on the calling thread.
const DEFERRABLE: u64 = 1024 * 1024;

/// Where one `write` lands, resolved through the grants; the steps of writing it, shared
/// by writes on the calling thread and deferred ones.
pub struct WriteTarget {
    root: Arc<Dir>,
    root_path: PathBuf,
    relative: PathBuf,
    /// The plugin's path, for errors.
    path: String,
}

impl WriteTarget {
    pub fn new(
        root: Arc<Dir>,
        resolved: super::sandbox::grants::Resolved,
        path: &str,
    ) -> WriteTarget {
        WriteTarget {
            root,
            root_path: resolved.root,
            relative: resolved.relative,
            path: path.to_string(),
        }
    }

    /// The directory that will hold the file (created if missing) and the final name.
    fn open_parent(&self) -> Result<(Dir, PathBuf), PluginError> {
        match split(&self.root, &self.relative) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = self.relative.parent() {
                    self.root
                        .create_dir_all(parent)
                        .map_err(|e| io_error(&self.path, e))?;
                }
                split(&self.root, &self.relative)
            }
            opened => opened,
        }
        .map_err(|e| io_error(&self.path, e))
    }

    /// A new temporary file beside the final name.
    fn create_temp(
        &self,
        dir: &Dir,
        name: &Path,
        options: &WriteOptions,
    ) -> Result<(std::fs::File, String), PluginError> {
        if options.exclusive && dir.symlink_metadata(name).is_ok() {
            return Err(PluginError::AlreadyExists(self.path.clone()));
        }
        let tmp = format!(".tmp-{}", hex::encode(rand::random::<[u8; 8]>()));
        let file = dir
            .open_with(&tmp, OpenOptions::new().write(true).create_new(true))
            .map_err(|e| io_error(&self.path, e))?
            .into_std();
        Ok((file, tmp))
    }

    /// Finishes a temporary file whose contents went in as `written` says: gives it its
    /// metadata and its name, or removes it if anything failed.
    fn place(
        &self,
        dir: &Dir,
        file: std::fs::File,
        tmp: &str,
        name: &Path,
        options: &WriteOptions,
        written: Result<(), PluginError>,
    ) -> Result<(), PluginError> {
        let path = self.path.as_str();
        let finished = written.and_then(|()| {
            if let Some(meta) = &options.meta {
                set_file_metadata(&file, meta).map_err(|e| io_error(path, e))?;
            }
            if options.sync {
                file.sync_all().map_err(|e| io_error(path, e))?;
            }
            Ok(())
        });
        drop(file);
        let placed = finished.and_then(|()| {
            if options.exclusive {
                // link(2) fails if the name exists: of two concurrent writers, one wins.
                dir.hard_link(tmp, dir, name)
                    .map_err(|e| io_error(path, e))?;
                let _ = dir.remove_file(tmp);
            } else {
                dir.rename(tmp, dir, name).map_err(|e| io_error(path, e))?;
            }
            Ok(())
        });
        if placed.is_err() {
            let _ = dir.remove_file(tmp);
        }
        placed?;
        if options.sync {
            // cap-std holds directories as O_PATH descriptors, which cannot be fsynced:
            // reopen the (already resolved, inside the grant) parent to flush the rename.
            let parent = self
                .root_path
                .join(self.relative.parent().unwrap_or(Path::new("")));
            std::fs::File::open(&parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(path, e))?;
        }
        Ok(())
    }

    /// The whole write of bytes already in memory: what a deferred write does.
    pub fn write_pieces(
        &self,
        pieces: &[bytes::Bytes],
        options: &WriteOptions,
    ) -> Result<(), PluginError> {
        let (dir, name) = self.open_parent()?;
        let (mut file, tmp) = self.create_temp(&dir, &name, options)?;
        let written = pieces
            .iter()
            .try_for_each(|piece| file.write_all(piece))
            .map_err(|e| io_error(&self.path, e));
        self.place(&dir, file, &tmp, &name, options, written)
    }
}

/// Applies owner (as root), mode and mtime to an open file, in that order: a change of
/// owner clears set-id bits, so the mode comes after it.
fn set_file_metadata(file: &std::fs::File, meta: &ItemMeta) -> std::io::Result<()> {
    if is_root() {
        std::os::unix::fs::fchown(file, Some(meta.uid), Some(meta.gid))?;
    }
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
        meta.mode & 0o7777,
    ))?;
    file.set_modified(system_time(meta.mtime_ns))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Changes owner without following a final symlink, relative to an open directory.
fn chown_nofollow(dir: &Dir, name: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(name.as_os_str().as_bytes())?;
    // SAFETY: the fd is open for the duration of the call and the name is NUL-terminated.
    let rc = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl files::Host for PluginState {
    async fn stat(&mut self, path: String) -> wasmtime::Result<Result<ItemMeta, PluginError>> {
        self.after_deferred(|s| s.stat_inner(&path)).await
    }

    async fn read_dir(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Vec<ItemMeta>, PluginError>> {
        self.after_deferred(|s| s.read_dir_inner(&path)).await
    }

    async fn open(
        &mut self,
        path: String,
        offset: u64,
        length: Option<u64>,
    ) -> wasmtime::Result<Result<Resource<Blob>, PluginError>> {
        match self
            .after_deferred(|s| open_file(s, &path, offset, length))
            .await?
        {
            Ok(blob) => Ok(Ok(self.table.push(blob)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn write(
        &mut self,
        path: String,
        contents: Resource<Blob>,
        options: WriteOptions,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        Ok(self.write_inner(&path, &contents, options).await)
    }

    async fn create_dir(&mut self, path: String) -> wasmtime::Result<Result<(), PluginError>> {
        let result = self.resolve(&path, true).and_then(|(root, resolved)| {
            if resolved.relative.as_os_str().is_empty() {
                return Ok(());
            }
            root.create_dir_all(&resolved.relative)
                .map_err(|e| io_error(&path, e))
        });
        Ok(result)
    }

    async fn symlink(
        &mut self,
        path: String,
        target: String,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        self.after_deferred(|s| {
            let (root, resolved) = s.resolve(&path, true)?;
            // The target is stored as written: a link is data, and cap-std never follows
            // one out of a grant.
            root.symlink_contents(&target, &resolved.relative)
                .map_err(|e| io_error(&path, e))
        })
        .await
    }

    async fn set_metadata(
        &mut self,
        path: String,
        meta: ItemMeta,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        self.after_deferred(|s| s.set_metadata_inner(&path, &meta))
            .await
    }

    async fn rename(
        &mut self,
        src: String,
        dst: String,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        self.after_deferred(|s| {
            let (src_root, src_resolved) = s.resolve(&src, true)?;
            let (dst_root, dst_resolved) = s.resolve(&dst, true)?;
            src_root
                .rename(&src_resolved.relative, &dst_root, &dst_resolved.relative)
                .map_err(|e| io_error(&src, e))
        })
        .await
    }

    async fn remove(&mut self, path: String) -> wasmtime::Result<Result<(), PluginError>> {
        self.after_deferred(|s| {
            let (root, resolved) = s.resolve(&path, true)?;
            let meta = root
                .symlink_metadata(&resolved.relative)
                .map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                root.remove_dir(&resolved.relative)
            } else {
                root.remove_file(&resolved.relative)
            }
            .map_err(|e| io_error(&path, e))
        })
        .await
    }

    async fn flush(&mut self) -> wasmtime::Result<Result<(), PluginError>> {
        Ok(self.deferred.flush().await)
    }
}

impl PluginState {
    /// Runs a `files` call once every deferred write has landed, so that it sees them (and
    /// so that a failed one is reported here rather than lost).
    async fn after_deferred<T>(
        &mut self,
        call: impl FnOnce(&mut Self) -> Result<T, PluginError>,
    ) -> wasmtime::Result<Result<T, PluginError>> {
        Ok(match self.deferred.flush().await {
            Ok(()) => call(self),
            Err(e) => Err(e),
        })
    }
}

//! The `files` interface for a plugin instance: its calls, resolved through its grants.

use std::io::Write;
use std::path::Path;

use cap_fs_ext::{DirExt, SystemTimeSpec};
use cap_std::fs::{Permissions, PermissionsExt};
use wasmtime::component::Resource;

use super::*;
use crate::capabilities::bulk::Blob;
use crate::errors::io_error;
use crate::plugin_api::files::{self, WriteOptions};
use crate::plugin_api::{ItemKind, ItemMeta, PluginError};
use crate::state::PluginState;

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
                tracing::warn!(plugin = %self.plugin, "skipping {path}/{name_str}: {}, which holds no data to back up (only files, directories and symlinks are stored; exclude it to silence this)", special_kind(&meta));
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
        // A file written onto itself (a resumed restore found it whole where it belongs)
        // keeps its bytes: only its metadata is set.
        let onto_itself = match self.table.get(contents) {
            Ok(Blob::File { file, size, .. }) if is_same_file(file, &root, &resolved.relative) => {
                Some(*size)
            }
            _ => None,
        };
        if let Some(size) = onto_itself {
            if let Some(meta) = &options.meta {
                self.set_metadata_inner(path, meta)?;
            }
            return Ok(size);
        }
        let target = WriteTarget::new(root, resolved, path);
        let blob = self
            .table
            .get_mut(contents)
            .map_err(|e| PluginError::Permanent(format!("blob: {e}")))?;
        let read_error =
            |e: crate::capabilities::bulk::BlobError| PluginError::Permanent(e.to_string());
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
            .after_deferred(|s| s.open_file(&path, offset, length))
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

impl PluginState {
    /// Opens a regular file inside the grants for native reading; returns it with its size.
    pub(crate) fn open_native(&mut self, path: &str) -> Result<(std::fs::File, u64), PluginError> {
        let (root, resolved) = self.resolve(path, false)?;
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
    pub(crate) fn open_file(
        &mut self,
        path: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Blob, PluginError> {
        let (mut file, size) = self.open_native(path)?;
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
}

/// Whether `file` is the regular file at `relative` under `root` (same device and inode).
fn is_same_file(file: &std::fs::File, root: &cap_std::fs::Dir, relative: &Path) -> bool {
    use cap_std::fs::MetadataExt as _;
    use std::os::unix::fs::MetadataExt as _;
    let (Ok(open), Ok(there)) = (file.metadata(), root.symlink_metadata(relative)) else {
        return false;
    };
    there.is_file() && open.dev() == there.dev() && open.ino() == there.ino()
}

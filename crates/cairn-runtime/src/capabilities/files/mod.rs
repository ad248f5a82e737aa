//! The `files` capability: native filesystem access inside a plugin's grants. Metadata WASI
//! cannot express (mode, owner, inode, ctime) and bulk contents go through here. Every
//! path is resolved through the grants and then reached through a cap-std directory, so
//! neither `..` nor a symlink can lead outside a grant.

pub mod deferred;
mod host;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cap_std::fs::{Dir, MetadataExt, OpenOptions};

use crate::errors::io_error;
use crate::plugin_api::files::WriteOptions;
use crate::plugin_api::{ItemKind, ItemMeta, PluginError};

/// Files being written are named this plus 16 hex digits until they are complete.
const TEMP_PREFIX: &str = ".tmp-";

/// Whether `name` is one of this capability's temporary files (a killed write's leftover
/// if no write is running).
pub fn is_temporary_name(name: &str) -> bool {
    name.strip_prefix(TEMP_PREFIX)
        .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes the temporary files a killed restore left in `dir` (and, with `recursive`, in
/// the directories below it, never following a symlink); returns how many.
pub fn remove_temporaries(dir: &Path, recursive: bool) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() && recursive {
            removed += remove_temporaries(&entry.path(), true)?;
        } else if kind.is_file() && entry.file_name().to_str().is_some_and(is_temporary_name) {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

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

/// What a directory entry that is no file, directory or symlink is, for messages.
fn special_kind(meta: &cap_std::fs::Metadata) -> &'static str {
    use cap_std::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "neither a file, a directory nor a symlink"
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
        resolved: crate::sandbox::grants::Resolved,
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
        let tmp = format!("{TEMP_PREFIX}{}", hex::encode(rand::random::<[u8; 8]>()));
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
                dir.rename(tmp, dir, name).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::IsADirectory {
                        // Replacing it would delete whatever the directory holds.
                        PluginError::Permanent(format!(
                            "{path}: a directory is in the place of this file: move it away, or restore into another target"
                        ))
                    } else {
                        io_error(path, e)
                    }
                })?;
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

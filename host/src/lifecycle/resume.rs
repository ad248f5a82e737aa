//! `restore --resume`: finds the files of a snapshot that an earlier restore into the same
//! target already wrote whole, by hashing each against the snapshot's own chunk ids, so
//! that the restore reads them from there instead of the repository and writes nothing.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::repo::Repository;
use crate::repo::tree::{ItemKind, ItemRecord};
use crate::runtime::pipeline::replay::ItemList;

/// The files found whole under a target.
#[derive(Debug, Default)]
pub struct Present {
    /// By item index: where the item's contents already are.
    pub items: HashMap<usize, PathBuf>,
    pub files: u64,
    pub bytes: u64,
}

/// Files hashed at once: reading is the cost, and two keep a disk and a core busy.
const AT_ONCE: usize = 2;

/// Items looked for per hand-off to the hashing threads, so that the list is read a
/// batch at a time rather than held.
const BATCH: usize = 4096;

/// The file items of `list` whose path under `target` holds exactly their contents.
/// Reads and hashes on blocking threads.
pub async fn find(
    repo: &Arc<Repository>,
    target: &Path,
    list: &ItemList,
) -> anyhow::Result<Present> {
    let mut items = list.stream();
    let mut present = Present::default();
    let mut first = 0;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            match items
                .next()
                .await
                .context("reading the snapshot's item list")?
            {
                Some(item) => batch.push(item),
                None => break,
            }
        }
        if batch.is_empty() {
            return Ok(present);
        }
        let (repo, target) = (repo.clone(), target.to_path_buf());
        let count = batch.len();
        let found = tokio::task::spawn_blocking(move || find_blocking(&repo, &target, &batch))
            .await
            .context("looking for the files an earlier restore wrote whole")?;
        present.files += found.files;
        present.bytes += found.bytes;
        present
            .items
            .extend(found.items.into_iter().map(|(i, path)| (first + i, path)));
        first += count;
    }
}

fn find_blocking(repo: &Repository, target: &Path, items: &[ItemRecord]) -> Present {
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Present::default());
    std::thread::scope(|scope| {
        for _ in 0..AT_ONCE {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if !matches!(item.kind, ItemKind::File | ItemKind::Data) {
                        continue;
                    }
                    let Some(path) = inside(target, &item.path) else {
                        continue;
                    };
                    if holds(repo, &path, item) {
                        let mut found = found.lock().unwrap_or_else(|p| p.into_inner());
                        found.items.insert(i, path);
                        found.files += 1;
                        found.bytes += item.size;
                    }
                }
            });
        }
    });
    found.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// `target/relative`, if every directory on the way is a real directory (no symlink, which
/// could lead out of the target) and the item's path is plain.
fn inside(target: &Path, relative: &str) -> Option<PathBuf> {
    let mut path = target.to_path_buf();
    let parts: Vec<Component> = Path::new(relative).components().collect();
    for (k, part) in parts.iter().enumerate() {
        let Component::Normal(name) = part else {
            return None;
        };
        path.push(name);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        let last = k + 1 == parts.len();
        if (last && !meta.is_file()) || (!last && !meta.is_dir()) {
            return None;
        }
    }
    (!parts.is_empty()).then_some(path)
}

/// Whether the file at `path` holds exactly `item`'s contents: its size, and each chunk's
/// keyed hash at the item's chunk boundaries.
fn holds(repo: &Repository, path: &Path, item: &ItemRecord) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(item.size) {
        return false;
    }
    let mut buf = Vec::new();
    for (id, len) in &item.chunks {
        buf.resize(*len as usize, 0);
        if file.read_exact(&mut buf).is_err() || repo.keys().chunk_id(&buf) != *id {
            return false;
        }
    }
    // Nothing past the last chunk (the file grew since its size was read).
    file.read(&mut [0u8; 1]).is_ok_and(|n| n == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_through_real_directories_are_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("d"), dir.path().join("link")).unwrap();
        assert!(inside(dir.path(), "d/f").is_some());
        assert!(inside(dir.path(), "link/f").is_none(), "through a symlink");
        assert!(inside(dir.path(), "d/../d/f").is_none());
        assert!(inside(dir.path(), "d").is_none(), "a directory is no file");
        assert!(inside(dir.path(), "d/missing").is_none());
        assert!(inside(dir.path(), "").is_none());
    }
}

//! The local cache of index files and snapshot manifests, so an unchanged re-backup reads
//! almost nothing from remote storage. Entries are stored sealed, exactly as in the
//! repository, under their content-addressed names; a damaged entry is detected by its
//! hash and fetched again.

use std::path::{Path, PathBuf};

use bytes::Bytes;

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// `$CAIRN_CACHE_DIR`, else `$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`; then the
    /// repository id. `None` when no location can be found (no cache is then used).
    pub fn for_repository(repo_id: &str) -> Option<Cache> {
        let base = if let Some(dir) = std::env::var_os("CAIRN_CACHE_DIR") {
            PathBuf::from(dir)
        } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            PathBuf::from(dir).join("cairn")
        } else {
            PathBuf::from(std::env::var_os("HOME")?)
                .join(".cache")
                .join("cairn")
        };
        Some(Cache {
            dir: base.join(repo_id),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The cached object, if present and intact.
    pub fn get(&self, name: &str) -> Option<Bytes> {
        let bytes = std::fs::read(self.path(name)).ok()?;
        let expected = name.rsplit('/').next()?;
        if blake3::hash(&bytes).to_hex().as_str() != expected {
            let _ = std::fs::remove_file(self.path(name));
            return None;
        }
        Some(Bytes::from(bytes))
    }

    /// Caches an object; failures only cost a later re-download.
    pub fn put(&self, name: &str, bytes: &[u8]) {
        let path = self.path(name);
        let write = || -> std::io::Result<()> {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, bytes)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!("could not cache {name}: {e}");
        }
    }

    /// Removes cached entries under `prefix` that the repository no longer lists.
    pub fn retain<'a>(&self, prefix: &str, names: impl Iterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = names.collect();
        let Ok(entries) = std::fs::read_dir(self.path(prefix.trim_end_matches('/'))) else {
            return;
        };
        for entry in entries.flatten() {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if !keep.contains(name.as_str()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

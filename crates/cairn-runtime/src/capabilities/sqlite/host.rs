//! The `sqlite` interface for a plugin instance: snapshots, opened copies, checks and queries.

use std::path::PathBuf;

use wasmtime::component::Resource;

use super::*;
use crate::capabilities::bulk::Blob;
use crate::capabilities::sqlite::copy_tap::CopyTap;
use crate::errors::io_error;
use crate::plugin_api::PluginError;
use crate::plugin_api::sqlite::{self, CheckLevel};
use crate::state::PluginState;

impl PluginState {
    /// The host path of a granted guest path, refusing a symlink that leads out of the
    /// grant (SQLite opens paths natively, not through the grant's directory handle).
    fn native_path(&mut self, guest_path: &str) -> Result<PathBuf, PluginError> {
        self.native_path_for(guest_path, false)
    }

    /// [`Self::native_path`] of a path the grant must let the plugin write.
    fn native_path_for(&mut self, guest_path: &str, write: bool) -> Result<PathBuf, PluginError> {
        let (_, resolved) = self.resolve(guest_path, write)?;
        let path = resolved.root.join(&resolved.relative);
        let real = path.canonicalize().map_err(|e| io_error(guest_path, e))?;
        let root = resolved
            .root
            .canonicalize()
            .map_err(|e| io_error(&resolved.root.to_string_lossy(), e))?;
        if !real.starts_with(&root) {
            return Err(PluginError::Denied(format!(
                "{guest_path} leads outside its grant (to {})",
                real.display()
            )));
        }
        Ok(real)
    }
}

impl sqlite::Host for PluginState {
    async fn snapshot(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Resource<Database>, PluginError>> {
        let made = match self.native_path(&path) {
            Ok(source) => {
                let temp_dir = std::env::temp_dir();
                // A store-ahead of this database hands over to its copy.
                let largest = crate::capabilities::sqlite::vfs::GATHER as u32;
                let tap = match self.store_ahead_handover() {
                    Some(backup) => backup.take_over(&path, largest).await,
                    None => None,
                }
                .map(|(writer, chunk)| CopyTap::new(writer, chunk));
                blocking(move || snapshot(&source, &temp_dir, tap)).await
            }
            Err(e) => Err(e),
        };
        self.push_made(made)
    }

    async fn open(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Resource<Database>, PluginError>> {
        let made = match self.native_path(&path) {
            Ok(path) => blocking(move || open(&path)).await,
            Err(e) => Err(e),
        };
        self.push_made(made)
    }

    async fn follow(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Resource<Followed>, PluginError>> {
        let made = match self.native_path(&path) {
            Ok(live) => blocking(move || Followed::open(&live)).await,
            Err(e) => Err(e),
        };
        self.push_made(made)
    }

    async fn apply_changes(
        &mut self,
        path: String,
        changes: Resource<Blob>,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let encoded = match self.table.get_mut(&changes)?.read_all().await {
            Ok(bytes) => bytes,
            Err(e) => {
                return Ok(Err(PluginError::Permanent(format!(
                    "reading the changes: {e}"
                ))));
            }
        };
        Ok(match self.native_path_for(&path, true) {
            Ok(target) => blocking(move || apply_changes(&target, &encoded)).await,
            Err(e) => Err(e),
        })
    }

    async fn journal_size(&mut self, path: String) -> wasmtime::Result<Result<u64, PluginError>> {
        Ok(self
            .native_path(&path)
            .and_then(|database| journal_size(&database)))
    }
}

impl sqlite::HostDatabase for PluginState {
    async fn page_size(&mut self, db: Resource<Database>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&db)?.page_size)
    }

    async fn page_count(&mut self, db: Resource<Database>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&db)?.page_count)
    }

    async fn size(&mut self, db: Resource<Database>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&db)?.size)
    }

    async fn begin_check(
        &mut self,
        db: Resource<Database>,
        level: CheckLevel,
    ) -> wasmtime::Result<()> {
        let db = self.table.get_mut(&db)?;
        let path = db.path.clone();
        let task = tokio::task::spawn_blocking(move || check(&path, level));
        if let Some((_, previous)) = db.running_check.replace((level, task)) {
            previous.abort();
        }
        Ok(())
    }

    async fn check(
        &mut self,
        db: Resource<Database>,
        level: CheckLevel,
    ) -> wasmtime::Result<Result<Vec<String>, PluginError>> {
        let db = self.table.get_mut(&db)?;
        let path = db.path.clone();
        Ok(match db.running_check.take() {
            Some((started, task)) if started == level => task
                .await
                .unwrap_or_else(|e| Err(PluginError::Permanent(format!("check failed: {e}")))),
            _ => blocking(move || check(&path, level)).await,
        })
    }

    async fn query(
        &mut self,
        db: Resource<Database>,
        sql: String,
    ) -> wasmtime::Result<Result<Vec<Vec<String>>, PluginError>> {
        let path = self.table.get(&db)?.path.clone();
        Ok(blocking(move || query(&path, &sql)).await)
    }

    async fn contents(
        &mut self,
        db: Resource<Database>,
    ) -> wasmtime::Result<Result<Resource<Blob>, PluginError>> {
        let db = self.table.get(&db)?;
        let (size, known) = (db.size, db.known.clone());
        let opened = std::fs::File::open(&db.path)
            .map(|file| Blob::File {
                file,
                remaining: size,
                size,
                known,
            })
            .map_err(|e| io_error(&db.path.to_string_lossy(), e));
        self.push_made(opened)
    }

    async fn drop(&mut self, db: Resource<Database>) -> wasmtime::Result<()> {
        let mut db = self.table.delete(db)?;
        if let Some((_, task)) = db.running_check.take() {
            task.abort();
        }
        if let Some(copy) = db.copy.take() {
            // The kernel frees a deleted file's pages as its last descriptor closes, a
            // quarter of a second for 1 GiB: the name goes now, the pages on a blocking
            // thread while the backup goes on (or at exit, if that comes first).
            let held = std::fs::File::open(&copy).ok();
            drop(copy);
            if let Some(held) = held {
                tokio::task::spawn_blocking(move || drop(held));
            }
        }
        Ok(())
    }
}

impl PluginState {
    /// What a follower read, as the plugin receives it: the changes as a blob, or a gap.
    fn followed(
        &mut self,
        outcome: Result<Result<(Vec<u8>, String), String>, PluginError>,
    ) -> wasmtime::Result<Result<sqlite::Followed, PluginError>> {
        Ok(match outcome {
            Ok(Ok((changes, point))) => {
                let blob = self.table.push(Blob::from_bytes(changes.into()))?;
                Ok(sqlite::Followed::Continues((blob, point)))
            }
            Ok(Err(why)) => Ok(sqlite::Followed::Gap(why)),
            Err(e) => Err(e),
        })
    }
}

impl sqlite::HostFollower for PluginState {
    async fn resume(
        &mut self,
        follower: Resource<Followed>,
        point: String,
    ) -> wasmtime::Result<Result<sqlite::Followed, PluginError>> {
        let resumed = self.table.get(&follower)?.resume(point).await;
        self.followed(resumed)
    }

    async fn snapshot(
        &mut self,
        follower: Resource<Followed>,
    ) -> wasmtime::Result<Result<(Resource<Database>, String), PluginError>> {
        let taken = self
            .table
            .get(&follower)?
            .snapshot(std::env::temp_dir())
            .await;
        Ok(match taken {
            Ok((db, point)) => Ok((self.table.push(db)?, point)),
            Err(e) => Err(e),
        })
    }

    async fn sync(
        &mut self,
        follower: Resource<Followed>,
        max_wal: u64,
    ) -> wasmtime::Result<Result<sqlite::Followed, PluginError>> {
        let synced = self.table.get(&follower)?.sync(max_wal).await;
        self.followed(synced)
    }

    async fn drop(&mut self, follower: Resource<Followed>) -> wasmtime::Result<()> {
        let followed = self.table.delete(follower)?;
        // Its connections close on a blocking thread: closing may wait on SQLite locks.
        tokio::task::spawn_blocking(move || drop(followed));
        Ok(())
    }
}

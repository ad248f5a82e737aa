//! The `restore-io` interface for a plugin instance: item readers.

use wasmtime::component::Resource;

use super::*;
use crate::capabilities::bulk::Blob;
use crate::plugin_api::restore_io;
use crate::plugin_api::types::Annotation;
use crate::plugin_api::{ItemMeta, PluginError};
use crate::state::PluginState;

impl PluginState {
    fn replay(&mut self) -> Result<&mut Replay, PluginError> {
        self.replay.as_mut().ok_or_else(|| {
            PluginError::Permanent("the item reader is only usable during restore or verify".into())
        })
    }
}

impl restore_io::Host for PluginState {}

impl restore_io::HostItemReader for PluginState {
    async fn next_items(
        &mut self,
        _reader: Resource<ItemReader>,
        max: u32,
    ) -> wasmtime::Result<Vec<ItemMeta>> {
        let Ok(replay) = self.replay() else {
            return Ok(Vec::new());
        };
        if replay.failed.is_some() {
            return Ok(Vec::new());
        }
        let batch = replay
            .listing
            .next_batch(max.max(1) as usize, &replay.present, meta_from_record)
            .await;
        Ok(batch.unwrap_or_else(|e| {
            // The list ends here for the plugin; the restore reports why.
            replay.failed = Some(e);
            Vec::new()
        }))
    }

    async fn open(
        &mut self,
        _reader: Resource<ItemReader>,
        path: String,
    ) -> wasmtime::Result<Result<Resource<Blob>, PluginError>> {
        let blob = async {
            let replay = self.replay()?;
            let found = match replay.listing.find(&path, &replay.present).await {
                Ok(found) => found,
                Err(e) => {
                    let message = format!("reading the snapshot's item list: {e}");
                    replay.failed = Some(e);
                    return Err(PluginError::Permanent(message));
                }
            };
            let placed = found.ok_or_else(|| {
                PluginError::NotFound(format!("no item `{path}` in this snapshot"))
            })?;
            let record = placed.record;
            if let Some(whole) = replay.present.get(&placed.index) {
                let file = std::fs::File::open(whole).map_err(|e| {
                    PluginError::Permanent(format!(
                        "{}, found whole by --resume: {e}",
                        whole.display()
                    ))
                })?;
                return Ok(Blob::File {
                    file,
                    remaining: record.size,
                    size: record.size,
                    known: None,
                });
            }
            let first = placed.first_chunk;
            Ok(Blob::Chunks {
                reader: replay.reader.clone(),
                prefetch: Some(replay.prefetch.clone()),
                chunks: record
                    .chunks
                    .iter()
                    .enumerate()
                    .map(|(k, (id, _))| (first + k, *id))
                    .collect(),
                current: bytes::Bytes::new(),
                size: record.size,
            })
        }
        .await;
        match blob {
            Ok(blob) => Ok(Ok(self.table.push(blob)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn annotations(
        &mut self,
        _reader: Resource<ItemReader>,
    ) -> wasmtime::Result<Vec<Annotation>> {
        let Ok(replay) = self.replay() else {
            return Ok(Vec::new());
        };
        Ok(replay
            .annotations
            .iter()
            .map(|(key, value)| Annotation {
                key: key.clone(),
                value: value.clone(),
            })
            .collect())
    }

    async fn flags(&mut self, _reader: Resource<ItemReader>) -> wasmtime::Result<RestoreFlags> {
        Ok(self.replay().map(|r| r.flags).unwrap_or(NO_FLAGS))
    }

    async fn named_flags(
        &mut self,
        _reader: Resource<ItemReader>,
    ) -> wasmtime::Result<Vec<String>> {
        Ok(self
            .replay()
            .map(|r| r.named_flags.clone())
            .unwrap_or_default())
    }

    async fn drop(&mut self, rep: Resource<ItemReader>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

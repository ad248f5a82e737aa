//! The `bulk` interface for a plugin instance: blobs it builds, and reads in pieces.

use wasmtime::component::Resource;

use super::Blob;
use crate::plugin_api::{PluginError, bulk};
use crate::state::PluginState;

/// The most a plugin may read from a blob in one call: bounds what one call can make a
/// plugin allocate.
const MAX_READ: u32 = 16 * 1024 * 1024;

impl bulk::Host for PluginState {}

impl bulk::HostBlob for PluginState {
    async fn new(&mut self, bytes: Vec<u8>) -> wasmtime::Result<Resource<Blob>> {
        Ok(self.table.push(Blob::Memory {
            data: bytes::BytesMut::from(&bytes[..]),
            pos: 0,
        })?)
    }

    async fn append(
        &mut self,
        blob: Resource<Blob>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        match self.table.get_mut(&blob)? {
            Blob::Memory { data, .. } => {
                data.extend_from_slice(&bytes);
                Ok(Ok(()))
            }
            _ => Ok(Err(PluginError::Permanent(
                "only blobs built by the plugin can be appended to".into(),
            ))),
        }
    }

    async fn size(&mut self, blob: Resource<Blob>) -> wasmtime::Result<Option<u64>> {
        Ok(self.table.get(&blob)?.size())
    }

    async fn read(
        &mut self,
        blob: Resource<Blob>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        let blob = self.table.get_mut(&blob)?;
        Ok(match blob.next_piece(max.min(MAX_READ) as usize).await {
            Ok(Some(piece)) => Ok(piece.to_vec()),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(PluginError::Permanent(e.to_string())),
        })
    }

    async fn drop(&mut self, rep: Resource<Blob>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

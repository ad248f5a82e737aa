//! The `change-io` interface on the plugin's store.

use wasmtime::component::Resource;

use super::{ChangeReader, ChangeWriter, FollowStep};
use crate::capabilities::bulk::Blob;
use crate::plugin_api::PluginError;
use crate::plugin_api::change_io;
use crate::state::PluginState;

fn no_chain() -> PluginError {
    PluginError::Permanent("this call is only possible inside `follow`".into())
}

impl change_io::Host for PluginState {}

impl change_io::HostChangeWriter for PluginState {
    async fn resume_point(
        &mut self,
        _: Resource<ChangeWriter>,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self.chain.as_ref().and_then(|chain| chain.resume_point()))
    }

    async fn begin_snapshot(
        &mut self,
        _: Resource<ChangeWriter>,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let Some(chain) = self.chain.as_mut() else {
            return Ok(Err(no_chain()));
        };
        Ok(match chain.begin_snapshot().await {
            Ok(capture) => {
                self.capture = Some(capture);
                Ok(())
            }
            Err(e) => Err(e),
        })
    }

    async fn begin_chain(
        &mut self,
        _: Resource<ChangeWriter>,
        start: String,
        reason: String,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let Some(capture) = self.capture.take() else {
            return Ok(Err(PluginError::Permanent(
                "begin-chain without begin-snapshot: write the chain's base snapshot first".into(),
            )));
        };
        let Some(chain) = self.chain.as_mut() else {
            return Ok(Err(no_chain()));
        };
        Ok(chain.begin_chain(capture, start, reason).await)
    }

    async fn append(
        &mut self,
        _: Resource<ChangeWriter>,
        changes: Resource<Blob>,
        end: String,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let bytes = match self.table.get_mut(&changes)?.read_all().await {
            Ok(bytes) => bytes,
            Err(e) => {
                return Ok(Err(PluginError::Permanent(format!(
                    "reading the changes: {e}"
                ))));
            }
        };
        let Some(chain) = self.chain.as_mut() else {
            return Ok(Err(no_chain()));
        };
        Ok(chain.append(bytes, end).await)
    }

    async fn wait(&mut self, _: Resource<ChangeWriter>) -> wasmtime::Result<FollowStep> {
        let step = match self.chain.as_mut() {
            Some(chain) => chain.wait().await,
            None => FollowStep::Stop,
        };
        // Each sync gets the call's whole budget: a follower runs for days, but one that
        // stops waiting and spins is stopped like any other call.
        self.deadline = std::time::Instant::now() + self.budget;
        Ok(step)
    }

    async fn drop(&mut self, writer: Resource<ChangeWriter>) -> wasmtime::Result<()> {
        self.table.delete(writer)?;
        Ok(())
    }
}

impl change_io::HostChangeReader for PluginState {
    async fn next(
        &mut self,
        _: Resource<ChangeReader>,
    ) -> wasmtime::Result<Result<Option<Resource<Blob>>, PluginError>> {
        let Some(source) = self.changes_in.as_mut() else {
            return Ok(Err(PluginError::Permanent(
                "this call is only possible inside `apply`".into(),
            )));
        };
        Ok(match source.next().await {
            Ok(Some(bytes)) => Ok(Some(self.table.push(Blob::from_bytes(bytes))?)),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        })
    }

    async fn drop(&mut self, reader: Resource<ChangeReader>) -> wasmtime::Result<()> {
        self.table.delete(reader)?;
        Ok(())
    }
}

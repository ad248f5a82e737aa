//! The change side of a source that follows its system (`change-stream`): the
//! `change-writer` that `follow` writes chain bases and segments through, and the
//! `change-reader` that `apply` reads segments from. What storing them means belongs to
//! the binary, which implements [`ChainStore`] and [`ChangeSource`]: the runtime knows
//! nothing of how a repository keeps chains.

mod host;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::pipeline::capture::Capture;
use crate::plugin_api::PluginError;

pub use crate::plugin_api::change_io::FollowStep;

/// The writer a source's `follow` receives; its state is [`PluginState::chain`].
///
/// [`PluginState::chain`]: crate::state::PluginState
pub struct ChangeWriter;

/// The reader a source's `apply` receives; its state is the store's change source.
pub struct ChangeReader;

/// Where a follower's chains go.
pub trait ChainStore: Send {
    /// The point the source's newest chain reached, if it can be gone on from.
    fn resume_point(&self) -> Option<String>;
    /// A capture for a new chain's base snapshot: the source's items go into it.
    fn begin_snapshot(&mut self) -> BoxFuture<'_, Result<Capture, PluginError>>;
    /// Commits the base snapshot from `capture` and starts a chain at `start`.
    fn begin_chain(
        &mut self,
        capture: Capture,
        start: String,
        reason: String,
    ) -> BoxFuture<'_, Result<(), PluginError>>;
    /// Stores the chain's next segment durably.
    fn append(&mut self, changes: Bytes, end: String) -> BoxFuture<'_, Result<(), PluginError>>;
    /// Waits for the next sync, the next scheduled snapshot or the stop.
    fn wait(&mut self) -> BoxFuture<'_, FollowStep>;
}

/// The segments a point-in-time restore applies, in order.
pub trait ChangeSource: Send {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, PluginError>>;
}

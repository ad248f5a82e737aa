//! A snapshot's item list read back a chunk at a time, so that walking a list of millions
//! of items holds one chunk of it, not the whole.

use std::borrow::BorrowMut;
use std::collections::VecDeque;

use super::chunks::ChunkReader;
use crate::RepoResult;
use crate::crypto::ChunkId;
use crate::snapshot::SourceSnapshot;
use crate::tree::{ItemRecord, Lines};

/// The items of one source's snapshot, in the order its backup wrote them, read through
/// a reader it owns or borrows.
pub struct ItemStream<R = ChunkReader> {
    reader: R,
    tree: Vec<ChunkId>,
    next_chunk: usize,
    lines: Option<Lines>,
    ready: VecDeque<ItemRecord>,
}

impl<R: BorrowMut<ChunkReader>> ItemStream<R> {
    pub fn new(reader: R, manifest: &SourceSnapshot) -> ItemStream<R> {
        ItemStream {
            reader,
            tree: manifest.tree.clone(),
            next_chunk: 0,
            lines: Some(Lines::default()),
            ready: VecDeque::new(),
        }
    }

    /// The next item, or `None` after the last.
    pub async fn next(&mut self) -> RepoResult<Option<ItemRecord>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(Some(item));
            }
            let Some(lines) = self.lines.as_mut() else {
                return Ok(None);
            };
            match self.tree.get(self.next_chunk) {
                Some(id) => {
                    let id = *id;
                    let chunk = self.reader.borrow_mut().read(&id).await?;
                    self.next_chunk += 1;
                    self.ready.extend(lines.push(&chunk)?);
                }
                None => {
                    let lines = self.lines.take().expect("checked above");
                    self.ready.extend(lines.finish()?);
                }
            }
        }
    }
}

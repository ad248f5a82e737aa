//! A source's item list: one JSON object a line, in the order the source wrote the items,
//! stored as content-defined chunks of kind `tree`. Unchanged stretches of a large tree
//! produce the same chunks as last time, so they cost nothing to store again.

use serde::{Deserialize, Serialize};

use super::RepoError;
use super::crypto::ChunkId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    File,
    Dir,
    Symlink,
    Data,
}

/// One item of a snapshot: its metadata and, for files and data, its chunks in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub path: String,
    pub kind: ItemKind,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `[chunk id, length]` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<(ChunkId, u32)>,
    /// The file kept changing while it was read, every time: the contents are what was
    /// read, which may be a state the file never had as a whole.
    #[serde(default, skip_serializing_if = "is_false")]
    pub changed_while_read: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ItemRecord {
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("items always serialise");
        line.push(b'\n');
        line
    }
}

/// Splits a reassembled item list back into items.
pub fn parse_lines(bytes: &[u8]) -> Result<Vec<ItemRecord>, RepoError> {
    let mut lines = Lines::default();
    let mut items = lines.push(bytes)?;
    items.extend(lines.finish()?);
    Ok(items)
}

/// An item list's lines parsed as its chunks arrive: a line may span chunks, so the
/// unfinished end of one is kept until the next completes it.
#[derive(Default)]
pub struct Lines {
    unfinished: Vec<u8>,
}

impl Lines {
    /// The items whose lines `bytes` completes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<ItemRecord>, RepoError> {
        let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') else {
            self.unfinished.extend_from_slice(bytes);
            return Ok(Vec::new());
        };
        let (complete, rest) = bytes.split_at(last_newline + 1);
        let items = if self.unfinished.is_empty() {
            parse_complete(complete)
        } else {
            self.unfinished.extend_from_slice(complete);
            let items = parse_complete(&self.unfinished);
            self.unfinished.clear();
            items
        };
        self.unfinished.extend_from_slice(rest);
        items
    }

    /// The last item, if the list did not end with a newline.
    pub fn finish(self) -> Result<Option<ItemRecord>, RepoError> {
        let mut items = parse_complete(&self.unfinished)?;
        Ok(items.pop())
    }
}

fn parse_complete(bytes: &[u8]) -> Result<Vec<ItemRecord>, RepoError> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| RepoError::Corrupt(format!("item list: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::crypto::ChunkId;
    use crate::fuzz::damaged;

    fn lines() -> Vec<u8> {
        let file = ItemRecord {
            path: "dir/file".into(),
            kind: ItemKind::File,
            size: 3,
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime_ns: 3,
            ctime_ns: 4,
            inode: 5,
            target: None,
            chunks: vec![(ChunkId([6; 32]), 3)],
            changed_while_read: true,
        };
        let link = ItemRecord {
            path: "link".into(),
            kind: ItemKind::Symlink,
            target: Some("dir/file".into()),
            chunks: Vec::new(),
            changed_while_read: false,
            ..file.clone()
        };
        [file.to_line(), link.to_line()].concat()
    }

    proptest! {
        #[test]
        fn a_damaged_item_list_is_items_or_an_error(bytes in damaged(lines())) {
            let _ = parse_lines(&bytes);
        }

        /// However the list is cut into chunks, the same items come out.
        #[test]
        fn items_read_chunk_by_chunk_are_the_items_read_whole(
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let bytes = [lines(), lines()].concat();
            let whole = parse_lines(&bytes).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort();
            let mut parsed = Lines::default();
            let mut items = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                items.extend(parsed.push(&bytes[from..cut]).unwrap());
                from = cut;
            }
            items.extend(parsed.finish().unwrap());
            prop_assert_eq!(items, whole);
        }
    }
}

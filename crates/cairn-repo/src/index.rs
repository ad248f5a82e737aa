//! Index files (which chunks live in which pack, where) and the in-memory index built
//! from them. An index file is written only after every pack it names has landed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::RepoError;
use super::crypto::ChunkId;
use super::pack::{ChunkKind, PackEntry, PackId};

/// One index file as stored (sealed, see [`super::meta`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexFile {
    pub version: u32,
    pub packs: Vec<IndexedPack>,
    /// Index files whose contents this one carries over (written by prune when it merges
    /// index files); they may be deleted once this one has landed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexedPack {
    pub id: String,
    pub size: u64,
    pub chunks: Vec<IndexedChunk>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexedChunk {
    pub id: String,
    pub kind: ChunkKind,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

impl IndexedPack {
    pub fn new(id: PackId, size: u64, entries: &[PackEntry]) -> Self {
        IndexedPack {
            id: id.to_hex(),
            size,
            chunks: entries
                .iter()
                .map(|e| IndexedChunk {
                    id: e.id.to_hex(),
                    kind: e.kind,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                })
                .collect(),
        }
    }

    pub fn entries(&self) -> Result<Vec<PackEntry>, RepoError> {
        self.chunks
            .iter()
            .map(|c| {
                Ok(PackEntry {
                    id: ChunkId::from_hex(&c.id)?,
                    kind: c.kind,
                    offset: c.offset,
                    length: c.length,
                    raw_length: c.raw_length,
                })
            })
            .collect()
    }
}

/// Where a chunk can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub kind: ChunkKind,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: u32,
    kind: ChunkKind,
    offset: u32,
    length: u32,
    raw_length: u32,
}

/// Every chunk the repository holds, by id. About 60 bytes a chunk: a terabyte of unique
/// data at the default 1 MiB average is a million chunks, some 60 MiB.
#[derive(Default)]
pub struct Index {
    packs: Vec<PackId>,
    pack_sizes: Vec<u64>,
    pack_slots: HashMap<PackId, u32>,
    chunks: HashMap<ChunkId, Slot>,
}

impl Index {
    pub fn add_pack(&mut self, pack: PackId, size: u64, entries: &[PackEntry]) {
        let slot = *self.pack_slots.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            self.pack_sizes.push(size);
            (self.packs.len() - 1) as u32
        });
        for e in entries {
            self.chunks.insert(
                e.id,
                Slot {
                    pack: slot,
                    kind: e.kind,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                },
            );
        }
    }

    pub fn add_file(&mut self, file: &IndexFile) -> Result<(), RepoError> {
        for pack in &file.packs {
            self.add_pack(PackId::from_hex(&pack.id)?, pack.size, &pack.entries()?);
        }
        Ok(())
    }

    /// This index without the chunks located in `packs` (for a backup, which must not
    /// reuse chunks in packs a prune has condemned).
    pub fn without_packs(&self, packs: &std::collections::HashSet<PackId>) -> Index {
        let mut out = Index::default();
        let mut by_pack: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
        for (id, loc) in self.chunks() {
            if !packs.contains(&loc.pack) {
                by_pack.entry(loc.pack).or_default().push(PackEntry {
                    id,
                    kind: loc.kind,
                    offset: loc.offset,
                    length: loc.length,
                    raw_length: loc.raw_length,
                });
            }
        }
        for (pack, size) in self.packs() {
            if let Some(entries) = by_pack.get(&pack) {
                out.add_pack(pack, size, entries);
            }
        }
        out
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    pub fn get(&self, id: &ChunkId) -> Option<Location> {
        self.chunks.get(id).map(|s| Location {
            pack: self.packs[s.pack as usize],
            kind: s.kind,
            offset: s.offset,
            length: s.length,
            raw_length: s.raw_length,
        })
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Every indexed pack with its size.
    pub fn packs(&self) -> impl Iterator<Item = (PackId, u64)> + '_ {
        self.packs
            .iter()
            .copied()
            .zip(self.pack_sizes.iter().copied())
    }

    /// Every chunk with its location.
    pub fn chunks(&self) -> impl Iterator<Item = (ChunkId, Location)> + '_ {
        self.chunks.iter().map(|(id, s)| {
            (
                *id,
                Location {
                    pack: self.packs[s.pack as usize],
                    kind: s.kind,
                    offset: s.offset,
                    length: s.length,
                    raw_length: s.raw_length,
                },
            )
        })
    }
}

//! Snapshot manifests. One `cairn backup` run is one snapshot, identified by a random id;
//! it is stored as one manifest per source (`snapshots/<hash>`), written only after that
//! source's packs and index files have landed. A source whose backup failed has no
//! manifest in that snapshot, and each source's manifests can be retained independently.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::crypto::ChunkId;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceSnapshot {
    pub version: u32,
    /// The run's id, shared by the manifests of all its sources (32 hex digits).
    pub snapshot: String,
    pub time: DateTime<Utc>,
    pub hostname: String,
    pub username: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub source: String,
    pub plugin: String,
    pub plugin_version: String,
    /// Chunks of the item list (see [`super::tree`]), in order.
    pub tree: Vec<ChunkId>,
    pub items: u64,
    /// Bytes of item contents.
    pub bytes: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// How long the capture took, in seconds.
    pub duration_secs: f64,
    pub program: String,
}

impl SourceSnapshot {
    pub fn short_id(&self) -> &str {
        &self.snapshot[..8.min(self.snapshot.len())]
    }
}

/// A fresh snapshot id.
pub fn new_snapshot_id() -> String {
    use rand::RngCore;
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    hex::encode(id)
}

impl Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ChunkId::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

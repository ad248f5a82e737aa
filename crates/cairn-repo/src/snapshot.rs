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
    /// The repository's own order of writes, which no clock decides: one more than the
    /// highest `seq` among the manifests the run saw when it started (0 in manifests
    /// written before the field existed). `latest` and retention order by `seq`, then
    /// `time`; two runs that overlapped may share one.
    #[serde(default)]
    pub seq: u64,
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
    /// Files stored as read although they kept changing while read (their items say
    /// `changed_while_read`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub changed_while_read: u64,
    /// The plugin options the source was captured with (JSON, as the plugin received
    /// them), so that a host whose config lacks the source can still restore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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

/// The `seq` of a run that starts when the repository holds `manifests`.
pub fn next_seq<'a>(manifests: impl IntoIterator<Item = &'a SourceSnapshot>) -> u64 {
    manifests.into_iter().map(|m| m.seq).max().unwrap_or(0) + 1
}

/// How far `now` is behind the newest time among `manifests`, if it is: another host's
/// clock (or this one's) is wrong. Ordering does not depend on it; the user should know.
pub fn clock_behind<'a>(
    now: DateTime<Utc>,
    manifests: impl IntoIterator<Item = &'a SourceSnapshot>,
) -> Option<(chrono::Duration, &'a SourceSnapshot)> {
    let newest = manifests.into_iter().max_by_key(|m| m.time)?;
    let behind = newest.time - now;
    (behind > chrono::Duration::zero()).then_some((behind, newest))
}

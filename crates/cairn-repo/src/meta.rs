//! Sealed metadata objects (the repository config, index files, snapshot manifests):
//! JSON, compressed with zstd, then sealed with a context naming the object's kind so
//! that one kind can never be passed off as another.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::RepoError;
use super::crypto::Keys;

/// The kinds of sealed metadata object, each with its own authentication context.
#[derive(Debug, Clone, Copy)]
pub enum MetaKind {
    Config,
    Index,
    Snapshot,
    /// A prune marker: packs condemned by the first phase of a prune.
    Prune,
    /// A record of one backup or drill run (outcomes per source), for `cairn status`.
    Run,
    /// A backup in progress (see [`crate::writers`]).
    Writer,
}

impl MetaKind {
    fn context(self) -> &'static [u8] {
        match self {
            MetaKind::Config => b"cairn config",
            MetaKind::Index => b"cairn index",
            MetaKind::Snapshot => b"cairn snapshot",
            MetaKind::Prune => b"cairn prune",
            MetaKind::Run => b"cairn run",
            MetaKind::Writer => b"cairn writer",
        }
    }
}

pub fn seal<T: Serialize>(keys: &Keys, kind: MetaKind, value: &T) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("repository metadata always serialises");
    let compressed =
        zstd::bulk::compress(&json, 3).expect("zstd compression of an in-memory buffer");
    keys.seal(kind.context(), &compressed)
}

pub fn open<T: DeserializeOwned>(
    keys: &Keys,
    kind: MetaKind,
    sealed: &[u8],
) -> Result<T, RepoError> {
    let compressed = keys.open(kind.context(), sealed)?;
    let json = zstd::stream::decode_all(&compressed[..])
        .map_err(|e| RepoError::Corrupt(format!("zstd: {e}")))?;
    serde_json::from_slice(&json)
        .map_err(|e| RepoError::Corrupt(format!("{kind:?} is not valid JSON: {e}")))
}

/// The name a content-addressed metadata object is stored under: `<prefix>/<hash>`.
pub fn content_name(prefix: &str, sealed: &[u8]) -> String {
    format!("{prefix}/{}", blake3::hash(sealed).to_hex())
}

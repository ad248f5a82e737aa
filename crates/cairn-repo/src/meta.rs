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
    /// The start of a change chain (see [`crate::changes`]).
    Chain,
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
            MetaKind::Chain => b"cairn chain",
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::crypto::ChunkId;
    use crate::fuzz::{damaged, keys};
    use crate::index::{Index, IndexFile, IndexedPack};
    use crate::pack::{ChunkKind, PackEntry, PackId};
    use crate::snapshot::SourceSnapshot;
    use crate::writers::WriterRecord;
    use crate::{PruneMarker, RepoConfig};

    fn json<T: Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    fn index_file() -> IndexFile {
        let entry = PackEntry {
            id: ChunkId([3; 32]),
            kind: ChunkKind::Data,
            offset: 0,
            length: 100,
            raw_length: 80,
        };
        IndexFile {
            version: 1,
            packs: vec![IndexedPack::new(PackId([4; 32]), 200, &[entry])],
            supersedes: vec!["index/00".into()],
        }
    }

    fn snapshot() -> SourceSnapshot {
        SourceSnapshot {
            version: 1,
            snapshot: "0".repeat(32),
            time: chrono::DateTime::UNIX_EPOCH,
            seq: 3,
            hostname: "h".into(),
            username: "u".into(),
            tags: vec!["t".into()],
            source: "files".into(),
            plugin: "filesystem".into(),
            plugin_version: "0.1.0".into(),
            tree: vec![ChunkId([1; 32])],
            items: 1,
            bytes: 2,
            annotations: [("rows.t".to_string(), "5".to_string())].into(),
            duration_secs: 0.5,
            program: "cairn".into(),
            changed_while_read: 1,
            options: Some(r#"{"path":"/srv"}"#.into()),
        }
    }

    fn others() -> Vec<u8> {
        let config = RepoConfig {
            version: 1,
            id: "1".repeat(32),
            chunker: crate::chunker::CdcParams::default_sizes(),
            zstd_level: 1,
            pack_size: 1 << 24,
            created: chrono::DateTime::UNIX_EPOCH,
        };
        let marker = PruneMarker {
            version: 1,
            time: chrono::DateTime::UNIX_EPOCH,
            packs: vec!["ab".repeat(32)],
        };
        let writer = WriterRecord {
            version: 1,
            run: "2".repeat(32),
            hostname: "h".into(),
            process: None,
            started: chrono::DateTime::UNIX_EPOCH,
            beat: 4,
            interval_secs: 30,
            seen_markers: Some(vec!["prune/x".into()]),
        };
        [json(&config), json(&marker), json(&writer)].join(&b'\n')
    }

    /// Seals `json` as `kind` the way [`seal`] does, so that the damage is behind the seal.
    fn sealed(kind: MetaKind, json: &[u8]) -> Vec<u8> {
        keys().seal(kind.context(), &zstd::bulk::compress(json, 3).unwrap())
    }

    proptest! {
        #[test]
        fn damaged_sealed_metadata_is_an_error(
            bytes in damaged(seal(&keys(), MetaKind::Snapshot, &snapshot())),
        ) {
            let _ = open::<SourceSnapshot>(&keys(), MetaKind::Snapshot, &bytes);
        }

        /// Authenticated but malformed JSON (a bug, or a key leak) decodes or is refused;
        /// an index file that decodes loads into an index or is refused.
        #[test]
        fn any_json_behind_the_seal_is_a_value_or_an_error(
            index in damaged(json(&index_file())),
            manifest in damaged(json(&snapshot())),
            other in damaged(others()),
        ) {
            let keys = keys();
            if let Ok(file) = open::<IndexFile>(&keys, MetaKind::Index, &sealed(MetaKind::Index, &index)) {
                let _ = Index::default().add_file(&file);
            }
            let _ = open::<SourceSnapshot>(&keys, MetaKind::Snapshot, &sealed(MetaKind::Snapshot, &manifest));
            for line in other.split(|&b| b == b'\n') {
                let _ = open::<RepoConfig>(&keys, MetaKind::Config, &sealed(MetaKind::Config, line));
                let _ = open::<PruneMarker>(&keys, MetaKind::Prune, &sealed(MetaKind::Prune, line));
                let _ = open::<WriterRecord>(&keys, MetaKind::Writer, &sealed(MetaKind::Writer, line));
            }
        }
    }
}

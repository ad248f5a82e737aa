//! Change chains: what a source's continuous capture stores between snapshots. A chain
//! begins at a snapshot (its base) and goes on in segments, each holding what changed
//! since the one before, in the source's own encoding, up to a point the source names.
//!
//! Objects, all sealed: `changes/<chain>/000000000000` records the chain's start (source,
//! base snapshot, point, why it began); `changes/<chain>/<seq>` (12 digits, from 1) is a
//! segment. Names are fixed in advance and written create-only, so one listing at start
//! finds where a chain ends, no write needs a listing, and two writers of one chain cannot
//! both succeed. A segment is one object (one request), its changes inline.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::backend::BackendErrorKind;
use crate::meta::{self, MetaKind};
use crate::{RepoError, RepoResult, Repository};

pub const PREFIX: &str = "changes/";
/// The authentication context of a segment.
const SEGMENT: &[u8] = b"cairn segment";

/// A chain's first object: where and why it began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainStart {
    pub version: u32,
    /// Random, 32 hex digits.
    pub chain: String,
    pub source: String,
    /// The id of the snapshot the chain starts from.
    pub base: String,
    /// When the base snapshot's copy was taken.
    pub time: DateTime<Utc>,
    /// The source's point at the base: the first segment goes on from here.
    pub start: String,
    /// Why a new chain began (the first, a gap and its cause, a scheduled snapshot).
    pub reason: String,
    pub hostname: String,
}

/// What a segment says of itself, beside its changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentHeader {
    pub version: u32,
    pub chain: String,
    /// 1 for the first segment after the base.
    pub seq: u64,
    /// When the source had read everything in it: every change it holds was committed
    /// at or before this time.
    pub time: DateTime<Utc>,
    /// The source's point after it.
    pub end: String,
}

/// A segment read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub header: SegmentHeader,
    pub changes: Bytes,
}

/// A chain as a listing finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub start: ChainStart,
    /// The number of segments from 1 with none missing; a segment after a missing one
    /// cannot be applied and is not counted.
    pub segments: u64,
}

pub fn chain_start_name(chain: &str) -> String {
    format!("{PREFIX}{chain}/{:012}", 0)
}

pub fn segment_name(chain: &str, seq: u64) -> String {
    format!("{PREFIX}{chain}/{seq:012}")
}

/// A fresh chain id.
pub fn new_chain_id() -> String {
    crate::snapshot::new_snapshot_id()
}

/// Stores a chain's start; the chain exists from this moment.
pub async fn write_chain_start(repo: &Repository, start: &ChainStart) -> RepoResult<()> {
    let sealed = meta::seal(repo.keys(), MetaKind::Chain, start);
    repo.backend()
        .put(&chain_start_name(&start.chain), sealed.into(), true)
        .await?;
    Ok(())
}

/// Stores a segment create-only: finding its name taken means another writer follows the
/// same chain, which must stop.
pub async fn write_segment(
    repo: &Repository,
    header: &SegmentHeader,
    changes: &[u8],
) -> RepoResult<u64> {
    let sealed = seal_segment(repo, header, changes);
    let size = sealed.len() as u64;
    match repo
        .backend()
        .put(
            &segment_name(&header.chain, header.seq),
            sealed.into(),
            true,
        )
        .await
    {
        Ok(()) => Ok(size),
        Err(e) if e.kind == BackendErrorKind::AlreadyExists => Err(RepoError::Other(format!(
            "segment {} of chain {} is already stored: another `cairn replicate` is following this source; run one at a time",
            header.seq, header.chain
        ))),
        Err(e) => Err(e.into()),
    }
}

fn seal_segment(repo: &Repository, header: &SegmentHeader, changes: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(header).expect("a segment header always serialises");
    let mut plain = Vec::with_capacity(4 + header.len() + changes.len());
    plain.extend_from_slice(&(header.len() as u32).to_le_bytes());
    plain.extend_from_slice(&header);
    plain.extend_from_slice(changes);
    let compressed =
        zstd::bulk::compress(&plain, 3).expect("zstd compression of an in-memory buffer");
    repo.keys().seal(SEGMENT, &compressed)
}

/// Opens a sealed segment.
pub fn open_segment(keys: &crate::crypto::Keys, sealed: &[u8]) -> RepoResult<Segment> {
    let compressed = keys.open(SEGMENT, sealed)?;
    let plain = zstd::stream::decode_all(&compressed[..])
        .map_err(|e| RepoError::Corrupt(format!("zstd: {e}")))?;
    let corrupt = || RepoError::Corrupt("a segment's header is cut short".into());
    let len = u32::from_le_bytes(
        plain
            .get(..4)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?,
    ) as usize;
    let header_end = 4usize
        .checked_add(len)
        .filter(|&end| end <= plain.len())
        .ok_or_else(corrupt)?;
    let header: SegmentHeader = serde_json::from_slice(&plain[4..header_end])
        .map_err(|e| RepoError::Corrupt(format!("a segment's header is not valid JSON: {e}")))?;
    Ok(Segment {
        header,
        changes: Bytes::copy_from_slice(&plain[header_end..]),
    })
}

pub async fn read_segment(repo: &Repository, chain: &str, seq: u64) -> RepoResult<Segment> {
    let name = segment_name(chain, seq);
    let sealed = repo.backend().get(&name).await?;
    let segment = open_segment(repo.keys(), &sealed).map_err(|e| e.context(&name))?;
    if segment.header.chain != chain || segment.header.seq != seq {
        return Err(RepoError::Corrupt(format!(
            "{name} holds segment {} of chain {}",
            segment.header.seq, segment.header.chain
        )));
    }
    Ok(segment)
}

/// Every chain, optionally of one source, oldest first (by base time). One listing, then
/// one read of each chain's start; a damaged start leaves its chain out, with a warning.
pub async fn chains(repo: &Repository, source: Option<&str>) -> RepoResult<Vec<Chain>> {
    let names = repo.backend().list(PREFIX).await?;
    let mut seqs: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (name, _) in &names {
        let Some((chain, seq)) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        if let Ok(seq) = seq.parse::<u64>() {
            seqs.entry(chain.to_string()).or_default().push(seq);
        }
    }
    let read: Vec<(String, Vec<u64>, RepoResult<ChainStart>)> =
        futures::stream::iter(seqs.into_iter().map(|(chain, seqs)| async move {
            let name = chain_start_name(&chain);
            let start = match repo.backend().get(&name).await {
                Ok(sealed) => meta::open::<ChainStart>(repo.keys(), MetaKind::Chain, &sealed)
                    .map_err(|e| e.context(&name)),
                Err(e) => Err(RepoError::from(e).context(&name)),
            };
            (chain, seqs, start)
        }))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut chains = Vec::new();
    for (chain, mut seqs, start) in read {
        let start = match start {
            Ok(start) if start.chain == chain => start,
            Ok(_) => {
                tracing::warn!("chain {chain}: its start names another chain; left out");
                continue;
            }
            Err(e) => {
                tracing::warn!("chain {chain} is left out: {e}");
                continue;
            }
        };
        if source.is_some_and(|s| s != start.source) {
            continue;
        }
        seqs.sort_unstable();
        let segments = seqs
            .iter()
            .filter(|&&s| s > 0)
            .enumerate()
            .take_while(|(i, s)| **s == *i as u64 + 1)
            .count() as u64;
        chains.push(Chain { start, segments });
    }
    chains.sort_by(|a, b| (a.start.time, &a.start.chain).cmp(&(b.start.time, &b.start.chain)));
    Ok(chains)
}

/// The last point in time `chain` can be restored to: its last segment's, or its base's
/// when it has none yet.
pub async fn chain_end(repo: &Repository, chain: &Chain) -> RepoResult<DateTime<Utc>> {
    Ok(match chain.segments {
        0 => chain.start.time,
        last => {
            read_segment(repo, &chain.start.chain, last)
                .await?
                .header
                .time
        }
    })
}

/// Deletes every object of `chain`, its start last: a deletion cut short leaves a chain
/// that the next one finishes. How many objects were deleted.
pub async fn delete_chain(repo: &Repository, chain: &str) -> RepoResult<usize> {
    let mut names: Vec<String> = repo
        .backend()
        .list(&format!("{PREFIX}{chain}/"))
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    for name in &names {
        repo.backend().delete(name).await?;
    }
    Ok(names.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(chain: &str, source: &str, minutes: i64) -> ChainStart {
        ChainStart {
            version: 1,
            chain: chain.into(),
            source: source.into(),
            base: format!("snap-{chain}"),
            time: DateTime::from_timestamp(1_800_000_000 + minutes * 60, 0).expect("time"),
            start: "{}".into(),
            reason: "the first chain of this source".into(),
            hostname: "h".into(),
        }
    }

    fn header(chain: &str, seq: u64) -> SegmentHeader {
        SegmentHeader {
            version: 1,
            chain: chain.into(),
            seq,
            time: DateTime::from_timestamp(1_800_000_000 + seq as i64, 0).expect("time"),
            end: format!("point {seq}"),
        }
    }

    #[tokio::test]
    async fn chains_are_listed_to_their_first_missing_segment_and_written_once() {
        let repo = crate::memory::repository().await;
        write_chain_start(&repo, &start("aa", "db", 0))
            .await
            .expect("start");
        write_chain_start(&repo, &start("bb", "other", 5))
            .await
            .expect("start");
        for seq in [1, 2, 4] {
            write_segment(&repo, &header("aa", seq), &[seq as u8; 100])
                .await
                .expect("segment");
        }
        let err = write_segment(&repo, &header("aa", 2), b"again")
            .await
            .expect_err("twice");
        assert!(
            err.to_string().contains("another `cairn replicate`"),
            "{err}"
        );
        let chains = chains(&repo, Some("db")).await.expect("chains");
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0].segments, 2, "segment 4 follows a missing 3");
        let segment = read_segment(&repo, "aa", 2).await.expect("read");
        assert_eq!(segment.header, header("aa", 2));
        assert_eq!(segment.changes, Bytes::from(vec![2u8; 100]));
        assert_eq!(super::chains(&repo, None).await.expect("all").len(), 2);
    }

    #[tokio::test]
    async fn a_segment_under_another_name_or_damaged_is_refused() {
        let repo = crate::memory::repository().await;
        write_segment(&repo, &header("aa", 1), b"one")
            .await
            .expect("segment");
        let sealed = repo
            .backend()
            .get(&segment_name("aa", 1))
            .await
            .expect("get");
        repo.backend()
            .put(&segment_name("aa", 2), sealed.clone(), true)
            .await
            .expect("put");
        assert!(
            read_segment(&repo, "aa", 2).await.is_err(),
            "a segment replayed under another name"
        );
        let mut flipped = sealed.to_vec();
        flipped[40] ^= 1;
        assert!(open_segment(repo.keys(), &flipped).is_err());
    }

    proptest::proptest! {
        /// Whatever storage returns for a segment decodes to one or to a typed error.
        #[test]
        fn damaged_segments_open_without_panicking(damaged in crate::fuzz::damaged({
            let keys = crate::fuzz::keys();
            let header = serde_json::to_vec(&header("aa", 1)).expect("json");
            let mut plain = (header.len() as u32).to_le_bytes().to_vec();
            plain.extend_from_slice(&header);
            plain.extend_from_slice(b"changes");
            keys.seal(SEGMENT, &zstd::bulk::compress(&plain, 3).expect("zstd"))
        })) {
            let _ = open_segment(&crate::fuzz::keys(), &damaged);
        }
    }
}

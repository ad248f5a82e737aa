//! Change chains: what a source's continuous capture stores between snapshots. A chain
//! begins at a snapshot (its base) and goes on in segments, each holding what changed
//! since the one before, in the source's own encoding, up to a point the source names.
//!
//! Objects, all sealed: `changes/<chain>/000000000000` records the chain's start (source,
//! base snapshot, point, why it began); `changes/<chain>/<seq>` (12 digits, from 1) is a
//! segment; `changes/<chain>/<first>-<last>` is a bundle, the segments `first..=last` in
//! one object, each as it was (so every point in time they reach is kept): the replicator
//! packs its small segments into bundles so that objects and requests stay bounded.
//! Names are fixed in advance and written create-only, so one listing at start finds
//! where a chain ends, no write needs a listing, and two writers of one chain cannot both
//! succeed. A segment is one object (one request), its changes inline.

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
/// The authentication context of a bundle of segments.
const BUNDLE: &[u8] = b"cairn bundle";
/// The most segments one bundle holds.
pub const BUNDLE_MAX_SEGMENTS: usize = 4096;

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
    /// The objects that hold segments `1..=segments`, in order: what a restore reads.
    pub objects: Vec<Stored>,
    /// Segments stored both on their own and in a bundle (a replicator stopped between
    /// writing the bundle and deleting them): safe to delete.
    pub covered: Vec<Stored>,
    /// Every object the listing found under the chain, its start included.
    pub stored: usize,
}

/// One object of a chain: segment `first` alone, or a bundle of `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stored {
    pub first: u64,
    pub last: u64,
}

impl Stored {
    pub fn name(&self, chain: &str) -> String {
        match self.first == self.last {
            true => segment_name(chain, self.first),
            false => bundle_name(chain, self.first, self.last),
        }
    }

    /// The object a name under `changes/<chain>/` is, if any (the start is not one).
    fn parse(name: &str) -> Option<Stored> {
        let stored = match name.split_once('-') {
            Some((first, last)) => Stored {
                first: first.parse().ok()?,
                last: last.parse().ok()?,
            },
            None => {
                let seq = name.parse().ok()?;
                Stored {
                    first: seq,
                    last: seq,
                }
            }
        };
        (stored.first > 0 && stored.first <= stored.last).then_some(stored)
    }
}

pub fn chain_start_name(chain: &str) -> String {
    format!("{PREFIX}{chain}/{:012}", 0)
}

pub fn segment_name(chain: &str, seq: u64) -> String {
    format!("{PREFIX}{chain}/{seq:012}")
}

pub fn bundle_name(chain: &str, first: u64, last: u64) -> String {
    format!("{PREFIX}{chain}/{first:012}-{last:012}")
}

/// Which of `objects` a reader of the chain reads, and which it need not: from segment 1
/// on, at each step the object that starts there and reaches furthest. The plan ends at
/// the first segment no object starts at.
fn plan(mut objects: Vec<Stored>) -> (Vec<Stored>, Vec<Stored>) {
    objects.sort_unstable_by_key(|o| (o.first, std::cmp::Reverse(o.last)));
    let (mut read, mut covered) = (Vec::new(), Vec::new());
    let mut next = 1;
    for object in objects {
        if object.first == next {
            next = object.last + 1;
            read.push(object);
        } else if object.last < next {
            covered.push(object);
        }
    }
    (read, covered)
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

/// Stores `segments` (consecutive, of one chain) as one bundle, create-only. A bundle
/// already there under that name was written by an earlier run from the same segments,
/// which a chain holds once: it is kept. The bundle's size.
pub async fn write_bundle(repo: &Repository, segments: &[Segment]) -> RepoResult<u64> {
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return Ok(0);
    };
    let chain = &first.header.chain;
    let consecutive = segments
        .iter()
        .enumerate()
        .all(|(i, s)| s.header.chain == *chain && s.header.seq == first.header.seq + i as u64);
    if !consecutive || segments.len() > BUNDLE_MAX_SEGMENTS {
        return Err(RepoError::Other(format!(
            "a bundle of chain {chain} must hold at most {BUNDLE_MAX_SEGMENTS} consecutive segments of it"
        )));
    }
    let mut plain = (segments.len() as u32).to_le_bytes().to_vec();
    for segment in segments {
        let header =
            serde_json::to_vec(&segment.header).expect("a segment header always serialises");
        plain.extend_from_slice(&(header.len() as u32).to_le_bytes());
        plain.extend_from_slice(&header);
        plain.extend_from_slice(&(segment.changes.len() as u64).to_le_bytes());
        plain.extend_from_slice(&segment.changes);
    }
    let compressed =
        zstd::bulk::compress(&plain, 3).expect("zstd compression of an in-memory buffer");
    let sealed = repo.keys().seal(BUNDLE, &compressed);
    let size = sealed.len() as u64;
    let name = bundle_name(chain, first.header.seq, last.header.seq);
    match repo.backend().put(&name, sealed.into(), true).await {
        Ok(()) => Ok(size),
        Err(e) if e.kind == BackendErrorKind::AlreadyExists => Ok(size),
        Err(e) => Err(e.into()),
    }
}

/// Opens a sealed bundle.
pub fn open_bundle(keys: &crate::crypto::Keys, sealed: &[u8]) -> RepoResult<Vec<Segment>> {
    let compressed = keys.open(BUNDLE, sealed)?;
    let plain = zstd::stream::decode_all(&compressed[..])
        .map_err(|e| RepoError::Corrupt(format!("zstd: {e}")))?;
    let corrupt = || RepoError::Corrupt("a bundle is cut short".into());
    let mut at = 0usize;
    let mut take = |n: usize| -> RepoResult<&[u8]> {
        let end = at.checked_add(n).filter(|&end| end <= plain.len());
        let end = end.ok_or_else(corrupt)?;
        let bytes = &plain[at..end];
        at = end;
        Ok(bytes)
    };
    let word = |bytes: &[u8]| -> u64 {
        let mut le = [0u8; 8];
        le[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(le)
    };
    let count = word(take(4)?) as usize;
    if count == 0 || count > BUNDLE_MAX_SEGMENTS {
        return Err(RepoError::Corrupt(format!(
            "a bundle says it holds {count} segments"
        )));
    }
    let mut segments = Vec::with_capacity(count);
    for _ in 0..count {
        let len = word(take(4)?) as usize;
        let header: SegmentHeader = serde_json::from_slice(take(len)?).map_err(|e| {
            RepoError::Corrupt(format!("a bundled segment's header is not valid JSON: {e}"))
        })?;
        let len = usize::try_from(word(take(8)?)).map_err(|_| corrupt())?;
        let changes = Bytes::copy_from_slice(take(len)?);
        segments.push(Segment { header, changes });
    }
    if take(1).is_ok() {
        return Err(RepoError::Corrupt(
            "a bundle goes on past its last segment".into(),
        ));
    }
    Ok(segments)
}

/// Reads one object of `chain`: its segments, each checked to be the one its place names.
pub async fn read_stored(
    repo: &Repository,
    chain: &str,
    stored: Stored,
) -> RepoResult<Vec<Segment>> {
    if stored.first == stored.last {
        return Ok(vec![read_segment(repo, chain, stored.first).await?]);
    }
    let name = stored.name(chain);
    let sealed = repo.backend().get(&name).await?;
    let segments = open_bundle(repo.keys(), &sealed).map_err(|e| e.context(&name))?;
    let expected = (stored.last - stored.first + 1) as usize;
    let in_place = segments.len() == expected
        && segments
            .iter()
            .zip(stored.first..)
            .all(|(s, seq)| s.header.chain == chain && s.header.seq == seq);
    if !in_place {
        return Err(RepoError::Corrupt(format!(
            "{name} does not hold segments {}..={} of chain {chain}",
            stored.first, stored.last
        )));
    }
    Ok(segments)
}

/// The chain's segments `1..=chain.segments`, in order, reading up to eight objects at
/// once.
pub fn read_segments<'a>(
    repo: &'a Repository,
    chain: &'a Chain,
) -> impl futures::Stream<Item = RepoResult<Segment>> + 'a {
    futures::stream::iter(chain.objects.iter().copied())
        .map(move |stored| read_stored(repo, &chain.start.chain, stored))
        .buffered(8)
        .flat_map(|read| {
            futures::stream::iter(match read {
                Ok(segments) => segments.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
        })
}

/// The chain's last segment, if it has any.
pub async fn last_segment(repo: &Repository, chain: &Chain) -> RepoResult<Option<Segment>> {
    let read = |chain: Chain| async move {
        match chain.objects.last() {
            Some(&stored) => Ok(read_stored(repo, &chain.start.chain, stored).await?.pop()),
            None => Ok(None),
        }
    };
    match read(chain.clone()).await {
        Err(e) if gone_since_listed(&e) => read(relisted(repo, chain).await?).await,
        read => read,
    }
}

/// Whether `e` says an object the listing found is gone: a replicator running beside the
/// reader packed single segments into a bundle and deleted them. Listing the chain again
/// ([`relisted`]) finds the bundle.
pub fn gone_since_listed(e: &RepoError) -> bool {
    matches!(e, RepoError::Backend(b) if b.kind == BackendErrorKind::NotFound)
}

/// `chain` as a new listing finds it.
pub async fn relisted(repo: &Repository, chain: &Chain) -> RepoResult<Chain> {
    chains(repo, Some(&chain.start.source))
        .await?
        .into_iter()
        .find(|c| c.start.chain == chain.start.chain)
        .ok_or_else(|| {
            RepoError::Corrupt(format!(
                "chain {} is gone: its start was deleted while it was read",
                chain.start.chain
            ))
        })
}

/// Deletes the objects `covered` (single segments or bundles) that a bundle now holds, one
/// by one, so that a stop cut short leaves only objects the next reader ignores.
pub async fn delete_covered(repo: &Repository, chain: &str, covered: &[Stored]) -> RepoResult<()> {
    for stored in covered {
        repo.backend().delete(&stored.name(chain)).await?;
    }
    Ok(())
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

/// A chain's objects as a listing finds them, and the number of names under it.
type Listed = (Vec<Stored>, usize);

/// Every chain, optionally of one source, oldest first (by base time). One listing, then
/// one read of each chain's start; a damaged start leaves its chain out, with a warning.
pub async fn chains(repo: &Repository, source: Option<&str>) -> RepoResult<Vec<Chain>> {
    let names = repo.backend().list(PREFIX).await?;
    // Per chain: its objects, and how many names the listing found under it.
    let mut found: std::collections::BTreeMap<String, Listed> = Default::default();
    for (name, _) in &names {
        let Some((chain, object)) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let (objects, stored) = found.entry(chain.to_string()).or_default();
        *stored += 1;
        objects.extend(Stored::parse(object));
    }
    let read: Vec<(String, Listed, RepoResult<ChainStart>)> =
        futures::stream::iter(found.into_iter().map(|(chain, objects)| async move {
            let name = chain_start_name(&chain);
            let start = match repo.backend().get(&name).await {
                Ok(sealed) => meta::open::<ChainStart>(repo.keys(), MetaKind::Chain, &sealed)
                    .map_err(|e| e.context(&name)),
                Err(e) => Err(RepoError::from(e).context(&name)),
            };
            (chain, objects, start)
        }))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut chains = Vec::new();
    for (chain, (objects, stored), start) in read {
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
        let (objects, covered) = plan(objects);
        let segments = objects.last().map_or(0, |o| o.last);
        chains.push(Chain {
            start,
            segments,
            objects,
            covered,
            stored,
        });
    }
    chains.sort_by(|a, b| (a.start.time, &a.start.chain).cmp(&(b.start.time, &b.start.chain)));
    Ok(chains)
}

/// The last point in time `chain` can be restored to: its last segment's, or its base's
/// when it has none yet.
pub async fn chain_end(repo: &Repository, chain: &Chain) -> RepoResult<DateTime<Utc>> {
    Ok(match last_segment(repo, chain).await? {
        Some(segment) => segment.header.time,
        None => chain.start.time,
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

    fn segment(chain: &str, seq: u64) -> Segment {
        Segment {
            header: header(chain, seq),
            changes: Bytes::from(vec![seq as u8; 50 + seq as usize]),
        }
    }

    async fn all_segments(repo: &Repository, chain: &Chain) -> Vec<Segment> {
        read_segments(repo, chain)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<RepoResult<_>>()
            .expect("segments")
    }

    #[tokio::test]
    async fn bundles_stand_for_their_segments_and_what_they_cover_is_named() {
        let repo = crate::memory::repository().await;
        write_chain_start(&repo, &start("aa", "db", 0))
            .await
            .expect("start");
        for seq in 1..=7 {
            let s = segment("aa", seq);
            write_segment(&repo, &s.header, &s.changes)
                .await
                .expect("segment");
        }
        // Bundled 1..=3 and 4..=6; the singles of the first bundle were deleted, those
        // of the second not yet (a replicator stopped in between).
        let first: Vec<Segment> = (1..=3).map(|seq| segment("aa", seq)).collect();
        write_bundle(&repo, &first).await.expect("bundle");
        let singles: Vec<Stored> = (1..=3)
            .map(|seq| Stored {
                first: seq,
                last: seq,
            })
            .collect();
        delete_covered(&repo, "aa", &singles).await.expect("delete");
        let second: Vec<Segment> = (4..=6).map(|seq| segment("aa", seq)).collect();
        write_bundle(&repo, &second).await.expect("bundle");
        // Written again by a run that resumed: kept.
        write_bundle(&repo, &second).await.expect("bundle again");

        let chains = chains(&repo, Some("db")).await.expect("chains");
        let chain = &chains[0];
        assert_eq!(chain.segments, 7);
        assert_eq!(
            chain.objects,
            [(1, 3), (4, 6), (7, 7)].map(|(first, last)| Stored { first, last })
        );
        assert_eq!(chain.covered.len(), 3, "{:?}", chain.covered);
        assert_eq!(chain.stored, 1 + 2 + 3 + 1);
        let read = all_segments(&repo, chain).await;
        assert_eq!(
            read,
            (1..=7).map(|seq| segment("aa", seq)).collect::<Vec<_>>()
        );
        assert_eq!(
            last_segment(&repo, chain).await.expect("last"),
            Some(segment("aa", 7))
        );

        // A reader that listed before a replicator bundled 7..=8 finds the bundle.
        let s = segment("aa", 8);
        write_segment(&repo, &s.header, &s.changes)
            .await
            .expect("segment");
        let listed = super::chains(&repo, Some("db"))
            .await
            .expect("chains")
            .remove(0);
        write_bundle(&repo, &[segment("aa", 7), segment("aa", 8)])
            .await
            .expect("bundle");
        let singles = [7, 8].map(|seq| Stored {
            first: seq,
            last: seq,
        });
        delete_covered(&repo, "aa", &singles).await.expect("delete");
        let err = read_stored(&repo, "aa", singles[1])
            .await
            .expect_err("gone");
        assert!(gone_since_listed(&err), "{err}");
        assert_eq!(
            last_segment(&repo, &listed).await.expect("last"),
            Some(segment("aa", 8))
        );

        // A bundle needs consecutive segments of one chain.
        let gap = [segment("aa", 8), segment("aa", 10)];
        assert!(write_bundle(&repo, &gap).await.is_err());
    }

    #[tokio::test]
    async fn a_bundle_under_another_name_or_damaged_is_refused() {
        let repo = crate::memory::repository().await;
        let segments: Vec<Segment> = (1..=3).map(|seq| segment("aa", seq)).collect();
        write_bundle(&repo, &segments).await.expect("bundle");
        let sealed = repo
            .backend()
            .get(&bundle_name("aa", 1, 3))
            .await
            .expect("get");
        repo.backend()
            .put(&bundle_name("aa", 2, 4), sealed.clone(), true)
            .await
            .expect("put");
        let err = read_stored(&repo, "aa", Stored { first: 2, last: 4 })
            .await
            .expect_err("a bundle replayed under another name");
        assert!(
            err.to_string().contains("does not hold segments 2..=4"),
            "{err}"
        );
        let mut flipped = sealed.to_vec();
        flipped[40] ^= 1;
        assert!(open_bundle(repo.keys(), &flipped).is_err());
        // A segment's seal does not open as a bundle's, nor the other way round.
        assert!(open_segment(repo.keys(), &sealed).is_err());
    }

    proptest::proptest! {
        /// Whatever storage returns for a bundle decodes to its segments or to a typed
        /// error.
        #[test]
        fn damaged_bundles_open_without_panicking(damaged in crate::fuzz::damaged({
            let keys = crate::fuzz::keys();
            let mut plain = 2u32.to_le_bytes().to_vec();
            for seq in 1..=2 {
                let header = serde_json::to_vec(&header("aa", seq)).expect("json");
                plain.extend_from_slice(&(header.len() as u32).to_le_bytes());
                plain.extend_from_slice(&header);
                plain.extend_from_slice(&7u64.to_le_bytes());
                plain.extend_from_slice(b"changes");
            }
            keys.seal(BUNDLE, &zstd::bulk::compress(&plain, 3).expect("zstd"))
        })) {
            let _ = open_bundle(&crate::fuzz::keys(), &damaged);
        }

        /// Names under a chain parse to the object they are, or to none.
        #[test]
        fn object_names_parse_or_are_ignored(name in "[0-9-]{0,30}") {
            if let Some(stored) = Stored::parse(&name) {
                proptest::prop_assert!(stored.first >= 1 && stored.first <= stored.last);
            }
        }
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

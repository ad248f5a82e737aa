//! The maintenance operations on a repository in memory: forget, then prune in its two
//! phases, then check, with no config and no binary.

use std::sync::Arc;

use bytes::Bytes;

use super::check::{self, CheckOptions};
use super::forget::{self, ForgetOptions};
use super::prune::{self, PruneOptions};
use super::retention::Policy;
use crate::chunker::Chunking;
use crate::pack::ChunkKind;
use crate::snapshot::{SourceSnapshot, new_snapshot_id};
use crate::tree::{ItemKind, ItemRecord};
use crate::write::{ChunkWriter, ContentWriter};
use crate::{Repository, memory};

/// Stores a snapshot of `source` holding one file of `contents`, in packs of its own.
async fn snapshot(repo: &Arc<Repository>, source: &str, contents: &[u8], hour: u32) {
    let writer = Arc::new(ChunkWriter::start(&repo.load_index().await.unwrap()).unwrap());
    let mut content =
        ContentWriter::new(writer.clone(), Chunking::Fixed(64 * 1024), ChunkKind::Data);
    content.write(contents).await.unwrap();
    let (chunks, _) = content.finish().await.unwrap();
    let record = ItemRecord {
        path: "file".into(),
        kind: ItemKind::File,
        size: contents.len() as u64,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 1,
        target: None,
        chunks,
    };
    let cdc = repo.config().chunker;
    let mut tree = ContentWriter::new(
        writer.clone(),
        Chunking::ContentDefined(cdc),
        ChunkKind::Tree,
    );
    tree.write(&record.to_line()).await.unwrap();
    let (tree, _) = tree.finish().await.unwrap();
    writer.flush().await.unwrap();
    let time = chrono::DateTime::parse_from_rfc3339(&format!("2026-01-01T{hour:02}:00:00Z"))
        .unwrap()
        .to_utc();
    repo.write_snapshot(&SourceSnapshot {
        version: 1,
        snapshot: new_snapshot_id(),
        time,
        hostname: "test".into(),
        username: "test".into(),
        tags: Vec::new(),
        source: source.into(),
        plugin: "test".into(),
        plugin_version: "0".into(),
        tree: tree.into_iter().map(|(id, _)| id).collect(),
        items: 1,
        bytes: contents.len() as u64,
        annotations: Default::default(),
        duration_secs: 0.0,
        program: "test".into(),
    })
    .await
    .unwrap();
}

fn noise(seed: u8, len: usize) -> Vec<u8> {
    let mut state = u64::from(seed) + 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

async fn check_all(repo: &Arc<Repository>) -> check::CheckReport {
    let options = CheckOptions {
        read_data: true,
        subset_percent: 100.0,
    };
    check::run(repo, &options, &|_| {}).await.unwrap()
}

#[tokio::test]
async fn forget_then_prune_twice_frees_the_forgotten_data_and_keeps_the_rest_readable() {
    let repo = memory::repository().await;
    snapshot(&repo, "files", &noise(1, 300_000), 1).await;
    snapshot(&repo, "files", &noise(2, 300_000), 2).await;
    let packs_before = repo.backend().list("data/").await.unwrap().len();

    let keep_last = |_: &str| {
        let mut policy = Policy::default();
        policy.set_count("keep-last", 1, &mut Vec::new());
        Some((policy, Vec::new()))
    };
    let forgotten = forget::run(
        &repo,
        &ForgetOptions {
            dry_run: false,
            sources: None,
            policy_of: &keep_last,
        },
    )
    .await
    .unwrap();
    assert!(forgotten.ok());
    assert_eq!(forgotten.removed(), 1);
    assert_eq!(repo.snapshots().await.unwrap().len(), 1);

    let now = PruneOptions {
        grace: chrono::Duration::zero(),
        dry_run: false,
    };
    // Phase 1 condemns the forgotten snapshot's pack and deletes nothing.
    let first = prune::run(&repo, &now).await.unwrap();
    assert!(first.packs_condemned >= 1, "{first:?}");
    assert_eq!(first.packs_deleted, 0);
    assert_eq!(
        repo.backend().list("data/").await.unwrap().len(),
        packs_before
    );
    // Phase 2, once the grace (none here) has passed, deletes it.
    let second = prune::run(&repo, &now).await.unwrap();
    assert_eq!(second.packs_deleted, first.packs_condemned, "{second:?}");
    assert!(second.bytes_freed > 250_000, "{second:?}");

    let checked = check_all(&repo).await;
    assert!(checked.ok(), "{checked:?}");
    assert_eq!(checked.snapshots, 1);
}

#[tokio::test]
async fn a_policy_that_keeps_nothing_is_refused_and_removes_nothing() {
    let repo = memory::repository().await;
    snapshot(&repo, "files", &noise(3, 10_000), 1).await;
    let only_a_missing_tag = |_: &str| {
        let policy = Policy {
            keep_tags: vec!["no-such-tag".into()],
            ..Policy::default()
        };
        Some((policy, Vec::new()))
    };
    let forgotten = forget::run(
        &repo,
        &ForgetOptions {
            dry_run: false,
            sources: None,
            policy_of: &only_a_missing_tag,
        },
    )
    .await
    .unwrap();
    assert!(!forgotten.ok(), "{forgotten:?}");
    assert_eq!(repo.snapshots().await.unwrap().len(), 1);
}

#[tokio::test]
async fn check_names_the_pack_a_flipped_byte_damaged() {
    let repo = memory::repository().await;
    snapshot(&repo, "files", &noise(4, 200_000), 1).await;
    assert!(check_all(&repo).await.ok());
    let (name, _) = repo.backend().list("data/").await.unwrap().remove(0);
    let mut bytes = repo.backend().get(&name).await.unwrap().to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    repo.backend()
        .put(&name, Bytes::from(bytes), false)
        .await
        .unwrap();
    let checked = check_all(&repo).await;
    assert!(!checked.ok());
    assert!(
        checked.errors.iter().any(|e| e.object == name),
        "{:?}",
        checked.errors
    );
}

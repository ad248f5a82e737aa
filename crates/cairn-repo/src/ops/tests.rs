//! The maintenance operations on a repository in memory: forget, then prune in its two
//! phases, then check, with no config and no binary.

use std::sync::Arc;

use bytes::Bytes;

use super::check::{self, CheckOptions};
use super::forget::{self, ForgetOptions};
use super::prune::{self, PruneOptions};
use super::retention::Policy;
use crate::chunker::Chunking;
use crate::crypto::ChunkId;
use crate::pack::ChunkKind;
use crate::snapshot::{SourceSnapshot, new_snapshot_id};
use crate::tree::{ItemKind, ItemRecord};
use crate::write::{ChunkWriter, ContentWriter};
use crate::writers::Registration;
use crate::{Indexed, Repository, memory};

/// Stores a snapshot of `source` holding one file of `contents`, in packs of its own.
async fn snapshot(repo: &Arc<Repository>, source: &str, contents: &[u8], hour: u32) {
    let staged = stage(&repo.load_index().await.unwrap(), contents).await;
    repo.write_snapshot(&manifest(source, staged, contents.len(), hour))
        .await
        .unwrap();
}

/// Stores one file of `contents` and its item list, as a backup does before it writes
/// the manifest; returns the item list's chunks.
async fn stage(indexed: &Indexed, contents: &[u8]) -> Vec<ChunkId> {
    let writer = Arc::new(ChunkWriter::start(indexed).unwrap());
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
    let cdc = indexed.config().chunker;
    let mut tree = ContentWriter::new(
        writer.clone(),
        Chunking::ContentDefined(cdc),
        ChunkKind::Tree,
    );
    tree.write(&record.to_line()).await.unwrap();
    let (tree, _) = tree.finish().await.unwrap();
    writer.flush().await.unwrap();
    tree.into_iter().map(|(id, _)| id).collect()
}

fn manifest(source: &str, tree: Vec<ChunkId>, len: usize, hour: u32) -> SourceSnapshot {
    let time = chrono::DateTime::parse_from_rfc3339(&format!("2026-01-01T{hour:02}:00:00Z"))
        .unwrap()
        .to_utc();
    SourceSnapshot {
        version: 1,
        snapshot: new_snapshot_id(),
        time,
        hostname: "test".into(),
        username: "test".into(),
        tags: Vec::new(),
        source: source.into(),
        plugin: "test".into(),
        plugin_version: "0".into(),
        tree,
        items: 1,
        bytes: len as u64,
        annotations: Default::default(),
        duration_secs: 0.0,
        program: "test".into(),
    }
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

const NO_GRACE: PruneOptions = PruneOptions {
    grace: chrono::Duration::zero(),
    dry_run: false,
};

async fn forget_all(repo: &Arc<Repository>) {
    for (name, _) in repo.backend().list("snapshots/").await.unwrap() {
        repo.backend().delete(&name).await.unwrap();
    }
}

#[tokio::test]
async fn prunes_with_no_grace_never_delete_what_a_running_backup_depends_on() {
    let repo = memory::repository().await;
    let old = noise(5, 300_000);
    snapshot(&repo, "files", &old, 1).await;
    forget_all(&repo).await;

    // A backup starts while the forgotten snapshot's packs are still indexed: it reuses
    // them, and adds packs of its own that no snapshot references yet.
    let backup = Registration::register(&repo, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let indexed = repo.load_index_for_backup(&backup).await.unwrap();
    let mut contents = old.clone();
    contents.extend(noise(6, 300_000));
    let tree = stage(&indexed, &contents).await;

    for _ in 0..3 {
        let pruned = prune::run(&repo, &NO_GRACE).await.unwrap();
        assert_eq!(pruned.packs_deleted, 0, "{pruned:?}");
    }
    let held = prune::run(&repo, &NO_GRACE).await.unwrap();
    assert!(held.packs_waiting_for_backups > 0, "{held:?}");
    assert_eq!(
        held.blocking_backups,
        vec![format!("writers/{}", backup.run())]
    );

    backup.confirm().await.unwrap();
    repo.write_snapshot(&manifest("files", tree, contents.len(), 2))
        .await
        .unwrap();
    backup.confirm().await.unwrap();
    backup.release().await.unwrap();
    assert!(repo.backend().list("writers/").await.unwrap().is_empty());

    let checked = check_all(&repo).await;
    assert!(checked.ok(), "{checked:?}");
    // Once the backup has committed, prune sees that its snapshot needs every pack.
    for _ in 0..2 {
        let pruned = prune::run(&repo, &NO_GRACE).await.unwrap();
        assert_eq!(pruned.packs_deleted, 0, "{pruned:?}");
    }
    let checked = check_all(&repo).await;
    assert!(checked.ok(), "{checked:?}");
    assert_eq!(checked.snapshots, 1);
}

#[tokio::test]
async fn a_silent_backup_on_another_machine_is_evicted_and_cannot_commit() {
    let repo = memory::repository().await;
    snapshot(&repo, "files", &noise(7, 200_000), 1).await;
    forget_all(&repo).await;
    let backup = Registration::register(&repo, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let indexed = repo.load_index_for_backup(&backup).await.unwrap();
    let tree = stage(&indexed, &noise(7, 200_000)).await;
    backup.freeze_as_if_elsewhere().await;

    let first = prune::run(&repo, &NO_GRACE).await.unwrap();
    assert_eq!(
        first.writers_evicted,
        vec![format!("writers/{}", backup.run())]
    );
    let second = prune::run(&repo, &NO_GRACE).await.unwrap();
    assert!(
        second.packs_deleted > 0,
        "an evicted backup blocks nothing: {second:?}"
    );

    let refused = backup.confirm().await.unwrap_err().to_string();
    assert!(refused.contains("judged this backup"), "{refused}");
    assert!(refused.contains("run the backup again"), "{refused}");
    drop(tree);
}

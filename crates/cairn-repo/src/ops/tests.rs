//! The maintenance operations on a repository in memory: forget, then prune in its two
//! phases, then check, with no config and no binary.

use std::sync::Arc;

use bytes::Bytes;

use super::check::{self, CheckOptions};
use super::forget::{self, ForgetOptions};
use super::prune::{self, PruneOptions};
use super::repair;
use super::retention::Policy;
use crate::chunker::Chunking;
use crate::crypto::ChunkId;
use crate::pack::ChunkKind;
use crate::read::{ChunkReader, ItemStream};
use crate::snapshot::SourceSnapshot;
use crate::tree::ItemRecord;
use crate::write::{ChunkWriter, ContentWriter};
use crate::writers::{Registration, Role};
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
    stage_files(indexed, &[("file", contents)]).await
}

/// Stores `files` (path, contents) and their item list; returns the item list's chunks.
async fn stage_files(indexed: &Indexed, files: &[(&str, &[u8])]) -> Vec<ChunkId> {
    try_stage_files(indexed, files).await.unwrap()
}

async fn try_stage_files(
    indexed: &Indexed,
    files: &[(&str, &[u8])],
) -> crate::RepoResult<Vec<ChunkId>> {
    let writer = Arc::new(ChunkWriter::start(indexed)?);
    let cdc = indexed.config().chunker;
    let mut tree = ContentWriter::new(
        writer.clone(),
        Chunking::ContentDefined(cdc),
        ChunkKind::Tree,
    );
    for (inode, (path, contents)) in files.iter().enumerate() {
        let mut content =
            ContentWriter::new(writer.clone(), Chunking::Fixed(64 * 1024), ChunkKind::Data);
        content.write(contents).await?;
        let (chunks, _) = content.finish().await?;
        let record = ItemRecord {
            size: contents.len() as u64,
            inode: inode as u64 + 1,
            chunks,
            ..memory::file_item(path)
        };
        tree.write(&record.to_line()).await?;
    }
    let (tree, _) = tree.finish().await?;
    writer.flush().await?;
    Ok(tree.into_iter().map(|(id, _)| id).collect())
}

fn manifest(source: &str, tree: Vec<ChunkId>, len: usize, hour: u32) -> SourceSnapshot {
    let time = chrono::DateTime::parse_from_rfc3339(&format!("2026-01-01T{hour:02}:00:00Z"))
        .unwrap()
        .to_utc();
    SourceSnapshot {
        time,
        source: source.into(),
        bytes: len as u64,
        ..memory::manifest(tree, 1)
    }
}

/// A snapshot's item list, read whole.
async fn read_items(
    reader: &mut ChunkReader,
    manifest: &SourceSnapshot,
) -> crate::RepoResult<Vec<ItemRecord>> {
    let mut items = ItemStream::new(reader, manifest);
    let mut all = Vec::new();
    while let Some(item) = items.next().await? {
        all.push(item);
    }
    Ok(all)
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

    let forgotten = forget_all_but_the_newest(&repo).await;
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
async fn prunes_hold_one_lock_so_that_two_never_free_the_same_packs() {
    let repo = memory::repository().await;
    snapshot(&repo, "files", &noise(20, 300_000), 1).await;
    snapshot(&repo, "files", &noise(21, 300_000), 2).await;
    forget_all_but_the_newest(&repo).await;
    let now = PruneOptions {
        grace: chrono::Duration::zero(),
        dry_run: false,
    };

    // While another prune (or repair) holds the lock, a prune is refused, naming it, and
    // changes nothing; a dry run, which changes nothing either, still reports.
    let held = Registration::lock_maintenance(&repo, "prune")
        .await
        .unwrap();
    let refused = prune::run(&repo, &now).await.unwrap_err();
    assert!(matches!(refused, crate::RepoError::Busy(_)), "{refused}");
    assert!(
        refused
            .to_string()
            .contains(&format!("locks/{}", held.run())),
        "{refused}"
    );
    assert!(repo.prune_markers().await.unwrap().is_empty());
    let repair = repair::index(&repo, false).await.unwrap_err();
    assert!(matches!(repair, crate::RepoError::Busy(_)), "{repair}");
    let dry = prune::run(
        &repo,
        &PruneOptions {
            dry_run: true,
            ..now
        },
    )
    .await
    .unwrap();
    assert!(dry.packs_condemned >= 1, "{dry:?}");
    held.release().await.unwrap();

    // Two side by side: at most one of them frees the condemned packs.
    let condemned = prune::run(&repo, &now).await.unwrap().packs_condemned;
    assert!(condemned >= 1);
    let (a, b) = tokio::join!(prune::run(&repo, &now), prune::run(&repo, &now));
    let mut deleted: usize = [&a, &b]
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.packs_deleted)
        .sum();
    for result in [&a, &b] {
        if let Err(e) = result {
            assert!(matches!(e, crate::RepoError::Busy(_)), "{e}");
        }
    }
    // A lock a killed prune left on this machine does not stand in the way.
    Registration::leave_record_of_an_ended_run(&repo, Role::Maintenance).await;
    deleted += prune::run(&repo, &now).await.unwrap().packs_deleted;
    assert_eq!(deleted, condemned, "{a:?} {b:?}");
    assert!(repo.backend().list("locks/").await.unwrap().is_empty());
    let checked = check_all(&repo).await;
    assert!(checked.ok() && checked.warnings.is_empty(), "{checked:?}");
}

#[tokio::test]
async fn a_prune_killed_after_it_repacked_leaves_copies_the_next_prune_does_not_copy_again() {
    let repo = memory::repository().await;
    let keep = noise(22, 64 * 1024);
    let drop = noise(23, 640 * 1024);
    let both = stage_files(
        &repo.load_index().await.unwrap(),
        &[("keep", &keep), ("drop", &drop)],
    )
    .await;
    repo.write_snapshot(&manifest("files", both, keep.len() + drop.len(), 1))
        .await
        .unwrap();
    let one = stage_files(&repo.load_index().await.unwrap(), &[("keep", &keep)]).await;
    repo.write_snapshot(&manifest("files", one, keep.len(), 2))
        .await
        .unwrap();
    forget_all_but_the_newest(&repo).await;
    let now = PruneOptions {
        grace: chrono::Duration::zero(),
        dry_run: false,
    };
    let first = prune::run(&repo, &now).await.unwrap();
    assert_eq!(first.packs_repacked, 1, "{first:?}");
    assert!(first.bytes_repacked > 0, "{first:?}");
    // Killed before its marker landed: the repacked copy is indexed, the pack it copied
    // is not condemned.
    for (marker, _) in repo.prune_markers().await.unwrap() {
        repo.backend().delete(&marker).await.unwrap();
    }
    let packs = repo.backend().list("data/").await.unwrap().len();
    let again = prune::run(&repo, &now).await.unwrap();
    assert_eq!(again.packs_repacked, 1, "{again:?}");
    assert_eq!(again.bytes_repacked, 0, "copied again: {again:?}");
    assert_eq!(repo.backend().list("data/").await.unwrap().len(), packs);
    let last = prune::run(&repo, &now).await.unwrap();
    assert!(last.packs_deleted >= 1, "{last:?}");
    let checked = check_all(&repo).await;
    assert!(checked.ok() && checked.warnings.is_empty(), "{checked:?}");
    let indexed = repo.load_index().await.unwrap();
    let (_, newest) = repo.snapshots().await.unwrap().pop().unwrap();
    let restored = read_back(&indexed, &newest).await.unwrap();
    assert_eq!(restored, vec![("keep".to_string(), keep)]);
}

/// Forgets every snapshot but the newest of each source.
async fn forget_all_but_the_newest(repo: &Arc<Repository>) -> forget::ForgetReport {
    let keep_last = |_: &str| {
        let mut policy = Policy::default();
        policy.set_count("keep-last", 1, &mut Vec::new());
        Some((policy, Vec::new()))
    };
    let forgotten = forget::run(
        repo,
        &ForgetOptions {
            dry_run: false,
            sources: None,
            policy_of: &keep_last,
        },
    )
    .await
    .unwrap();
    assert!(forgotten.ok());
    forgotten
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

/// Flips one byte of the first pack (in its first chunk) and returns its name.
async fn damage_first_pack(repo: &Arc<Repository>) -> String {
    let (name, _) = repo.backend().list("data/").await.unwrap().remove(0);
    let mut bytes = repo.backend().get(&name).await.unwrap().to_vec();
    bytes[10] ^= 0xff;
    repo.backend()
        .put(&name, bytes.into(), false)
        .await
        .unwrap();
    name
}

#[tokio::test]
async fn repair_salvages_a_damaged_pack_and_rewrites_the_snapshot_without_what_is_lost() {
    let repo = memory::repository().await;
    let (a, b) = (noise(8, 300_000), noise(9, 300_000));
    let tree = stage_files(&repo.load_index().await.unwrap(), &[("a", &a), ("b", &b)]).await;
    let mut original = manifest("files", tree, a.len() + b.len(), 1);
    original.items = 2;
    repo.write_snapshot(&original).await.unwrap();
    let damaged = damage_first_pack(&repo).await;
    assert!(!check_all(&repo).await.ok());

    let dry = repair::packs(&repo, true, &|_| {}).await.unwrap();
    assert_eq!(dry.damaged.len(), 1, "{dry:?}");
    assert!(
        repo.backend().get(&damaged).await.is_ok(),
        "a dry run changed nothing"
    );

    let packs = repair::packs(&repo, false, &|_| {}).await.unwrap();
    assert_eq!(packs.damaged[0].pack, damaged);
    assert_eq!(packs.chunks_lost(), 1, "{packs:?}");
    assert!(packs.damaged[0].chunks_salvaged > 1, "{packs:?}");
    assert!(repo.backend().get(&damaged).await.is_err());
    let index = repair::index(&repo, false).await.unwrap();
    assert!(
        index.packs_adopted.is_empty() && index.packs_missing.is_empty(),
        "{index:?}"
    );

    let fixed = repair::snapshots(&repo, false).await.unwrap();
    assert_eq!(fixed.repaired.len(), 1, "{fixed:?}");
    assert_eq!(fixed.repaired[0].items_lost, ["a"]);
    assert!(!fixed.repaired[0].removed);
    let checked = check_all(&repo).await;
    assert!(checked.ok(), "{checked:?}");

    let snapshots = repo.snapshots().await.unwrap();
    assert_eq!(snapshots.len(), 1);
    let (_, rewritten) = &snapshots[0];
    assert_eq!(rewritten.snapshot, original.snapshot);
    assert_eq!(rewritten.tags, [repair::REPAIRED_TAG]);
    assert_eq!((rewritten.items, rewritten.bytes), (1, b.len() as u64));
    let indexed = repo.load_index().await.unwrap();
    let mut reader = ChunkReader::new(&indexed);
    let items = read_items(&mut reader, rewritten).await.unwrap();
    assert_eq!(items.len(), 1);
    let mut restored = Vec::new();
    for (id, _) in &items[0].chunks {
        restored.extend_from_slice(&reader.read(id).await.unwrap());
    }
    assert!(restored == b, "the intact file reads back whole");

    let again = repair::snapshots(&repo, false).await.unwrap();
    assert!(again.repaired.is_empty(), "repair is done once: {again:?}");
}

/// Uploads a pack holding one chunk of `contents` and indexes nothing, as a backup killed
/// between the two does.
async fn upload_unindexed(repo: &Repository, contents: &[u8]) -> (crate::pack::PackId, ChunkId) {
    let mut builder = crate::pack::PackBuilder::with_capacity(1 << 20);
    let id = repo.keys().chunk_id(contents);
    let sealed = crate::pack::ChunkEncoder::new(1)
        .unwrap()
        .encode(repo.keys(), &id, contents);
    builder.add(id, ChunkKind::Data, &sealed, contents.len() as u32);
    let (pack, bytes, _) = builder.finish(repo.keys());
    repo.backend()
        .put(&pack.object_name(), bytes, true)
        .await
        .unwrap();
    (pack, id)
}

#[tokio::test]
async fn the_backup_after_a_killed_one_adopts_its_packs_unless_another_may_be_running() {
    let repo = memory::repository().await;
    if crate::machine::this_process().is_none() {
        return; // no way to prove a run here ended
    }
    snapshot(&repo, "files", &noise(13, 100_000), 1).await;

    // A writer that may still be running: its fresh pack is its own to index.
    let (_, running_chunk) = upload_unindexed(&repo, &noise(14, 2000)).await;
    let running = Registration::register(&repo, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    Registration::leave_record_of_an_ended_run(&repo, Role::Writer).await;
    let backup = Registration::register(&repo, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert!(backup.follows_an_interrupted_run());
    let indexed = repo.load_index_for_backup(&backup).await.unwrap();
    assert!(!indexed.index().contains(&running_chunk));
    backup.release().await.unwrap();
    running.release().await.unwrap();

    // With only dead runs behind it, the next backup adopts, and nothing stays unindexed.
    Registration::leave_record_of_an_ended_run(&repo, Role::Writer).await;
    let (_, killed_chunk) = upload_unindexed(&repo, &noise(15, 2000)).await;
    let backup = Registration::register(&repo, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let indexed = repo.load_index_for_backup(&backup).await.unwrap();
    assert!(indexed.index().contains(&killed_chunk));
    assert!(indexed.index().contains(&running_chunk));
    backup.release().await.unwrap();
    let checked = check_all(&repo).await;
    assert!(checked.ok() && checked.warnings.is_empty(), "{checked:?}");

    // A backup that follows no interrupted run does not list the packs at all.
    let (_, later_chunk) = upload_unindexed(&repo, &noise(16, 2000)).await;
    let backup = Registration::register(&repo, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!backup.follows_an_interrupted_run());
    let indexed = repo.load_index_for_backup(&backup).await.unwrap();
    assert!(!indexed.index().contains(&later_chunk));
    backup.release().await.unwrap();
}

#[tokio::test]
async fn repair_index_replaces_a_damaged_index_file_and_adopts_unindexed_packs() {
    let repo = memory::repository().await;
    snapshot(&repo, "files", &noise(10, 200_000), 1).await;
    snapshot(&repo, "files", &noise(11, 200_000), 2).await;
    // A damaged index file, and a pack a killed backup left unindexed.
    let (index_file, _) = repo.backend().list("index/").await.unwrap().remove(0);
    repo.backend()
        .put(&index_file, Bytes::from_static(b"torn"), false)
        .await
        .unwrap();
    let (orphan_pack, _) = upload_unindexed(&repo, &noise(12, 1000)).await;
    assert!(!check_all(&repo).await.ok());

    let repaired = repair::index(&repo, false).await.unwrap();
    assert_eq!(repaired.index_files_removed.len(), 1, "{repaired:?}");
    assert_eq!(repaired.index_files_removed[0].object, index_file);
    assert!(
        repaired.packs_adopted.contains(&orphan_pack.object_name()),
        "{repaired:?}"
    );
    assert!(repaired.packs_adopted.len() >= 2, "{repaired:?}");
    let checked = check_all(&repo).await;
    assert!(checked.ok(), "{checked:?}");
    assert!(checked.warnings.is_empty(), "{checked:?}");
    assert_eq!(checked.snapshots, 2);
    let snapshots = repair::snapshots(&repo, false).await.unwrap();
    assert!(snapshots.repaired.is_empty(), "{snapshots:?}");
}

/// One backup as the binary runs it: registered, the index loaded without condemned
/// packs, data staged, confirmed, committed, released. Returns the snapshot id (its
/// manifest may exist even when the result is an error: the response was lost).
async fn try_backup(
    repo: &Arc<Repository>,
    files: &[(String, Vec<u8>)],
    minute: i64,
) -> (String, crate::RepoResult<()>) {
    let total = files.iter().map(|(_, c)| c.len()).sum();
    let mut manifest = manifest("files", Vec::new(), total, 0);
    manifest.time += chrono::Duration::minutes(minute);
    manifest.items = files.len() as u64;
    let id = manifest.snapshot.clone();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (p.as_str(), &c[..])).collect();
    let result = async {
        let registration = Registration::register(repo, std::time::Duration::from_secs(30)).await?;
        let outcome = async {
            let indexed = repo.load_index_for_backup(&registration).await?;
            manifest.tree = try_stage_files(&indexed, &files).await?;
            registration.confirm().await?;
            repo.write_snapshot(&manifest).await?;
            registration.confirm().await
        }
        .await;
        let released = registration.release().await;
        outcome.and(released)
    }
    .await;
    (id, result)
}

/// Reads every file of a snapshot back: path and contents.
async fn read_back(
    indexed: &Indexed,
    manifest: &SourceSnapshot,
) -> crate::RepoResult<Vec<(String, Vec<u8>)>> {
    let mut reader = ChunkReader::new(indexed);
    let mut files = Vec::new();
    for item in read_items(&mut reader, manifest).await? {
        let mut contents = Vec::new();
        for (id, _) in &item.chunks {
            contents.extend_from_slice(&reader.read(id).await?);
        }
        files.push((item.path, contents));
    }
    Ok(files)
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Randomised backups, forgets, prunes and restores over storage that fails as real
/// storage does (latency, transient errors, responses lost after success). The seed is
/// printed; `CAIRN_FAULT_SEED=N` replays a run, `CAIRN_FAULT_ROUNDS=N` makes it longer
/// (`bench/faults.sh` runs thousands). Every operation completes or fails cleanly, a
/// restore never returns a wrong byte, and once the faults stop, check reads every byte
/// clean and every snapshot that exists restores exactly what its backup staged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_injected_storage_faults_nothing_committed_is_lost_or_wrong() {
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;

    use crate::faults::{FaultRates, Faulty};

    let seed = env_number("CAIRN_FAULT_SEED").unwrap_or_else(rand::random);
    let rounds = env_number("CAIRN_FAULT_ROUNDS").unwrap_or(80);
    eprintln!("fault injection: seed {seed}, {rounds} rounds (CAIRN_FAULT_SEED={seed} replays)");
    let rates = FaultRates {
        transient: 0.01,
        lost_response: 0.01,
        latency: std::time::Duration::from_micros(300),
    };
    let faulty = Arc::new(Faulty::new(
        Arc::new(memory::Memory::default()),
        seed,
        rates,
    ));
    faulty.set_rates(None);
    let repo = Arc::new(
        Repository::init(faulty.clone(), b"test")
            .await
            .unwrap()
            .without_cache(),
    );
    faulty.set_rates(Some(rates));

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut staged: HashMap<String, Vec<(String, Vec<u8>)>> = HashMap::new();
    let mut contents: Vec<Vec<u8>> = Vec::new();
    let mut outcomes: HashMap<&str, (u32, u32)> = HashMap::new();
    let mut tally = |op: &'static str, ok: bool| {
        let entry = outcomes.entry(op).or_default();
        if ok { entry.0 += 1 } else { entry.1 += 1 }
    };
    for round in 0..rounds {
        match rng.random_range(0..10) {
            0..=4 => {
                // New data, and data earlier backups stored (deduplicated, perhaps in
                // packs a prune has condemned).
                let files: Vec<(String, Vec<u8>)> = (0..rng.random_range(1..4))
                    .map(|i| {
                        let reuse = !contents.is_empty() && rng.random_bool(0.4);
                        let data = match reuse {
                            true => contents[rng.random_range(0..contents.len())].clone(),
                            false => noise(rng.random(), rng.random_range(1_000..200_000)),
                        };
                        contents.push(data.clone());
                        (format!("f{i}"), data)
                    })
                    .collect();
                let (id, result) = try_backup(&repo, &files, round as i64).await;
                staged.insert(id, files);
                tally("backup", result.is_ok());
            }
            5 | 6 => {
                let keep = rng.random_range(1..4);
                let keep_last = move |_: &str| {
                    let mut policy = Policy::default();
                    policy.set_count("keep-last", keep, &mut Vec::new());
                    Some((policy, Vec::new()))
                };
                let options = ForgetOptions {
                    dry_run: false,
                    sources: None,
                    policy_of: &keep_last,
                };
                tally("forget", forget::run(&repo, &options).await.is_ok());
            }
            7 | 8 => tally("prune", prune::run(&repo, &NO_GRACE).await.is_ok()),
            _ => {
                let read = async {
                    let indexed = repo.load_index().await?;
                    let snapshots = repo.snapshots().await?;
                    let Some((_, manifest)) = snapshots.last() else {
                        return Ok(None);
                    };
                    Ok::<_, crate::RepoError>(Some((
                        manifest.snapshot.clone(),
                        read_back(&indexed, manifest).await?,
                    )))
                };
                let result = read.await;
                if let Ok(Some((id, files))) = &result {
                    assert!(
                        staged.get(id) == Some(files),
                        "seed {seed}: snapshot {id} read back wrong bytes"
                    );
                }
                tally("restore", result.is_ok());
            }
        }
    }

    faulty.set_rates(None);
    let checked = check_all(&repo).await;
    assert!(checked.ok(), "seed {seed}: {checked:?}");
    let indexed = repo.load_index().await.unwrap();
    let snapshots = repo.snapshots().await.unwrap();
    for (name, manifest) in &snapshots {
        let files = read_back(&indexed, manifest).await.unwrap();
        assert!(
            staged.get(&manifest.snapshot) == Some(&files),
            "seed {seed}: {name} does not restore what its backup staged"
        );
    }
    let counts = &faulty.counts;
    eprintln!(
        "fault injection: seed {seed}: {} storage operations, {} transient errors, {} lost responses; outcomes (ok, failed) {outcomes:?}; {} snapshots at the end, all restored identically, check clean",
        counts.operations.load(Ordering::Relaxed),
        counts.transient.load(Ordering::Relaxed),
        counts.lost_responses.load(Ordering::Relaxed),
        snapshots.len()
    );
}

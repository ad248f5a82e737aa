//! The repository: deduplicated, compressed, encrypted storage on any sink.
//!
//! Objects (see docs/FORMAT.md): `config`, `keys/<id>`, `data/<xx>/<pack id>`,
//! `index/<hash>`, `snapshots/<hash>`, `prune/<id>`, `writers/<run>` and `locks/<run>`
//! (see [`writers`]), `runs/<time>`. Everything except key slots is sealed with keys
//! derived from a master secret that key slots wrap. Writes go packs → index → snapshot
//! and every name is unique or content-addressed, so concurrent writers need no lock (only
//! prune and repair take one, against each other) and a crash at any point leaves a valid
//! repository.

pub mod backend;
pub mod cache;
pub mod changes;
pub mod chunker;
pub mod crypto;
pub mod duration;
#[cfg(test)]
mod faults;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod index;
pub mod keys;
pub mod known;
pub mod machine;
pub mod memory;
pub mod meta;
pub mod ops;
pub mod pack;
pub mod prune;
pub mod read;
pub mod snapshot;
pub mod tree;
pub mod write;
pub mod writers;

use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use backend::{Backend, BackendError, BackendErrorKind};
use cache::Cache;
use chunker::CdcParams;
use crypto::Keys;
use index::{Index, IndexFile};
use keys::KeySlot;
use meta::MetaKind;
use pack::PackId;
pub use prune::PruneMarker;
use snapshot::SourceSnapshot;

/// Where the objects of a repository live, besides `config` (see docs/FORMAT.md).
const OBJECT_PREFIXES: [&str; 8] = [
    "keys/",
    "data/",
    "index/",
    "snapshots/",
    "prune/",
    "writers/",
    "locks/",
    "runs/",
];

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("no repository at {0}; create one with `cairn init`")]
    NotInitialised(String),
    #[error("{0} already holds a repository")]
    AlreadyInitialised(String),
    /// Objects only cairn writes are there, but `config` is not: a damaged repository,
    /// which `init` must not write over (a new key slot beside old data opens nothing).
    #[error(
        "{at} holds cairn repository objects ({found}) but no `config`: the repository is damaged, and `cairn init` will not write over it; put `config` back from a copy of the repository (a bucket version, a replica), or point the config at an empty location for a new repository"
    )]
    ConfigMissing { at: String, found: String },
    #[error(
        "wrong password: none of the repository's {0} key slot(s) opens with it (check CAIRN_PASSWORD or --password-file)"
    )]
    WrongPassword(usize),
    #[error(
        "no key slot opens with this password: {intact} intact slot(s) refuse it, and {} is damaged (if the password was for that slot, it is lost: use another password, or restore the slot from a copy of the repository)",
        damaged.join(", ")
    )]
    KeySlotsDamaged { intact: usize, damaged: Vec<String> },
    #[error("repository data is damaged: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Another run holds what this one needs to itself (the maintenance lock).
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Other(String),
    /// What was being done when `cause` happened, printed before it. The cause is part
    /// of the message, not the `source()` chain: boxed, it would not downcast as a
    /// `RepoError`; match it to learn what kind of failure this is.
    #[error("{what}: {cause}")]
    Context { what: String, cause: Box<RepoError> },
}

impl RepoError {
    /// Prefixes what was being read to a corruption report.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        match self {
            RepoError::Corrupt(m) => RepoError::Corrupt(format!("{what}: {m}")),
            other => other,
        }
    }

    /// Says what was being done when this happened.
    /// Whether this says stored bytes are wrong (not that they could not be fetched).
    pub fn is_damage(&self) -> bool {
        match self {
            RepoError::Corrupt(_) => true,
            RepoError::Context { cause, .. } => cause.is_damage(),
            _ => false,
        }
    }

    pub fn within(self, what: impl Into<String>) -> Self {
        RepoError::Context {
            what: what.into(),
            cause: Box::new(self),
        }
    }
}

pub type RepoResult<T> = Result<T, RepoError>;

/// Repository-wide settings, sealed in the `config` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    pub version: u32,
    /// Random id, names the local cache directory.
    pub id: String,
    pub chunker: CdcParams,
    pub zstd_level: i32,
    /// Packs are closed once they reach this many bytes.
    pub pack_size: u32,
    pub created: chrono::DateTime<chrono::Utc>,
}

pub const FORMAT_VERSION: u32 = 1;

/// An open repository: keys unlocked, config read. Reading or writing chunks needs its
/// index too: [`Repository::load_index`] gives an [`Indexed`] handle, and the chunk readers
/// and writers take only that, so none can run on an index that was never loaded.
pub struct Repository {
    backend: Arc<dyn Backend>,
    keys: Keys,
    config: RepoConfig,
    cache: Option<Cache>,
    /// The key slot the password opened (`keys/<id>`).
    unlocked_slot: String,
}

impl Repository {
    /// Creates a repository on an empty backend.
    pub async fn init(backend: Arc<dyn Backend>, password: &[u8]) -> RepoResult<Repository> {
        match backend.get("config").await {
            Ok(_) => return Err(RepoError::AlreadyInitialised(backend.describe())),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        Self::refuse_leftovers(&*backend).await?;
        let keys = Keys::generate();
        let slot = KeySlot::new(&keys, password)?;
        let slot_name = format!("keys/{}", snapshot::new_snapshot_id());
        backend
            .put(&slot_name, slot.to_bytes().into(), true)
            .await?;
        let mut chunker = CdcParams::default_sizes();
        chunker.seed = chunker_seed(&keys);
        let config = RepoConfig {
            version: FORMAT_VERSION,
            id: snapshot::new_snapshot_id(),
            chunker,
            // Level 1 compresses within 2% of level 3 on typical data at 1.7x the speed.
            zstd_level: 1,
            pack_size: 16 * 1024 * 1024,
            created: chrono::Utc::now(),
        };
        let sealed = meta::seal(&keys, MetaKind::Config, &config);
        backend
            .put("config", sealed.into(), true)
            .await
            .map_err(|e| match e.kind {
                BackendErrorKind::AlreadyExists => {
                    RepoError::AlreadyInitialised(backend.describe())
                }
                _ => e.into(),
            })?;
        Ok(Repository::assemble(backend, keys, config, slot_name))
    }

    /// Opens a repository with a password.
    pub async fn open(backend: Arc<dyn Backend>, password: &[u8]) -> RepoResult<Repository> {
        let sealed_config = match backend.get("config").await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => {
                Self::refuse_leftovers(&*backend).await?;
                return Err(RepoError::NotInitialised(backend.describe()));
            }
            Err(e) => return Err(e.into()),
        };
        let mut unlocked = None;
        let (mut intact, mut damaged) = (0, Vec::new());
        for (name, slot) in Self::read_key_slots(&*backend).await? {
            // A damaged slot is skipped: another may open with this password.
            match slot.and_then(|slot| slot.unlock(password)) {
                Ok(Some(k)) => {
                    unlocked = Some((k, name));
                    break;
                }
                Ok(None) => intact += 1,
                Err(e) if e.is_damage() => {
                    tracing::warn!("key slot {name} is damaged ({e}); trying the others");
                    damaged.push(name);
                }
                Err(e) => return Err(e),
            }
        }
        let (keys, slot_name) = match unlocked {
            Some(found) => found,
            None if damaged.is_empty() => return Err(RepoError::WrongPassword(intact)),
            None => return Err(RepoError::KeySlotsDamaged { intact, damaged }),
        };
        let mut config: RepoConfig =
            meta::open(&keys, MetaKind::Config, &sealed_config).map_err(|e| e.context("config"))?;
        if config.version != FORMAT_VERSION {
            return Err(RepoError::Other(format!(
                "repository format version {} is not supported by this cairn (it reads version {FORMAT_VERSION})",
                config.version
            )));
        }
        config.chunker.seed = chunker_seed(&keys);
        Ok(Repository::assemble(backend, keys, config, slot_name))
    }

    /// Fails with [`RepoError::ConfigMissing`] if the location holds any object of a
    /// repository (there is no `config`, or this would not be asked).
    async fn refuse_leftovers(backend: &dyn Backend) -> RepoResult<()> {
        let mut found = Vec::new();
        for prefix in OBJECT_PREFIXES {
            let count = backend.list(prefix).await?.len();
            if count > 0 {
                found.push(format!("{count} under {prefix}"));
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        Err(RepoError::ConfigMissing {
            at: backend.describe(),
            found: found.join(", "),
        })
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        keys: Keys,
        config: RepoConfig,
        unlocked_slot: String,
    ) -> Repository {
        let cache = Cache::for_repository(&config.id);
        Repository {
            backend,
            keys,
            config,
            cache,
            unlocked_slot,
        }
    }

    /// The repository without its local cache, so tests leave nothing behind.
    pub fn without_cache(mut self) -> Repository {
        self.cache = None;
        self
    }

    pub fn unlocked_slot(&self) -> &str {
        &self.unlocked_slot
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Every key slot, each parsed or found damaged.
    async fn read_key_slots(
        backend: &dyn Backend,
    ) -> RepoResult<Vec<(String, RepoResult<KeySlot>)>> {
        let mut slots = Vec::new();
        for (name, _) in backend.list("keys/").await? {
            let bytes = backend.get(&name).await?;
            let slot = KeySlot::from_bytes(&bytes).map_err(|e| e.context(&name));
            slots.push((name, slot));
        }
        if slots.is_empty() {
            return Err(RepoError::Corrupt(
                "the repository has a config but no key slots".into(),
            ));
        }
        Ok(slots)
    }

    /// Every key slot, each parsed or found damaged.
    pub async fn key_slots(&self) -> RepoResult<Vec<(String, RepoResult<KeySlot>)>> {
        Self::read_key_slots(&*self.backend).await
    }

    pub async fn add_key(&self, password: &[u8]) -> RepoResult<String> {
        let slot = KeySlot::new(&self.keys, password)?;
        let name = format!("keys/{}", snapshot::new_snapshot_id());
        self.backend
            .put(&name, slot.to_bytes().into(), true)
            .await?;
        Ok(name)
    }

    /// Fetches a content-addressed metadata object, through the local cache.
    async fn fetch_cached(&self, name: &str) -> RepoResult<bytes::Bytes> {
        if let Some(bytes) = self.cache.as_ref().and_then(|c| c.get(name)) {
            return Ok(bytes);
        }
        let bytes = self.backend.get(name).await?;
        if let Some(cache) = &self.cache {
            cache.put(name, &bytes);
        }
        Ok(bytes)
    }

    /// Names of the index files, with their sizes.
    pub async fn index_files(&self) -> RepoResult<Vec<(String, u64)>> {
        Ok(self.backend.list("index/").await?)
    }

    pub async fn read_index_file(&self, name: &str) -> RepoResult<IndexFile> {
        let sealed = self.fetch_cached(name).await?;
        meta::open(&self.keys, MetaKind::Index, &sealed).map_err(|e| e.context(name))
    }

    /// Loads every index file (from the local cache where possible); fails if any is
    /// damaged. For what must see all the repository holds (prune).
    pub async fn load_index(self: &Arc<Self>) -> RepoResult<Indexed> {
        self.index_of(Damage::Fail).await
    }

    /// Loads the index files that are intact, skipping (and naming, as warnings) those
    /// that fail authentication or do not decode: a backup then stores their chunks
    /// again, and a restore reads every snapshot whose chunks are indexed elsewhere.
    pub async fn load_readable_index(self: &Arc<Self>) -> RepoResult<Indexed> {
        self.index_of(Damage::Skip).await
    }

    async fn index_of(self: &Arc<Self>, damage: Damage) -> RepoResult<Indexed> {
        let names = self.index_files().await?;
        if let Some(cache) = &self.cache {
            cache.retain("index/", names.iter().map(|(n, _)| n.as_str()));
        }
        let files: Vec<(String, RepoResult<IndexFile>)> = futures::stream::iter(
            names
                .iter()
                .map(|(name, _)| async move { (name.clone(), self.read_index_file(name).await) }),
        )
        .buffer_unordered(8)
        .collect()
        .await;
        let mut index = Index::default();
        for (name, file) in files {
            let added = file.and_then(|file| index.add_file(&file));
            if let Err(err) = damage.sort(added)? {
                damaged_warning(
                    &err,
                    &format!(
                        "{name} is skipped: backups store its chunks again, and snapshots that need them cannot be restored"
                    ),
                );
            }
        }
        Ok(Indexed {
            repo: self.clone(),
            index: Arc::new(index),
        })
    }

    /// Prune markers: packs the first phase of a prune condemned, with when.
    pub async fn prune_markers(&self) -> RepoResult<Vec<(String, PruneMarker)>> {
        let mut markers = Vec::new();
        for (name, _) in self.backend.list("prune/").await? {
            let sealed = self.backend.get(&name).await?;
            let marker: PruneMarker =
                meta::open(&self.keys, MetaKind::Prune, &sealed).map_err(|e| e.context(&name))?;
            markers.push((name, marker));
        }
        Ok(markers)
    }

    /// Loads the index for a backup: without the chunks of condemned packs, so nothing
    /// new comes to depend on a pack a prune is about to delete. The markers are listed
    /// (and recorded in the backup's registration) before the index is read: a prune that
    /// deletes a marker's packs has rewritten the index first, so a marker this backup
    /// does not see cannot name a pack its index still holds (see [`writers`]).
    pub async fn load_index_for_backup(
        self: &Arc<Self>,
        registration: &writers::Registration,
    ) -> RepoResult<Indexed> {
        let markers = self.prune_markers().await?;
        registration
            .saw_markers(markers.iter().map(|(name, _)| name.clone()).collect())
            .await?;
        let mut indexed = self.load_readable_index().await?;
        let condemned: std::collections::HashSet<PackId> = markers
            .iter()
            .flat_map(|(_, m)| m.packs.iter())
            .filter_map(|p| PackId::from_hex(p).ok())
            .collect();
        // Reuse is an optimisation: a backup that cannot adopt uploads the chunks again.
        match ops::adopt::after_interrupted_run(self, registration, &indexed.index, &condemned)
            .await
        {
            Ok(adopted) if adopted.packs > 0 => {
                tracing::info!(
                    "adopted {} pack(s), {} bytes, that an interrupted backup left unindexed: their chunks are reused",
                    adopted.packs,
                    adopted.bytes
                );
                indexed = self.load_readable_index().await?;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                "packs an interrupted backup left are not reused (`cairn repair index` adopts them): {e}"
            ),
        }
        if condemned.is_empty() {
            return Ok(indexed);
        }
        Ok(Indexed {
            index: Arc::new(indexed.index.without_packs(&condemned)),
            repo: indexed.repo,
        })
    }

    /// Every snapshot manifest, oldest first (by `seq`, then time); fails if any is damaged. For what must see
    /// every snapshot (prune, retention).
    pub async fn snapshots(&self) -> RepoResult<Vec<(String, SourceSnapshot)>> {
        self.snapshots_of(Damage::Fail).await
    }

    /// The snapshot manifests that are intact, oldest first, skipping (and naming, as
    /// warnings) those that fail authentication or do not decode.
    pub async fn readable_snapshots(&self) -> RepoResult<Vec<(String, SourceSnapshot)>> {
        self.snapshots_of(Damage::Skip).await
    }

    async fn snapshots_of(&self, damage: Damage) -> RepoResult<Vec<(String, SourceSnapshot)>> {
        let names = self.backend.list("snapshots/").await?;
        if let Some(cache) = &self.cache {
            cache.retain("snapshots/", names.iter().map(|(n, _)| n.as_str()));
        }
        let read: Vec<(String, RepoResult<SourceSnapshot>)> =
            futures::stream::iter(names.into_iter().map(|(name, _)| async move {
                let manifest = match self.fetch_cached(&name).await {
                    Ok(sealed) => meta::open(&self.keys, MetaKind::Snapshot, &sealed)
                        .map_err(|e| e.context(&name)),
                    Err(e) => Err(e),
                };
                (name, manifest)
            }))
            .buffer_unordered(8)
            .collect()
            .await;
        let mut manifests = Vec::new();
        for (name, manifest) in read {
            match damage.sort(manifest)? {
                Ok(manifest) => manifests.push((name, manifest)),
                Err(err) => damaged_warning(&err, &format!("snapshot {name} is left out")),
            }
        }
        // The order of writes first: a snapshot from a host whose clock is behind is
        // still newer than every snapshot its run saw.
        manifests.sort_by(|a: &(String, SourceSnapshot), b| {
            (a.1.seq, a.1.time, &a.1.source).cmp(&(b.1.seq, b.1.time, &b.1.source))
        });
        Ok(manifests)
    }

    /// Stores an index file (after every pack it names has landed); returns its name.
    pub async fn write_index_file(&self, file: &IndexFile) -> RepoResult<String> {
        let sealed = meta::seal(&self.keys, MetaKind::Index, file);
        let name = meta::content_name("index", &sealed);
        self.put_content_addressed(&name, sealed.into()).await?;
        Ok(name)
    }

    /// Stores a manifest; the snapshot exists from this moment.
    pub async fn write_snapshot(&self, manifest: &SourceSnapshot) -> RepoResult<String> {
        let sealed = meta::seal(&self.keys, MetaKind::Snapshot, manifest);
        let name = meta::content_name("snapshots", &sealed);
        self.put_content_addressed(&name, sealed.into()).await?;
        Ok(name)
    }

    /// Stores an object named by its content, create-only. Finding it there already is
    /// success: same name, same bytes (an interrupted run, or another writer, put it).
    pub async fn put_content_addressed(&self, name: &str, bytes: bytes::Bytes) -> RepoResult<()> {
        match self.backend.put(name, bytes, true).await {
            Err(e) if e.kind != BackendErrorKind::AlreadyExists => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The manifests of the snapshot whose id starts with `id` (or the newest for `latest`),
    /// optionally only the named source.
    pub async fn find_snapshot(
        &self,
        id: &str,
        source: Option<&str>,
    ) -> RepoResult<Vec<(String, SourceSnapshot)>> {
        let all = self.readable_snapshots().await?;
        let all: Vec<_> = all
            .into_iter()
            .filter(|(_, m)| source.is_none_or(|s| m.source == s))
            .collect();
        let wanted = if id == "latest" {
            match all.last() {
                Some((_, m)) => m.snapshot.clone(),
                None => {
                    return Err(RepoError::Other(match source {
                        Some(s) => format!("the repository has no snapshot of source `{s}`"),
                        None => "the repository has no snapshots yet; run `cairn backup`".into(),
                    }));
                }
            }
        } else {
            let mut ids: Vec<&str> = all
                .iter()
                .map(|(_, m)| m.snapshot.as_str())
                .filter(|s| s.starts_with(id))
                .collect();
            ids.dedup();
            ids.sort();
            ids.dedup();
            match ids.as_slice() {
                [one] => one.to_string(),
                [] => {
                    return Err(RepoError::Other(format!(
                        "no snapshot {id}{}",
                        source
                            .map(|s| format!(" of source `{s}`"))
                            .unwrap_or_default()
                    )));
                }
                many => {
                    return Err(RepoError::Other(format!(
                        "snapshot id {id} is ambiguous: it matches {}",
                        many.join(", ")
                    )));
                }
            }
        };
        Ok(all
            .into_iter()
            .filter(|(_, m)| m.snapshot == wanted)
            .collect())
    }
}

/// A repository and the index it was loaded with (see [`Repository::load_index`]).
#[derive(Clone)]
pub struct Indexed {
    repo: Arc<Repository>,
    index: Arc<Index>,
}

impl Indexed {
    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }
}

impl std::ops::Deref for Indexed {
    type Target = Repository;

    fn deref(&self) -> &Repository {
        &self.repo
    }
}

/// What a reader does with an object that fails authentication or does not decode.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Fail,
    Skip,
}

impl Damage {
    /// `Err` to fail with; `Ok(Err)` for a damaged object to skip; `Ok(Ok)` for one intact.
    /// Storage errors always fail: an object that could not be fetched is not damaged.
    fn sort<T>(self, read: RepoResult<T>) -> RepoResult<RepoResult<T>> {
        match read {
            Ok(value) => Ok(Ok(value)),
            Err(e) if matches!(self, Damage::Skip) && e.is_damage() => Ok(Err(e)),
            Err(e) => Err(e),
        }
    }
}

fn damaged_warning(err: &RepoError, consequence: &str) {
    tracing::warn!("{err}; {consequence} (`cairn check` lists all damage)");
}

fn chunker_seed(keys: &Keys) -> u64 {
    let k = keys.derive("cairn 2026-11 chunker seed");
    u64::from_le_bytes(k[..8].try_into().expect("8 bytes"))
}

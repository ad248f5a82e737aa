//! What one plugin instance's store holds: its WASI context (preopens for its granted
//! directories only, no network), its resource table, its memory limit, its grants, and the
//! backup or restore session it is working in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

pub use crate::capabilities::host::ProgressHook;
use crate::capabilities::sqlite::StoreAheadHandover;
use crate::errors::{denied, io_error};
use crate::pipeline::capture::Capture;
use crate::pipeline::replay::Replay;
use crate::plugin_api::PluginError;
use crate::sandbox::grants::{Grants, Resolved};

pub struct PluginState {
    pub plugin: String,
    wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub grants: Arc<Grants>,
    roots: HashMap<PathBuf, Arc<cap_std::fs::Dir>>,
    /// When the current call must have returned; checked on every epoch tick.
    pub deadline: Instant,
    /// How long the current call may take: a following source's call gets it anew each
    /// time it waits for the next sync.
    pub budget: std::time::Duration,
    pub capture: Option<Capture>,
    pub replay: Option<Replay>,
    /// Where a following source's chains go, during `follow`.
    pub chain: Option<Box<dyn crate::pipeline::follow::ChainStore>>,
    /// The segments an `apply` reads.
    pub changes_in: Option<Box<dyn crate::pipeline::follow::ChangeSource>>,
    pub progress: Option<ProgressHook>,
    /// Files handed over with `write-options.deferred`, being written.
    pub deferred: crate::capabilities::files::deferred::DeferredWrites,
}

impl PluginState {
    pub fn new(plugin: &str, grants: Arc<Grants>, memory_limit: usize) -> PluginState {
        let mut wasi = WasiCtx::builder();
        // No inherited environment, arguments, network or stdin. Plugin stdout/stderr are
        // discarded: plugins talk through `host.log`, which tags messages with their name.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        // Plugin file I/O runs on the calling thread, as the host's own native reads do,
        // rather than being handed to the blocking pool one read at a time.
        wasi.allow_blocking_current_thread(true);
        if !grants.hosts.is_empty() {
            let allowed = Arc::new(crate::sandbox::network::resolve(&grants.hosts));
            wasi.allow_tcp(true).allow_ip_name_lookup(true);
            wasi.socket_addr_check(move |addr, usage| {
                let ok = crate::sandbox::network::permitted(&allowed, addr, usage);
                Box::pin(async move { ok })
            });
        }
        for grant in &grants.paths {
            // A writable grant is somewhere the plugin will create things (a repository, a
            // restore target): it exists from the start, so it can be preopened.
            if grant.write && !grant.path.exists() {
                let _ = std::fs::create_dir_all(&grant.path);
            }
            if !grant.path.is_dir() {
                continue;
            }
            let perms = if grant.write {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            if let Err(e) = wasi.preopened_dir(&grant.path, grant.path.to_string_lossy(), perms) {
                tracing::warn!(plugin, "could not preopen {}: {e}", grant.path.display());
            }
        }
        PluginState {
            plugin: plugin.to_string(),
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .instances(16)
                .trap_on_grow_failure(true)
                .build(),
            grants,
            roots: HashMap::new(),
            deadline: Instant::now(),
            budget: std::time::Duration::ZERO,
            capture: None,
            replay: None,
            chain: None,
            changes_in: None,
            progress: None,
            deferred: Default::default(),
        }
    }

    /// Resolves a guest path through the grants and opens the grant's root directory.
    pub fn resolve(
        &mut self,
        guest_path: &str,
        write: bool,
    ) -> Result<(Arc<cap_std::fs::Dir>, Resolved), PluginError> {
        let mut resolved = self.grants.resolve(guest_path, write).map_err(denied)?;
        // A grant of one file (a database): reach it through its directory, by name only.
        if resolved.relative.as_os_str().is_empty()
            && resolved.root.is_file()
            && let (Some(parent), Some(name)) = (resolved.root.parent(), resolved.root.file_name())
        {
            resolved.relative = name.into();
            resolved.root = parent.to_path_buf();
        }
        let root = match self.roots.get(&resolved.root) {
            Some(dir) => dir.clone(),
            None => {
                if write {
                    std::fs::create_dir_all(&resolved.root)
                        .map_err(|e| io_error(&resolved.root.to_string_lossy(), e))?;
                }
                let dir = cap_std::fs::Dir::open_ambient_dir(
                    &resolved.root,
                    cap_std::ambient_authority(),
                )
                .map_err(|e| io_error(&resolved.root.to_string_lossy(), e))?;
                let dir = Arc::new(dir);
                self.roots.insert(resolved.root.clone(), dir.clone());
                dir
            }
        };
        Ok((root, resolved))
    }
}

impl PluginState {
    /// Hands a resource a host call made to the plugin, or passes the call's error on.
    pub fn push_made<T: Send + 'static>(
        &mut self,
        made: Result<T, PluginError>,
    ) -> wasmtime::Result<Result<wasmtime::component::Resource<T>, PluginError>> {
        Ok(match made {
            Ok(value) => Ok(self.table.push(value)?),
            Err(e) => Err(e),
        })
    }
}

impl PluginState {
    /// The backup this instance is taking, as the `sqlite` capability sees it.
    pub fn store_ahead_handover(&mut self) -> Option<&mut dyn StoreAheadHandover> {
        self.capture
            .as_mut()
            .map(|capture| capture as &mut dyn StoreAheadHandover)
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

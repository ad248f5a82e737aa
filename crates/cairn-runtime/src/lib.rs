//! The plugin runtime: one wasmtime engine, a compiled-component cache, and sandboxed
//! instances of source and sink plugins.
//!
//! Built-in plugins and third-party `.wasm` files take exactly the same path: compile (or
//! load from cache), check the WIT version, instantiate in a store with the plugin's
//! grants, a memory limit and a deadline. A trap, a timeout or running out of memory fails
//! that call with an error naming the plugin; the process and other plugins carry on.

pub mod capabilities;
pub mod engine;
pub mod errors;
pub mod parallel;
pub mod pipeline;
pub mod plugin_api;
pub mod sandbox;
pub mod sink;
pub mod sink_faults;
pub mod source;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Store, UpdateDeadline};

/// The repository format, under the name the host uses for it.
use cairn_repo as repo;

use engine::{CompiledCache, EpochTicker};
pub use plugin_api::version::{WIT_PACKAGE, WIT_VERSION, supports};
pub use plugin_api::{PluginError, PluginInfo, PluginKind};
use sandbox::grants::Grants;
use state::PluginState;

/// Default memory a plugin instance may use.
pub const DEFAULT_MEMORY_LIMIT: usize = 512 * 1024 * 1024;

/// How long quick calls (info, validate, open) may take.
pub const QUICK_CALL: Duration = Duration::from_secs(60);

pub struct RuntimeOptions {
    pub memory_limit: usize,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// The plugins a config may name without a path: the binary's catalog.
    pub builtins: &'static [Builtin],
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            memory_limit: DEFAULT_MEMORY_LIMIT,
            cache_dir: engine::default_cache_dir(),
            builtins: &[],
        }
    }
}

pub struct Runtime {
    engine: wasmtime::Engine,
    source_linker: Linker<PluginState>,
    sink_linker: Linker<PluginState>,
    compiled: Option<CompiledCache>,
    memory_limit: usize,
    builtins: &'static [Builtin],
    _ticker: EpochTicker,
}

/// A plugin compiled into the binary, loaded by name through exactly the same path as a
/// third-party `.wasm` file.
pub struct Builtin {
    pub name: &'static str,
    pub kind: PluginKind,
    pub wasm: &'static [u8],
    /// For a preset of a plugin built in under several names (`r2` and `b2` are the `s3`
    /// sink): the `provider` option this name sets.
    pub provider: Option<&'static str>,
}

/// Whether a plugin spec that names no built-in names a `.wasm` file.
pub fn looks_like_path(spec: &str) -> bool {
    spec.ends_with(".wasm") || spec.contains('/')
}

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin => f.write_str("built-in"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A compiled plugin, not yet instantiated.
pub struct Plugin {
    /// How the config named it: a built-in name or a path.
    pub spec: String,
    pub origin: Origin,
    pub kind: PluginKind,
    pub wit_version: String,
    /// Whether the compiled code came from the cache.
    pub cached: bool,
    component: Component,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "unknown plugin `{spec}`: it is neither a built-in ({builtins}) nor a path to a .wasm file"
    )]
    Unknown { spec: String, builtins: String },
    #[error("cannot read plugin {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not a valid WebAssembly component: {message}")]
    Invalid { path: String, message: String },
    #[error(
        "plugin {path} was built for {WIT_PACKAGE}@{found}, but this cairn supports {WIT_PACKAGE}@{WIT_VERSION}: rebuild it against cairn-sdk for WIT {WIT_VERSION}"
    )]
    WrongVersion { path: String, found: String },
    #[error(
        "{path} exports neither {WIT_PACKAGE}/source nor {WIT_PACKAGE}/sink: it is not a cairn plugin"
    )]
    NotAPlugin { path: String },
    #[error("plugin `{spec}` is a {found} plugin, but it is configured as a {wanted}")]
    WrongKind {
        spec: String,
        found: PluginKind,
        wanted: PluginKind,
    },
}

/// Why a plugin call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin `{plugin}` crashed (trap): {message}")]
    Trap { plugin: String, message: String },
    #[error("plugin `{plugin}` did not finish within {}s and was stopped", after.as_secs())]
    Timeout { plugin: String, after: Duration },
    #[error("plugin `{plugin}` exceeded its memory limit of {limit_mib} MiB and was stopped")]
    OutOfMemory { plugin: String, limit_mib: usize },
    #[error("plugin `{plugin}`: {}", plugin_api::describe(error))]
    Failed { plugin: String, error: PluginError },
    #[error("plugin `{plugin}` could not start: {message}")]
    Instantiate { plugin: String, message: String },
    /// The snapshot's item list could not be read to its end while the plugin read it.
    #[error(
        "reading the snapshot's item list for plugin `{plugin}`: {message} (`cairn check` names the damage)"
    )]
    ItemList { plugin: String, message: String },
}

impl CallError {
    /// The plugin's own error, when the call returned one (rather than crashing).
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match self {
            CallError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Raised by the epoch callback when a call passes its deadline.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

impl Runtime {
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Runtime> {
        let engine = engine::new_engine()?;
        let mut source_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut source_linker)?;
        plugin_api::source::SourcePlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut source_linker,
            |s| s,
        )?;
        // Continuous capture: only the following world imports it, harmless to others.
        plugin_api::following::cairn::plugin::change_io::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut source_linker, |s| s)?;
        let mut sink_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut sink_linker)?;
        plugin_api::sink::SinkPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut sink_linker,
            |s| s,
        )?;
        let compiled = match &options.cache_dir {
            Some(dir) => match CompiledCache::open(dir) {
                Ok(cache) => Some(cache),
                Err(e) => {
                    tracing::warn!("compiled plugins will not be cached: {e:#}");
                    None
                }
            },
            None => None,
        };
        let ticker = EpochTicker::start(&engine);
        Ok(Runtime {
            engine,
            source_linker,
            sink_linker,
            compiled,
            memory_limit: options.memory_limit,
            builtins: options.builtins,
            _ticker: ticker,
        })
    }

    pub fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// Loads a built-in by name, or a `.wasm` file by path.
    pub fn load(&self, spec: &str) -> Result<Plugin, LoadError> {
        let builtin = self.builtins.iter().find(|b| b.name == spec);
        let (wasm, origin): (std::borrow::Cow<'static, [u8]>, Origin) = match builtin {
            Some(b) => (b.wasm.into(), Origin::Builtin),
            None if looks_like_path(spec) => {
                let bytes = std::fs::read(spec).map_err(|e| LoadError::Read {
                    path: spec.to_string(),
                    message: e.to_string(),
                })?;
                (bytes.into(), Origin::File(PathBuf::from(spec)))
            }
            None => {
                let names: Vec<&str> = self.builtins.iter().map(|b| b.name).collect();
                return Err(LoadError::Unknown {
                    spec: spec.to_string(),
                    builtins: names.join(", "),
                });
            }
        };
        self.load_bytes(spec, &wasm, origin)
    }

    pub fn load_bytes(&self, spec: &str, wasm: &[u8], origin: Origin) -> Result<Plugin, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: spec.to_string(),
            message: format!("{e:#}"),
        };
        if !wasmparser_is_component(wasm) {
            return Err(LoadError::Invalid {
                path: spec.to_string(),
                message: "this is a core module or not WebAssembly at all; build plugins for the wasm32-wasip2 target".into(),
            });
        }
        let (component, cached) = match &self.compiled {
            Some(cache) => cache
                .load(&self.engine, wasm)
                .map_err(|e| LoadError::Invalid {
                    path: spec.to_string(),
                    message: format!("{e:#}"),
                })?,
            None => (Component::new(&self.engine, wasm).map_err(invalid)?, false),
        };
        let (kind, wit_version) = plugin_kind(&self.engine, &component, spec)?;
        Ok(Plugin {
            spec: spec.to_string(),
            origin,
            kind,
            wit_version,
            cached,
            component,
        })
    }

    fn new_store(&self, plugin: &str, grants: Arc<Grants>) -> Store<PluginState> {
        let mut store = Store::new(
            &self.engine,
            PluginState::new(plugin, grants, self.memory_limit),
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                // Yield at every tick so other tasks run while a plugin computes.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Asks a plugin for its info (instantiating it with no grants).
    pub async fn describe(&self, plugin: &Plugin) -> Result<PluginInfo, CallError> {
        match plugin.kind {
            PluginKind::Source => {
                self.instantiate_source(plugin, &plugin.spec, Arc::new(Grants::default()))
                    .await?
                    .info()
                    .await
            }
            PluginKind::Sink => sink::SinkInstance::info_of(self, plugin).await,
        }
    }
}

fn wasmparser_is_component(wasm: &[u8]) -> bool {
    // A component's preamble: magic, then version 0x0d with layer 1.
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[6..8] == [0x01, 0x00]
}

/// Finds which world a component implements, and refuses other WIT versions.
fn plugin_kind(
    engine: &wasmtime::Engine,
    component: &Component,
    spec: &str,
) -> Result<(PluginKind, String), LoadError> {
    for (name, _) in component.component_type().exports(engine) {
        let Some(rest) = name.strip_prefix(&format!("{WIT_PACKAGE}/")) else {
            continue;
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let kind = match iface {
            "source" => PluginKind::Source,
            "sink" => PluginKind::Sink,
            _ => continue,
        };
        if !supports(version) {
            return Err(LoadError::WrongVersion {
                path: spec.to_string(),
                found: version.to_string(),
            });
        }
        return Ok((kind, version.to_string()));
    }
    Err(LoadError::NotAPlugin {
        path: spec.to_string(),
    })
}

/// Arms the deadline for one call.
fn arm(store: &mut Store<PluginState>, timeout: Duration) {
    store.data_mut().deadline = Instant::now() + timeout;
    store.data_mut().budget = timeout;
    store.set_epoch_deadline(1);
}

/// Turns the outcome of a guarded call into the plugin's result or a [`CallError`].
fn settle<T>(
    plugin: &str,
    memory_limit: usize,
    timeout: Duration,
    outcome: Result<wasmtime::Result<Result<T, PluginError>>, tokio::time::error::Elapsed>,
) -> Result<T, CallError> {
    match outcome {
        Err(_) => Err(CallError::Timeout {
            plugin: plugin.to_string(),
            after: timeout,
        }),
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(error))) => Err(CallError::Failed {
            plugin: plugin.to_string(),
            error,
        }),
        Ok(Err(trap)) => Err(classify_trap(plugin, memory_limit, timeout, trap)),
    }
}

/// A call's outcome once its deferred writes are done: a write that failed fails a call
/// that had succeeded.
fn with_deferred<T>(
    plugin: &str,
    settled: Result<T, CallError>,
    deferred: Result<(), PluginError>,
) -> Result<T, CallError> {
    match (settled, deferred) {
        (Ok(_), Err(error)) => Err(CallError::Failed {
            plugin: plugin.to_string(),
            error,
        }),
        (Err(e), Err(lost)) => {
            tracing::warn!(
                plugin,
                "a deferred write also failed: {}",
                plugin_api::describe(&lost)
            );
            Err(e)
        }
        (settled, Ok(())) => settled,
    }
}

fn classify_trap(
    plugin: &str,
    memory_limit: usize,
    timeout: Duration,
    trap: wasmtime::Error,
) -> CallError {
    let text = format!("{trap:?}");
    if trap.downcast_ref::<DeadlineExceeded>().is_some() || text.contains("deadline exceeded") {
        return CallError::Timeout {
            plugin: plugin.to_string(),
            after: timeout,
        };
    }
    if text.contains("forcing trap when growing memory") {
        return CallError::OutOfMemory {
            plugin: plugin.to_string(),
            limit_mib: memory_limit / (1024 * 1024),
        };
    }
    // The first lines name the trap and where in the plugin it happened.
    let message: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .collect();
    CallError::Trap {
        plugin: plugin.to_string(),
        message: message.join("\n    "),
    }
}

/// Runs one guarded call: `$call` is an expression using `$store` mutably.
macro_rules! guarded {
    ($store:expr, $plugin:expr, $limit:expr, $timeout:expr, $call:expr) => {{
        let timeout: std::time::Duration = $timeout;
        $crate::arm($store, timeout);
        // The epoch deadline stops a plugin that computes; this stops one blocked in a
        // host call. The grace lets the epoch report first when both apply.
        let outcome =
            tokio::time::timeout(timeout + std::time::Duration::from_secs(2), $call).await;
        let settled = $crate::settle($plugin, $limit, timeout, outcome);
        // Files the plugin handed over must be written before its call counts as done.
        let deferred = $store.data_mut().deferred.flush().await;
        $crate::with_deferred($plugin, settled, deferred)
    }};
}
pub(crate) use guarded;

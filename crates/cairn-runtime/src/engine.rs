//! The one wasmtime `Engine`, the epoch ticker that enforces wall-clock deadlines, and the
//! on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes a second or more; loading a cached one takes
//! milliseconds. Cache entries are keyed by the component's BLAKE3 hash and the engine's
//! compatibility hash, and carry a MAC keyed by a secret only this host's cache directory
//! holds, so the host only ever deserializes machine code it wrote itself.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the epoch advances: the granularity of deadlines and of cooperative yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

pub fn new_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    Ok(Engine::new(&config)?)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("cairn-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub struct CompiledCache {
    dir: PathBuf,
    secret: [u8; 32],
}

const MAC_LEN: usize = 32;

impl CompiledCache {
    /// Opens (creating, private to this user) the cache directory.
    pub fn open(dir: &Path) -> anyhow::Result<CompiledCache> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the compiled-plugin cache {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private to this user", dir.display()))?;
        let secret_path = dir.join("secret");
        let secret = match std::fs::read(&secret_path) {
            Ok(bytes) if bytes.len() == 32 => bytes.try_into().expect("32 bytes"),
            _ => {
                let secret: [u8; 32] = rand::random();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&secret_path)
                    .with_context(|| format!("writing {}", secret_path.display()))?;
                file.write_all(&secret)?;
                secret
            }
        };
        Ok(CompiledCache {
            dir: dir.to_path_buf(),
            secret,
        })
    }

    fn key(engine: &Engine, wasm: &[u8]) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{}-{:016x}", blake3::hash(wasm).to_hex(), hasher.finish())
    }

    /// Binds the code to the entry's name as well as to this host: an entry copied or
    /// renamed to another plugin's name (a swapped file) fails the check and is compiled
    /// again, rather than loading one plugin as another.
    fn mac(&self, key: &str, code: &[u8]) -> [u8; MAC_LEN] {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        hasher.update(&(key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        hasher.update(code);
        *hasher.finalize().as_bytes()
    }

    /// The compiled component, from the cache when a valid entry exists.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> anyhow::Result<(Component, bool)> {
        let key = Self::key(engine, wasm);
        let path = self.dir.join(format!("{key}.cwasm"));
        if let Ok(bytes) = std::fs::read(&path) {
            let valid =
                bytes.len() > MAC_LEN && bytes[..MAC_LEN] == self.mac(&key, &bytes[MAC_LEN..]);
            // SAFETY: the MAC proves this host wrote these bytes under this name with
            // `Engine::precompile_component` for an engine with the same compatibility hash.
            match valid.then(|| unsafe { Component::deserialize(engine, &bytes[MAC_LEN..]) }) {
                Some(Ok(component)) => return Ok((component, true)),
                _ => tracing::info!(
                    "compiled-plugin cache entry {} is not this host's for this plugin; compiling again",
                    path.display()
                ),
            }
        }
        let code = engine.precompile_component(wasm)?;
        // The cache only saves time: failing to write it costs the next run a compile.
        if let Err(e) = self.store(&path, &key, &code) {
            tracing::warn!(
                "could not write the compiled-plugin cache entry {}: {e:#} (plugins are compiled again each run; check that directory, or delete it)",
                path.display()
            );
        }
        // SAFETY: produced just now by `precompile_component` of this engine.
        let component = unsafe { Component::deserialize(engine, &code)? };
        Ok((component, false))
    }

    fn store(&self, path: &Path, key: &str, code: &[u8]) -> anyhow::Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(&self.mac(key, code))?;
        file.write_all(code)?;
        file.persist(path)?;
        Ok(())
    }
}

/// `$CAIRN_CACHE_DIR/compiled`, else the user's cache directory.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CAIRN_CACHE_DIR") {
        return Some(PathBuf::from(dir).join("compiled"));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("cairn").join("compiled"));
    }
    Some(
        PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache")
            .join("cairn")
            .join("compiled"),
    )
}

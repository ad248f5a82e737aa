//! The backup lifecycle: what `cairn backup`, `restore`, `check` and friends do, driving
//! plugins (through [`crate::runtime`]) and the repository (through [`crate::repo`]).

pub mod backup;
pub mod check;
pub mod drill;
pub mod forget;
pub mod history;
pub mod progress;
pub mod replicate;
pub mod restore;
pub mod resume;
pub mod status;
pub mod timeline;
pub mod verify;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::config::{Config, ConfigError, SourceConfig};
use crate::repo::Repository;
use crate::repo::backend::Backend;
use crate::runtime::sandbox::{granted_options, grants_from_options};
use crate::runtime::sink::SinkPool;
use crate::runtime::{Plugin, PluginInfo, PluginKind, Runtime};

/// A source plugin ready to run, with its options and grants resolved.
#[derive(Clone)]
pub struct PreparedSource {
    pub name: String,
    pub plugin: Arc<Plugin>,
    pub info: PluginInfo,
    pub options: String,
    pub grants: crate::runtime::sandbox::grants::Grants,
    pub timeout: std::time::Duration,
    pub changed_files: crate::runtime::pipeline::capture::ChangedFiles,
}

/// One command's worth of context: the config, the plugin runtime, the password.
pub struct Session {
    pub config: Config,
    pub runtime: Arc<Runtime>,
    password: Option<Vec<u8>>,
    plugins: Mutex<HashMap<String, (Arc<Plugin>, PluginInfo)>>,
}

impl Session {
    pub fn new(config: Config, password: Option<Vec<u8>>) -> Result<Session> {
        let mut options = crate::builtin::runtime_options();
        if let Some(mib) = config.plugins.memory_limit_mib {
            options.memory_limit = mib * 1024 * 1024;
        }
        let runtime = Arc::new(Runtime::new(options).context("starting the plugin runtime")?);
        Ok(Session {
            config,
            runtime,
            password,
            plugins: Mutex::new(HashMap::new()),
        })
    }

    pub fn password(&self) -> Result<&[u8]> {
        self.password.as_deref().ok_or_else(|| {
            ConfigError::Password(
                "no repository password: set CAIRN_PASSWORD or pass --password-file FILE".into(),
            )
            .into()
        })
    }

    /// Loads (once) and describes a plugin, checking it is of the expected kind.
    pub async fn plugin(&self, spec: &str, kind: PluginKind) -> Result<(Arc<Plugin>, PluginInfo)> {
        let spec = self.config.plugin_spec(spec);
        if let Some(found) = self.plugins.lock().expect("plugins lock").get(&spec) {
            return Ok(found.clone());
        }
        let plugin = self.runtime.load(&spec)?;
        if plugin.kind != kind {
            return Err(crate::runtime::LoadError::WrongKind {
                spec,
                found: plugin.kind,
                wanted: kind,
            }
            .into());
        }
        let plugin = Arc::new(plugin);
        let info = self.runtime.describe(&plugin).await?;
        self.plugins
            .lock()
            .expect("plugins lock")
            .insert(spec, (plugin.clone(), info.clone()));
        Ok((plugin, info))
    }

    /// Options as JSON, with relative paths in granted options made absolute against the
    /// config's folder (so `path = "data"` means the same wherever cairn runs from).
    fn options_json(&self, table: &toml::Table, schema: &str) -> Result<serde_json::Value> {
        let mut options =
            serde_json::to_value(table).context("converting plugin options to JSON")?;
        let base = self.config.base_dir();
        if let serde_json::Value::Object(map) = &mut options {
            for (key, _) in granted_options(schema) {
                if let Some(serde_json::Value::String(s)) = map.get(&key)
                    && s.trim().is_empty()
                {
                    // Joined to the config's folder, an empty path would silently mean it.
                    return Err(ConfigError::Value {
                        path: self.config.path.display().to_string(),
                        message: format!(
                            "option `{key}` is empty: give a path (relative paths are relative to the config's folder)"
                        ),
                    }
                    .into());
                }
                if let Some(serde_json::Value::String(s)) = map.get_mut(&key)
                    && !s.contains("://")
                    && !Path::new(s.as_str()).is_absolute()
                {
                    *s = crate::runtime::sandbox::grants::normalize(&base.join(&*s))
                        .unwrap_or_else(|| base.join(&*s))
                        .to_string_lossy()
                        .into_owned();
                }
            }
        }
        Ok(options)
    }

    pub async fn prepare_source(&self, source: &SourceConfig) -> Result<PreparedSource> {
        let (plugin, info) = self
            .plugin(&source.plugin, PluginKind::Source)
            .await
            .with_context(|| format!("source `{}`", source.name()))?;
        let options = self.options_json(&source.options, &info.options_schema)?;
        let extra = source.grants.to_grants(&self.config.base_dir());
        let grants = grants_from_options(&info.options_schema, &options, &extra);
        let timeout = match &source.timeout {
            Some(t) => crate::repo::duration::parse_span(t).context("source timeout")?,
            None => crate::config::DEFAULT_SOURCE_TIMEOUT,
        };
        Ok(PreparedSource {
            name: source.name().to_string(),
            plugin,
            info,
            options: options.to_string(),
            grants,
            timeout,
            changed_files: source.changed_files,
        })
    }

    /// Opens the configured sink as repository storage.
    pub async fn backend(&self) -> Result<Arc<dyn Backend>> {
        let repo = &self.config.repository;
        let (plugin, info) = self
            .plugin(&repo.sink, PluginKind::Sink)
            .await
            .context("repository sink")?;
        let mut options = self.options_json(&repo.options, &info.options_schema)?;
        // `sink = "r2"` is the s3 sink with its R2 preset.
        if let Some(provider) = crate::builtin::find(&repo.sink).and_then(|b| b.provider)
            && let serde_json::Value::Object(map) = &mut options
        {
            map.entry("provider")
                .or_insert_with(|| serde_json::Value::String(provider.into()));
        }
        let extra = repo.grants.to_grants(&self.config.base_dir());
        let grants = grants_from_options(&info.options_schema, &options, &extra);
        let description = describe_sink(&info.name, &options);
        let pool = SinkPool::open(
            self.runtime.clone(),
            plugin,
            &format!("sink:{}", info.name),
            options.to_string(),
            grants,
            repo.concurrency,
            description,
        )
        .await
        .map_err(refused_storage)
        .context("opening the repository sink")?;
        Ok(Arc::new(pool))
    }

    pub async fn open_repository(&self) -> Result<Arc<Repository>> {
        let backend = self.backend().await?;
        let repo = Repository::open(backend, self.password()?).await?;
        Ok(Arc::new(repo))
    }

    pub async fn init_repository(&self) -> Result<Arc<Repository>> {
        let backend = self.backend().await?;
        let password = self.password()?;
        if password.is_empty() {
            return Err(ConfigError::Password(
                "the repository password is empty: choose a real one (CAIRN_PASSWORD or --password-file)".into(),
            )
            .into());
        }
        Ok(Arc::new(Repository::init(backend, password).await?))
    }
}

/// A sink that refuses to open (access denied, no such bucket) means the repository cannot
/// be opened (exit 3); bad options stay configuration errors and transient failures stay
/// failures.
fn refused_storage(e: crate::runtime::CallError) -> anyhow::Error {
    use crate::repo::backend::{BackendError, BackendErrorKind};
    use crate::runtime::PluginError;
    let kind = match e.plugin_error() {
        Some(PluginError::Denied(_)) => BackendErrorKind::Denied,
        Some(PluginError::NotFound(_) | PluginError::Permanent(_)) => BackendErrorKind::Config,
        _ => return e.into(),
    };
    BackendError::new(kind, e.to_string()).into()
}

/// "local sink at /srv/backups": names where the repository is, for messages.
fn describe_sink(name: &str, options: &serde_json::Value) -> String {
    let text = |key: &str| options.get(key).and_then(|v| v.as_str());
    if let Some(bucket) = text("bucket") {
        let prefix = text("prefix").filter(|p| !p.is_empty());
        let at = text("endpoint")
            .map(|e| format!(" at {e}"))
            .unwrap_or_default();
        return match prefix {
            Some(prefix) => format!("{name} sink: bucket `{bucket}`, prefix {prefix}{at}"),
            None => format!("{name} sink: bucket `{bucket}`{at}"),
        };
    }
    let location = ["path", "bucket", "endpoint", "url"]
        .iter()
        .filter_map(|k| options.get(*k).and_then(|v| v.as_str()))
        .collect::<Vec<_>>()
        .join(" ");
    if location.is_empty() {
        format!("{name} sink")
    } else {
        format!("{name} sink at {location}")
    }
}

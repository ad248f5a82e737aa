//! The configuration file (TOML): the repository's sink, the sources of the backup set,
//! and plugin limits. Errors name the file, the line and the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::repo::duration::parse_span;
use crate::repo::ops::retention::Policy;
use crate::runtime::sandbox::grants::Grants;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub repository: RepositoryConfig,
    /// Backed up in this order: list databases before the directories they reference.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub plugins: PluginSettings,
    /// How many snapshots of each source to keep (see `cairn_repo::ops::retention`).
    #[serde(default)]
    pub retention: Option<toml::Spanned<toml::Table>>,
    /// Where the config was read from; relative paths in options are relative to its folder.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A built-in sink name, or a path to a sink plugin's `.wasm`.
    pub sink: String,
    #[serde(default)]
    pub options: toml::Table,
    #[serde(default)]
    pub grants: GrantsConfig,
    /// Storage operations in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_concurrency() -> usize {
    4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: toml::Spanned<String>,
    /// A built-in source name, or a path to a source plugin's `.wasm`.
    pub plugin: String,
    #[serde(default)]
    pub options: toml::Table,
    #[serde(default)]
    pub grants: GrantsConfig,
    /// How long one backup, restore or verify of this source may run (`90m`, `6h`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// What a backup does with a file that changes during each of its reads: `warn`
    /// (store it as read, flagged) or `fail`.
    #[serde(default, rename = "changed-files")]
    pub changed_files: crate::runtime::pipeline::capture::ChangedFiles,
    /// This source's retention, replacing the top-level `[retention]` for it.
    #[serde(default)]
    pub retention: Option<toml::Spanned<toml::Table>>,
    /// Continuous replication (`cairn replicate`), for sources that offer it.
    #[serde(default)]
    pub replicate: Option<toml::Spanned<ReplicateConfig>>,
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    /// The source's replication settings, checked at load; the defaults without a
    /// `[source.replicate]` table.
    pub fn replication(&self) -> Replication {
        self.replicate
            .as_ref()
            .and_then(|r| r.get_ref().resolve().ok())
            .unwrap_or_default()
    }
}

/// `[source.replicate]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReplicateConfig {
    pub interval: Option<String>,
    pub snapshot_every: Option<String>,
    pub max_wal: Option<String>,
    pub bundle_every: Option<String>,
    pub merge_every: Option<String>,
}

/// How a source is replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// How often what changed is read and stored.
    pub interval: std::time::Duration,
    /// How often a fresh snapshot starts a new chain, bounding how much a restore applies.
    pub snapshot_every: std::time::Duration,
    /// Bytes the source's own log may hold before cairn makes it shrink.
    pub max_log: u64,
    /// How long a chain's segments stay single objects before they are packed into one
    /// bundle.
    pub bundle_every: std::time::Duration,
    /// How long a chain's bundles stay apart before they are merged into one object.
    pub merge_every: std::time::Duration,
}

impl Default for Replication {
    fn default() -> Replication {
        Replication {
            interval: std::time::Duration::from_secs(1),
            snapshot_every: std::time::Duration::from_secs(24 * 3600),
            max_log: 256 << 20,
            bundle_every: std::time::Duration::from_secs(60),
            merge_every: std::time::Duration::from_secs(3600),
        }
    }
}

impl ReplicateConfig {
    fn resolve(&self) -> Result<Replication, String> {
        let mut out = Replication::default();
        let span = |key: &str, text: &Option<String>, slot: &mut std::time::Duration| {
            if let Some(text) = text {
                match parse_span(text) {
                    Some(d) if !d.is_zero() => *slot = d,
                    _ => {
                        return Err(format!(
                            "{key} = \"{text}\" is not a duration like \"1s\", \"30s\" or \"24h\""
                        ));
                    }
                }
            }
            Ok(())
        };
        span("interval", &self.interval, &mut out.interval)?;
        span(
            "snapshot-every",
            &self.snapshot_every,
            &mut out.snapshot_every,
        )?;
        span("bundle-every", &self.bundle_every, &mut out.bundle_every)?;
        span("merge-every", &self.merge_every, &mut out.merge_every)?;
        if let Some(text) = &self.max_wal {
            out.max_log = parse_size(text).ok_or_else(|| {
                format!("max-wal = \"{text}\" is not a size like \"256MiB\" or \"1GiB\"")
            })?;
        }
        if out.snapshot_every < out.interval {
            return Err(
                "snapshot-every is shorter than interval: every sync would start a new chain"
                    .into(),
            );
        }
        if self.bundle_every.is_none() {
            out.bundle_every = out.bundle_every.max(out.interval);
        } else if out.bundle_every < out.interval {
            return Err(
                "bundle-every is shorter than interval: a bundle would hold one segment".into(),
            );
        }
        if self.merge_every.is_none() {
            out.merge_every = out.merge_every.max(out.bundle_every);
        } else if out.merge_every < out.bundle_every {
            return Err(
                "merge-every is shorter than bundle-every: a merge would hold one bundle".into(),
            );
        }
        Ok(out)
    }
}

/// A size with a binary unit (`256MiB`, `1GiB`, `4096`).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(scale).filter(|&n| n > 0)
}

/// Access granted to a plugin beyond what its options name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsConfig {
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
}

impl GrantsConfig {
    pub fn to_grants(&self, base: &Path) -> Grants {
        let mut grants = Grants::default();
        for p in &self.read {
            grants.read(base.join(p));
        }
        for p in &self.write {
            grants.write(base.join(p));
        }
        grants.secrets.extend(self.secrets.iter().cloned());
        grants.hosts.extend(self.hosts.iter().cloned());
        grants
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginSettings {
    /// Memory one plugin instance may use, in MiB.
    pub memory_limit_mib: Option<usize>,
}

/// Default time a source's backup, restore or verify may take.
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config file {path} not found: pass --config FILE, set CAIRN_CONFIG, or create ./cairn.toml (see examples/quickstart.toml)"
    )]
    Missing { path: String },
    #[error("cannot read config file {path}: {message}")]
    Unreadable { path: String, message: String },
    /// A value the config's folder and the plugin's schema make wrong (a path option
    /// left empty), found after parsing, where no line is known.
    #[error("{path}: {message}")]
    Value { path: String, message: String },
    /// No password, or a password file that cannot be read.
    #[error("{0}")]
    Password(String),
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing {
                    path: path.display().to_string(),
                });
            }
            Err(e) => {
                return Err(ConfigError::Unreadable {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        let mut config = Config::parse(&text, path)?;
        config.path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(config)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = span.map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Invalid {
                path: path.display().to_string(),
                line,
                column,
                message,
            }
        };
        let config: Config =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().trim().to_string()))?;
        let mut seen = std::collections::HashMap::new();
        for source in &config.sources {
            let name = source.name();
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                && !name.starts_with('.');
            if !valid {
                return Err(invalid(
                    Some(source.name.span()),
                    format!(
                        "source name `{name}`: use letters, digits, `-`, `_` and `.` (it names a directory on restore)"
                    ),
                ));
            }
            // Names differing only in case would restore into one directory on a
            // case-insensitive target (macOS, Windows shares).
            if let Some(other) = seen.get(&name.to_ascii_lowercase()) {
                let message = match other == name {
                    true => format!("source name `{name}` is used twice"),
                    false => format!(
                        "source names `{other}` and `{name}` differ only in case: they would restore into one directory on a case-insensitive filesystem; rename one"
                    ),
                };
                return Err(invalid(Some(source.name.span()), message));
            }
            seen.insert(name.to_ascii_lowercase(), name.to_string());
            if let Some(t) = &source.timeout {
                let message = match parse_span(t) {
                    None => Some(format!(
                        "source `{name}`: timeout `{t}` is not a duration like `90m` or `6h`"
                    )),
                    Some(d) if d.is_zero() => Some(format!(
                        "source `{name}`: timeout `{t}` would fail every run at once; give a duration like `90m` or `6h`, or leave it out for 24h"
                    )),
                    Some(_) => None,
                };
                if let Some(message) = message {
                    return Err(invalid(Some(source.name.span()), message));
                }
            }
        }
        for source in &config.sources {
            if let Some(replicate) = &source.replicate
                && let Err(message) = replicate.get_ref().resolve()
            {
                return Err(invalid(
                    Some(replicate.span()),
                    format!("source `{}`: [source.replicate]: {message}", source.name()),
                ));
            }
        }
        for table in config
            .sources
            .iter()
            .filter_map(|s| s.retention.as_ref())
            .chain(config.retention.as_ref())
        {
            if let Err(e) = Policy::from_table(table.get_ref(), &mut Vec::new()) {
                return Err(invalid(Some(table.span()), e.0));
            }
        }
        if config.plugins.memory_limit_mib == Some(0) {
            let at = text.find("memory-limit-mib");
            return Err(invalid(
                at.map(|i| i..i),
                "memory-limit-mib = 0 would let no plugin start: give the MiB one plugin instance may use (default 512), or leave it out".into(),
            ));
        }
        if config.repository.concurrency == 0 {
            return Err(invalid(
                None,
                "repository.concurrency must be at least 1".into(),
            ));
        }
        Ok(config)
    }

    /// The retention policy of a source (its own table, else the top-level one), with
    /// warnings about values that fell back to safe ones. `None` when nothing is configured.
    pub fn retention_for(&self, source: &str) -> Option<(Policy, Vec<String>)> {
        let table = self
            .source(source)
            .and_then(|s| s.retention.as_ref())
            .or(self.retention.as_ref())?;
        let mut warnings = Vec::new();
        // Unknown keys were refused when the config was parsed.
        let policy = Policy::from_table(table.get_ref(), &mut warnings).ok()?;
        Some((policy, warnings))
    }

    /// Whether any retention is configured.
    pub fn has_retention(&self) -> bool {
        self.retention.is_some() || self.sources.iter().any(|s| s.retention.is_some())
    }

    /// The folder relative paths in the config are relative to.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// A plugin as the config names it, with a relative `.wasm` path made relative to the
    /// config's folder (built-in names and unknown names stay as they are).
    pub fn plugin_spec(&self, spec: &str) -> String {
        if crate::builtin::is_path(spec) && !Path::new(spec).is_absolute() {
            self.base_dir().join(spec).to_string_lossy().into_owned()
        } else {
            spec.to_string()
        }
    }

    /// Every plugin the config names (the sink, then each source's), once each.
    pub fn plugin_specs(&self) -> Vec<String> {
        let mut specs: Vec<String> = Vec::new();
        let named =
            std::iter::once(&self.repository.sink).chain(self.sources.iter().map(|s| &s.plugin));
        for spec in named.map(|s| self.plugin_spec(s)) {
            if !specs.contains(&spec) {
                specs.push(spec);
            }
        }
        specs
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name() == name)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("cairn.toml"))
    }

    #[test]
    fn parses_the_documented_shape() {
        let c = parse(
            r#"
[repository]
sink = "local"
[repository.options]
path = "/var/backups/cairn"

[[source]]
name = "uploads"
plugin = "filesystem"
[source.options]
path = "/srv/app/uploads"
"#,
        )
        .unwrap();
        assert_eq!(c.repository.sink, "local");
        assert_eq!(c.sources[0].name(), "uploads");
        assert_eq!(
            c.sources[0].options["path"].as_str(),
            Some("/srv/app/uploads")
        );
    }

    #[test]
    fn errors_name_line_and_field() {
        let err = parse("[repository]\nsink = \"local\"\n\n[[source]]\nplugin = \"filesystem\"\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("cairn.toml:4:"), "{text}");
        assert!(text.contains("missing field `name`"), "{text}");

        let err = parse("[repository]\nsink = \"local\"\nsinkk = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cairn.toml:3:"), "{err}");
        assert!(err.contains("sinkk"), "{err}");

        let err =
            parse("[repository]\nsink = \"local\"\n[[source]]\nname = \"a b\"\nplugin = \"x\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("cairn.toml:4:"), "{err}");
    }

    #[test]
    fn replication_settings_have_defaults_sizes_and_errors_with_a_line() {
        assert_eq!(parse_size("256MiB"), Some(256 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0MiB"), None);
        assert_eq!(parse_size("5MB"), None);
        let base = "[repository]\nsink = \"local\"\n[repository.options]\npath = \"/r\"\n[[source]]\nname = \"db\"\nplugin = \"sqlite\"\n";
        let config = parse(&format!(
            "{base}[source.replicate]\ninterval = \"5s\"\nmax-wal = \"64MiB\"\n"
        ))
        .unwrap();
        let replication = config.sources[0].replication();
        assert_eq!(replication.interval, std::time::Duration::from_secs(5));
        assert_eq!(replication.max_log, 64 << 20);
        assert_eq!(
            replication.snapshot_every,
            Replication::default().snapshot_every
        );
        let err = parse(&format!("{base}[source.replicate]\nmax-wal = \"lots\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cairn.toml:8:") && err.contains("max-wal"),
            "{err}"
        );
        let err = parse(&format!(
            "{base}[source.replicate]\ninterval = \"1h\"\nsnapshot-every = \"1m\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("shorter than interval"), "{err}");
        // Segments are bundled every minute, or every interval when that is longer.
        assert_eq!(replication.bundle_every, std::time::Duration::from_secs(60));
        let slow = parse(&format!("{base}[source.replicate]\ninterval = \"5m\"\n")).unwrap();
        assert_eq!(
            slow.sources[0].replication().bundle_every,
            std::time::Duration::from_secs(300)
        );
        let err = parse(&format!(
            "{base}[source.replicate]\ninterval = \"10s\"\nbundle-every = \"5s\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("bundle-every is shorter than interval"),
            "{err}"
        );
        // Bundles are merged every hour, or every bundle-every when that is longer.
        assert_eq!(
            replication.merge_every,
            std::time::Duration::from_secs(3600)
        );
        let rare = parse(&format!(
            "{base}[source.replicate]\nbundle-every = \"2h\"\n"
        ))
        .unwrap();
        assert_eq!(
            rare.sources[0].replication().merge_every,
            std::time::Duration::from_secs(7200)
        );
        let err = parse(&format!(
            "{base}[source.replicate]\nbundle-every = \"10m\"\nmerge-every = \"5m\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("merge-every is shorter than bundle-every"),
            "{err}"
        );
    }

    mod damaged {
        use proptest::prelude::*;

        use super::*;
        use crate::repo::fuzz::damaged;

        /// The ```toml blocks of a Markdown text.
        fn toml_blocks(markdown: &str) -> Vec<&str> {
            markdown
                .split("```toml\n")
                .skip(1)
                .filter_map(|block| block.split("```").next())
                .collect()
        }

        /// The user guide's configuration, every section of it.
        fn documented() -> Vec<u8> {
            let guide = include_str!("../../docs/user-guide.md");
            toml_blocks(guide)[0].as_bytes().to_vec()
        }

        proptest! {
            /// Any text is a config or an error naming where it went wrong.
            #[test]
            fn a_damaged_config_is_a_config_or_an_error(bytes in damaged(documented())) {
                let _ = parse(&String::from_utf8_lossy(&bytes));
            }
        }

        /// Every TOML block in the docs is TOML, and every one that configures a
        /// repository is a config cairn accepts.
        #[test]
        fn every_toml_block_in_the_docs_is_valid() {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .collect();
            docs.push(root.join("README.md"));
            let mut blocks = 0;
            for doc in docs {
                let text = std::fs::read_to_string(&doc).unwrap();
                for block in toml_blocks(&text) {
                    blocks += 1;
                    if let Err(e) = block.parse::<toml::Table>() {
                        panic!("{}: a toml block is not TOML: {e}\n{block}", doc.display());
                    }
                    if block.contains("[repository]")
                        && let Err(e) = parse(block)
                    {
                        panic!(
                            "{}: a documented config is refused: {e}\n{block}",
                            doc.display()
                        );
                    }
                }
            }
            assert!(blocks > 3, "found only {blocks} toml blocks");
        }
    }
}

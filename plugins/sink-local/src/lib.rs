//! The `local` sink: a repository in a directory on a local or mounted filesystem. Object
//! names map to paths below the directory; the host writes each object atomically and
//! durably (temporary file, fsync, rename), so a crash never leaves a torn object.

use cairn_sdk::{
    Blob, Info, ItemKind, ItemMeta, ObjectInfo, PluginError, RestoreTarget, Result, Sink, Store,
    files, host,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The repository directory (absolute); created on first write.
    path: String,
}

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["path"],
  "additionalProperties": false,
  "properties": {
    "path": {
      "type": "string",
      "description": "Absolute path of the repository directory; created on first write.",
      "x-cairn-grant": "write"
    }
  }
}"#;

struct Local;

cairn_sdk::export_sink!(Local);

impl Sink for Local {
    type Options = Options;
    type Store = LocalStore;

    fn info() -> Info {
        Info {
            name: "local",
            version: env!("CARGO_PKG_VERSION"),
            description: "A repository in a directory on a local or mounted filesystem.",
            options_schema: SCHEMA,
            restore_target: RestoreTarget::Directory,
        }
    }

    fn validate(options: &Options) -> Result<()> {
        if !options.path.starts_with('/') {
            return Err(PluginError::config("path", "must be an absolute path"));
        }
        Ok(())
    }

    fn open(options: &Options) -> Result<LocalStore> {
        Ok(LocalStore {
            root: options.path.trim_end_matches('/').to_string(),
        })
    }
}

struct LocalStore {
    root: String,
}

/// A temporary file older than this is no write in progress (a pack lands in seconds, even
/// over a slow mount) but one that was killed, which nothing will ever rename.
const STALE_TEMPORARY_SECS: i64 = 24 * 60 * 60;

/// Whether `entry`, a `.tmp-` file, was last written more than a day ago by this clock.
fn stale(entry: &ItemMeta) -> bool {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    now_ns.saturating_sub(entry.mtime_ns) > STALE_TEMPORARY_SECS * 1_000_000_000
}

impl LocalStore {
    fn path(&self, name: &str) -> Result<String> {
        if name.is_empty()
            || name.starts_with('/')
            || name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(PluginError::permanent(format!(
                "invalid object name `{name}`"
            )));
        }
        Ok(format!("{}/{name}", self.root))
    }

    /// Collects every file below `dir` (a path relative to the root, "" for the root).
    fn walk(&self, dir: &str, prefix: &str, out: &mut Vec<ObjectInfo>) -> Result<()> {
        let guest = if dir.is_empty() {
            self.root.clone()
        } else {
            format!("{}/{dir}", self.root)
        };
        let entries = match files::read_dir(&guest) {
            Ok(entries) => entries,
            Err(PluginError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let name = if dir.is_empty() {
                entry.path.clone()
            } else {
                format!("{dir}/{}", entry.path)
            };
            match entry.kind {
                ItemKind::Directory
                    if prefix.starts_with(&format!("{name}/")) || name.starts_with(prefix) =>
                {
                    self.walk(&name, prefix, out)?
                }
                // Temporary files of writes in progress are not objects; those that a killed
                // write left are removed as the listing passes them.
                ItemKind::File if entry.path.starts_with(".tmp-") && stale(&entry) => {
                    let path = format!("{guest}/{}", entry.path);
                    match files::remove(&path) {
                        Ok(()) => host::info(format!(
                            "removed {path}, a temporary file a killed write left over a day ago"
                        )),
                        Err(PluginError::NotFound(_)) => {}
                        Err(e) => host::warn(format!("removing {path}: {e}")),
                    }
                }
                ItemKind::File if entry.path.starts_with(".tmp-") => {}
                ItemKind::File if name.starts_with(prefix) => out.push(ObjectInfo {
                    name,
                    size: entry.size,
                }),
                _ => {}
            }
        }
        Ok(())
    }
}

impl Store for LocalStore {
    fn put(&self, name: &str, contents: &Blob) -> Result<()> {
        files::write(
            &self.path(name)?,
            contents,
            &files::WriteOptions {
                exclusive: false,
                sync: true,
                meta: None,
                deferred: false,
            },
        )
        .map(drop)
    }

    fn put_new(&self, name: &str, contents: &Blob) -> Result<()> {
        files::write(
            &self.path(name)?,
            contents,
            &files::WriteOptions {
                exclusive: true,
                sync: true,
                meta: None,
                deferred: false,
            },
        )
        .map(drop)
    }

    fn get(&self, name: &str) -> Result<Blob> {
        files::open(&self.path(name)?, 0, None)
    }

    fn get_range(&self, name: &str, offset: u64, length: u64) -> Result<Blob> {
        files::open(&self.path(name)?, offset, Some(length))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let start = match prefix.rfind('/') {
            Some(slash) => &prefix[..slash],
            None => "",
        };
        let mut out = Vec::new();
        self.walk(start, prefix, &mut out)?;
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        match files::remove(&self.path(name)?) {
            Ok(()) | Err(PluginError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

//! The `filesystem` source: a directory tree with modes, owners, mtimes, symlinks and
//! empty directories. The host reads metadata and file contents natively (WASI cannot
//! express modes or owners), so this plugin decides only *what* belongs to the backup.

use cairn_sdk::{
    CheckResult, Info, ItemKind, ItemMeta, ItemReader, ItemWriter, PluginError, RestoreTarget,
    Result, Source, VerifyReport, files, host,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The directory to back up (absolute).
    path: String,
    /// Glob patterns of paths to leave out, relative to `path` (`cache/**`, `*.tmp`).
    #[serde(default)]
    exclude: Vec<String>,
}

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["path"],
  "additionalProperties": false,
  "properties": {
    "path": {
      "type": "string",
      "description": "Absolute path of the directory to back up.",
      "x-cairn-grant": "read"
    },
    "exclude": {
      "type": "array",
      "items": { "type": "string" },
      "description": "Glob patterns, relative to path, of entries to leave out (a matching directory is skipped whole)."
    }
  }
}"#;

struct Filesystem;

cairn_sdk::export_source!(Filesystem);

impl Source for Filesystem {
    type Options = Options;

    fn info() -> Info {
        Info {
            name: "filesystem",
            version: env!("CARGO_PKG_VERSION"),
            description: "A directory tree with its metadata (modes, owners, mtimes, symlinks, empty directories).",
            options_schema: SCHEMA,
            restore_target: RestoreTarget::Directory,
        }
    }

    fn validate(options: &Options) -> Result<()> {
        if !options.path.starts_with('/') {
            return Err(PluginError::config("path", "must be an absolute path"));
        }
        patterns(options).map(drop)
    }

    fn backup(options: &Options, writer: &ItemWriter) -> Result<()> {
        let excludes = patterns(options)?;
        let root = options.path.trim_end_matches('/');
        let root = if root.is_empty() { "/" } else { root };
        let mut meta = files::stat(root)?;
        if meta.kind != ItemKind::Directory {
            return Err(PluginError::config(
                "path",
                format!("{root} is not a directory"),
            ));
        }
        meta.path = String::new();
        writer.add_entry(&meta)?;
        let mut walk = Walk {
            writer,
            excludes: &excludes,
            files: 0,
        };
        walk.dir(root, "")?;
        host::info(format!("captured {} files under {root}", walk.files));
        Ok(())
    }

    fn restore(_options: &Options, reader: &ItemReader, target: &str) -> Result<()> {
        let restored = restore_tree(reader, target, false)?;
        host::info(format!("restored {} items into {target}", restored.items));
        Ok(())
    }

    fn verify(_options: &Options, reader: &ItemReader, scratch: &str) -> Result<VerifyReport> {
        let restored = restore_tree(reader, scratch, true)?;
        let mut mismatched = Vec::new();
        for (path, expected) in &restored.file_sizes {
            let actual = files::stat(&join(scratch, path))?.size;
            if actual != *expected {
                mismatched.push(format!("{path}: {actual} bytes, expected {expected}"));
            }
        }
        Ok(VerifyReport {
            checks: vec![
                CheckResult {
                    name: "restore".into(),
                    passed: true,
                    detail: format!(
                        "{} items, {} files, {} bytes restored",
                        restored.items, restored.files, restored.bytes
                    ),
                },
                CheckResult {
                    name: "file sizes".into(),
                    passed: mismatched.is_empty(),
                    detail: if mismatched.is_empty() {
                        "every restored file has its recorded size".into()
                    } else {
                        mismatched.join("; ")
                    },
                },
            ],
        })
    }
}

fn patterns(options: &Options) -> Result<Vec<glob::Pattern>> {
    options
        .exclude
        .iter()
        .enumerate()
        .map(|(i, p)| {
            glob::Pattern::new(p).map_err(|e| {
                PluginError::config(format!("exclude.{i}"), format!("invalid glob `{p}`: {e}"))
            })
        })
        .collect()
}

struct Walk<'a> {
    writer: &'a ItemWriter,
    excludes: &'a [glob::Pattern],
    files: u64,
}

impl Walk<'_> {
    fn excluded(&self, rel: &str) -> bool {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        self.excludes.iter().any(|p| p.matches_with(rel, opts))
    }

    /// Depth-first, entries sorted by name, each directory before its entries.
    fn dir(&mut self, guest_dir: &str, rel_dir: &str) -> Result<()> {
        let entries = match files::read_dir(guest_dir) {
            Ok(entries) => entries,
            // Removed while we walked: what is gone was not there at the instant we got here.
            Err(PluginError::NotFound(_)) if !rel_dir.is_empty() => {
                host::warn(format!("{guest_dir} vanished during the backup; skipped"));
                return Ok(());
            }
            Err(e) => return Err(e.context(format!("reading directory {guest_dir}"))),
        };
        for mut entry in entries {
            let rel = if rel_dir.is_empty() {
                entry.path.clone()
            } else {
                format!("{rel_dir}/{}", entry.path)
            };
            if self.excluded(&rel) {
                continue;
            }
            let guest = join(guest_dir, &entry.path);
            entry.path = rel.clone();
            match entry.kind {
                ItemKind::Directory => {
                    self.writer.add_entry(&entry)?;
                    self.dir(&guest, &rel)?;
                }
                ItemKind::File => match self.writer.add_file(&entry, &guest) {
                    Ok(()) => self.files += 1,
                    Err(PluginError::NotFound(_)) => {
                        host::warn(format!("{guest} vanished during the backup; skipped"))
                    }
                    Err(e) => return Err(e),
                },
                ItemKind::Symlink | ItemKind::Data => self.writer.add_entry(&entry)?,
            }
        }
        Ok(())
    }
}

struct Restored {
    items: u64,
    files: u64,
    bytes: u64,
    /// Each file's path and size, kept only when asked (a verify checks them): a restore
    /// of millions of files should not hold a line for each.
    file_sizes: Vec<(String, u64)>,
}

fn restore_tree(reader: &ItemReader, target: &str, keep_sizes: bool) -> Result<Restored> {
    let mut restored = Restored {
        items: 0,
        files: 0,
        bytes: 0,
        file_sizes: Vec::new(),
    };
    // Directory metadata goes last: writing entries into a directory changes its mtime,
    // and a read-only mode would stop us writing them at all. Symbolic links wait for the
    // deferred file writes (creating one waits for them), so they go after the files.
    let mut directories: Vec<ItemMeta> = Vec::new();
    let mut links: Vec<ItemMeta> = Vec::new();
    files::create_dir(target)?;
    loop {
        let batch = reader.next_items(1024);
        if batch.is_empty() {
            break;
        }
        for item in batch {
            let dest = join(target, &item.path);
            restored.items += 1;
            match item.kind {
                ItemKind::Directory => {
                    files::create_dir(&dest)?;
                    directories.push(item);
                }
                ItemKind::Symlink => links.push(item),
                ItemKind::File | ItemKind::Data => {
                    let contents = reader.open(&item.path)?;
                    let written = files::write(
                        &dest,
                        &contents,
                        &files::WriteOptions {
                            exclusive: false,
                            sync: false,
                            meta: Some(item.clone()),
                            // Files are created on the host's threads while we go on.
                            deferred: true,
                        },
                    )?;
                    restored.bytes += written;
                    restored.files += 1;
                    if keep_sizes {
                        restored.file_sizes.push((item.path.clone(), item.size));
                    }
                }
            }
        }
    }
    files::flush()?;
    for link in &links {
        let dest = join(target, &link.path);
        match files::remove(&dest) {
            Ok(()) | Err(PluginError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        files::symlink(&dest, link.symlink_target.as_deref().unwrap_or_default())?;
        files::set_metadata(&dest, link)?;
    }
    for dir in directories.iter().rev() {
        files::set_metadata(&join(target, &dir.path), dir)?;
    }
    Ok(restored)
}

fn join(base: &str, rel: &str) -> String {
    if rel.is_empty() {
        base.to_string()
    } else if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

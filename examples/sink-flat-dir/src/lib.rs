//! An example third-party sink, built only on `cairn-sdk`: every object is one file in a
//! single flat directory, its name escaped (`data/ab/cd` becomes `data%2Fab%2Fcd`).
//!
//! Unlike the built-in `local` sink, which hands blobs to the host to write natively,
//! this one moves the bytes itself through WASI `std::fs`, the way a plugin talking to a
//! service of its own would: it shows the chunked path of the blob API.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use cairn_sdk::{Blob, Info, ObjectInfo, PluginError, RestoreTarget, Result, Sink, Store};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The directory (absolute); cairn grants it to the plugin read-write.
    path: String,
}

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["path"],
  "additionalProperties": false,
  "properties": {
    "path": { "type": "string", "description": "Directory holding one file per object.", "x-cairn-grant": "write" }
  }
}"#;

/// How much of a blob one read moves into the plugin.
const PIECE: u32 = 1 << 20;

struct FlatDir;

cairn_sdk::export_sink!(FlatDir);

impl Sink for FlatDir {
    type Options = Options;
    type Store = FlatStore;

    fn info() -> Info {
        Info {
            name: "flat-dir",
            version: env!("CARGO_PKG_VERSION"),
            description: "Every object one file in a flat directory (an example plugin).",
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

    fn open(options: &Options) -> Result<FlatStore> {
        let dir = PathBuf::from(&options.path);
        std::fs::create_dir_all(&dir)
            .map_err(|e| PluginError::from(e).context(format!("creating {}", dir.display())))?;
        Ok(FlatStore { dir })
    }
}

struct FlatStore {
    dir: PathBuf,
}

fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

fn unescape(file: &str) -> String {
    file.replace("%2F", "/").replace("%25", "%")
}

impl FlatStore {
    /// Writes the blob to a temporary file, then gives it its name: by rename (replace)
    /// or by hard link, which fails if the name exists (create-only).
    fn write(&self, name: &str, contents: &Blob, exclusive: bool) -> Result<()> {
        let target = self.dir.join(escape(name));
        let tmp = self.dir.join(format!(".tmp-{}", escape(name)));
        let mut file = std::fs::File::create(&tmp)?;
        loop {
            let piece = contents.read(PIECE)?;
            if piece.is_empty() {
                break;
            }
            file.write_all(&piece)?;
        }
        file.sync_all()?;
        drop(file);
        let placed = if exclusive {
            std::fs::hard_link(&tmp, &target)
        } else {
            std::fs::rename(&tmp, &target)
        };
        let _ = std::fs::remove_file(&tmp);
        placed.map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => PluginError::AlreadyExists(name.to_string()),
            _ => PluginError::from(e).context(format!("writing {name}")),
        })
    }

    fn read(&self, name: &str, offset: u64, length: Option<u64>) -> Result<Blob> {
        let mut file =
            std::fs::File::open(self.dir.join(escape(name))).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => PluginError::NotFound(name.to_string()),
                _ => PluginError::from(e),
            })?;
        file.seek(SeekFrom::Start(offset))?;
        let blob = Blob::new(&[]);
        let mut remaining = length.unwrap_or(u64::MAX);
        let mut buf = vec![0u8; PIECE as usize];
        while remaining > 0 {
            let want = remaining.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            blob.append(&buf[..n])?;
            remaining -= n as u64;
        }
        Ok(blob)
    }
}

impl Store for FlatStore {
    fn put(&self, name: &str, contents: &Blob) -> Result<()> {
        self.write(name, contents, false)
    }

    fn put_new(&self, name: &str, contents: &Blob) -> Result<()> {
        self.write(name, contents, true)
    }

    fn get(&self, name: &str) -> Result<Blob> {
        self.read(name, 0, None)
    }

    fn get_range(&self, name: &str, offset: u64, length: u64) -> Result<Blob> {
        self.read(name, offset, Some(length))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with(".tmp-") {
                continue;
            }
            let name = unescape(&file);
            if name.starts_with(prefix) {
                out.push(ObjectInfo {
                    name,
                    size: entry.metadata()?.len(),
                });
            }
        }
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        match std::fs::remove_file(self.dir.join(escape(name))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

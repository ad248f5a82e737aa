//! A source that misbehaves on purpose, as its `mode` option says, so the tests can show
//! that the host contains it: `trap`, `loop`, `oom`, `escape-wasi`, `escape-host`,
//! `connect` (a TCP connection to option `addr`), or `ok` (writes one small item).

use cairn_sdk::{
    Chunking, Info, ItemKind, ItemMeta, ItemReader, ItemWriter, PluginError, RestoreTarget, Result,
    Source, VerifyReport, files,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    mode: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    addr: Option<String>,
}

struct Misbehave;

cairn_sdk::export_source!(Misbehave);

fn meta(path: &str) -> ItemMeta {
    ItemMeta {
        path: path.into(),
        kind: ItemKind::Data,
        size: 0,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        symlink_target: None,
    }
}

impl Source for Misbehave {
    type Options = Options;

    fn info() -> Info {
        Info {
            name: "misbehave",
            version: env!("CARGO_PKG_VERSION"),
            description: "Misbehaves on purpose (tests only).",
            options_schema: r#"{"type":"object","properties":{"mode":{"type":"string"},"path":{"type":"string","x-cairn-grant":"read"}}}"#,
            restore_target: RestoreTarget::Directory,
        }
    }

    fn backup(options: &Options, writer: &ItemWriter) -> Result<()> {
        match options.mode.as_str() {
            "trap" => {
                // An out-of-bounds index: the guest panics, which aborts as a wasm trap.
                let v: Vec<u8> = Vec::new();
                let i = options.mode.len() + 10;
                let _ = v[i];
                Ok(())
            }
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    if x == 0 {
                        return Ok(());
                    }
                }
            }
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    if hoard.len() == usize::MAX {
                        return Ok(());
                    }
                }
            }
            "escape-wasi" => match std::fs::read("/etc/passwd") {
                Ok(bytes) => {
                    let stream = writer.begin_stream(&meta("stolen"), Chunking::ContentDefined)?;
                    stream.write(&bytes)?;
                    stream.finish()?;
                    Ok(())
                }
                Err(e) => Err(PluginError::permanent(format!(
                    "reading /etc/passwd through WASI: {e}"
                ))),
            },
            "escape-host" => {
                // A granted path, then `..` out of it, then a path never granted, to a
                // capability that reads itself and one that stores what it reads.
                let base = options
                    .path
                    .clone()
                    .unwrap_or_else(|| "/nonexistent".into());
                let attempts = [
                    (
                        "stat via ..",
                        files::stat(&format!("{base}/../../../etc/passwd")).map(drop),
                    ),
                    ("stat", files::stat("/etc/passwd").map(drop)),
                    (
                        "store-ahead",
                        writer
                            .store_ahead("/etc/passwd", Chunking::ContentDefined)
                            .map(drop),
                    ),
                ];
                let mut refused = Vec::new();
                for (what, result) in attempts {
                    match result {
                        // Escaped: the backup succeeds, and the test sees it.
                        Ok(()) => return Ok(()),
                        Err(e) => refused.push(format!("{what}: {}", e.message())),
                    }
                }
                Err(PluginError::Denied(refused.join("; ")))
            }
            "connect" => {
                use std::io::Read;
                let addr = options.addr.clone().unwrap_or_default();
                let mut stream = std::net::TcpStream::connect(&addr)
                    .map_err(|e| PluginError::permanent(format!("connecting to {addr}: {e}")))?;
                let mut greeting = Vec::new();
                stream.read_to_end(&mut greeting)?;
                let item = writer.begin_stream(&meta("greeting"), Chunking::ContentDefined)?;
                item.write(&greeting)?;
                item.finish()?;
                Ok(())
            }
            "ok" => {
                let stream = writer.begin_stream(&meta("hello"), Chunking::ContentDefined)?;
                stream.write(b"hello from a well-behaved plugin")?;
                stream.finish()?;
                Ok(())
            }
            other => Err(PluginError::config(
                "mode",
                format!("unknown mode `{other}`"),
            )),
        }
    }

    fn restore(_options: &Options, _reader: &ItemReader, _target: &str) -> Result<()> {
        Ok(())
    }

    fn verify(_options: &Options, _reader: &ItemReader, _scratch: &str) -> Result<VerifyReport> {
        Ok(VerifyReport { checks: Vec::new() })
    }
}

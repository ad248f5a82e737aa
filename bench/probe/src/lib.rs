//! Moves one file's bytes into the backup either through the plugin (WASI reads, then
//! `item-stream.write` of `piece_kib` pieces: the chunked path) or by handing the host the
//! path (`add-file`: the splice). The benchmark compares both with native reads. Mode
//! `items` writes `count` synthetic items instead (three directories to each one-chunk
//! stream, the streams sharing 4096 contents), for memory as the item count grows; its
//! restore walks every item.

use cairn_sdk::{
    Chunking, Info, ItemReader, ItemWriter, PluginError, RestoreTarget, Result, Source,
    VerifyReport, files,
};
use serde::Deserialize;
use std::io::Read;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    dir: String,
    #[serde(default)]
    file: String,
    mode: String,
    #[serde(default)]
    count: u64,
    #[serde(default = "default_piece")]
    piece_kib: usize,
}

fn default_piece() -> usize {
    256
}

struct Probe;

cairn_sdk::export_source!(Probe);

impl Source for Probe {
    type Options = Options;

    fn info() -> Info {
        Info {
            name: "bench-probe",
            version: env!("CARGO_PKG_VERSION"),
            description: "Moves one file across the plugin boundary (benchmarks only).",
            options_schema: r#"{"type":"object","properties":{"dir":{"type":"string","x-cairn-grant":"read"}}}"#,
            restore_target: RestoreTarget::Directory,
        }
    }

    fn backup(o: &Options, writer: &ItemWriter) -> Result<()> {
        if o.mode == "items" {
            return synthetic_items(o.count, writer);
        }
        let path = format!("{}/{}", o.dir, o.file);
        let mut meta = files::stat(&path)?;
        meta.path = o.file.clone();
        match o.mode.as_str() {
            "splice" => writer.add_file(&meta, &path),
            "chunked" => {
                meta.kind = cairn_sdk::ItemKind::Data;
                let mut file = std::fs::File::open(&path)?;
                let stream = writer.begin_stream(&meta, Chunking::ContentDefined)?;
                let mut buf = vec![0u8; o.piece_kib * 1024];
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    stream.write(&buf[..n])?;
                }
                stream.finish().map(drop)
            }
            other => Err(PluginError::config("mode", format!("unknown mode {other}"))),
        }
    }

    fn restore(_: &Options, reader: &ItemReader, _: &str) -> Result<()> {
        let mut items = 0u64;
        loop {
            let batch = reader.next_items(4096);
            if batch.is_empty() {
                break;
            }
            items += batch.len() as u64;
        }
        cairn_sdk::host::info(format!("walked {items} items"));
        Ok(())
    }

    fn verify(_: &Options, _: &ItemReader, _: &str) -> Result<VerifyReport> {
        Ok(VerifyReport { checks: Vec::new() })
    }
}

fn synthetic_items(count: u64, writer: &ItemWriter) -> Result<()> {
    for i in 0..count {
        let mut meta = cairn_sdk::ItemMeta {
            path: format!("d{:03}/e{:03}/item-{i}", i % 997, (i / 997) % 991),
            kind: cairn_sdk::ItemKind::Directory,
            size: 0,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime_ns: 1_700_000_000_000_000_000 + i as i64,
            ctime_ns: 1_700_000_000_000_000_000 + i as i64,
            inode: i + 1,
            symlink_target: None,
        };
        if i % 4 == 3 {
            meta.kind = cairn_sdk::ItemKind::Data;
            meta.size = 8;
            let stream = writer.begin_stream(&meta, Chunking::ContentDefined)?;
            stream.write(&(i % 4096).to_le_bytes())?;
            stream.finish()?;
        } else {
            writer.add_entry(&meta)?;
        }
    }
    Ok(())
}

//! Moves one file's bytes into the backup either through the plugin (WASI reads, then
//! `item-stream.write` of `piece_kib` pieces: the chunked path) or by handing the host the
//! path (`add-file`: the splice). The benchmark compares both with native reads.

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
    file: String,
    mode: String,
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

    fn restore(_: &Options, _: &ItemReader, _: &str) -> Result<()> {
        Ok(())
    }

    fn verify(_: &Options, _: &ItemReader, _: &str) -> Result<VerifyReport> {
        Ok(VerifyReport { checks: Vec::new() })
    }
}

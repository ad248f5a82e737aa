//! Plugin start (cold compile vs cached) and bytes/s through the plugin boundary: the
//! chunked path (WASI reads in the plugin, then `item-stream.write`) and the splice
//! (`add-file`, the host reads natively), against a native read of the same file.
//!
//! The file's chunks are already in the repository when the paths are timed, so every run
//! pays for reading, chunking and hashing but none compresses or encrypts: the numbers
//! compare ways of getting bytes to the host, not storage.
//!
//!     cargo run --release -p cairn-bench --bin plugin_boundary [-- SIZE_MIB]

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use cairn::config::Config;
use cairn::lifecycle::Session;
use cairn::lifecycle::backup::{self, BackupOptions};
use cairn::repo::chunker::Chunking;
use cairn::repo::pack::ChunkKind;
use cairn::repo::write::{ChunkWriter, ContentWriter};
use cairn::runtime::{Runtime, RuntimeOptions};
use cairn_bench::mib_per_s;

fn main() -> Result<()> {
    let size_mib: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1024);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(size_mib))
}

async fn run(size_mib: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "# plugin start (built-in filesystem source, {} KiB of wasm)",
        cairn::builtin::find("filesystem").unwrap().wasm.len() / 1024
    );
    plugin_start(dir.path()).await?;

    println!(
        "\n# bytes through the boundary ({size_mib} MiB file, page cache warm, chunks already stored)"
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let file = data.join("big.bin");
    write_random(&file, size_mib << 20)?;
    let bytes = size_mib << 20;
    let probe = cairn_e2e::build_wasm(
        &cairn_e2e::workspace_root().join("bench/probe"),
        "cairn-bench-probe",
    );

    let native = native_read(&file)?;
    println!(
        "{:<36} {:>9.0} MiB/s",
        "native read (4 MiB buffers)",
        mib_per_s(bytes, native)
    );

    // One config with a source per path; the first stores the chunks.
    let mut sources = String::new();
    for (name, mode, piece) in [
        ("populate", "splice", 256),
        ("splice", "splice", 256),
        ("chunked-64k", "chunked", 64),
        ("chunked-256k", "chunked", 256),
        ("chunked-1m", "chunked", 1024),
    ] {
        sources.push_str(&format!(
            "[[source]]\nname = \"{name}\"\nplugin = \"{}\"\n[source.options]\ndir = \"{}\"\nfile = \"big.bin\"\nmode = \"{mode}\"\npiece_kib = {piece}\n\n",
            probe.display(),
            data.display()
        ));
    }
    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n\n{sources}",
            dir.path().join("repo").display()
        ),
    )?;
    let session = Session::new(Config::load(&config)?, Some(b"bench".to_vec()))?;
    let repo = session.init_repository().await?;
    let report = backup::run(
        &session,
        &BackupOptions {
            tags: vec![],
            progress: false,
        },
    )
    .await?;
    for s in &report.sources {
        anyhow::ensure!(s.error.is_none(), "{}: {:?}", s.name, s.error);
        if s.name != "populate" {
            let time = Duration::from_secs_f64(s.duration_secs);
            println!(
                "{:<36} {:>9.0} MiB/s  ({:.2}x native read)",
                format!("plugin {}", s.name),
                mib_per_s(bytes, time),
                native.as_secs_f64() / time.as_secs_f64()
            );
        }
    }

    // The same reading, chunking and hashing with no plugin at all.
    let writer = Arc::new(ChunkWriter::start(&repo.load_index().await?)?);
    let started = Instant::now();
    let mut content = ContentWriter::new(
        writer.clone(),
        Chunking::ContentDefined(repo.config().chunker),
        ChunkKind::Data,
    );
    content
        .read_all(&mut std::fs::File::open(&file)?, None)
        .await??;
    content.finish().await?;
    let host_only = started.elapsed();
    println!(
        "{:<36} {:>9.0} MiB/s  ({:.2}x native read)",
        "host pipeline, no plugin",
        mib_per_s(bytes, host_only),
        native.as_secs_f64() / host_only.as_secs_f64()
    );
    Ok(())
}

async fn plugin_start(dir: &Path) -> Result<()> {
    let cold_runtime = Runtime::new(RuntimeOptions {
        cache_dir: None,
        ..cairn::builtin::runtime_options()
    })?;
    let mut cold = Duration::ZERO;
    for _ in 0..3 {
        let started = Instant::now();
        cold_runtime.load("filesystem")?;
        cold += started.elapsed();
    }
    let cold = cold / 3;
    let cache = dir.join("compiled");
    let warm_runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(cache),
        ..cairn::builtin::runtime_options()
    })?;
    warm_runtime.load("filesystem")?;
    let mut cached = Duration::ZERO;
    let mut plugin = None;
    for _ in 0..10 {
        let started = Instant::now();
        plugin = Some(warm_runtime.load("filesystem")?);
        cached += started.elapsed();
    }
    let cached = cached / 10;
    let plugin = plugin.expect("loaded");
    let mut instantiate = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        warm_runtime.describe(&plugin).await?;
        instantiate += started.elapsed();
    }
    let instantiate = instantiate / 20;
    println!(
        "{:<36} {:>9.1} ms",
        "cold: compile with Cranelift",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "{:<36} {:>9.2} ms  ({:.0}x faster)",
        "cached: load compiled code",
        cached.as_secs_f64() * 1e3,
        cold.as_secs_f64() / cached.as_secs_f64()
    );
    println!(
        "{:<36} {:>9.2} ms",
        "instantiate + call info()",
        instantiate.as_secs_f64() * 1e3
    );
    Ok(())
}

fn write_random(path: &Path, len: u64) -> Result<()> {
    use rand::RngCore;
    let mut file = std::fs::File::create(path)?;
    let mut rng = rand::rng();
    let mut buf = vec![0u8; 8 << 20];
    let mut written = 0;
    while written < len {
        let n = (len - written).min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        std::io::Write::write_all(&mut file, &buf[..n])?;
        written += n as u64;
    }
    Ok(())
}

/// Reads the file twice (the first warms the page cache) and times the second.
fn native_read(path: &Path) -> Result<Duration> {
    let mut buf = vec![0u8; 4 << 20];
    let mut time = Duration::ZERO;
    for _ in 0..2 {
        let started = Instant::now();
        let mut file = std::fs::File::open(path)?;
        while file.read(&mut buf)? > 0 {}
        time = started.elapsed();
    }
    Ok(time)
}

//! Builds the built-in plugins for `wasm32-wasip2` and puts them in `OUT_DIR/plugins` for
//! `include_bytes!`. The plugins have their own workspace and target directory (as
//! wasmtime's test-programs do), so this nested cargo never waits on the outer one's lock.
//! Each plugin is its own cargo invocation: a source and a sink enable different features
//! of cairn-sdk, which one invocation would unify.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// (cargo package, wasm file name)
const BUILTINS: &[(&str, &str)] = &[
    ("cairn-source-filesystem", "cairn_source_filesystem.wasm"),
    ("cairn-source-sqlite", "cairn_source_sqlite.wasm"),
    ("cairn-source-postgres", "cairn_source_postgres.wasm"),
    ("cairn-sink-local", "cairn_sink_local.wasm"),
    ("cairn-sink-s3", "cairn_sink_s3.wasm"),
];

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .context("host/ has a parent")?
        .to_path_buf();
    for watched in ["plugins", "sdk"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CAIRN_WASM_TARGET_DIR");

    let target_dir = wasm_target_dir(&root);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?).join("plugins");
    std::fs::create_dir_all(&out_dir)?;
    for (package, wasm) in BUILTINS {
        build(&root, &target_dir, package)?;
        let built = target_dir.join("wasm32-wasip2/release").join(wasm);
        std::fs::copy(&built, out_dir.join(wasm))
            .with_context(|| format!("copying {}", built.display()))?;
    }
    Ok(())
}

/// `$CAIRN_WASM_TARGET_DIR`, else `wasm/` inside the outer build's target directory.
fn wasm_target_dir(root: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("CAIRN_WASM_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("wasm")
}

fn build(root: &Path, target_dir: &Path, package: &str) -> Result<()> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join("plugins"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--package",
            package,
            "--target-dir",
        ])
        .arg(target_dir);
    // What the outer cargo set for this build script (flags, wrappers such as clippy-driver,
    // the target) must not leak into a build for another target.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let keep = key == "CARGO_HOME"
            || key == "CARGO_MAKEFLAGS"
            || key.starts_with("CARGO_NET")
            || key.starts_with("CARGO_REGISTRIES");
        let outer = key.starts_with("CARGO_")
            || key.starts_with("RUSTC")
            || matches!(
                key.as_ref(),
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if outer && !keep {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo to build plugin {package}"))?;
    if !status.success() {
        bail!(
            "building plugin {package} for wasm32-wasip2 failed; is the target installed? (`rustup target add wasm32-wasip2`)"
        );
    }
    Ok(())
}

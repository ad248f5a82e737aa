//! Fixtures for cairn's end-to-end tests: the built `cairn` binary, plugins built for
//! wasm32-wasip2 on demand, generated file trees, and tree comparison.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use rand::{Rng, RngCore, SeedableRng};

pub mod postgres;
pub mod s3;
pub mod sqlite;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `cairn` binary of this build (target/<profile>/cairn).
pub fn cairn_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/cairn
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("cairn");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so the binary is built",
        bin.display()
    );
    bin
}

fn wasm_target_dir() -> PathBuf {
    std::env::var_os("CAIRN_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("wasm"))
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Builds `package` of the cargo workspace at `dir` for wasm32-wasip2 (release) and
/// returns the path of its component.
pub fn build_wasm(dir: &Path, package: &str) -> PathBuf {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let target_dir = wasm_target_dir();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(dir)
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--package",
            package,
            "--target-dir",
        ])
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // scripts/test.sh lints the host's crates while building them; guest code is
        // linted for wasm32 on its own, so its builds here match host/build.rs's.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .status()
        .expect("running cargo");
    assert!(
        status.success(),
        "building {package} for wasm32-wasip2 failed"
    );
    let path = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    assert!(
        path.exists(),
        "{} not found after the build",
        path.display()
    );
    path
}

/// The test plugin that misbehaves on request (see tests/plugins/misbehave).
pub fn misbehave_plugin() -> PathBuf {
    build_wasm(
        &workspace_root().join("tests/plugins"),
        "cairn-test-misbehave",
    )
}

/// A `[[source]]` section: source `name` using `plugin` on `path`, plus extra option lines.
pub fn source_section(name: &str, plugin: &str, path: &Path, extra_options: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nplugin = \"{plugin}\"\n[source.options]\npath = \"{}\"\n{extra_options}\n\n",
        path.display()
    )
}

/// A port nothing listens on right now, on 127.0.0.1, for a test server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A scratch environment: a temp dir with a config, a repository and a private cache.
/// With `CAIRN_TEST_KEEP=1` every environment's directory is kept, and named on stderr,
/// to look into a failure (`--nocapture` shows the name).
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Environment variables every cairn run of this environment gets (credentials).
    vars: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        let keep = std::env::var_os("CAIRN_TEST_KEEP").is_some_and(|v| v == "1");
        let dir = tempfile::Builder::new()
            .prefix("cairn-test-")
            .disable_cleanup(keep)
            .tempdir()
            .expect("temp dir");
        if keep {
            eprintln!(
                "CAIRN_TEST_KEEP: this test's environment is {}",
                dir.path().display()
            );
        }
        Env {
            dir,
            vars: Vec::new(),
        }
    }

    /// Passes `vars` to every cairn this environment runs.
    pub fn with_vars(mut self, vars: &[(&str, &str)]) -> Env {
        self.vars
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("cairn.toml");
        std::fs::write(&path, text).expect("writing config");
        path
    }

    /// A config with the local sink at `repo/` and the given `[[source]]` sections.
    pub fn local_config(&self, sources: &str) -> PathBuf {
        self.write_config(&format!(
            "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n\n{sources}",
            self.path("repo").display()
        ))
    }

    /// `cairn ARGS` with this environment's config, cache and password.
    pub fn cairn(&self, args: &[&str]) -> Output {
        self.cairn_with(args, &[("CAIRN_PASSWORD", "correct horse battery staple")])
    }

    pub fn cairn_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("running cairn")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cairn_bin());
        // This environment's config, unless the test names another.
        if !args.contains(&"--config") {
            cmd.arg("--config").arg(self.path("cairn.toml"));
        }
        cmd.args(args)
            .env_remove("CAIRN_PASSWORD")
            .env_remove("CAIRN_CONFIG")
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env("CAIRN_PASSWORD", "correct horse battery staple")
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Runs cairn and insists it exits with `code`, returning stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.cairn(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "cairn {args:?}: {err}");
        err
    }

    /// Runs cairn and insists on success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// With a config whose one file-tree source `source` backs up `data`: init, backup,
    /// restore the latest snapshot into `out/`, insist the tree came back identical and
    /// that `check --read-data` finds no errors.
    pub fn round_trip_tree(&self, data: &Path, source: &str) {
        self.ok(&["init"]);
        self.ok(&["backup"]);
        let out = self.path("out");
        self.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
        assert_same_tree(data, &out.join(source));
        let check = self.ok(&["check", "--read-data"]);
        assert!(check.contains("no errors"), "{check}");
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `len` bytes that compress about 2:1 (random bytes interleaved with text).
pub fn semi_compressible(rng: &mut impl RngCore, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let words: [&[u8]; 6] = [
        b"backup ",
        b"restore ",
        b"snapshot ",
        b"chunk ",
        b"index ",
        b"pack ",
    ];
    while out.len() < len {
        let mut noise = [0u8; 64];
        rng.fill_bytes(&mut noise);
        out.extend_from_slice(&noise);
        for _ in 0..8 {
            out.extend_from_slice(words[rng.random_range(0..words.len())]);
        }
    }
    out.truncate(len);
    out
}

/// Generates a tree with nested and empty directories, empty files, a file of
/// `large_file` bytes, symlinks, names with spaces and UTF-8, varied modes and mtimes.
pub fn generate_tree(root: &Path, seed: u64, files: usize, large_file: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dirs = [
        "",
        "docs",
        "docs/drafts",
        "media/photos 2024",
        "media/vidéos",
        "empty",
        "deep/a/b/c/d",
    ];
    for d in dirs {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    for i in 0..files {
        let dir = dirs[i % (dirs.len() - 1) + usize::from(i % (dirs.len() - 1) >= 5)];
        let name = match i % 5 {
            0 => format!("file {i}.txt"),
            1 => format!("ünïcödé-{i}.md"),
            2 => format!("f{i}.bin"),
            3 => format!("empty-{i}"),
            _ => format!("notes_{i}.log"),
        };
        let len = match i % 5 {
            3 => 0,
            2 => rng.random_range(1..200_000),
            _ => rng.random_range(1..20_000),
        };
        let path = root.join(dir).join(name);
        std::fs::write(&path, semi_compressible(&mut rng, len)).expect("write");
        let mode = [0o644, 0o600, 0o755, 0o640, 0o444][i % 5];
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let mtime = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(1_500_000_000 + rng.random_range(0..100_000_000));
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .ok();
    }
    if large_file > 0 {
        let path = root.join("media/large.bin");
        let mut file = std::fs::File::create(&path).expect("create large");
        let mut written = 0;
        while written < large_file {
            let n = (large_file - written).min(8 << 20);
            std::io::Write::write_all(&mut file, &semi_compressible(&mut rng, n))
                .expect("write large");
            written += n;
        }
    }
    std::os::unix::fs::symlink("docs/file 0.txt", root.join("link-to-file")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling link")).expect("symlink");
    std::os::unix::fs::symlink("media", root.join("docs/link-to-dir")).expect("symlink");
    std::fs::set_permissions(
        root.join("docs/drafts"),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod dir");
}

/// What a tree looks like: per path, its kind, mode, mtime, size, content hash or link.
pub fn describe_tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path
            .strip_prefix(root)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::symlink_metadata(&path).expect("lstat");
        let desc = if meta.file_type().is_symlink() {
            format!(
                "link -> {}",
                std::fs::read_link(&path).expect("readlink").display()
            )
        } else if meta.is_dir() {
            walk(root, &path, out);
            format!("dir mode={:o} mtime={}", meta.mode() & 0o7777, meta.mtime())
        } else {
            let bytes = std::fs::read(&path).expect("read");
            format!(
                "file mode={:o} mtime={}.{} size={} blake3={}",
                meta.mode() & 0o7777,
                meta.mtime(),
                meta.mtime_nsec(),
                meta.len(),
                blake3_hex(&bytes)
            )
        };
        out.insert(rel, desc);
    }
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Asserts two trees are identical in contents and metadata, listing the differences.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = describe_tree(expected);
    let b = describe_tree(actual);
    let mut diffs = Vec::new();
    for (path, desc) in &a {
        match b.get(path) {
            None => diffs.push(format!("missing: {path}")),
            Some(other) if other != desc => {
                diffs.push(format!("{path}: expected {desc}, got {other}"))
            }
            _ => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("unexpected: {path}"));
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

/// Total size of the files below `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let meta = entry.metadata().expect("metadata");
            total += if meta.is_dir() {
                dir_size(&entry.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

/// The objects of one kind in a local repository (`data`, `index`, `snapshots`, `keys`).
pub fn repo_objects(repo: &Path, kind: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    collect(&path, out);
                } else if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    out.push(path);
                }
            }
        }
    }
    collect(&repo.join(kind), &mut out);
    out.sort();
    out
}

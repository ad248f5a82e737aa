//! A test harness for plugin authors: runs a built plugin `.wasm` in the real cairn
//! runtime, against a temporary repository, with temporary grants. No cairn setup needed.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use cairn_sdk::testing::Harness;
//! let harness = Harness::new()?;
//! let wasm = "target/wasm32-wasip2/release/my_source.wasm";
//! let options = serde_json::json!({ "path": harness.scratch("input")?.to_str() });
//! harness.backup(wasm, &options)?;
//! let restored = harness.restore(wasm, &options)?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use cairn::config::Config;
use cairn::lifecycle::backup::{BackupOptions, BackupReport};
use cairn::lifecycle::restore::{RestoreOptions, RestoreReport};
use cairn::lifecycle::{Session, backup, restore};

const PASSWORD: &[u8] = b"cairn test harness";

/// A temporary repository and scratch space, and a runtime to drive plugins with.
pub struct Harness {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    pub fn new() -> Result<Harness> {
        let dir = tempfile::tempdir().context("creating the harness directory")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok(Harness { dir, rt })
    }

    /// A fresh directory inside the harness, for fixtures and restore targets.
    pub fn scratch(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }

    fn session(
        &self,
        repository: &str,
        source: Option<(&str, &serde_json::Value)>,
    ) -> Result<Session> {
        let mut text = format!("[repository]\n{repository}\n");
        if let Some((plugin, options)) = source {
            let options: toml::Table =
                serde_json::from_value(options.clone()).context("options must be a JSON object")?;
            text.push_str(&format!(
                "\n[[source]]\nname = \"subject\"\nplugin = {}\n[source.options]\n{}",
                toml::Value::String(plugin.to_string()),
                toml::to_string(&options)?
            ));
        }
        let path = self.dir.path().join("cairn.toml");
        std::fs::write(&path, text)?;
        Session::new(Config::load(&path)?, Some(PASSWORD.to_vec()))
    }

    fn local_repository(&self) -> String {
        let repo = self.dir.path().join("repo");
        format!(
            "sink = \"local\"\n[repository.options]\npath = {}\n",
            toml::Value::String(repo.to_string_lossy().into())
        )
    }

    fn ensure_repository(&self, session: &Session) -> Result<()> {
        if !self.dir.path().join("repo").join("config").exists() {
            self.rt.block_on(session.init_repository())?;
        }
        Ok(())
    }

    /// Backs up a source plugin with `options` into the harness repository.
    pub fn backup(
        &self,
        wasm: impl AsRef<Path>,
        options: &serde_json::Value,
    ) -> Result<BackupReport> {
        let session = self.session(
            &self.local_repository(),
            Some((&wasm.as_ref().to_string_lossy(), options)),
        )?;
        self.ensure_repository(&session)?;
        let report = self.rt.block_on(backup::run(
            &session,
            &BackupOptions {
                tags: Vec::new(),
                progress: false,
            },
        ))?;
        if let Some(error) = report.sources.iter().find_map(|s| s.error.clone()) {
            bail!("backup failed: {error}");
        }
        Ok(report)
    }

    /// Restores the latest backup of the source plugin into a fresh scratch directory.
    pub fn restore(&self, wasm: impl AsRef<Path>, options: &serde_json::Value) -> Result<PathBuf> {
        let target = self
            .dir
            .path()
            .join("scratch")
            .join(format!("restore-{}", rand_suffix()));
        self.restore_to(wasm, options, &target.to_string_lossy())?;
        Ok(target)
    }

    /// Restores the latest backup to `target` (a path or a URL).
    pub fn restore_to(
        &self,
        wasm: impl AsRef<Path>,
        options: &serde_json::Value,
        target: &str,
    ) -> Result<RestoreReport> {
        let session = self.session(
            &self.local_repository(),
            Some((&wasm.as_ref().to_string_lossy(), options)),
        )?;
        let options = RestoreOptions {
            snapshot: "latest".into(),
            target: target.to_string(),
            source: Some("subject".into()),
            ..Default::default()
        };
        self.rt.block_on(restore::run(&session, &options))
    }

    /// Runs a sink plugin through the operations the repository relies on, then a backup
    /// and restore of a small tree through it. Fails with what went wrong.
    pub fn check_sink(&self, wasm: impl AsRef<Path>, options: &serde_json::Value) -> Result<()> {
        let options: toml::Table =
            serde_json::from_value(options.clone()).context("options must be a JSON object")?;
        let repository = format!(
            "sink = {}\n[repository.options]\n{}",
            toml::Value::String(wasm.as_ref().to_string_lossy().into()),
            toml::to_string(&options)?
        );
        let input = self.scratch("sink-check-input")?;
        std::fs::write(input.join("a.txt"), b"hello")?;
        std::fs::create_dir_all(input.join("dir"))?;
        std::fs::write(input.join("dir/b.bin"), vec![7u8; 3 << 20])?;
        let source = serde_json::json!({ "path": input.to_string_lossy() });
        let session = self.session(&repository, Some(("filesystem", &source)))?;
        self.rt.block_on(async {
            let backend = session.backend().await?;
            let data = Bytes::from_static(b"0123456789");
            backend.put("cairn-harness/x", data.clone(), false).await?;
            ensure!(backend.get("cairn-harness/x").await? == data, "get returned other bytes than put wrote");
            ensure!(&backend.get_range("cairn-harness/x", 2, 3).await?[..] == b"234", "get-range returned the wrong bytes");
            backend.put("cairn-harness/y", data.clone(), true).await?;
            match backend.put("cairn-harness/y", data.clone(), true).await {
                Err(e) if e.kind == cairn::repo::backend::BackendErrorKind::AlreadyExists => {}
                Err(e) => bail!("put-new over an existing object must fail with already-exists, got: {e}"),
                Ok(()) => bail!("put-new over an existing object succeeded: concurrent writers would overwrite each other"),
            }
            let mut listed: Vec<String> = backend.list("cairn-harness/").await?.into_iter().map(|(n, _)| n).collect();
            listed.sort();
            ensure!(listed == ["cairn-harness/x", "cairn-harness/y"], "list returned {listed:?}");
            backend.delete("cairn-harness/x").await?;
            backend.delete("cairn-harness/x").await.context("deleting a missing object must succeed")?;
            backend.delete("cairn-harness/y").await?;
            match backend.get("cairn-harness/x").await {
                Err(e) if e.is_not_found() => {}
                other => bail!("get of a deleted object must fail with not-found, got {:?}", other.map(|b| b.len())),
            }
            session.init_repository().await?;
            let report = backup::run(&session, &BackupOptions { tags: Vec::new(), progress: false }).await?;
            ensure!(report.ok(), "backup through the sink failed: {:?}", report.sources[0].error);
            let target = self.dir.path().join("scratch").join("sink-check-output");
            let options = RestoreOptions {
                snapshot: "latest".into(),
                target: target.to_string_lossy().into(),
                source: Some("subject".into()),
                ..Default::default()
            };
            restore::run(&session, &options).await?;
            ensure!(std::fs::read(target.join("dir/b.bin"))? == vec![7u8; 3 << 20], "restored bytes differ");
            Ok(())
        })
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

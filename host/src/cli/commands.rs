//! What each subcommand does with its arguments, and how its result is printed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Cli, Command, ExitStatus, KeyCommand, PluginCommand};
use crate::config::Config;
use crate::lifecycle::progress::human_bytes;
use crate::lifecycle::{Session, backup, check, restore, verify};
use crate::runtime::{Origin, PluginKind, Runtime, RuntimeOptions, WIT_VERSION, builtin};

pub async fn run(cli: &Cli) -> Result<ExitStatus> {
    let json = cli.global.json;
    match &cli.command {
        Command::Plugin(cmd) => plugin(cli, cmd).await,
        Command::Init => {
            let session = session(cli)?;
            let repo = session.init_repository().await?;
            let location = repo.backend().describe();
            print(
                json,
                &serde_json::json!({ "initialised": location, "id": repo.config().id }),
                || {
                    format!(
                        "created repository {} in the {location}",
                        &repo.config().id[..8]
                    )
                },
            );
            Ok(ExitStatus::Ok)
        }
        Command::Backup { tags } => {
            let session = session(cli)?;
            let report = backup::run(
                &session,
                &backup::BackupOptions {
                    tags: tags.clone(),
                    progress: !json,
                },
            )
            .await?;
            print(json, &report, || backup_text(&report));
            Ok(if report.ok() {
                ExitStatus::Ok
            } else {
                ExitStatus::Failed
            })
        }
        Command::Snapshots => {
            let session = session(cli)?;
            let repo = session.open_repository().await?;
            let manifests = repo.snapshots().await?;
            let listed = group_snapshots(manifests.into_iter().map(|(_, m)| m));
            print(json, &listed, || snapshots_text(&listed));
            Ok(ExitStatus::Ok)
        }
        Command::Restore {
            snapshot,
            target,
            source,
            force,
        } => {
            let session = session(cli)?;
            let options = restore::RestoreOptions {
                snapshot: snapshot.clone(),
                target: target.clone(),
                source: source.clone(),
                force: *force,
                progress: !json,
            };
            let report = restore::run(&session, &options).await?;
            print(json, &report, || {
                report
                    .sources
                    .iter()
                    .map(|s| {
                        format!(
                            "restored {} ({} items, {}) to {} in {:.1}s",
                            s.name,
                            s.items,
                            human_bytes(s.bytes),
                            s.target,
                            s.duration_secs
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(ExitStatus::Ok)
        }
        Command::Check {
            read_data,
            read_data_subset,
        } => {
            let session = session(cli)?;
            let subset = match read_data_subset {
                Some(text) => parse_percent(text)?,
                None => 100.0,
            };
            let options = check::CheckOptions {
                read_data: *read_data || read_data_subset.is_some(),
                subset_percent: subset,
                progress: !json,
            };
            let report = check::run(&session, &options).await?;
            print(json, &report, || check_text(&report));
            Ok(if report.ok() {
                ExitStatus::Ok
            } else {
                ExitStatus::Failed
            })
        }
        Command::Verify {
            snapshot,
            source,
            scratch,
        } => {
            let session = session(cli)?;
            let options = verify::VerifyOptions {
                snapshot: snapshot.clone(),
                source: source.clone(),
                scratch: scratch.clone(),
                progress: !json,
            };
            let report = verify::run(&session, &options).await?;
            print(json, &report, || verify_text(&report));
            Ok(if report.ok() {
                ExitStatus::Ok
            } else {
                ExitStatus::Failed
            })
        }
        Command::Key(cmd) => key(cli, cmd).await,
    }
}

fn session(cli: &Cli) -> Result<Session> {
    let config = Config::load(&cli.global.config)?;
    Session::new(
        config,
        password(cli.global.password_file.as_deref(), "CAIRN_PASSWORD")?,
    )
}

/// The password from a file (first line) or an environment variable; never echoed.
fn password(file: Option<&Path>, env: &str) -> Result<Option<Vec<u8>>> {
    if let Some(file) = file {
        let text = std::fs::read(file)
            .with_context(|| format!("reading password file {}", file.display()))?;
        let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        return Ok(Some(line.to_vec()));
    }
    Ok(std::env::var_os(env)
        .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec()))
}

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("reports serialise")
        );
    } else {
        let text = text();
        if !text.is_empty() {
            println!("{text}");
        }
    }
}

fn parse_percent(text: &str) -> Result<f64> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(anyhow::Error::new(crate::config::ConfigError::Invalid {
            path: "--read-data-subset".into(),
            line: 1,
            column: 1,
            message: format!("`{text}` is not a percentage between 0 and 100, like 10%"),
        })),
    }
}

fn backup_text(report: &backup::BackupReport) -> String {
    let mut lines = vec![format!(
        "snapshot {} at {}",
        &report.snapshot[..8],
        report.time.format("%Y-%m-%d %H:%M:%S UTC")
    )];
    for s in &report.sources {
        match &s.error {
            None => lines.push(format!(
                "  {:<16} ok      {} items, {} ({} new) in {:.1}s",
                s.name,
                s.counts.items,
                human_bytes(s.counts.bytes),
                human_bytes(s.bytes_new),
                s.duration_secs
            )),
            Some(e) => lines.push(format!("  {:<16} FAILED  {e}", s.name)),
        }
    }
    lines.push(format!(
        "stored {} in {:.1}s",
        human_bytes(report.bytes_stored),
        report.duration_secs
    ));
    if !report.ok() {
        lines.push("some sources failed: their previous snapshots are untouched".into());
    }
    lines.join("\n")
}

#[derive(Serialize)]
struct ListedSnapshot {
    id: String,
    time: chrono::DateTime<chrono::Utc>,
    hostname: String,
    tags: Vec<String>,
    sources: Vec<ListedSource>,
}

#[derive(Serialize)]
struct ListedSource {
    name: String,
    plugin: String,
    plugin_version: String,
    items: u64,
    bytes: u64,
    annotations: BTreeMap<String, String>,
}

fn group_snapshots(
    manifests: impl Iterator<Item = crate::repo::snapshot::SourceSnapshot>,
) -> Vec<ListedSnapshot> {
    let mut out: Vec<ListedSnapshot> = Vec::new();
    for m in manifests {
        let source = ListedSource {
            name: m.source.clone(),
            plugin: m.plugin.clone(),
            plugin_version: m.plugin_version.clone(),
            items: m.items,
            bytes: m.bytes,
            annotations: m.annotations.clone(),
        };
        match out.iter_mut().find(|s| s.id == m.snapshot) {
            Some(existing) => existing.sources.push(source),
            None => out.push(ListedSnapshot {
                id: m.snapshot,
                time: m.time,
                hostname: m.hostname,
                tags: m.tags,
                sources: vec![source],
            }),
        }
    }
    out.sort_by_key(|s| s.time);
    out
}

fn snapshots_text(list: &[ListedSnapshot]) -> String {
    if list.is_empty() {
        return "no snapshots yet".into();
    }
    let mut lines = vec![format!(
        "{:<10} {:<20} {:<16} {:<12} sources",
        "id", "time (UTC)", "host", "tags"
    )];
    for s in list {
        let sources = s
            .sources
            .iter()
            .map(|x| format!("{} ({})", x.name, human_bytes(x.bytes)))
            .collect::<Vec<_>>()
            .join(", ");
        lines.push(format!(
            "{:<10} {:<20} {:<16} {:<12} {sources}",
            &s.id[..8],
            s.time.format("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            s.tags.join(",")
        ));
    }
    lines.join("\n")
}

fn check_text(report: &check::CheckReport) -> String {
    let mut lines = Vec::new();
    for w in &report.warnings {
        lines.push(format!("warning: {}: {}", w.object, w.message));
    }
    for e in &report.errors {
        lines.push(format!("error: {}: {}", e.object, e.message));
    }
    lines.push(format!(
        "{} index files, {} packs ({} read), {} chunks, {} snapshot manifests: {}",
        report.index_files,
        report.packs,
        report.packs_read,
        report.chunks,
        report.snapshots,
        if report.ok() {
            "no errors".to_string()
        } else {
            format!("{} errors", report.errors.len())
        }
    ));
    lines.join("\n")
}

fn verify_text(report: &verify::VerifyReport) -> String {
    let mut lines = vec![format!(
        "snapshot {} of {}",
        &report.snapshot[..8.min(report.snapshot.len())],
        report.time.format("%Y-%m-%d %H:%M:%S UTC")
    )];
    for s in &report.sources {
        let verdict = if s.passed { "passed" } else { "FAILED" };
        lines.push(format!(
            "  {:<16} {verdict}  restored and checked in {:.1}s",
            s.name, s.duration_secs
        ));
        if let Some(e) = &s.error {
            lines.push(format!("    error: {e}"));
        }
        for c in &s.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            lines.push(format!("    {mark} {}: {}", c.name, c.detail));
        }
    }
    lines.join("\n")
}

async fn key(cli: &Cli, cmd: &KeyCommand) -> Result<ExitStatus> {
    let session = session(cli)?;
    let repo = session.open_repository().await?;
    let json = cli.global.json;
    match cmd {
        KeyCommand::Add { new_password_file } => {
            let new = password(new_password_file.as_deref(), "CAIRN_NEW_PASSWORD")?.context(
                "no new password: pass --new-password-file FILE or set CAIRN_NEW_PASSWORD",
            )?;
            if new.is_empty() {
                bail!("the new password is empty");
            }
            let name = repo.add_key(&new).await?;
            let id = name.trim_start_matches("keys/");
            print(json, &serde_json::json!({ "added": id }), || {
                format!("added key {}", &id[..8])
            });
        }
        KeyCommand::List => {
            let slots = repo.key_slots().await?;
            let listed: Vec<_> = slots
                .iter()
                .map(|(name, slot)| {
                    let id = name.trim_start_matches("keys/");
                    serde_json::json!({
                        "id": id,
                        "current": name == repo.unlocked_slot(),
                        "created": slot.created,
                        "hostname": slot.hostname,
                        "username": slot.username,
                    })
                })
                .collect();
            print(json, &listed, || {
                slots
                    .iter()
                    .map(|(name, slot)| {
                        let id = name.trim_start_matches("keys/");
                        let mark = if name == repo.unlocked_slot() {
                            "*"
                        } else {
                            " "
                        };
                        format!(
                            "{mark} {}  {}  {}@{}",
                            &id[..8],
                            slot.created.format("%Y-%m-%d %H:%M"),
                            slot.username,
                            slot.hostname
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        KeyCommand::Remove { id } => {
            let slots = repo.key_slots().await?;
            let matching: Vec<_> = slots
                .iter()
                .filter(|(name, _)| name.trim_start_matches("keys/").starts_with(id.as_str()))
                .collect();
            let (name, _) = match matching.as_slice() {
                [one] => *one,
                [] => bail!("no key slot {id}"),
                _ => bail!("key id {id} is ambiguous"),
            };
            if name == repo.unlocked_slot() {
                bail!(
                    "refusing to remove the key slot the current password opens: open with another password to remove it"
                );
            }
            repo.backend().delete(name).await?;
            print(
                json,
                &serde_json::json!({ "removed": name.trim_start_matches("keys/") }),
                || format!("removed key {id}"),
            );
        }
    }
    Ok(ExitStatus::Ok)
}

#[derive(Serialize)]
struct ListedPlugin {
    name: String,
    kind: String,
    version: String,
    wit_version: String,
    origin: String,
    description: String,
}

async fn plugin(cli: &Cli, cmd: &PluginCommand) -> Result<ExitStatus> {
    let json = cli.global.json;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    match cmd {
        PluginCommand::List => {
            let mut specs: Vec<String> = builtin::names().into_iter().map(String::from).collect();
            // Third-party plugins the config names, if there is a config.
            if let Ok(config) = Config::load(&cli.global.config) {
                specs.extend(
                    config
                        .plugin_specs()
                        .into_iter()
                        .filter(|s| builtin::find(s).is_none()),
                );
            }
            let mut listed = Vec::new();
            for spec in specs {
                let plugin = runtime.load(&spec)?;
                let info = runtime.describe(&plugin).await?;
                listed.push(ListedPlugin {
                    // A built-in preset (`r2`) is listed under its own name.
                    name: if builtin::find(&spec).is_some() {
                        spec.clone()
                    } else {
                        info.name
                    },
                    kind: plugin.kind.to_string(),
                    version: info.version,
                    wit_version: plugin.wit_version.clone(),
                    origin: plugin.origin.to_string(),
                    description: info.description,
                });
            }
            print(json, &listed, || {
                let mut lines = vec![format!(
                    "{:<14} {:<7} {:<9} {:<6} origin",
                    "name", "kind", "version", "wit"
                )];
                for p in &listed {
                    lines.push(format!(
                        "{:<14} {:<7} {:<9} {:<6} {}",
                        p.name, p.kind, p.version, p.wit_version, p.origin
                    ));
                }
                lines.join("\n")
            });
        }
        PluginCommand::Inspect { plugin } => {
            let loaded = runtime.load(plugin)?;
            let info = runtime.describe(&loaded).await?;
            let schema: serde_json::Value = serde_json::from_str(&info.options_schema)
                .unwrap_or(serde_json::Value::String(info.options_schema.clone()));
            let restore_target = format!("{:?}", info.restore_target).to_lowercase();
            let value = serde_json::json!({
                "name": info.name,
                "kind": loaded.kind.to_string(),
                "version": info.version,
                "wit_version": loaded.wit_version,
                "host_wit_version": WIT_VERSION,
                "origin": loaded.origin.to_string(),
                "description": info.description,
                "restore_target": if loaded.kind == PluginKind::Source { Some(restore_target) } else { None },
                "options_schema": schema,
            });
            print(json, &value, || {
                format!(
                    "{} {} ({} plugin, WIT {}, {})\n{}\n\noptions schema:\n{}",
                    info.name,
                    info.version,
                    loaded.kind,
                    loaded.wit_version,
                    match &loaded.origin {
                        Origin::Builtin => "built-in".to_string(),
                        Origin::File(p) => p.display().to_string(),
                    },
                    info.description,
                    serde_json::to_string_pretty(&schema).unwrap_or_default()
                )
            });
        }
    }
    Ok(ExitStatus::Ok)
}

//! What each subcommand does with its arguments, and how its result is printed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Cli, Command, ExitStatus, KeepFlags, KeyCommand, PluginCommand};
use crate::config::Config;
use crate::lifecycle::progress::human_bytes;
use crate::lifecycle::{Session, backup, check, drill, forget, prune, restore, status, verify};
use crate::repo::duration::{parse_period, parse_span};
use crate::repo::ops::retention::Policy;
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
            clean,
            into_live,
        } => {
            let session = session(cli)?;
            let options = restore::RestoreOptions {
                snapshot: snapshot.clone(),
                target: target.clone(),
                source: source.clone(),
                force: *force,
                clean: *clean,
                into_live: *into_live,
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
            keep,
        } => {
            let session = session(cli)?;
            let options = verify::VerifyOptions {
                snapshot: snapshot.clone(),
                source: source.clone(),
                scratch: scratch.clone(),
                keep: *keep,
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
        Command::Forget {
            keep,
            sources,
            dry_run,
            prune,
            grace,
        } => {
            let session = session(cli)?;
            let mut warnings = Vec::new();
            let policy = keep_policy(keep, &mut warnings)?;
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            let grace = grace_of(grace)?;
            let repo = session.open_repository().await?;
            let options = forget::ForgetOptions {
                dry_run: *dry_run,
                sources: (!sources.is_empty()).then(|| sources.clone()),
                policy,
            };
            let report = forget::run(&repo, &session.config, &options).await?;
            let pruned = if *prune && report.ok() {
                let options = prune::PruneOptions {
                    grace,
                    dry_run: *dry_run,
                };
                Some(prune::run(&repo, &options).await?)
            } else {
                None
            };
            let value = serde_json::json!({ "forget": report, "prune": pruned });
            print(json, &value, || {
                let mut text = forget_text(&report);
                if let Some(p) = &pruned {
                    text.push('\n');
                    text.push_str(&prune_text(p));
                }
                text
            });
            Ok(if report.ok() {
                ExitStatus::Ok
            } else {
                ExitStatus::Failed
            })
        }
        Command::Prune { grace, dry_run } => {
            let session = session(cli)?;
            let options = prune::PruneOptions {
                grace: grace_of(grace)?,
                dry_run: *dry_run,
            };
            let repo = session.open_repository().await?;
            let report = prune::run(&repo, &options).await?;
            print(json, &report, || prune_text(&report));
            Ok(ExitStatus::Ok)
        }
        Command::Drill { source, scratch } => {
            let session = session(cli)?;
            let options = drill::DrillOptions {
                source: source.clone(),
                scratch: scratch.clone(),
                progress: !json,
            };
            let report = drill::run(&session, &options).await?;
            print(json, &report, || drill_text(&report));
            Ok(if report.ok() {
                ExitStatus::Ok
            } else {
                ExitStatus::Failed
            })
        }
        Command::Status => {
            let session = session(cli)?;
            let report = status::run(&session).await?;
            print(json, &report, || status_text(&report));
            Ok(ExitStatus::Ok)
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
        _ => Err(usage_error(
            "--read-data-subset",
            format!("`{text}` is not a percentage between 0 and 100, like 10%"),
        )),
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
    if let Some(retention) = &report.retention {
        for s in &retention.sources {
            match &s.refused {
                Some(refused) => lines.push(format!("retention: {refused}")),
                None if !s.removed.is_empty() => lines.push(format!(
                    "retention: removed {} snapshot(s) of {} ({})",
                    s.removed.len(),
                    s.source,
                    s.policy
                )),
                None => {}
            }
        }
    }
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

fn usage_error(flag: &str, message: String) -> anyhow::Error {
    anyhow::Error::new(crate::config::ConfigError::Invalid {
        path: flag.into(),
        line: 1,
        column: 1,
        message,
    })
}

/// The policy the `--keep-*` flags spell, if any flag was given.
fn keep_policy(keep: &KeepFlags, warnings: &mut Vec<String>) -> Result<Option<Policy>> {
    let mut policy = Policy::default();
    for (key, n) in [
        ("keep-last", keep.keep_last),
        ("keep-hourly", keep.keep_hourly),
        ("keep-daily", keep.keep_daily),
        ("keep-weekly", keep.keep_weekly),
        ("keep-monthly", keep.keep_monthly),
        ("keep-yearly", keep.keep_yearly),
    ] {
        if let Some(n) = n {
            policy.set_count(key, n, warnings);
        }
    }
    if let Some(text) = &keep.keep_within {
        policy.keep_within = Some(parse_period(text).ok_or_else(|| {
            usage_error(
                "--keep-within",
                format!("`{text}` is not a duration like 30d or 12h"),
            )
        })?);
    }
    policy.keep_tags = keep.keep_tags.clone();
    Ok((!policy.is_empty()).then_some(policy))
}

fn grace_of(text: &str) -> Result<chrono::Duration> {
    if text.trim() == "0" || text.trim() == "0s" {
        return Ok(chrono::Duration::zero());
    }
    parse_span(text)
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .ok_or_else(|| {
            usage_error(
                "--grace",
                format!("`{text}` is not a duration like 24h or 90m"),
            )
        })
}

fn forget_text(report: &forget::ForgetReport) -> String {
    let mut lines = Vec::new();
    if report.sources.is_empty() {
        lines.push(
            "no retention policy applies: configure [retention] or pass --keep-* flags".into(),
        );
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for s in &report.sources {
        lines.push(format!("{} ({}):", s.source, s.policy));
        if let Some(refused) = &s.refused {
            lines.push(format!("  REFUSED: {refused}"));
        }
        for k in &s.kept {
            lines.push(format!(
                "  keep    {}  {}  {}",
                &k.snapshot[..8],
                k.time.format("%Y-%m-%d %H:%M"),
                k.reasons.join(", ")
            ));
        }
        for r in &s.removed {
            let verb = if s.refused.is_some() { "kept" } else { verb };
            lines.push(format!(
                "  {verb:<7} {}  {}",
                &r.snapshot[..8],
                r.time.format("%Y-%m-%d %H:%M")
            ));
        }
    }
    lines.join("\n")
}

fn prune_text(report: &prune::PruneReport) -> String {
    let mut lines = Vec::new();
    let prefix = if report.dry_run { "would have " } else { "" };
    lines.push(format!(
        "{prefix}deleted {} packs, freeing {}",
        report.packs_deleted,
        human_bytes(report.bytes_freed),
    ));
    if report.packs_kept > 0 {
        lines.push(format!(
            "kept {} condemned packs: snapshots written since need them",
            report.packs_kept
        ));
    }
    if report.packs_condemned > 0 {
        lines.push(format!(
            "{prefix}condemned {} packs ({}), {} of them repacked ({} of live data copied): a prune after the grace period deletes them",
            report.packs_condemned,
            human_bytes(report.bytes_condemned),
            report.packs_repacked,
            human_bytes(report.bytes_repacked)
        ));
    }
    if report.packs_waiting > 0 {
        lines.push(format!(
            "{} packs condemned earlier are still within the grace period",
            report.packs_waiting
        ));
    }
    lines.join("\n")
}

fn drill_text(report: &drill::DrillReport) -> String {
    let mut lines = vec![format!(
        "{:<16} {:<8} {:>9} {:>12} {:>10} {:>8}  snapshot",
        "source", "result", "RTO", "RPO", "size", "checks"
    )];
    for s in &report.sources {
        lines.push(format!(
            "{:<16} {:<8} {:>8.1}s {:>12} {:>10} {:>4}/{:<3}  {} ({})",
            s.verified.name,
            if s.verified.passed {
                "passed"
            } else {
                "FAILED"
            },
            s.rto_secs,
            human_age(s.rpo_secs),
            human_bytes(s.verified.bytes),
            s.checks_passed,
            s.checks_total,
            &s.snapshot[..8],
            s.snapshot_time.format("%Y-%m-%d %H:%M")
        ));
        if !s.verified.passed {
            lines.push(format!("    {}", drill::failure_of(&s.verified)));
        }
    }
    lines.join("\n")
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn status_text(report: &[status::SourceStatus]) -> String {
    let when = |e: &Option<status::Event>| {
        e.as_ref()
            .map(|e| e.time.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "never".into())
    };
    let mut lines = vec![format!(
        "{:<16} {:>9} {:<17} {:<17} {:<17} {:<17}",
        "source", "snapshots", "newest", "last success", "last failure", "last drill"
    )];
    for s in report {
        let newest = s
            .newest_snapshot
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "none".into());
        let drill = match &s.last_drill {
            Some(d) => format!(
                "{} {}",
                when(&s.last_drill),
                if d.ok { "ok" } else { "FAILED" }
            ),
            None => "never".into(),
        };
        lines.push(format!(
            "{:<16} {:>9} {:<17} {:<17} {:<17} {}",
            s.source,
            s.snapshots,
            newest,
            when(&s.last_success),
            when(&s.last_failure),
            drill
        ));
        if let Some(f) = &s.last_failure
            && let Some(e) = &f.error
        {
            lines.push(format!("    last failure: {e}"));
        }
        if let Some(d) = &s.last_drill
            && let Some(e) = &d.error
        {
            lines.push(format!("    last drill: {e}"));
        }
    }
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

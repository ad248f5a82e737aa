//! One module a subcommand: each takes its parsed arguments, runs the lifecycle step and
//! returns a [`Report`](super::report::Report). The helpers here are what several share:
//! opening a session, reading a password, reporting a bad flag, the `--grace` grammar.

pub mod backup;
pub mod check;
pub mod drill;
pub mod forget;
mod init;
pub mod key;
pub mod ls;
pub mod plugin;
pub mod prune;
pub mod repair;
pub mod replicate;
pub mod restore;
mod snapshots;
mod status;
pub mod timeline;
pub mod verify;

use std::path::Path;

use anyhow::Result;

use super::report::emit;
use super::{Cli, Command, ExitStatus};
use crate::config::Config;
use crate::lifecycle::Session;
use crate::repo::duration::parse_span;

pub async fn run(cli: &Cli) -> Result<ExitStatus> {
    let json = cli.global.json;
    Ok(match &cli.command {
        Command::Init => emit(json, &init::run(cli).await?),
        Command::Backup(args) => emit(json, &backup::run(cli, args).await?),
        Command::Snapshots => emit(json, &snapshots::run(cli).await?),
        Command::Ls(args) => ls::run(cli, args).await?,
        Command::Restore(args) => emit(json, &restore::run(cli, args).await?),
        Command::Check(args) => emit(json, &check::run(cli, args).await?),
        Command::Verify(args) => emit(json, &verify::run(cli, args).await?),
        Command::Forget(args) => emit(json, &forget::run(cli, args).await?),
        Command::Prune(args) => emit(json, &prune::run(cli, args).await?),
        Command::Repair(cmd) => emit(json, &repair::run(cli, cmd).await?),
        Command::Drill(args) => emit(json, &drill::run(cli, args).await?),
        Command::Replicate(args) => emit(json, &replicate::run(cli, args).await?),
        Command::Timeline(args) => emit(json, &timeline::run(cli, args).await?),
        Command::Status => emit(json, &status::run(cli).await?),
        Command::Key(cmd) => emit(json, &key::run(cli, cmd).await?),
        Command::Plugin(cmd) => emit(json, &plugin::run(cli, cmd).await?),
    })
}

/// The configuration and password every repository command starts from.
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
        let text = std::fs::read(file).map_err(|e| {
            crate::config::ConfigError::Password(format!(
                "cannot read password file {}: {e}; check --password-file",
                file.display()
            ))
        })?;
        let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        return Ok(Some(line.to_vec()));
    }
    Ok(std::env::var_os(env)
        .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec()))
}

/// A bad flag value, reported (and exiting 2) as a configuration error naming the flag.
fn usage_error(flag: &str, message: String) -> anyhow::Error {
    anyhow::Error::new(crate::config::ConfigError::Invalid {
        path: flag.into(),
        line: 1,
        column: 1,
        message,
    })
}

/// `--grace`: a span of time (`m` is minutes), or 0.
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

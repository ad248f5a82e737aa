//! `cairn forget`: apply retention, then (with `--prune`) prune what no snapshot needs.

use anyhow::Result;
use serde::Serialize;

use super::{grace_of, session, usage_error};
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::forget::{self, ForgetReport};
use crate::repo::duration::parse_period;
use crate::repo::ops::prune::{self, PruneReport};
use crate::repo::ops::retention::Policy;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub keep: KeepFlags,
    /// Only this source (repeatable).
    #[arg(long = "source", value_name = "NAME")]
    pub sources: Vec<String>,
    /// List what would be removed and which rule keeps each survivor; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Then prune unreferenced data.
    #[arg(long)]
    pub prune: bool,
    /// With --prune: see `cairn prune --grace`.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub grace: String,
}

/// Retention rules on the command line, spelled as in the config's `[retention]`.
#[derive(Debug, clap::Args)]
pub struct KeepFlags {
    /// Keep the newest N snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep snapshots within this long of the newest one (30d, 12h, 2w).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep the newest snapshot of each of the last N hours.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep snapshots with this tag (repeatable).
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
}

/// What forget removed and, if it ran, what the prune after it did.
pub struct Forgotten {
    forget: ForgetReport,
    prune: Option<PruneReport>,
}

/// As `forget --json` has always printed it: both reports' keys sorted.
impl Serialize for Forgotten {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({ "forget": self.forget, "prune": self.prune }).serialize(serializer)
    }
}

pub async fn run(cli: &Cli, args: &Args) -> Result<Forgotten> {
    let session = session(cli)?;
    let mut warnings = Vec::new();
    let policy = keep_policy(&args.keep, &mut warnings)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let grace = grace_of(&args.grace)?;
    let repo = session.open_repository().await?;
    let options = forget::ForgetOptions {
        dry_run: args.dry_run,
        sources: (!args.sources.is_empty()).then(|| args.sources.clone()),
        policy,
    };
    let forgotten = forget::run(&repo, &session.config, &options).await?;
    let pruned = if args.prune && forgotten.ok() {
        let options = prune::PruneOptions {
            grace,
            dry_run: args.dry_run,
        };
        Some(prune::run(&repo, &options).await?)
    } else {
        None
    };
    Ok(Forgotten {
        forget: forgotten,
        prune: pruned,
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

impl Report for Forgotten {
    fn ok(&self) -> bool {
        self.forget.ok()
    }

    fn text(&self) -> String {
        let mut text = forget_text(&self.forget);
        if let Some(p) = &self.prune {
            text.push('\n');
            text.push_str(&p.text());
        }
        text
    }
}

fn forget_text(report: &ForgetReport) -> String {
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

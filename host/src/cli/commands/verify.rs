//! `cairn verify`: restore a snapshot into scratch space and check it there.

use anyhow::Result;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::verify::{self, VerifyReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A snapshot id (or a unique prefix of one), or `latest`. Leave it out with --at.
    #[arg(required_unless_present = "at", conflicts_with = "at")]
    pub snapshot: Option<String>,
    /// Verify only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Verify the replicated source's point in time TIME (RFC 3339, or `latest` for the
    /// newest point stored) instead of a snapshot: restored as `restore --at` would, into
    /// scratch space, and checked there. Needs --source.
    #[arg(long, value_name = "TIME", requires = "source")]
    pub at: Option<String>,
    /// The scratch database for sources restored to a server (never the live one).
    #[arg(long, value_name = "URL")]
    pub scratch: Option<String>,
    /// Leave the scratch database in place for inspection.
    #[arg(long)]
    pub keep: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<VerifyReport> {
    if let (Some(at), Some(source)) = (&args.at, &args.source) {
        return verify::run_at(&session(cli)?, source, at, !cli.global.json).await;
    }
    let options = verify::VerifyOptions {
        snapshot: args.snapshot.clone().unwrap_or_default(),
        source: args.source.clone(),
        scratch: args.scratch.clone(),
        keep: args.keep,
        progress: !cli.global.json,
    };
    verify::run(&session(cli)?, &options).await
}

impl Report for VerifyReport {
    fn ok(&self) -> bool {
        VerifyReport::ok(self)
    }

    fn text(&self) -> String {
        let mut lines = vec![match &self.at {
            Some(at) => format!(
                "point in time {} (asked for {})",
                at.reached.format("%Y-%m-%d %H:%M:%S UTC"),
                at.requested.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => format!(
                "snapshot {} of {}",
                &self.snapshot[..8.min(self.snapshot.len())],
                self.time.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        }];
        for s in &self.sources {
            if s.refused {
                lines.push(format!("  {:<16} refused  nothing was restored", s.name));
            } else {
                let verdict = if s.passed { "passed" } else { "FAILED" };
                lines.push(format!(
                    "  {:<16} {verdict}  restored and checked in {:.1}s",
                    s.name, s.duration_secs
                ));
            }
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
}

//! `cairn drill`: restore the newest snapshot of every source into scratch space, verify
//! it, and report the time to restore (RTO) and the age of what was restored (RPO).

use anyhow::Result;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::drill::{self, DrillReport};
use crate::lifecycle::progress::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Drill only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// The scratch database for sources restored to a server (never the live one).
    #[arg(long, value_name = "URL")]
    pub scratch: Option<String>,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<DrillReport> {
    let options = drill::DrillOptions {
        source: args.source.clone(),
        scratch: args.scratch.clone(),
        progress: !cli.global.json,
    };
    drill::run(&session(cli)?, &options).await
}

impl Report for DrillReport {
    fn ok(&self) -> bool {
        DrillReport::ok(self)
    }

    fn text(&self) -> String {
        let mut lines = vec![format!(
            "{:<16} {:<8} {:>9} {:>12} {:>10} {:>8}  snapshot",
            "source", "result", "RTO", "RPO", "size", "checks"
        )];
        for s in &self.sources {
            lines.push(format!(
                "{:<16} {:<8} {:>8.1}s {:>12} {:>10} {:>4}/{:<3}  {} ({})",
                s.verified.name,
                match (s.verified.passed, s.verified.refused) {
                    (true, _) => "passed",
                    (false, true) => "refused",
                    (false, false) => "FAILED",
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
}

/// An age in the largest unit that keeps it readable: 90s, 12m, 5h, 3d.
fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

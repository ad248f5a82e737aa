//! `cairn timeline`: the restorable ranges of each source, and the gaps between them.

use anyhow::Result;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::timeline::{self, TimelineReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<TimelineReport> {
    timeline::run(&session(cli)?, args.source.as_deref()).await
}

const TIME: &str = "%Y-%m-%d %H:%M:%S UTC";

impl Report for TimelineReport {
    fn text(&self) -> String {
        if self.sources.is_empty() {
            return "no source has a chain yet: run `cairn replicate`".into();
        }
        let mut lines = Vec::new();
        for source in &self.sources {
            lines.push(format!("{}:", source.source));
            let mut previous: Option<&timeline::Range> = None;
            for range in &source.ranges {
                if let Some(before) = previous {
                    lines.push(format!(
                        "  gap      {} .. {}: {}",
                        before.to.format(TIME),
                        range.from.format(TIME),
                        range.began
                    ));
                } else {
                    lines.push(format!("  began because {}", range.began));
                }
                lines.push(format!(
                    "  restore  {} .. {}  (snapshot {}, {} segments)",
                    range.from.format(TIME),
                    range.to.format(TIME),
                    &range.snapshot[..8.min(range.snapshot.len())],
                    range.segments
                ));
                previous = Some(range);
            }
        }
        lines.join("\n")
    }
}

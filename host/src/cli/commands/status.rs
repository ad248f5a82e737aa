//! `cairn status`: per source, the newest snapshot and the last backup, failure and drill.

use anyhow::Result;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::status::{self, Event, SourceStatus};

pub async fn run(cli: &Cli) -> Result<Vec<SourceStatus>> {
    status::run(&session(cli)?).await
}

impl Report for Vec<SourceStatus> {
    fn text(&self) -> String {
        let when = |e: &Option<Event>| {
            e.as_ref()
                .map(|e| e.time.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "never".into())
        };
        let mut lines = vec![format!(
            "{:<16} {:>9} {:<17} {:<17} {:<17} {:<17}",
            "source", "snapshots", "newest", "last success", "last failure", "last drill"
        )];
        for s in self {
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
}

//! `cairn replicate`: continuous replication in the foreground until SIGINT or SIGTERM,
//! then what is left is stored and it exits 0.

use anyhow::Result;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::progress::human_bytes;
use crate::lifecycle::replicate::{self, ReplicateReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Follow only this source (repeatable); by default every source with a
    /// [source.replicate] table.
    #[arg(long = "source", value_name = "NAME")]
    pub sources: Vec<String>,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<ReplicateReport> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("stopping: storing what is left");
        let _ = stop.send(true);
    });
    let options = replicate::ReplicateOptions {
        sources: args.sources.clone(),
        stop: stopped,
    };
    replicate::run(&session(cli)?, &options).await
}

impl Report for ReplicateReport {
    fn ok(&self) -> bool {
        ReplicateReport::ok(self)
    }

    fn text(&self) -> String {
        self.sources
            .iter()
            .map(|s| {
                let mut line = format!(
                    "{}: {} segments ({}){}{}{}{}",
                    s.name,
                    s.segments,
                    human_bytes(s.bytes),
                    match s.bundles {
                        0 => String::new(),
                        n => format!(", {} of them packed into {n} bundle(s)", s.bundled_segments),
                    },
                    match s.merges {
                        0 => String::new(),
                        n => format!(", {} bundles merged into {n}", s.merged_bundles),
                    },
                    if s.resumed {
                        ", went on from the last chain"
                    } else {
                        ""
                    },
                    match (&s.last_chain_reason, s.chains_begun) {
                        (Some(why), n) => format!(", {n} new chain(s), the last because {why}"),
                        (None, _) => String::new(),
                    }
                );
                if let Some(e) = &s.error {
                    line.push_str(&format!("\n  error: {e}"));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

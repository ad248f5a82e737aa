//! The `cairn` command line: argument parsing, output (human or `--json`) and exit codes.

mod commands;
mod exit;
mod report;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use exit::ExitStatus;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Backups whose sources and sinks are WASM plugins",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "CAIRN_CONFIG",
        default_value = "cairn.toml"
    )]
    pub config: PathBuf,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read the repository password from this file (else from $CAIRN_PASSWORD).
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Log more (-v: what happens, -vv: debugging detail). $CAIRN_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository at the configured sink.
    Init,
    /// Take one snapshot of every configured source.
    Backup(commands::backup::Args),
    /// List snapshots.
    Snapshots,
    /// List the items of a snapshot (`latest`, or an id prefix): kind, mode, size, mtime,
    /// path, and whether a file changed while it was read.
    Ls(commands::ls::Args),
    /// Restore a snapshot (each source to TARGET/<source>, or one source to TARGET).
    Restore(commands::restore::Args),
    /// Check the repository's structure and, with --read-data, every stored byte.
    Check(commands::check::Args),
    /// Prove a snapshot restorable: restore each source into scratch space and check it
    /// there (integrity checks, probes, row counts), never touching the live system.
    Verify(commands::verify::Args),
    /// Apply retention: remove the snapshots each source's policy does not keep (flags
    /// replace the configured policy). Data goes with --prune or `cairn prune`.
    Forget(commands::forget::Args),
    /// Remove data no snapshot needs, in two phases: condemn now, delete in a later prune
    /// once the grace period has passed (so concurrent backups never lose data).
    Prune(commands::prune::Args),
    /// Make a damaged repository readable again, saving what is intact: `packs`, then
    /// `index`, then `snapshots` (each with --dry-run).
    #[command(subcommand)]
    Repair(commands::repair::RepairCommand),
    /// Restore drill: restore the newest snapshot of every source into scratch space, verify
    /// it, and report time to restore (RTO) and age of the newest restorable point (RPO).
    Drill(commands::drill::Args),
    /// Continuous replication of the sources that offer it (sqlite), in the foreground
    /// until SIGINT or SIGTERM: changes stored at every sync interval, a fresh snapshot
    /// starting a new chain when needed. `cairn restore --at TIME` restores from it.
    Replicate(commands::replicate::Args),
    /// The points in time each source can be restored to, and the gaps between chains.
    Timeline(commands::timeline::Args),
    /// Per source: newest snapshot, last backup, last success, last failure, last drill.
    Status,
    /// Manage the repository's passwords (key slots).
    #[command(subcommand)]
    Key(commands::key::KeyCommand),
    /// List or inspect plugins.
    #[command(subcommand)]
    Plugin(commands::plugin::PluginCommand),
}

/// Parses arguments, runs the command and returns the process exit status.
pub fn main() -> ExitStatus {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitStatus::Failed;
        }
    };
    match runtime.block_on(commands::run(&cli)) {
        Ok(status) => status,
        Err(e) => {
            let status = exit::classify(&e);
            if cli.global.json {
                let out =
                    serde_json::json!({ "error": format!("{e:#}"), "exit_code": status as i32 });
                report::print_line(&out.to_string());
            }
            eprintln!("error: {e:#}");
            status
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug,cranelift=warn,wasmtime=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

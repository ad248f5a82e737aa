//! The `cairn` command line: argument parsing, output (human or `--json`) and exit codes.

mod commands;
mod exit;

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
    Backup {
        /// Tag the snapshot (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
    /// List snapshots.
    Snapshots,
    /// Restore a snapshot (each source to TARGET/<source>, or one source to TARGET).
    Restore {
        /// A snapshot id (or a unique prefix of one), or `latest`.
        snapshot: String,
        /// Where to restore: a directory, a file, or a URL, depending on the source.
        #[arg(long)]
        target: String,
        /// Restore only this source, directly to the target.
        #[arg(long)]
        source: Option<String>,
        /// Write into a non-empty target directory, or over an existing file.
        #[arg(long)]
        force: bool,
        /// Database targets: drop the objects the snapshot holds first, where they exist.
        #[arg(long)]
        clean: bool,
        /// Database targets: allow restoring into the very database the snapshot was
        /// taken from (refused otherwise, whatever the URL says).
        #[arg(long)]
        into_live: bool,
    },
    /// Check the repository's structure and, with --read-data, every stored byte.
    Check {
        /// Download and verify every pack.
        #[arg(long)]
        read_data: bool,
        /// Download and verify a random N% of the packs (implies --read-data).
        #[arg(long, value_name = "N%")]
        read_data_subset: Option<String>,
    },
    /// Prove a snapshot restorable: restore each source into scratch space and check it
    /// there (integrity checks, probes, row counts), never touching the live system.
    Verify {
        /// A snapshot id (or a unique prefix of one), or `latest`.
        snapshot: String,
        /// Verify only this source.
        #[arg(long)]
        source: Option<String>,
        /// The scratch database for sources restored to a server (never the live one).
        #[arg(long, value_name = "URL")]
        scratch: Option<String>,
        /// Leave the scratch database in place for inspection.
        #[arg(long)]
        keep: bool,
    },
    /// Apply retention: remove the snapshots each source's policy does not keep (flags
    /// replace the configured policy). Data goes with --prune or `cairn prune`.
    Forget {
        #[command(flatten)]
        keep: KeepFlags,
        /// Only this source (repeatable).
        #[arg(long = "source", value_name = "NAME")]
        sources: Vec<String>,
        /// List what would be removed and which rule keeps each survivor; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Then prune unreferenced data.
        #[arg(long)]
        prune: bool,
        /// With --prune: see `cairn prune --grace`.
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        grace: String,
    },
    /// Remove data no snapshot needs, in two phases: condemn now, delete in a later prune
    /// once the grace period has passed (so concurrent backups never lose data).
    Prune {
        /// How long condemned data waits before a prune deletes it; longer than any backup.
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        grace: String,
        /// Report what would be condemned and deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Restore drill: restore the newest snapshot of every source into scratch space, verify
    /// it, and report time to restore (RTO) and age of the newest restorable point (RPO).
    Drill {
        /// Drill only this source.
        #[arg(long)]
        source: Option<String>,
        /// The scratch database for sources restored to a server (never the live one).
        #[arg(long, value_name = "URL")]
        scratch: Option<String>,
    },
    /// Per source: newest snapshot, last backup, last success, last failure, last drill.
    Status,
    /// Manage the repository's passwords (key slots).
    #[command(subcommand)]
    Key(KeyCommand),
    /// List or inspect plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// Retention rules on the command line, spelled as in the config's `[retention]`.
#[derive(Debug, Args)]
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

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a password; the new one is read from --new-password-file or $CAIRN_NEW_PASSWORD.
    Add {
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// List key slots.
    List,
    /// Remove a key slot (not the one the current password opens).
    Remove {
        /// The slot id, as `cairn key list` shows it.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Built-in plugins and those the config names.
    List,
    /// A plugin's info and options schema.
    Inspect {
        /// A built-in name or a path to a .wasm file.
        plugin: String,
    },
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
                println!("{out}");
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

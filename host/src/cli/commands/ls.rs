//! `cairn ls`: the items of a snapshot, per source, in the order they were stored.

use anyhow::{Context, Result};
use serde::Serialize;

use super::session;
use crate::cli::{Cli, ExitStatus};
use crate::repo::read::{ChunkReader, ItemStream};
use crate::repo::tree::{ItemKind, ItemRecord};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A snapshot id (or a prefix of one), or `latest`.
    pub snapshot: String,
    /// Only this source's items.
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Serialize)]
struct ListedItem {
    source: String,
    path: String,
    kind: ItemKind,
    size: u64,
    mode: u32,
    mtime: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    /// Stored as read although it changed during every read (see the user guide).
    changed_while_read: bool,
}

/// Prints the items as it reads them, so that a listing of millions of items holds one
/// chunk of the list, and `cairn ls latest | head` stops once its reader is gone. With
/// `--json`, the output is one array, an item a line.
pub async fn run(cli: &Cli, args: &Args) -> Result<ExitStatus> {
    let repo = session(cli)?
        .open_repository()
        .await?
        .load_readable_index()
        .await?;
    let manifests = repo
        .find_snapshot(&args.snapshot, args.source.as_deref())
        .await?;
    let mut out = Printer::new(cli.global.json);
    for (name, manifest) in manifests {
        let mut items = ItemStream::new(ChunkReader::new(&repo), &manifest);
        while let Some(item) = items
            .next()
            .await
            .with_context(|| format!("reading the items of {name}"))?
        {
            if !out.item(&listed_item(&manifest.source, item)) {
                break;
            }
        }
    }
    Ok(out.finish())
}

fn listed_item(source: &str, item: ItemRecord) -> ListedItem {
    ListedItem {
        source: source.to_string(),
        mtime: (item.mtime_ns != 0).then(|| chrono::DateTime::from_timestamp_nanos(item.mtime_ns)),
        path: item.path,
        kind: item.kind,
        size: item.size,
        mode: item.mode,
        target: item.target,
        changed_while_read: item.changed_while_read,
    }
}

/// The human line of one item: kind and mode, size, mtime, `source/path`.
fn text_line(item: &ListedItem) -> String {
    let kind = match item.kind {
        ItemKind::Dir => 'd',
        ItemKind::File => '-',
        ItemKind::Symlink => 'l',
        ItemKind::Data => 'D',
    };
    let mtime = item
        .mtime
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into());
    let path = if item.path.is_empty() {
        "."
    } else {
        &item.path
    };
    let mut line = format!(
        "{kind}{:04o} {:>12} {mtime}  {}/{path}",
        item.mode & 0o7777,
        item.size,
        item.source
    );
    if let Some(target) = &item.target {
        line.push_str(&format!(" -> {target}"));
    }
    if item.changed_while_read {
        line.push_str("  [changed while read]");
    }
    line
}

/// Output written a buffer at a time; it stops at the first failed write.
struct Printer {
    json: bool,
    buffer: String,
    items: u64,
    gone: bool,
    /// A write failed other than by the reader going away: the listing is incomplete.
    failed: bool,
}

/// Bytes gathered before a write.
const BUFFER: usize = 64 * 1024;

impl Printer {
    fn new(json: bool) -> Printer {
        Printer {
            json,
            buffer: String::new(),
            items: 0,
            gone: false,
            failed: false,
        }
    }

    /// Adds an item; false once stdout is gone (nobody reads any more).
    fn item(&mut self, item: &ListedItem) -> bool {
        if self.json {
            self.buffer
                .push_str(if self.items == 0 { "[\n" } else { ",\n" });
            self.buffer
                .push_str(&serde_json::to_string(item).expect("items serialise"));
        } else {
            self.buffer.push_str(&text_line(item));
            self.buffer.push('\n');
        }
        self.items += 1;
        if self.buffer.len() >= BUFFER {
            self.write();
        }
        !self.gone
    }

    /// Ends the output; the exit status is a failure if it could not all be written.
    fn finish(mut self) -> ExitStatus {
        if self.json && !self.gone {
            self.buffer
                .push_str(if self.items == 0 { "[]\n" } else { "\n]\n" });
        }
        if !self.gone {
            self.write();
        }
        if self.failed {
            ExitStatus::Failed
        } else {
            ExitStatus::Ok
        }
    }

    /// A reader that went away ends the listing quietly (the command did what it could
    /// for it); any other failure, a full disk say, is reported and fails the command.
    fn write(&mut self) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Err(e) = out
            .write_all(self.buffer.as_bytes())
            .and_then(|()| out.flush())
        {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("error: writing the listing to stdout: {e}");
                self.failed = true;
            }
            self.gone = true;
        }
        self.buffer.clear();
    }
}

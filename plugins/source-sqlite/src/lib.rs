//! The `sqlite` source: consistent copies of live SQLite databases, checked before they
//! count. The host takes each copy with SQLite's online backup API (never a file copy),
//! and this plugin stores it in fixed, page-aligned chunks, so the next backup stores only
//! the pages that changed. A copy that fails its integrity check, or a probe, is refused:
//! the backup of this source fails and commits nothing.

use cairn_sdk::sqlite::{self, CheckLevel, Followed};
use cairn_sdk::{
    ChangeReader, ChangeWriter, CheckResult, Chunking, FollowStep, Info, ItemKind, ItemMeta,
    ItemReader, ItemWriter, PluginError, RestoreTarget, Result, Source, VerifyReport, files, host,
};
use serde::{Deserialize, Serialize};

/// Default bytes per chunk: 16 pages of 4 KiB. Small enough that a scattered change
/// rewrites little, large enough to keep the index small (bench/README.md, "SQLite chunk
/// size").
const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Options {
    /// One database file, or a glob matching several (`/srv/tenants/*.db`).
    path: String,
    /// How thoroughly each copy is checked before it counts.
    #[serde(default)]
    check: Check,
    /// Read-only queries run against each copy; results are recorded in the snapshot.
    #[serde(default)]
    probes: Vec<String>,
    /// Bytes per stored chunk: a multiple of the database's page size.
    chunk_size: Option<u32>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Check {
    #[default]
    Full,
    Quick,
}

impl Check {
    fn level(self) -> CheckLevel {
        match self {
            Check::Full => CheckLevel::Full,
            Check::Quick => CheckLevel::Quick,
        }
    }

    fn pragma(self) -> &'static str {
        match self {
            Check::Full => "integrity_check",
            Check::Quick => "quick_check",
        }
    }
}

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["path"],
  "additionalProperties": false,
  "properties": {
    "path": {
      "type": "string",
      "description": "Absolute path of the database file, or a glob matching several (/srv/tenants/*.db).",
      "x-cairn-grant": "read"
    },
    "check": {
      "enum": ["full", "quick"],
      "default": "full",
      "description": "PRAGMA integrity_check (full) or quick_check (quick), run on every copy before it is committed and on every restore."
    },
    "probes": {
      "type": "array",
      "items": { "type": "string" },
      "description": "Read-only SQL queries run against each copy (SELECT count(*) FROM events); results are recorded in the snapshot and compared by verify."
    },
    "chunk-size": {
      "type": "integer",
      "minimum": 512,
      "description": "Bytes per stored chunk, a multiple of the page size (default 65536)."
    }
  }
}"#;

struct Sqlite;

cairn_sdk::export_source!(Sqlite);

/// Whether to store the live file's chunks while the copy is taken. The copy holds every
/// page at the same offset as the live file, except those whose newest version is still
/// in the `-wal` (or, mid-transaction, saved in the `-journal`): with a journal of at most
/// 1% of the database, almost every chunk stored ahead is one the copy has, and the rest
/// costs little space until `prune`. Chunks must be at least the largest page size
/// (64 KiB), so that they are the copy's chunks whatever its page size. With 64 KiB chunks
/// (the default) the snapshot takes the store-ahead over and stores the copy's own chunks
/// as SQLite writes them, so none of them is wasted. A small database is copied in a
/// moment: storing it ahead would cost more than it saves.
fn store_ahead_pays(live: &str, size: u64, chunk: u32) -> bool {
    const LARGEST_PAGE: u32 = 65536;
    const SMALLEST_DATABASE: u64 = 8 << 20;
    // Storing ahead is only a head start: a journal we cannot measure means none.
    chunk >= LARGEST_PAGE
        && size >= SMALLEST_DATABASE
        && sqlite::journal_size(live).is_ok_and(|journal| journal <= size / 100)
}

/// A probe's result as recorded in the snapshot.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ProbeResult {
    sql: String,
    rows: Vec<Vec<String>>,
}

impl Source for Sqlite {
    type Options = Options;

    fn info() -> Info {
        Info {
            name: "sqlite",
            version: env!("CARGO_PKG_VERSION"),
            description: "Live SQLite databases (WAL or rollback journal), copied with the online backup API and integrity-checked before they count.",
            options_schema: SCHEMA,
            restore_target: RestoreTarget::File,
        }
    }

    fn validate(options: &Options) -> Result<()> {
        if !options.path.starts_with('/') {
            return Err(PluginError::config("path", "must be an absolute path"));
        }
        glob::Pattern::new(&options.path)
            .map_err(|e| PluginError::config("path", format!("invalid glob: {e}")))?;
        if let Some(size) = options.chunk_size
            && (!size.is_power_of_two() || !(512..=16 * 1024 * 1024).contains(&size))
        {
            return Err(PluginError::config(
                "chunk-size",
                "must be a power of two between 512 and 16777216 (so it is a multiple of any page size)",
            ));
        }
        for (i, probe) in options.probes.iter().enumerate() {
            if probe.trim().is_empty() {
                return Err(PluginError::config(format!("probes.{i}"), "empty query"));
            }
        }
        Ok(())
    }

    fn backup(options: &Options, writer: &ItemWriter) -> Result<()> {
        let databases = find_databases(&options.path)?;
        for (live, item) in &databases {
            backup_one(options, writer, live, item).map_err(|e| e.context(live))?;
        }
        host::info(format!(
            "captured {} database(s) matching {}",
            databases.len(),
            options.path
        ));
        Ok(())
    }

    fn restore(options: &Options, reader: &ItemReader, target: &str) -> Result<()> {
        let items = data_items(reader);
        let single = items.len() == 1;
        for item in &items {
            let dest = if single {
                target.to_string()
            } else {
                join(target, &item.path)
            };
            let problems = restore_one(options, reader, item, &dest)?;
            if !problems.is_empty() {
                return Err(PluginError::permanent(format!(
                    "the restored copy of {} fails {}: {}; {dest} was not written",
                    item.path,
                    options.check.pragma(),
                    problems.join("; ")
                )));
            }
            host::info(format!("restored {} to {dest}", item.path));
        }
        Ok(())
    }

    fn verify(options: &Options, reader: &ItemReader, scratch: &str) -> Result<VerifyReport> {
        let annotations = reader.annotation_map();
        let mut checks = Vec::new();
        for item in data_items(reader) {
            let dest = join(scratch, &item.path);
            let problems = restore_one(options, reader, &item, &dest)?;
            let sound = problems.is_empty();
            checks.push(CheckResult {
                name: format!("{}: {}", item.path, options.check.pragma()),
                passed: sound,
                detail: if sound {
                    "ok".into()
                } else {
                    problems.join("; ")
                },
            });
            // A copy that fails its check was not kept: its probes cannot run.
            if !sound {
                continue;
            }
            let db = sqlite::open(&dest)?;
            for i in 0.. {
                let Some(recorded) = annotations.get(&probe_key(&item.path, i)) else {
                    break;
                };
                let recorded: ProbeResult = serde_json::from_str(recorded).map_err(|e| {
                    PluginError::permanent(format!(
                        "probe {i} of {}: unreadable record: {e}",
                        item.path
                    ))
                })?;
                checks.push(CheckResult::compared(
                    format!("{}: probe `{}`", item.path, recorded.sql),
                    db.query(&recorded.sql),
                    &recorded.rows,
                    |rows| render(rows),
                ));
            }
            drop(db);
            files::remove(&dest)?;
        }
        if checks.is_empty() {
            return Err(PluginError::permanent("this snapshot holds no database"));
        }
        Ok(VerifyReport { checks })
    }

    fn follow(
        options: &Options,
        max_log: u64,
        items: &ItemWriter,
        changes: &ChangeWriter,
    ) -> Result<()> {
        follow_one(options, max_log, items, changes)
    }

    fn apply(options: &Options, changes: &ChangeReader, target: &str) -> Result<()> {
        apply_all(options, changes, target)
    }
}

/// Copies, stores, checks and probes one database. The check runs on a host thread while
/// the copy is stored; an error from any step fails the backup of this source.
fn backup_one(options: &Options, writer: &ItemWriter, live: &str, item: &str) -> Result<()> {
    let meta = files::stat(live)?;
    let chunk = options.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
    // A store ahead that cannot start costs only its head start.
    let ahead = store_ahead_pays(live, meta.size, chunk)
        .then(|| writer.store_ahead(live, Chunking::Fixed(chunk)).ok())
        .flatten();
    let copy = sqlite::snapshot(live)?;
    // The copy is taken: from here on, reading the live file again would only compete
    // with storing the copy.
    drop(ahead);
    store_copy(options, writer, &copy, meta, live, item)
}

/// Stores a copy of the live database `live` as item `item`, checks it while it is
/// stored, and records what verify compares.
fn store_copy(
    options: &Options,
    writer: &ItemWriter,
    copy: &sqlite::Database,
    mut meta: ItemMeta,
    live: &str,
    item: &str,
) -> Result<()> {
    copy.begin_check(options.check.level());
    let page_size = copy.page_size();
    let chunk = options
        .chunk_size
        .unwrap_or(DEFAULT_CHUNK_SIZE)
        .max(page_size);
    meta.path = item.to_string();
    meta.kind = ItemKind::Data;
    meta.size = copy.size();
    writer.add_blob(&meta, Chunking::Fixed(chunk), &copy.contents()?)?;
    let problems = copy.check(options.check.level())?;
    if !problems.is_empty() {
        return Err(PluginError::permanent(format!(
            "the copy fails {}: {}. The database itself is damaged: nothing of it was committed; repair it (sqlite3 .recover) or restore a good snapshot",
            options.check.pragma(),
            problems.join("; ")
        )));
    }
    writer.annotate(&format!("{item}.source"), live);
    writer.annotate(&format!("{item}.page-size"), &page_size.to_string());
    writer.annotate(&format!("{item}.pages"), &copy.page_count().to_string());
    writer.annotate(
        &format!("{item}.check"),
        &format!("{}: ok", options.check.pragma()),
    );
    for (i, sql) in options.probes.iter().enumerate() {
        let rows = copy
            .query(sql)
            .map_err(|e| e.context(format!("probe `{sql}`")))?;
        let record = serde_json::to_string(&ProbeResult {
            sql: sql.clone(),
            rows,
        })
        .map_err(|e| PluginError::permanent(e.to_string()))?;
        writer.annotate(&probe_key(item, i), &record);
    }
    host::debug(format!(
        "{live}: {} pages of {page_size} bytes in chunks of {chunk}",
        copy.page_count()
    ));
    Ok(())
}

/// Continuous capture of one database: a chain goes on from where the last one reached
/// when the log still holds that point, else begins with a fresh snapshot.
fn follow_one(
    options: &Options,
    max_log: u64,
    items: &ItemWriter,
    changes: &ChangeWriter,
) -> Result<()> {
    let [(live, item)] = find_databases(&options.path)?.try_into().map_err(|_| {
        PluginError::config(
            "path",
            "continuous replication follows one database: name its file, not a glob",
        )
    })?;
    let follower = sqlite::follow(&live)?;
    let mut new_chain = match changes.resume_point() {
        None => Some("the first chain of this source".to_string()),
        Some(point) => match follower.resume(&point)? {
            Followed::Continues((since, end)) => {
                append(changes, &since, &end)?;
                None
            }
            Followed::Gap(why) => Some(why),
        },
    };
    loop {
        if let Some(why) = new_chain.take() {
            changes.begin_snapshot()?;
            let (copy, start) = follower.snapshot()?;
            store_copy(options, items, &copy, files::stat(&live)?, &live, &item)?;
            drop(copy);
            changes.begin_chain(&start, &why)?;
            host::info(format!("{live}: a new chain begins: {why}"));
        }
        match changes.wait() {
            FollowStep::Snapshot => {
                new_chain = Some("a scheduled snapshot (snapshot-every)".into())
            }
            step => {
                match follower.sync(max_log)? {
                    Followed::Continues((since, end)) => append(changes, &since, &end)?,
                    Followed::Gap(why) => {
                        host::warn(format!("{live}: {why}"));
                        new_chain = Some(why);
                    }
                }
                if step == FollowStep::Stop {
                    return Ok(());
                }
            }
        }
    }
}

/// Appends what a sync read, if it read anything: an idle database stores nothing.
fn append(changes: &ChangeWriter, since: &cairn_sdk::Blob, end: &str) -> Result<()> {
    if since.size().unwrap_or(1) > 0 {
        changes.append(since, end)?;
    }
    Ok(())
}

/// Applies a point-in-time restore's segments onto the restored snapshot at `target`, then
/// checks the result.
fn apply_all(options: &Options, changes: &ChangeReader, target: &str) -> Result<()> {
    let mut applied = 0u64;
    while let Some(segment) = changes.next()? {
        sqlite::apply_changes(target, &segment)?;
        applied += 1;
    }
    let copy = sqlite::open(target)?;
    let problems = copy.check(options.check.level())?;
    if !problems.is_empty() {
        return Err(PluginError::permanent(format!(
            "the database rebuilt from the snapshot and {applied} segments of changes fails {}: {}",
            options.check.pragma(),
            problems.join("; ")
        )));
    }
    host::info(format!(
        "applied {applied} segments of changes; {}: ok",
        options.check.pragma()
    ));
    Ok(())
}

/// Writes an item to a temporary name beside `dest`, checks it, then renames it into
/// place (removing a stale `-wal`, `-shm` or `-journal` that SQLite would otherwise apply
/// to it). Returns the check's problems; when there are any, nothing is left behind.
fn restore_one(
    options: &Options,
    reader: &ItemReader,
    item: &ItemMeta,
    dest: &str,
) -> Result<Vec<String>> {
    let (dir, name) = dest.rsplit_once('/').unwrap_or(("", dest));
    let temp = format!("{dir}/.{name}.cairn-restore");
    let contents = reader.open(&item.path)?;
    let mut meta = item.clone();
    meta.kind = ItemKind::File;
    files::write(
        &temp,
        &contents,
        &files::WriteOptions {
            exclusive: false,
            sync: true,
            meta: Some(meta),
            deferred: false,
        },
    )?;
    let copy = sqlite::open(&temp)?;
    let problems = copy.check(options.check.level())?;
    drop(copy);
    if !problems.is_empty() {
        files::remove(&temp)?;
        return Ok(problems);
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        match files::remove(&format!("{dest}{suffix}")) {
            Ok(()) | Err(PluginError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    files::rename(&temp, dest)?;
    Ok(Vec::new())
}

/// The databases `pattern` names, with their item paths: the file name for one path, the
/// path below the glob's fixed prefix for a glob.
fn find_databases(pattern: &str) -> Result<Vec<(String, String)>> {
    let is_glob = pattern.contains(['*', '?', '[']);
    if !is_glob {
        let name = pattern.rsplit('/').next().unwrap_or(pattern).to_string();
        return match files::stat(pattern) {
            Ok(meta) if meta.kind == ItemKind::File => Ok(vec![(pattern.to_string(), name)]),
            Ok(_) => Err(PluginError::config(
                "path",
                format!("{pattern} is not a file"),
            )),
            Err(PluginError::NotFound(_)) => Err(PluginError::config(
                "path",
                format!("{pattern} does not exist"),
            )),
            Err(e) => Err(e),
        };
    }
    let glob =
        glob::Pattern::new(pattern).map_err(|e| PluginError::config("path", e.to_string()))?;
    let root = glob_root(pattern);
    let mut found = Vec::new();
    walk(&glob, &root, "", &mut found)?;
    if found.is_empty() {
        return Err(PluginError::config(
            "path",
            format!("no database file matches {pattern}"),
        ));
    }
    Ok(found)
}

/// The directory above the first component that holds a glob character.
fn glob_root(pattern: &str) -> String {
    let mut root = String::new();
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        if component.contains(['*', '?', '[']) {
            break;
        }
        root.push('/');
        root.push_str(component);
    }
    if root.is_empty() { "/".into() } else { root }
}

fn walk(
    glob: &glob::Pattern,
    dir: &str,
    rel: &str,
    found: &mut Vec<(String, String)>,
) -> Result<()> {
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    for entry in files::read_dir(dir)? {
        let path = join(dir, &entry.path);
        let rel = if rel.is_empty() {
            entry.path.clone()
        } else {
            format!("{rel}/{}", entry.path)
        };
        match entry.kind {
            ItemKind::Directory => walk(glob, &path, &rel, found)?,
            ItemKind::File if glob.matches_with(&path, options) && !is_side_file(&path) => {
                found.push((path, rel))
            }
            _ => {}
        }
    }
    Ok(())
}

/// SQLite's own files beside a database, which a broad glob would match.
fn is_side_file(path: &str) -> bool {
    ["-wal", "-shm", "-journal"]
        .iter()
        .any(|s| path.ends_with(s))
}

fn data_items(reader: &ItemReader) -> Vec<ItemMeta> {
    let mut items = Vec::new();
    loop {
        let batch = reader.next_items(256);
        if batch.is_empty() {
            return items;
        }
        items.extend(batch.into_iter().filter(|i| i.kind == ItemKind::Data));
    }
}

fn probe_key(item: &str, i: usize) -> String {
    format!("{item}.probe.{i}")
}

fn render(rows: &[Vec<String>]) -> String {
    let rows: Vec<String> = rows.iter().map(|r| r.join("|")).collect();
    format!("[{}]", rows.join(", "))
}

fn join(base: &str, rel: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_root_stops_at_the_first_wildcard() {
        assert_eq!(glob_root("/srv/tenants/*.db"), "/srv/tenants");
        assert_eq!(glob_root("/srv/*/data/app.db"), "/srv");
        assert_eq!(glob_root("/*.db"), "/");
    }

    #[test]
    fn side_files_are_not_databases() {
        assert!(is_side_file("/a/app.db-wal"));
        assert!(!is_side_file("/a/app.db"));
    }
}

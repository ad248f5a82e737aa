//! The `postgres` source: consistent, parallel logical backups of a PostgreSQL database,
//! without pg_dump. One REPEATABLE READ transaction exports its snapshot; worker
//! connections import it and COPY the tables out in block-range pieces, which the host
//! splices straight into the repository. The schema is rebuilt from the catalogs
//! ([`catalog`]). Restores load into another database ([`load`]); verify restores into a
//! scratch database it creates, counts every table's rows and re-runs the probes.

mod catalog;
mod load;
mod url;

use cairn_sdk::postgres::{self, Connection, ServerIdentity};
use cairn_sdk::{
    Blob, BlobItem, CheckResult, Chunking, Info, ItemKind, ItemMeta, ItemReader, ItemWriter,
    PluginError, RestoreTarget, Result, Source, VerifyReport, host,
};
use serde::{Deserialize, Serialize};

use catalog::{LargeObjectData, Piece, Schema};

/// Connections that COPY in parallel, by default: one a core on a small server.
const DEFAULT_JOBS: u32 = 2;
/// Heap bytes per piece of a large table, by default: enough pieces to keep the workers
/// busy until the end, few enough that each COPY's setup cost vanishes.
const DEFAULT_PIECE_SIZE: u64 = 64 * 1024 * 1024;
/// The item holding the [`Schema`].
const SCHEMA_ITEM: &str = "schema.json";
/// The item holding the large objects' contents.
const LARGE_OBJECTS_ITEM: &str = "large-objects";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Options {
    /// `postgres://user@host:port/database`.
    url: String,
    /// `env:NAME` or `file:PATH` holding the password.
    password: Option<String>,
    /// Worker connections for COPY OUT, COPY IN and index builds.
    jobs: Option<u32>,
    /// Heap bytes per stored piece of a table.
    piece_size: Option<u64>,
    /// Read-only queries run in the backup's snapshot; verify compares their results.
    #[serde(default)]
    probes: Vec<String>,
    /// The scratch database `cairn verify` and `cairn drill` create and drop.
    scratch: Option<String>,
    /// Kinds of object (as `pg_identify_object` names them) that captured objects may
    /// depend on although cairn does not capture them: the backup then succeeds, and a
    /// restore needs them created in the target first.
    #[serde(default)]
    allow_uncaptured: Vec<String>,
    /// Kinds of object left out of the snapshot as if cairn did not capture them, to test
    /// the dependency check (and a restore that lacks them).
    #[serde(default)]
    treat_as_uncaptured: Vec<String>,
    /// Replays the captured schema, without data, in the scratch database at every
    /// backup (in a transaction that is rolled back): a schema that would not restore
    /// fails the backup.
    #[serde(default)]
    verify_schema: bool,
}

impl Options {
    fn jobs(&self) -> u32 {
        self.jobs.unwrap_or(DEFAULT_JOBS)
    }
}

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["url"],
  "additionalProperties": false,
  "properties": {
    "url": {
      "type": "string",
      "description": "The database to back up: postgres://user@host:port/database, with ?sslmode=verify-full&sslrootcert=/path/ca.pem for a checked TLS connection (default sslmode: prefer). Put the password in `password`, not here.",
      "x-cairn-grant": "connect"
    },
    "password": {
      "type": "string",
      "description": "Where the password is: env:NAME or file:PATH. Used for the source, restore targets and the scratch database."
    },
    "jobs": {
      "type": "integer",
      "minimum": 1,
      "maximum": 64,
      "default": 2,
      "description": "Connections that copy tables in parallel (backup and restore) and build indexes (restore)."
    },
    "piece-size": {
      "type": "integer",
      "minimum": 1048576,
      "default": 67108864,
      "description": "Tables larger than this (bytes on disk) are copied in pieces of this size, so the jobs stay busy."
    },
    "probes": {
      "type": "array",
      "items": { "type": "string" },
      "description": "Read-only SQL queries run in the backup's snapshot (SELECT count(*) FROM orders WHERE paid); verify runs them on the restored copy and compares."
    },
    "scratch": {
      "type": "string",
      "description": "The scratch database verify and drill restore into: postgres://user@host:port/cairn_scratch. cairn creates it and drops it afterwards. Never the live database.",
      "x-cairn-grant": "connect"
    },
    "allow-uncaptured": {
      "type": "array",
      "items": { "type": "string" },
      "description": "Kinds of object (as PostgreSQL names them: aggregate, type...) that the database's tables, views and functions may depend on although cairn does not capture them yet. Without this, such a dependency fails the backup, since the snapshot could not be restored; with it, create those objects in the target before restoring."
    },
    "treat-as-uncaptured": {
      "type": "array",
      "items": { "type": "string" },
      "description": "For testing: kinds of object (as PostgreSQL names them: aggregate, function, view...) left out of the snapshot as if cairn did not capture them, so that a dependency on one fails the backup unless `allow-uncaptured` lists the kind."
    },
    "verify-schema": {
      "type": "boolean",
      "default": false,
      "description": "At every backup, create the captured schema (no data) in the `scratch` database inside a transaction that is rolled back, and fail the backup if any statement fails. Needs `scratch` and a user that may create databases."
    }
  }
}"#;

struct Postgres;

cairn_sdk::export_source!(Postgres);

/// A probe's result as recorded in the snapshot.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ProbeResult {
    sql: String,
    rows: Vec<Vec<Option<String>>>,
}

/// Annotation keys naming the database a snapshot was taken from.
const SYSTEM_ID_KEY: &str = "server.system-identifier";
const DATABASE_KEY: &str = "server.database";

impl Source for Postgres {
    type Options = Options;

    fn info() -> Info {
        Info {
            name: "postgres",
            version: env!("CARGO_PKG_VERSION"),
            description: "PostgreSQL databases: one consistent snapshot copied by parallel workers, schema rebuilt from the catalogs; restores into another database, verifies in a scratch one.",
            options_schema: SCHEMA,
            restore_target: RestoreTarget::Url,
        }
    }

    fn validate(options: &Options) -> Result<()> {
        url::check(&options.url).map_err(|m| PluginError::config("url", m))?;
        if url::has_password(&options.url) {
            host::warn(
                "the `url` option holds a password in clear: move it to `password = \"env:NAME\"` or \"file:PATH\"",
            );
        }
        if let Some(p) = &options.password
            && !p.starts_with("env:")
            && !p.starts_with("file:")
        {
            return Err(PluginError::config(
                "password",
                "must be a reference, env:NAME or file:PATH, never the password itself",
            ));
        }
        if let Some(scratch) = &options.scratch {
            url::database(scratch).map_err(|m| PluginError::config("scratch", m))?;
        }
        if options.jobs.is_some_and(|j| !(1..=64).contains(&j)) {
            return Err(PluginError::config("jobs", "must be between 1 and 64"));
        }
        if options.piece_size.is_some_and(|s| s < 1024 * 1024) {
            return Err(PluginError::config(
                "piece-size",
                "must be at least 1048576 (1 MiB)",
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
        let db = connect(options, &options.url)?;
        let identity = db.identity();
        db.execute(
            "SET search_path = ''; SET statement_timeout = 0; SET lock_timeout = '60s'; \
             BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        )?;
        let snapshot = single_value(&db, "SELECT pg_catalog.pg_export_snapshot()")?;
        let mut tables = catalog::data_tables(&db)?;
        if !tables.is_empty() {
            // As pg_dump does: no one may drop or rewrite a table while it is copied.
            let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
            db.execute(&format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE",
                names.join(", ")
            ))
            .map_err(|e| {
                e.context("locking the tables (another session holds an exclusive lock?)")
            })?;
        }
        let mut schema = catalog::read(&db, identity.server_version, &identity.database)?;
        let left_out = &options.treat_as_uncaptured;
        schema.leave_out(left_out);
        refuse_uncaptured(&catalog::uncaptured_dependencies(
            &db,
            left_out,
            &options.allow_uncaptured,
        )?)?;
        warn_uncaptured(&catalog::uncaptured_objects(&db)?);
        if options.verify_schema {
            verify_schema(options, &identity, &schema)?;
        }
        let block_size: u64 = single_value(&db, "SELECT pg_catalog.current_setting('block_size')")?
            .parse()
            .unwrap_or(8192);
        let piece_blocks = (options.piece_size.unwrap_or(DEFAULT_PIECE_SIZE) / block_size).max(1);
        for (t, table) in tables.iter_mut().enumerate() {
            let count = table.blocks.div_ceil(piece_blocks).max(1);
            table.pieces = (0..count)
                .map(|p| Piece {
                    item: format!("data/{t:05}.{p:05}"),
                    first_block: p * piece_blocks,
                    end_block: (p + 1 < count).then(|| (p + 1) * piece_blocks),
                    rows: 0,
                })
                .collect();
        }

        db.open_workers(
            options.jobs(),
            &format!(
                "SET search_path = ''; SET statement_timeout = 0; \
                 BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
                postgres::literal(&snapshot)
            ),
        )?;
        // Largest pieces first, so no worker is left with a big one at the end.
        let mut order: Vec<(usize, usize)> = tables
            .iter()
            .enumerate()
            .flat_map(|(t, table)| (0..table.pieces.len()).map(move |p| (t, p)))
            .collect();
        order
            .sort_by_key(|&(t, p)| std::cmp::Reverse(piece_blocks_of(&tables[t], p, piece_blocks)));
        let mut copies = Vec::with_capacity(order.len());
        let mut items = Vec::with_capacity(order.len());
        for &(t, p) in &order {
            let table = &tables[t];
            let copy = db.copy_out(&table.copy_out(&table.pieces[p]));
            items.push(BlobItem {
                meta: data_meta(&table.pieces[p].item),
                chunking: Chunking::ContentDefined,
                contents: copy.contents()?,
            });
            copies.push(copy);
        }
        // Large objects, in pieces, under the same snapshot as the tables.
        let large_objects = schema
            .pre_data
            .iter()
            .any(|s| s.kind == "large object")
            .then(|| db.copy_out(&LargeObjectData::copy_out()));
        if let Some(copy) = &large_objects {
            items.push(BlobItem {
                meta: data_meta(LARGE_OBJECTS_ITEM),
                chunking: Chunking::ContentDefined,
                contents: copy.contents()?,
            });
        }
        writer.add_blobs(items, options.jobs())?;
        for (&(t, p), copy) in order.iter().zip(&copies) {
            let rows = copy.rows();
            tables[t].pieces[p].rows = rows;
            tables[t].rows += rows;
        }
        schema.large_objects = large_objects.map(|copy| LargeObjectData {
            item: LARGE_OBJECTS_ITEM.into(),
            rows: copy.rows(),
        });

        for (i, sql) in options.probes.iter().enumerate() {
            let rows = probe(&db, sql).map_err(|e| e.context(format!("probe `{sql}`")))?;
            writer.annotate(
                &format!("probe.{i}"),
                &to_json(&ProbeResult {
                    sql: sql.clone(),
                    rows,
                })?,
            );
        }
        db.execute("COMMIT")?;

        let total_rows: u64 = tables.iter().map(|t| t.rows).sum();
        let table_count = tables.len();
        schema.tables = tables;
        let document = to_json(&schema)?;
        writer.add_blob(
            &data_meta(SCHEMA_ITEM),
            Chunking::ContentDefined,
            &Blob::new(document.as_bytes()),
        )?;
        writer.annotate(SYSTEM_ID_KEY, &identity.system_identifier);
        writer.annotate(DATABASE_KEY, &identity.database);
        writer.annotate("server.version", &identity.server_version.to_string());
        writer.annotate("tables", &table_count.to_string());
        writer.annotate("rows", &total_rows.to_string());
        host::info(format!(
            "captured database {}: {table_count} tables, {total_rows} rows, {} schema objects",
            identity.database,
            schema.pre_data.len() + schema.indexes.len() + schema.post_data.len()
        ));
        host::info(format!("schema objects by kind: {}", by_kind(&schema)));
        Ok(())
    }

    fn restore(options: &Options, reader: &ItemReader, target: &str) -> Result<()> {
        let flags = reader.flags();
        let mut schema = read_schema(reader)?;
        leave_out_by_flag(&mut schema, &reader.named_flags());
        let db = connect(options, target)?;
        if !flags.into_live {
            refuse_live(
                reader,
                &db.identity(),
                "restoring into it would overwrite it: restore into another database, or pass --into-live if that is what you mean",
            )?;
        }
        load::run(&db, reader, &schema, options.jobs(), flags.clean)?;
        for note in schema.post_data.iter().filter_map(|s| s.note.as_deref()) {
            host::warn(note);
        }
        host::info(format!(
            "restored {} tables, {} rows into {}",
            schema.tables.len(),
            schema.tables.iter().map(|t| t.rows).sum::<u64>(),
            db.identity().database
        ));
        Ok(())
    }

    fn verify(options: &Options, reader: &ItemReader, scratch: &str) -> Result<VerifyReport> {
        let scratch = match (scratch.is_empty(), &options.scratch) {
            (false, _) => scratch.to_string(),
            (true, Some(configured)) => configured.clone(),
            (true, None) => {
                return Err(PluginError::config(
                    "scratch",
                    "verify restores into a scratch database: set `scratch = \"postgres://user@host/cairn_scratch\"` in the source's options, or pass --scratch URL",
                ));
            }
        };
        let schema = read_schema(reader)?;
        let scratch_db = Scratch::create(options, &scratch, &schema.encoding, |identity| {
            refuse_live(
                reader,
                identity,
                "verify never touches the live database: name a scratch database in `scratch` or --scratch",
            )
        })?;
        let outcome = (|| {
            let db = connect(options, &scratch)?;
            load::run(&db, reader, &schema, options.jobs(), false)?;
            checks(&db, reader, &schema)
        })();
        if reader.flags().keep {
            host::info(format!(
                "kept the scratch database `{}` (--keep)",
                scratch_db.name
            ));
            let subscriptions: Vec<&str> = schema
                .post_data
                .iter()
                .filter(|s| s.kind == "subscription")
                .map(|s| s.name.as_str())
                .collect();
            if !subscriptions.is_empty() {
                host::info(format!(
                    "before dropping it, drop its subscriptions (disabled, without slots): DROP SUBSCRIPTION {}",
                    subscriptions.join("; DROP SUBSCRIPTION ")
                ));
            }
        } else {
            scratch_db.drop_database(options, &scratch);
        }
        outcome.map(|checks| VerifyReport { checks })
    }
}

/// A scratch database cairn created (from `template0`), and the connection to the
/// server's `postgres` database that drops it.
struct Scratch {
    admin: Connection,
    name: String,
}

impl Scratch {
    /// Creates the database `scratch` names, after `refuse` has seen its identity (the
    /// server's, with the scratch database's name). One that exists is refused: cairn
    /// never uses a database it did not create.
    fn create(
        options: &Options,
        scratch: &str,
        encoding: &str,
        refuse: impl FnOnce(&ServerIdentity) -> Result<()>,
    ) -> Result<Scratch> {
        let name = url::database(scratch).map_err(|m| PluginError::config("scratch", m))?;
        let admin = connect(options, &url::with_database(scratch, "postgres")?)?;
        let mut identity = admin.identity();
        identity.database = name.clone();
        refuse(&identity)?;
        let exists = !admin
            .query(&format!(
                "SELECT 1 FROM pg_catalog.pg_database WHERE datname = {}",
                postgres::literal(&name)
            ))?
            .is_empty();
        if exists {
            return Err(PluginError::AlreadyExists(format!(
                "the scratch database `{name}` already exists: cairn creates its scratch database and drops it afterwards, so it never uses one it did not create; drop it (DROP DATABASE {}) or name another",
                postgres::ident(&name)
            )));
        }
        admin.execute(&format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING {}",
            postgres::ident(&name),
            postgres::literal(encoding)
        ))?;
        Ok(Scratch { admin, name })
    }

    /// Drops the database, and first the subscriptions restored there (a database with
    /// subscriptions cannot be dropped). They are cairn's own, never connected.
    fn drop_database(self, options: &Options, scratch: &str) {
        let subscriptions = connect(options, scratch).and_then(|db| {
            let names = db.query(
                "SELECT pg_catalog.quote_ident(s.subname) FROM pg_catalog.pg_subscription s \
                 WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())",
            )?;
            for name in names.into_iter().filter_map(|r| r.into_iter().next().flatten()) {
                db.execute(&format!(
                    "ALTER SUBSCRIPTION {name} DISABLE; ALTER SUBSCRIPTION {name} SET (slot_name = NONE); DROP SUBSCRIPTION {name}"
                ))?;
            }
            Ok(())
        });
        if let Err(e) = subscriptions {
            host::warn(format!(
                "could not drop the subscriptions in the scratch database `{}`: {}",
                self.name,
                e.message()
            ));
        }
        if let Err(e) = self.admin.execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            postgres::ident(&self.name)
        )) {
            host::warn(format!(
                "could not drop the scratch database `{}`: {}",
                self.name,
                e.message()
            ));
        }
    }
}

/// `verify-schema`: the captured schema, without data, created in the scratch database in
/// a transaction that is rolled back. A schema that would not restore fails the backup,
/// which then stores nothing.
fn verify_schema(options: &Options, live: &ServerIdentity, schema: &Schema) -> Result<()> {
    let Some(scratch) = &options.scratch else {
        return Err(PluginError::config(
            "verify-schema",
            "replays the schema in the scratch database: set `scratch = \"postgres://user@host/cairn_scratch\"` too",
        ));
    };
    let scratch_db = Scratch::create(options, scratch, &schema.encoding, |identity| {
        if identity.system_identifier == live.system_identifier
            && identity.database == live.database
        {
            return Err(PluginError::config(
                "scratch",
                "is the database being backed up: name a database of its own (cairn creates and drops it)",
            ));
        }
        Ok(())
    })?;
    let replayed = connect(options, scratch).and_then(|db| load::replay_schema(&db, schema));
    scratch_db.drop_database(options, scratch);
    replayed.map_err(|e| {
        e.context("verify-schema: the captured schema does not restore, so nothing was stored")
    })?;
    host::info(format!(
        "verify-schema: the schema's {} statements ran in a scratch database",
        schema.pre_data.len() + schema.indexes.len() + schema.post_data.len()
    ));
    Ok(())
}

/// Row counts of every table against the snapshot's, and the probes against theirs.
fn checks(db: &Connection, reader: &ItemReader, schema: &Schema) -> Result<Vec<CheckResult>> {
    let mut checks = Vec::new();
    for table in &schema.tables {
        let counted: u64 = single_value(db, &format!("SELECT count(*) FROM ONLY {}", table.name))?
            .parse()
            .unwrap_or(u64::MAX);
        checks.push(CheckResult {
            name: format!("rows of {}", table.name),
            passed: counted == table.rows,
            detail: if counted == table.rows {
                format!("{counted} (as at backup)")
            } else {
                format!("{counted}, but {} at backup", table.rows)
            },
        });
    }
    let large_objects = schema
        .pre_data
        .iter()
        .filter(|s| s.kind == "large object")
        .count() as u64;
    if large_objects > 0 {
        let counted: u64 = single_value(
            db,
            "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata",
        )?
        .parse()
        .unwrap_or(u64::MAX);
        checks.push(CheckResult {
            name: "large objects".into(),
            passed: counted == large_objects,
            detail: format!("{counted}, {large_objects} at backup"),
        });
    }
    let annotations = reader.annotation_map();
    for i in 0.. {
        let Some(recorded) = annotations.get(&format!("probe.{i}")) else {
            break;
        };
        let recorded: ProbeResult = serde_json::from_str(recorded)
            .map_err(|e| PluginError::permanent(format!("probe {i}: unreadable record: {e}")))?;
        checks.push(CheckResult::compared(
            format!("probe `{}`", recorded.sql),
            probe(db, &recorded.sql),
            &recorded.rows,
            |rows| render(rows),
        ));
    }
    Ok(checks)
}

/// Runs a user's probe as they would in psql: with the database's own `search_path`
/// (`FROM orders` finds `public.orders`), not the empty one cairn's catalog queries use.
fn probe(db: &Connection, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    db.execute("SET search_path TO DEFAULT")?;
    let rows = db.query(sql)?;
    // (A failed probe aborts the transaction: its error, not this one's, is the news.)
    db.execute("SET search_path = ''")?;
    Ok(rows)
}

/// Fails when `identity` is the database the snapshot was taken from: same cluster
/// (system identifier) and same database name, however the URL spells the host.
/// Fails a backup whose schema depends on objects it does not hold: its restore would
/// fail, and a backup that cannot be restored must not say ok.
fn refuse_uncaptured(found: &[catalog::Uncaptured]) -> Result<()> {
    let Some(first) = found.first() else {
        return Ok(());
    };
    let listed: Vec<String> = found
        .iter()
        .take(10)
        .map(|u| format!("{} depends on {} {}", u.dependent, u.kind, u.identity))
        .collect();
    let more = found.len().saturating_sub(10);
    Err(PluginError::permanent(format!(
        "the database depends on objects cairn does not capture yet, so a restore of this snapshot would fail: {}{}. Nothing was stored. If you will create those objects in the target before restoring, allow the kind with `allow-uncaptured = [\"{}\"]` in the source's options",
        listed.join("; "),
        if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        },
        first.kind
    )))
}

/// Says which objects the snapshot leaves out, by kind, so that nobody learns it from a
/// restore.
fn warn_uncaptured(found: &[(String, String)]) {
    if found.is_empty() {
        return;
    }
    let mut kinds: Vec<(String, Vec<String>)> = Vec::new();
    for (kind, identity) in found {
        match kinds.last_mut() {
            Some((k, names)) if k == kind => names.push(identity.clone()),
            _ => kinds.push((kind.clone(), vec![identity.clone()])),
        }
    }
    let listed: Vec<String> = kinds
        .iter()
        .map(|(kind, names)| {
            let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
            let more = names.len().saturating_sub(3);
            format!(
                "{} {kind} ({}{})",
                names.len(),
                shown.join(", "),
                if more > 0 {
                    format!(", {more} more")
                } else {
                    String::new()
                }
            )
        })
        .collect();
    host::warn(format!(
        "not captured, so a restore will not have them: {}",
        listed.join("; ")
    ));
}

fn refuse_live(reader: &ItemReader, identity: &ServerIdentity, why: &str) -> Result<()> {
    let recorded = reader.annotation_map();
    let live = recorded.get(SYSTEM_ID_KEY) == Some(&identity.system_identifier)
        && recorded.get(DATABASE_KEY) == Some(&identity.database);
    if live {
        return Err(PluginError::Denied(format!(
            "the target is the live database this snapshot was taken from (system identifier {}, database `{}`): {why}",
            identity.system_identifier, identity.database
        )));
    }
    Ok(())
}

fn connect(options: &Options, url: &str) -> Result<Connection> {
    let password = match &options.password {
        Some(reference) => Some(host::secret(reference)?),
        None => None,
    };
    postgres::connect(url, password.as_deref())
}

fn single_value(db: &Connection, sql: &str) -> Result<String> {
    db.query(sql)?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .ok_or_else(|| PluginError::permanent(format!("`{sql}` returned nothing")))
}

fn read_schema(reader: &ItemReader) -> Result<Schema> {
    let blob = reader.open(SCHEMA_ITEM)?;
    let mut bytes = Vec::new();
    loop {
        let piece = blob.read(1 << 20)?;
        if piece.is_empty() {
            break;
        }
        bytes.extend_from_slice(&piece);
    }
    let schema: Schema = serde_json::from_slice(&bytes)
        .map_err(|e| PluginError::permanent(format!("{SCHEMA_ITEM}: unreadable: {e}")))?;
    if schema.format > catalog::FORMAT {
        return Err(PluginError::permanent(format!(
            "this snapshot's schema is format {}, newer than this plugin understands ({}): upgrade cairn",
            schema.format,
            catalog::FORMAT
        )));
    }
    Ok(schema)
}

fn piece_blocks_of(table: &catalog::Table, piece: usize, piece_blocks: u64) -> u64 {
    let p = &table.pieces[piece];
    p.end_block
        .unwrap_or(table.blocks.max(p.first_block + piece_blocks))
        .saturating_sub(p.first_block)
}

fn data_meta(path: &str) -> ItemMeta {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    ItemMeta {
        path: path.to_string(),
        kind: ItemKind::Data,
        size: 0,
        mode: 0o600,
        uid: 0,
        gid: 0,
        mtime_ns: now,
        ctime_ns: now,
        inode: 0,
        symlink_target: None,
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| PluginError::permanent(e.to_string()))
}

fn render(rows: &[Vec<Option<String>>]) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.as_deref().unwrap_or("NULL"))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    format!("[{}]", rows.join(", "))
}

/// `--no-owner` leaves every object to the restoring user, as pg_restore's does (default
/// privileges still name their role), and what the owner granted or revoked itself goes
/// to the restoring user instead; `--no-privileges` restores no GRANT, REVOKE or default
/// privileges.
fn leave_out_by_flag(schema: &mut Schema, named_flags: &[String]) {
    let given = |flag: &str| named_flags.iter().any(|f| f == flag);
    let (no_owner, no_privileges) = (given("no-owner"), given("no-privileges"));
    let owners: std::collections::HashMap<String, String> = schema
        .post_data
        .iter()
        .filter(|s| s.kind == "owner")
        .filter_map(|s| Some((s.name.clone(), s.acts_as.clone()?)))
        .collect();
    schema.post_data.retain_mut(|s| match s.kind.as_str() {
        "owner" => !no_owner,
        "privileges" | "column privileges" | "default privileges" if no_privileges => false,
        "privileges" if no_owner => {
            let owner = owners.get(&s.name);
            if owner.is_none() || s.roles.first() != owner {
                return true;
            }
            // The owner's own entry of the ACL: the restoring user's now.
            match owner.and_then(|o| to_current_user(&s.create, o)) {
                Some(sql) => {
                    s.create = sql;
                    s.roles.clear();
                    true
                }
                None => false,
            }
        }
        _ => true,
    });
}

/// `GRANT … TO role[ WITH GRANT OPTION];` or `REVOKE … FROM role;` for `CURRENT_USER`
/// instead of `role` (written by `quote_ident`, so either bare or double-quoted).
fn to_current_user(sql: &str, role: &str) -> Option<String> {
    let (body, option) = match sql.strip_suffix(" WITH GRANT OPTION;") {
        Some(body) => (body, " WITH GRANT OPTION"),
        None => (sql.strip_suffix(';')?, ""),
    };
    let quoted = format!("\"{}\"", role.replace('"', "\"\""));
    let head = body
        .strip_suffix(quoted.as_str())
        .or_else(|| body.strip_suffix(role))?;
    (head.ends_with(" TO ") || head.ends_with(" FROM "))
        .then(|| format!("{head}CURRENT_USER{option};"))
}

/// How many statements of each kind the schema holds, in the order they restore:
/// `schema 2, extension 1, type 4, ...` (what `cairn backup -v` shows).
fn by_kind(schema: &Schema) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    let all = schema
        .pre_data
        .iter()
        .chain(&schema.indexes)
        .chain(&schema.post_data);
    for statement in all {
        match counts.iter_mut().find(|(kind, _)| *kind == statement.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((&statement.kind, 1)),
        }
    }
    let listed: Vec<String> = counts
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    listed.join(", ")
}

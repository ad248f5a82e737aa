//! Loads a snapshot into a database: the pre-data objects in one transaction, the table
//! data with parallel COPY IN, then indexes (in parallel), foreign keys, triggers,
//! sequence values, materialized views, comments, owners and privileges.

use std::collections::BTreeMap;

use cairn_sdk::postgres::{self, Connection, CopyIn};
use cairn_sdk::{ItemReader, PluginError, Result, host};

use crate::catalog::{Schema, Statement};

/// Objects in the target that show it is in use: relations, functions and types outside
/// the system schemas and not created by extensions.
const USER_OBJECTS: &str = "SELECT (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
       WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND e.objid = c.oid AND e.deptype = 'e')) \
     + (SELECT count(*) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND e.objid = p.oid AND e.deptype = 'e'))";

/// How a restoring session runs the schema's statements: names qualified, function
/// bodies checked only when called, no notices, no time limit.
const RESTORE_SESSION: &str = "SET search_path = ''; SET check_function_bodies = false; \
     SET client_min_messages = warning; SET statement_timeout = 0";

pub fn run(
    db: &Connection,
    reader: &ItemReader,
    schema: &Schema,
    jobs: u32,
    clean: bool,
) -> Result<()> {
    db.execute(RESTORE_SESSION)?;
    require_label_providers(db, schema)?;
    if clean {
        return clean_restore(db, reader, schema);
    }
    let database = db.identity().database;
    let found = db
        .query(USER_OBJECTS)?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default();
    if found != "0" {
        return Err(PluginError::permanent(format!(
            "database `{database}` is not empty ({found} tables, views, sequences or functions): restore into an empty database, or pass --clean to drop the snapshot's objects there first"
        )));
    }
    in_transaction(db, &schema.pre_data)
        .map_err(|e| e.context("restoring the schema (pre-data)"))?;
    // On this connection, before the workers open: they could not see its temporary table.
    load_large_objects(db, reader, schema)?;
    db.open_workers(
        jobs,
        "SET search_path = ''; SET statement_timeout = 0; SET synchronous_commit = off",
    )?;
    load_data(db, reader, schema)?;
    build_indexes(db, schema)?;
    post_data(db, schema)
}

/// `--clean` into a database in use: everything in one transaction on one connection
/// (the drops, the schema, the data, the indexes and the rest), so that it all commits
/// or the database is left exactly as it was. Slower than the parallel restore into an
/// empty database, which has nothing to lose.
fn clean_restore(db: &Connection, reader: &ItemReader, schema: &Schema) -> Result<()> {
    db.execute("BEGIN")?;
    let restored = (|| {
        drop_existing(db, schema)?;
        for statement in &schema.pre_data {
            run_one(db, statement).map_err(|e| e.context("restoring the schema (pre-data)"))?;
        }
        load_large_objects(db, reader, schema)?;
        load_data(db, reader, schema)?;
        build_indexes(db, schema)?;
        post_data(db, schema)
    })();
    match restored {
        Ok(()) => db
            .execute("COMMIT")
            .map_err(|e| e.context("--clean: committing the restore")),
        Err(e) => {
            let _ = db.execute("ROLLBACK");
            Err(e.context("--clean: nothing was changed, the database is as it was"))
        }
    }
}

/// The table data, by COPY IN on the workers (or the main connection when none are open),
/// each piece's rows counted against the snapshot's.
fn load_data(db: &Connection, reader: &ItemReader, schema: &Schema) -> Result<()> {
    let mut loads = Vec::new();
    let mut expected = Vec::new();
    for table in &schema.tables {
        for piece in &table.pieces {
            loads.push(CopyIn {
                statement: table.copy_in(),
                contents: reader.open(&piece.item)?,
            });
            expected.push((table.name.as_str(), piece.rows));
        }
    }
    let loaded = db
        .copy_in(loads)
        .map_err(|e| e.context("loading table data"))?;
    for ((table, want), got) in expected.iter().zip(&loaded) {
        if want != got {
            return Err(PluginError::permanent(format!(
                "loading table data: {table}: loaded {got} rows of a piece that held {want} at backup"
            )));
        }
    }
    host::info(format!(
        "loaded {} rows into {} tables of `{}`",
        loaded.iter().sum::<u64>(),
        schema.tables.len(),
        db.identity().database
    ));
    Ok(())
}

/// The large objects' contents, into the objects pre-data created empty: COPY IN to a
/// temporary table on the main connection, then written piece by piece with `lo_put`.
fn load_large_objects(db: &Connection, reader: &ItemReader, schema: &Schema) -> Result<()> {
    let Some(data) = &schema.large_objects else {
        return Ok(());
    };
    let context = |e: PluginError| e.context("loading the large objects");
    db.execute(
        "CREATE TEMPORARY TABLE cairn_large_objects \
         (loid pg_catalog.oid, off pg_catalog.int8, data pg_catalog.bytea)",
    )
    .map_err(context)?;
    let loaded = db
        .copy_in(vec![CopyIn {
            statement: "COPY pg_temp.cairn_large_objects FROM STDIN".into(),
            contents: reader.open(&data.item)?,
        }])
        .map_err(context)?;
    let got = loaded.first().copied().unwrap_or_default();
    if got != data.rows {
        return Err(PluginError::permanent(format!(
            "loading the large objects: loaded {got} pieces, the backup stored {}",
            data.rows
        )));
    }
    db.execute(
        "SELECT pg_catalog.lo_put(loid, off, data) FROM pg_temp.cairn_large_objects ORDER BY loid, off; \
         DROP TABLE pg_temp.cairn_large_objects",
    )
    .map_err(context)?;
    host::info(format!("loaded {got} pieces of large objects"));
    Ok(())
}

fn build_indexes(db: &Connection, schema: &Schema) -> Result<()> {
    let builds: Vec<String> = schema.indexes.iter().map(|s| s.create.clone()).collect();
    db.execute_parallel(&builds)
        .map_err(|e| e.context("building indexes and key constraints"))
}

/// Foreign keys, triggers, row security, sequence values, comments, then owners and
/// privileges. A statement naming a role the target lacks (or one the restoring user may
/// not act as) is left out, and the restore says which, and why, once per role.
fn post_data(db: &Connection, schema: &Schema) -> Result<()> {
    let needs_roles = schema
        .post_data
        .iter()
        .any(|s| !s.roles.is_empty() || s.acts_as.is_some());
    let roles = if needs_roles {
        target_roles(db)?
    } else {
        BTreeMap::new()
    };
    // Left out, by why and by what: user mappings, or owners and privileges.
    let mut left_out: BTreeMap<(String, bool), Vec<&str>> = BTreeMap::new();
    for statement in &schema.post_data {
        if let Some(why) = unrestorable(statement, &roles) {
            let names = left_out
                .entry((why, statement.kind == "user mapping"))
                .or_default();
            if names.last() != Some(&statement.name.as_str()) {
                names.push(&statement.name);
            }
            continue;
        }
        run_one(db, statement).map_err(|e| e.context("post-data"))?;
    }
    for ((why, mappings), names) in left_out {
        let what = if mappings {
            plural(names.len(), "user mapping")
        } else {
            format!(
                "the owner or privileges of {}",
                plural(names.len(), "object")
            )
        };
        host::warn(format!(
            "not restored, because {why}: {what} ({}); create the role and restore again, or set them by hand",
            names.join(", ")
        ));
    }
    Ok(())
}

/// Every role of the target's cluster, and whether the restoring user is a member of it
/// (may give objects to it and set its default privileges).
fn target_roles(db: &Connection) -> Result<BTreeMap<String, bool>> {
    let rows = db
        .query("SELECT r.rolname, pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'MEMBER')::text FROM pg_catalog.pg_roles r")
        .map_err(|e| e.context("reading the target's roles"))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let name = row.first().cloned().flatten()?;
            let member = row.get(1).cloned().flatten().as_deref() == Some("true");
            Some((name, member))
        })
        .collect())
}

/// Why `statement` cannot run in the target, if it cannot.
fn unrestorable(statement: &Statement, roles: &BTreeMap<String, bool>) -> Option<String> {
    for role in statement.roles.iter().chain(&statement.acts_as) {
        if !roles.contains_key(role) {
            return Some(format!("role `{role}` does not exist here"));
        }
    }
    match &statement.acts_as {
        Some(role) if roles.get(role) == Some(&false) => Some(format!(
            "the restoring user is not a member of role `{role}`"
        )),
        _ => None,
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `verify-schema`: the whole schema without data (pre-data, indexes, post-data), in
/// `db`, inside a transaction that is rolled back whatever happens.
pub fn replay_schema(db: &Connection, schema: &Schema) -> Result<()> {
    db.execute(RESTORE_SESSION)?;
    db.execute("BEGIN")?;
    let replayed = (|| {
        for statement in &schema.pre_data {
            run_one(db, statement).map_err(|e| e.context("pre-data"))?;
        }
        for statement in &schema.indexes {
            run_one(db, statement).map_err(|e| e.context("indexes and key constraints"))?;
        }
        post_data(db, schema)
    })();
    let _ = db.execute("ROLLBACK");
    replayed
}

/// Runs statements as one transaction: all of them, or none when one fails.
fn in_transaction(db: &Connection, statements: &[Statement]) -> Result<()> {
    db.execute("BEGIN")?;
    for statement in statements {
        if let Err(e) = run_one(db, statement) {
            let _ = db.execute("ROLLBACK");
            return Err(e);
        }
    }
    db.execute("COMMIT")
}

/// Stops a restore before it changes anything if the target server has not loaded a
/// provider of the snapshot's security labels. PostgreSQL looks the provider up before
/// the object, so labelling a schema that does not exist says which it is.
fn require_label_providers(db: &Connection, schema: &Schema) -> Result<()> {
    let mut providers: Vec<&str> = schema
        .post_data
        .iter()
        .filter(|s| s.kind == "security label")
        .filter_map(|s| {
            s.create
                .strip_prefix("SECURITY LABEL FOR ")?
                .split(" ON ")
                .next()
        })
        .collect();
    providers.sort_unstable();
    providers.dedup();
    for provider in providers {
        let probe = format!("SECURITY LABEL FOR {provider} ON SCHEMA cairn_no_such_schema IS NULL");
        if let Err(e) = db.execute(&probe)
            && e.message().contains("is not loaded")
        {
            return Err(PluginError::permanent(format!(
                "the snapshot has security labels of provider {provider}, which the target server has not loaded, so nothing was restored: load its module there (shared_preload_libraries, as on the server backed up), or restore into a server that has it"
            )));
        }
    }
    Ok(())
}

fn run_one(db: &Connection, statement: &Statement) -> Result<()> {
    db.execute(&statement.create).map_err(|e| {
        let sql: String = statement.create.chars().take(400).collect();
        e.context(format!(
            "creating {} {} with `{sql}`",
            statement.kind, statement.name
        ))
    })
}

/// `--clean` never drops a subscription of the target's that holds a replication slot:
/// that drop would reach the publisher to remove the slot (or leave it orphaned there,
/// holding WAL), and cannot run inside the restore's transaction. The restore stops first,
/// naming it.
fn refuse_subscriptions_with_slots(db: &Connection, schema: &Schema) -> Result<()> {
    let names: Vec<String> = schema
        .post_data
        .iter()
        .filter(|s| s.kind == "subscription")
        .map(|s| postgres::literal(&s.name))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let held = db.query(&format!(
        "SELECT s.subname, s.subslotname FROM pg_catalog.pg_subscription s \
         WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) \
           AND s.subslotname IS NOT NULL AND s.subname IN ({}) ORDER BY 1",
        names.join(", ")
    ))?;
    if let Some(row) = held.first() {
        let field = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let (name, slot) = (field(0), field(1));
        return Err(PluginError::permanent(format!(
            "--clean would drop subscription `{name}`, which holds replication slot `{slot}` on its publisher; nothing was changed. Drop it yourself first (ALTER SUBSCRIPTION {name} DISABLE; ALTER SUBSCRIPTION {name} SET (slot_name = NONE); DROP SUBSCRIPTION {name}; then drop the slot on the publisher if no one needs it), or restore into another database"
        )));
    }
    Ok(())
}

/// `--clean`: drops what the snapshot holds, where it exists, newest first, inside the
/// restore's transaction. Never through `CASCADE`: an object of the target's that the
/// snapshot does not hold and that depends on one it drops stops the restore, named, before
/// anything commits. Schemas are not dropped (they are created if missing), so what else
/// they hold stays.
fn drop_existing(db: &Connection, schema: &Schema) -> Result<()> {
    refuse_subscriptions_with_slots(db, schema)?;
    // Post-data objects with a drop go first: event triggers, so that none fires during
    // the restore, and rules, whose actions may name other tables. The rest go with
    // their tables.
    let post_data = schema.post_data.iter().rev().filter(|s| s.drop.is_some());
    for statement in post_data.chain(schema.pre_data.iter().rev()) {
        let Some(drop) = &statement.drop else {
            continue;
        };
        if statement.kind == "schema" {
            continue;
        }
        let drop = if statement.kind == "base type" {
            // A base type and its functions depend on each other: only CASCADE drops
            // them, so what else depends on the type is checked first.
            refuse_base_type_dependents(db, statement)?;
            drop.clone()
        } else {
            // Snapshots taken before drops were written without it still say CASCADE.
            match drop.strip_suffix(" CASCADE;") {
                Some(restricted) => format!("{restricted};"),
                None => drop.clone(),
            }
        };
        db.execute(&drop).map_err(|e| {
            let message = e.message().replace(
                "; hint: Use DROP ... CASCADE to drop the dependent objects too.",
                "",
            );
            PluginError::permanent(format!(
                "--clean would drop {} {}, but the database has objects the snapshot does not hold that depend on it: {message}; drop or change those first, or restore into another database",
                statement.kind, statement.name
            ))
        })?;
    }
    Ok(())
}

/// Stops `--clean` before it drops base type `statement` (with `CASCADE`) if anything in
/// the target besides the type's own functions and array type depends on it: the
/// snapshot's own dependents were dropped before it, so anything left is not the
/// snapshot's.
fn refuse_base_type_dependents(db: &Connection, statement: &Statement) -> Result<()> {
    let rows = db.query(&format!(
        "SELECT pg_catalog.string_agg(pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), ', ' ORDER BY d.classid, d.objid, d.objsubid) \
         FROM pg_catalog.pg_type bt JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass \
           AND d.refobjid IN (bt.oid, bt.typarray) AND d.deptype = 'n' \
         WHERE bt.oid = pg_catalog.to_regtype({}) \
           AND NOT (d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid IN ({})) \
           AND NOT (d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = bt.typarray)",
        postgres::literal(&statement.name),
        crate::catalog::BASE_TYPE_FUNCTIONS,
    ))?;
    match rows.first().and_then(|row| row.first().cloned().flatten()) {
        Some(dependents) => Err(PluginError::permanent(format!(
            "--clean would drop type {}, but the database has objects the snapshot does not hold that depend on it: {dependents}; drop or change those first, or restore into another database",
            statement.name
        ))),
        None => Ok(()),
    }
}

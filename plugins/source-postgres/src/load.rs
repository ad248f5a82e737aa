//! Loads a snapshot into a database: the pre-data objects in one transaction, the table
//! data with parallel COPY IN, then indexes (in parallel), foreign keys, triggers,
//! sequence values, materialized views and comments.

use cairn_sdk::postgres::{Connection, CopyIn};
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

pub fn run(
    db: &Connection,
    reader: &ItemReader,
    schema: &Schema,
    jobs: u32,
    clean: bool,
) -> Result<()> {
    let database = db.identity().database;
    db.execute(
        "SET search_path = ''; SET check_function_bodies = false; \
         SET client_min_messages = warning; SET statement_timeout = 0",
    )?;
    if clean {
        drop_existing(db, schema)?;
    } else {
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
    }

    in_transaction(db, &schema.pre_data)?;

    db.open_workers(
        jobs,
        "SET search_path = ''; SET statement_timeout = 0; SET synchronous_commit = off",
    )?;
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
    let loaded = db.copy_in(loads)?;
    for ((table, want), got) in expected.iter().zip(&loaded) {
        if want != got {
            return Err(PluginError::permanent(format!(
                "{table}: loaded {got} rows of a piece that held {want} at backup"
            )));
        }
    }
    host::info(format!(
        "loaded {} rows into {} tables of `{database}`",
        loaded.iter().sum::<u64>(),
        schema.tables.len()
    ));

    let builds: Vec<String> = schema.indexes.iter().map(|s| s.create.clone()).collect();
    db.execute_parallel(&builds)
        .map_err(|e| e.context("building indexes and key constraints"))?;
    for statement in &schema.post_data {
        run_one(db, statement)?;
    }
    Ok(())
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

fn run_one(db: &Connection, statement: &Statement) -> Result<()> {
    db.execute(&statement.create).map_err(|e| {
        let sql: String = statement.create.chars().take(400).collect();
        e.context(format!(
            "creating {} {} with `{sql}`",
            statement.kind, statement.name
        ))
    })
}

/// `--clean`: drops what the snapshot holds, where it exists, newest first.
fn drop_existing(db: &Connection, schema: &Schema) -> Result<()> {
    let drops: Vec<Statement> = schema
        .pre_data
        .iter()
        .rev()
        .filter_map(|s| {
            s.drop.as_ref().map(|d| Statement {
                kind: s.kind.clone(),
                name: s.name.clone(),
                create: d.clone(),
                drop: None,
                key: None,
            })
        })
        .collect();
    in_transaction(db, &drops).map_err(|e| e.context("--clean"))
}

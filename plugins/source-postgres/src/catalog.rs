//! The schema of a database, read from its catalogs into statements that rebuild it, in
//! the order a restore runs them. PostgreSQL's own deparsers (`pg_get_viewdef`,
//! `pg_get_functiondef`, `pg_get_indexdef`, `pg_get_constraintdef`, `pg_get_expr`...)
//! write the hard parts; with `search_path` empty, every name they print is qualified.
//!
//! Objects created by extensions are left to `CREATE EXTENSION`. The pre-data objects are
//! put in dependency order from `pg_depend` (a domain after the function its check calls,
//! a function over a table's rows after the table), otherwise by phase and creation (OID);
//! a restore runs them in one transaction, so a database it cannot rebuild is left as it
//! was.

use cairn_sdk::Result;
use cairn_sdk::postgres::Connection;
use serde::{Deserialize, Serialize};

mod foreign;
mod languages;
mod operators;
mod subscriptions;
mod text_search;

/// Version of the [`Schema`] document layout.
pub const FORMAT: u32 = 1;

/// Everything of a database except its table data, plus where that data is stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct Schema {
    pub format: u32,
    /// `server_version_num` of the source.
    pub server_version: u32,
    pub database: String,
    pub encoding: String,
    /// Schemas, extensions, types, functions, sequences, tables, views: run before data.
    pub pre_data: Vec<Statement>,
    pub tables: Vec<Table>,
    /// Indexes and primary-key, unique and exclusion constraints: independent of each
    /// other, so a restore builds them in parallel.
    pub indexes: Vec<Statement>,
    /// Foreign keys, triggers, sequence values, materialized view contents, comments.
    pub post_data: Vec<Statement>,
    /// The large objects' contents (each created empty by a pre-data statement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_objects: Option<LargeObjectData>,
}

impl Schema {
    /// Leaves out the pre-data objects of `kinds`, with the owners, privileges and
    /// comments that name them, as if they were not captured.
    pub fn leave_out(&mut self, kinds: &[String]) {
        let (left_out, kept) = std::mem::take(&mut self.pre_data)
            .into_iter()
            .partition::<Vec<_>, _>(|s| kinds.contains(&s.kind));
        self.pre_data = kept;
        let names: Vec<String> = left_out.into_iter().map(|s| s.name).collect();
        self.post_data.retain(|s| {
            !names
                .iter()
                .any(|name| s.name == *name || s.name.ends_with(&format!(" {name}")))
        });
    }
}

/// The contents of a database's large objects, stored as one item: text-format COPY rows
/// of `(oid, offset, bytes)`, at most [`LARGE_OBJECT_PIECE`] bytes each, in oid and offset
/// order. Empty large objects have no rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LargeObjectData {
    pub item: String,
    pub rows: u64,
}

/// Bytes of a large object one row of [`LargeObjectData`] holds at most.
pub const LARGE_OBJECT_PIECE: u32 = 1024 * 1024;

impl LargeObjectData {
    /// The COPY TO that reads every large object in pieces, as of the backup's snapshot
    /// (a descriptor opened for reading sees the object as of the transaction's snapshot).
    pub fn copy_out() -> String {
        format!(
            "COPY (SELECT l.oid, o.off, pg_catalog.lo_get(l.oid, o.off, {LARGE_OBJECT_PIECE}) \
               FROM pg_catalog.pg_largeobject_metadata l, LATERAL pg_catalog.generate_series(0, \
                 pg_catalog.lo_lseek64(pg_catalog.lo_open(l.oid, 262144), 0, 2) - 1, {LARGE_OBJECT_PIECE}) AS o(off) \
               ORDER BY l.oid, o.off) TO STDOUT"
        )
    }
}

/// One object: what creates it and, for `--clean`, what drops it if it exists.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Statement {
    pub kind: String,
    pub name: String,
    pub create: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<String>,
    /// `catalog:oid` of the object, to order statements by dependency at backup time.
    #[serde(skip)]
    pub key: Option<String>,
    /// Roles the statement names, which must exist where it is restored: without them the
    /// restore leaves it out and says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// A role the restoring user must be a member of (to give an object to it, or to set
    /// its default privileges); left out with a warning otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acts_as: Option<String>,
    /// What a restore tells the user once it has run the statement (how to resume a
    /// subscription).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A table with storage (a plain table or a leaf partition) and its data pieces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table {
    /// Qualified and quoted (`public."Order"`).
    pub name: String,
    /// Quoted columns COPY carries: all but generated and dropped ones.
    pub columns: Vec<String>,
    /// Heap size in blocks when the backup planned its pieces.
    pub blocks: u64,
    pub pieces: Vec<Piece>,
    /// Rows stored, summed over the pieces.
    pub rows: u64,
}

/// One COPY of a block range of a table, stored as one item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Piece {
    pub item: String,
    /// Blocks `[first, end)`; the last piece of a table has no end.
    pub first_block: u64,
    pub end_block: Option<u64>,
    pub rows: u64,
}

impl Table {
    pub fn column_list(&self) -> String {
        self.columns.join(", ")
    }

    /// The COPY TO statement of one piece: the whole table when there is one piece, else
    /// a TID range (read by a TID range scan, touching only those blocks).
    pub fn copy_out(&self, piece: &Piece) -> String {
        let columns = self.column_list();
        if self.pieces.len() == 1 {
            return format!("COPY {} ({columns}) TO STDOUT", self.name);
        }
        let mut range = format!("ctid >= '({},0)'::pg_catalog.tid", piece.first_block);
        if let Some(end) = piece.end_block {
            range.push_str(&format!(" AND ctid < '({end},0)'::pg_catalog.tid"));
        }
        format!(
            "COPY (SELECT {columns} FROM ONLY {} WHERE {range}) TO STDOUT",
            self.name
        )
    }

    pub fn copy_in(&self) -> String {
        format!("COPY {} ({}) FROM STDIN", self.name, self.column_list())
    }
}

/// Schemas that belong to the system, never to a backup.
const USER_SCHEMA: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

/// Whether the object `oid` of catalog `class` was created by an extension.
fn not_extension_member(class: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = '{class}'::pg_catalog.regclass \
         AND e.objid = {oid} AND e.deptype = 'e')"
    )
}

/// Whether the object `oid` of catalog `class` is the user's own: neither an extension's
/// nor part of another object (a range type's constructor functions and cast to its
/// multirange, which `CREATE TYPE` makes).
fn own_object(class: &str, oid: &str) -> String {
    format!(
        "{} AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend i WHERE i.classid = '{class}'::pg_catalog.regclass \
         AND i.objid = {oid} AND i.deptype = 'i')",
        not_extension_member(class, oid)
    )
}

/// Reads rows of `(name, create, drop, key, role, note)` for one kind of object (every
/// column after `create` may be absent or NULL): `role` is one the statement names, which
/// must exist where it is restored; `note` is what the restore tells the user after it.
fn statements(db: &Connection, kind: &str, sql: &str) -> Result<Vec<Statement>> {
    let rows = db
        .query(sql)
        .map_err(|e| e.context(format!("reading {kind} definitions")))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let field = |i: usize| row.get(i).cloned().flatten();
            Statement {
                kind: kind.to_string(),
                name: field(0).unwrap_or_default(),
                create: terminated(&field(1).unwrap_or_default()),
                drop: field(2).map(|d| terminated(&d)),
                key: field(3),
                roles: field(4).into_iter().collect(),
                acts_as: None,
                note: field(5),
            }
        })
        .collect())
}

fn terminated(sql: &str) -> String {
    let sql = sql.trim_end();
    let sql = sql.strip_suffix(';').unwrap_or(sql);
    format!("{sql};")
}

/// Reads the database's schema. Runs inside the backup's snapshot transaction, with
/// `search_path` empty.
pub fn read(db: &Connection, server_version: u32, database: &str) -> Result<Schema> {
    let encoding = db
        .query("SELECT pg_catalog.pg_encoding_to_char(encoding) FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()")?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_else(|| "UTF8".into());
    let mut objects = Vec::new();
    objects.extend(schemas(db)?);
    objects.extend(extensions(db)?);
    objects.extend(languages::languages(db)?);
    objects.extend(access_methods(db)?);
    objects.extend(types(db)?);
    objects.extend(base_types(db)?);
    objects.extend(functions(db)?);
    objects.extend(aggregates(db)?);
    objects.extend(collations(db)?);
    objects.extend(casts(db)?);
    objects.extend(conversions(db)?);
    objects.extend(operators::operators(db)?);
    objects.extend(operators::operator_families(db)?);
    objects.extend(operators::operator_classes(db)?);
    objects.extend(text_search::objects(db)?);
    objects.extend(foreign::wrappers_and_servers(db)?);
    objects.extend(languages::transforms(db)?);
    objects.extend(sequences(db)?);
    objects.extend(tables(db)?);
    objects.extend(checks(db)?);
    objects.extend(views(db)?);
    let mut pre_data = order_by_dependencies(objects, &dependencies(db)?);
    pre_data.extend(operators::operator_family_members(db)?);
    pre_data.extend(sequence_owners(db)?);
    pre_data.extend(large_objects(db)?);
    let indexes = [indexes(db)?, key_constraints(db)?].concat();
    let mut post_data = Vec::new();
    post_data.extend(foreign_keys(db)?);
    post_data.extend(triggers(db)?);
    post_data.extend(rules(db)?);
    post_data.extend(statistics(db)?);
    post_data.extend(row_security(db)?);
    post_data.extend(policies(db)?);
    post_data.extend(publications(db, server_version)?);
    post_data.extend(foreign::user_mappings(db)?);
    post_data.extend(subscriptions::subscriptions(db)?);
    post_data.extend(sequence_values(db)?);
    post_data.extend(refreshes(db)?);
    post_data.extend(comments(db)?);
    post_data.extend(security_labels(db)?);
    // Event triggers last, as pg_dump has them: one created earlier would fire during the
    // restore. Their owners come after them.
    let (event_trigger_owners, owners_and_privileges): (Vec<_>, Vec<_>) =
        ownership_and_privileges(db)?
            .into_iter()
            .partition(|s| s.create.starts_with("ALTER EVENT TRIGGER "));
    post_data.extend(owners_and_privileges);
    post_data.extend(event_triggers(db)?);
    post_data.extend(event_trigger_owners);
    Ok(Schema {
        format: FORMAT,
        server_version,
        database: database.to_string(),
        encoding,
        pre_data,
        tables: Vec::new(),
        indexes,
        post_data,
        large_objects: None,
    })
}

/// Publications (post-data, as pg_dump has them: their tables must exist), then the
/// tables each publishes, with the column lists and row filters of PostgreSQL 15, and the
/// schemas it publishes whole. Created without their subscribers' state: a publication
/// is a definition; replication slots belong to the publishing server.
fn publications(db: &Connection, server_version: u32) -> Result<Vec<Statement>> {
    let mut found = statements(
        db,
        "publication",
        "SELECT p.pubname, pg_catalog.format('CREATE PUBLICATION %I%s WITH (publish = %L, publish_via_partition_root = %s)', \
           p.pubname, CASE WHEN p.puballtables THEN ' FOR ALL TABLES' ELSE '' END, \
           pg_catalog.concat_ws(', ', CASE WHEN p.pubinsert THEN 'insert' END, CASE WHEN p.pubupdate THEN 'update' END, \
             CASE WHEN p.pubdelete THEN 'delete' END, CASE WHEN p.pubtruncate THEN 'truncate' END), \
           CASE WHEN p.pubviaroot THEN 'true' ELSE 'false' END), \
           pg_catalog.format('DROP PUBLICATION IF EXISTS %I', p.pubname), 'pg_publication:' || p.oid \
         FROM pg_catalog.pg_publication p ORDER BY p.oid",
    )?;
    // Column lists and row filters exist from PostgreSQL 15 on.
    let (columns, filter) = if server_version >= 150000 {
        (
            "CASE WHEN r.prattrs IS NOT NULL THEN ' (' || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.n) \
               FROM pg_catalog.unnest(r.prattrs) WITH ORDINALITY k(attnum, n) \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = r.prrelid AND a.attnum = k.attnum) || ')' ELSE '' END",
            "CASE WHEN r.prqual IS NOT NULL THEN ' WHERE (' || pg_catalog.pg_get_expr(r.prqual, r.prrelid) || ')' ELSE '' END",
        )
    } else {
        ("''", "''")
    };
    found.extend(statements(
        db,
        "publication table",
        &format!(
            "SELECT p.pubname || ' ' || r.prrelid::pg_catalog.regclass::text, \
               pg_catalog.format('ALTER PUBLICATION %I ADD TABLE ONLY %s%s%s', p.pubname, r.prrelid::pg_catalog.regclass, {columns}, {filter}) \
             FROM pg_catalog.pg_publication_rel r JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid ORDER BY r.oid"
        ),
    )?);
    if server_version >= 150000 {
        found.extend(statements(
            db,
            "publication schema",
            "SELECT p.pubname || ' ' || n.nspname, pg_catalog.format('ALTER PUBLICATION %I ADD TABLES IN SCHEMA %I', p.pubname, n.nspname) \
             FROM pg_catalog.pg_publication_namespace s JOIN pg_catalog.pg_publication p ON p.oid = s.pnpubid \
               JOIN pg_catalog.pg_namespace n ON n.oid = s.pnnspid ORDER BY s.oid",
        )?);
    }
    Ok(found)
}

/// Large objects, created empty under their own oids (as pg_dump does: tables may store
/// those oids); their contents follow as [`LargeObjectData`], their owners, privileges and
/// comments in post-data.
fn large_objects(db: &Connection) -> Result<Vec<Statement>> {
    statements(
        db,
        "large object",
        "SELECT l.oid::text, pg_catalog.format('SELECT pg_catalog.lo_create(%s)', l.oid), \
           pg_catalog.format('SELECT pg_catalog.lo_unlink(m.oid) FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = %s', l.oid), \
           'pg_largeobject:' || l.oid \
         FROM pg_catalog.pg_largeobject_metadata l ORDER BY l.oid",
    )
}

fn schemas(db: &Connection) -> Result<Vec<Statement>> {
    statements(
        db,
        "schema",
        &format!(
            "SELECT n.nspname, pg_catalog.format('CREATE SCHEMA IF NOT EXISTS %I', n.nspname), \
             CASE WHEN n.nspname <> 'public' THEN pg_catalog.format('DROP SCHEMA IF EXISTS %I', n.nspname) END, \
             'pg_namespace:' || n.oid \
             FROM pg_catalog.pg_namespace n WHERE {USER_SCHEMA} AND {} ORDER BY n.oid",
            not_extension_member("pg_catalog.pg_namespace", "n.oid")
        ),
    )
}

/// Table and index access methods of the user's (an extension's come with it).
fn access_methods(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.quote_ident(a.amname), \
           pg_catalog.format('CREATE ACCESS METHOD %I TYPE %s HANDLER %s', a.amname, \
             CASE a.amtype WHEN 't' THEN 'TABLE' ELSE 'INDEX' END, a.amhandler::pg_catalog.regproc), \
           pg_catalog.format('DROP ACCESS METHOD IF EXISTS %I', a.amname), \
           'pg_am:' || a.oid \
         FROM pg_catalog.pg_am a WHERE a.oid >= 16384 AND {} ORDER BY a.oid",
        not_extension_member("pg_catalog.pg_am", "a.oid")
    );
    statements(db, "access method", &sql)
}

fn extensions(db: &Connection) -> Result<Vec<Statement>> {
    statements(
        db,
        "extension",
        "SELECT x.extname, pg_catalog.format('CREATE EXTENSION IF NOT EXISTS %I WITH SCHEMA %I', x.extname, n.nspname), \
           NULL, 'pg_extension:' || x.oid \
         FROM pg_catalog.pg_extension x JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace ORDER BY x.oid",
    )
}

/// The types `types` and `base_types` create (a SQL condition on `t`): enums, domains,
/// ranges (with their multirange), free-standing composite types, base types and shell
/// types never defined. A table's row type comes with the table, an array type with its
/// element type.
const CAPTURED_TYPE: &str = "t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' \
     AND (SELECT r.relkind FROM pg_catalog.pg_class r WHERE r.oid = t.typrelid) = 'c') \
     OR (t.typtype = 'b' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend ai \
       WHERE ai.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND ai.objid = t.oid AND ai.deptype = 'i')) \
     OR (t.typtype = 'p' AND NOT t.typisdefined)";

/// The functions a base type `bt` is made from (a SQL list of oids). `SUBSCRIPT` exists
/// from PostgreSQL 14 on, so it is read through JSON.
pub const BASE_TYPE_FUNCTIONS: &str = "bt.typinput, bt.typoutput, bt.typreceive, bt.typsend, bt.typmodin, bt.typmodout, \
     bt.typanalyze, COALESCE((pg_catalog.to_jsonb(bt)->>'typsubscript')::pg_catalog.regproc::pg_catalog.oid, 0)";

/// `CREATE TYPE ... AS RANGE` of the range type `t` with `pg_range` row `r`, as pg_dump
/// writes it. The multirange type's name (PostgreSQL 14 and later) is read through JSON,
/// so that the query also runs on 13.
const RANGE: &str = "pg_catalog.format('CREATE TYPE %s AS RANGE (%s)', t.oid::pg_catalog.regtype, pg_catalog.concat_ws(', ', \
       'SUBTYPE = ' || pg_catalog.format_type(r.rngsubtype, NULL), \
       (SELECT 'MULTIRANGE_TYPE_NAME = ' || m.oid::pg_catalog.regtype::text FROM pg_catalog.pg_type m \
        WHERE m.oid = (pg_catalog.to_jsonb(r)->>'rngmultitypid')::pg_catalog.oid), \
       (SELECT pg_catalog.format('SUBTYPE_OPCLASS = %I.%I', opn.nspname, o.opcname) FROM pg_catalog.pg_opclass o \
          JOIN pg_catalog.pg_namespace opn ON opn.oid = o.opcnamespace WHERE o.oid = r.rngsubopc AND NOT o.opcdefault), \
       CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> (SELECT s.typcollation FROM pg_catalog.pg_type s WHERE s.oid = r.rngsubtype) \
         THEN (SELECT pg_catalog.format('COLLATION = %I.%I', cn.nspname, co.collname) FROM pg_catalog.pg_collation co \
           JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = r.rngcollation) END, \
       CASE WHEN r.rngcanonical <> 0 THEN 'CANONICAL = ' || r.rngcanonical::pg_catalog.regproc END, \
       CASE WHEN r.rngsubdiff <> 0 THEN 'SUBTYPE_DIFF = ' || r.rngsubdiff::pg_catalog.regproc END))";

fn types(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT t.oid::pg_catalog.regtype::text, \
           CASE t.typtype \
             WHEN 'e' THEN pg_catalog.format('CREATE TYPE %s AS ENUM (%s)', t.oid::pg_catalog.regtype, \
               (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(l.enumlabel), ', ' ORDER BY l.enumsortorder) \
                FROM pg_catalog.pg_enum l WHERE l.enumtypid = t.oid)) \
             WHEN 'd' THEN pg_catalog.format('CREATE DOMAIN %s AS %s', t.oid::pg_catalog.regtype, \
                 pg_catalog.format_type(t.typbasetype, t.typtypmod)) \
               || CASE WHEN t.typcollation <> 0 AND t.typcollation <> (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = t.typbasetype) \
                    THEN ' COLLATE ' || (SELECT pg_catalog.format('%I.%I', cn.nspname, co.collname) FROM pg_catalog.pg_collation co \
                      JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = t.typcollation) ELSE '' END \
               || CASE WHEN t.typdefault IS NOT NULL THEN ' DEFAULT ' || t.typdefault ELSE '' END \
               || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END \
               || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format(' CONSTRAINT %I %s', c.conname, pg_catalog.pg_get_constraintdef(c.oid)), '' ORDER BY c.conname) \
                  FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c'), '') \
             WHEN 'r' THEN (SELECT {RANGE} FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid) \
             ELSE pg_catalog.format('CREATE TYPE %s AS (%s)', t.oid::pg_catalog.regtype, \
               (SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum) \
                FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)) \
           END, \
           pg_catalog.format('DROP %s IF EXISTS %s', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::pg_catalog.regtype), \
           'pg_type:' || t.oid \
         FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
         WHERE {USER_SCHEMA} AND {} \
           AND ({CAPTURED_TYPE}) AND t.typtype NOT IN ('b', 'p') \
         ORDER BY t.oid",
        not_extension_member("pg_catalog.pg_type", "t.oid")
    );
    statements(db, "type", &sql)
}

/// Base types (made from C functions), as pg_dump writes them: a shell first (`CREATE
/// TYPE x`, which the type's functions can name), then, once its functions exist, the
/// whole type with every property. A shell never defined is captured as it is.
/// Dropping a base type drops its own functions with it (`--clean` checks first that
/// nothing else depends on it).
fn base_types(db: &Connection) -> Result<Vec<Statement>> {
    let captured = format!(
        "FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
         WHERE {USER_SCHEMA} AND {} AND t.typtype IN ('b', 'p') AND ({CAPTURED_TYPE}) ORDER BY t.oid",
        not_extension_member("pg_catalog.pg_type", "t.oid")
    );
    let mut found = statements(
        db,
        "type",
        &format!(
            "SELECT t.oid::pg_catalog.regtype::text, pg_catalog.format('CREATE TYPE %s', t.oid::pg_catalog.regtype), \
               CASE WHEN t.typtype = 'p' THEN pg_catalog.format('DROP TYPE IF EXISTS %s', t.oid::pg_catalog.regtype) END, \
               CASE WHEN t.typtype = 'p' THEN 'pg_type:' ELSE 'pg_type_shell:' END || t.oid {captured}"
        ),
    )?;
    found.extend(statements(
        db,
        "base type",
        &format!(
            "SELECT t.oid::pg_catalog.regtype::text, pg_catalog.format('CREATE TYPE %s (%s)', t.oid::pg_catalog.regtype, pg_catalog.concat_ws(', ', \
               'INTERNALLENGTH = ' || CASE WHEN t.typlen = -1 THEN 'variable' ELSE t.typlen::text END, \
               'INPUT = ' || t.typinput::pg_catalog.regproc, \
               'OUTPUT = ' || t.typoutput::pg_catalog.regproc, \
               CASE WHEN t.typreceive <> 0 THEN 'RECEIVE = ' || t.typreceive::pg_catalog.regproc END, \
               CASE WHEN t.typsend <> 0 THEN 'SEND = ' || t.typsend::pg_catalog.regproc END, \
               CASE WHEN t.typmodin <> 0 THEN 'TYPMOD_IN = ' || t.typmodin::pg_catalog.regproc END, \
               CASE WHEN t.typmodout <> 0 THEN 'TYPMOD_OUT = ' || t.typmodout::pg_catalog.regproc END, \
               CASE WHEN t.typanalyze <> 0 THEN 'ANALYZE = ' || t.typanalyze::pg_catalog.regproc END, \
               CASE WHEN COALESCE(pg_catalog.to_jsonb(t)->>'typsubscript', '-') <> '-' \
                 THEN 'SUBSCRIPT = ' || (pg_catalog.to_jsonb(t)->>'typsubscript') END, \
               CASE WHEN t.typbyval THEN 'PASSEDBYVALUE' END, \
               'ALIGNMENT = ' || CASE t.typalign WHEN 'c' THEN 'char' WHEN 's' THEN 'int2' WHEN 'i' THEN 'int4' ELSE 'double' END, \
               'STORAGE = ' || CASE t.typstorage WHEN 'p' THEN 'plain' WHEN 'e' THEN 'external' WHEN 'm' THEN 'main' ELSE 'extended' END, \
               CASE WHEN t.typcategory <> 'U' THEN 'CATEGORY = ' || pg_catalog.quote_literal(t.typcategory::text) END, \
               CASE WHEN t.typispreferred THEN 'PREFERRED = true' END, \
               CASE WHEN t.typdefault IS NOT NULL THEN 'DEFAULT = ' || pg_catalog.quote_literal(t.typdefault) END, \
               CASE WHEN t.typelem <> 0 THEN 'ELEMENT = ' || pg_catalog.format_type(t.typelem, NULL) END, \
               CASE WHEN t.typdelim <> ',' THEN 'DELIMITER = ' || pg_catalog.quote_literal(t.typdelim::text) END, \
               CASE WHEN t.typcollation <> 0 THEN 'COLLATABLE = true' END)), \
               pg_catalog.format('DROP TYPE IF EXISTS %s CASCADE', t.oid::pg_catalog.regtype), 'pg_type:' || t.oid \
             {}",
            captured.replace("t.typtype IN ('b', 'p')", "t.typtype = 'b'")
        ),
    )?);
    Ok(found)
}

fn functions(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT p.oid::pg_catalog.regprocedure::text, pg_catalog.pg_get_functiondef(p.oid), \
           pg_catalog.format('DROP %s IF EXISTS %s', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::pg_catalog.regprocedure), \
           'pg_proc:' || p.oid \
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE {USER_SCHEMA} AND {} AND p.prokind IN ('f', 'p', 'w') ORDER BY p.oid",
        own_object("pg_catalog.pg_proc", "p.oid")
    );
    statements(db, "function", &sql)
}

/// User-defined aggregates, written from `pg_aggregate` as pg_dump does (PostgreSQL has
/// no deparser for them): every support function, state type and option.
fn aggregates(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT p.oid::pg_catalog.regprocedure::text, \
           pg_catalog.format('CREATE AGGREGATE %I.%I(%s) (%s)', n.nspname, p.proname, \
             CASE WHEN p.pronargs = 0 THEN '*' ELSE pg_catalog.pg_get_function_arguments(p.oid) END, \
             pg_catalog.concat_ws(', ', \
               'SFUNC = ' || a.aggtransfn::pg_catalog.regproc, \
               'STYPE = ' || pg_catalog.format_type(a.aggtranstype, NULL), \
               CASE WHEN a.aggtransspace <> 0 THEN 'SSPACE = ' || a.aggtransspace END, \
               CASE WHEN a.aggfinalfn <> 0 THEN 'FINALFUNC = ' || a.aggfinalfn::pg_catalog.regproc END, \
               CASE WHEN a.aggfinalextra THEN 'FINALFUNC_EXTRA' END, \
               CASE WHEN a.aggfinalfn <> 0 THEN 'FINALFUNC_MODIFY = ' || \
                 CASE a.aggfinalmodify WHEN 's' THEN 'SHAREABLE' WHEN 'w' THEN 'READ_WRITE' ELSE 'READ_ONLY' END END, \
               CASE WHEN a.aggcombinefn <> 0 THEN 'COMBINEFUNC = ' || a.aggcombinefn::pg_catalog.regproc END, \
               CASE WHEN a.aggserialfn <> 0 THEN 'SERIALFUNC = ' || a.aggserialfn::pg_catalog.regproc END, \
               CASE WHEN a.aggdeserialfn <> 0 THEN 'DESERIALFUNC = ' || a.aggdeserialfn::pg_catalog.regproc END, \
               CASE WHEN a.agginitval IS NOT NULL THEN 'INITCOND = ' || pg_catalog.quote_literal(a.agginitval) END, \
               CASE WHEN a.aggmtransfn <> 0 THEN 'MSFUNC = ' || a.aggmtransfn::pg_catalog.regproc \
                 || ', MINVFUNC = ' || a.aggminvtransfn::pg_catalog.regproc \
                 || ', MSTYPE = ' || pg_catalog.format_type(a.aggmtranstype, NULL) END, \
               CASE WHEN a.aggmtransspace <> 0 THEN 'MSSPACE = ' || a.aggmtransspace END, \
               CASE WHEN a.aggmfinalfn <> 0 THEN 'MFINALFUNC = ' || a.aggmfinalfn::pg_catalog.regproc END, \
               CASE WHEN a.aggmfinalextra THEN 'MFINALFUNC_EXTRA' END, \
               CASE WHEN a.aggmfinalfn <> 0 THEN 'MFINALFUNC_MODIFY = ' || \
                 CASE a.aggmfinalmodify WHEN 's' THEN 'SHAREABLE' WHEN 'w' THEN 'READ_WRITE' ELSE 'READ_ONLY' END END, \
               CASE WHEN a.aggminitval IS NOT NULL THEN 'MINITCOND = ' || pg_catalog.quote_literal(a.aggminitval) END, \
               CASE WHEN a.aggsortop <> 0 THEN (SELECT pg_catalog.format('SORTOP = OPERATOR(%I.%s)', so.nspname, o.oprname) \
                 FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace so ON so.oid = o.oprnamespace WHERE o.oid = a.aggsortop) END, \
               CASE WHEN a.aggkind = 'h' THEN 'HYPOTHETICAL' END, \
               CASE p.proparallel WHEN 's' THEN 'PARALLEL = SAFE' WHEN 'r' THEN 'PARALLEL = RESTRICTED' END)), \
           pg_catalog.format('DROP AGGREGATE IF EXISTS %s', p.oid::pg_catalog.regprocedure), \
           'pg_proc:' || p.oid \
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid \
           JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE {USER_SCHEMA} AND {} ORDER BY p.oid",
        own_object("pg_catalog.pg_proc", "p.oid")
    );
    statements(db, "aggregate", &sql)
}

/// User-defined collations. The locale column moved between versions (`collcollate` for
/// ICU before 15, `colliculocale` in 15 and 16, `colllocale` from 17): the row is read as
/// JSON so that one query serves them all.
fn collations(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.collname), \
           pg_catalog.format('CREATE COLLATION %I.%I (provider = %s, %s%s)', n.nspname, c.collname, \
             CASE c.collprovider WHEN 'i' THEN 'icu' ELSE 'libc' END, \
             CASE WHEN c.collprovider = 'i' THEN pg_catalog.format('locale = %L', \
                 COALESCE(j.v->>'colllocale', j.v->>'colliculocale', c.collcollate)) \
               WHEN c.collcollate = c.collctype THEN pg_catalog.format('locale = %L', c.collcollate) \
               ELSE pg_catalog.format('lc_collate = %L, lc_ctype = %L', c.collcollate, c.collctype) END, \
             CASE WHEN NOT c.collisdeterministic THEN ', deterministic = false' ELSE '' END), \
           pg_catalog.format('DROP COLLATION IF EXISTS %I.%I', n.nspname, c.collname), \
           'pg_collation:' || c.oid \
         FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace, \
           LATERAL (SELECT pg_catalog.to_jsonb(c) AS v) j \
         WHERE {USER_SCHEMA} AND c.oid >= 16384 AND {} ORDER BY c.oid",
        not_extension_member("pg_catalog.pg_collation", "c.oid")
    );
    statements(db, "collation", &sql)
}

/// User-defined casts: through a function, by I/O conversion or binary-coercible, with
/// their context.
fn casts(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.format('(%s AS %s)', pg_catalog.format_type(c.castsource, NULL), pg_catalog.format_type(c.casttarget, NULL)), \
           pg_catalog.format('CREATE CAST (%s AS %s) %s%s', \
             pg_catalog.format_type(c.castsource, NULL), pg_catalog.format_type(c.casttarget, NULL), \
             CASE c.castmethod WHEN 'f' THEN 'WITH FUNCTION ' || c.castfunc::pg_catalog.regprocedure::text \
               WHEN 'i' THEN 'WITH INOUT' ELSE 'WITHOUT FUNCTION' END, \
             CASE c.castcontext WHEN 'a' THEN ' AS ASSIGNMENT' WHEN 'i' THEN ' AS IMPLICIT' ELSE '' END), \
           pg_catalog.format('DROP CAST IF EXISTS (%s AS %s)', pg_catalog.format_type(c.castsource, NULL), pg_catalog.format_type(c.casttarget, NULL)), \
           'pg_cast:' || c.oid \
         FROM pg_catalog.pg_cast c WHERE c.oid >= 16384 AND {} ORDER BY c.oid",
        own_object("pg_catalog.pg_cast", "c.oid")
    );
    statements(db, "cast", &sql)
}

/// User-defined encoding conversions.
fn conversions(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.conname), \
           pg_catalog.format('CREATE %sCONVERSION %I.%I FOR %L TO %L FROM %s', CASE WHEN c.condefault THEN 'DEFAULT ' ELSE '' END, \
             n.nspname, c.conname, pg_catalog.pg_encoding_to_char(c.conforencoding), \
             pg_catalog.pg_encoding_to_char(c.contoencoding), c.conproc::pg_catalog.regproc), \
           pg_catalog.format('DROP CONVERSION IF EXISTS %I.%I', n.nspname, c.conname), \
           'pg_conversion:' || c.oid \
         FROM pg_catalog.pg_conversion c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace \
         WHERE {USER_SCHEMA} AND {} ORDER BY c.oid",
        not_extension_member("pg_catalog.pg_conversion", "c.oid")
    );
    statements(db, "conversion", &sql)
}

/// Rules other than the `_RETURN` rule that makes a view (which the view's own statement
/// creates). `--clean` drops them before the tables: a rule's action may name another.
fn rules(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.format('%I ON %s', r.rulename, c.oid::pg_catalog.regclass), pg_catalog.pg_get_ruledef(r.oid), \
           pg_catalog.format('DROP RULE IF EXISTS %I ON %s', r.rulename, c.oid::pg_catalog.regclass) \
         FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE r.rulename <> '_RETURN' AND {} ORDER BY r.oid",
        user_relations("'r', 'p', 'v', 'm'")
    );
    statements(db, "rule", &sql)
}

/// Extended statistics objects, with their statistics target when one was set.
fn statistics(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.format('%I.%I', n.nspname, s.stxname), \
           pg_catalog.pg_get_statisticsobjdef(s.oid) \
           || CASE WHEN (pg_catalog.to_jsonb(s)->>'stxstattarget')::integer >= 0 \
                THEN pg_catalog.format('; ALTER STATISTICS %I.%I SET STATISTICS %s', n.nspname, s.stxname, pg_catalog.to_jsonb(s)->>'stxstattarget') \
                ELSE '' END \
         FROM pg_catalog.pg_statistic_ext s JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace \
         WHERE {USER_SCHEMA} AND {} ORDER BY s.oid",
        not_extension_member("pg_catalog.pg_statistic_ext", "s.oid")
    );
    statements(db, "statistics", &sql)
}

/// Event triggers, disabled or limited to replicas as they were. Creating one needs a
/// superuser, as in pg_dump's output. `--clean` drops them first (see `load.rs`).
fn event_triggers(db: &Connection) -> Result<Vec<Statement>> {
    statements(
        db,
        "event trigger",
        &format!(
            "SELECT ev.evtname, \
               pg_catalog.format('CREATE EVENT TRIGGER %I ON %I%s EXECUTE FUNCTION %s()', ev.evtname, ev.evtevent, \
                 CASE WHEN ev.evttags IS NOT NULL THEN ' WHEN TAG IN (' || \
                   (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(t), ', ') FROM pg_catalog.unnest(ev.evttags) t) || ')' ELSE '' END, \
                 ev.evtfoid::pg_catalog.regproc) \
               || CASE ev.evtenabled WHEN 'D' THEN pg_catalog.format('; ALTER EVENT TRIGGER %I DISABLE', ev.evtname) \
                    WHEN 'R' THEN pg_catalog.format('; ALTER EVENT TRIGGER %I ENABLE REPLICA', ev.evtname) \
                    WHEN 'A' THEN pg_catalog.format('; ALTER EVENT TRIGGER %I ENABLE ALWAYS', ev.evtname) ELSE '' END, \
               pg_catalog.format('DROP EVENT TRIGGER IF EXISTS %I', ev.evtname) \
             FROM pg_catalog.pg_event_trigger ev WHERE {} ORDER BY ev.oid",
            not_extension_member("pg_catalog.pg_event_trigger", "ev.oid")
        ),
    )
}

/// `WHERE` terms selecting the user's relations of some kinds.
fn user_relations(kinds: &str) -> String {
    format!(
        "c.relkind IN ({kinds}) AND {USER_SCHEMA} AND {}",
        not_extension_member("pg_catalog.pg_class", "c.oid")
    )
}

/// Whether sequence `c` belongs to an identity column (then the table creates it).
const IDENTITY_SEQUENCE: &str = "EXISTS (SELECT 1 FROM pg_catalog.pg_depend i WHERE i.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
     AND i.objid = c.oid AND i.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND i.deptype = 'i')";

/// The options of sequence `s`, as CREATE SEQUENCE and identity columns take them (an
/// identity sequence has its column's type, and may not be given another).
const SEQUENCE_OPTIONS: &str = "pg_catalog.format('INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s%s', \
     s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache, \
     CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END)";

fn sequences(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT c.oid::pg_catalog.regclass::text, \
           pg_catalog.format('CREATE SEQUENCE %s AS %s %s', c.oid::pg_catalog.regclass, pg_catalog.format_type(s.seqtypid, NULL), {SEQUENCE_OPTIONS}), \
           pg_catalog.format('DROP SEQUENCE IF EXISTS %s', c.oid::pg_catalog.regclass), \
           'pg_class:' || c.oid \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid \
         WHERE {} AND NOT {IDENTITY_SEQUENCE} ORDER BY c.oid",
        user_relations("'S'")
    );
    statements(db, "sequence", &sql)
}

/// Tables and partitioned tables, parents before their partitions.
fn tables(db: &Connection) -> Result<Vec<Statement>> {
    let column = format!(
        "pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)) || {} \
         || CASE WHEN a.attcollation <> 0 AND a.attcollation <> (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = a.atttypid) \
              THEN ' COLLATE ' || (SELECT pg_catalog.format('%I.%I', cn.nspname, co.collname) FROM pg_catalog.pg_collation co \
                JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) ELSE '' END \
         || CASE WHEN a.attidentity <> '' THEN \
              (SELECT pg_catalog.format(' GENERATED %s AS IDENTITY (SEQUENCE NAME %s %s)', \
                  CASE a.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END, s.seqrelid::pg_catalog.regclass, {SEQUENCE_OPTIONS}) \
               FROM pg_catalog.pg_sequence s \
               WHERE s.seqrelid = pg_catalog.pg_get_serial_sequence(c.oid::pg_catalog.regclass::text, a.attname)::pg_catalog.regclass) \
            WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) || ') STORED' \
            WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) \
            ELSE '' END \
         || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END",
        foreign::options("a.attfdwoptions")
    );
    let sql = format!(
        "SELECT c.oid::pg_catalog.regclass::text, \
           CASE WHEN c.relispartition THEN \
             pg_catalog.format('CREATE %sTABLE %s PARTITION OF %s %s', CASE WHEN c.relkind = 'f' THEN 'FOREIGN ' ELSE '' END, \
               c.oid::pg_catalog.regclass, \
               (SELECT h.inhparent::pg_catalog.regclass FROM pg_catalog.pg_inherits h WHERE h.inhrelid = c.oid), \
               pg_catalog.pg_get_expr(c.relpartbound, c.oid)) \
           ELSE \
             pg_catalog.format('CREATE %sTABLE %s (%s)', \
               CASE WHEN c.relkind = 'f' THEN 'FOREIGN ' WHEN c.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END, \
               c.oid::pg_catalog.regclass, \
               (SELECT COALESCE(pg_catalog.string_agg({column}, ', ' ORDER BY a.attnum), '') \
                FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)) \
           END \
           || CASE WHEN c.relkind = 'p' THEN ' PARTITION BY ' || pg_catalog.pg_get_partkeydef(c.oid) ELSE '' END \
           || {TABLE_ACCESS_METHOD} \
           || CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' ELSE '' END \
           || COALESCE((SELECT pg_catalog.format(' SERVER %I', s.srvname) || {} FROM pg_catalog.pg_foreign_table f \
                JOIN pg_catalog.pg_foreign_server s ON s.oid = f.ftserver WHERE f.ftrelid = c.oid), ''), \
           pg_catalog.format('DROP %sTABLE IF EXISTS %s', CASE WHEN c.relkind = 'f' THEN 'FOREIGN ' ELSE '' END, c.oid::pg_catalog.regclass), \
           'pg_class:' || c.oid \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE {} ORDER BY c.relispartition, c.oid",
        foreign::options("f.ftoptions"),
        user_relations("'r', 'p', 'f'")
    );
    statements(db, "table", &sql)
}

/// ` USING method` of relation `c`, whatever the default where it is restored (plain and
/// partitioned tables and materialized views have one; views and foreign tables none).
const TABLE_ACCESS_METHOD: &str = "COALESCE((SELECT ' USING ' || pg_catalog.quote_ident(a.amname) \
     FROM pg_catalog.pg_am a WHERE a.oid = c.relam), '')";

/// CHECK constraints a table declares itself (inherited ones come with the partition).
fn checks(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT k.conname, pg_catalog.format('ALTER TABLE %s%s ADD CONSTRAINT %I %s', \
           CASE WHEN c.relkind = 'p' THEN '' ELSE 'ONLY ' END, c.oid::pg_catalog.regclass, k.conname, pg_catalog.pg_get_constraintdef(k.oid)), \
           NULL, 'pg_constraint:' || k.oid \
         FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE k.contype = 'c' AND k.conislocal AND {} ORDER BY k.oid",
        user_relations("'r', 'p', 'f'")
    );
    statements(db, "check constraint", &sql)
}

fn views(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT c.oid::pg_catalog.regclass::text, \
           pg_catalog.format('CREATE %s %s%s%s AS %s%s', \
             CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, c.oid::pg_catalog.regclass, {TABLE_ACCESS_METHOD}, \
             CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' ELSE '' END, \
             pg_catalog.rtrim(pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), E'\\n '), ';'), \
             CASE c.relkind WHEN 'm' THEN ' WITH NO DATA' ELSE '' END), \
           pg_catalog.format('DROP %s IF EXISTS %s', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, c.oid::pg_catalog.regclass), \
           'pg_class:' || c.oid \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE {} ORDER BY c.oid",
        user_relations("'v', 'm'")
    );
    statements(db, "view", &sql)
}

/// Sequences that belong to a column (`serial`), attached once their table exists.
fn sequence_owners(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT c.oid::pg_catalog.regclass::text, pg_catalog.format('ALTER SEQUENCE %s OWNED BY %s.%I', \
           c.oid::pg_catalog.regclass, d.refobjid::pg_catalog.regclass, a.attname) \
         FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
         WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
           AND d.deptype = 'a' AND d.refobjsubid > 0 AND {} ORDER BY c.oid",
        user_relations("'S'")
    );
    statements(db, "sequence owner", &sql)
}

/// Indexes not behind a constraint. An index on a partitioned table is created on the
/// whole tree (not `ON ONLY`), which builds the partitions' indexes too.
fn indexes(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT x.indexrelid::pg_catalog.regclass::text, \
           pg_catalog.replace(pg_catalog.pg_get_indexdef(x.indexrelid), ' ON ONLY ', ' ON ') \
         FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
           JOIN pg_catalog.pg_class c ON c.oid = x.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE {} AND NOT i.relispartition \
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype IN ('p', 'u', 'x')) \
         ORDER BY x.indexrelid",
        user_relations("'r', 'p', 'm'")
    );
    statements(db, "index", &sql)
}

/// Constraint DDL for a table's own constraints of the given types (not those a partition
/// inherits from its parent, which the parent's constraint creates).
fn table_constraints(db: &Connection, kind: &str, types: &str) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT k.conname, pg_catalog.format('ALTER TABLE %s%s ADD CONSTRAINT %I %s', \
           CASE WHEN c.relkind = 'p' THEN '' ELSE 'ONLY ' END, c.oid::pg_catalog.regclass, k.conname, pg_catalog.pg_get_constraintdef(k.oid)) \
         FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE k.contype IN ({types}) AND k.conparentid = 0 AND {} ORDER BY k.oid",
        user_relations("'r', 'p'")
    );
    statements(db, kind, &sql)
}

fn key_constraints(db: &Connection) -> Result<Vec<Statement>> {
    table_constraints(db, "key constraint", "'p', 'u', 'x'")
}

fn foreign_keys(db: &Connection) -> Result<Vec<Statement>> {
    table_constraints(db, "foreign key", "'f'")
}

fn triggers(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT t.tgname, pg_catalog.pg_get_triggerdef(t.oid) \
         FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND {} ORDER BY t.oid",
        user_relations("'r', 'p', 'v', 'f'")
    );
    statements(db, "trigger", &sql)
}

/// Row-level security switched on (and forced) per table, after the data is loaded: a
/// table with forced row security takes no COPY.
fn row_security(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT c.oid::pg_catalog.regclass::text, \
           pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', c.oid::pg_catalog.regclass) \
           || CASE WHEN c.relforcerowsecurity THEN pg_catalog.format('; ALTER TABLE %s FORCE ROW LEVEL SECURITY', c.oid::pg_catalog.regclass) ELSE '' END \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relrowsecurity AND {} ORDER BY c.oid",
        user_relations("'r', 'p'")
    );
    statements(db, "row security", &sql)
}

/// Row-level security policies, for the roles they name (which must exist where the
/// snapshot is restored, or the restore fails naming them).
fn policies(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.format('%I ON %s', p.polname, c.oid::pg_catalog.regclass), \
           pg_catalog.format('CREATE POLICY %I ON %s AS %s FOR %s TO %s', p.polname, c.oid::pg_catalog.regclass, \
             CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, \
             CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END, \
             (SELECT pg_catalog.string_agg(CASE WHEN r.role = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r.role)) END, ', ' ORDER BY r.n) \
              FROM pg_catalog.unnest(p.polroles) WITH ORDINALITY r(role, n))) \
           || CASE WHEN p.polqual IS NOT NULL THEN ' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')' ELSE '' END \
           || CASE WHEN p.polwithcheck IS NOT NULL THEN ' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')' ELSE '' END \
         FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE {} ORDER BY p.oid",
        user_relations("'r', 'p'")
    );
    statements(db, "policy", &sql)
}

/// Each sequence's position. Sequences are not transactional: like pg_dump, this reads
/// their value at the time of the backup, which is at or after the snapshot's.
fn sequence_values(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT c.oid::pg_catalog.regclass::text, pg_catalog.format('SELECT pg_catalog.setval(%L, %s, %s)', \
           c.oid::pg_catalog.regclass::text, COALESCE(pg_catalog.pg_sequence_last_value(c.oid), s.seqstart), \
           CASE WHEN pg_catalog.pg_sequence_last_value(c.oid) IS NULL THEN 'false' ELSE 'true' END) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid \
         WHERE {} ORDER BY c.oid",
        user_relations("'S'")
    );
    statements(db, "sequence value", &sql)
}

fn refreshes(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT c.oid::pg_catalog.regclass::text, pg_catalog.format('REFRESH MATERIALIZED VIEW %s', c.oid::pg_catalog.regclass) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE {} AND c.relispopulated ORDER BY c.oid",
        user_relations("'m'")
    );
    statements(db, "materialized view data", &sql)
}

/// The user's operators, operator classes and families, text search objects and
/// conversions, as rows of `(classid, oid, kind, ident, owner)`: `COMMENT ON` and `ALTER
/// ... OWNER TO` name them `kind ident`; parsers and templates have no owner (NULL).
fn named_objects() -> String {
    let branches = [
        (
            "pg_operator",
            "o",
            "'OPERATOR'",
            "o.oid::pg_catalog.regoperator::text",
            "o.oprowner",
            "o.oprnamespace",
        ),
        (
            "pg_opclass",
            "c",
            "'OPERATOR CLASS'",
            "pg_catalog.format('%I.%I USING %I', s.nspname, c.opcname, (SELECT a.amname FROM pg_catalog.pg_am a WHERE a.oid = c.opcmethod))",
            "c.opcowner",
            "c.opcnamespace",
        ),
        (
            "pg_opfamily",
            "f",
            "'OPERATOR FAMILY'",
            "pg_catalog.format('%I.%I USING %I', s.nspname, f.opfname, (SELECT a.amname FROM pg_catalog.pg_am a WHERE a.oid = f.opfmethod))",
            "f.opfowner",
            "f.opfnamespace",
        ),
        (
            "pg_ts_parser",
            "p",
            "'TEXT SEARCH PARSER'",
            "pg_catalog.format('%I.%I', s.nspname, p.prsname)",
            "NULL::pg_catalog.oid",
            "p.prsnamespace",
        ),
        (
            "pg_ts_template",
            "t",
            "'TEXT SEARCH TEMPLATE'",
            "pg_catalog.format('%I.%I', s.nspname, t.tmplname)",
            "NULL::pg_catalog.oid",
            "t.tmplnamespace",
        ),
        (
            "pg_ts_dict",
            "d",
            "'TEXT SEARCH DICTIONARY'",
            "pg_catalog.format('%I.%I', s.nspname, d.dictname)",
            "d.dictowner",
            "d.dictnamespace",
        ),
        (
            "pg_ts_config",
            "c",
            "'TEXT SEARCH CONFIGURATION'",
            "pg_catalog.format('%I.%I', s.nspname, c.cfgname)",
            "c.cfgowner",
            "c.cfgnamespace",
        ),
        (
            "pg_conversion",
            "c",
            "'CONVERSION'",
            "pg_catalog.format('%I.%I', s.nspname, c.conname)",
            "c.conowner",
            "c.connamespace",
        ),
    ];
    let branches: Vec<String> = branches
        .iter()
        .map(|(catalog, alias, kind, ident, owner, namespace)| {
            format!(
                "SELECT 'pg_catalog.{catalog}'::pg_catalog.regclass AS classid, {alias}.oid, {kind} AS kind, {ident} AS ident, \
                   {owner} AS owner, s.oid AS namespace \
                 FROM pg_catalog.{catalog} {alias} JOIN pg_catalog.pg_namespace s ON s.oid = {namespace}"
            )
        })
        .collect();
    format!(
        "SELECT x.classid, x.oid, x.kind, x.ident, x.owner FROM ({}) x \
           JOIN pg_catalog.pg_namespace n ON n.oid = x.namespace \
         WHERE {USER_SCHEMA} AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e \
           WHERE e.classid = x.classid AND e.objid = x.oid AND e.deptype = 'e')",
        branches.join(" UNION ALL ")
    )
}

/// The subscriptions `subscriptions` captures (a SQL condition on `s`): the current
/// database's, if the backup's user may read them.
fn captured_subscriptions() -> String {
    format!(
        "{} AND {}",
        subscriptions::OF_THIS_DATABASE,
        subscriptions::READABLE
    )
}

/// Comments on schemas, relations, columns, types, functions, constraints and triggers.
fn comments(db: &Connection) -> Result<Vec<Statement>> {
    described(
        db,
        "comment",
        "(SELECT objoid, classoid, objsubid, description AS text, NULL::pg_catalog.text AS provider FROM pg_catalog.pg_description)",
        "pg_catalog.format('COMMENT ON %s IS %L', target, text)",
    )
}

/// Security labels, as pg_dump writes them: one per provider. Restoring one needs its
/// provider loaded where it is restored (sepgsql, PostgreSQL Anonymizer...); without it
/// the restore fails, naming the provider, rather than leave out a label that may guard
/// data.
fn security_labels(db: &Connection) -> Result<Vec<Statement>> {
    described(
        db,
        "security label",
        "(SELECT objoid, classoid, objsubid, label AS text, provider FROM pg_catalog.pg_seclabel)",
        "pg_catalog.format('SECURITY LABEL FOR %I ON %s IS %L', provider, target, text)",
    )
}

/// What `texts` (a relation of `objoid, classoid, objsubid, text, provider`: the comments
/// or the security labels) says of the captured objects, as `statement` (a SQL
/// expression of `target`, `text` and `provider`) writes it.
fn described(db: &Connection, kind: &str, texts: &str, statement: &str) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT target, {statement} FROM ( \
           SELECT CASE WHEN d.objsubid > 0 THEN pg_catalog.format('COLUMN %s.%I', c.oid::pg_catalog.regclass, \
                    (SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = d.objsubid)) \
                  ELSE (CASE c.relkind WHEN 'v' THEN 'VIEW ' WHEN 'm' THEN 'MATERIALIZED VIEW ' WHEN 'S' THEN 'SEQUENCE ' \
                    WHEN 'i' THEN 'INDEX ' WHEN 'I' THEN 'INDEX ' WHEN 'f' THEN 'FOREIGN TABLE ' ELSE 'TABLE ' END) \
                    || c.oid::pg_catalog.regclass::text END AS target, \
                  d.text, d.provider, 1 AS phase, c.oid AS oid, d.objsubid AS sub \
           FROM {texts} d JOIN pg_catalog.pg_class c ON c.oid = d.objoid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           WHERE d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND {rels} \
         UNION ALL \
           SELECT pg_catalog.format('SCHEMA %I', n.nspname), d.text, d.provider, 0, n.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_namespace n ON n.oid = d.objoid \
           WHERE d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND {USER_SCHEMA} \
         UNION ALL \
           SELECT (CASE t.typtype WHEN 'd' THEN 'DOMAIN ' ELSE 'TYPE ' END) || t.oid::pg_catalog.regtype::text, d.text, d.provider, 2, t.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_type t ON t.oid = d.objoid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
           WHERE d.classoid = 'pg_catalog.pg_type'::pg_catalog.regclass AND {USER_SCHEMA} AND {types} \
         UNION ALL \
           SELECT (CASE p.prokind WHEN 'p' THEN 'PROCEDURE ' WHEN 'a' THEN 'AGGREGATE ' ELSE 'FUNCTION ' END) || p.oid::pg_catalog.regprocedure::text, d.text, d.provider, 3, p.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_proc p ON p.oid = d.objoid \
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
           WHERE d.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND {USER_SCHEMA} AND {procs} \
         UNION ALL \
           SELECT CASE WHEN k.contypid <> 0 THEN pg_catalog.format('CONSTRAINT %I ON DOMAIN %s', k.conname, k.contypid::pg_catalog.regtype) \
                  ELSE pg_catalog.format('CONSTRAINT %I ON %s', k.conname, k.conrelid::pg_catalog.regclass) END, d.text, d.provider, 4, k.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_constraint k ON k.oid = d.objoid \
             JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace \
           WHERE d.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND {USER_SCHEMA} \
         UNION ALL \
           SELECT pg_catalog.format('TRIGGER %I ON %s', t.tgname, t.tgrelid::pg_catalog.regclass), d.text, d.provider, 5, t.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_trigger t ON t.oid = d.objoid \
           WHERE d.classoid = 'pg_catalog.pg_trigger'::pg_catalog.regclass \
         UNION ALL \
           SELECT pg_catalog.format('LARGE OBJECT %s', d.objoid), d.text, d.provider, 6, d.objoid, 0 \
           FROM {texts} d \
           WHERE d.classoid = 'pg_catalog.pg_largeobject'::pg_catalog.regclass \
         UNION ALL \
           SELECT pg_catalog.format('PUBLICATION %I', p.pubname), d.text, d.provider, 7, p.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_publication p ON p.oid = d.objoid \
           WHERE d.classoid = 'pg_catalog.pg_publication'::pg_catalog.regclass \
         UNION ALL \
           SELECT pg_catalog.format('FOREIGN DATA WRAPPER %I', w.fdwname), d.text, d.provider, 9, w.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = d.objoid \
           WHERE d.classoid = 'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass \
         UNION ALL \
           SELECT pg_catalog.format('SERVER %I', s.srvname), d.text, d.provider, 10, s.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_foreign_server s ON s.oid = d.objoid \
           WHERE d.classoid = 'pg_catalog.pg_foreign_server'::pg_catalog.regclass \
         UNION ALL \
           SELECT pg_catalog.format('LANGUAGE %I', l.lanname), d.text, d.provider, 11, l.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_language l ON l.oid = d.objoid \
           WHERE d.classoid = 'pg_catalog.pg_language'::pg_catalog.regclass AND l.oid >= 16384 \
         UNION ALL \
           SELECT pg_catalog.format('TRANSFORM FOR %s LANGUAGE %I', pg_catalog.format_type(t.trftype, NULL), l.lanname), \
             d.text, d.provider, 12, t.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_transform t ON t.oid = d.objoid \
             JOIN pg_catalog.pg_language l ON l.oid = t.trflang \
           WHERE d.classoid = 'pg_catalog.pg_transform'::pg_catalog.regclass \
         UNION ALL \
           SELECT pg_catalog.format('SUBSCRIPTION %I', s.subname), d.text, d.provider, 13, s.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_subscription s ON s.oid = d.objoid \
           WHERE d.classoid = 'pg_catalog.pg_subscription'::pg_catalog.regclass AND {subscriptions} \
         UNION ALL \
           SELECT pg_catalog.format('ACCESS METHOD %I', a.amname), d.text, d.provider, 14, a.oid, 0 \
           FROM {texts} d JOIN pg_catalog.pg_am a ON a.oid = d.objoid \
           WHERE d.classoid = 'pg_catalog.pg_am'::pg_catalog.regclass AND a.oid >= 16384 \
         UNION ALL \
           SELECT x.kind || ' ' || x.ident, d.text, d.provider, 8, x.oid, 0 \
           FROM {texts} d JOIN ({named}) x ON x.classid = d.classoid AND x.oid = d.objoid \
         ) described ORDER BY phase, oid, sub, provider",
        rels = user_relations("'r', 'p', 'v', 'm', 'S', 'i', 'I', 'c', 'f'"),
        named = named_objects(),
        types = not_extension_member("pg_catalog.pg_type", "t.oid"),
        procs = own_object("pg_catalog.pg_proc", "p.oid"),
        subscriptions = captured_subscriptions(),
    );
    statements(db, kind, &sql)
}

/// The captured objects' owners, privileges (GRANT and REVOKE, per column too) and the
/// default privileges, last: as pg_dump writes them, an object's ACL is rebuilt from
/// nothing (`REVOKE ALL` from PUBLIC and the owner) then granted entry by entry, so the
/// restored ACL is the same array. Identity and serial sequences follow their table's
/// owner. Rows: (object, statement, roles it names, role the restorer acts as).
fn ownership_and_privileges(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "WITH objects(phase, oid, alter_kind, grant_kind, ident, owner, acl, owned_sequence, default_owner) AS ( \
           SELECT 0, n.oid, 'SCHEMA', 'SCHEMA', pg_catalog.quote_ident(n.nspname), n.nspowner, n.nspacl, false, \
             n.nspname = 'public' AND pg_catalog.pg_get_userbyid(n.nspowner) = 'pg_database_owner' \
           FROM pg_catalog.pg_namespace n WHERE {USER_SCHEMA} AND {schemas} \
         UNION ALL \
           SELECT 1, t.oid, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, \
             t.oid::pg_catalog.regtype::text, t.typowner, t.typacl, false, false \
           FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
           WHERE {USER_SCHEMA} AND {types} AND ({CAPTURED_TYPE}) \
         UNION ALL \
           SELECT 2, p.oid, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, \
             CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::pg_catalog.regprocedure::text, p.proowner, p.proacl, false, false \
           FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
           WHERE {USER_SCHEMA} AND {procs} AND p.prokind IN ('f', 'p', 'w', 'a') \
         UNION ALL \
           SELECT 3, c.oid, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' \
               WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, \
             CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::pg_catalog.regclass::text, c.relowner, c.relacl, \
             c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
               AND d.objid = c.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')), false \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           WHERE {rels} \
         UNION ALL \
           SELECT 6, l.oid, 'LARGE OBJECT', 'LARGE OBJECT', l.oid::text, l.lomowner, l.lomacl, false, false \
           FROM pg_catalog.pg_largeobject_metadata l \
         UNION ALL \
           SELECT 7, p.oid, 'PUBLICATION', 'PUBLICATION', pg_catalog.quote_ident(p.pubname), p.pubowner, NULL::pg_catalog.aclitem[], false, false \
           FROM pg_catalog.pg_publication p \
         UNION ALL \
           SELECT 9, w.oid, 'FOREIGN DATA WRAPPER', 'FOREIGN DATA WRAPPER', pg_catalog.quote_ident(w.fdwname), w.fdwowner, w.fdwacl, false, false \
           FROM pg_catalog.pg_foreign_data_wrapper w WHERE {wrappers} \
         UNION ALL \
           SELECT 10, s.oid, 'SERVER', 'FOREIGN SERVER', pg_catalog.quote_ident(s.srvname), s.srvowner, s.srvacl, false, false \
           FROM pg_catalog.pg_foreign_server s WHERE {servers} \
         UNION ALL \
           SELECT 11, l.oid, 'LANGUAGE', 'LANGUAGE', pg_catalog.quote_ident(l.lanname), l.lanowner, l.lanacl, false, false \
           FROM pg_catalog.pg_language l WHERE l.lanispl AND l.oid >= 16384 AND {languages} \
         UNION ALL \
           SELECT 13, s.oid, 'SUBSCRIPTION', 'SUBSCRIPTION', pg_catalog.quote_ident(s.subname), s.subowner, NULL::pg_catalog.aclitem[], false, false \
           FROM pg_catalog.pg_subscription s WHERE {subscriptions} \
         UNION ALL \
           SELECT 14, c.oid, 'COLLATION', 'COLLATION', pg_catalog.format('%I.%I', n.nspname, c.collname), c.collowner, \
             NULL::pg_catalog.aclitem[], false, false \
           FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace \
           WHERE {USER_SCHEMA} AND c.oid >= 16384 AND {collations} \
         UNION ALL \
           SELECT 15, x.oid, 'STATISTICS', 'STATISTICS', pg_catalog.format('%I.%I', n.nspname, x.stxname), x.stxowner, \
             NULL::pg_catalog.aclitem[], false, false \
           FROM pg_catalog.pg_statistic_ext x JOIN pg_catalog.pg_namespace n ON n.oid = x.stxnamespace \
           WHERE {USER_SCHEMA} AND {statistics} \
         UNION ALL \
           SELECT 16, et.oid, 'EVENT TRIGGER', 'EVENT TRIGGER', pg_catalog.quote_ident(et.evtname), et.evtowner, \
             NULL::pg_catalog.aclitem[], false, false \
           FROM pg_catalog.pg_event_trigger et WHERE {event_triggers} \
         UNION ALL \
           SELECT 8, x.oid, x.kind, x.kind, x.ident, x.owner, NULL::pg_catalog.aclitem[], false, false \
           FROM ({named}) x WHERE x.owner IS NOT NULL \
         ), \
         grants AS ( \
           SELECT o.phase, o.oid, o.grant_kind, o.ident, x.grantee, x.is_grantable, \
             pg_catalog.string_agg(x.privilege_type, ', ' ORDER BY x.n) AS privileges, pg_catalog.min(x.n) AS n \
           FROM objects o, pg_catalog.aclexplode(o.acl) WITH ORDINALITY x(grantor, grantee, privilege_type, is_grantable, n) \
           GROUP BY o.phase, o.oid, o.grant_kind, o.ident, x.grantee, x.is_grantable \
         ), \
         columns AS ( \
           SELECT c.oid, a.attnum, c.oid::pg_catalog.regclass::text AS ident, pg_catalog.quote_ident(a.attname) AS col, x.grantee, x.is_grantable, \
             pg_catalog.string_agg(x.privilege_type, ', ' ORDER BY x.n) AS privileges, pg_catalog.min(x.n) AS n \
           FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace, \
             pg_catalog.aclexplode(a.attacl) WITH ORDINALITY x(grantor, grantee, privilege_type, is_grantable, n) \
           WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped AND {tables} \
           GROUP BY c.oid, a.attnum, c.oid::pg_catalog.regclass::text, a.attname, x.grantee, x.is_grantable \
         ), \
         defaults AS ( \
           SELECT d.oid, pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %I%s', pg_catalog.pg_get_userbyid(d.defaclrole), \
               CASE WHEN d.defaclnamespace <> 0 THEN pg_catalog.format(' IN SCHEMA %I', (SELECT ns.nspname FROM pg_catalog.pg_namespace ns WHERE ns.oid = d.defaclnamespace)) ELSE '' END) AS prefix, \
             CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END AS objects, \
             d.defaclrole, d.defaclnamespace, d.defaclacl \
           FROM pg_catalog.pg_default_acl d \
         ) \
         SELECT name, sql, roles, acts_as, kind FROM ( \
           SELECT o.phase, o.oid, 0 AS step, 0 AS n, o.ident AS name, \
             pg_catalog.format('ALTER %s %s OWNER TO %I', o.alter_kind, o.ident, pg_catalog.pg_get_userbyid(o.owner)) AS sql, \
             NULL AS roles, pg_catalog.pg_get_userbyid(o.owner) AS acts_as, 'owner' AS kind \
           FROM objects o WHERE NOT o.owned_sequence AND NOT o.default_owner \
         UNION ALL \
           SELECT o.phase, o.oid, 1, 0, o.ident, pg_catalog.format('REVOKE ALL ON %s %s FROM PUBLIC', o.grant_kind, o.ident), NULL, NULL, 'privileges' \
           FROM objects o WHERE o.acl IS NOT NULL \
         UNION ALL \
           SELECT o.phase, o.oid, 2, 0, o.ident, pg_catalog.format('REVOKE ALL ON %s %s FROM %I', o.grant_kind, o.ident, pg_catalog.pg_get_userbyid(o.owner)), \
             pg_catalog.pg_get_userbyid(o.owner), NULL, 'privileges' \
           FROM objects o WHERE o.acl IS NOT NULL \
         UNION ALL \
           SELECT g.phase, g.oid, 3, g.n, g.ident, pg_catalog.format('GRANT %s ON %s %s TO %s%s', g.privileges, g.grant_kind, g.ident, \
               CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END, \
               CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), \
             CASE WHEN g.grantee <> 0 THEN pg_catalog.pg_get_userbyid(g.grantee) END, NULL, 'privileges' \
           FROM grants g \
         UNION ALL \
           SELECT 4, k.oid, 4 + k.attnum, k.n, k.ident || '.' || k.col, \
             pg_catalog.format('GRANT %s (%s) ON TABLE %s TO %s%s', k.privileges, k.col, k.ident, \
               CASE WHEN k.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(k.grantee)) END, \
               CASE WHEN k.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), \
             CASE WHEN k.grantee <> 0 THEN pg_catalog.pg_get_userbyid(k.grantee) END, NULL, 'column privileges' \
           FROM columns k \
         UNION ALL \
           SELECT 5, d.oid, 1, 0, d.prefix, pg_catalog.format('%s REVOKE ALL ON %s FROM PUBLIC', d.prefix, d.objects), NULL, pg_catalog.pg_get_userbyid(d.defaclrole), 'default privileges' \
           FROM defaults d WHERE d.defaclnamespace = 0 \
         UNION ALL \
           SELECT 5, d.oid, 2, 0, d.prefix, pg_catalog.format('%s REVOKE ALL ON %s FROM %I', d.prefix, d.objects, pg_catalog.pg_get_userbyid(d.defaclrole)), \
             NULL, pg_catalog.pg_get_userbyid(d.defaclrole), 'default privileges' \
           FROM defaults d WHERE d.defaclnamespace = 0 \
         UNION ALL \
           SELECT 5, d.oid, 3, x.n, d.prefix, pg_catalog.format('%s GRANT %s ON %s TO %s%s', d.prefix, x.privilege_type, d.objects, \
               CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.grantee)) END, \
               CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), \
             CASE WHEN x.grantee <> 0 THEN pg_catalog.pg_get_userbyid(x.grantee) END, pg_catalog.pg_get_userbyid(d.defaclrole), 'default privileges' \
           FROM defaults d, pg_catalog.aclexplode(d.defaclacl) WITH ORDINALITY x(grantor, grantee, privilege_type, is_grantable, n) \
         ) statements ORDER BY phase, oid, step, n",
        schemas = not_extension_member("pg_catalog.pg_namespace", "n.oid"),
        types = not_extension_member("pg_catalog.pg_type", "t.oid"),
        procs = own_object("pg_catalog.pg_proc", "p.oid"),
        rels = user_relations("'r', 'p', 'v', 'm', 'S', 'f'"),
        tables = user_relations("'r', 'p', 'v', 'm', 'f'"),
        named = named_objects(),
        wrappers = not_extension_member("pg_catalog.pg_foreign_data_wrapper", "w.oid"),
        servers = not_extension_member("pg_catalog.pg_foreign_server", "s.oid"),
        languages = not_extension_member("pg_catalog.pg_language", "l.oid"),
        subscriptions = captured_subscriptions(),
        collations = not_extension_member("pg_catalog.pg_collation", "c.oid"),
        statistics = not_extension_member("pg_catalog.pg_statistic_ext", "x.oid"),
        event_triggers = not_extension_member("pg_catalog.pg_event_trigger", "et.oid"),
    );
    let rows = db
        .query(&sql)
        .map_err(|e| e.context("reading owners and privileges"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let field = |i: usize| row.get(i).cloned().flatten();
            Statement {
                kind: field(4).unwrap_or_default(),
                name: field(0).unwrap_or_default(),
                create: terminated(&field(1).unwrap_or_default()),
                drop: None,
                key: None,
                roles: field(2).into_iter().collect(),
                acts_as: field(3),
                note: None,
            }
        })
        .collect())
}

/// Whether the objects of catalog `class` are of a kind this source does not capture (a
/// SQL boolean). Captured: schemas, extensions, types of every kind, functions,
/// procedures and aggregates, collations, casts, conversions, operators, operator classes
/// and families, text search objects, foreign data wrappers, servers and user mappings,
/// procedural languages, transforms, access methods, tables (foreign ones too), row-level
/// security policies, sequences, views, indexes, constraints, defaults, triggers, rules,
/// extended statistics, event triggers, publications, large objects, comments, owners and
/// privileges. A catalog this list does not know (one a later PostgreSQL adds) counts as
/// not captured, and [`uncaptured_dependencies`] names what depends on it.
fn uncaptured_kind(class: &str) -> String {
    format!(
        "{class} NOT IN ('pg_catalog.pg_namespace'::pg_catalog.regclass, 'pg_catalog.pg_extension'::pg_catalog.regclass, \
             'pg_catalog.pg_type'::pg_catalog.regclass, \
             'pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_policy'::pg_catalog.regclass, \
             'pg_catalog.pg_constraint'::pg_catalog.regclass, 'pg_catalog.pg_attrdef'::pg_catalog.regclass, \
             'pg_catalog.pg_trigger'::pg_catalog.regclass, 'pg_catalog.pg_description'::pg_catalog.regclass, \
             'pg_catalog.pg_largeobject'::pg_catalog.regclass, 'pg_catalog.pg_authid'::pg_catalog.regclass, \
             'pg_catalog.pg_database'::pg_catalog.regclass, 'pg_catalog.pg_rewrite'::pg_catalog.regclass, \
             'pg_catalog.pg_collation'::pg_catalog.regclass, 'pg_catalog.pg_cast'::pg_catalog.regclass, \
             'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, 'pg_catalog.pg_event_trigger'::pg_catalog.regclass, \
             'pg_catalog.pg_publication'::pg_catalog.regclass, 'pg_catalog.pg_publication_rel'::pg_catalog.regclass, \
             'pg_catalog.pg_conversion'::pg_catalog.regclass, 'pg_catalog.pg_operator'::pg_catalog.regclass, \
             'pg_catalog.pg_opclass'::pg_catalog.regclass, 'pg_catalog.pg_opfamily'::pg_catalog.regclass, \
             'pg_catalog.pg_amop'::pg_catalog.regclass, 'pg_catalog.pg_amproc'::pg_catalog.regclass, \
             'pg_catalog.pg_ts_parser'::pg_catalog.regclass, 'pg_catalog.pg_ts_template'::pg_catalog.regclass, \
             'pg_catalog.pg_ts_dict'::pg_catalog.regclass, 'pg_catalog.pg_ts_config'::pg_catalog.regclass, \
             'pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass, \
             'pg_catalog.pg_foreign_server'::pg_catalog.regclass, 'pg_catalog.pg_user_mapping'::pg_catalog.regclass, \
             'pg_catalog.pg_language'::pg_catalog.regclass, 'pg_catalog.pg_transform'::pg_catalog.regclass, \
             'pg_catalog.pg_am'::pg_catalog.regclass)"
    )
}

/// User objects of kinds this source does not capture, as `(kind, identity)`: a restore
/// will not have them, though nothing captured needs them. These are the subscriptions
/// the backup's user may not read.
pub fn uncaptured_objects(db: &Connection) -> Result<Vec<(String, String)>> {
    let sql = format!(
        "SELECT 'subscription', pg_catalog.quote_ident(s.subname) || ', whose connection only a superuser may read' \
         FROM pg_catalog.pg_subscription s WHERE {} AND NOT {} \
         ORDER BY 1, 2",
        subscriptions::OF_THIS_DATABASE,
        subscriptions::READABLE,
    );
    let rows = db
        .query(&sql)
        .map_err(|e| e.context("listing objects cairn does not capture"))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let mut values = row.into_iter().map(Option::unwrap_or_default);
            Some((values.next()?, values.next()?))
        })
        .collect())
}

/// An object the snapshot holds that depends on one it does not: restoring the snapshot
/// would fail creating the first (a view calling a user-defined aggregate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncaptured {
    /// What depends, as PostgreSQL describes it (`view public.film_list`).
    pub dependent: String,
    /// The kind of what it depends on, as `pg_identify_object` names it (`aggregate`).
    pub kind: String,
    /// Its qualified identity (`public.group_concat(text)`).
    pub identity: String,
}

/// The user objects the snapshot holds that depend on user objects of a kind it does not
/// capture, or of a kind in `left_out` (as `pg_identify_object` names them), leaving out
/// the kinds in `allowed`.
pub fn uncaptured_dependencies(
    db: &Connection,
    left_out: &[String],
    allowed: &[String],
) -> Result<Vec<Uncaptured>> {
    let left_out = left_out
        .iter()
        .map(|kind| cairn_sdk::postgres::literal(kind))
        .chain(["NULL".to_string()])
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT DISTINCT CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
             THEN (SELECT pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, r.ev_class, 0) \
                   FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid) \
             ELSE pg_catalog.pg_describe_object(d.classid, d.objid, 0) END, o.type, o.identity \
         FROM pg_catalog.pg_depend d, LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0) o \
         WHERE d.deptype IN ('n', 'a') AND d.objid >= 16384 AND d.refobjid >= 16384 \
           AND ({} OR o.type IN ({left_out})) AND NOT {} \
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.deptype = 'e' \
             AND ((e.classid = d.refclassid AND e.objid = d.refobjid) OR (e.classid = d.classid AND e.objid = d.objid))) \
         ORDER BY 2, 3, 1",
        uncaptured_kind("d.refclassid"),
        uncaptured_kind("d.classid"),
    );
    let rows = db
        .query(&sql)
        .map_err(|e| e.context("checking the schema for objects cairn does not capture"))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let mut values = row.into_iter().map(Option::unwrap_or_default);
            Some(Uncaptured {
                dependent: values.next()?,
                kind: values.next()?,
                identity: values.next()?,
            })
        })
        .filter(|u| {
            !allowed
                .iter()
                .any(|kind| kind.eq_ignore_ascii_case(&u.kind))
        })
        .collect())
}

/// The catalog's key for what a dependency names: the statement that creates it. A view's
/// rule, a column default and a domain's constraint belong to their view, table and
/// domain; a row type to its table; an array type to its element type, a multirange type
/// to its range; an operator class's members to the class (a family's loose members have
/// no key: they come after the rest of the pre-data).
fn statement_key(class: &str, oid: &str) -> String {
    format!(
        "CASE {class} \
           WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN \
             (SELECT CASE WHEN r.rulename = '_RETURN' THEN 'pg_class:' || r.ev_class ELSE 'pg_rewrite:' || r.oid END \
              FROM pg_catalog.pg_rewrite r WHERE r.oid = {oid}) \
           WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN \
             (SELECT 'pg_class:' || a.adrelid FROM pg_catalog.pg_attrdef a WHERE a.oid = {oid}) \
           WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN \
             (SELECT CASE WHEN k.contypid <> 0 THEN 'pg_type:' || k.contypid ELSE 'pg_constraint:' || k.oid END \
              FROM pg_catalog.pg_constraint k WHERE k.oid = {oid}) \
           WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN \
             (SELECT CASE WHEN c.relkind = 'c' THEN 'pg_type:' || c.reltype ELSE 'pg_class:' || c.oid END \
              FROM pg_catalog.pg_class c WHERE c.oid = {oid}) \
           WHEN 'pg_catalog.pg_amop'::pg_catalog.regclass THEN {class_member} \
           WHEN 'pg_catalog.pg_amproc'::pg_catalog.regclass THEN {class_member} \
           WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN \
             (SELECT CASE WHEN b.typrelid <> 0 AND r.relkind <> 'c' THEN 'pg_class:' || b.typrelid \
                WHEN b.typtype = 'm' THEN (SELECT 'pg_type:' || g.rngtypid FROM pg_catalog.pg_range g \
                  WHERE (pg_catalog.to_jsonb(g)->>'rngmultitypid')::pg_catalog.oid = b.oid) \
                ELSE 'pg_type:' || b.oid END \
              FROM pg_catalog.pg_type t \
                JOIN pg_catalog.pg_type b ON b.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END \
                LEFT JOIN pg_catalog.pg_class r ON r.oid = b.typrelid \
              WHERE t.oid = {oid}) \
           ELSE (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = {class}) || ':' || {oid} \
         END",
        class_member = format!(
            "(SELECT 'pg_opclass:' || m.refobjid FROM pg_catalog.pg_depend m WHERE m.classid = {class} AND m.objid = {oid} \
               AND m.refclassid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND m.deptype = 'i')"
        ),
    )
}

/// Which user object depends on which, as statement keys. A sequence's link to the column
/// that owns it is left out: `OWNED BY` is set once both exist. A base type's own
/// functions need only its shell, which comes after its schema; the whole type comes
/// after them.
fn dependencies(db: &Connection) -> Result<Vec<(String, String)>> {
    let sql = format!(
        "SELECT DISTINCT {}, CASE WHEN d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass \
             AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass \
             AND EXISTS (SELECT 1 FROM pg_catalog.pg_type bt WHERE bt.oid = d.refobjid AND bt.typtype = 'b' \
               AND d.objid IN ({BASE_TYPE_FUNCTIONS})) \
           THEN 'pg_type_shell:' || d.refobjid ELSE {} END \
         FROM pg_catalog.pg_depend d \
         WHERE d.deptype IN ('n', 'a') AND d.objid >= 16384 AND d.refobjid >= 16384 \
           AND NOT (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
             AND EXISTS (SELECT 1 FROM pg_catalog.pg_class s WHERE s.oid = d.objid AND s.relkind = 'S')) \
         UNION SELECT 'pg_type:' || bt.oid, 'pg_type_shell:' || bt.oid FROM pg_catalog.pg_type bt \
           WHERE bt.oid >= 16384 AND bt.typtype = 'b' \
         UNION SELECT 'pg_type_shell:' || bt.oid, 'pg_namespace:' || bt.typnamespace FROM pg_catalog.pg_type bt \
           WHERE bt.oid >= 16384 AND bt.typtype = 'b'",
        statement_key("d.classid", "d.objid"),
        statement_key("d.refclassid", "d.refobjid")
    );
    let rows = db
        .query(&sql)
        .map_err(|e| e.context("reading dependencies"))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| match (row.first(), row.get(1)) {
            (Some(Some(from)), Some(Some(to))) => Some((from.clone(), to.clone())),
            _ => None,
        })
        .collect())
}

/// Orders statements so each comes after what it depends on, otherwise keeping their
/// order (phase, then creation): of the statements whose dependencies are all placed, the
/// earliest goes next. Statements caught in a cycle keep their order at the end.
pub fn order_by_dependencies(
    statements: Vec<Statement>,
    deps: &[(String, String)],
) -> Vec<Statement> {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, HashMap};

    let n = statements.len();
    let index: HashMap<&str, usize> = statements
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.key.as_deref().map(|k| (k, i)))
        .collect();
    let mut waiting = vec![0usize; n];
    let mut dependents = vec![Vec::new(); n];
    for (from, to) in deps {
        if let (Some(&f), Some(&t)) = (index.get(from.as_str()), index.get(to.as_str()))
            && f != t
        {
            waiting[f] += 1;
            dependents[t].push(f);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| waiting[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    let mut placed = vec![false; n];
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        placed[i] = true;
        for &d in &dependents[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    order.extend((0..n).filter(|&i| !placed[i]));
    let mut slots: Vec<Option<Statement>> = statements.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Plain tables and leaf partitions, with the columns COPY carries and their size.
pub fn data_tables(db: &Connection) -> Result<Vec<Table>> {
    let sql = format!(
        "SELECT c.oid::pg_catalog.regclass::text, \
           (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), pg_catalog.chr(31) ORDER BY a.attnum) FROM pg_catalog.pg_attribute a \
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), \
           pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE {} ORDER BY c.oid",
        user_relations("'r'")
    );
    let rows = db.query(&sql).map_err(|e| e.context("listing tables"))?;
    Ok(rows
        .into_iter()
        // A table without columns holds nothing COPY can carry: its schema is enough.
        .filter(|row| row.get(1).is_some_and(|c| c.is_some()))
        .map(|row| {
            let field = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            Table {
                name: field(0),
                columns: field(1)
                    .split('\u{1f}')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                blocks: field(2).parse().unwrap_or(0),
                pieces: Vec::new(),
                rows: 0,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(key: &str) -> Statement {
        Statement {
            kind: "object".into(),
            name: key.into(),
            create: String::new(),
            drop: None,
            key: Some(key.into()),
            roles: Vec::new(),
            acts_as: None,
            note: None,
        }
    }

    fn names(statements: &[Statement]) -> Vec<&str> {
        statements.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn dependencies_move_statements_later_and_nothing_else_moves() {
        // A domain checked by a function created after it; a function over a table's row.
        let statements = ["schema", "domain", "f_check", "f_row", "table", "view"]
            .map(statement)
            .to_vec();
        let deps = [
            ("domain", "f_check"),
            ("f_row", "table"),
            ("view", "f_row"),
            ("table", "domain"),
            ("table", "missing"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()));
        let ordered = order_by_dependencies(statements, &deps);
        assert_eq!(
            names(&ordered),
            ["schema", "f_check", "domain", "table", "f_row", "view"]
        );
    }

    #[test]
    fn a_cycle_keeps_its_order_at_the_end() {
        let statements = ["a", "b", "c"].map(statement).to_vec();
        let deps = [("a", "b"), ("b", "a")].map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(
            names(&order_by_dependencies(statements, &deps)),
            ["c", "a", "b"]
        );
    }
}

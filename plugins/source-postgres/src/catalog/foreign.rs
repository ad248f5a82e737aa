//! Foreign data wrappers, foreign servers and user mappings, as pg_dump writes them
//! (foreign tables are tables: `tables` writes them, with their server and options).
//! A wrapper an extension made (`postgres_fdw`) comes with `CREATE EXTENSION`; creating
//! one of the user's needs a superuser, as in pg_dump's output. User mappings keep their
//! options, passwords included, as pg_dump does: they are needed to reach the server.

use cairn_sdk::Result;
use cairn_sdk::postgres::Connection;

use super::{Statement, not_extension_member, statements};

/// ` OPTIONS (name 'value', ...)` of the options array `options` (a SQL expression), or
/// an empty string when it has none.
pub(super) fn options(options: &str) -> String {
    format!(
        "COALESCE(' OPTIONS (' || (SELECT pg_catalog.string_agg(pg_catalog.format('%I %L', o.option_name, o.option_value), ', ') \
           FROM pg_catalog.pg_options_to_table({options}) o) || ')', '')"
    )
}

/// The user's foreign data wrappers, then their servers.
pub(super) fn wrappers_and_servers(db: &Connection) -> Result<Vec<Statement>> {
    let mut found = statements(
        db,
        "foreign data wrapper",
        &format!(
            "SELECT pg_catalog.quote_ident(w.fdwname), \
               pg_catalog.format('CREATE FOREIGN DATA WRAPPER %I', w.fdwname) \
               || CASE WHEN w.fdwhandler <> 0 THEN ' HANDLER ' || w.fdwhandler::pg_catalog.regproc ELSE '' END \
               || CASE WHEN w.fdwvalidator <> 0 THEN ' VALIDATOR ' || w.fdwvalidator::pg_catalog.regproc ELSE '' END \
               || {}, \
               pg_catalog.format('DROP FOREIGN DATA WRAPPER IF EXISTS %I', w.fdwname), \
               'pg_foreign_data_wrapper:' || w.oid \
             FROM pg_catalog.pg_foreign_data_wrapper w WHERE {} ORDER BY w.oid",
            options("w.fdwoptions"),
            not_extension_member("pg_catalog.pg_foreign_data_wrapper", "w.oid")
        ),
    )?;
    found.extend(statements(
        db,
        "server",
        &format!(
            "SELECT pg_catalog.quote_ident(s.srvname), \
               pg_catalog.format('CREATE SERVER %I', s.srvname) \
               || COALESCE(' TYPE ' || pg_catalog.quote_literal(s.srvtype), '') \
               || COALESCE(' VERSION ' || pg_catalog.quote_literal(s.srvversion), '') \
               || pg_catalog.format(' FOREIGN DATA WRAPPER %I', w.fdwname) || {}, \
               pg_catalog.format('DROP SERVER IF EXISTS %I', s.srvname), \
               'pg_foreign_server:' || s.oid \
             FROM pg_catalog.pg_foreign_server s JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw \
             WHERE {} ORDER BY s.oid",
            options("s.srvoptions"),
            not_extension_member("pg_catalog.pg_foreign_server", "s.oid")
        ),
    )?);
    Ok(found)
}

/// User mappings, post-data, where a restore leaves out what names a role the target
/// lacks.
pub(super) fn user_mappings(db: &Connection) -> Result<Vec<Statement>> {
    // The options of a mapping show in `pg_user_mappings` to its user and to the server's
    // owner (a superuser sees all). A mapping names a role, which must exist where it is
    // restored: without it the restore leaves the mapping out and says so.
    let sql = format!(
        "SELECT pg_catalog.format('%s on %I', m.usename, m.srvname), \
           pg_catalog.format('CREATE USER MAPPING FOR %s SERVER %I', m.grantee, m.srvname) || {}, \
           pg_catalog.format('DROP USER MAPPING IF EXISTS FOR %s SERVER %I', m.grantee, m.srvname), \
           'pg_user_mapping:' || m.umid, CASE WHEN m.umuser <> 0 THEN m.usename END \
         FROM (SELECT u.*, CASE WHEN u.umuser = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(u.usename) END AS grantee \
               FROM pg_catalog.pg_user_mappings u) m ORDER BY m.umid",
        options("m.umoptions")
    );
    statements(db, "user mapping", &sql)
}

//! Text search parsers, templates, dictionaries and configurations, with each
//! configuration's token mappings, written from the `pg_ts_*` catalogs as pg_dump writes
//! them. Creating a parser or a template needs a superuser, as in pg_dump's output.

use cairn_sdk::Result;
use cairn_sdk::postgres::Connection;

use super::{Statement, USER_SCHEMA, not_extension_member, statements};

/// Every text search object of the user's, in creation order within each kind: parsers
/// and templates, then the dictionaries made from templates, then the configurations
/// made from parsers and dictionaries.
pub(super) fn objects(db: &Connection) -> Result<Vec<Statement>> {
    let mut found = statements(
        db,
        "text search parser",
        &format!(
            "SELECT pg_catalog.format('%I.%I', n.nspname, p.prsname), \
               pg_catalog.format('CREATE TEXT SEARCH PARSER %I.%I (START = %s, GETTOKEN = %s, END = %s, LEXTYPES = %s%s)', \
                 n.nspname, p.prsname, p.prsstart::pg_catalog.regproc, p.prstoken::pg_catalog.regproc, \
                 p.prsend::pg_catalog.regproc, p.prslextype::pg_catalog.regproc, \
                 CASE WHEN p.prsheadline <> 0 THEN ', HEADLINE = ' || p.prsheadline::pg_catalog.regproc ELSE '' END), \
               pg_catalog.format('DROP TEXT SEARCH PARSER IF EXISTS %I.%I', n.nspname, p.prsname), \
               'pg_ts_parser:' || p.oid \
             FROM pg_catalog.pg_ts_parser p JOIN pg_catalog.pg_namespace n ON n.oid = p.prsnamespace \
             WHERE {USER_SCHEMA} AND {} ORDER BY p.oid",
            not_extension_member("pg_catalog.pg_ts_parser", "p.oid")
        ),
    )?;
    found.extend(statements(
        db,
        "text search template",
        &format!(
            "SELECT pg_catalog.format('%I.%I', n.nspname, t.tmplname), \
               pg_catalog.format('CREATE TEXT SEARCH TEMPLATE %I.%I (%sLEXIZE = %s)', n.nspname, t.tmplname, \
                 CASE WHEN t.tmplinit <> 0 THEN 'INIT = ' || t.tmplinit::pg_catalog.regproc || ', ' ELSE '' END, \
                 t.tmpllexize::pg_catalog.regproc), \
               pg_catalog.format('DROP TEXT SEARCH TEMPLATE IF EXISTS %I.%I', n.nspname, t.tmplname), \
               'pg_ts_template:' || t.oid \
             FROM pg_catalog.pg_ts_template t JOIN pg_catalog.pg_namespace n ON n.oid = t.tmplnamespace \
             WHERE {USER_SCHEMA} AND {} ORDER BY t.oid",
            not_extension_member("pg_catalog.pg_ts_template", "t.oid")
        ),
    )?);
    // `dictinitoption` holds the options as the user wrote them (`language = 'english'`).
    found.extend(statements(
        db,
        "text search dictionary",
        &format!(
            "SELECT pg_catalog.format('%I.%I', n.nspname, d.dictname), \
               pg_catalog.format('CREATE TEXT SEARCH DICTIONARY %I.%I (TEMPLATE = %I.%I%s)', n.nspname, d.dictname, \
                 tn.nspname, t.tmplname, CASE WHEN d.dictinitoption IS NOT NULL THEN ', ' || d.dictinitoption ELSE '' END), \
               pg_catalog.format('DROP TEXT SEARCH DICTIONARY IF EXISTS %I.%I', n.nspname, d.dictname), \
               'pg_ts_dict:' || d.oid \
             FROM pg_catalog.pg_ts_dict d JOIN pg_catalog.pg_namespace n ON n.oid = d.dictnamespace \
               JOIN pg_catalog.pg_ts_template t ON t.oid = d.dicttemplate \
               JOIN pg_catalog.pg_namespace tn ON tn.oid = t.tmplnamespace \
             WHERE {USER_SCHEMA} AND {} ORDER BY d.oid",
            not_extension_member("pg_catalog.pg_ts_dict", "d.oid")
        ),
    )?);
    // A configuration is created empty from its parser, then mapped token type by token
    // type, dictionaries in the order they are consulted.
    found.extend(statements(
        db,
        "text search configuration",
        &format!(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.cfgname), \
               pg_catalog.format('CREATE TEXT SEARCH CONFIGURATION %I.%I (PARSER = %I.%I)', n.nspname, c.cfgname, pn.nspname, p.prsname) \
               || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format('; ALTER TEXT SEARCH CONFIGURATION %I.%I ADD MAPPING FOR %I WITH %s', \
                      n.nspname, c.cfgname, m.alias, m.dictionaries), '' ORDER BY m.tokid) \
                    FROM (SELECT t.tokid, t.alias, \
                            pg_catalog.string_agg(pg_catalog.format('%I.%I', dn.nspname, d.dictname), ', ' ORDER BY x.mapseqno) AS dictionaries \
                          FROM pg_catalog.pg_ts_config_map x \
                            JOIN pg_catalog.ts_token_type(c.cfgparser) t ON t.tokid = x.maptokentype \
                            JOIN pg_catalog.pg_ts_dict d ON d.oid = x.mapdict \
                            JOIN pg_catalog.pg_namespace dn ON dn.oid = d.dictnamespace \
                          WHERE x.mapcfg = c.oid GROUP BY t.tokid, t.alias) m), ''), \
               pg_catalog.format('DROP TEXT SEARCH CONFIGURATION IF EXISTS %I.%I', n.nspname, c.cfgname), \
               'pg_ts_config:' || c.oid \
             FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace \
               JOIN pg_catalog.pg_ts_parser p ON p.oid = c.cfgparser \
               JOIN pg_catalog.pg_namespace pn ON pn.oid = p.prsnamespace \
             WHERE {USER_SCHEMA} AND {} ORDER BY c.oid",
            not_extension_member("pg_catalog.pg_ts_config", "c.oid")
        ),
    )?);
    Ok(found)
}

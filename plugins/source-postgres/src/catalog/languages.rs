//! Procedural languages and transforms of the user's, outside any extension (a language
//! an extension made, `plpgsql` or `plpython3u`, comes with `CREATE EXTENSION`), as
//! pg_dump writes them. Creating either needs a superuser.

use cairn_sdk::Result;
use cairn_sdk::postgres::Connection;

use super::{Statement, not_extension_member, statements};

pub(super) fn languages(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.quote_ident(l.lanname), \
           pg_catalog.format('CREATE %sLANGUAGE %I HANDLER %s', CASE WHEN l.lanpltrusted THEN 'TRUSTED ' ELSE '' END, \
             l.lanname, l.lanplcallfoid::pg_catalog.regproc) \
           || CASE WHEN l.laninline <> 0 THEN ' INLINE ' || l.laninline::pg_catalog.regproc ELSE '' END \
           || CASE WHEN l.lanvalidator <> 0 THEN ' VALIDATOR ' || l.lanvalidator::pg_catalog.regproc ELSE '' END, \
           pg_catalog.format('DROP LANGUAGE IF EXISTS %I', l.lanname), \
           'pg_language:' || l.oid \
         FROM pg_catalog.pg_language l WHERE l.lanispl AND l.oid >= 16384 AND {} ORDER BY l.oid",
        not_extension_member("pg_catalog.pg_language", "l.oid")
    );
    statements(db, "language", &sql)
}

pub(super) fn transforms(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.format('FOR %s LANGUAGE %I', pg_catalog.format_type(t.trftype, NULL), l.lanname), \
           pg_catalog.format('CREATE TRANSFORM FOR %s LANGUAGE %I (%s)', pg_catalog.format_type(t.trftype, NULL), l.lanname, \
             pg_catalog.concat_ws(', ', \
               CASE WHEN t.trffromsql <> 0 THEN 'FROM SQL WITH FUNCTION ' || t.trffromsql::pg_catalog.regprocedure END, \
               CASE WHEN t.trftosql <> 0 THEN 'TO SQL WITH FUNCTION ' || t.trftosql::pg_catalog.regprocedure END)), \
           pg_catalog.format('DROP TRANSFORM IF EXISTS FOR %s LANGUAGE %I', pg_catalog.format_type(t.trftype, NULL), l.lanname), \
           'pg_transform:' || t.oid \
         FROM pg_catalog.pg_transform t JOIN pg_catalog.pg_language l ON l.oid = t.trflang \
         WHERE t.oid >= 16384 AND {} ORDER BY t.oid",
        not_extension_member("pg_catalog.pg_transform", "t.oid")
    );
    statements(db, "transform", &sql)
}

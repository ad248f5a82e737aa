//! Operators, operator families and operator classes, written from `pg_operator`,
//! `pg_opfamily`, `pg_opclass`, `pg_amop` and `pg_amproc` as pg_dump writes them
//! (PostgreSQL has no deparser for them).
//!
//! Every family is created on its own, before the classes in it, so a class whose family
//! `CREATE OPERATOR CLASS` made implicitly is restored the same. A family's loose members
//! (`ALTER OPERATOR FAMILY ... ADD`, cross-type ones) are their own statement, run after
//! the rest of the pre-data, when every operator and function they name exists.

use cairn_sdk::Result;
use cairn_sdk::postgres::Connection;

use super::{Statement, USER_SCHEMA, not_extension_member, statements};

/// `OPERATOR(schema.name)` of the operator whose oid is the SQL expression `oid`.
fn operator_reference(oid: &str) -> String {
    format!(
        "(SELECT pg_catalog.format('OPERATOR(%I.%s)', cn.nspname, c.oprname) FROM pg_catalog.pg_operator c \
           JOIN pg_catalog.pg_namespace cn ON cn.oid = c.oprnamespace WHERE c.oid = {oid})"
    )
}

pub(super) fn operators(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT o.oid::pg_catalog.regoperator::text, \
           pg_catalog.format('CREATE OPERATOR %I.%s (%s)', n.nspname, o.oprname, pg_catalog.concat_ws(', ', \
             'FUNCTION = ' || o.oprcode::pg_catalog.regproc, \
             CASE WHEN o.oprleft <> 0 THEN 'LEFTARG = ' || pg_catalog.format_type(o.oprleft, NULL) END, \
             CASE WHEN o.oprright <> 0 THEN 'RIGHTARG = ' || pg_catalog.format_type(o.oprright, NULL) END, \
             CASE WHEN o.oprcom <> 0 THEN 'COMMUTATOR = ' || {commutator} END, \
             CASE WHEN o.oprnegate <> 0 THEN 'NEGATOR = ' || {negator} END, \
             CASE WHEN o.oprrest <> 0 THEN 'RESTRICT = ' || o.oprrest::pg_catalog.regproc END, \
             CASE WHEN o.oprjoin <> 0 THEN 'JOIN = ' || o.oprjoin::pg_catalog.regproc END, \
             CASE WHEN o.oprcanhash THEN 'HASHES' END, \
             CASE WHEN o.oprcanmerge THEN 'MERGES' END)), \
           'DROP OPERATOR IF EXISTS ' || o.oid::pg_catalog.regoperator::text, \
           'pg_operator:' || o.oid \
         FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace \
         WHERE {USER_SCHEMA} AND o.oprcode <> 0 AND {member} ORDER BY o.oid",
        commutator = operator_reference("o.oprcom"),
        negator = operator_reference("o.oprnegate"),
        member = not_extension_member("pg_catalog.pg_operator", "o.oid"),
    );
    statements(db, "operator", &sql)
}

pub(super) fn operator_families(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.format('%I.%I USING %I', n.nspname, f.opfname, a.amname), \
           pg_catalog.format('CREATE OPERATOR FAMILY %I.%I USING %I', n.nspname, f.opfname, a.amname), \
           pg_catalog.format('DROP OPERATOR FAMILY IF EXISTS %I.%I USING %I', n.nspname, f.opfname, a.amname), \
           'pg_opfamily:' || f.oid \
         FROM pg_catalog.pg_opfamily f JOIN pg_catalog.pg_namespace n ON n.oid = f.opfnamespace \
           JOIN pg_catalog.pg_am a ON a.oid = f.opfmethod \
         WHERE {USER_SCHEMA} AND {} ORDER BY f.oid",
        not_extension_member("pg_catalog.pg_opfamily", "f.oid")
    );
    statements(db, "operator family", &sql)
}

/// The `OPERATOR` and `FUNCTION` items of the members that depend on `owner` (a class's
/// with `deptype` 'i', a family's loose ones with 'a'), comma-separated, or NULL.
fn members(catalog: &str, owner: &str, deptype: char) -> String {
    let depends = |member: &str, alias: &str| {
        format!(
            "JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.{member}'::pg_catalog.regclass AND d.objid = {alias}.oid \
             WHERE d.refclassid = 'pg_catalog.{catalog}'::pg_catalog.regclass AND d.refobjid = {owner} AND d.deptype = '{deptype}'"
        )
    };
    format!(
        "pg_catalog.concat_ws(', ', \
           (SELECT pg_catalog.string_agg(pg_catalog.format('OPERATOR %s %s%s', o.amopstrategy, o.amopopr::pg_catalog.regoperator, \
               CASE WHEN o.amoppurpose = 'o' THEN (SELECT pg_catalog.format(' FOR ORDER BY %I.%I', sn.nspname, s.opfname) \
                 FROM pg_catalog.pg_opfamily s JOIN pg_catalog.pg_namespace sn ON sn.oid = s.opfnamespace \
                 WHERE s.oid = o.amopsortfamily) ELSE '' END), ', ' ORDER BY o.amopstrategy, o.amoplefttype, o.amoprighttype) \
            FROM pg_catalog.pg_amop o {}), \
           (SELECT pg_catalog.string_agg(pg_catalog.format('FUNCTION %s (%s, %s) %s', p.amprocnum, \
               pg_catalog.format_type(p.amproclefttype, NULL), pg_catalog.format_type(p.amprocrighttype, NULL), \
               p.amproc::pg_catalog.regprocedure), ', ' ORDER BY p.amprocnum, p.amproclefttype, p.amprocrighttype) \
            FROM pg_catalog.pg_amproc p {}))",
        depends("pg_amop", "o"),
        depends("pg_amproc", "p"),
    )
}

pub(super) fn operator_classes(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.format('%I.%I USING %I', n.nspname, c.opcname, a.amname), \
           pg_catalog.format('CREATE OPERATOR CLASS %I.%I%s FOR TYPE %s USING %I FAMILY %I.%I AS %s', n.nspname, c.opcname, \
             CASE WHEN c.opcdefault THEN ' DEFAULT' ELSE '' END, pg_catalog.format_type(c.opcintype, NULL), a.amname, \
             fn.nspname, f.opfname, \
             pg_catalog.concat_ws(', ', NULLIF({}, ''), \
               CASE WHEN c.opckeytype <> 0 THEN 'STORAGE ' || pg_catalog.format_type(c.opckeytype, NULL) END)), \
           pg_catalog.format('DROP OPERATOR CLASS IF EXISTS %I.%I USING %I', n.nspname, c.opcname, a.amname), \
           'pg_opclass:' || c.oid \
         FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_namespace n ON n.oid = c.opcnamespace \
           JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod \
           JOIN pg_catalog.pg_opfamily f ON f.oid = c.opcfamily JOIN pg_catalog.pg_namespace fn ON fn.oid = f.opfnamespace \
         WHERE {USER_SCHEMA} AND {} ORDER BY c.oid",
        members("pg_opclass", "c.oid", 'i'),
        not_extension_member("pg_catalog.pg_opclass", "c.oid")
    );
    statements(db, "operator class", &sql)
}

/// The members a family holds outside any class, added once its operators and functions
/// exist. They have no drop: dropping the family removes them.
pub(super) fn operator_family_members(db: &Connection) -> Result<Vec<Statement>> {
    let sql = format!(
        "SELECT pg_catalog.format('%I.%I USING %I', n.nspname, f.opfname, a.amname), \
           pg_catalog.format('ALTER OPERATOR FAMILY %I.%I USING %I ADD %s', n.nspname, f.opfname, a.amname, m.members) \
         FROM pg_catalog.pg_opfamily f JOIN pg_catalog.pg_namespace n ON n.oid = f.opfnamespace \
           JOIN pg_catalog.pg_am a ON a.oid = f.opfmethod, \
           LATERAL (SELECT {} AS members) m \
         WHERE {USER_SCHEMA} AND {} AND m.members <> '' ORDER BY f.oid",
        members("pg_opfamily", "f.oid", 'a'),
        not_extension_member("pg_catalog.pg_opfamily", "f.oid")
    );
    statements(db, "operator family members", &sql)
}

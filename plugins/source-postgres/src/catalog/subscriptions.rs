//! Subscriptions: their connection, publications and options, read when the backup's
//! user may read `subconninfo` (a superuser, as pg_dump requires); otherwise each backup
//! names them in its warning. A restore creates them as pg_dump does, not connected and
//! disabled, and also without a replication slot (`slot_name = NONE`): a restored copy
//! (a drill, a scratch verify) must never consume the slot the live subscriber reads
//! from. The restore says which slot each one used, to set it and enable it by hand.

use cairn_sdk::Result;
use cairn_sdk::postgres::Connection;

use super::{Statement, statements};

/// Whether the current user may read the subscriptions' connection strings.
pub(super) const READABLE: &str =
    "pg_catalog.has_column_privilege('pg_catalog.pg_subscription', 'subconninfo', 'SELECT')";

/// The current database's subscriptions (in `pg_subscription`, a shared catalog).
pub(super) const OF_THIS_DATABASE: &str = "s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d \
     WHERE d.datname = pg_catalog.current_database())";

pub(super) fn subscriptions(db: &Connection) -> Result<Vec<Statement>> {
    let readable = db
        .query(&format!("SELECT {READABLE}::text"))
        .map_err(|e| e.context("checking access to subscriptions"))?;
    if readable.first().and_then(|r| r.first().cloned().flatten()) != Some("true".into()) {
        return Ok(Vec::new());
    }
    // Options that are not the defaults, read through JSON so that one query serves
    // every version (`substream` is a boolean before 16, a letter from 16).
    let sql = format!(
        "SELECT s.subname, \
           pg_catalog.format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %s WITH (connect = false, slot_name = NONE%s)', \
             s.subname, s.subconninfo, \
             (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(p), ', ') FROM pg_catalog.unnest(s.subpublications) p), \
             pg_catalog.concat( \
               CASE WHEN j.v->>'subbinary' = 'true' THEN ', binary = true' END, \
               CASE j.v->>'substream' WHEN 'true' THEN ', streaming = on' WHEN 't' THEN ', streaming = on' \
                 WHEN 'p' THEN ', streaming = parallel' END, \
               CASE WHEN j.v->>'subtwophasestate' IN ('p', 'e') THEN ', two_phase = on' END, \
               CASE WHEN j.v->>'subdisableonerr' = 'true' THEN ', disable_on_error = true' END, \
               CASE WHEN s.subsynccommit <> 'off' THEN pg_catalog.format(', synchronous_commit = %L', s.subsynccommit) END, \
               CASE WHEN j.v->>'suborigin' = 'none' THEN ', origin = none' END, \
               CASE WHEN j.v->>'subpasswordrequired' = 'false' THEN ', password_required = false' END, \
               CASE WHEN j.v->>'subrunasowner' = 'true' THEN ', run_as_owner = true' END, \
               CASE WHEN j.v->>'subfailover' = 'true' THEN ', failover = true' END)), \
           pg_catalog.format('DROP SUBSCRIPTION IF EXISTS %I', s.subname), NULL, NULL, \
           CASE WHEN s.subslotname IS NOT NULL THEN pg_catalog.format( \
             'subscription %I is restored disabled and without a replication slot; it used slot %I: to resume from it, run ALTER SUBSCRIPTION %I SET (slot_name = %L), then ALTER SUBSCRIPTION %I ENABLE', \
             s.subname, s.subslotname, s.subname, s.subslotname, s.subname) END \
         FROM pg_catalog.pg_subscription s, LATERAL (SELECT pg_catalog.to_jsonb(s) AS v) j \
         WHERE {OF_THIS_DATABASE} ORDER BY s.oid"
    );
    statements(db, "subscription", &sql)
}

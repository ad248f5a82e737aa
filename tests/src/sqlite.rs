//! SQLite fixtures: the invariant-keeping "bank" the writer process commits to, and checks
//! of restored copies.

use std::path::Path;

use rusqlite::Connection;

pub const ACCOUNTS: i64 = 100;
pub const OPENING_BALANCE: i64 = 1_000;

/// Creates the bank's tables if missing: accounts whose balances always sum to
/// `ACCOUNTS * OPENING_BALANCE`, and a ledger whose row count a counter always equals.
pub fn create_bank(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS ledger(id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, memo TEXT);
         CREATE INDEX IF NOT EXISTS ledger_src ON ledger(src);
         CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, n INTEGER NOT NULL);
         INSERT OR IGNORE INTO counters VALUES ('ledger', 0);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {ACCOUNTS})
         INSERT OR IGNORE INTO accounts SELECT x, {OPENING_BALANCE} FROM c;"
    ))
}

/// Opens a restored copy read-only and asserts it is sound and keeps both invariants.
/// Returns the ledger's row count.
pub fn assert_consistent_bank(path: &Path) -> i64 {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok", "{} is damaged", path.display());
    let total: i64 = conn
        .query_row("SELECT sum(balance) FROM accounts", [], |r| r.get(0))
        .expect("sum");
    assert_eq!(
        total,
        ACCOUNTS * OPENING_BALANCE,
        "money appeared or vanished in {}",
        path.display()
    );
    let (counter, rows): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT n FROM counters WHERE name = 'ledger'), (SELECT count(*) FROM ledger)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("counter");
    assert_eq!(
        counter,
        rows,
        "the ledger and its counter disagree in {}",
        path.display()
    );
    rows
}

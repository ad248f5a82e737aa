//! A separate process that writes to a SQLite database as fast as it can until killed or
//! until `STOP_FILE` appears: each transaction moves money between two accounts (the total
//! never changes) and appends a ledger row while bumping a counter (the counter always
//! equals the ledger's row count). A consistent copy keeps both invariants.
//!
//! usage: sqlite-writer DB (wal|delete) STOP_FILE

use std::time::Duration;

use rand::Rng;
use rusqlite::{Connection, TransactionBehavior};

fn main() -> rusqlite::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, mode, stop] = args.as_slice() else {
        eprintln!("usage: sqlite-writer DB (wal|delete) STOP_FILE");
        std::process::exit(2);
    };
    let mut conn = Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(60))?;
    conn.pragma_update(None, "journal_mode", mode)?;
    cairn_e2e::sqlite::create_bank(&conn)?;
    let mut rng = rand::rng();
    let mut commits = 0u64;
    while !std::path::Path::new(stop).exists() {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let from: i64 = rng.random_range(1..=cairn_e2e::sqlite::ACCOUNTS);
        let to: i64 = rng.random_range(1..=cairn_e2e::sqlite::ACCOUNTS);
        let amount: i64 = rng.random_range(1..100);
        tx.execute(
            "UPDATE accounts SET balance = balance - ?1 WHERE id = ?2",
            (amount, from),
        )?;
        tx.execute(
            "UPDATE accounts SET balance = balance + ?1 WHERE id = ?2",
            (amount, to),
        )?;
        tx.execute(
            "INSERT INTO ledger(src, dst, amount, memo) VALUES (?1, ?2, ?3, hex(randomblob(40)))",
            (from, to, amount),
        )?;
        tx.execute("UPDATE counters SET n = n + 1 WHERE name = 'ledger'", ())?;
        tx.commit()?;
        commits += 1;
    }
    println!("{commits}");
    Ok(())
}

//! Retention, prune, drills and status through the CLI. The rules themselves are tested
//! over fabricated histories in crates/cairn-repo/src/ops/retention.rs; these tests show the
//! behaviour around them: per-source windows, failed runs, refusals, misconfiguration,
//! pruning beside a concurrent backup, drills that name the damaged source, and restoring
//! another host's snapshot with no source configured.

use std::path::Path;

use cairn_e2e::{Env, assert_same_tree, generate_tree, repo_objects, source_section, stderr};
use rusqlite::Connection;

fn filesystem_source(name: &str, path: &Path) -> String {
    source_section(name, "filesystem", path, "")
}

fn sqlite_source(name: &str, path: &Path) -> String {
    source_section(
        name,
        "sqlite",
        path,
        "probes = [\"SELECT count(*) FROM t\"]",
    )
}

/// Number of snapshots of each source, by name.
fn counts(env: &Env) -> std::collections::BTreeMap<String, usize> {
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "snapshots"])).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for snap in listed.as_array().unwrap() {
        for source in snap["sources"].as_array().unwrap() {
            *out.entry(source["name"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    out
}

fn make_db(path: &Path, rows: i64) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS t(x); DELETE FROM t;
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
         INSERT INTO t SELECT x FROM c;"
    ))
    .unwrap();
}

fn damage_db(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    bytes[len / 2..len / 2 + 4096].fill(0xA5);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_failed_source_is_not_pruned_while_the_others_are() {
    let env = Env::new();
    let files = env.path("files");
    generate_tree(&files, 1, 20, 0);
    let db = env.path("app.db");
    make_db(&db, 5000);
    let sources = format!(
        "{}{}",
        sqlite_source("db", &db),
        filesystem_source("files", &files)
    );
    env.local_config(&sources);
    env.ok(&["init"]);
    for _ in 0..3 {
        env.ok(&["backup"]);
    }
    // Now with retention, and the database broken: its backup fails.
    env.local_config(&format!("[retention]\nkeep-last = 1\n\n{sources}"));
    damage_db(&db);
    let out = env.cairn(&["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let c = counts(&env);
    assert_eq!(
        c["files"], 1,
        "the source that succeeded is pruned to its window"
    );
    assert_eq!(c["db"], 3, "the failed source keeps everything it had");

    // status names the failure and its reason.
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "status"])).unwrap();
    let db_status = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "db")
        .unwrap();
    assert!(
        db_status["last_failure"]["error"]
            .as_str()
            .unwrap()
            .contains("integrity_check")
    );
    assert!(db_status["last_success"]["time"].as_str().is_some());
}

#[test]
fn each_source_keeps_its_own_window_and_misconfiguration_never_deletes_more() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b");
    generate_tree(&a, 2, 5, 0);
    generate_tree(&b, 3, 5, 0);
    let a_only = filesystem_source("a", &a);
    env.local_config(&a_only);
    env.ok(&["init"]);
    for _ in 0..7 {
        env.ok(&["backup"]);
    }
    // b joins later: it has 2 snapshots while a has 9.
    let both = format!("{a_only}{}", filesystem_source("b", &b));
    env.local_config(&both);
    env.ok(&["backup"]);
    env.ok(&["backup"]);
    let out = env.ok(&["forget", "--keep-last", "3", "--dry-run"]);
    assert!(
        out.contains("would remove") && out.contains("keep-last (1 of 3)"),
        "{out}"
    );
    assert_eq!(counts(&env)["a"], 9, "a dry run removes nothing");
    env.ok(&["forget", "--keep-last", "3"]);
    let c = counts(&env);
    assert_eq!((c["a"], c["b"]), (3, 2), "{c:?}");

    // keep-last = 0 is raised to 1; a value that is not a number falls back to the default.
    env.local_config(&format!(
        "[retention]\nkeep-last = 0\nkeep-daily = \"many\"\n\n{both}"
    ));
    let out = env.cairn(&["forget"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("keep-last = 0") && err.contains("raised to 1"),
        "{err}"
    );
    assert!(
        err.contains("keep-daily") && err.contains("default"),
        "{err}"
    );
    assert_eq!(
        counts(&env)["a"],
        1,
        "all of today's snapshots share one day"
    );

    // A policy that would remove every snapshot of a source is refused.
    let out = env.cairn(&["forget", "--keep-tag", "no-such-tag"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("REFUSED"));
    assert_eq!(
        counts(&env).values().sum::<usize>(),
        2,
        "nothing was removed"
    );
    let out = env.cairn(&["--json", "forget", "--keep-tag", "no-such-tag"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["forget"]["sources"][0]["refused"]
            .as_str()
            .unwrap()
            .contains("every snapshot")
    );

    // An unknown key is a config error naming the line, not a silently dropped rule.
    env.local_config(&format!("[retention]\nkeep-dayly = 7\n\n{both}"));
    let err = env.fails(&["forget"], 2);
    assert!(
        err.contains("cairn.toml:") && err.contains("keep-dayly"),
        "{err}"
    );
}

#[test]
fn prune_beside_a_concurrent_backup_loses_nothing() {
    let env = Env::new();
    let data = env.path("data");
    generate_tree(&data, 4, 100, 24 << 20);
    env.local_config(&filesystem_source("data", &data));
    env.ok(&["init"]);
    env.ok(&["backup"]);
    // Keep a copy of the first version: a second source backs it up later, so its chunks
    // are exactly the ones prune condemns.
    let old = env.path("old");
    std::process::Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&old)
        .status()
        .unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    generate_tree(&data, 5, 100, 24 << 20);
    env.ok(&["backup"]);
    env.ok(&["forget", "--keep-last", "1"]);
    let before = repo_objects(&env.path("repo"), "data").len();
    let out = env.ok(&["--json", "prune", "--grace", "0s"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["packs_condemned"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        report["packs_deleted"], 0,
        "phase 1 deletes nothing: {report}"
    );
    assert_eq!(repo_objects(&env.path("repo"), "data").len(), before);

    // Another process backs up the old data (whose chunks sit in condemned packs) while
    // the second phase runs.
    let with_old = format!(
        "{}{}",
        filesystem_source("data", &data),
        filesystem_source("old", &old)
    );
    let other = Env::new();
    other.write_config(&format!(
        "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n\n{with_old}",
        env.path("repo").display()
    ));
    let mut backup = other
        .command(&["backup"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = env.ok(&["--json", "prune", "--grace", "0s"]);
    assert!(backup.wait().unwrap().success());
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["packs_deleted"].as_u64().unwrap() > 0, "{report}");
    assert!(report["bytes_freed"].as_u64().unwrap() > 0, "{report}");

    env.ok(&["check", "--read-data"]);
    let restored_old = env.path("restored-old");
    other.ok(&[
        "restore",
        "latest",
        "--source",
        "old",
        "--target",
        restored_old.to_str().unwrap(),
    ]);
    assert_same_tree(&old, &restored_old);
    let restored_data = env.path("restored-data");
    env.ok(&[
        "restore",
        "latest",
        "--source",
        "data",
        "--target",
        restored_data.to_str().unwrap(),
    ]);
    assert_same_tree(&data, &restored_data);
}

#[test]
fn a_drill_reports_each_source_and_names_the_damaged_one() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(&db, 2000);
    let docs = env.path("docs");
    let media = env.path("media");
    generate_tree(&docs, 6, 30, 0);
    generate_tree(&media, 7, 10, 40 << 20);
    env.local_config(&format!(
        "{}{}{}",
        sqlite_source("db", &db),
        filesystem_source("docs", &docs),
        filesystem_source("media", &media)
    ));
    env.ok(&["init"]);
    env.ok(&["backup"]);
    let report: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "drill"])).unwrap();
    let sources = report["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 3);
    for s in sources {
        assert_eq!(s["passed"], true, "{s}");
        assert!(s["rto_secs"].as_f64().unwrap() > 0.0);
        assert!(s["rpo_secs"].as_i64().unwrap() >= 0);
        assert!(s["checks_passed"].as_u64().unwrap() > 0);
    }

    // Each source's data ends its own packs; the newest pack is media's.
    let mut packs = repo_objects(&env.path("repo"), "data");
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    let newest = packs.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(newest, bytes).unwrap();

    let out = env.cairn(&["drill"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let failed: Vec<&str> = text.lines().filter(|l| l.contains("FAILED")).collect();
    assert_eq!(failed.len(), 1, "{text}");
    assert!(failed[0].starts_with("media"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("db") && l.contains("passed")),
        "{text}"
    );

    // The drill's result is recorded in the repository.
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "status"])).unwrap();
    for s in status.as_array().unwrap() {
        let ok = s["last_drill"]["ok"].as_bool().unwrap();
        assert_eq!(ok, s["source"] != "media", "{s}");
    }
}

/// A host whose config names no source restores another host's snapshot: the snapshot
/// records its plugin and options, `--source` picks the source, and each comes back whole.
#[test]
fn another_hosts_snapshot_restores_without_its_sources_in_the_config() {
    let env = Env::new();
    let data = env.path("data");
    generate_tree(&data, 31, 40, 1 << 20);
    let db = env.path("app.db");
    make_db(&db, 5000);
    env.local_config(&format!(
        "{}{}",
        filesystem_source("files", &data),
        sqlite_source("app-db", &db)
    ));
    env.ok(&["init"]);
    env.ok(&["backup"]);

    // The other host: the same repository, and nothing else.
    let other = env.path("other.toml");
    std::fs::write(
        &other,
        format!(
            "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n",
            env.path("repo").display()
        ),
    )
    .unwrap();
    let other = other.to_str().unwrap();
    let files = env.path("elsewhere/files");
    env.ok(&[
        "--config",
        other,
        "restore",
        "latest",
        "--source",
        "files",
        "--target",
        files.to_str().unwrap(),
    ]);
    assert_same_tree(&data, &files);
    let all = env.path("elsewhere/all");
    env.ok(&[
        "--config",
        other,
        "restore",
        "latest",
        "--target",
        all.to_str().unwrap(),
    ]);
    assert_same_tree(&data, &all.join("files"));
    let restored = Connection::open(all.join("app-db")).unwrap();
    let rows: i64 = restored
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 5000);
    let verified = env.ok(&["--config", other, "verify", "latest"]);
    assert!(verified.contains("app-db"), "{verified}");
}

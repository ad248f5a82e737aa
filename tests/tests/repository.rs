//! The repository through the CLI: round trips, deduplication, and the error paths users
//! meet (wrong password, bad config, damaged data).

use cairn_e2e::{Env, assert_same_tree, dir_size, generate_tree, repo_objects, stderr};

/// Restores `latest` into a new directory `into` and compares its `files` source with
/// `expected`.
fn assert_latest_restores(env: &Env, expected: &std::path::Path, into: &str) {
    let target = env.path(into);
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(expected, &target.join("files"));
}

fn tree_env(files: usize, large: usize) -> Env {
    let env = Env::new();
    let data = env.path("data");
    generate_tree(&data, 42, files, large);
    env.local_config(&format!(
        "[[source]]\nname = \"files\"\nplugin = \"filesystem\"\n[source.options]\npath = \"{}\"\n",
        data.display()
    ));
    env.ok(&["init"]);
    env
}

#[test]
fn round_trip_restores_contents_and_metadata_exactly() {
    let env = tree_env(300, 210 << 20);
    env.ok(&["backup", "--tag", "first"]);
    let out = env.ok(&[
        "restore",
        "latest",
        "--target",
        env.path("restored").to_str().unwrap(),
    ]);
    assert!(out.contains("restored files"), "{out}");
    assert_same_tree(&env.path("data"), &env.path("restored/files"));

    // --source restores that source straight to the target.
    env.ok(&[
        "restore",
        "latest",
        "--source",
        "files",
        "--target",
        env.path("direct").to_str().unwrap(),
    ]);
    assert_same_tree(&env.path("data"), &env.path("direct"));

    // A restore never writes into a non-empty directory unless forced.
    let out = env.cairn(&[
        "restore",
        "latest",
        "--source",
        "files",
        "--target",
        env.path("direct").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not empty") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    env.ok(&[
        "restore",
        "latest",
        "--source",
        "files",
        "--force",
        "--target",
        env.path("direct").to_str().unwrap(),
    ]);
    assert_same_tree(&env.path("data"), &env.path("direct"));

    let check = env.ok(&["check", "--read-data"]);
    assert!(check.contains("no errors"), "{check}");
}

#[test]
fn an_unchanged_backup_stores_almost_nothing_and_reads_no_file() {
    let env = tree_env(500, 20 << 20);
    let first: serde_json::Value = serde_json::from_str(&env.ok(&["backup", "--json"])).unwrap();
    let size_after_first = dir_size(&env.path("repo"));
    let second: serde_json::Value = serde_json::from_str(&env.ok(&["backup", "--json"])).unwrap();
    let added = dir_size(&env.path("repo")) - size_after_first;
    assert!(
        added < 1 << 20,
        "an unchanged re-backup added {added} bytes"
    );
    let s = &second["sources"][0];
    assert_eq!(s["files_read"], 0, "no file is read again: {second}");
    assert_eq!(
        s["files_unchanged"], first["sources"][0]["files_read"],
        "{second}"
    );
    assert_eq!(s["bytes_new"], 0);

    // A changed file is read again, the rest is not.
    std::fs::write(env.path("data/docs/file 0.txt"), b"changed contents").unwrap();
    let third: serde_json::Value = serde_json::from_str(&env.ok(&["backup", "--json"])).unwrap();
    assert_eq!(third["sources"][0]["files_read"], 1, "{third}");

    let snapshots: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snapshots.as_array().unwrap().len(), 3);
    env.ok(&[
        "restore",
        third["snapshot"].as_str().unwrap(),
        "--target",
        env.path("out").to_str().unwrap(),
    ]);
    assert_same_tree(&env.path("data"), &env.path("out/files"));
}

/// More items than a backup holds of its parent's list, or a restore of its own (16,384
/// each; beyond that both read the list along, a chunk at a time): names that sort
/// differently bytewise and by path, a deleted directory, new and changed files.
#[test]
fn a_tree_longer_than_the_lists_held_is_backed_up_again_unread_and_restored_whole() {
    let env = tree_env(0, 0);
    let data = env.path("data");
    let names = ["a", "a-b", "a.b", "B", "z", "\u{e9}t\u{e9}", "with space"];
    let mut files = 0;
    for (d, dir) in names.iter().enumerate() {
        for sub in names {
            let path = data.join(dir).join(sub);
            std::fs::create_dir_all(&path).unwrap();
            for i in 0..400 {
                std::fs::write(path.join(format!("f{i}")), format!("{d} {sub} {i}")).unwrap();
                files += 1;
            }
        }
    }
    assert!(files > 16_384 + 2_000, "{files} files");
    let first: serde_json::Value = serde_json::from_str(&env.ok(&["backup", "--json"])).unwrap();
    assert_eq!(first["sources"][0]["files_read"], files);

    std::fs::remove_dir_all(data.join("a-b")).unwrap();
    for i in 0..10 {
        std::fs::write(data.join(format!("a/a.b/f{i}")), "changed, and longer").unwrap();
        std::fs::write(data.join(format!("z/a/new {i}")), "new").unwrap();
    }
    let second: serde_json::Value = serde_json::from_str(&env.ok(&["backup", "--json"])).unwrap();
    let s = &second["sources"][0];
    assert_eq!(
        s["files_read"], 20,
        "only new and changed files are read: {second}"
    );
    assert_eq!(s["files_unchanged"], files - 7 * 400 - 10, "{second}");

    let out = env.path("out");
    env.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&data, &out.join("files"));
}

/// A restore reads a long item list as it goes, so damage far into it is found after the
/// plugin has restored the items before it: the restore still fails, naming the list.
#[test]
fn damage_far_into_a_long_item_list_fails_the_restore_that_reaches_it() {
    let env = tree_env(0, 0);
    // Empty files, so that the only pack holds the item list alone; long paths, so that
    // the list spans chunks past the first 16,384 items a restore holds.
    let dir = env.path(&format!(
        "data/{}",
        ["a directory with a long name"; 6].join("/")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..40_000 {
        std::fs::write(
            dir.join(format!("an empty file with a long name {i:05}")),
            b"",
        )
        .unwrap();
    }
    env.ok(&["backup"]);
    let packs = repo_objects(&env.path("repo"), "data");
    assert_eq!(packs.len(), 1, "{packs:?}");
    // A byte of the pack's last chunk, just before its header.
    let mut pack = std::fs::read(&packs[0]).unwrap();
    let header = u32::from_le_bytes(pack[pack.len() - 4..].try_into().unwrap()) as usize;
    let at = pack.len() - 4 - header - 16;
    pack[at] ^= 0x40;
    std::fs::write(&packs[0], &pack).unwrap();

    let out = env.path("out");
    let err = env.fails(&["restore", "latest", "--target", out.to_str().unwrap()], 1);
    // Found while the plugin read the list (not before it started), and still a failure.
    assert!(err.contains("item list for plugin"), "{err}");
}

#[test]
fn a_wrong_password_is_a_clear_error() {
    let env = tree_env(5, 0);
    let out = env.cairn_with(&["snapshots"], &[("CAIRN_PASSWORD", "not the password")]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("not the password"),
        "the password is never echoed"
    );

    let out = env
        .command(&["snapshots"])
        .env_remove("CAIRN_PASSWORD")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("CAIRN_PASSWORD") && stderr(&out).contains("--password-file"),
        "{}",
        stderr(&out)
    );

    let pw = env.path("pw");
    std::fs::write(&pw, "correct horse battery staple\n").unwrap();
    let out = env
        .command(&["--password-file", pw.to_str().unwrap(), "snapshots"])
        .env_remove("CAIRN_PASSWORD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A damaged key slot is not a wrong password: it is named, the other slots still open,
/// and `key remove` takes it away.
#[test]
fn a_damaged_key_slot_is_named_and_the_others_still_open() {
    let env = tree_env(5, 0);
    env.ok(&["backup"]);
    let second = [("CAIRN_NEW_PASSWORD", "a second password")];
    let out = env.cairn_with(&["key", "add"], &second);
    assert!(out.status.success(), "{}", stderr(&out));
    // Damage the slot the first password opens: one hex digit of its wrapped secret.
    let slots = repo_objects(&env.path("repo"), "keys");
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["key", "list", "--json"])).unwrap();
    let current = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let slot = slots
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy() == current)
        .unwrap();
    let text = std::fs::read_to_string(slot).unwrap();
    let at = text.find("\"wrapped\": \"").unwrap() + 20;
    let digit = if &text[at..at + 1] == "0" { "1" } else { "0" };
    std::fs::write(slot, format!("{}{digit}{}", &text[..at], &text[at + 1..])).unwrap();

    let err = env.fails(&["snapshots"], 3);
    assert!(
        err.contains("is damaged") && err.contains(&current) && !err.contains("wrong password"),
        "{err}"
    );
    let other = [("CAIRN_PASSWORD", "a second password")];
    let out = env.cairn_with(&["key", "list"], &other);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("DAMAGED"),
        "{out:?}"
    );
    let out = env.cairn_with(&["key", "remove", &current[..8]], &other);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.cairn_with(
        &[
            "restore",
            "latest",
            "--target",
            env.path("r").to_str().unwrap(),
        ],
        &other,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tree(&env.path("data"), &env.path("r").join("files"));
}

#[test]
fn key_slots_add_and_remove_passwords() {
    let env = tree_env(3, 0);
    let out = env.cairn_with(
        &["key", "add"],
        &[("CAIRN_NEW_PASSWORD", "second password")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["key", "list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let out = env.cairn_with(&["snapshots"], &[("CAIRN_PASSWORD", "second password")]);
    assert!(
        out.status.success(),
        "the added password opens the repository: {}",
        stderr(&out)
    );
    let current = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env.cairn(&["key", "remove", &current]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "removing the slot in use is refused"
    );
    let out = env.cairn_with(
        &["key", "remove", &current],
        &[("CAIRN_PASSWORD", "second password")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.cairn(&["snapshots"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the removed password no longer opens it"
    );
}

#[test]
fn config_errors_name_the_file_line_and_field() {
    let env = Env::new();
    let out = env.cairn(&["snapshots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cairn.toml") && stderr(&out).contains("not found"),
        "{}",
        stderr(&out)
    );

    env.write_config("[repository]\nsink = \"local\"\n[repository.options]\npath = \"/tmp/x\"\n\n[[source]]\nname = \"a\"\nplugn = \"filesystem\"\n");
    let err = env.fails(&["snapshots"], 2);
    assert!(
        err.contains("cairn.toml:8:") && err.contains("plugn"),
        "{err}"
    );

    env.write_config("[repository]\nsink = \"local\"\n[repository.options]\npath = \"/tmp/x\"\n\n[[source]]\nname = \"a\"\nplugin = \"filesystem\"\n[source.options]\npath = \"/tmp\"\nexclude = [\"[\"]\n");
    let err = env.fails(&["backup"], 2);
    assert!(
        err.contains("option `exclude.0`") && err.contains("invalid glob"),
        "{err}"
    );

    env.write_config("[repository]\nsink = \"nosuchsink\"\n");
    let err = env.fails(&["init"], 2);
    assert!(err.contains("unknown plugin `nosuchsink`"), "{err}");
}

/// Values that parse but cannot be meant are configuration errors (exit 2) that say why,
/// never a quiet default: an empty path (which would mean the config's folder), a zero
/// memory limit or timeout, source names that collide on a case-insensitive target, and
/// a password that is missing or cannot be read.
#[test]
fn config_values_that_cannot_be_meant_are_refused_with_exit_2() {
    let env = Env::new();
    let repo = format!(
        "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n",
        env.path("repo").display()
    );
    let source = |extra: &str| {
        format!(
            "[[source]]\nname = \"files\"\nplugin = \"filesystem\"\n{extra}[source.options]\npath = \"/tmp\"\n"
        )
    };

    env.write_config("[repository]\nsink = \"local\"\n[repository.options]\npath = \"\"\n");
    let err = env.fails(&["init"], 2);
    assert!(err.contains("option `path` is empty"), "{err}");
    assert!(!env.path("config").exists() && !env.path("keys").exists());

    env.write_config(&format!("{repo}[plugins]\nmemory-limit-mib = 0\n"));
    let err = env.fails(&["init"], 2);
    assert!(
        err.contains("cairn.toml:6:") && err.contains("memory-limit-mib = 0"),
        "{err}"
    );

    env.write_config(&format!("{repo}{}", source("timeout = \"0s\"\n")));
    let err = env.fails(&["init"], 2);
    assert!(err.contains("timeout `0s` would fail every run"), "{err}");

    let twice = source("").replace("name = \"files\"", "name = \"Files\"");
    env.write_config(&format!("{repo}{twice}{}", source("")));
    let err = env.fails(&["init"], 2);
    assert!(
        err.contains("`Files` and `files` differ only in case"),
        "{err}"
    );

    env.write_config(&format!("{repo}{}", source("")));
    let out = env
        .command(&["init"])
        .env_remove("CAIRN_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no repository password"),
        "{}",
        stderr(&out)
    );
    let missing = env.path("no-such-password-file");
    let err = env.fails(&["--password-file", missing.to_str().unwrap(), "init"], 2);
    assert!(err.contains("cannot read password file"), "{err}");
}

#[test]
fn init_twice_is_refused_and_a_missing_repository_is_named() {
    let env = tree_env(3, 0);
    let out = env.cairn(&["init"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("already holds a repository"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(env.path("repo")).unwrap();
    let out = env.cairn(&["snapshots"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("no repository") && stderr(&out).contains("cairn init"),
        "{}",
        stderr(&out)
    );
}

/// A repository that lost its `config` is damaged, not absent: every command says so, and
/// `init` refuses to add a key slot beside the old data (which would open nothing).
#[test]
fn a_repository_without_its_config_is_damaged_and_init_will_not_write_over_it() {
    let env = tree_env(20, 0);
    env.ok(&["backup"]);
    let repo = env.path("repo");
    std::fs::remove_file(repo.join("config")).unwrap();
    let slots = repo_objects(&repo, "keys");

    let err = env.fails(&["snapshots"], 3);
    assert!(
        err.contains("no `config`") && err.contains("damaged") && err.contains("under snapshots/"),
        "{err}"
    );
    let err = env.fails(&["init"], 3);
    assert!(
        err.contains("will not write over it") && err.contains("1 under keys/"),
        "{err}"
    );
    assert_eq!(repo_objects(&repo, "keys"), slots, "init wrote a key slot");
    assert!(!repo.join("config").exists(), "init wrote a config");

    // A location holding only what cairn does not recognise is free for a repository.
    let other = env.path("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("README"), "not a repository").unwrap();
    let config = env.path("other.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n",
            other.display()
        ),
    )
    .unwrap();
    env.ok(&["--config", config.to_str().unwrap(), "init"]);
}

/// One damaged manifest or index file is named and skipped: every other snapshot lists,
/// restores and backs up; only prune (which must see everything) and check refuse.
#[test]
fn a_damaged_manifest_or_index_file_blocks_nothing_else() {
    let env = tree_env(40, 0);
    let repo = env.path("repo");
    let data = env.path("data");
    env.ok(&["backup"]);
    let first = repo_objects(&repo, "snapshots");
    std::fs::write(data.join("added.txt"), "after the first snapshot").unwrap();
    env.ok(&["backup"]);
    let damaged = first[0].clone();
    let name = format!(
        "snapshots/{}",
        damaged.file_name().unwrap().to_string_lossy()
    );
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    // As another machine sees it: this one's cache holds intact copies.
    let _ = std::fs::remove_dir_all(env.path("cache"));

    let out = env.cairn(&["snapshots", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert!(stderr(&out).contains(&name), "{}", stderr(&out));
    env.ok(&["status"]);
    assert_latest_restores(&env, &data, "restored");
    env.ok(&["backup"]);

    let packs = repo_objects(&repo, "data").len();
    let err = env.fails(&["prune", "--grace", "0s"], 1);
    assert!(
        err.contains(&name) && err.contains("deleted nothing"),
        "{err}"
    );
    assert_eq!(repo_objects(&repo, "data").len(), packs);
    let out = env.cairn(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&name),
        "{out:?}"
    );

    // A damaged index file: its chunks are stored again, and the new snapshot is whole.
    let index = repo_objects(&repo, "index").remove(0);
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() / 2]).unwrap();
    let _ = std::fs::remove_dir_all(env.path("cache"));
    std::fs::write(data.join("added.txt"), "after the index was damaged").unwrap();
    let out = env.cairn(&["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("index/"), "{}", stderr(&out));
    assert_latest_restores(&env, &data, "again");

    // `cairn repair` makes the repository whole again: the damaged index file is replaced
    // by one read from the packs, the damaged manifest removed; check and prune work.
    let index_name = format!("index/{}", index.file_name().unwrap().to_string_lossy());
    let dry = env.ok(&["repair", "index", "--dry-run"]);
    assert!(
        dry.contains(&index_name) && dry.contains("would be replaced"),
        "{dry}"
    );
    assert!(index.exists(), "a dry run changed nothing");
    let fixed = env.ok(&["repair", "index"]);
    assert!(fixed.contains("adopted"), "{fixed}");
    assert!(!index.exists());
    let fixed = env.ok(&["repair", "snapshots"]);
    assert!(
        fixed.contains(&name) && fixed.contains("removed"),
        "{fixed}"
    );
    let _ = std::fs::remove_dir_all(env.path("cache"));
    let checked = env.ok(&["check", "--read-data"]);
    assert!(!checked.contains("warning"), "{checked}");
    env.ok(&["prune", "--grace", "0s"]);
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    assert_latest_restores(&env, &data, "last");
}

/// A pack damaged on disk: `repair packs` keeps every chunk that still opens, `repair
/// snapshots` drops the files that lost data and names them, and every other file restores.
#[test]
fn a_damaged_pack_costs_only_the_files_whose_data_it_held() {
    let env = tree_env(60, 0);
    let repo = env.path("repo");
    let data = env.path("data");
    env.ok(&["backup"]);
    let pack = repo_objects(&repo, "data").remove(0);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&pack, &bytes).unwrap();
    let out = env.cairn(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let repaired = env.ok(&["repair", "packs"]);
    assert!(
        repaired.contains("1 damaged") && repaired.contains("1 lost"),
        "{repaired}"
    );
    assert!(!pack.exists());
    env.ok(&["repair", "index"]);
    let report: serde_json::Value =
        serde_json::from_str(&env.ok(&["repair", "snapshots", "--json"])).unwrap();
    let repaired = &report["repaired"][0];
    assert_eq!(repaired["removed"], false, "{report}");
    let lost: Vec<&str> = repaired["items_lost"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(!lost.is_empty(), "{report}");
    env.ok(&["check", "--read-data"]);
    let listed = env.ok(&["snapshots"]);
    assert!(listed.contains("repaired"), "{listed}");

    let restored = env.path("restored");
    env.ok(&["restore", "latest", "--target", restored.to_str().unwrap()]);
    let mut expected = cairn_e2e::describe_tree(&data);
    for path in &lost {
        assert!(
            expected.remove(*path).is_some(),
            "{path} is not in the tree"
        );
    }
    assert_eq!(expected, cairn_e2e::describe_tree(&restored.join("files")));
    // The next backup stores the lost files again.
    std::fs::write(data.join("after.txt"), "after the repair").unwrap();
    env.ok(&["backup"]);
    env.ok(&["check", "--read-data"]);
}

/// A file rewritten throughout its read would be stored as a state it never had: it is
/// read again, then stored flagged with a warning, or (with `changed-files = "fail"`)
/// fails the source.
#[test]
fn a_file_written_while_it_is_read_is_flagged_or_fails_never_stored_silently() {
    use std::io::{Seek, SeekFrom, Write};
    use std::sync::atomic::{AtomicBool, Ordering};

    let env = tree_env(10, 0);
    let data = env.path("data");
    let busy = data.join("busy.log");
    let mut rng = rand::rng();
    std::fs::write(&busy, cairn_e2e::semi_compressible(&mut rng, 32 << 20)).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, busy) = (stop.clone(), busy.clone());
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().write(true).open(&busy).unwrap();
            let mut offset = 0u64;
            while !stop.load(Ordering::Relaxed) {
                offset = (offset + 7_340_033) % (30 << 20);
                file.seek(SeekFrom::Start(offset)).unwrap();
                file.write_all(&[offset as u8; 4096]).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };

    let out = env.cairn(&["backup"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}\n{}", stderr(&out));
    assert!(
        report.contains("1 file(s) changed during every read"),
        "{report}"
    );
    assert!(
        stderr(&out).contains("busy.log changed while it was read"),
        "{}",
        stderr(&out)
    );
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["ls", "latest", "--json"])).unwrap();
    let flagged: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["changed_while_read"] == true)
        .map(|item| item["path"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, ["busy.log"], "{listed}");
    let text = env.ok(&["ls", "latest"]);
    assert!(
        text.lines()
            .any(|l| l.ends_with("files/busy.log  [changed while read]")),
        "{text}"
    );

    let config = std::fs::read_to_string(env.path("cairn.toml")).unwrap();
    env.write_config(&config.replace(
        "plugin = \"filesystem\"\n",
        "plugin = \"filesystem\"\nchanged-files = \"fail\"\n",
    ));
    let out = env.cairn(&["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        said.contains("busy.log changed while it was read") && said.contains("changed-files"),
        "{said}"
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    // Once nothing writes it, the file is stored whole and unflagged.
    env.ok(&["backup"]);
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["ls", "latest", "--json"])).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["changed_while_read"] == false),
        "{listed}"
    );
    assert_latest_restores(&env, &data, "restored");
}

/// `cairn backup | head -1`, or a cron job whose mail pipe went away: the reader is gone
/// before cairn prints. The backup is done and stays done; cairn neither panics nor fails.
#[test]
fn a_closed_stdout_fails_nothing_that_was_done() {
    let env = tree_env(3, 0);
    for args in [
        &["backup", "--tag", "piped"][..],
        &["snapshots"],
        &["--json", "snapshots"],
        &["ls", "latest"],
        &["--json", "ls", "latest"],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = env
            .command(args)
            .stdout(writer)
            .output()
            .expect("running cairn");
        let err = stderr(&out);
        assert!(
            out.status.success(),
            "cairn {args:?}: {}: {err}",
            out.status
        );
        assert!(!err.contains("panicked"), "cairn {args:?}: {err}");
    }
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "snapshots"])).unwrap();
    assert_eq!(listed[0]["tags"][0], "piped", "{listed}");

    // A listing that cannot be written whole (a full disk) is a failure, said on stderr.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = env
        .command(&["ls", "latest"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("writing the listing"),
        "{}",
        stderr(&out)
    );
}

fn flip_byte(path: &std::path::Path, at: f64) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = ((bytes.len() - 1) as f64 * at) as usize;
    bytes[i] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn any_flipped_byte_is_reported_by_check_with_the_file_name() {
    let env = tree_env(60, 3 << 20);
    env.ok(&["backup"]);
    let repo = env.path("repo");
    let pristine = env.path("pristine");
    std::process::Command::new("cp")
        .args(["-a"])
        .arg(&repo)
        .arg(&pristine)
        .status()
        .unwrap();
    let mut damaged = Vec::new();
    for kind in ["data", "index", "snapshots"] {
        for at in [0.0, 0.5, 1.0] {
            let _ = std::fs::remove_dir_all(&repo);
            std::process::Command::new("cp")
                .args(["-a"])
                .arg(&pristine)
                .arg(&repo)
                .status()
                .unwrap();
            let victim = repo_objects(&repo, kind)
                .into_iter()
                .next()
                .expect("an object of this kind");
            flip_byte(&victim, at);
            let out = env.cairn(&["check", "--read-data"]);
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
            assert_eq!(out.status.code(), Some(1), "{kind} flipped at {at}: {text}");
            let name = victim.file_name().unwrap().to_string_lossy().into_owned();
            assert!(text.contains(&name), "the report names {name}: {text}");
            damaged.push(name);
        }
    }
    assert_eq!(damaged.len(), 9);
}

#[test]
fn a_restore_over_damaged_data_fails_loudly_and_writes_no_wrong_bytes() {
    let env = tree_env(10, 4 << 20);
    env.ok(&["backup"]);
    // Damage the middle of every pack: some chunk of the large file is hit.
    for pack in repo_objects(&env.path("repo"), "data") {
        flip_byte(&pack, 0.3);
    }
    let target = env.path("restored");
    let out = env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    // Whatever was restored before the failure is correct: nothing has the wrong bytes.
    let expected = cairn_e2e::describe_tree(&env.path("data"));
    for (path, desc) in cairn_e2e::describe_tree(&target.join("files")) {
        if desc.starts_with("file") {
            let want = &expected[&path];
            let size_hash = |d: &str| {
                d.split(' ')
                    .filter(|p| p.starts_with("size=") || p.starts_with("blake3="))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            assert_eq!(
                size_hash(&desc),
                size_hash(want),
                "{path} was written with wrong bytes"
            );
        }
    }
}

#[test]
fn a_file_the_target_refuses_fails_the_restore_naming_it() {
    let env = tree_env(30, 1 << 20);
    env.ok(&["backup"]);
    // A small file (written on the host's background threads) whose name is taken in the
    // target by a non-empty directory: its write cannot land.
    let tree = cairn_e2e::describe_tree(&env.path("data"));
    let (blocked, _) = tree
        .iter()
        .filter(|(_, desc)| desc.starts_with("file") && !desc.contains("size=0 "))
        .nth(3)
        .expect("the tree has small files");
    let target = env.path("restored");
    std::fs::create_dir_all(target.join("files").join(blocked).join("occupied")).unwrap();
    let out = env.cairn(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(blocked.as_str()), "{}", stderr(&out));
    // The restore stopped: no temporary file is left beside the blocked name.
    let parent = target.join("files").join(blocked);
    let leftovers: Vec<_> = std::fs::read_dir(parent.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// `--force` replaces what is in the target, so it never reaches through a symlink at or
/// above the target to somewhere the user did not name; and what a killed restore left
/// half-written there is removed by the next one.
#[test]
fn a_forced_restore_follows_no_symlink_and_sweeps_a_killed_restores_temporaries() {
    let env = tree_env(20, 0);
    env.ok(&["backup"]);
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("precious"), "not the restore's to replace").unwrap();
    let link = env.path("link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();

    for target in [link.clone(), link.join("deeper")] {
        let err = env.fails(
            &[
                "restore",
                "latest",
                "--force",
                "--target",
                target.to_str().unwrap(),
            ],
            1,
        );
        assert!(
            err.contains("passes through the symlink")
                && err.contains(elsewhere.canonicalize().unwrap().to_str().unwrap()),
            "{err}"
        );
    }
    let entries: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().collect();
    assert_eq!(
        entries.len(),
        1,
        "the forced restore wrote through the link"
    );

    // Given the resolved path, the user means it.
    let real = elsewhere.canonicalize().unwrap();
    env.ok(&[
        "restore",
        "latest",
        "--force",
        "--target",
        real.to_str().unwrap(),
    ]);
    assert_same_tree(&env.path("data"), &real.join("files"));

    // A killed restore's temporaries, at the top and deeper, go with the next restore.
    let deep = real.join("files");
    let dir = std::fs::read_dir(&deep)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.path())
        .unwrap_or(deep.clone());
    std::fs::write(deep.join(".tmp-0123456789abcdef"), "half").unwrap();
    std::fs::write(dir.join(".tmp-fedcba9876543210"), "half").unwrap();
    std::fs::write(deep.join(".tmp-notcairns"), "the user's").unwrap();
    env.ok(&[
        "restore",
        "latest",
        "--force",
        "--target",
        real.to_str().unwrap(),
    ]);
    assert!(!deep.join(".tmp-0123456789abcdef").exists());
    assert!(!dir.join(".tmp-fedcba9876543210").exists());
    assert!(
        deep.join(".tmp-notcairns").exists(),
        "only cairn's own names go"
    );

    // A directory where the snapshot has a file is not replaced (that would delete what
    // it holds): the restore fails saying so.
    let file = std::fs::read_dir(&deep)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| {
            e.file_type().unwrap().is_file() && !e.file_name().to_string_lossy().starts_with('.')
        })
        .map(|e| e.path())
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    std::fs::write(file.join("mine"), "the user's").unwrap();
    let err = env.fails(
        &[
            "restore",
            "latest",
            "--force",
            "--target",
            real.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        err.contains("a directory is in the place of this file"),
        "{err}"
    );
    assert!(file.join("mine").exists());
}

/// A FIFO or a socket holds no data at rest: the backup skips it, and says so.
#[test]
fn a_fifo_or_socket_in_a_tree_is_skipped_with_a_warning() {
    let env = tree_env(5, 0);
    let data = env.path("data");
    let fifo = data.join("queue.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let _socket = std::os::unix::net::UnixListener::bind(data.join("app.sock")).unwrap();
    let out = env.cairn(&["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("queue.fifo: a FIFO (named pipe)") && err.contains("app.sock: a socket"),
        "{err}"
    );
    let listed = env.ok(&["ls", "latest"]);
    assert!(
        !listed.contains("queue.fifo") && !listed.contains("app.sock"),
        "{listed}"
    );
}

/// libfaketime, which makes cairn a host whose clock is off (scripts/setup.sh installs it).
fn faketime_library() -> String {
    let found = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|arch| format!("/usr/lib/{arch}/faketime/libfaketimeMT.so.1"))
        .find(|path| std::path::Path::new(path).exists());
    found.expect("libfaketime is not installed: run scripts/setup.sh")
}

/// A host whose clock is three days slow writes the newest snapshot: it is `latest`,
/// `keep-last 1` keeps it, and the backup says the clocks disagree.
#[test]
fn latest_is_the_snapshot_written_last_whatever_the_clocks_say() {
    let env = tree_env(5, 0);
    env.ok(&["backup"]);
    std::fs::write(env.path("data").join("later.txt"), "from the slow host").unwrap();
    let library = faketime_library();
    let slow = [
        ("LD_PRELOAD", library.as_str()),
        ("FAKETIME", "-3d"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let out = env.cairn_with(&["backup"], &slow);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3d behind the newest snapshot's time"),
        "{}",
        stderr(&out)
    );

    let listed = env.ok(&["ls", "latest"]);
    assert!(listed.contains("files/later.txt"), "{listed}");
    env.ok(&["forget", "--keep-last", "1"]);
    let snapshots: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snapshots.as_array().unwrap().len(), 1, "{snapshots}");
    let listed = env.ok(&["ls", "latest"]);
    assert!(listed.contains("files/later.txt"), "{listed}");
}

/// Two entries of the compiled-plugin cache swapped (a restore of the cache directory
/// from elsewhere, a careless copy): each is detected as not its plugin's and compiled
/// again, instead of loading the sink as the source.
#[test]
fn swapped_compiled_plugin_cache_entries_are_compiled_again() {
    let env = tree_env(5, 0);
    env.ok(&["backup"]);
    let compiled = env.path("cache").join("compiled");
    let mut entries: Vec<_> = std::fs::read_dir(&compiled)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    entries.sort();
    assert!(entries.len() >= 2, "{entries:?}");
    let (a, b) = (
        std::fs::read(&entries[0]).unwrap(),
        std::fs::read(&entries[1]).unwrap(),
    );
    std::fs::write(&entries[0], &b).unwrap();
    std::fs::write(&entries[1], &a).unwrap();

    env.ok(&["backup"]);
    assert_latest_restores(&env, &env.path("data"), "restored");
    // Compiled again, the entries are whole and valid once more.
    assert_ne!(std::fs::read(&entries[0]).unwrap(), b);
}

/// `--resume` keeps each file already at the target with the snapshot's contents, and
/// restores the rest: a file changed in place at the same size, a truncated one and a
/// missing one are all put right.
#[test]
fn a_resumed_restore_keeps_whole_files_and_puts_right_the_rest() {
    let env = tree_env(60, 4 << 20);
    let data = env.path("data");
    env.ok(&["backup"]);
    let target = env.path("target");
    let target_arg = target.to_str().unwrap();
    env.ok(&["restore", "latest", "--target", target_arg]);
    let restored = target.join("files");
    let all: Vec<std::path::PathBuf> = cairn_e2e::describe_tree(&restored)
        .into_keys()
        .map(|p| restored.join(p))
        .filter(|p| !p.is_symlink() && p.is_file())
        .collect();
    let total = all.len() as u64;
    let mut files: Vec<&std::path::PathBuf> = all
        .iter()
        .filter(|p| std::fs::metadata(p).unwrap().len() > 1)
        .collect();
    files.sort();
    assert!(total >= 10, "{total} files");
    // Same size, one byte different: only the hash tells.
    let mut changed = std::fs::read(files[0]).unwrap();
    changed[0] ^= 1;
    std::fs::write(files[0], &changed).unwrap();
    let truncated = std::fs::read(files[1]).unwrap();
    std::fs::write(files[1], &truncated[..truncated.len() / 2]).unwrap();
    std::fs::remove_file(files[2]).unwrap();

    let out = env.ok(&[
        "--json", "restore", "latest", "--resume", "--target", target_arg,
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kept = report["sources"][0]["kept_files"].as_u64().unwrap_or(0);
    assert_eq!(kept, total - 3, "{out}");
    assert_same_tree(&data, &restored);

    // A restore with nothing left to do reads no file from the repository.
    let out = env.ok(&[
        "--json", "restore", "latest", "--resume", "--target", target_arg,
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["sources"][0]["kept_files"].as_u64(), Some(total));
    assert_same_tree(&data, &restored);
}

/// A write killed in the local sink leaves its temporary file; one older than a day is
/// removed as a listing passes it, and a fresh one (a write in progress) is left alone.
#[test]
fn temporaries_a_killed_write_left_in_a_local_repository_are_removed_after_a_day() {
    let env = tree_env(5, 0);
    env.ok(&["backup"]);
    let dir = std::fs::read_dir(env.path("repo/data"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let old = dir.join(".tmp-0123456789abcdef");
    let fresh = dir.join(".tmp-fedcba9876543210");
    std::fs::write(&old, "half a pack").unwrap();
    std::fs::write(&fresh, "a pack landing").unwrap();
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let check = env.ok(&["check"]);
    assert!(check.contains("no errors"), "{check}");
    assert!(!old.exists(), "the stale temporary is still there");
    assert!(fresh.exists(), "a fresh temporary was removed");
}

//! Lock-free writers: two cairn processes back up different sources into one repository
//! at the same time; both snapshots restore and the repository checks clean.

use cairn_e2e::{Env, assert_same_tree, generate_tree};

#[test]
fn two_processes_back_up_into_one_repository_at_once() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    generate_tree(&a, 1, 120, 12 << 20);
    generate_tree(&b, 2, 120, 12 << 20);
    let repo = env.path("repo");
    let config = |name: &str, data: &std::path::Path| {
        let path = env.path(&format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n\n[[source]]\nname = \"{name}\"\nplugin = \"filesystem\"\n[source.options]\npath = \"{}\"\n",
                repo.display(),
                data.display()
            ),
        )
        .unwrap();
        path
    };
    let (config_a, config_b) = (config("a", &a), config("b", &b));
    env.ok(&["--config", config_a.to_str().unwrap(), "init"]);

    for _ in 0..3 {
        let spawn = |config: &std::path::Path| {
            env.command(&["--config", config.to_str().unwrap(), "backup"])
                .spawn()
                .unwrap()
        };
        let (mut first, mut second) = (spawn(&config_a), spawn(&config_b));
        assert!(first.wait().unwrap().success() && second.wait().unwrap().success());
    }

    let listed: serde_json::Value = serde_json::from_str(&env.ok(&[
        "--config",
        config_a.to_str().unwrap(),
        "snapshots",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        6,
        "three runs of each source: {listed}"
    );
    env.ok(&[
        "--config",
        config_a.to_str().unwrap(),
        "restore",
        "latest",
        "--source",
        "a",
        "--target",
        env.path("ra").to_str().unwrap(),
    ]);
    env.ok(&[
        "--config",
        config_b.to_str().unwrap(),
        "restore",
        "latest",
        "--source",
        "b",
        "--target",
        env.path("rb").to_str().unwrap(),
    ]);
    assert_same_tree(&a, &env.path("ra"));
    assert_same_tree(&b, &env.path("rb"));
    let check = env.ok(&[
        "--config",
        config_a.to_str().unwrap(),
        "check",
        "--read-data",
    ]);
    assert!(check.contains("no errors"), "{check}");
}

/// A prune with no grace, run in a loop beside a backup that reuses data nothing else
/// references any more and adds data of its own: the backup's commit must survive it.
#[test]
fn a_backup_that_reports_ok_beside_prunes_with_no_grace_restores_and_checks_clean() {
    let env = Env::new();
    let data = env.path("data");
    generate_tree(&data.join("old"), 3, 60, 40 << 20);
    let config = env.local_config(&cairn_e2e::source_section("files", "filesystem", &data, ""));
    let config = config.to_str().unwrap();
    env.ok(&["--config", config, "init"]);
    env.ok(&["--config", config, "backup"]);
    // Forget every snapshot by hand: the old packs stay indexed but unreferenced, so the
    // next backup reuses them while each prune condemns or deletes them.
    for manifest in cairn_e2e::repo_objects(&env.path("repo"), "snapshots") {
        std::fs::remove_file(manifest).unwrap();
    }
    generate_tree(&data.join("new"), 4, 60, 80 << 20);

    let mut backup = env
        .command(&["--config", config, "backup"])
        .spawn()
        .unwrap();
    // Start pruning once the backup has announced itself (and so has listed the markers
    // there were: none), so the first prune condemns packs the backup is reusing.
    while cairn_e2e::repo_objects(&env.path("repo"), "writers").is_empty() {
        assert!(
            backup.try_wait().unwrap().is_none(),
            "the backup ended before it registered"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut prunes_during = 0;
    let mut held = 0;
    let status = loop {
        if let Some(status) = backup.try_wait().unwrap() {
            break status;
        }
        let pruned = env.ok(&["--config", config, "prune", "--grace", "0s", "--json"]);
        let pruned: serde_json::Value = serde_json::from_str(&pruned).unwrap();
        held += pruned["packs_waiting_for_backups"].as_u64().unwrap();
        prunes_during += 1;
    };
    assert!(status.success(), "the backup beside the prunes failed");
    assert!(
        prunes_during >= 2,
        "only {prunes_during} prunes overlapped the backup"
    );
    assert!(held > 0, "no prune had to wait for the running backup");
    // Two more prunes, with no backup running, must find everything needed.
    env.ok(&["--config", config, "prune", "--grace", "0s"]);
    env.ok(&["--config", config, "prune", "--grace", "0s"]);
    let check = env.ok(&["--config", config, "check", "--read-data"]);
    assert!(check.contains("no errors"), "{check}");
    let restored = env.path("restored");
    env.ok(&[
        "--config",
        config,
        "restore",
        "latest",
        "--target",
        restored.to_str().unwrap(),
    ]);
    assert_same_tree(&data, &restored.join("files"));
    assert!(
        cairn_e2e::repo_objects(&env.path("repo"), "writers").is_empty(),
        "the backup left its registration behind"
    );
}

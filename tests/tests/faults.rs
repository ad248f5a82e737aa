//! The binary over a sink that fails as real storage does: faults injected at the sink
//! plugin's boundary (`CAIRN_SINK_FAULTS`: latency, retryable failures, responses lost
//! after the write took effect, permanent failures) during randomised backups, restores,
//! forgets and prunes. Every run either succeeds or exits 1 with an error, never a crash;
//! afterwards `check --read-data` finds no error, and every snapshot in the repository
//! restores exactly the tree it was taken of, whether its backup said ok or not. Once the
//! faults stop, the next backup succeeds.
//! `CAIRN_FAULT_SEED=N` replays a run; `CAIRN_FAULT_ROUNDS=N` (default 16) makes it
//! longer, as `bench/faults.sh` does.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_e2e::{Env, assert_same_tree, generate_tree, stderr};
use rand::{Rng, SeedableRng};

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Snapshot ids, oldest first.
fn snapshot_ids(env: &Env) -> Vec<String> {
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "snapshots"])).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Keeps a copy of the tree for each snapshot that appeared since `before`.
fn note_new_snapshots(
    env: &Env,
    before: &[String],
    data: &Path,
    taken: &mut BTreeMap<String, std::path::PathBuf>,
) {
    for id in snapshot_ids(env) {
        if !before.contains(&id) && !taken.contains_key(&id) {
            let copy = env.path(&format!("taken/{id}"));
            std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
            copy_tree(data, &copy);
            taken.insert(id, copy);
        }
    }
}

#[test]
fn under_sink_faults_every_run_ends_cleanly_and_every_snapshot_restores() {
    let seed = env_number("CAIRN_FAULT_SEED").unwrap_or_else(rand::random);
    let rounds = env_number("CAIRN_FAULT_ROUNDS").unwrap_or(16);
    eprintln!("sink faults: seed {seed}, {rounds} rounds (CAIRN_FAULT_SEED={seed} replays)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let env = Env::new();
    let data = env.path("data");
    generate_tree(&data, seed, 40, 2 << 20);
    env.local_config(&format!(
        "[[source]]\nname = \"files\"\nplugin = \"filesystem\"\n[source.options]\npath = \"{}\"\n",
        data.display()
    ));
    env.ok(&["init"]);
    // What each snapshot was taken of: a copy of the tree at the time.
    let mut taken: BTreeMap<String, std::path::PathBuf> = BTreeMap::new();
    let mut outcomes: BTreeMap<(&str, bool), u32> = BTreeMap::new();
    let mut injected = 0;
    for round in 0..rounds {
        let which = ["backup", "backup", "restore", "forget", "prune"][rng.random_range(0..5)];
        let target = env.path(&format!("restored-{round}"));
        let target_arg = target.to_str().unwrap().to_string();
        let args: Vec<&str> = match which {
            "backup" => {
                std::fs::write(
                    data.join(format!("docs/round-{round}.bin")),
                    cairn_e2e::semi_compressible(&mut rng, 1 << 20),
                )
                .unwrap();
                vec!["backup"]
            }
            "restore" => vec!["restore", "latest", "--target", target_arg.as_str()],
            "forget" => vec!["forget", "--keep-last", "3", "--prune", "--grace", "0s"],
            _ => vec!["prune", "--grace", "0s"],
        };
        if which == "restore" && taken.is_empty() {
            continue;
        }
        // Each run draws its own faults: one seed for all would fail the same call of
        // every run alike.
        let faults = format!(
            "seed={},transient=0.08,lost=0.04,permanent=0.01,latency-ms=3",
            rng.random::<u64>()
        );
        let before = snapshot_ids(&env);
        let out = env.cairn_with(
            &args,
            &[
                ("CAIRN_PASSWORD", "correct horse battery staple"),
                ("CAIRN_SINK_FAULTS", &faults),
            ],
        );
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(1),
            "seed {seed}, round {round}: cairn {args:?} ended with {code:?}:\n{}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("panicked"),
            "seed {seed}, round {round}: {}",
            stderr(&out)
        );
        *outcomes.entry((which, code == Some(0))).or_default() += 1;
        if code != Some(0) {
            // Shown only when the test fails: why each command that failed did.
            let why = stderr(&out);
            eprintln!(
                "round {round}: {which} failed: {}",
                why.trim_end().lines().last().unwrap_or("")
            );
        }
        injected += stderr(&out).matches("injected fault").count();

        // Without faults from here: the repository is whole, and any snapshot that
        // appeared, even from a backup that failed, holds the tree as it was.
        note_new_snapshots(&env, &before, &data, &mut taken);
        if which == "restore" && code == Some(0) {
            let latest = snapshot_ids(&env).pop().unwrap();
            assert_same_tree(&taken[&latest], &target.join("files"));
        }
        let check = env.cairn(&["check", "--read-data"]);
        assert!(
            check.status.success(),
            "seed {seed}, round {round}: check failed after {which}:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            stderr(&check)
        );
    }
    assert!(injected > 0, "seed {seed}: no fault was injected");
    // Once the faults stop, whatever they left behind, the next backup succeeds.
    let before = snapshot_ids(&env);
    env.ok(&["backup"]);
    note_new_snapshots(&env, &before, &data, &mut taken);
    let remaining = snapshot_ids(&env);
    for id in &remaining {
        let target = env.path(&format!("final/{id}"));
        env.ok(&["restore", id, "--target", target.to_str().unwrap()]);
        assert_same_tree(&taken[id], &target.join("files"));
    }
    eprintln!(
        "sink faults: seed {seed}: {injected} faults named in the runs' messages; (command, succeeded) counts {outcomes:?}; {} snapshots restored",
        remaining.len()
    );
}

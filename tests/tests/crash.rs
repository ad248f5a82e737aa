//! Crash safety: a backup killed with SIGKILL at random moments leaves a repository that
//! `check --read-data` passes, and the next backup adopts what it left, completes and
//! restores identically.

use std::time::{Duration, Instant};

use cairn_e2e::{Env, assert_same_tree, generate_tree, stderr};
use rand::{Rng, RngCore, SeedableRng};

/// A repository with one `files` source: a tree of 200 files (from `seed`) plus `large`
/// bytes of large files.
fn tree_env(seed: u64, large: usize) -> Env {
    let env = Env::new();
    let data = env.path("data");
    generate_tree(&data, seed, 200, large);
    env.local_config(&format!(
        "[[source]]\nname = \"files\"\nplugin = \"filesystem\"\n[source.options]\npath = \"{}\"\n",
        data.display()
    ));
    env.ok(&["init"]);
    env
}

#[test]
fn backups_killed_at_random_moments_never_damage_the_repository() {
    let env = tree_env(11, 24 << 20);
    let data = env.path("data");

    // Aim the kills by a backup of the same shape as the rounds' (new data on top of a
    // parent), timed after the first backup, so the plugin is compiled and cached.
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let change = |rng: &mut rand::rngs::StdRng, round: &str| {
        // New data every round, so each backup has packs, index files and a manifest to write.
        std::fs::write(
            data.join(format!("docs/round-{round}.bin")),
            cairn_e2e::semi_compressible(rng, 2 << 20),
        )
        .unwrap();
        std::fs::write(
            data.join("media/large.bin"),
            cairn_e2e::semi_compressible(rng, 20 << 20),
        )
        .unwrap();
    };
    env.ok(&["backup"]);
    change(&mut rng, "aim");
    let mut full = timed(&env, &["backup"]);
    let mut killed = 0;
    for round in 0..12 {
        change(&mut rng, &round.to_string());
        let delay = Duration::from_secs_f64(full.as_secs_f64() * rng.random_range(0.05..1.1));
        match kill_after(&env, &["backup"], delay) {
            None => killed += 1,
            // A backup that outran its kill is the better measure of how long one takes.
            Some(took) => full = took,
        }
        let out = env.cairn(&["check", "--read-data"]);
        assert!(
            out.status.success(),
            "check failed after a kill at {delay:?} (round {round}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
    eprintln!("kills: {killed} of 12 backups interrupted (aimed by a {full:?} backup)");
    assert!(
        killed >= 6,
        "only {killed} of 12 backups were interrupted: the kills were not aimed well"
    );

    env.ok(&["backup"]);
    // Each backup after a kill adopted the packs the killed run left.
    assert_whole_and_restorable(&env, &data);
}

/// `check --read-data` finds nothing amiss, not even an unindexed pack, and `latest`
/// restores `data` identically.
fn assert_whole_and_restorable(env: &Env, data: &std::path::Path) {
    let check = env.ok(&["check", "--read-data"]);
    assert!(check.contains("no errors"), "{check}");
    assert!(!check.contains("not named by any index"), "{check}");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        env.path("restored").to_str().unwrap(),
    ]);
    assert_same_tree(data, &env.path("restored/files"));
}

/// Spawns cairn with `args` and SIGKILLs it after `delay` if it is still running; returns
/// `None` if it was killed, or how long it took if it ended first.
fn kill_after(env: &Env, args: &[&str], delay: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut child = env
        .command(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Poll rather than sleep the whole delay, so a run that ends early is timed well.
    while started.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5).min(delay.saturating_sub(started.elapsed())));
    }
    if child.try_wait().unwrap().is_some() {
        return Some(started.elapsed());
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    None
}

fn timed(env: &Env, args: &[&str]) -> Duration {
    let started = Instant::now();
    env.ok(args);
    started.elapsed()
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Restores, forgets and prunes killed with SIGKILL at random moments: the repository
/// stays whole (`check --read-data` passes after every kill), the next forced or resumed
/// restore into a killed restore's target completes identically and leaves no temporary
/// file, and what retention kept still restores. `CAIRN_KILL_SEED=N` replays a run;
/// `CAIRN_KILL_ROUNDS=N` (default 12) makes it longer.
#[test]
fn restores_forgets_and_prunes_killed_at_random_moments_lose_nothing() {
    let seed = env_number("CAIRN_KILL_SEED").unwrap_or_else(rand::random);
    let rounds = env_number("CAIRN_KILL_ROUNDS").unwrap_or(12);
    eprintln!("kills: seed {seed}, {rounds} rounds (CAIRN_KILL_SEED={seed} replays)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let env = tree_env(12, 8 << 20);
    let data = env.path("data");
    let change = |rng: &mut rand::rngs::StdRng, round: u64| {
        std::fs::write(
            data.join("media/large.bin"),
            cairn_e2e::semi_compressible(rng, 4 << 20),
        )
        .unwrap();
        std::fs::write(
            data.join(format!("docs/kill-{round}.bin")),
            [round as u8; 4096],
        )
        .unwrap();
    };
    env.ok(&["backup"]);
    change(&mut rng, 0);
    env.ok(&["backup"]);
    let target = env.path("target");
    let target_arg = target.to_str().unwrap().to_string();
    let restore = [
        "restore",
        "latest",
        "--force",
        "--target",
        target_arg.as_str(),
    ];
    let resume = [
        "restore",
        "latest",
        "--resume",
        "--target",
        target_arg.as_str(),
    ];
    let restore_time = timed(&env, &restore);
    let forget = ["forget", "--keep-last", "2", "--prune", "--grace", "0s"];
    // How long a forget with a prune that has work takes here, to aim those kills.
    change(&mut rng, 0);
    env.ok(&["backup"]);
    let maintenance_time = timed(&env, &forget);

    // Each command's kills are aimed by how long it takes here. A run that ends before
    // its kill re-aims the next ones: the first timings may have been taken while the
    // machine was busier than it is now.
    let mut aims = std::collections::BTreeMap::from([
        ("restore", restore_time),
        ("forget", maintenance_time),
        ("prune", maintenance_time),
    ]);
    let mut kills = std::collections::BTreeMap::<&str, (u32, u32)>::new();
    for round in 1..=rounds {
        let which = ["restore", "forget", "prune"][rng.random_range(0..3)];
        let aim = aims[which];
        let ran = match which {
            "restore" => {
                let delay = aim.mul_f64(rng.random_range(0.05..1.0));
                let ran = kill_after(&env, &restore, delay);
                // The next restore either starts over or carries on.
                if round % 2 == 0 {
                    env.ok(&restore);
                } else {
                    env.ok(&resume);
                }
                assert_same_tree(&data, &target.join("files"));
                let leftovers: Vec<_> = cairn_e2e::describe_tree(&target)
                    .into_keys()
                    .filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with(".tmp-")))
                    .collect();
                assert!(
                    leftovers.is_empty(),
                    "round {round}: temporaries left: {leftovers:?}"
                );
                ran
            }
            _ => {
                // Something for retention and prune to remove: a new snapshot whose
                // large file replaces the previous one's.
                change(&mut rng, round);
                env.ok(&["backup"]);
                let args: &[&str] = match which {
                    "forget" => &forget,
                    _ => &["prune", "--grace", "0s"],
                };
                if which == "prune" {
                    env.ok(&["forget", "--keep-last", "2"]);
                }
                let delay = aim.mul_f64(rng.random_range(0.02..1.1));
                kill_after(&env, args, delay)
            }
        };
        let entry = kills.entry(which).or_default();
        match ran {
            None => entry.0 += 1,
            Some(took) => {
                entry.1 += 1;
                aims.insert(which, took);
            }
        }
        let out = env.cairn(&["check", "--read-data"]);
        assert!(
            out.status.success(),
            "seed {seed}, round {round}: check failed after {which} was killed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
    let killed: u32 = kills.values().map(|(k, _)| k).sum();
    eprintln!("kills: seed {seed}: (killed, finished) per command {kills:?}");
    assert!(
        killed as u64 >= rounds / 3,
        "seed {seed}: only {killed} of {rounds} runs were interrupted: {kills:?}"
    );

    // Every snapshot retention kept restores; the last one is the tree as it is now.
    env.ok(&["forget", "--keep-last", "2", "--prune", "--grace", "0s"]);
    env.ok(&["prune", "--grace", "0s"]);
    env.ok(&[
        "restore",
        "latest",
        "--target",
        env.path("final").to_str().unwrap(),
    ]);
    assert_same_tree(&data, &env.path("final/files"));
    let snapshots: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    for snapshot in snapshots.as_array().unwrap() {
        let id = snapshot["id"].as_str().unwrap();
        let dir = env.path(&format!("each-{id}"));
        env.ok(&["restore", id, "--target", dir.to_str().unwrap()]);
    }
    let check = env.ok(&["check", "--read-data"]);
    assert!(check.contains("no errors"), "{check}");
    // Each backup after a kill adopted the packs the killed run left.
    assert!(!check.contains("not named by any index"), "{check}");
}

/// The packs under the local repository's `data/` (not the temporaries they land from).
fn pack_files(env: &Env) -> usize {
    cairn_e2e::describe_tree(&env.path("repo/data"))
        .into_keys()
        .filter(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .count()
}

/// A backup killed after some of its packs landed, and before it indexed them, leaves
/// them unindexed (`check` says so); the next backup on the machine adopts them and
/// uploads little of that data again.
#[test]
fn the_backup_after_a_killed_one_reuses_the_packs_it_left() {
    let env = tree_env(13, 1 << 20);
    let data = env.path("data");
    env.ok(&["backup"]);
    // Incompressible, so that the data spans several packs and the first lands early.
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut big = vec![0u8; 80 << 20];
    rng.fill_bytes(&mut big);
    std::fs::write(data.join("media/big.bin"), &big).unwrap();

    let before = pack_files(&env);
    let mut child = env
        .command(&["backup"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waited = Instant::now();
    while pack_files(&env) == before && child.try_wait().unwrap().is_none() {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "no pack landed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup ended before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let check = env.ok(&["check"]);
    assert!(
        check.contains("not named by any index"),
        "the killed backup left no unindexed pack: {check}"
    );

    let backup = env.cairn(&["backup", "-v"]);
    assert!(backup.status.success(), "{}", stderr(&backup));
    let out = String::from_utf8_lossy(&backup.stdout);
    let line = out.lines().find(|l| l.contains(" ok ")).unwrap_or_default();
    let new_mib: f64 = line
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no new size in {line:?}"));
    let unit = line
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().nth(1));
    assert!(
        unit != Some("GiB") && (unit != Some("MiB") || new_mib < 72.0),
        "the backup after the kill stored most of the data again: {out}{}",
        stderr(&backup)
    );
    assert_whole_and_restorable(&env, &data);
}

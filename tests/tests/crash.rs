//! Crash safety: a backup killed with SIGKILL at random moments leaves a repository that
//! `check --read-data` passes, and the next backup completes and restores identically.

use std::time::{Duration, Instant};

use cairn_e2e::{Env, assert_same_tree, generate_tree, stderr};
use rand::{Rng, SeedableRng};

#[test]
fn backups_killed_at_random_moments_never_damage_the_repository() {
    let env = Env::new();
    let data = env.path("data");
    generate_tree(&data, 11, 200, 24 << 20);
    env.local_config(&format!(
        "[[source]]\nname = \"files\"\nplugin = \"filesystem\"\n[source.options]\npath = \"{}\"\n",
        data.display()
    ));
    env.ok(&["init"]);

    // How long an uninterrupted backup of this tree takes here, to aim the kills.
    let started = Instant::now();
    env.ok(&["backup"]);
    let full = started.elapsed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut killed = 0;
    for round in 0..12 {
        // New data every round, so each backup has packs, index files and a manifest to write.
        std::fs::write(
            data.join(format!("docs/round-{round}.bin")),
            cairn_e2e::semi_compressible(&mut rng, 2 << 20),
        )
        .unwrap();
        std::fs::write(
            data.join("media/large.bin"),
            cairn_e2e::semi_compressible(&mut rng, 20 << 20),
        )
        .unwrap();
        let mut child = env
            .command(&["backup"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_secs_f64(full.as_secs_f64() * rng.random_range(0.05..1.1));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        let out = env.cairn(&["check", "--read-data"]);
        assert!(
            out.status.success(),
            "check failed after a kill at {delay:?} (round {round}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
    assert!(
        killed >= 6,
        "only {killed} of 12 backups were interrupted: the kills were not aimed well"
    );

    env.ok(&["backup"]);
    env.ok(&[
        "restore",
        "latest",
        "--target",
        env.path("restored").to_str().unwrap(),
    ]);
    assert_same_tree(&data, &env.path("restored/files"));
    let check = env.ok(&["check", "--read-data"]);
    assert!(check.contains("no errors"), "{check}");
}

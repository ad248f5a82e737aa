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

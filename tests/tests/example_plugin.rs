//! The example third-party plugin builds against sdk/ alone (its own workspace) and runs
//! through the same host path as the built-ins: the SDK harness and the CLI.

use cairn_e2e::{Env, build_wasm, generate_tree, workspace_root};

fn example_sink() -> std::path::PathBuf {
    build_wasm(
        &workspace_root().join("examples/sink-flat-dir"),
        "cairn-example-sink-flat-dir",
    )
}

#[test]
fn the_sdk_harness_passes_the_example_sink() {
    let wasm = example_sink();
    let harness = cairn_sdk::testing::Harness::new().unwrap();
    let dir = harness.scratch("objects").unwrap();
    harness
        .check_sink(
            &wasm,
            &serde_json::json!({ "path": dir.join("store").to_str() }),
        )
        .unwrap();
}

#[test]
fn the_example_sink_serves_a_repository_through_the_cli() {
    let wasm = example_sink();
    let env = Env::new();
    let data = env.path("data");
    generate_tree(&data, 7, 80, 6 << 20);
    env.write_config(&format!(
        "[repository]\nsink = \"{}\"\n[repository.options]\npath = \"{}\"\n\n[[source]]\nname = \"files\"\nplugin = \"filesystem\"\n[source.options]\npath = \"{}\"\n",
        wasm.display(),
        env.path("flat").display(),
        data.display()
    ));
    env.round_trip_tree(&data, "files");

    // The flat layout really is the plugin's own.
    let names: Vec<String> = std::fs::read_dir(env.path("flat"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("data%2F")), "{names:?}");

    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["plugin", "list", "--json"])).unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "flat-dir")
        .expect("listed");
    assert_eq!(entry["kind"], "sink");
    assert_eq!(entry["origin"], wasm.to_str().unwrap());
}

#[test]
fn plugin_list_shows_the_built_ins() {
    let env = Env::new();
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["plugin", "list", "--json"])).unwrap();
    let find = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("filesystem")["kind"], "source");
    assert_eq!(find("local")["kind"], "sink");
    for p in listed.as_array().unwrap() {
        assert!(
            p["version"].is_string() && p["wit_version"] == "0.1.1",
            "{p}"
        );
    }
    let inspected: serde_json::Value =
        serde_json::from_str(&env.ok(&["plugin", "inspect", "filesystem", "--json"])).unwrap();
    assert_eq!(inspected["options_schema"]["required"][0], "path");
}

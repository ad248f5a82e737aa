//! Plugins built against an earlier SDK keep loading and running in this host: the
//! prebuilt fixtures in `tests/fixtures/plugins` (see its README) back up and restore a
//! tree through the real binary, and the WIT version the host reports is the SDK's.

use cairn_e2e::{Env, generate_tree, workspace_root};

fn fixture(name: &str) -> std::path::PathBuf {
    workspace_root().join("tests/fixtures/plugins").join(name)
}

#[test]
fn plugins_built_for_wit_0_1_0_back_up_and_restore() {
    let (source, sink) = (
        fixture("source-filesystem.wit-0.1.0.wasm"),
        fixture("sink-flat-dir.wit-0.1.0.wasm"),
    );
    let env = Env::new();
    let data = env.path("data");
    generate_tree(&data, 11, 60, 3 << 20);
    env.write_config(&format!(
        "[repository]\nsink = \"{}\"\n[repository.options]\npath = \"{}\"\n\n[[source]]\nname = \"files\"\nplugin = \"{}\"\n[source.options]\npath = \"{}\"\n",
        sink.display(),
        env.path("flat").display(),
        source.display(),
        data.display()
    ));
    env.round_trip_tree(&data, "files");

    for wasm in [&source, &sink] {
        let inspected: serde_json::Value =
            serde_json::from_str(&env.ok(&["plugin", "inspect", wasm.to_str().unwrap(), "--json"]))
                .unwrap();
        assert_eq!(inspected["wit_version"], "0.1.0", "{inspected}");
    }
}

/// Every WIT file declares the version the host and the SDK implement.
#[test]
fn the_wit_the_host_and_the_sdk_agree_on_the_version() {
    assert_eq!(cairn::runtime::WIT_VERSION, cairn_sdk::WIT_VERSION);
    let dir = workspace_root().join("sdk/wit");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wit") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("package cairn:plugin@"))
            .map(|l| l.trim_end_matches(';'))
            .collect();
        assert_eq!(
            declared,
            [cairn::runtime::WIT_VERSION],
            "{} declares {declared:?}",
            path.display()
        );
    }
    assert!(files >= 10, "only {files} WIT files in {}", dir.display());
    // The one literal outside the WIT: the bindings of the shared types, generated alone.
    let api = workspace_root().join("crates/cairn-runtime/src/plugin_api/mod.rs");
    let api = std::fs::read_to_string(&api).unwrap();
    let imported: Vec<&str> = api
        .match_indices("cairn:plugin/types@")
        .map(|(at, found)| {
            let rest = &api[at + found.len()..];
            &rest[..rest.find(';').unwrap_or(rest.len())]
        })
        .collect();
    assert_eq!(imported, [cairn::runtime::WIT_VERSION], "plugin_api/mod.rs");
}

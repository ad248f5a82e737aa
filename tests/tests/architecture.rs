//! The dependency rules of docs/ARCHITECTURE.md that the compiler does not enforce:
//! which rooms of the `cairn` crate may name which, and what the repository crate may
//! depend on. Each rule reads the sources, so a new upward `use` fails here.

use std::path::{Path, PathBuf};

use cairn_e2e::workspace_root;

/// Every `.rs` file below `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The `crate::ROOM` paths a file names, outside comments.
fn rooms_named(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut rooms = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let room: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rooms.push(room);
        }
    }
    rooms
}

/// Files under `room` (a module of host/src) name none of `forbidden`.
fn assert_room_does_not_name(room: &str, forbidden: &[&str]) {
    let root = workspace_root().join("host/src");
    let files = match root.join(room) {
        dir if dir.is_dir() => sources(&dir),
        _ => vec![root.join(format!("{room}.rs"))],
    };
    for file in files {
        for named in rooms_named(&file) {
            assert!(
                !forbidden.contains(&named.as_str()),
                "{} names crate::{named}: {room} may not depend on {named} (docs/ARCHITECTURE.md)",
                file.display()
            );
        }
    }
}

#[test]
fn rooms_depend_only_downwards() {
    assert_room_does_not_name("runtime", &["config", "lifecycle", "cli"]);
    assert_room_does_not_name("config", &["lifecycle", "cli"]);
    assert_room_does_not_name("lifecycle", &["cli"]);
}

#[test]
fn the_repository_crate_needs_neither_wasmtime_nor_a_build_script() {
    let dir = workspace_root().join("crates/cairn-repo");
    assert!(
        !dir.join("build.rs").exists(),
        "cairn-repo must build without a build script"
    );
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&manifest).unwrap();
    assert!(manifest["package"].get("build").is_none());
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) {
            for name in deps.keys() {
                assert!(
                    !name.starts_with("wasmtime") && !name.starts_with("wit-") && name != "cairn",
                    "cairn-repo {section} names {name}: the repository format stays free of the plugin runtime"
                );
            }
        }
    }
}

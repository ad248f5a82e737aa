//! The dependency rules of docs/ARCHITECTURE.md that the compiler does not enforce: which
//! rooms of the `cairn` binary may name which, what the repository and runtime crates may
//! depend on, that capabilities stay apart, and that the runtime's modules import one
//! another without a cycle. Each rule reads the sources, so a new upward `use` fails here.

use std::collections::{BTreeMap, BTreeSet};
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
    out.sort();
    out
}

/// A file's code without its comments (line comments and doc comments), and without its
/// `#[cfg(test)] mod tests { .. }`, which may reach anywhere.
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let code: Vec<&str> = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect();
    let mut kept = Vec::new();
    let mut lines = code.iter().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.starts_with("mod tests"))
        {
            // Skip to the brace that closes the module (format strings' braces pair up).
            let mut depth = 0i64;
            for inner in lines.by_ref() {
                depth += inner.matches('{').count() as i64 - inner.matches('}').count() as i64;
                if depth <= 0 && inner.contains('}') {
                    break;
                }
            }
            continue;
        }
        kept.push(*line);
    }
    kept.join("\n")
}

/// The paths a file names that start with `prefix` (`crate::`), as segments.
fn paths_named(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        // `$crate::` in a macro is the crate root too; anything else before it is not ours.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let segments: Vec<String> = rest
            .split("::")
            .map(|s| {
                s.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|s| !s.is_empty())
            .collect();
        out.push(segments);
    }
    out
}

/// Files under `room` (a module of host/src) name none of `forbidden`.
fn assert_room_does_not_name(room: &str, forbidden: &[&str]) {
    let root = workspace_root().join("host/src");
    let files = match root.join(room) {
        dir if dir.is_dir() => sources(&dir),
        _ => vec![root.join(format!("{room}.rs"))],
    };
    for file in files {
        for path in paths_named(&code_of(&file), "crate::") {
            let named = path.first().map(String::as_str).unwrap_or_default();
            assert!(
                !forbidden.contains(&named),
                "{} names crate::{named}: {room} may not depend on {named} (docs/ARCHITECTURE.md)",
                file.display()
            );
        }
    }
}

#[test]
fn rooms_depend_only_downwards() {
    assert_room_does_not_name("config", &["lifecycle", "cli"]);
    assert_room_does_not_name("lifecycle", &["cli"]);
}

/// The crates a crate's manifest names, in every dependency section.
fn dependencies(manifest: &toml::Table) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) {
            out.extend(deps.keys().map(|name| (section.to_string(), name.clone())));
        }
    }
    out
}

fn manifest_of(dir: &Path) -> toml::Table {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    toml::from_str(&manifest).unwrap()
}

#[test]
fn the_repository_crate_needs_neither_wasmtime_nor_a_build_script() {
    let dir = workspace_root().join("crates/cairn-repo");
    assert!(
        !dir.join("build.rs").exists(),
        "cairn-repo must build without a build script"
    );
    let manifest = manifest_of(&dir);
    assert!(manifest["package"].get("build").is_none());
    for (section, name) in dependencies(&manifest) {
        assert!(
            !name.starts_with("wasmtime")
                && !name.starts_with("wit-")
                && !name.starts_with("cairn"),
            "cairn-repo {section} names {name}: the repository format stays free of the plugin runtime"
        );
    }
}

#[test]
fn the_runtime_crate_depends_on_the_repository_only_and_builds_no_plugin() {
    let dir = workspace_root().join("crates/cairn-runtime");
    assert!(
        !dir.join("build.rs").exists(),
        "cairn-runtime must build without a build script: the built-in plugins are the binary's"
    );
    let manifest = manifest_of(&dir);
    assert!(manifest["package"].get("build").is_none());
    for (section, name) in dependencies(&manifest) {
        assert!(
            !name.starts_with("cairn") || name == "cairn-repo",
            "cairn-runtime {section} names {name}: the runtime depends on no cairn crate but cairn-repo"
        );
    }
}

/// The runtime's modules, each as its path from the crate root (`capabilities::sqlite`),
/// with its file.
fn runtime_modules() -> BTreeMap<Vec<String>, PathBuf> {
    let src = workspace_root().join("crates/cairn-runtime/src");
    let mut modules = BTreeMap::new();
    for file in sources(&src) {
        let relative = file.strip_prefix(&src).unwrap().with_extension("");
        let mut path: Vec<String> = relative
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        if path.last().is_some_and(|s| s == "mod" || s == "lib") {
            path.pop();
        }
        modules.insert(path, file);
    }
    modules
}

/// The module of `modules` that `path` lands in: its longest prefix that is one.
fn module_of(modules: &BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains_key(prefix))
        .unwrap_or_default()
}

/// Which runtime modules each one names: through `crate::`, `super::` and `self::` paths,
/// and through `use` of its own child modules.
fn runtime_imports() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = runtime_modules();
    let mut imports = BTreeMap::new();
    for (module, file) in &modules {
        let code = code_of(file);
        // A module's path is its file's, whether the file is `name.rs` or `name/mod.rs`.
        let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
        let mut named = BTreeSet::new();
        for path in paths_named(&code, "crate::") {
            // `crate::repo` is the repository crate, under the name the runtime uses.
            if path.first().is_some_and(|s| s == "repo") {
                named.insert(vec!["repo".to_string()]);
                continue;
            }
            named.insert(module_of(&modules, &path));
        }
        for path in paths_named(&code, "super::") {
            let mut full = parent.clone();
            full.extend(path);
            named.insert(module_of(&modules, &full));
        }
        for path in paths_named(&code, "self::") {
            let mut full = module.clone();
            full.extend(path);
            named.insert(module_of(&modules, &full));
        }
        let use_lines: String = code
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with("use ") || l.starts_with("pub use "))
            .collect::<Vec<_>>()
            .join("\n");
        for path in paths_named(&use_lines, "use ") {
            let mut full = module.clone();
            full.extend(path);
            if full.len() > module.len() && modules.contains_key(&full[..module.len() + 1]) {
                named.insert(module_of(&modules, &full));
            }
        }
        named.remove(module);
        imports.insert(module.clone(), named);
    }
    imports
}

fn joined(path: &[String]) -> String {
    if path.is_empty() {
        "the crate root".to_string()
    } else {
        path.join("::")
    }
}

/// A capability is one unit: it names the shared pieces (the repository, the sandbox, the
/// WIT bindings, `bulk`'s blob, the error helpers, bounded parallelism) and never another capability, the
/// pipeline or the instances; only its `host.rs` sees the plugin's store.
#[test]
fn capabilities_do_not_reach_into_each_other() {
    let imports = runtime_imports();
    for (module, named) in &imports {
        let [first, capability, rest @ ..] = module.as_slice() else {
            continue;
        };
        if first != "capabilities" {
            continue;
        }
        let in_host = rest.first().is_some_and(|s| s == "host");
        for other in named {
            let allowed = match other.first().map(String::as_str) {
                Some("capabilities") => {
                    other.len() < 2 || other[1] == *capability || other[1] == "bulk"
                }
                Some("repo" | "sandbox" | "plugin_api" | "errors" | "parallel") => true,
                Some("state") => in_host,
                _ => false,
            };
            assert!(
                allowed,
                "{} names {}: a capability names no other capability, nor the pipeline, and \
                 only its host.rs the plugin's store (docs/ARCHITECTURE.md)",
                joined(module),
                joined(other)
            );
        }
    }
}

/// The pipeline (capture, store-ahead, replay) may use the capabilities; only its `host`
/// modules see the plugin's store.
#[test]
fn the_pipeline_sees_the_store_only_in_its_host_impls() {
    for (module, named) in runtime_imports() {
        if module.first().is_none_or(|s| s != "pipeline") {
            continue;
        }
        let in_host = module.last().is_some_and(|s| s == "host");
        for other in named {
            let first = other.first().map(String::as_str);
            assert!(
                !matches!(first, Some("source" | "sink")) && (in_host || first != Some("state")),
                "{} names {}: the pipeline is driven by the instances, not the other way",
                joined(&module),
                joined(&other)
            );
        }
    }
}

/// No two modules of the runtime import each other, directly or round a loop. The crate
/// root, which declares the modules and holds the `Runtime` the instance modules extend,
/// and the generated bindings, whose `with` table names the resource types the
/// capabilities define, are left out: everything depends on them.
#[test]
fn the_runtime_modules_import_each_other_without_a_cycle() {
    let imports = runtime_imports();
    let left_out = |m: &Vec<String>| m.is_empty() || m.first().is_some_and(|s| s == "plugin_api");
    // Depth-first search, reporting the first loop found with its path.
    fn visit(
        module: &Vec<String>,
        imports: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        left_out: &dyn Fn(&Vec<String>) -> bool,
        trail: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(at) = trail.iter().position(|m| m == module) {
            let mut cycle: Vec<String> = trail[at..].iter().map(|m| joined(m)).collect();
            cycle.push(joined(module));
            panic!(
                "import cycle in cairn-runtime: {} ({:?})",
                cycle.join(" -> "),
                imports.get(module)
            );
        }
        trail.push(module.clone());
        for next in imports.get(module).into_iter().flatten() {
            if !left_out(next) {
                visit(next, imports, left_out, trail, done);
            }
        }
        trail.pop();
        done.insert(module.clone());
    }
    let mut done = BTreeSet::new();
    for module in imports.keys().filter(|m| !left_out(m)) {
        visit(module, &imports, &left_out, &mut Vec::new(), &mut done);
    }
    assert!(done.len() > 20, "only {} modules seen", done.len());
}

//! Plugins are sandboxed: one that traps, loops forever, allocates without bound or
//! reaches outside its grants fails its own job with an error naming it, and the same
//! host process goes on to run the next job.

use cairn::config::Config;
use cairn::lifecycle::backup::{self, BackupOptions};
use cairn::lifecycle::{Session, restore};
use cairn_e2e::{Env, misbehave_plugin};

async fn run_backup(session: &Session) -> backup::BackupReport {
    backup::run(
        session,
        &BackupOptions {
            tags: vec![],
            progress: false,
        },
    )
    .await
    .unwrap()
}

fn source(name: &str, mode: &str, extra: &str) -> String {
    let wasm = misbehave_plugin();
    format!(
        "[[source]]\nname = \"{name}\"\nplugin = \"{}\"\ntimeout = \"3s\"\n[source.options]\nmode = \"{mode}\"\n{extra}\n",
        wasm.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_fail_alone_and_the_host_carries_on() {
    let env = Env::new();
    let granted = env.path("granted");
    std::fs::create_dir_all(&granted).unwrap();
    let sources = [
        source("trapping", "trap", ""),
        source("looping", "loop", ""),
        source("hoarding", "oom", ""),
        source("escape-wasi", "escape-wasi", ""),
        source(
            "escape-host",
            "escape-host",
            &format!("path = \"{}\"", granted.display()),
        ),
        source("healthy", "ok", ""),
    ]
    .concat();
    let config_path = env.local_config(&format!("[plugins]\nmemory-limit-mib = 64\n\n{sources}"));
    let session = Session::new(Config::load(&config_path).unwrap(), Some(b"pw".to_vec())).unwrap();
    session.init_repository().await.unwrap();

    let started = std::time::Instant::now();
    let report = run_backup(&session).await;
    let error = |name: &str| report.error_of(name).map(str::to_string);

    let trap = error("trapping").expect("the trapping source fails");
    assert!(trap.contains("plugin `trapping` crashed (trap)"), "{trap}");
    let looped = error("looping").expect("the looping source fails");
    assert!(
        looped.contains("plugin `looping` did not finish within 3s"),
        "{looped}"
    );
    let oom = error("hoarding").expect("the hoarding source fails");
    assert!(
        oom.contains("plugin `hoarding` exceeded its memory limit of 64 MiB"),
        "{oom}"
    );
    let wasi = error("escape-wasi").expect("reading /etc/passwd through WASI fails");
    assert!(
        wasi.contains("plugin `escape-wasi`") && wasi.contains("/etc/passwd"),
        "{wasi}"
    );
    let host = error("escape-host").expect("reading outside the grant through the host fails");
    assert!(
        host.contains("denied")
            && host.matches("outside every path granted").count() == 3
            && host.contains("store-ahead: "),
        "{host}"
    );
    assert_eq!(
        error("healthy"),
        None,
        "the healthy source in the same run succeeds"
    );
    assert!(
        started.elapsed().as_secs() < 60,
        "the deadline stopped the loop promptly: {:?}",
        started.elapsed()
    );

    // Only the healthy source was committed, and the same process restores it.
    let repo = session.open_repository().await.unwrap();
    let committed: Vec<String> = repo
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, m)| m.source)
        .collect();
    assert_eq!(committed, ["healthy"]);
    let target = env.path("restored");
    let options = restore::RestoreOptions {
        snapshot: "latest".into(),
        target: target.to_string_lossy().into(),
        source: Some("healthy".into()),
        ..Default::default()
    };
    restore::run(&session, &options)
        .await
        .expect("the next job in the same process runs fine");

    // And a second backup in the same process still works for the healthy source.
    let again = backup::run(
        &session,
        &BackupOptions {
            tags: vec![],
            progress: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        again
            .sources
            .iter()
            .find(|s| s.name == "healthy")
            .unwrap()
            .error,
        None
    );
}

#[test]
fn a_plugin_built_for_another_wit_version_is_refused() {
    let wasm = std::fs::read(misbehave_plugin()).unwrap();
    // Rewrite the package version in every import and export name (same length).
    let patched = replace_all(
        &wasm,
        b"cairn:plugin/source@0.1.1",
        b"cairn:plugin/source@0.9.0",
    );
    let patched = replace_all(&patched, b"@0.1.1", b"@0.9.0");
    let env = Env::new();
    let path = env.path("old.wasm");
    std::fs::write(&path, patched).unwrap();
    let out = env.cairn(&["plugin", "inspect", path.to_str().unwrap()]);
    let err = cairn_e2e::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cairn:plugin@0.9.0") && err.contains("cairn:plugin@0.1.1"),
        "names both versions: {err}"
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused_clearly() {
    let env = Env::new();
    let path = env.path("junk.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let out = env.cairn(&["plugin", "inspect", path.to_str().unwrap()]);
    let err = cairn_e2e::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("wasm32-wasip2"), "{err}");
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_is_denied_unless_the_config_grants_the_host() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        // Serve whoever gets through; the test ends the loop by dropping the listener.
        for stream in listener.incoming().take(1) {
            let _ = std::io::Write::write_all(&mut stream.unwrap(), b"hello over loopback");
        }
    });
    let env = Env::new();
    let wasm = misbehave_plugin();
    let source = |name: &str, grants: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\nplugin = \"{}\"\ntimeout = \"10s\"\n[source.options]\nmode = \"connect\"\naddr = \"{addr}\"\n{grants}\n",
            wasm.display()
        )
    };
    let other_port = format!(
        "[source.grants]\nhosts = [\"127.0.0.1:{}\"]",
        addr.port().wrapping_add(1).max(1)
    );
    let config = env.local_config(
        &[
            source("ungranted", ""),
            source("wrong-port", &other_port),
            source(
                "granted",
                &format!("[source.grants]\nhosts = [\"127.0.0.1:{}\"]", addr.port()),
            ),
        ]
        .concat(),
    );
    let session = Session::new(Config::load(&config).unwrap(), Some(b"pw".to_vec())).unwrap();
    session.init_repository().await.unwrap();
    let report = run_backup(&session).await;
    let error = |name: &str| report.error_of(name).map(str::to_string);
    let denied = error("ungranted").expect("no network without a grant");
    assert!(
        denied.contains(&format!("connecting to {addr}")),
        "{denied}"
    );
    assert!(
        error("wrong-port").is_some(),
        "a grant for another port does not open this one"
    );
    assert_eq!(error("granted"), None, "the granted host is reachable");
    server.join().unwrap();

    let repo = session.open_repository().await.unwrap();
    let manifests = repo.snapshots().await.unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0].1.bytes, b"hello over loopback".len() as u64);
}

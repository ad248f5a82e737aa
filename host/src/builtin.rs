//! The plugins compiled into the binary (by `host/build.rs`, for wasm32-wasip2). They load
//! through exactly the same path as a third-party `.wasm` file.

use crate::runtime::{Builtin, PluginKind, RuntimeOptions};

const S3_SINK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/cairn_sink_s3.wasm"));

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "filesystem",
        kind: PluginKind::Source,
        wasm: include_bytes!(concat!(
            env!("OUT_DIR"),
            "/plugins/cairn_source_filesystem.wasm"
        )),
        provider: None,
    },
    Builtin {
        name: "sqlite",
        kind: PluginKind::Source,
        wasm: include_bytes!(concat!(
            env!("OUT_DIR"),
            "/plugins/cairn_source_sqlite.wasm"
        )),
        provider: None,
    },
    Builtin {
        name: "postgres",
        kind: PluginKind::Source,
        wasm: include_bytes!(concat!(
            env!("OUT_DIR"),
            "/plugins/cairn_source_postgres.wasm"
        )),
        provider: None,
    },
    Builtin {
        name: "local",
        kind: PluginKind::Sink,
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/plugins/cairn_sink_local.wasm")),
        provider: None,
    },
    Builtin {
        name: "s3",
        kind: PluginKind::Sink,
        wasm: S3_SINK,
        provider: Some("s3"),
    },
    Builtin {
        name: "r2",
        kind: PluginKind::Sink,
        wasm: S3_SINK,
        provider: Some("r2"),
    },
    Builtin {
        name: "b2",
        kind: PluginKind::Sink,
        wasm: S3_SINK,
        provider: Some("b2"),
    },
];

/// The runtime's options with this binary's built-ins in its catalog.
pub fn runtime_options() -> RuntimeOptions {
    RuntimeOptions {
        builtins: BUILTINS,
        ..RuntimeOptions::default()
    }
}

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Whether a plugin spec from a config names a `.wasm` file rather than a built-in.
pub fn is_path(spec: &str) -> bool {
    find(spec).is_none() && crate::runtime::looks_like_path(spec)
}

pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

//! Host-side bindings generated from `sdk/wit/`. The `types` interface is generated on its
//! own, with nothing mapped into it, so capability and pipeline state can name a plugin
//! error or an item's metadata without depending on the worlds; the worlds map their
//! resources onto that state. The sink world reuses the source world's shared interfaces,
//! so a blob or an error is one Rust type throughout the host.

pub mod version;

/// The `types` interface alone: a leaf, depending on no other module of the runtime. (The
/// version here must be `WIT_VERSION`; tests/tests/compat.rs checks it.)
mod leaf {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        inline: "package cairn:host-types; world types { import cairn:plugin/types@0.1.1; }",
    });
}

pub use leaf::cairn::plugin::types;

pub mod source {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "source-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:plugin/types": super::types,
            "cairn:plugin/bulk.blob": crate::capabilities::bulk::Blob,
            "cairn:plugin/backup-io.item-writer": crate::pipeline::capture::ItemWriter,
            "cairn:plugin/backup-io.item-stream": crate::pipeline::capture::ItemStream,
            "cairn:plugin/backup-io.store-ahead": crate::pipeline::store_ahead::StoreAhead,
            "cairn:plugin/restore-io.item-reader": crate::pipeline::replay::ItemReader,
            "cairn:plugin/sqlite.database": crate::capabilities::sqlite::Database,
            "cairn:plugin/sqlite.follower": crate::capabilities::sqlite::Followed,
            "cairn:plugin/postgres.connection": crate::capabilities::postgres::Connection,
            "cairn:plugin/postgres.copy-out": crate::capabilities::postgres::CopyOut,
        },
    });
}

/// The source world with continuous capture: the same imports (mapped onto the source
/// world's, so a blob is one type) plus `change-io`, and the `change-stream` export.
pub mod following {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "following-source-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:plugin/types": super::types,
            "cairn:plugin/bulk": super::source::cairn::plugin::bulk,
            "cairn:plugin/host": super::source::cairn::plugin::host,
            "cairn:plugin/files": super::source::cairn::plugin::files,
            "cairn:plugin/sqlite": super::source::cairn::plugin::sqlite,
            "cairn:plugin/postgres": super::source::cairn::plugin::postgres,
            "cairn:plugin/backup-io": super::source::cairn::plugin::backup_io,
            "cairn:plugin/restore-io": super::source::cairn::plugin::restore_io,
            "cairn:plugin/change-io.change-writer": crate::pipeline::follow::ChangeWriter,
            "cairn:plugin/change-io.change-reader": crate::pipeline::follow::ChangeReader,
        },
    });
}

pub mod sink {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "sink-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:plugin/types": super::types,
            "cairn:plugin/bulk": super::source::cairn::plugin::bulk,
            "cairn:plugin/host": super::source::cairn::plugin::host,
            "cairn:plugin/files": super::source::cairn::plugin::files,
            "cairn:plugin/object-store.bucket": crate::capabilities::object_store::Bucket,
        },
    });
}

pub use following::cairn::plugin::change_io;
pub use sink::cairn::plugin::object_store;
pub use source::cairn::plugin::{backup_io, bulk, files, host, postgres, restore_io, sqlite};
pub use types::{
    ItemKind, ItemMeta, PluginError, PluginInfo, PluginKind, RestoreTarget, VerifyReport,
};

/// A plugin error as a person reads it (the generated `Display` is the debug form).
pub fn describe(error: &PluginError) -> String {
    match error {
        PluginError::Config(c) if c.field.is_empty() => {
            format!("invalid options: {} (fix it in the config file)", c.message)
        }
        PluginError::Config(c) => format!(
            "option `{}`: {} (fix it in the config file)",
            c.field, c.message
        ),
        PluginError::Retryable(m) => format!("{m} (temporary; retries did not help)"),
        PluginError::Permanent(m) => m.clone(),
        PluginError::NotFound(m) => format!("not found: {m}"),
        PluginError::AlreadyExists(m) => format!("already exists: {m}"),
        PluginError::Denied(m) => format!("denied: {m}"),
    }
}

// Generated with the worlds, `PluginError` had these from bindgen, as the error of their
// functions; generated alone it has none. The same forms as before: `describe` is the one
// a person reads.
impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for PluginError {}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Source => "source",
            PluginKind::Sink => "sink",
        })
    }
}

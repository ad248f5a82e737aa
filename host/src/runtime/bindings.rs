//! Host-side bindings generated from `sdk/wit/`, one module a world. The sink world reuses the
//! source world's types, so a blob or an error is one Rust type throughout the host.

pub mod source {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "source-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:plugin/bulk.blob": crate::runtime::blob::Blob,
            "cairn:plugin/backup-io.item-writer": crate::runtime::capture::ItemWriter,
            "cairn:plugin/backup-io.item-stream": crate::runtime::capture::ItemStream,
            "cairn:plugin/backup-io.store-ahead": crate::runtime::store_ahead::StoreAhead,
            "cairn:plugin/restore-io.item-reader": crate::runtime::replay::ItemReader,
            "cairn:plugin/sqlite.database": crate::runtime::sqlite::Database,
            "cairn:plugin/postgres.connection": crate::runtime::postgres::Connection,
            "cairn:plugin/postgres.copy-out": crate::runtime::postgres::CopyOut,
        },
    });
}

pub mod sink {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "sink-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:plugin/types": super::source::cairn::plugin::types,
            "cairn:plugin/bulk": super::source::cairn::plugin::bulk,
            "cairn:plugin/host": super::source::cairn::plugin::host,
            "cairn:plugin/files": super::source::cairn::plugin::files,
            "cairn:plugin/object-store.bucket": crate::runtime::s3::Bucket,
        },
    });
}

pub use source::cairn::plugin::types::{
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

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Source => "source",
            PluginKind::Sink => "sink",
        })
    }
}

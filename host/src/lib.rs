//! cairn: a backup engine whose sources and sinks are WASM component plugins.
//!
//! - [`runtime`]: the wasmtime host that loads and sandboxes plugins.
//! - [`builtin`]: the plugins compiled into this binary.
//! - [`repo`]: the repository format (chunking, deduplication, encryption, packs).
//! - [`lifecycle`]: backup, restore, check and verify, driving plugins and repository.
//! - [`config`]: the TOML configuration.
//! - [`cli`]: the `cairn` command line.

pub mod builtin;
pub mod cli;
pub mod config;
pub mod lifecycle;

/// The plugin host lives in its own crate, `cairn-runtime`.
pub use cairn_runtime as runtime;

/// The repository format and maintenance live in their own crate, `cairn-repo`.
pub use cairn_repo as repo;

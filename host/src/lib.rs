//! cairn: a backup engine whose sources and sinks are WASM component plugins.
//!
//! - [`runtime`]: the wasmtime host that loads and sandboxes plugins.
//! - [`repo`]: the repository format (chunking, deduplication, encryption, packs).
//! - [`lifecycle`]: backup, restore, check and verify, driving plugins and repository.
//! - [`config`]: the TOML configuration.
//! - [`cli`]: the `cairn` command line.

pub mod cli;
pub mod config;
pub mod lifecycle;
pub mod runtime;

/// The repository format and maintenance live in their own crate, `cairn-repo`.
pub use cairn_repo as repo;

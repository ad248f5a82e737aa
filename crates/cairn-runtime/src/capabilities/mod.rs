//! The host capabilities a plugin calls, one module an interface of `sdk/wit/`: its state
//! (the resources it hands out, and what the host keeps for them) in `mod.rs`, its `Host`
//! impl on the plugin's store in `host.rs`.
//!
//! A capability depends on the repository format, the sandbox, the shared WIT types and
//! `bulk` (the blob every interface passes bytes in), never on another capability or on
//! the pipeline. What one needs of a backup in progress (SQLite taking over a store-ahead)
//! it names as a trait of its own, which the pipeline implements.

pub mod bulk;
pub mod files;
pub mod host;
pub mod object_store;
pub mod postgres;
pub mod sqlite;

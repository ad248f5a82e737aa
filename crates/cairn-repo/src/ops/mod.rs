//! Maintenance that takes a repository and a policy, never the config: retention.

pub mod retention;

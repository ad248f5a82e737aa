//! Maintenance that takes a repository and a policy, never the config: retention (which
//! snapshots a policy keeps), forget (removing the others), prune (collecting the data no
//! snapshot needs) and check (proving every stored byte readable).

pub mod check;
pub mod forget;
pub mod prune;
pub mod retention;

#[cfg(test)]
mod tests;

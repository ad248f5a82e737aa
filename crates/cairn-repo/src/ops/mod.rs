//! Maintenance that takes a repository and a policy, never the config: retention (which
//! snapshots a policy keeps), forget (removing the others), prune (collecting the data no
//! snapshot needs), check (proving every stored byte readable) and repair (making a damaged
//! repository readable again, saving what is intact).

pub mod check;
pub mod forget;
pub mod prune;
pub mod repair;
pub mod retention;

#[cfg(test)]
mod tests;

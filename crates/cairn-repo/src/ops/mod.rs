//! Maintenance that takes a repository and a policy, never the config: retention (which
//! snapshots a policy keeps), forget (removing the others), prune (collecting the data no
//! snapshot needs), check (proving every stored byte readable), repair (making a damaged
//! repository readable again, saving what is intact) and adoption (indexing what a killed
//! backup left, for the next one to reuse).

pub mod adopt;
pub mod check;
pub mod forget;
pub mod prune;
pub mod repair;
pub mod retention;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::pack::PackId;
use crate::{RepoResult, Repository};

/// The packs storage holds, with their sizes (objects under `data/` that are not named
/// like packs are left out).
async fn stored_packs(repo: &Repository) -> RepoResult<HashMap<PackId, u64>> {
    Ok(repo
        .backend()
        .list("data/")
        .await?
        .into_iter()
        .filter_map(|(name, size)| Some((PackId::from_hex(name.rsplit('/').next()?).ok()?, size)))
        .collect())
}

//! Prune markers: what the first phase of a prune condemned (`prune/<random id>`, sealed).
//! A condemned pack is deleted by a later prune, once the grace period has passed and only
//! if no snapshot written meanwhile needs it; backups never reuse chunks of condemned
//! packs, so nothing new comes to depend on them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneMarker {
    pub version: u32,
    /// When the packs were condemned; they may go once the grace period has passed.
    pub time: DateTime<Utc>,
    /// Hex ids of the condemned packs.
    pub packs: Vec<String>,
}

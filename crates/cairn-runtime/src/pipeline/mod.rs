//! What a plugin drives during a backup or a restore: the capture session that turns its
//! items into chunks, records and a snapshot tree (with store-ahead of live files), and
//! the replay session that hands a snapshot's items back, and the change chain a
//! following source writes between snapshots and a point-in-time restore reads.

pub mod capture;
pub mod follow;
pub mod replay;
pub mod store_ahead;

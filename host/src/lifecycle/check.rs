//! `cairn check`: the repository's own check (`cairn_repo::ops::check`), reading storage
//! directly (never the local cache), with a progress line.

use anyhow::Result;

use super::Session;
use super::progress::Progress;
use crate::repo::ops::check;

pub use check::{CheckReport, Problem};

pub struct CheckOptions {
    pub read_data: bool,
    /// Percentage of packs to read with `read_data` (100 for all).
    pub subset_percent: f64,
    pub progress: bool,
}

pub async fn run(session: &Session, options: &CheckOptions) -> Result<CheckReport> {
    let repo = session.open_repository().await?;
    let progress = Progress::new(options.progress);
    let checked = check::run(
        &repo,
        &check::CheckOptions {
            read_data: options.read_data,
            subset_percent: options.subset_percent,
        },
        &|phase| progress.set(phase),
    )
    .await;
    progress.finish();
    Ok(checked?)
}

//! `cairn init`: create a repository at the configured sink.

use anyhow::Result;
use serde::Serialize;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;

#[derive(Serialize)]
pub struct Initialised {
    id: String,
    initialised: String,
}

impl Report for Initialised {
    fn text(&self) -> String {
        format!(
            "created repository {} in the {}",
            &self.id[..8],
            self.initialised
        )
    }
}

pub async fn run(cli: &Cli) -> Result<Initialised> {
    let repo = session(cli)?.init_repository().await?;
    Ok(Initialised {
        id: repo.config().id.clone(),
        initialised: repo.backend().describe(),
    })
}

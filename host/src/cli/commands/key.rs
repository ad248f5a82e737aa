//! `cairn key`: the repository's passwords, one key slot each.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::Serialize;

use super::{password, session};
use crate::cli::Cli;
use crate::cli::report::Report;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a password; the new one is read from --new-password-file or $CAIRN_NEW_PASSWORD.
    Add {
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<std::path::PathBuf>,
    },
    /// List key slots.
    List,
    /// Remove a key slot (not the one the current password opens).
    Remove {
        /// The slot id, as `cairn key list` shows it.
        id: String,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum KeyReport {
    Added {
        added: String,
    },
    Listed(Vec<ListedKey>),
    Removed {
        removed: String,
        /// The id as the user gave it (a prefix, perhaps).
        #[serde(skip)]
        asked: String,
    },
}

#[derive(Serialize)]
pub struct ListedKey {
    created: Option<chrono::DateTime<chrono::Utc>>,
    current: bool,
    hostname: Option<String>,
    id: String,
    username: Option<String>,
    /// Why the slot cannot be used (it opens with no password); `key remove` removes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    damaged: Option<String>,
}

pub async fn run(cli: &Cli, cmd: &KeyCommand) -> Result<KeyReport> {
    let repo = session(cli)?.open_repository().await?;
    Ok(match cmd {
        KeyCommand::Add { new_password_file } => {
            let new = password(new_password_file.as_deref(), "CAIRN_NEW_PASSWORD")?.context(
                "no new password: pass --new-password-file FILE or set CAIRN_NEW_PASSWORD",
            )?;
            if new.is_empty() {
                bail!("the new password is empty");
            }
            let name = repo.add_key(&new).await?;
            KeyReport::Added {
                added: name.trim_start_matches("keys/").to_string(),
            }
        }
        KeyCommand::List => {
            let slots = repo.key_slots().await?;
            KeyReport::Listed(
                slots
                    .into_iter()
                    .map(|(name, slot)| {
                        let current = name == repo.unlocked_slot();
                        let id = name.trim_start_matches("keys/").to_string();
                        match slot {
                            Ok(slot) => ListedKey {
                                current,
                                id,
                                created: Some(slot.created),
                                hostname: Some(slot.hostname),
                                username: Some(slot.username),
                                damaged: None,
                            },
                            Err(e) => ListedKey {
                                current,
                                id,
                                created: None,
                                hostname: None,
                                username: None,
                                damaged: Some(e.to_string()),
                            },
                        }
                    })
                    .collect(),
            )
        }
        KeyCommand::Remove { id } => {
            let slots = repo.key_slots().await?;
            let matching: Vec<_> = slots
                .iter()
                .filter(|(name, _)| name.trim_start_matches("keys/").starts_with(id.as_str()))
                .collect();
            let (name, _) = match matching.as_slice() {
                [one] => *one,
                [] => bail!("no key slot {id}"),
                _ => bail!("key id {id} is ambiguous"),
            };
            if name == repo.unlocked_slot() {
                bail!(
                    "refusing to remove the key slot the current password opens: open with another password to remove it"
                );
            }
            repo.backend().delete(name).await?;
            KeyReport::Removed {
                removed: name.trim_start_matches("keys/").to_string(),
                asked: id.clone(),
            }
        }
    })
}

impl Report for KeyReport {
    fn text(&self) -> String {
        match self {
            KeyReport::Added { added } => {
                format!("added key {}", added.get(..8).unwrap_or(added))
            }
            KeyReport::Listed(keys) => keys
                .iter()
                .map(|k| {
                    let mark = if k.current { "*" } else { " " };
                    let id = k.id.get(..8).unwrap_or(&k.id);
                    match (&k.damaged, k.created, &k.username, &k.hostname) {
                        (None, Some(created), Some(user), Some(host)) => format!(
                            "{mark} {id}  {}  {user}@{host}",
                            created.format("%Y-%m-%d %H:%M")
                        ),
                        (damaged, ..) => format!(
                            "{mark} {id}  DAMAGED: {}; `cairn key remove {id}` removes it",
                            damaged.as_deref().unwrap_or("unreadable")
                        ),
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
            KeyReport::Removed { asked, .. } => format!("removed key {asked}"),
        }
    }
}

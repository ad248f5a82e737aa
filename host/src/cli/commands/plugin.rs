//! `cairn plugin`: the plugins cairn can run, and what one of them is.

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;

use crate::builtin;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::config::Config;
use crate::runtime::{Origin, PluginKind, Runtime, WIT_VERSION};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Built-in plugins and those the config names.
    List,
    /// A plugin's info and options schema.
    Inspect {
        /// A built-in name or a path to a .wasm file.
        plugin: String,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum PluginReport {
    Listed(Vec<ListedPlugin>),
    Inspected(Box<Inspected>),
}

#[derive(Serialize)]
pub struct ListedPlugin {
    name: String,
    kind: String,
    version: String,
    wit_version: String,
    origin: String,
    description: String,
}

/// One plugin's info; fields in the order `--json` has always printed them.
#[derive(Serialize)]
pub struct Inspected {
    description: String,
    host_wit_version: &'static str,
    kind: String,
    name: String,
    options_schema: serde_json::Value,
    origin: String,
    /// Of a source: what its restores write to (a directory, a file, a server).
    restore_target: Option<String>,
    version: String,
    wit_version: String,
    /// Where it came from, as a person reads it.
    #[serde(skip)]
    from: String,
}

pub async fn run(cli: &Cli, cmd: &PluginCommand) -> Result<PluginReport> {
    let runtime = Runtime::new(builtin::runtime_options())?;
    Ok(match cmd {
        PluginCommand::List => {
            let mut specs: Vec<String> = builtin::names().into_iter().map(String::from).collect();
            // Third-party plugins the config names, if there is a config.
            if let Ok(config) = Config::load(&cli.global.config) {
                specs.extend(
                    config
                        .plugin_specs()
                        .into_iter()
                        .filter(|s| builtin::find(s).is_none()),
                );
            }
            let mut listed = Vec::new();
            for spec in specs {
                let plugin = runtime.load(&spec)?;
                let info = runtime.describe(&plugin).await?;
                listed.push(ListedPlugin {
                    // A built-in preset (`r2`) is listed under its own name.
                    name: if builtin::find(&spec).is_some() {
                        spec.clone()
                    } else {
                        info.name
                    },
                    kind: plugin.kind.to_string(),
                    version: info.version,
                    wit_version: plugin.wit_version.clone(),
                    origin: plugin.origin.to_string(),
                    description: info.description,
                });
            }
            PluginReport::Listed(listed)
        }
        PluginCommand::Inspect { plugin } => {
            let loaded = runtime.load(plugin)?;
            let info = runtime.describe(&loaded).await?;
            let schema: serde_json::Value = serde_json::from_str(&info.options_schema)
                .unwrap_or(serde_json::Value::String(info.options_schema.clone()));
            let restore_target = (loaded.kind == PluginKind::Source)
                .then(|| format!("{:?}", info.restore_target).to_lowercase());
            PluginReport::Inspected(Box::new(Inspected {
                description: info.description,
                host_wit_version: WIT_VERSION,
                kind: loaded.kind.to_string(),
                name: info.name,
                options_schema: schema,
                origin: loaded.origin.to_string(),
                restore_target,
                version: info.version,
                wit_version: loaded.wit_version.clone(),
                from: match &loaded.origin {
                    Origin::Builtin => "built-in".to_string(),
                    Origin::File(p) => p.display().to_string(),
                },
            }))
        }
    })
}

impl Report for PluginReport {
    fn text(&self) -> String {
        match self {
            PluginReport::Listed(listed) => {
                let mut lines = vec![format!(
                    "{:<14} {:<7} {:<9} {:<6} origin",
                    "name", "kind", "version", "wit"
                )];
                for p in listed {
                    lines.push(format!(
                        "{:<14} {:<7} {:<9} {:<6} {}",
                        p.name, p.kind, p.version, p.wit_version, p.origin
                    ));
                }
                lines.join("\n")
            }
            PluginReport::Inspected(p) => format!(
                "{} {} ({} plugin, WIT {}, {})\n{}\n\noptions schema:\n{}",
                p.name,
                p.version,
                p.kind,
                p.wit_version,
                p.from,
                p.description,
                serde_json::to_string_pretty(&p.options_schema).unwrap_or_default()
            ),
        }
    }
}

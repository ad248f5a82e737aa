//! What a plugin says about itself.

use crate::RestoreTarget;

/// A plugin's name, version and options schema, shown by `cairn plugin list|inspect`.
#[derive(Debug, Clone)]
pub struct Info {
    /// The name configs use to refer to the plugin (`plugin = "name"`).
    pub name: &'static str,
    /// Usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    pub description: &'static str,
    /// A JSON Schema of the options object.
    pub options_schema: &'static str,
    /// Sources only: what `restore` takes as its target.
    pub restore_target: RestoreTarget,
}

impl Info {
    pub(crate) fn into_wit(
        self,
        kind: crate::bindings::cairn::plugin::types::PluginKind,
    ) -> crate::bindings::cairn::plugin::types::PluginInfo {
        crate::bindings::cairn::plugin::types::PluginInfo {
            name: self.name.to_string(),
            version: self.version.to_string(),
            kind,
            description: self.description.to_string(),
            options_schema: self.options_schema.to_string(),
            restore_target: self.restore_target,
        }
    }
}

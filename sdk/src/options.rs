//! Parsing a plugin's options (a JSON object) into the author's type, with errors that
//! name the offending field.

use serde::de::DeserializeOwned;

/// An option that did not parse: `field` is a dotted path such as `probes.2` (empty for
/// the options object itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "option `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for OptionsError {}

/// Parses `json` into `T`. Add `#[serde(deny_unknown_fields)]` to `T` so that a
/// misspelled option is an error rather than silently ignored.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, OptionsError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = dotted(&err.path().to_string());
        let message = err.inner().to_string();
        // serde reports a missing field at the level of the object that lacks it.
        let field = match missing_field_name(&message) {
            Some(name) if path.is_empty() => name.to_string(),
            Some(name) => format!("{path}.{name}"),
            None => path,
        };
        OptionsError {
            field,
            message: strip_position(&message),
        }
    })
}

fn dotted(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    path.replace('[', ".").replace(']', "")
}

fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// serde_json appends " at line L column C" of the generated JSON, which means nothing to
/// someone reading a TOML file.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Opts {
        path: String,
        #[serde(default)]
        probes: Vec<String>,
        nested: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        level: u32,
    }

    #[test]
    fn missing_field_is_named() {
        let err = parse::<Opts>("{}").unwrap_err();
        assert_eq!(err.field, "path");
        assert!(err.message.contains("missing field"), "{err}");
    }

    #[test]
    fn wrong_type_names_nested_path() {
        let err = parse::<Opts>(r#"{"path":"/x","probes":["a",3]}"#).unwrap_err();
        assert_eq!(err.field, "probes.1");
        let err = parse::<Opts>(r#"{"path":"/x","nested":{"level":"high"}}"#).unwrap_err();
        assert_eq!(err.field, "nested.level");
        assert!(!err.message.contains("line"), "{err}");
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse::<Opts>(r#"{"path":"/x","pathh":"/y"}"#).unwrap_err();
        assert_eq!(err.field, "pathh");
        assert!(err.message.contains("unknown field"), "{err}");
    }
}

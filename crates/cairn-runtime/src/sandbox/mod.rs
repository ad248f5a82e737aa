//! The sandbox policy of a plugin instance, in one place: what its grants allow
//! ([`grants`]), the network allow-list its sockets are checked against ([`network`]), the
//! one walk of an options schema for `x-cairn-grant` marks ([`granted_options`]), and the
//! one parser of `host[:port]` entries ([`HostPort`]) that every door (sockets, PostgreSQL,
//! object storage) compares against.

pub mod grants;
pub mod network;

use std::path::Path;

use grants::Grants;

/// What an option marked with `x-cairn-grant` grants: its path read-only (`read`, and any
/// other value), read-write (`write`), or the host of its URL (`connect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantMode {
    Read,
    Write,
    Connect,
}

/// The options a plugin's JSON Schema marks with `x-cairn-grant`, with what each grants.
/// The one reading of that mark: grants and the config's relative-path resolution both
/// come from here.
pub fn granted_options(schema: &str) -> Vec<(String, GrantMode)> {
    let Ok(serde_json::Value::Object(schema)) = serde_json::from_str::<serde_json::Value>(schema)
    else {
        return Vec::new();
    };
    let Some(serde_json::Value::Object(props)) = schema.get("properties") else {
        return Vec::new();
    };
    props
        .iter()
        .filter_map(|(key, prop)| {
            let mode = match prop.get("x-cairn-grant")?.as_str()? {
                "write" => GrantMode::Write,
                "connect" => GrantMode::Connect,
                _ => GrantMode::Read,
            };
            Some((key.clone(), mode))
        })
        .collect()
}

/// Grants for a plugin: paths its options schema marks with `x-cairn-grant`, secret
/// references found anywhere in its options, and what the config adds explicitly.
pub fn grants_from_options(schema: &str, options: &serde_json::Value, extra: &Grants) -> Grants {
    let mut grants = extra.clone();
    for (key, mode) in granted_options(schema) {
        let values: Vec<&str> = match options.get(&key) {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str()).collect()
            }
            _ => continue,
        };
        if mode == GrantMode::Connect {
            grants
                .hosts
                .extend(values.into_iter().filter_map(url_authority));
            continue;
        }
        for value in values.into_iter().map(glob_root) {
            if Path::new(value).is_absolute() {
                match mode {
                    GrantMode::Write => grants.write(value),
                    _ => grants.read(value),
                };
            }
        }
    }
    collect_secret_refs(options, &mut grants.secrets);
    grants
}

/// `host:port` (or `host`) of a URL option marked `"x-cairn-grant": "connect"`.
pub fn url_authority(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    (!authority.is_empty()).then(|| authority.to_string())
}

/// A path option may be a glob (`/srv/tenants/*.db`): the grant is the directory above its
/// first wildcard component.
fn glob_root(path: &str) -> &str {
    match path.find(['*', '?', '[']) {
        Some(at) => match path[..at].rfind('/') {
            Some(0) => "/",
            Some(slash) => &path[..slash],
            None => path,
        },
        None => path,
    }
}

fn collect_secret_refs(value: &serde_json::Value, out: &mut std::collections::HashSet<String>) {
    match value {
        serde_json::Value::String(s) if s.starts_with("env:") || s.starts_with("file:") => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_secret_refs(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_secret_refs(v, out)),
        _ => {}
    }
}

/// A granted network destination: a host name or address, and a port unless any port is
/// allowed. Spelled `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl HostPort {
    pub fn parse(entry: &str) -> HostPort {
        let (host, port) = split_host_port(entry);
        HostPort {
            host: host.to_string(),
            port,
        }
    }

    /// Whether this grant covers `host` (compared by name, as the URL spells it) at `port`.
    pub fn covers(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.host == host && self.port.is_none_or(|p| p == port)
    }
}

/// Whether any of the `granted` entries covers `host` at `port`.
pub fn host_granted(granted: &[String], host: &str, port: u16) -> bool {
    granted
        .iter()
        .any(|g| HostPort::parse(g).covers(host, port))
}

fn split_host_port(entry: &str) -> (&str, Option<u16>) {
    // `[::1]:5432`, `db.internal:5432`, `10.0.0.7`, `::1`
    if let Some(rest) = entry.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
    {
        return (host, port.parse().ok());
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry.trim_start_matches('[').trim_end_matches(']'), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_option_grants_the_directory_above_its_wildcard() {
        assert_eq!(glob_root("/srv/tenants/*.db"), "/srv/tenants");
        assert_eq!(glob_root("/srv/*/app.db"), "/srv");
        assert_eq!(glob_root("/*.db"), "/");
        assert_eq!(glob_root("/srv/app.db"), "/srv/app.db");
        let schema = r#"{"properties": {"path": {"x-cairn-grant": "read"}}}"#;
        let options = serde_json::json!({"path": "/srv/tenants/*.db", "key": "env:KEY"});
        let grants = grants_from_options(schema, &options, &Grants::default());
        assert_eq!(grants.paths[0].path, Path::new("/srv/tenants"));
        assert!(!grants.paths[0].write);
        assert!(grants.secrets.contains("env:KEY"));
    }

    #[test]
    fn a_connect_option_grants_its_host_and_port() {
        assert_eq!(
            url_authority("http://127.0.0.1:9000/x").as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(
            url_authority("postgres://u:p@db.lan/app").as_deref(),
            Some("db.lan")
        );
        assert_eq!(url_authority("no-scheme"), None);
        let schema = r#"{"properties": {"endpoint": {"x-cairn-grant": "connect"}}}"#;
        let options = serde_json::json!({"endpoint": "https://minio.lan:9000"});
        let grants = grants_from_options(schema, &options, &Grants::default());
        assert_eq!(grants.hosts, ["minio.lan:9000"]);
        assert!(grants.paths.is_empty());
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("db:5432"), ("db", Some(5432)));
        assert_eq!(split_host_port("db"), ("db", None));
        assert_eq!(split_host_port("[::1]:5432"), ("::1", Some(5432)));
        assert_eq!(split_host_port("::1"), ("::1", None));
    }

    #[test]
    fn a_grant_covers_its_host_at_its_port_or_any() {
        let granted = [
            "127.0.0.1:5433".to_string(),
            "db.lan".into(),
            "[::1]:80".into(),
        ];
        assert!(host_granted(&granted, "127.0.0.1", 5433));
        assert!(!host_granted(&granted, "127.0.0.1", 5432));
        assert!(host_granted(&granted, "db.lan", 1));
        assert!(host_granted(&granted, "[::1]", 80));
        assert!(host_granted(&granted, "::1", 80));
        assert!(!host_granted(&granted, "::1", 81));
        assert!(!host_granted(&granted, "db.lan.evil", 1));
    }

    mod damaged {
        use proptest::prelude::*;

        use super::*;
        use crate::repo::fuzz::damaged;

        const SCHEMA: &str = r#"{"type": "object", "properties": {"path": {"type": "string", "x-cairn-grant": "read"}, "out": {"x-cairn-grant": "write"}, "exclude": {"type": "array"}}}"#;

        proptest! {
            /// What a plugin says about its options (its schema) and what the user gives
            /// it are read without panicking, whatever they hold.
            #[test]
            fn plugin_schemas_and_options_of_any_shape_are_read(
                schema in damaged(SCHEMA.as_bytes().to_vec()),
                options in damaged(br#"{"path": "/srv/*/app.db", "out": "rel/../x", "key": "env:K"}"#.to_vec()),
                url in damaged(b"postgres://user:pw@[::1]:5432/app?sslmode=require".to_vec()),
            ) {
                let schema = String::from_utf8_lossy(&schema);
                let _ = granted_options(&schema);
                if let Ok(options) = serde_json::from_slice::<serde_json::Value>(&options) {
                    let _ = grants_from_options(&schema, &options, &Grants::default());
                }
                let _ = url_authority(&String::from_utf8_lossy(&url));
            }
        }
    }
}

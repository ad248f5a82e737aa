//! Just enough of libpq's URL form (`postgres://user:pw@host:port/database?params`) to
//! check it and to name another database on the same server.

/// Checks that `url` is a PostgreSQL URL naming a database.
pub fn check(url: &str) -> Result<(), String> {
    database(url).map(drop)
}

/// The database a URL names (percent-decoded).
pub fn database(url: &str) -> Result<String, String> {
    let (_, path, _) = split(url)?;
    let name = decode(path);
    if name.is_empty() {
        return Err(format!(
            "`{}` names no database: use postgres://user@host:port/database",
            redacted(url)
        ));
    }
    Ok(name)
}

/// The same URL naming `database` instead.
pub fn with_database(url: &str, database: &str) -> cairn_sdk::Result<String> {
    let (head, _, query) = split(url).map_err(|m| cairn_sdk::PluginError::config("scratch", m))?;
    Ok(format!("{head}/{}{query}", encode(database)))
}

/// Whether the URL carries a password (`user:password@`).
pub fn has_password(url: &str) -> bool {
    split(url)
        .ok()
        .and_then(|(head, _, _)| head.split_once("://").map(|(_, a)| a.to_string()))
        .and_then(|authority| {
            authority
                .rsplit_once('@')
                .map(|(user, _)| user.contains(':'))
        })
        .unwrap_or(false)
}

/// `scheme://authority`, the path without its `/`, and `?query` (or "").
fn split(url: &str) -> Result<(&str, &str, &str), String> {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Err(format!(
            "`{}` is not a PostgreSQL URL: use postgres://user@host:port/database",
            redacted(url)
        ));
    };
    let scheme_len = url.len() - rest.len();
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let head = &url[..scheme_len + authority_end];
    let after = &rest[authority_end..];
    let (path, query) = match after.find('?') {
        Some(q) => (&after[..q], &after[q..]),
        None => (after, ""),
    };
    Ok((head, path.trim_start_matches('/'), query))
}

fn redacted(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_and_swaps() {
        assert_eq!(database("postgres://u@h:5432/app").unwrap(), "app");
        assert_eq!(
            database("postgresql://h/my%20db?sslmode=disable").unwrap(),
            "my db"
        );
        assert!(database("postgres://u@h:5432").is_err());
        assert!(database("mysql://h/app").is_err());
        assert_eq!(
            with_database("postgres://u@h:5432/app?sslmode=disable", "postgres").unwrap(),
            "postgres://u@h:5432/postgres?sslmode=disable"
        );
    }

    #[test]
    fn passwords_in_urls_are_noticed_and_never_echoed() {
        assert!(has_password("postgres://u:secret@h/app"));
        assert!(!has_password("postgres://u@h/app"));
        let e = database("postgres://u:secret@h").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}

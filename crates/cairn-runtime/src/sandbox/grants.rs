//! What one plugin instance may touch: paths (read-only or read-write), secret references
//! and network hosts. Everything else is denied.
//!
//! A plugin sees each granted path at the same absolute path as on the host (so logs and
//! errors mean the same thing inside and out). Native access goes through cap-std
//! directories opened at the grant roots, which refuse `..` and symlinks that leave them.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// Access to one path and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGrant {
    pub path: PathBuf,
    pub write: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub paths: Vec<PathGrant>,
    /// Secret references (`env:NAME`, `file:PATH`) the plugin may resolve.
    pub secrets: HashSet<String>,
    /// `host` or `host:port` the plugin may connect to.
    pub hosts: Vec<String>,
}

/// Why a path was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Denied {
    #[error("`{0}` is not an absolute path")]
    NotAbsolute(String),
    #[error("`{0}` is outside every path granted to this plugin")]
    Outside(String),
    #[error("`{0}` is granted read-only")]
    ReadOnly(String),
}

/// A path inside a grant: the grant's root and the path relative to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub root: PathBuf,
    pub relative: PathBuf,
    pub write: bool,
}

impl Grants {
    pub fn read(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.add(path.into(), false)
    }

    pub fn write(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.add(path.into(), true)
    }

    fn add(&mut self, path: PathBuf, write: bool) -> &mut Self {
        let path = normalize(&path).unwrap_or(path);
        match self.paths.iter_mut().find(|g| g.path == path) {
            Some(existing) => existing.write |= write,
            None => self.paths.push(PathGrant { path, write }),
        }
        self
    }

    /// Finds the most specific grant holding `guest_path`; `write` asks for write access.
    pub fn resolve(&self, guest_path: &str, write: bool) -> Result<Resolved, Denied> {
        let path = normalize(Path::new(guest_path))
            .ok_or_else(|| Denied::NotAbsolute(guest_path.to_string()))?;
        let grant = self
            .paths
            .iter()
            .filter(|g| path.starts_with(&g.path))
            .max_by_key(|g| g.path.components().count())
            .ok_or_else(|| Denied::Outside(guest_path.to_string()))?;
        if write && !grant.write {
            return Err(Denied::ReadOnly(guest_path.to_string()));
        }
        let relative = path
            .strip_prefix(&grant.path)
            .expect("starts_with checked")
            .to_path_buf();
        Ok(Resolved {
            root: grant.path.clone(),
            relative,
            write: grant.write,
        })
    }
}

/// Makes `path` absolute-and-lexically-clean: `.` dropped, `..` applied. `None` for a
/// relative path or one whose `..` climbs above `/`.
pub fn normalize(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(c) => out.push(c),
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        let mut g = Grants::default();
        g.read("/srv/app")
            .write("/srv/app/restore")
            .write("/backups/");
        g
    }

    #[test]
    fn resolves_inside_grants() {
        let g = grants();
        let r = g.resolve("/srv/app/uploads/a.png", false).unwrap();
        assert_eq!(r.root, PathBuf::from("/srv/app"));
        assert_eq!(r.relative, PathBuf::from("uploads/a.png"));
        assert!(!r.write);
        let r = g.resolve("/srv/app/restore/x", true).unwrap();
        assert_eq!(r.root, PathBuf::from("/srv/app/restore"));
        assert_eq!(
            g.resolve("/backups", true).unwrap().relative,
            PathBuf::new()
        );
    }

    #[test]
    fn denies_outside_and_escapes() {
        let g = grants();
        assert!(matches!(
            g.resolve("/etc/passwd", false),
            Err(Denied::Outside(_))
        ));
        assert!(matches!(
            g.resolve("/srv/app/../../etc/passwd", false),
            Err(Denied::Outside(_))
        ));
        assert!(matches!(
            g.resolve("/srv/application", false),
            Err(Denied::Outside(_))
        ));
        assert!(matches!(
            g.resolve("relative/path", false),
            Err(Denied::NotAbsolute(_))
        ));
        assert!(matches!(
            g.resolve("/srv/app/x", true),
            Err(Denied::ReadOnly(_))
        ));
    }
}

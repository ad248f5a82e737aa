//! Which plugins this host runs: the WIT package version it implements, and the rule for
//! the versions a plugin may have been built for.

/// The WIT package version this host implements (`sdk/wit/`). The one place it is
/// written in the host; a test checks it against the WIT files and the SDK's constant.
pub const WIT_VERSION: &str = "0.1.1";
pub const WIT_PACKAGE: &str = "cairn:plugin";

/// Whether this host runs a plugin built for WIT `version`: the same major and minor
/// version and a patch release no newer than the host's. Patch releases only add to
/// host-provided interfaces, and wasmtime links a plugin's `0.1.y` imports to the host's
/// semver-compatible `0.1.z` ones (docs/plugin-guide.md, "Versions").
pub fn supports(version: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64, u64)> {
        let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
        let parsed = (it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(parsed)
    }
    match (parts(version), parts(WIT_VERSION)) {
        (Some((major, minor, patch)), Some((h_major, h_minor, h_patch))) => {
            major == h_major && minor == h_minor && patch <= h_patch
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_of_this_minor_version_and_no_newer_patch_are_supported() {
        assert!(supports(WIT_VERSION));
        assert!(!supports("0.2.0"));
        assert!(!supports("1.1.0"));
        assert!(!supports("0.1.999"));
        assert!(!supports("0.1"));
        assert!(!supports(""));
    }
}

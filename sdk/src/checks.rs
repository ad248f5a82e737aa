//! Helpers for a source's `verify`: what the backup recorded, and checks that compare a
//! restored copy with it.

use std::collections::BTreeMap;

use crate::{CheckResult, ItemReader, Result};

impl ItemReader {
    /// The snapshot's annotations as a map (see `ItemWriter::annotate`).
    pub fn annotation_map(&self) -> BTreeMap<String, String> {
        self.annotations()
            .into_iter()
            .map(|a| (a.key, a.value))
            .collect()
    }
}

impl CheckResult {
    /// Passes when `found` equals what the backup `recorded`; the detail shows both
    /// (through `render`) when they differ, or the error that stopped the check.
    pub fn compared<T: PartialEq>(
        name: impl Into<String>,
        found: Result<T>,
        recorded: &T,
        render: impl Fn(&T) -> String,
    ) -> CheckResult {
        let (passed, detail) = match found {
            Ok(value) if value == *recorded => (true, format!("{} (as at backup)", render(&value))),
            Ok(value) => (
                false,
                format!("{}, but {} at backup", render(&value), render(recorded)),
            ),
            Err(e) => (false, e.message().to_string()),
        };
        CheckResult {
            name: name.into(),
            passed,
            detail,
        }
    }
}

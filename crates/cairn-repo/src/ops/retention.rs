//! Retention policies: which snapshots of one source to keep, and the rule that keeps each.
//!
//! Pure: callers pass each snapshot's time and tags, so tests fabricate histories at known
//! times. A misconfigured value never widens what is removed: it falls back to the key's
//! default with a warning, 0 is raised to 1, and callers refuse a policy that would remove
//! every snapshot of a source.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;

use crate::duration::parse_period;

/// A retention policy, spelled as in the config and the `forget` flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_within: Option<Duration>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_tags: Vec<String>,
}

/// What a misconfigured count falls back to.
const DEFAULTS: &[(&str, u32)] = &[
    ("keep-last", 7),
    ("keep-hourly", 24),
    ("keep-daily", 7),
    ("keep-weekly", 4),
    ("keep-monthly", 12),
    ("keep-yearly", 3),
];
const DEFAULT_WITHIN: &str = "30d";

/// Why a policy could not be read at all (an unknown key: a typo must not silently drop a
/// rule and remove more than intended).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// One snapshot as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The repository's order of writes (see `SourceSnapshot::seq`): what "newest" means.
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub tags: Vec<String>,
}

/// The verdict on one snapshot: kept (with every rule that keeps it) or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub keep: bool,
    pub reasons: Vec<String>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// Reads a `[retention]` table. Invalid values fall back to defaults; each fallback
    /// and each raised 0 is reported in `warnings`.
    pub fn from_table(
        table: &toml::Table,
        warnings: &mut Vec<String>,
    ) -> Result<Policy, PolicyError> {
        let mut policy = Policy::default();
        for (key, value) in table {
            match key.as_str() {
                "keep-within" => policy.keep_within = Some(within(value, warnings)),
                "keep-tag" => policy.keep_tags = tags(value, warnings),
                _ => {
                    let Some((_, default)) = DEFAULTS.iter().find(|(k, _)| k == key) else {
                        return Err(PolicyError(format!(
                            "unknown retention key `{key}`: use keep-last, keep-within, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly or keep-tag"
                        )));
                    };
                    let n = count(key, value, *default, warnings);
                    *policy.slot(key) = Some(n);
                }
            }
        }
        Ok(policy)
    }

    /// Sets a count given on the command line (0 raised to 1, with a warning).
    pub fn set_count(&mut self, key: &str, n: u32, warnings: &mut Vec<String>) {
        *self.slot(key) = Some(raise_zero(key, n, warnings));
    }

    fn slot(&mut self, key: &str) -> &mut Option<u32> {
        match key {
            "keep-last" => &mut self.keep_last,
            "keep-hourly" => &mut self.keep_hourly,
            "keep-daily" => &mut self.keep_daily,
            "keep-weekly" => &mut self.keep_weekly,
            "keep-monthly" => &mut self.keep_monthly,
            _ => &mut self.keep_yearly,
        }
    }

    /// The policy as the config would spell it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let counts = [
            ("keep-last", self.keep_last),
            ("keep-hourly", self.keep_hourly),
            ("keep-daily", self.keep_daily),
            ("keep-weekly", self.keep_weekly),
            ("keep-monthly", self.keep_monthly),
            ("keep-yearly", self.keep_yearly),
        ];
        for (key, n) in counts {
            if let Some(n) = n {
                parts.push(format!("{key} = {n}"));
            }
        }
        if let Some(d) = self.keep_within {
            parts.push(format!("keep-within = {}", human_duration(d)));
        }
        if !self.keep_tags.is_empty() {
            parts.push(format!("keep-tag = {:?}", self.keep_tags));
        }
        if parts.is_empty() {
            "keep everything".into()
        } else {
            parts.join(", ")
        }
    }

    /// Decides each snapshot's fate; `snapshots` in any order, verdicts in the same order.
    /// An empty policy keeps everything.
    pub fn apply(&self, snapshots: &[Candidate]) -> Vec<Verdict> {
        let mut verdicts = vec![
            Verdict {
                keep: self.is_empty(),
                reasons: Vec::new(),
            };
            snapshots.len()
        ];
        if self.is_empty() {
            for v in &mut verdicts {
                v.reasons.push("no retention policy".into());
            }
            return verdicts;
        }
        let mut newest_first: Vec<usize> = (0..snapshots.len()).collect();
        newest_first.sort_by_key(|&i| std::cmp::Reverse((snapshots[i].seq, snapshots[i].time)));
        let mut keep = |i: usize, reason: String| {
            verdicts[i].keep = true;
            verdicts[i].reasons.push(reason);
        };
        if let Some(n) = self.keep_last {
            for (rank, &i) in newest_first.iter().take(n as usize).enumerate() {
                keep(i, format!("keep-last ({} of {n})", rank + 1));
            }
        }
        type Bucket = fn(&DateTime<Utc>) -> (i32, u32, u32, u32);
        let buckets: [(&str, Option<u32>, Bucket); 5] = [
            ("keep-hourly", self.keep_hourly, |t| {
                (t.year(), t.ordinal(), 0, chrono::Timelike::hour(t))
            }),
            ("keep-daily", self.keep_daily, |t| {
                (t.year(), t.ordinal(), 0, 0)
            }),
            ("keep-weekly", self.keep_weekly, |t| {
                let w = t.iso_week();
                (w.year(), w.week(), 0, 0)
            }),
            ("keep-monthly", self.keep_monthly, |t| {
                (t.year(), t.month(), 0, 0)
            }),
            ("keep-yearly", self.keep_yearly, |t| (t.year(), 0, 0, 0)),
        ];
        for (rule, n, bucket) in buckets {
            let Some(n) = n else { continue };
            let mut seen = BTreeSet::new();
            for &i in &newest_first {
                if seen.len() == n as usize {
                    break;
                }
                // The newest snapshot of each period stands for it.
                if seen.insert(bucket(&snapshots[i].time)) {
                    keep(i, format!("{rule} ({} of {n})", seen.len()));
                }
            }
        }
        if let (Some(within), Some(&newest)) = (self.keep_within, newest_first.first()) {
            // Relative to the newest snapshot, not the clock: a source that stopped being
            // backed up keeps its last window instead of ageing out entirely.
            let cutoff = snapshots[newest].time - within;
            for &i in &newest_first {
                if snapshots[i].time >= cutoff {
                    keep(i, format!("keep-within {}", human_duration(within)));
                }
            }
        }
        if !self.keep_tags.is_empty() {
            for &i in &newest_first {
                if let Some(tag) = snapshots[i]
                    .tags
                    .iter()
                    .find(|t| self.keep_tags.contains(t))
                {
                    keep(i, format!("keep-tag {tag}"));
                }
            }
        }
        verdicts
    }
}

fn raise_zero(key: &str, n: u32, warnings: &mut Vec<String>) -> u32 {
    if n == 0 {
        warnings.push(format!(
            "{key} = 0 would keep nothing by that rule; raised to 1"
        ));
        1
    } else {
        n
    }
}

fn count(key: &str, value: &toml::Value, default: u32, warnings: &mut Vec<String>) -> u32 {
    let parsed = match value {
        toml::Value::Integer(n) => u32::try_from(*n).ok(),
        toml::Value::String(s) => s.trim().parse::<u32>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) => raise_zero(key, n, warnings),
        None => {
            warnings.push(format!(
                "{key} = {value} is not a whole number; using the default {key} = {default}"
            ));
            default
        }
    }
}

fn within(value: &toml::Value, warnings: &mut Vec<String>) -> Duration {
    let text = value.as_str().unwrap_or_default();
    match parse_period(text) {
        Some(d) if d > Duration::zero() => d,
        _ => {
            warnings.push(format!(
                "keep-within = {value} is not a duration like \"30d\" or \"12h\"; using the default keep-within = \"{DEFAULT_WITHIN}\""
            ));
            parse_period(DEFAULT_WITHIN).expect("the default parses")
        }
    }
}

fn tags(value: &toml::Value, warnings: &mut Vec<String>) -> Vec<String> {
    match value {
        toml::Value::String(s) if !s.is_empty() => vec![s.clone()],
        toml::Value::Array(items) if items.iter().all(|v| v.is_str()) => items
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        _ => {
            warnings.push(format!(
                "keep-tag = {value} is not a tag or a list of tags; ignored"
            ));
            Vec::new()
        }
    }
}

fn human_duration(d: Duration) -> String {
    if d.num_hours() % 24 == 0 {
        format!("{}d", d.num_days())
    } else {
        format!("{}h", d.num_hours())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    /// One snapshot every 6 hours for 100 days, newest 2026-11-21 18:00.
    fn history() -> Vec<Candidate> {
        let newest = at(2026, 11, 21, 18);
        (0..400)
            .map(|i| Candidate {
                seq: 0,
                time: newest - Duration::hours(6 * i),
                tags: if i == 123 {
                    vec!["before-upgrade".into()]
                } else {
                    vec![]
                },
            })
            .collect()
    }

    fn kept(policy: &Policy, snaps: &[Candidate]) -> Vec<DateTime<Utc>> {
        let mut out: Vec<_> = policy
            .apply(snaps)
            .iter()
            .zip(snaps)
            .filter(|(v, _)| v.keep)
            .map(|(_, s)| s.time)
            .collect();
        out.sort();
        out.reverse();
        out
    }

    /// A snapshot written last by a host whose clock is three days slow is the newest:
    /// the repository's order of writes decides, not the clocks.
    #[test]
    fn newest_means_written_last_whatever_the_clocks_say() {
        let now = at(2026, 11, 21, 18);
        let snaps = [
            Candidate {
                seq: 1,
                time: now - Duration::hours(2),
                tags: vec![],
            },
            Candidate {
                seq: 2,
                time: now,
                tags: vec![],
            },
            Candidate {
                seq: 3,
                time: now - Duration::days(3),
                tags: vec![],
            },
        ];
        let p = Policy {
            keep_last: Some(1),
            ..Default::default()
        };
        assert_eq!(kept(&p, &snaps), [now - Duration::days(3)]);
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let snaps = history();
        let p = Policy {
            keep_last: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept(&p, &snaps),
            [
                at(2026, 11, 21, 18),
                at(2026, 11, 21, 12),
                at(2026, 11, 21, 6)
            ]
        );
    }

    #[test]
    fn daily_weekly_monthly_yearly_keep_the_newest_of_each_period() {
        let snaps = history();
        let daily = Policy {
            keep_daily: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept(&daily, &snaps),
            [
                at(2026, 11, 21, 18),
                at(2026, 11, 20, 18),
                at(2026, 11, 19, 18)
            ]
        );
        let hourly = Policy {
            keep_hourly: Some(2),
            ..Default::default()
        };
        assert_eq!(
            kept(&hourly, &snaps),
            [at(2026, 11, 21, 18), at(2026, 11, 21, 12)]
        );
        // 2026-11-21 is a Saturday: ISO weeks end on Sundays 11-15 and 11-08.
        let weekly = Policy {
            keep_weekly: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept(&weekly, &snaps),
            [
                at(2026, 11, 21, 18),
                at(2026, 11, 15, 18),
                at(2026, 11, 8, 18)
            ]
        );
        let monthly = Policy {
            keep_monthly: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept(&monthly, &snaps),
            [
                at(2026, 11, 21, 18),
                at(2026, 10, 31, 18),
                at(2026, 9, 30, 18)
            ]
        );
        let yearly = Policy {
            keep_yearly: Some(5),
            ..Default::default()
        };
        assert_eq!(kept(&yearly, &snaps), [at(2026, 11, 21, 18)]);
    }

    #[test]
    fn keep_within_counts_back_from_the_newest_snapshot() {
        let snaps = history();
        let p = Policy {
            keep_within: parse_period("1d"),
            ..Default::default()
        };
        assert_eq!(
            kept(&p, &snaps).len(),
            5,
            "18:00 back to 18:00 the day before"
        );
        // A source last backed up long ago keeps its last window.
        let old: Vec<_> = snaps
            .iter()
            .map(|c| Candidate {
                seq: 0,
                time: c.time - Duration::days(365),
                tags: vec![],
            })
            .collect();
        assert_eq!(kept(&p, &old).len(), 5);
    }

    #[test]
    fn keep_tag_keeps_tagged_snapshots_and_reasons_are_reported() {
        let snaps = history();
        let p = Policy {
            keep_last: Some(1),
            keep_daily: Some(1),
            keep_tags: vec!["before-upgrade".into()],
            ..Default::default()
        };
        let verdicts = p.apply(&snaps);
        assert_eq!(verdicts.iter().filter(|v| v.keep).count(), 2);
        assert_eq!(
            verdicts[0].reasons,
            ["keep-last (1 of 1)", "keep-daily (1 of 1)"]
        );
        assert_eq!(verdicts[123].reasons, ["keep-tag before-upgrade"]);
        assert!(!verdicts[1].keep && verdicts[1].reasons.is_empty());
    }

    #[test]
    fn an_empty_policy_keeps_everything() {
        let snaps = history();
        assert!(Policy::default().apply(&snaps).iter().all(|v| v.keep));
    }

    #[test]
    fn misconfigured_values_fall_back_to_safe_ones_with_warnings() {
        let table: toml::Table = toml::from_str(
            "keep-last = \"seven\"\nkeep-daily = 0\nkeep-weekly = \"\"\nkeep-monthly = \"6\"\nkeep-within = \"soon\"\nkeep-yearly = -2",
        )
        .unwrap();
        let mut warnings = Vec::new();
        let p = Policy::from_table(&table, &mut warnings).unwrap();
        assert_eq!(p.keep_last, Some(7));
        assert_eq!(p.keep_daily, Some(1));
        assert_eq!(p.keep_weekly, Some(4));
        assert_eq!(p.keep_monthly, Some(6));
        assert_eq!(p.keep_yearly, Some(3));
        assert_eq!(p.keep_within, parse_period("30d"));
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("keep-daily = 0")));

        let typo: toml::Table = toml::from_str("keep-dayly = 7").unwrap();
        let err = Policy::from_table(&typo, &mut Vec::new()).unwrap_err();
        assert!(err.0.contains("keep-dayly"));
    }
}

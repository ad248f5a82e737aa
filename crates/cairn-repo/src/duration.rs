//! The two duration grammars, one per meaning, with distinct names so that one spelling
//! never means two lengths:
//!
//! - a **retention period** ([`parse_period`]: `keep-within`, `--keep-within`) counts in
//!   calendar units, `h`, `d`, `w`, `m` (months of 30 days) and `y` (365 days), and may
//!   combine them (`1y6m`);
//! - a **time span** ([`parse_span`]: timeouts, `--grace`) counts in clock units, `s`, `m`
//!   (minutes), `h`, `d` and `w`, one unit a value, or a bare number of seconds.
//!
//! The user guide documents both.

use chrono::Duration;

/// A retention period: `30d`, `12h`, `2w`, `6m` (months of 30 days), `1y` (365 days), or combinations (`1d12h`).
pub fn parse_period(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::zero();
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().ok()?;
        number.clear();
        total += match c {
            'y' => Duration::days(365 * n),
            'm' => Duration::days(30 * n),
            'w' => Duration::weeks(n),
            'd' => Duration::days(n),
            'h' => Duration::hours(n),
            _ => return None,
        };
    }
    number.is_empty().then_some(total)
}

/// A time span: `30s`, `90m` (minutes), `6h`, `30d`, `2w`, or a bare number of seconds.
pub fn parse_span(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        "w" => n.checked_mul(7 * 86_400)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}

/// A span for messages, in its largest unit: `45s`, `12m`, `5h`, `3d`.
pub fn human_span(d: Duration) -> String {
    let secs = d.num_seconds();
    // Rounded to the nearest unit: a clock three days slow, measured a few seconds
    // later, is still "3d" behind.
    let rounded = |unit: i64| (secs + unit / 2) / unit;
    if secs < 120 {
        format!("{secs}s")
    } else if secs < 7200 {
        format!("{}m", rounded(60))
    } else if secs < 172_800 {
        format!("{}h", rounded(3600))
    } else {
        format!("{}d", rounded(86_400))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_period("30d"), Some(Duration::days(30)));
        assert_eq!(parse_period("1d12h"), Some(Duration::hours(36)));
        assert_eq!(parse_period("2w"), Some(Duration::days(14)));
        assert_eq!(parse_period("1y"), Some(Duration::days(365)));
        assert_eq!(parse_period("12"), None);
        assert_eq!(parse_period("d"), None);
        assert_eq!(parse_period("3x"), None);
        // Months, where a time span would read minutes.
        assert_eq!(parse_period("90m"), Some(Duration::days(90 * 30)));
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_span("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_span("30d"), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_span("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_span("x"), None);
        assert_eq!(parse_span("5y"), None);
    }
}

//! Faults injected at the sink plugin's boundary, for tests of the whole binary: with
//! `CAIRN_SINK_FAULTS` set, each attempt of a storage operation may wait, fail as a
//! retryable plugin error before it reaches the plugin, take effect and then report a
//! retryable failure (a lost response), or fail for good. They meet the same retries and
//! error paths as a real sink's failures. Seeded, so that a failing run replays; the
//! repository-level twin is `cairn_repo`'s `faults::Faulty`.
//!
//! `CAIRN_SINK_FAULTS="seed=7,transient=0.05,lost=0.02,permanent=0.002,latency-ms=5"`:
//! every key is optional (rates default to 0, latency to none); each attempt waits up to
//! `latency-ms` first.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const VARIABLE: &str = "CAIRN_SINK_FAULTS";

/// What to do with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    None,
    /// Fail before the plugin is called, as a retryable error.
    Transient,
    /// Call the plugin, then report a retryable error (mutations only).
    LostResponse,
    /// Fail before the plugin is called, for good.
    Permanent,
}

#[derive(Debug)]
pub struct SinkFaults {
    rng: Mutex<StdRng>,
    transient: f64,
    lost: f64,
    permanent: f64,
    latency: Duration,
}

impl SinkFaults {
    /// The faults `CAIRN_SINK_FAULTS` asks for; `None` when it is unset.
    pub fn from_env() -> Result<Option<SinkFaults>, String> {
        match std::env::var(VARIABLE) {
            Ok(spec) => Self::parse(&spec).map(Some),
            Err(_) => Ok(None),
        }
    }

    pub fn parse(spec: &str) -> Result<SinkFaults, String> {
        let mut faults = SinkFaults {
            rng: Mutex::new(StdRng::seed_from_u64(0)),
            transient: 0.0,
            lost: 0.0,
            permanent: 0.0,
            latency: Duration::ZERO,
        };
        let bad = |part: &str| {
            format!(
                "{VARIABLE}: `{part}` is not key=value with a key of seed, transient, lost, permanent or latency-ms"
            )
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| bad(part))?;
            let rate = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!("{VARIABLE}: {key} must be a rate from 0 to 1, not `{value}`")
                    })
            };
            match key {
                "seed" => {
                    let seed = value
                        .parse::<u64>()
                        .map_err(|_| format!("{VARIABLE}: seed must be a number, not `{value}`"))?;
                    faults.rng = Mutex::new(StdRng::seed_from_u64(seed));
                }
                "transient" => faults.transient = rate()?,
                "lost" => faults.lost = rate()?,
                "permanent" => faults.permanent = rate()?,
                "latency-ms" => {
                    let ms = value.parse::<u64>().map_err(|_| {
                        format!(
                            "{VARIABLE}: latency-ms must be a number of milliseconds, not `{value}`"
                        )
                    })?;
                    faults.latency = Duration::from_millis(ms);
                }
                _ => return Err(bad(part)),
            }
        }
        Ok(faults)
    }

    /// This attempt's wait and fault; `mutates` says whether a lost response applies.
    pub fn draw(&self, mutates: bool) -> (Duration, Fault) {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let latency = self.latency.mul_f64(rng.random::<f64>());
        let roll = rng.random::<f64>();
        let fault = if roll < self.permanent {
            Fault::Permanent
        } else if roll < self.permanent + self.transient {
            Fault::Transient
        } else if mutates && roll < self.permanent + self.transient + self.lost {
            Fault::LostResponse
        } else {
            Fault::None
        };
        (latency, fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_parses_and_its_faults_come_at_their_rates() {
        let faults = SinkFaults::parse("seed=3, transient=0.2,lost=0.1,latency-ms=1").unwrap();
        let mut seen = std::collections::HashMap::new();
        for _ in 0..10_000 {
            let (latency, fault) = faults.draw(true);
            assert!(latency <= Duration::from_millis(1));
            *seen.entry(fault).or_insert(0u32) += 1;
        }
        assert!((1700..2300).contains(&seen[&Fault::Transient]), "{seen:?}");
        assert!(
            (700..1300).contains(&seen[&Fault::LostResponse]),
            "{seen:?}"
        );
        assert!(!seen.contains_key(&Fault::Permanent));
        assert_ne!(faults.draw(false).1, Fault::LostResponse);
        for bad in [
            "seed",
            "transient=2",
            "lost=x",
            "colour=red",
            "latency-ms=soon",
        ] {
            assert!(SinkFaults::parse(bad).is_err(), "{bad}");
        }
    }
}

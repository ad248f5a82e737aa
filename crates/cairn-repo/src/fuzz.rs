//! Damaged inputs for the property tests beside each decoder of repository objects: every
//! decoder must answer any bytes with a value or a typed error, never a panic, an
//! unbounded allocation or a hang. Inputs start from a valid encoding and are damaged the
//! ways storage damages objects; proptest keeps any failing case in the
//! `proptest-regressions/` file beside the module, committed and replayed first.

use proptest::prelude::*;

use crate::crypto::Keys;

/// Fixed keys, so that a failing case replays.
pub fn keys() -> Keys {
    Keys::from_master([7; 32])
}

/// `valid`, damaged: bytes flipped, cut short, bytes inserted, or all noise.
pub fn damaged(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    let (flip, cut, insert) = (valid.clone(), valid.clone(), valid);
    prop_oneof![
        prop::collection::vec((0..len.max(1), 1..=u8::MAX), 1..8).prop_map(move |flips| {
            let mut bytes = flip.clone();
            for (at, mask) in flips {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= mask;
                }
            }
            bytes
        }),
        (0..=len).prop_map(move |n| cut[..n].to_vec()),
        (0..=len, prop::collection::vec(any::<u8>(), 1..64)).prop_map(move |(at, noise)| {
            let mut bytes = insert.clone();
            bytes.splice(at..at, noise);
            bytes
        }),
        prop::collection::vec(any::<u8>(), 0..512),
    ]
}

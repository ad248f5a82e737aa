//! Key slots: the master secret wrapped by keys derived from passwords with argon2id.
//! A repository has one or more slots (`keys/<id>`), so passwords can be added and
//! removed without re-encrypting any data.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::RepoError;
use super::crypto::{self, Keys};

const SLOT_CONTEXT: &[u8] = b"cairn key slot";

/// Bounds on the KDF parameters a slot may ask for: 16 times what cairn writes.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 48;
const MAX_PARALLELISM: u32 = 16;

/// Argon2id settings stored in each slot, so they can be raised later without breaking
/// old slots. 64 MiB and 3 passes: about a quarter of a second on a small server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    pub algorithm: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub salt: String,
}

impl KdfParams {
    fn new_random() -> Self {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        KdfParams {
            algorithm: "argon2id".into(),
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
            salt: hex::encode(salt),
        }
    }

    fn derive(&self, password: &[u8]) -> Result<[u8; 32], RepoError> {
        // The slot is read before anything authenticates it: parameters no cairn writes
        // would have the KDF exhaust memory or never finish.
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations > MAX_ITERATIONS
            || self.parallelism > MAX_PARALLELISM
        {
            return Err(RepoError::Corrupt(format!(
                "key slot KDF parameters ({} KiB, {} iterations, {} lanes) are beyond what cairn writes",
                self.memory_kib, self.iterations, self.parallelism
            )));
        }
        if self.algorithm != "argon2id" {
            return Err(RepoError::Corrupt(format!(
                "key slot uses unknown KDF `{}`",
                self.algorithm
            )));
        }
        let salt = hex::decode(&self.salt)
            .map_err(|_| RepoError::Corrupt("key slot salt is not hex".into()))?;
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| RepoError::Corrupt(format!("key slot KDF parameters: {e}")))?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password, &salt, &mut out)
            .map_err(|e| RepoError::Corrupt(format!("key derivation: {e}")))?;
        Ok(out)
    }
}

/// One key slot, stored as plaintext JSON (it holds nothing usable without a password).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySlot {
    pub version: u32,
    pub created: chrono::DateTime<chrono::Utc>,
    pub hostname: String,
    pub username: String,
    pub kdf: KdfParams,
    /// The sealed master secret, hex.
    pub wrapped: String,
    /// BLAKE3 of the KDF parameters and `wrapped`: a wrong password and a damaged slot
    /// both fail to open the secret, and only this tells them apart. Absent in slots
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

impl KeySlot {
    pub fn new(keys: &Keys, password: &[u8]) -> Result<Self, RepoError> {
        let kdf = KdfParams::new_random();
        let kek = kdf.derive(password)?;
        let aead = XChaCha20Poly1305::new((&kek).into());
        let wrapped = crypto::seal_with(&aead, SLOT_CONTEXT, keys.master());
        let mut slot = KeySlot {
            version: 1,
            created: chrono::Utc::now(),
            hostname: crate::machine::hostname(),
            username: crate::machine::username(),
            kdf,
            wrapped: hex::encode(wrapped),
            checksum: None,
        };
        slot.checksum = Some(slot.computed_checksum());
        Ok(slot)
    }

    fn computed_checksum(&self) -> String {
        let kdf = serde_json::to_vec(&self.kdf).expect("KDF parameters always serialise");
        let mut hasher = blake3::Hasher::new_derive_key("cairn 2026-12 key slot checksum");
        hasher.update(&(kdf.len() as u64).to_le_bytes());
        hasher.update(&kdf);
        hasher.update(self.wrapped.as_bytes());
        hasher.finalize().to_hex().to_string()
    }

    /// The repository keys if `password` opens this slot; `None` if it does not.
    pub fn unlock(&self, password: &[u8]) -> Result<Option<Keys>, RepoError> {
        let kek = self.kdf.derive(password)?;
        let aead = XChaCha20Poly1305::new((&kek).into());
        let sealed = hex::decode(&self.wrapped)
            .map_err(|_| RepoError::Corrupt("key slot is not hex".into()))?;
        match crypto::open_with(&aead, SLOT_CONTEXT, &sealed) {
            Ok(master) => {
                let master: [u8; 32] = master.try_into().map_err(|_| {
                    RepoError::Corrupt("key slot holds a master secret of the wrong length".into())
                })?;
                Ok(Some(Keys::from_master(master)))
            }
            Err(_) => Ok(None),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("key slots always serialise")
    }

    /// Parses a slot, failing with [`RepoError::Corrupt`] if it is damaged.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RepoError> {
        let slot: KeySlot = serde_json::from_slice(bytes)
            .map_err(|e| RepoError::Corrupt(format!("key slot is not valid JSON: {e}")))?;
        if slot
            .checksum
            .as_ref()
            .is_some_and(|sum| *sum != slot.computed_checksum())
        {
            return Err(RepoError::Corrupt(
                "key slot is damaged: its checksum does not match".into(),
            ));
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_password_unlocks_wrong_does_not() {
        let keys = Keys::generate();
        let slot = KeySlot::new(&keys, b"correct horse").unwrap();
        let slot = KeySlot::from_bytes(&slot.to_bytes()).unwrap();
        let opened = slot.unlock(b"correct horse").unwrap().expect("unlocks");
        assert_eq!(opened.master(), keys.master());
        assert!(slot.unlock(b"battery staple").unwrap().is_none());
    }

    #[test]
    fn a_damaged_slot_is_told_from_a_wrong_password() {
        let keys = Keys::generate();
        let slot = KeySlot::new(&keys, b"correct horse").unwrap();
        let mut damaged = slot.clone();
        let mut wrapped = hex::decode(&damaged.wrapped).unwrap();
        wrapped[20] ^= 1;
        damaged.wrapped = hex::encode(wrapped);
        let err = KeySlot::from_bytes(&damaged.to_bytes()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");

        // Parameters no cairn writes fail at once, before any memory is spent.
        let mut greedy = slot.clone();
        greedy.kdf.memory_kib = u32::MAX;
        greedy.checksum = Some(greedy.computed_checksum());
        let greedy = KeySlot::from_bytes(&greedy.to_bytes()).unwrap();
        let Err(err) = greedy.unlock(b"correct horse") else {
            panic!("a slot asking for 4 TiB of memory was tried");
        };
        assert!(
            err.to_string().contains("beyond what cairn writes"),
            "{err}"
        );
    }

    mod damaged {
        use proptest::prelude::*;

        use super::*;
        use crate::fuzz::{damaged, keys};

        proptest! {
            #[test]
            fn a_damaged_key_slot_is_a_slot_or_an_error(
                bytes in damaged(KeySlot::new(&keys(), b"pw").unwrap().to_bytes()),
            ) {
                let _ = KeySlot::from_bytes(&bytes);
            }
        }
    }
}

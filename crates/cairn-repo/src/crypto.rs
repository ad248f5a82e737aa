//! Authenticated encryption of every stored byte, and the keys it uses.
//!
//! One random 32-byte master secret per repository; purpose keys are derived from it with
//! BLAKE3's key derivation so that the chunk-id key never encrypts and the encryption key
//! never hashes. Sealed data is `version (1) | nonce (24) | ciphertext | tag (16)` with
//! XChaCha20-Poly1305: random 192-bit nonces are safe without coordination between
//! concurrent writers on different hosts.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::RepoError;

/// Version byte in front of every sealed object.
const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// A chunk's identity: BLAKE3 keyed by the repository's chunk-id key over its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, RepoError> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(s, &mut id)
            .map_err(|_| RepoError::Corrupt(format!("invalid chunk id `{s}`")))?;
        Ok(ChunkId(id))
    }
}

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The repository's secret keys, derived from its master secret.
#[derive(Clone)]
pub struct Keys {
    master: [u8; 32],
    aead: XChaCha20Poly1305,
    chunk_id: [u8; 32],
}

impl Keys {
    pub fn generate() -> Self {
        let mut master = [0u8; 32];
        rand::rng().fill_bytes(&mut master);
        Self::from_master(master)
    }

    pub fn from_master(master: [u8; 32]) -> Self {
        let enc = blake3::derive_key("cairn 2026-11 encryption key", &master);
        let chunk_id = blake3::derive_key("cairn 2026-11 chunk id key", &master);
        Keys {
            master,
            aead: XChaCha20Poly1305::new((&enc).into()),
            chunk_id,
        }
    }

    pub fn master(&self) -> &[u8; 32] {
        &self.master
    }

    /// A key for a purpose other than encryption and chunk ids (the chunker's seed).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(purpose, &self.master)
    }

    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.chunk_id, plaintext).as_bytes())
    }

    /// Encrypts `plaintext`, binding it to `context` (what the object is: a chunk's id, or
    /// a file kind), so that a sealed object cannot be passed off as another.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.aead, context, plaintext)
    }

    /// [`Keys::seal`] of the concatenation of `parts`, written once into the output and
    /// encrypted there: no copy of the plaintext is made.
    pub fn seal_parts(&self, context: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        seal_parts_with(&self.aead, context, parts)
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, RepoError> {
        open_with(&self.aead, context, sealed)
    }
}

pub(crate) fn seal_with(aead: &XChaCha20Poly1305, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_parts_with(aead, context, &[plaintext])
}

fn seal_parts_with(aead: &XChaCha20Poly1305, context: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(SEALED_OVERHEAD + len);
    out.push(SEALED_VERSION);
    out.extend_from_slice(&nonce);
    for part in parts {
        out.extend_from_slice(part);
    }
    let tag = aead
        .encrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            context,
            &mut out[1 + NONCE_LEN..],
        )
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    out.extend_from_slice(&tag);
    out
}

pub(crate) fn open_with(
    aead: &XChaCha20Poly1305,
    context: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, RepoError> {
    if sealed.len() < SEALED_OVERHEAD {
        return Err(RepoError::Corrupt(format!(
            "sealed object of {} bytes is too short",
            sealed.len()
        )));
    }
    if sealed[0] != SEALED_VERSION {
        return Err(RepoError::Corrupt(format!(
            "unknown sealed-object version {}",
            sealed[0]
        )));
    }
    let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
    aead.decrypt(
        nonce,
        Payload {
            msg: &sealed[1 + NONCE_LEN..],
            aad: context,
        },
    )
    .map_err(|_| {
        RepoError::Corrupt("authentication failed: the data was modified or damaged".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_detects_tampering() {
        let keys = Keys::generate();
        let sealed = keys.seal(b"ctx", b"hello world");
        assert_eq!(keys.open(b"ctx", &sealed).unwrap(), b"hello world");
        assert!(
            keys.open(b"other", &sealed).is_err(),
            "context is authenticated"
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                keys.open(b"ctx", &bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn sealed_parts_open_as_their_concatenation() {
        let keys = Keys::generate();
        let sealed = keys.seal_parts(b"ctx", &[b"hello", b"", b" world"]);
        assert_eq!(sealed.len(), SEALED_OVERHEAD + 11);
        assert_eq!(keys.open(b"ctx", &sealed).unwrap(), b"hello world");
        assert!(keys.open(b"other", &sealed).is_err());
    }

    #[test]
    fn chunk_ids_are_keyed() {
        let a = Keys::generate();
        let b = Keys::generate();
        assert_eq!(a.chunk_id(b"x"), a.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
    }
}

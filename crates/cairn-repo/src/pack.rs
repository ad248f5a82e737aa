//! Pack files: many sealed chunks followed by a sealed header that lists them, so an index
//! can always be rebuilt from the packs alone.
//!
//! Layout: `chunk | chunk | … | sealed header | header length (u32 LE)`. A chunk is
//! `seal(context = chunk id, compression byte | payload)`. A pack is named by the BLAKE3
//! hash of its bytes, so any change to a stored pack is visible without the key.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::RepoError;
use super::crypto::{ChunkId, Keys, SEALED_OVERHEAD};

const HEADER_CONTEXT: &[u8] = b"cairn pack header";
const HEADER_MAGIC: &[u8; 4] = b"CPH1";
const ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;

/// Larger than any chunk cairn cuts (fixed-size chunks go up to
/// [`crate::chunker::FIXED_MAX`], content-defined ones are smaller).
pub const MAX_CHUNK_LEN: u32 = 64 * 1024 * 1024;

const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;

/// What a chunk holds: file or stream contents, or a piece of a snapshot's item list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkKind {
    Data,
    Tree,
}

impl ChunkKind {
    fn code(self) -> u8 {
        match self {
            ChunkKind::Data => 0,
            ChunkKind::Tree => 1,
        }
    }

    fn from_code(code: u8) -> Result<Self, RepoError> {
        match code {
            0 => Ok(ChunkKind::Data),
            1 => Ok(ChunkKind::Tree),
            _ => Err(RepoError::Corrupt(format!(
                "unknown chunk kind {code} in pack header"
            ))),
        }
    }
}

/// Where one chunk sits in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub id: ChunkId,
    pub kind: ChunkKind,
    pub offset: u32,
    /// Sealed length in the pack.
    pub length: u32,
    /// Length of the chunk's plaintext.
    pub raw_length: u32,
}

/// A pack file's name: `data/<first two hex digits>/<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub [u8; 32]);

impl PackId {
    pub fn of(bytes: &[u8]) -> Self {
        PackId(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, RepoError> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(s, &mut id)
            .map_err(|_| RepoError::Corrupt(format!("invalid pack id `{s}`")))?;
        Ok(PackId(id))
    }

    pub fn object_name(&self) -> String {
        let hex = self.to_hex();
        format!("data/{}/{hex}", &hex[..2])
    }
}

impl std::fmt::Debug for PackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

/// Compresses (when it pays) and seals chunks; one per worker thread, so the zstd
/// context and the buffer it compresses into are allocated once.
pub struct ChunkEncoder {
    compressor: zstd::bulk::Compressor<'static>,
    compressed: Vec<u8>,
}

impl ChunkEncoder {
    pub fn new(zstd_level: i32) -> std::io::Result<Self> {
        Ok(ChunkEncoder {
            compressor: zstd::bulk::Compressor::new(zstd_level)?,
            compressed: Vec::new(),
        })
    }

    /// The sealed chunk, in one allocation of its own size: it waits for the packer, so
    /// a chunk that compressed well should not hold its raw size in memory.
    pub fn encode(&mut self, keys: &Keys, id: &ChunkId, raw: &[u8]) -> Vec<u8> {
        self.compressed.clear();
        // zstd is fastest with room for its worst case.
        self.compressed
            .reserve(zstd::zstd_safe::compress_bound(raw.len()));
        let compressed = self
            .compressor
            .compress_to_buffer(raw, &mut self.compressed);
        // Keep the compressed form only when it saves at least 1/32 of the chunk.
        let (marker, body) = match compressed {
            Ok(n) if n + n / 32 < raw.len() => (COMPRESSION_ZSTD, &self.compressed[..n]),
            _ => (COMPRESSION_NONE, raw),
        };
        keys.seal_parts(&id.0, &[&[marker], body])
    }
}

thread_local! {
    /// One zstd decompression context per thread: creating one costs more than
    /// decompressing a small chunk.
    static DECOMPRESSOR: std::cell::RefCell<zstd::bulk::Decompressor<'static>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().expect("a zstd decompression context"));
}

/// Opens, decompresses and checks one chunk against its id.
pub fn decode_chunk(
    keys: &Keys,
    id: &ChunkId,
    sealed: &[u8],
    raw_length: u32,
) -> Result<Bytes, RepoError> {
    // The length sizes the decompression buffer: bounded, whatever an index says.
    if raw_length > MAX_CHUNK_LEN {
        return Err(RepoError::Corrupt(format!(
            "chunk {id}: a length of {raw_length} bytes is beyond any chunk cairn cuts"
        )));
    }
    let plain = keys
        .open(&id.0, sealed)
        .map_err(|e| e.context(format!("chunk {id}")))?;
    let raw = match plain.first() {
        // The opened buffer itself, past the marker: no copy of a chunk that did not
        // compress.
        Some(&COMPRESSION_NONE) => Bytes::from(plain).slice(1..),
        Some(&COMPRESSION_ZSTD) => DECOMPRESSOR
            .with(|d| d.borrow_mut().decompress(&plain[1..], raw_length as usize))
            .map(Bytes::from)
            .map_err(|e| RepoError::Corrupt(format!("chunk {id}: zstd: {e}")))?,
        other => {
            return Err(RepoError::Corrupt(format!(
                "chunk {id}: unknown compression {other:?}"
            )));
        }
    };
    if raw.len() != raw_length as usize || keys.chunk_id(&raw) != *id {
        return Err(RepoError::Corrupt(format!(
            "chunk {id}: contents do not match the chunk id"
        )));
    }
    Ok(raw)
}

/// Accumulates sealed chunks into one pack.
#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// A builder whose buffer never grows past `capacity` (by doubling, a 16 MiB pack
    /// could otherwise hold 32 MiB).
    pub fn with_capacity(capacity: usize) -> Self {
        PackBuilder {
            buf: Vec::with_capacity(capacity),
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn add(&mut self, id: ChunkId, kind: ChunkKind, sealed: &[u8], raw_length: u32) {
        let offset = self.buf.len() as u32;
        self.buf.extend_from_slice(sealed);
        self.entries.push(PackEntry {
            id,
            kind,
            offset,
            length: sealed.len() as u32,
            raw_length,
        });
    }

    /// Seals the header onto the pack: returns its id, bytes and entries.
    pub fn finish(mut self, keys: &Keys) -> (PackId, Bytes, Vec<PackEntry>) {
        let mut header = Vec::with_capacity(4 + self.entries.len() * ENTRY_LEN);
        header.extend_from_slice(HEADER_MAGIC);
        for e in &self.entries {
            header.push(e.kind.code());
            header.extend_from_slice(&e.id.0);
            header.extend_from_slice(&e.offset.to_le_bytes());
            header.extend_from_slice(&e.length.to_le_bytes());
            header.extend_from_slice(&e.raw_length.to_le_bytes());
        }
        let sealed = keys.seal(HEADER_CONTEXT, &header);
        self.buf.extend_from_slice(&sealed);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let bytes = Bytes::from(self.buf);
        (PackId::of(&bytes), bytes, self.entries)
    }
}

/// Reads the entries of a whole pack file, checking that they tile the pack exactly.
pub fn read_header(keys: &Keys, pack: &[u8]) -> Result<Vec<PackEntry>, RepoError> {
    if pack.len() < 4 + SEALED_OVERHEAD {
        return Err(RepoError::Corrupt(format!(
            "pack of {} bytes is too short",
            pack.len()
        )));
    }
    let header_len =
        u32::from_le_bytes(pack[pack.len() - 4..].try_into().expect("4 bytes")) as usize;
    if header_len + 4 > pack.len() {
        return Err(RepoError::Corrupt(
            "pack header length points outside the pack".into(),
        ));
    }
    let header_start = pack.len() - 4 - header_len;
    let header = keys
        .open(HEADER_CONTEXT, &pack[header_start..pack.len() - 4])
        .map_err(|e| e.context("pack header"))?;
    if header.len() < 4 || &header[..4] != HEADER_MAGIC || (header.len() - 4) % ENTRY_LEN != 0 {
        return Err(RepoError::Corrupt(
            "pack header has an unknown layout".into(),
        ));
    }
    let mut entries = Vec::with_capacity((header.len() - 4) / ENTRY_LEN);
    let mut expected_offset = 0u32;
    for raw in header[4..].chunks_exact(ENTRY_LEN) {
        let entry = PackEntry {
            kind: ChunkKind::from_code(raw[0])?,
            id: ChunkId(raw[1..33].try_into().expect("32 bytes")),
            offset: u32::from_le_bytes(raw[33..37].try_into().expect("4 bytes")),
            length: u32::from_le_bytes(raw[37..41].try_into().expect("4 bytes")),
            raw_length: u32::from_le_bytes(raw[41..45].try_into().expect("4 bytes")),
        };
        if entry.offset != expected_offset {
            return Err(RepoError::Corrupt(
                "pack header entries do not tile the pack".into(),
            ));
        }
        expected_offset += entry.length;
        entries.push(entry);
    }
    if expected_offset as usize != header_start {
        return Err(RepoError::Corrupt(
            "pack header does not cover the pack's chunks".into(),
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use rand::RngCore;

    use super::*;

    #[test]
    fn pack_round_trip() {
        let keys = Keys::generate();
        let chunks: Vec<Vec<u8>> = vec![
            vec![0u8; 100_000],
            (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect(),
            b"tiny".to_vec(),
            {
                // Incompressible: stored as it is, and read back without a copy.
                let mut noise = vec![0u8; 65_536];
                rand::rng().fill_bytes(&mut noise);
                noise
            },
        ];
        let mut builder = PackBuilder::default();
        let mut encoder = ChunkEncoder::new(3).unwrap();
        for c in &chunks {
            let id = keys.chunk_id(c);
            let sealed = encoder.encode(&keys, &id, c);
            builder.add(id, ChunkKind::Data, &sealed, c.len() as u32);
        }
        let (pack_id, bytes, entries) = builder.finish(&keys);
        assert_eq!(pack_id, PackId::of(&bytes));
        assert!(
            bytes.len() < 60_000 + 65_536,
            "zeros compress: {} bytes",
            bytes.len()
        );
        let read = read_header(&keys, &bytes).unwrap();
        assert_eq!(read, entries);
        let stored_as_is = entries
            .iter()
            .filter(|e| e.length as usize == e.raw_length as usize + 1 + SEALED_OVERHEAD);
        assert_eq!(stored_as_is.count(), 2, "the tiny and the random chunk");
        for (e, c) in entries.iter().zip(&chunks) {
            let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(
                &decode_chunk(&keys, &e.id, sealed, e.raw_length).unwrap()[..],
                &c[..]
            );
        }
    }

    #[test]
    fn damaged_chunk_is_detected() {
        let keys = Keys::generate();
        let data = b"some data".to_vec();
        let id = keys.chunk_id(&data);
        let mut sealed = ChunkEncoder::new(3).unwrap().encode(&keys, &id, &data);
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(decode_chunk(&keys, &id, &sealed, data.len() as u32).is_err());
    }

    mod damaged {
        use proptest::prelude::*;

        use super::*;
        use crate::fuzz::{damaged, keys};

        fn valid_pack() -> Vec<u8> {
            let keys = keys();
            let mut builder = PackBuilder::default();
            let mut encoder = ChunkEncoder::new(1).unwrap();
            for raw in [&b"first chunk"[..], &[9u8; 3000][..]] {
                let id = keys.chunk_id(raw);
                builder.add(
                    id,
                    ChunkKind::Data,
                    &encoder.encode(&keys, &id, raw),
                    raw.len() as u32,
                );
            }
            builder.finish(&keys).1.to_vec()
        }

        /// The header's plaintext as a valid pack has it, for damage behind the seal.
        fn valid_header() -> Vec<u8> {
            let keys = keys();
            let pack = valid_pack();
            let len = u32::from_le_bytes(pack[pack.len() - 4..].try_into().unwrap()) as usize;
            keys.open(HEADER_CONTEXT, &pack[pack.len() - 4 - len..pack.len() - 4])
                .unwrap()
        }

        proptest! {
            #[test]
            fn a_damaged_pack_header_is_an_error(pack in damaged(valid_pack())) {
                let _ = read_header(&keys(), &pack);
            }

            /// Authenticated but malformed (a bug, or a key leak): entries that do not
            /// tile the pack exactly are refused.
            #[test]
            fn a_sealed_header_of_any_layout_names_only_what_lies_in_the_pack(
                header in damaged(valid_header()),
                body in 0usize..4000,
            ) {
                let keys = keys();
                let mut pack = vec![0u8; body];
                let sealed = keys.seal(HEADER_CONTEXT, &header);
                pack.extend_from_slice(&sealed);
                pack.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
                if let Ok(entries) = read_header(&keys, &pack) {
                    let end = entries.last().map_or(0, |e| e.offset as usize + e.length as usize);
                    prop_assert_eq!(end, body);
                }
            }

            #[test]
            fn a_damaged_chunk_is_an_error(
                plain in damaged([&[COMPRESSION_ZSTD][..], &zstd::bulk::compress(&[5u8; 4000], 1).unwrap()].concat()),
                raw_length in any::<u32>(),
            ) {
                let keys = keys();
                let id = keys.chunk_id(&[5u8; 4000]);
                let sealed = keys.seal(&id.0, &plain);
                if let Ok(raw) = decode_chunk(&keys, &id, &sealed, raw_length) {
                    prop_assert_eq!(&raw[..], &[5u8; 4000][..]);
                }
            }
        }
    }
}

//! Cutting byte streams into chunks: content-defined (FastCDC, keyed by a per-repository
//! seed so boundaries do not fingerprint content) or fixed-size (database pages).
//!
//! The chunker is fed incrementally and yields exactly the chunks a one-shot pass over the
//! whole stream would: a CDC cut depends only on the bytes since the previous cut.

use bytes::Bytes;
use fastcdc::v2020::{FastCDC, Normalization};
use serde::{Deserialize, Serialize};

/// Content-defined chunking parameters, fixed per repository (changing them would stop
/// new backups deduplicating against old ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdcParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
    /// XORed into FastCDC's gear table; derived from the repository's keys, never stored.
    #[serde(skip)]
    pub seed: u64,
}

impl CdcParams {
    /// 256 KiB / 1 MiB / 4 MiB: large enough that a 1 TiB repository indexes about a
    /// million chunks, small enough that an edit re-stores about a megabyte.
    pub fn default_sizes() -> Self {
        CdcParams {
            min_size: 256 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
            seed: 0,
        }
    }
}

/// How one item is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    ContentDefined(CdcParams),
    /// Fixed-size chunks of this many bytes, aligned to the start of the item.
    Fixed(u32),
}

/// Smallest and largest fixed chunk a source may ask for.
pub const FIXED_MIN: u32 = 4 * 1024;
pub const FIXED_MAX: u32 = 16 * 1024 * 1024;

/// Cuts a stream fed in pieces. Each chunk is copied out of the chunker's buffer, so the
/// buffer is reused for the whole stream: chunks sliced from it instead would each keep a
/// whole read buffer alive until stored, and every read would need a fresh one.
pub struct StreamChunker {
    chunking: Chunking,
    buf: Vec<u8>,
    /// Where the bytes not yet cut begin in `buf`.
    start: usize,
}

impl StreamChunker {
    pub fn new(chunking: Chunking) -> Self {
        StreamChunker {
            chunking,
            buf: Vec::new(),
            start: 0,
        }
    }

    fn max_chunk(&self) -> usize {
        match self.chunking {
            Chunking::ContentDefined(p) => p.max_size as usize,
            Chunking::Fixed(size) => size as usize,
        }
    }

    /// Makes room for `additional` bytes by moving the uncut ones (less than one chunk,
    /// as every complete chunk was cut) to the front, when the buffer is full: so it never
    /// needs more than one chunk plus one read, and each byte moves about once.
    fn make_room(&mut self, additional: usize) {
        if self.start > 0 && self.buf.len() + additional > self.buf.capacity() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Appends bytes and moves every chunk that is now complete into `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        self.make_room(data.len());
        self.buf.extend_from_slice(data);
        self.drain(false, out);
    }

    /// Reads up to `max` bytes from `reader` straight into the chunker's buffer, then
    /// moves complete chunks into `out`. Returns the bytes read (0 at the end).
    pub fn read_from(
        &mut self,
        reader: &mut impl std::io::Read,
        max: usize,
        out: &mut Vec<Bytes>,
    ) -> std::io::Result<usize> {
        self.make_room(max);
        let filled = self.buf.len();
        // Exactly what is needed: doubling would take a buffer past the allocator's mmap
        // threshold, and fresh pages on every stream.
        self.buf.reserve_exact(max);
        self.buf.resize(filled + max, 0);
        let n = loop {
            match reader.read(&mut self.buf[filled..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(filled);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(filled + n);
        self.drain(false, out);
        Ok(n)
    }

    /// Whether every byte pushed so far was cut into a chunk.
    pub fn is_between_chunks(&self) -> bool {
        self.start == self.buf.len()
    }

    /// Ends the stream: whatever is buffered becomes the last chunk(s).
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        self.drain(true, out);
    }

    fn drain(&mut self, at_end: bool, out: &mut Vec<Bytes>) {
        let max = self.max_chunk();
        loop {
            let rest = &self.buf[self.start..];
            if rest.is_empty() || (!at_end && rest.len() < max) {
                break;
            }
            let cut = match self.chunking {
                Chunking::Fixed(size) => rest.len().min(size as usize),
                Chunking::ContentDefined(p) => {
                    let cdc = FastCDC::with_level_and_seed(
                        rest,
                        p.min_size,
                        p.avg_size,
                        p.max_size,
                        Normalization::Level1,
                        p.seed,
                    );
                    let (_, end) = cdc.cut(0, rest.len());
                    end
                }
            };
            out.push(Bytes::copy_from_slice(&rest[..cut]));
            self.start += cut;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    fn params() -> CdcParams {
        CdcParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
            seed: 7,
        }
    }

    fn data(len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut v);
        v
    }

    /// The chunks of `data` pushed in one piece.
    fn one_shot(data: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut c = StreamChunker::new(Chunking::ContentDefined(params()));
        c.push(data, &mut out);
        c.finish(&mut out);
        out
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data = data(1_000_000);
        let whole = one_shot(&data);

        for step in [1usize, 1000, 4096, 65536, 100_001] {
            let mut parts = Vec::new();
            let mut c = StreamChunker::new(Chunking::ContentDefined(params()));
            for piece in data.chunks(step) {
                c.push(piece, &mut parts);
            }
            c.finish(&mut parts);
            assert_eq!(parts, whole, "step {step}");
        }
        assert_eq!(whole.concat(), data);
        assert!(whole.len() > 20, "{} chunks", whole.len());
    }

    #[test]
    fn reads_cut_like_one_shot_in_a_buffer_of_one_chunk_plus_one_read() {
        let data = data(3_000_000);
        let whole = one_shot(&data);

        let read = 50_000;
        let mut reader = &data[..];
        let mut parts = Vec::new();
        let mut c = StreamChunker::new(Chunking::ContentDefined(params()));
        while c.read_from(&mut reader, read, &mut parts).unwrap() > 0 {
            assert!(
                c.buf.capacity() <= params().max_size as usize + read,
                "the buffer grew to {} bytes",
                c.buf.capacity()
            );
        }
        c.finish(&mut parts);
        assert_eq!(parts, whole);
    }

    #[test]
    fn an_insertion_changes_few_chunks() {
        let data = data(2_000_000);
        let mut edited = data.clone();
        edited.splice(500_000..500_000, b"inserted".iter().copied());
        let before: std::collections::HashSet<_> = one_shot(&data).into_iter().collect();
        let after = one_shot(&edited);
        let new = after.iter().filter(|c| !before.contains(*c)).count();
        assert!(new <= 2, "{new} new chunks after a small insertion");
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = data(1_000_000);
        let cut = |seed| {
            let mut out = Vec::new();
            let mut c =
                StreamChunker::new(Chunking::ContentDefined(CdcParams { seed, ..params() }));
            c.push(&data, &mut out);
            c.finish(&mut out);
            out.iter().map(|b| b.len()).collect::<Vec<_>>()
        };
        assert_ne!(cut(1), cut(2));
    }

    #[test]
    fn fixed_chunks_align_to_the_start() {
        let data = data(10_000);
        let mut out = Vec::new();
        let mut c = StreamChunker::new(Chunking::Fixed(4096));
        c.push(&data[..5000], &mut out);
        c.push(&data[5000..], &mut out);
        c.finish(&mut out);
        assert_eq!(
            out.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![4096, 4096, 1808]
        );
    }
}

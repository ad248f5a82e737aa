//! Cutting byte streams into chunks: content-defined (FastCDC, keyed by a per-repository
//! seed so boundaries do not fingerprint content) or fixed-size (database pages).
//!
//! The chunker is fed incrementally and yields exactly the chunks a one-shot pass over the
//! whole stream would: a CDC cut depends only on the bytes since the previous cut.

use bytes::{Bytes, BytesMut};
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

pub struct StreamChunker {
    chunking: Chunking,
    buf: BytesMut,
}

impl StreamChunker {
    pub fn new(chunking: Chunking) -> Self {
        StreamChunker {
            chunking,
            buf: BytesMut::new(),
        }
    }

    fn max_chunk(&self) -> usize {
        match self.chunking {
            Chunking::ContentDefined(p) => p.max_size as usize,
            Chunking::Fixed(size) => size as usize,
        }
    }

    /// Appends bytes and moves every chunk that is now complete into `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
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
        let start = self.buf.len();
        self.buf.resize(start + max, 0);
        let n = loop {
            match reader.read(&mut self.buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(start + n);
        self.drain(false, out);
        Ok(n)
    }

    /// Ends the stream: whatever is buffered becomes the last chunk(s).
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        self.drain(true, out);
    }

    fn drain(&mut self, at_end: bool, out: &mut Vec<Bytes>) {
        let max = self.max_chunk();
        while !self.buf.is_empty() && (at_end || self.buf.len() >= max) {
            let cut = match self.chunking {
                Chunking::Fixed(size) => self.buf.len().min(size as usize),
                Chunking::ContentDefined(p) => {
                    let cdc = FastCDC::with_level_and_seed(
                        &self.buf,
                        p.min_size,
                        p.avg_size,
                        p.max_size,
                        Normalization::Level1,
                        p.seed,
                    );
                    let (_, end) = cdc.cut(0, self.buf.len());
                    end
                }
            };
            out.push(self.buf.split_to(cut).freeze());
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

    #[test]
    fn incremental_equals_one_shot() {
        let data = data(1_000_000);
        let mut whole = Vec::new();
        let mut c = StreamChunker::new(Chunking::ContentDefined(params()));
        c.push(&data, &mut whole);
        c.finish(&mut whole);

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
    fn an_insertion_changes_few_chunks() {
        let data = data(2_000_000);
        let mut edited = data.clone();
        edited.splice(500_000..500_000, b"inserted".iter().copied());
        let cut = |d: &[u8]| {
            let mut out = Vec::new();
            let mut c = StreamChunker::new(Chunking::ContentDefined(params()));
            c.push(d, &mut out);
            c.finish(&mut out);
            out
        };
        let before: std::collections::HashSet<_> = cut(&data).into_iter().collect();
        let after = cut(&edited);
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

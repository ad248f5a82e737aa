//! SQLite's write-ahead log read natively: the `-wal` file's header and frames, checked
//! with SQLite's own salts and cumulative checksums, and the `-shm` wal-index header that
//! says how far the log is committed. Nothing here opens the database or takes a lock;
//! `follow` decides when reading is safe.
//!
//! The format (<https://www.sqlite.org/fileformat2.html#walformat>): a 32-byte header,
//! then frames of a 24-byte header and one page. A frame is valid when its salts equal
//! the header's and its checksum continues the running checksum of every frame before
//! it; a frame with a non-zero "database size" ends a transaction (a commit). A log that
//! SQLite restarts gets new salts (the first one incremented), so frames left over from
//! an earlier generation never validate.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

pub const WAL_HEADER: usize = 32;
pub const FRAME_HEADER: usize = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const VERSION: u32 = 3_007_000;

/// Why a log cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalError {
    #[error("the -wal header is not SQLite's (bad magic or checksum)")]
    BadHeader,
    #[error("the -wal page size {0} is not a power of two between 512 and 65536")]
    BadPageSize(u32),
    #[error("reading the -wal file: {0}")]
    Io(String),
}

/// A log's header: which generation of the log this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalHeader {
    pub big_endian_checksums: bool,
    pub page_size: u32,
    /// Incremented by SQLite each time the log restarts.
    pub checkpoint_seq: u32,
    pub salt: [u32; 2],
    pub checksum: [u32; 2],
}

impl WalHeader {
    pub fn decode(bytes: &[u8]) -> Result<WalHeader, WalError> {
        if bytes.len() < WAL_HEADER {
            return Err(WalError::BadHeader);
        }
        let magic = be32(bytes, 0);
        let big_endian_checksums = match magic {
            MAGIC_LE => false,
            MAGIC_BE => true,
            _ => return Err(WalError::BadHeader),
        };
        if be32(bytes, 4) != VERSION {
            return Err(WalError::BadHeader);
        }
        let page_size = be32(bytes, 8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(WalError::BadPageSize(page_size));
        }
        let checksum = [be32(bytes, 24), be32(bytes, 28)];
        if checksum_of(big_endian_checksums, &bytes[..24], [0, 0]) != checksum {
            return Err(WalError::BadHeader);
        }
        Ok(WalHeader {
            big_endian_checksums,
            page_size,
            checkpoint_seq: be32(bytes, 12),
            salt: [be32(bytes, 16), be32(bytes, 20)],
            checksum,
        })
    }

    fn frame_size(&self) -> u64 {
        (FRAME_HEADER as u64) + u64::from(self.page_size)
    }

    /// Where frame `n` (1-based) begins in the file.
    pub fn frame_offset(&self, n: u32) -> u64 {
        WAL_HEADER as u64 + u64::from(n.saturating_sub(1)) * self.frame_size()
    }
}

/// A point in the log: after frame `frame` of the generation with `salt`, whose running
/// checksum there is `checksum` (the header's when `frame` is 0). Two points are the same
/// point of the same log only if all of it agrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalPosition {
    pub header: WalHeader,
    pub frame: u32,
    pub checksum: [u32; 2],
}

impl WalPosition {
    /// The start of a generation.
    pub fn start(header: WalHeader) -> WalPosition {
        WalPosition {
            header,
            frame: 0,
            checksum: header.checksum,
        }
    }
}

/// The committed transactions read after a position, merged: for each page its newest
/// image, and the database's size in pages after the last of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub pages: BTreeMap<u32, Vec<u8>>,
    /// The database's size in pages after the last transaction; 0 when there was none.
    pub db_pages: u32,
    pub transactions: u64,
    pub frames: u64,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.transactions == 0
    }

    /// Adds `later` on top of these changes.
    pub fn extend(&mut self, later: Changes) {
        if later.is_empty() {
            return;
        }
        self.pages.extend(later.pages);
        self.db_pages = later.db_pages;
        // Pages past the end of the database are gone (a VACUUM, a truncation). Cut off,
        // not filtered: this runs once a transaction, on maps of a whole segment's pages.
        if self
            .pages
            .last_key_value()
            .is_some_and(|(&last, _)| last > later.db_pages)
        {
            self.pages.split_off(&(later.db_pages.saturating_add(1)));
        }
        self.transactions += later.transactions;
        self.frames += later.frames;
    }
}

/// The first bytes of an encoded [`Changes`].
const CHANGES_MAGIC: &[u8; 8] = b"cairnwl1";

impl Changes {
    /// The changes as a segment's bytes: a header (magic, page size, database pages,
    /// transactions, frames, page count), then each page's number and image, in order.
    pub fn encode(&self, page_size: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(36 + self.pages.len() * (4 + page_size as usize));
        out.extend_from_slice(CHANGES_MAGIC);
        out.extend_from_slice(&page_size.to_le_bytes());
        out.extend_from_slice(&self.db_pages.to_le_bytes());
        out.extend_from_slice(&self.transactions.to_le_bytes());
        out.extend_from_slice(&self.frames.to_le_bytes());
        out.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        for (page, image) in &self.pages {
            out.extend_from_slice(&page.to_le_bytes());
            out.extend_from_slice(image);
        }
        out
    }

    /// Decodes [`Changes::encode`]'s bytes; returns the page size too.
    pub fn decode(bytes: &[u8]) -> Result<(u32, Changes), String> {
        let bad = |what: &str| Err(format!("not SQLite changes written by cairn: {what}"));
        if bytes.len() < 36 || &bytes[..8] != CHANGES_MAGIC {
            return bad("no header");
        }
        let le32 = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let le64 = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let page_size = le32(8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return bad("page size");
        }
        let count = le32(32) as usize;
        let record = 4 + page_size as usize;
        if bytes.len() - 36 != count.saturating_mul(record) {
            return bad("length");
        }
        let mut changes = Changes {
            pages: BTreeMap::new(),
            db_pages: le32(12),
            transactions: le64(16),
            frames: le64(24),
        };
        for piece in bytes[36..].chunks_exact(record) {
            let page = u32::from_le_bytes([piece[0], piece[1], piece[2], piece[3]]);
            if page == 0 || page > changes.db_pages {
                return bad("page number");
            }
            changes.pages.insert(page, piece[4..].to_vec());
        }
        Ok((page_size, changes))
    }
}

/// What a log holds after a position.
pub struct LogRead {
    pub changes: Changes,
    /// After the last committed transaction read (the position itself if none).
    pub end: WalPosition,
}

/// Reads the committed transactions of the log in `file` after `from`, which must be a
/// point of the generation the file's header names (the caller compares headers first).
/// Stops at the first frame that does not validate or at the end of the file; frames of
/// a transaction whose commit frame is not there yet are left for the next read.
pub fn read_after(file: &mut (impl Read + Seek), from: WalPosition) -> Result<LogRead, WalError> {
    let header = from.header;
    let page_size = header.page_size as usize;
    // Only what the file held when the read began: a writer faster than the reader would
    // otherwise keep it reading for ever.
    let file_end = file
        .seek(SeekFrom::End(0))
        .map_err(|e| WalError::Io(e.to_string()))?;
    let first = header.frame_offset(from.frame + 1);
    file.seek(SeekFrom::Start(first))
        .map_err(|e| WalError::Io(e.to_string()))?;
    let frames_in_file = file_end.saturating_sub(first) / (FRAME_HEADER + page_size) as u64;
    let mut reader = std::io::Read::take(file, frames_in_file * (FRAME_HEADER + page_size) as u64);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &mut reader);
    let mut frame = vec![0u8; FRAME_HEADER + page_size];
    let mut changes = Changes::default();
    let mut pending: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut running = from.checksum;
    let mut end = from;
    let mut n = from.frame;
    loop {
        if !read_full(&mut reader, &mut frame)? {
            break;
        }
        let page = be32(&frame, 0);
        let commit_size = be32(&frame, 4);
        if page == 0 || [be32(&frame, 8), be32(&frame, 12)] != header.salt {
            break;
        }
        let mut sum = checksum_of(header.big_endian_checksums, &frame[..8], running);
        sum = checksum_of(header.big_endian_checksums, &frame[FRAME_HEADER..], sum);
        if sum != [be32(&frame, 16), be32(&frame, 20)] {
            break;
        }
        running = sum;
        n += 1;
        pending.push((page, frame[FRAME_HEADER..].to_vec()));
        if commit_size != 0 {
            let frames = pending.len() as u64;
            changes.extend(Changes {
                pages: pending.drain(..).collect(),
                db_pages: commit_size,
                transactions: 1,
                frames,
            });
            end = WalPosition {
                header,
                frame: n,
                checksum: running,
            };
        }
    }
    Ok(LogRead { changes, end })
}

/// Whether the log in `file` still holds, at `at.frame`, the frame that ends there with
/// `at.checksum`: the point `at` has not been overwritten. Reads the generation's frames
/// from its start, since each checksum depends on every frame before it.
pub fn holds(file: &mut (impl Read + Seek), at: WalPosition) -> Result<bool, WalError> {
    checksum_at(file, at.header, at.frame).map(|sum| sum == Some(at.checksum))
}

/// The running checksum after frame `n`, if frames 1..=n all validate.
fn checksum_at(
    file: &mut (impl Read + Seek),
    header: WalHeader,
    n: u32,
) -> Result<Option<[u32; 2]>, WalError> {
    file.seek(SeekFrom::Start(header.frame_offset(1)))
        .map_err(|e| WalError::Io(e.to_string()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut frame = vec![0u8; FRAME_HEADER + header.page_size as usize];
    let mut running = header.checksum;
    for _ in 0..n {
        if !read_full(&mut reader, &mut frame)? {
            return Ok(None);
        }
        if be32(&frame, 0) == 0 || [be32(&frame, 8), be32(&frame, 12)] != header.salt {
            return Ok(None);
        }
        let mut sum = checksum_of(header.big_endian_checksums, &frame[..8], running);
        sum = checksum_of(header.big_endian_checksums, &frame[FRAME_HEADER..], sum);
        if sum != [be32(&frame, 16), be32(&frame, 20)] {
            return Ok(None);
        }
        running = sum;
    }
    Ok(Some(running))
}

/// Whether a frame of generation `header` that continues `after` sits in the file right
/// after it: the log went on past that point. Used when a log was restarted to prove that
/// the old generation ended exactly where cairn stopped reading it.
/// Any valid frame counts, a commit or not.
pub fn continues_past(file: &mut (impl Read + Seek), after: WalPosition) -> Result<bool, WalError> {
    let header = after.header;
    file.seek(SeekFrom::Start(header.frame_offset(after.frame + 1)))
        .map_err(|e| WalError::Io(e.to_string()))?;
    let mut frame = vec![0u8; FRAME_HEADER + header.page_size as usize];
    if !read_full(file, &mut frame)? {
        return Ok(false);
    }
    if be32(&frame, 0) == 0 || [be32(&frame, 8), be32(&frame, 12)] != header.salt {
        return Ok(false);
    }
    let mut sum = checksum_of(header.big_endian_checksums, &frame[..8], after.checksum);
    sum = checksum_of(header.big_endian_checksums, &frame[FRAME_HEADER..], sum);
    Ok(sum == [be32(&frame, 16), be32(&frame, 20)])
}

/// The wal-index header at the start of the `-shm` file (native byte order): how many
/// frames of which generation are committed. SQLite keeps two copies and trusts them only
/// when they agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    pub max_frame: u32,
    pub db_pages: u32,
    pub frame_checksum: [u32; 2],
    pub salt: [u32; 2],
}

impl IndexHeader {
    pub fn decode(shm: &[u8]) -> Option<IndexHeader> {
        if shm.len() < 96 || shm[..48] != shm[48..96] || shm[12] == 0 {
            return None;
        }
        let ne = |at: usize| u32::from_ne_bytes([shm[at], shm[at + 1], shm[at + 2], shm[at + 3]]);
        Some(IndexHeader {
            max_frame: ne(16),
            db_pages: ne(20),
            frame_checksum: [ne(24), ne(28)],
            // Copied from the log's header as they are there: big-endian.
            salt: [be32(shm, 32), be32(shm, 36)],
        })
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<bool, WalError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WalError::Io(e.to_string())),
        }
    }
    Ok(true)
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// SQLite's WAL checksum: pairs of 32-bit words, in the byte order the log's magic names,
/// summed into two running values.
pub fn checksum_of(big_endian: bool, bytes: &[u8], seed: [u32; 2]) -> [u32; 2] {
    let [mut s1, mut s2] = seed;
    for pair in bytes.chunks_exact(8) {
        let word = |at: usize| {
            let w = [pair[at], pair[at + 1], pair[at + 2], pair[at + 3]];
            if big_endian {
                u32::from_be_bytes(w)
            } else {
                u32::from_le_bytes(w)
            }
        };
        s1 = s1.wrapping_add(word(0)).wrapping_add(s2);
        s2 = s2.wrapping_add(word(4)).wrapping_add(s1);
    }
    [s1, s2]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    /// A log written as SQLite writes one: `transactions` of (page, fill byte) frames,
    /// each ending in a commit frame.
    pub(crate) fn log(salt: [u32; 2], page_size: u32, transactions: &[Vec<(u32, u8)>]) -> Vec<u8> {
        let mut out = vec![0u8; WAL_HEADER];
        out[..4].copy_from_slice(&MAGIC_LE.to_be_bytes());
        out[4..8].copy_from_slice(&VERSION.to_be_bytes());
        out[8..12].copy_from_slice(&page_size.to_be_bytes());
        out[12..16].copy_from_slice(&7u32.to_be_bytes());
        out[16..20].copy_from_slice(&salt[0].to_be_bytes());
        out[20..24].copy_from_slice(&salt[1].to_be_bytes());
        let sum = checksum_of(false, &out[..24], [0, 0]);
        out[24..28].copy_from_slice(&sum[0].to_be_bytes());
        out[28..32].copy_from_slice(&sum[1].to_be_bytes());
        let mut running = sum;
        let mut size = 0u32;
        for tx in transactions {
            for (i, &(page, fill)) in tx.iter().enumerate() {
                size = size.max(page);
                let mut frame = vec![fill; FRAME_HEADER + page_size as usize];
                frame[..4].copy_from_slice(&page.to_be_bytes());
                let commit = if i + 1 == tx.len() { size } else { 0 };
                frame[4..8].copy_from_slice(&commit.to_be_bytes());
                frame[8..12].copy_from_slice(&salt[0].to_be_bytes());
                frame[12..16].copy_from_slice(&salt[1].to_be_bytes());
                running = checksum_of(false, &frame[..8], running);
                running = checksum_of(false, &frame[FRAME_HEADER..], running);
                frame[16..20].copy_from_slice(&running[0].to_be_bytes());
                frame[20..24].copy_from_slice(&running[1].to_be_bytes());
                out.extend_from_slice(&frame);
            }
        }
        out
    }

    fn start_of(bytes: &[u8]) -> WalPosition {
        WalPosition::start(WalHeader::decode(bytes).expect("header"))
    }

    #[test]
    fn committed_transactions_are_read_and_merged_newest_page_winning() {
        let bytes = log(
            [1, 2],
            512,
            &[vec![(1, 0xa), (2, 0xb)], vec![(2, 0xc)], vec![(3, 0xd)]],
        );
        let read = read_after(&mut Cursor::new(&bytes), start_of(&bytes)).expect("read");
        assert_eq!(read.changes.transactions, 3);
        assert_eq!(read.changes.frames, 4);
        assert_eq!(read.changes.db_pages, 3);
        assert_eq!(read.changes.pages[&2], vec![0xc; 512]);
        assert_eq!(read.end.frame, 4);
        // Reading on from the end finds nothing new.
        let again = read_after(&mut Cursor::new(&bytes), read.end).expect("read");
        assert!(again.changes.is_empty());
        assert_eq!(again.end, read.end);
        assert!(holds(&mut Cursor::new(&bytes), read.end).expect("holds"));
    }

    #[test]
    fn a_transaction_without_its_commit_frame_is_left_for_later() {
        let mut bytes = log([1, 2], 512, &[vec![(1, 1)], vec![(2, 2), (3, 3)]]);
        // Cut the second transaction's commit frame off, as if it were being written.
        bytes.truncate(bytes.len() - (FRAME_HEADER + 512) / 2);
        let read = read_after(&mut Cursor::new(&bytes), start_of(&bytes)).expect("read");
        assert_eq!(read.changes.transactions, 1);
        assert_eq!(read.end.frame, 1);
        assert!(continues_past(&mut Cursor::new(&bytes), read.end).expect("probe"));
    }

    #[test]
    fn frames_of_another_generation_or_a_flipped_bit_end_the_log() {
        let old = log([1, 2], 512, &[vec![(1, 1)], vec![(2, 2)], vec![(3, 3)]]);
        let new = log([2, 9], 512, &[vec![(4, 4)]]);
        // A restarted log overwrites the start; the old generation's tail stays behind.
        let mut mixed = new.clone();
        mixed.extend_from_slice(&old[new.len()..]);
        let read = read_after(&mut Cursor::new(&mixed), start_of(&mixed)).expect("read");
        assert_eq!(read.changes.transactions, 1);
        assert_eq!(
            read.changes.pages.keys().copied().collect::<Vec<_>>(),
            vec![4]
        );
        let mut flipped = old.clone();
        let at = WAL_HEADER + FRAME_HEADER + 512 + FRAME_HEADER + 100;
        flipped[at] ^= 1;
        let read = read_after(&mut Cursor::new(&flipped), start_of(&flipped)).expect("read");
        assert_eq!(read.changes.transactions, 1);
        let old_end = read_after(&mut Cursor::new(&old), start_of(&old))
            .expect("read")
            .end;
        assert!(!holds(&mut Cursor::new(&flipped), old_end).expect("holds"));
    }

    #[test]
    fn a_truncated_database_drops_pages_past_its_end() {
        let bytes = log([5, 5], 512, &[vec![(1, 1), (9, 9)], vec![(1, 2)]]);
        let mut read = read_after(&mut Cursor::new(&bytes), start_of(&bytes)).expect("read");
        assert_eq!(read.changes.db_pages, 9);
        read.changes.extend(Changes {
            pages: BTreeMap::from([(2, vec![0; 512])]),
            db_pages: 2,
            transactions: 1,
            frames: 1,
        });
        assert_eq!(
            read.changes.pages.keys().copied().collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn changes_survive_their_encoding() {
        let bytes = log([1, 2], 1024, &[vec![(1, 7), (3, 8)], vec![(2, 9)]]);
        let read = read_after(&mut Cursor::new(&bytes), start_of(&bytes)).expect("read");
        let (page_size, decoded) = Changes::decode(&read.changes.encode(1024)).expect("decode");
        assert_eq!((page_size, decoded), (1024, read.changes));
        assert!(Changes::decode(b"cairnwl1").is_err());
    }

    proptest! {
        /// Any bytes a segment holds decode to changes or an error, never a panic.
        #[test]
        fn damaged_changes_decode_without_panicking(
            damaged in cairn_repo::fuzz::damaged({
                let mut c = Changes { db_pages: 3, transactions: 1, frames: 2, ..Changes::default() };
                c.pages.insert(1, vec![1; 512]);
                c.pages.insert(3, vec![3; 512]);
                c.encode(512)
            })
        ) {
            let _ = Changes::decode(&damaged);
        }

        /// Whatever bytes storage or another process leaves in a `-wal` file, reading it
        /// answers with transactions or a typed error, and never reads past what validates.
        #[test]
        fn damaged_logs_are_read_without_panicking(
            damaged in cairn_repo::fuzz::damaged(log([3, 4], 512, &[vec![(1, 1), (2, 2)], vec![(3, 3)]]))
        ) {
            if let Ok(header) = WalHeader::decode(&damaged) {
                let start = WalPosition::start(header);
                if let Ok(read) = read_after(&mut Cursor::new(&damaged), start) {
                    prop_assert!(read.end.frame <= 3);
                }
                let _ = holds(&mut Cursor::new(&damaged), start);
            }
            let _ = IndexHeader::decode(&damaged);
        }
    }
}

//! `item-writer.store-ahead`: a source stores the chunks of a live file while it takes a
//! consistent copy of it, so that the copying and the storing overlap.
//!
//! Taking a consistent copy (SQLite's online backup API) keeps one core busy while the
//! other waits, and storing the copy afterwards compresses and seals every chunk. Stored
//! ahead, every chunk of the live file that the copy turns out to hold unchanged is found
//! stored when the copy is, so what remains after the copy is hashing it and checking it.
//! Safety rests on content addressing: a chunk is known by the keyed hash of its bytes,
//! and a snapshot references only chunks computed from the item it records. A chunk read
//! from the live file while it changed is a chunk nothing references.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::repo::write::ContentWriter;

/// How much of the file is read at once.
const READ_SIZE: usize = 4 * 1024 * 1024;
/// Reading stops after this many bytes in a row that the repository already held: the
/// file was stored by an earlier backup, and reading it twice would only slow the copy
/// (and, for a database larger than the page cache, double its reads from disk).
const KNOWN_RUN: u64 = 64 * 1024 * 1024;

/// A file's chunks being stored on a host thread; dropping it stops the reading.
pub struct StoreAhead {
    task: Arc<AheadTask>,
}

/// Shared with the capture, which stops and awaits what a plugin left running.
pub struct AheadTask {
    /// The file as the plugin named it, and the size of its fixed chunks (if fixed).
    pub source: String,
    pub fixed_chunk: Option<u32>,
    stop: AtomicBool,
    thread: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The live file, kept open until the task goes (after the copy's connection closed):
    /// closing a descriptor drops every POSIX lock this process holds on the file, the
    /// copy's SQLite locks among them (<https://www.sqlite.org/howtocorrupt.html>, 2.2).
    file: Mutex<Option<std::fs::File>>,
}

impl StoreAhead {
    /// Starts reading `file` (named `what`) into `content`, which cuts fixed chunks of
    /// `fixed_chunk` bytes if any, on a blocking thread.
    pub fn start(
        what: String,
        file: std::fs::File,
        content: ContentWriter,
        fixed_chunk: Option<u32>,
    ) -> StoreAhead {
        let task = Arc::new(AheadTask {
            source: what.clone(),
            fixed_chunk,
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            file: Mutex::new(None),
        });
        let running = task.clone();
        let handle = tokio::runtime::Handle::current();
        let thread = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let (read, new) = store(&running.stop, &handle, &mut file, content);
            tracing::debug!("{what}: read {read} bytes ahead, {new} of them new");
            if let Ok(mut kept) = running.file.lock() {
                *kept = Some(file);
            }
        });
        *task.thread.lock().expect("store-ahead lock") = Some(thread);
        StoreAhead { task }
    }

    pub fn task(&self) -> Arc<AheadTask> {
        self.task.clone()
    }
}

impl AheadTask {
    /// Stops the reading and waits until the chunks read are handed to the repository.
    pub async fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.lock().expect("store-ahead lock").take();
        if let Some(thread) = thread {
            // A panic in the thread loses only a hint.
            let _ = thread.await;
        }
    }
}

impl Drop for StoreAhead {
    /// A handle dropped without the host's `drop` (the plugin's store went away after a
    /// trap) still stops the thread.
    fn drop(&mut self) {
        self.task.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads `file` to its end, until `stop`, or until a long run of its chunks turns out
/// stored already, storing its chunks; returns the bytes read and, of them, those the
/// repository lacked. Errors end the reading quietly: storing ahead is a hint, and a
/// repository failure shows again when the item itself is stored.
fn store(
    stop: &AtomicBool,
    runtime: &tokio::runtime::Handle,
    file: &mut std::fs::File,
    mut content: ContentWriter,
) -> (u64, u64) {
    // Where the last new chunk was found (roughly: reads are checked whole).
    let (mut new_bytes, mut new_at) = (0, 0);
    loop {
        let read = (content.size(), content.new_bytes());
        if read.1 > new_bytes {
            (new_bytes, new_at) = (read.1, read.0);
        }
        if stop.load(Ordering::Relaxed) || read.0 - new_at >= KNOWN_RUN {
            return read;
        }
        match runtime.block_on(content.read_once(file, READ_SIZE)) {
            Ok(Ok(0)) => {
                // The last, shorter chunk of the file is also the last of a copy of the
                // same length.
                let _ = runtime.block_on(content.finish());
                return read;
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return (content.size(), content.new_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::repo::chunker::Chunking;
    use crate::repo::memory;
    use crate::repo::pack::ChunkKind;
    use crate::repo::write::{ChunkWriter, WriteStats};

    /// `len` bytes that neither compress nor repeat.
    fn noise_file(dir: &Path, len: u64) -> PathBuf {
        let path = dir.join("noise");
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let bytes: Vec<u8> = (0..len / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// One store-ahead pass over `path`, to its end: (bytes read, bytes new).
    async fn store_ahead(writer: &Arc<ChunkWriter>, path: &Path) -> (u64, u64) {
        let content =
            ContentWriter::new(writer.clone(), Chunking::Fixed(65536), ChunkKind::Data).ahead();
        let mut file = std::fs::File::open(path).unwrap();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            store(&AtomicBool::new(false), &runtime, &mut file, content)
        })
        .await
        .unwrap()
    }

    /// The item finds every chunk stored ahead, and the bytes count once as new and once
    /// as read; storing a stored file ahead again stops after a run of known chunks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_item_finds_the_chunks_stored_ahead_and_a_stored_file_is_not_read_twice() {
        let repo = memory::repository().await;
        let writer = Arc::new(ChunkWriter::start(&repo.load_index().await.unwrap()).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let size = KNOWN_RUN + (32 << 20);
        let path = noise_file(dir.path(), size);

        assert_eq!(store_ahead(&writer, &path).await, (size, size));
        let mut item = ContentWriter::new(writer.clone(), Chunking::Fixed(65536), ChunkKind::Data);
        item.write(&std::fs::read(&path).unwrap()).await.unwrap();
        let (chunks, _) = item.finish().await.unwrap();
        assert_eq!(chunks.len() as u64, size / 65536);
        writer.flush().await.unwrap();
        let stats = writer.stats();
        assert_eq!(WriteStats::get(&stats.bytes_new), size, "stored once");
        assert_eq!(WriteStats::get(&stats.bytes_ahead), size);
        assert_eq!(
            WriteStats::get(&stats.bytes_known),
            size,
            "all found by the item"
        );

        let (read, new) = store_ahead(&writer, &path).await;
        assert_eq!(new, 0);
        assert!(
            (KNOWN_RUN..size).contains(&read),
            "read {read} bytes of a stored file of {size}"
        );
    }
}

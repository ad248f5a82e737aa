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

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::repo::writer::ContentWriter;

/// How much of the file is read at once.
const READ_SIZE: usize = 4 * 1024 * 1024;

/// A file's chunks being stored on a host thread; dropping it stops the reading.
pub struct StoreAhead {
    task: Arc<AheadTask>,
}

/// Shared with the capture, which stops and awaits what a plugin left running.
pub struct AheadTask {
    stop: AtomicBool,
    thread: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl StoreAhead {
    /// Starts reading `file` into `content` on a blocking thread.
    pub fn start(what: String, file: std::fs::File, content: ContentWriter) -> StoreAhead {
        let task = Arc::new(AheadTask {
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let running = task.clone();
        let handle = tokio::runtime::Handle::current();
        let thread = tokio::task::spawn_blocking(move || {
            let read = store(&running.stop, &handle, file, content);
            tracing::debug!("{what}: stored {read} bytes ahead");
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

/// Reads `file` to its end, or until `stop`, storing its chunks; returns the bytes read.
/// Errors end the reading quietly: storing ahead is a hint, and a repository failure shows
/// again when the item itself is stored.
fn store(
    stop: &AtomicBool,
    runtime: &tokio::runtime::Handle,
    mut file: std::fs::File,
    mut content: ContentWriter,
) -> u64 {
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        if stop.load(Ordering::Relaxed) {
            return content.size();
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return content.size(),
        };
        if runtime.block_on(content.write(&buf[..n])).is_err() {
            return content.size();
        }
    }
    let read = content.size();
    // The last, shorter chunk of the file is also the last of a copy of the same length.
    let _ = runtime.block_on(content.finish());
    read
}

//! Deferred file writes (`write-options.deferred`): the host takes a small file's bytes and
//! writes it on background threads while the plugin goes on. A plugin runs on one thread,
//! so without this a restore creates its files one after another; on a disk file system
//! most of a restore of many small files is that creation (open, copy into the page cache,
//! metadata, rename), and it spreads over every core.
//!
//! A failure is kept and reported by the next call that waits for the writes: `flush`,
//! any `files` call other than `write` and `create-dir`, a later deferred `write`, or the
//! end of the plugin call, which fails with it: a call that succeeds had every file it
//! deferred written.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::capabilities::files::WriteTarget;
use crate::plugin_api::PluginError;
use crate::plugin_api::files::WriteOptions;

/// Bytes (KiB) handed over and not yet written, at most: with the restore's prefetch, this
/// bounds what a restore holds in memory.
const BUDGET_KIB: u32 = 8 * 1024;

/// A file to write, with its share of the budget.
struct Job {
    target: WriteTarget,
    pieces: Vec<Bytes>,
    options: WriteOptions,
    _budget: OwnedSemaphorePermit,
}

/// The writes a plugin has handed over and the threads writing them; started by the first
/// deferred write and stopped by [`DeferredWrites::flush`].
#[derive(Default)]
pub struct DeferredWrites {
    running: Option<Writers>,
}

struct Writers {
    jobs: mpsc::UnboundedSender<Job>,
    workers: Vec<JoinHandle<()>>,
    budget: Arc<Semaphore>,
    failed: Arc<Mutex<Option<PluginError>>>,
}

impl DeferredWrites {
    /// Queues a file's bytes for writing; waits while the budget is spent. If an earlier
    /// deferred write failed, stops the writers and fails with its error instead.
    pub async fn submit(
        &mut self,
        target: WriteTarget,
        pieces: Vec<Bytes>,
        options: WriteOptions,
    ) -> Result<(), PluginError> {
        if let Some(writers) = &self.running
            && writers
                .failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
        {
            // Files queued since were dropped: the failure speaks for them too.
            return self.flush().await;
        }
        let writers = self.running.get_or_insert_with(Writers::start);
        let kib = pieces
            .iter()
            .map(|p| p.len() as u64)
            .sum::<u64>()
            .div_ceil(1024);
        let budget = writers
            .budget
            .clone()
            .acquire_many_owned(kib.min(u64::from(BUDGET_KIB)) as u32)
            .await
            .map_err(|_| PluginError::Permanent("deferred writes stopped".into()))?;
        writers
            .jobs
            .send(Job {
                target,
                pieces,
                options,
                _budget: budget,
            })
            .map_err(|_| PluginError::Permanent("deferred writes stopped".into()))
    }

    /// Waits until every handed-over file is written; the first failure among them.
    pub async fn flush(&mut self) -> Result<(), PluginError> {
        let Some(writers) = self.running.take() else {
            return Ok(());
        };
        drop(writers.jobs);
        for worker in writers.workers {
            if let Err(e) = worker.await {
                // A panic in a writer: the file it held may not exist.
                let mut failed = writers
                    .failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                failed.get_or_insert(PluginError::Permanent(format!(
                    "a deferred write stopped: {e}"
                )));
            }
        }
        match take(&writers.failed) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl Writers {
    fn start() -> Writers {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (jobs, queue) = mpsc::unbounded_channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let failed = Arc::new(Mutex::new(None));
        let workers = (0..threads)
            .map(|_| {
                let queue = queue.clone();
                let failed = failed.clone();
                tokio::task::spawn_blocking(move || write_queued(&queue, &failed))
            })
            .collect();
        Writers {
            jobs,
            workers,
            budget: Arc::new(Semaphore::new(BUDGET_KIB as usize)),
            failed,
        }
    }
}

/// One writer thread: takes jobs until the queue closes. After a failure the rest are
/// dropped unwritten: the call that reports it fails, and so does the plugin's work.
fn write_queued(queue: &Mutex<mpsc::UnboundedReceiver<Job>>, failed: &Mutex<Option<PluginError>>) {
    loop {
        let next = queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocking_recv();
        let Some(job) = next else { return };
        if failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            continue;
        }
        if let Err(error) = job.target.write_pieces(&job.pieces, &job.options) {
            failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(error);
        }
    }
}

fn take(failed: &Mutex<Option<PluginError>>) -> Option<PluginError> {
    failed.lock().unwrap_or_else(PoisonError::into_inner).take()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::grants::Resolved;

    fn target(root: &std::path::Path, relative: &str) -> WriteTarget {
        let dir = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()).unwrap();
        let resolved = Resolved {
            root: root.to_path_buf(),
            relative: relative.into(),
            write: true,
        };
        WriteTarget::new(Arc::new(dir), resolved, &format!("/restore/{relative}"))
    }

    fn options() -> WriteOptions {
        WriteOptions {
            exclusive: false,
            sync: false,
            meta: None,
            deferred: true,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_file_lands_by_flush_and_a_failure_is_reported_with_its_path() {
        let root = tempfile::tempdir().unwrap();
        let mut deferred = DeferredWrites::default();
        // More bytes than the budget, in files of several pieces, in new directories.
        for i in 0..300 {
            let piece = Bytes::from(vec![i as u8; 50 * 1024]);
            let relative = format!("d{}/f{i}", i % 7);
            let pieces = vec![piece.clone(), piece.slice(..i)];
            deferred
                .submit(target(root.path(), &relative), pieces, options())
                .await
                .unwrap();
        }
        deferred.flush().await.unwrap();
        for i in 0..300 {
            let bytes = std::fs::read(root.path().join(format!("d{}/f{i}", i % 7))).unwrap();
            assert_eq!(bytes.len(), 50 * 1024 + i);
            assert!(bytes.iter().all(|&b| b == i as u8));
        }

        // A name taken by a non-empty directory cannot be written.
        std::fs::create_dir_all(root.path().join("taken/inside")).unwrap();
        deferred
            .submit(
                target(root.path(), "taken"),
                vec![Bytes::from_static(b"x")],
                options(),
            )
            .await
            .unwrap();
        let error = deferred.flush().await.unwrap_err();
        assert!(format!("{error:?}").contains("/restore/taken"), "{error:?}");
        // Reported once; the writers start afresh.
        deferred.flush().await.unwrap();

        // Later writes learn of a failure: one of them, or the flush, fails.
        let mut failed = false;
        for name in std::iter::once("taken").chain(std::iter::repeat_n("d0/again", 50)) {
            let written = deferred
                .submit(
                    target(root.path(), name),
                    vec![Bytes::from_static(b"y")],
                    options(),
                )
                .await;
            failed |= written.is_err();
        }
        failed |= deferred.flush().await.is_err();
        assert!(failed, "a failed deferred write went unreported");
        // Nothing half-written is left under a temporary name.
        let temporaries = walk(root.path())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".tmp-")
            })
            .count();
        assert_eq!(temporaries, 0);
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                out.extend(walk(&path));
            }
            out.push(path);
        }
        out
    }
}

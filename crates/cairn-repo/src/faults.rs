//! A storage decorator that fails the way real storage does, for randomised tests of
//! everything above it: latency, transient errors before an operation, and lost
//! responses (the operation took effect, the caller hears it failed). Seeded, so that a
//! failing run replays.
//!
//! Not injected: torn objects and listings that lag. Every sink writes an object whole
//! or not at all (the local sink renames a complete temporary file; S3, R2 and B2 PUTs
//! are atomic), and they list what they have acknowledged (S3 has been strongly
//! consistent since 2020, as R2, B2 and a local disk are); the commit rule in
//! docs/FORMAT.md relies on both. A torn object is damage, which `check` finds and
//! `repair` handles.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::{Backend, BackendError, BackendErrorKind, BackendResult};

/// How often each fault happens, per operation.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// The operation fails before it does anything.
    pub transient: f64,
    /// A put or delete takes effect, then reports a failure.
    pub lost_response: f64,
    /// Up to this long before each operation.
    pub latency: Duration,
}

/// What was injected, for the test's report.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub operations: AtomicU64,
    pub transient: AtomicU64,
    pub lost_responses: AtomicU64,
}

pub struct Faulty {
    inner: Arc<dyn Backend>,
    rng: Mutex<StdRng>,
    rates: Mutex<Option<FaultRates>>,
    pub counts: FaultCounts,
}

impl Faulty {
    pub fn new(inner: Arc<dyn Backend>, seed: u64, rates: FaultRates) -> Faulty {
        Faulty {
            inner,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            rates: Mutex::new(Some(rates)),
            counts: FaultCounts::default(),
        }
    }

    /// Stops (or, with `Some`, changes) the faults: a test's final checks run without.
    pub fn set_rates(&self, rates: Option<FaultRates>) {
        *self.rates.lock().expect("rates lock") = rates;
    }

    /// Draws this operation's faults: (latency, fail before, lose the response).
    fn draw(&self) -> (Duration, bool, bool) {
        self.counts.operations.fetch_add(1, Ordering::Relaxed);
        let Some(rates) = *self.rates.lock().expect("rates lock") else {
            return (Duration::ZERO, false, false);
        };
        let mut rng = self.rng.lock().expect("rng lock");
        let latency = rates.latency.mul_f64(rng.random::<f64>());
        let before = rng.random::<f64>() < rates.transient;
        let lost = rng.random::<f64>() < rates.lost_response;
        (latency, before, lost)
    }

    fn transient(&self, what: &str, name: &str) -> BackendError {
        self.counts.transient.fetch_add(1, Ordering::Relaxed);
        BackendError::new(
            BackendErrorKind::Transient,
            format!("injected fault: {what} {name} failed"),
        )
    }

    fn lost(&self, what: &str, name: &str) -> BackendError {
        self.counts.lost_responses.fetch_add(1, Ordering::Relaxed);
        BackendError::new(
            BackendErrorKind::Transient,
            format!("injected fault: the response to {what} {name} was lost"),
        )
    }

    /// Runs `op` under this operation's faults; `mutates` says whether a lost response
    /// applies (a lost read is just a failed read).
    fn run<'a, T: Send + 'a>(
        &'a self,
        what: &'static str,
        name: &'a str,
        mutates: bool,
        op: impl FnOnce() -> BoxFuture<'a, BackendResult<T>> + Send + 'a,
    ) -> BoxFuture<'a, BackendResult<T>> {
        let (latency, before, lost) = self.draw();
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if before {
                return Err(self.transient(what, name));
            }
            let result = op().await?;
            if lost && mutates {
                return Err(self.lost(what, name));
            }
            Ok(result)
        })
    }
}

impl Backend for Faulty {
    fn put<'a>(
        &'a self,
        name: &'a str,
        data: Bytes,
        exclusive: bool,
    ) -> BoxFuture<'a, BackendResult<()>> {
        self.run("put", name, true, move || {
            self.inner.put(name, data, exclusive)
        })
    }
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BackendResult<Bytes>> {
        self.run("get", name, false, move || self.inner.get(name))
    }
    fn get_range<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        length: u64,
    ) -> BoxFuture<'a, BackendResult<Bytes>> {
        self.run("get", name, false, move || {
            self.inner.get_range(name, offset, length)
        })
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, BackendResult<Vec<(String, u64)>>> {
        self.run("list", prefix, false, move || self.inner.list(prefix))
    }
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BackendResult<()>> {
        self.run("delete", name, true, move || self.inner.delete(name))
    }
    fn describe(&self) -> String {
        format!("{} (with injected faults)", self.inner.describe())
    }
}

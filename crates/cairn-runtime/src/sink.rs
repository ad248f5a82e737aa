//! Sink plugins as repository storage: a pool of instances (one store each, so uploads run
//! in parallel), each holding an opened `store` resource. Retryable failures are retried
//! with exponential backoff and jitter; a crashed instance is replaced by a fresh one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use wasmtime::Store;
use wasmtime::component::{Resource, ResourceAny};

use super::{CallError, Plugin, QUICK_CALL, Runtime, guarded};
use crate::capabilities::bulk::Blob;
use crate::plugin_api::sink::SinkPlugin;
use crate::plugin_api::{PluginError, PluginInfo};
use crate::repo::backend::{Backend, BackendError, BackendErrorKind, BackendResult};
use crate::sandbox::grants::Grants;
use crate::sink_faults::{self, Fault, SinkFaults};
use crate::state::PluginState;

/// How long one storage operation may take (a 64 MiB pack over a slow link).
const OP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Attempts of a retryable operation, and the backoff between them (doubling, capped).
const ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

pub struct SinkInstance {
    store: Store<PluginState>,
    bindings: SinkPlugin,
    handle: Option<ResourceAny>,
    memory_limit: usize,
}

impl SinkInstance {
    async fn new(
        runtime: &Runtime,
        plugin: &Plugin,
        name: &str,
        grants: Arc<Grants>,
    ) -> Result<SinkInstance, CallError> {
        let mut store = runtime.new_store(name, grants);
        super::arm(&mut store, QUICK_CALL);
        let bindings =
            SinkPlugin::instantiate_async(&mut store, &plugin.component, &runtime.sink_linker)
                .await
                .map_err(|e| CallError::Instantiate {
                    plugin: name.to_string(),
                    message: format!("{e:#}"),
                })?;
        Ok(SinkInstance {
            store,
            bindings,
            handle: None,
            memory_limit: runtime.memory_limit,
        })
    }

    pub async fn info_of(runtime: &Runtime, plugin: &Plugin) -> Result<PluginInfo, CallError> {
        let mut instance =
            SinkInstance::new(runtime, plugin, &plugin.spec, Arc::new(Grants::default())).await?;
        let api = instance.bindings.cairn_plugin_sink();
        let store = &mut instance.store;
        guarded!(
            store,
            &plugin.spec,
            instance.memory_limit,
            QUICK_CALL,
            async { api.call_info(&mut *store).await.map(Ok) }
        )
    }

    fn plugin(&self) -> String {
        self.store.data().plugin.clone()
    }

    async fn open(&mut self, options: &str) -> Result<(), CallError> {
        let api = self.bindings.cairn_plugin_sink();
        let store = &mut self.store;
        let plugin = store.data().plugin.clone();
        guarded!(
            store,
            &plugin,
            self.memory_limit,
            QUICK_CALL,
            api.call_validate(&mut *store, options)
        )?;
        let handle = guarded!(
            store,
            &plugin,
            self.memory_limit,
            QUICK_CALL,
            api.call_open(&mut *store, options)
        )?;
        self.handle = Some(handle);
        Ok(())
    }

    fn push_blob(&mut self, data: Bytes) -> Result<Resource<Blob>, CallError> {
        self.store
            .data_mut()
            .table
            .push(Blob::from_bytes(data))
            .map_err(|e| CallError::Instantiate {
                plugin: self.plugin(),
                message: e.to_string(),
            })
    }

    async fn run(&mut self, op: &Op<'_>) -> Result<Reply, CallError> {
        let handle = self.handle.expect("sink instances are opened before use");
        let plugin = self.plugin();
        let limit = self.memory_limit;
        let blob = match op {
            Op::Put { data, .. } => Some(self.push_blob(data.clone())?),
            _ => None,
        };
        let api = self.bindings.cairn_plugin_sink().store();
        match op {
            Op::Put {
                name, exclusive, ..
            } => {
                let blob = blob.expect("pushed above");
                let borrowed = Resource::<Blob>::new_borrow(blob.rep());
                let store = &mut self.store;
                let result = if *exclusive {
                    guarded!(
                        store,
                        &plugin,
                        limit,
                        OP_TIMEOUT,
                        api.call_put_new(&mut *store, handle, name, borrowed)
                    )
                } else {
                    guarded!(
                        store,
                        &plugin,
                        limit,
                        OP_TIMEOUT,
                        api.call_put(&mut *store, handle, name, borrowed)
                    )
                };
                self.store
                    .data_mut()
                    .table
                    .delete(blob)
                    .map_err(|e| CallError::Instantiate {
                        plugin: plugin.clone(),
                        message: e.to_string(),
                    })?;
                result.map(|()| Reply::Done)
            }
            Op::Get { name, range } => {
                let store = &mut self.store;
                let blob = match range {
                    None => guarded!(
                        store,
                        &plugin,
                        limit,
                        OP_TIMEOUT,
                        api.call_get(&mut *store, handle, name)
                    )?,
                    Some((offset, length)) => guarded!(
                        store,
                        &plugin,
                        limit,
                        OP_TIMEOUT,
                        api.call_get_range(&mut *store, handle, name, *offset, *length)
                    )?,
                };
                let blob = self.store.data_mut().table.delete(blob).map_err(|e| {
                    CallError::Instantiate {
                        plugin: plugin.clone(),
                        message: e.to_string(),
                    }
                })?;
                let bytes = blob.into_bytes().await.map_err(|e| CallError::Failed {
                    plugin: plugin.clone(),
                    error: PluginError::Retryable(format!("reading {name}: {e}")),
                })?;
                Ok(Reply::Bytes(bytes))
            }
            Op::List { prefix } => {
                let store = &mut self.store;
                let objects = guarded!(
                    store,
                    &plugin,
                    limit,
                    OP_TIMEOUT,
                    api.call_list(&mut *store, handle, prefix)
                )?;
                Ok(Reply::List(
                    objects.into_iter().map(|o| (o.name, o.size)).collect(),
                ))
            }
            Op::Delete { name } => {
                let store = &mut self.store;
                guarded!(
                    store,
                    &plugin,
                    limit,
                    OP_TIMEOUT,
                    api.call_delete(&mut *store, handle, name)
                )?;
                Ok(Reply::Done)
            }
        }
    }
}

enum Op<'a> {
    Put {
        name: &'a str,
        data: Bytes,
        exclusive: bool,
    },
    Get {
        name: &'a str,
        range: Option<(u64, u64)>,
    },
    List {
        prefix: &'a str,
    },
    Delete {
        name: &'a str,
    },
}

impl Op<'_> {
    /// Whether the operation changes storage (so that its response can be lost after it
    /// took effect).
    fn mutates(&self) -> bool {
        matches!(self, Op::Put { .. } | Op::Delete { .. })
    }

    fn describe(&self) -> String {
        match self {
            Op::Put { name, .. } => format!("writing {name}"),
            Op::Get { name, .. } => format!("reading {name}"),
            Op::List { prefix } => format!("listing {prefix}"),
            Op::Delete { name } => format!("deleting {name}"),
        }
    }
}

enum Reply {
    Done,
    Bytes(Bytes),
    List(Vec<(String, u64)>),
}

/// A sink plugin serving as a repository [`Backend`].
pub struct SinkPool {
    runtime: Arc<Runtime>,
    plugin: Arc<Plugin>,
    name: String,
    options: String,
    grants: Arc<Grants>,
    idle: Mutex<Vec<SinkInstance>>,
    slots: tokio::sync::Semaphore,
    description: String,
    /// Faults injected at this boundary (`CAIRN_SINK_FAULTS`), for tests.
    faults: Option<SinkFaults>,
}

impl SinkPool {
    /// Opens the sink once up front, so bad options fail before any work starts.
    pub async fn open(
        runtime: Arc<Runtime>,
        plugin: Arc<Plugin>,
        name: &str,
        options: String,
        grants: Grants,
        concurrency: usize,
        description: String,
    ) -> Result<SinkPool, CallError> {
        let grants = Arc::new(grants);
        let faults = SinkFaults::from_env().map_err(|message| CallError::Instantiate {
            plugin: name.to_string(),
            message,
        })?;
        if faults.is_some() {
            tracing::warn!(sink = %name, "{}: injecting storage faults (a testing aid)", sink_faults::VARIABLE);
        }
        let mut first = SinkInstance::new(&runtime, &plugin, name, grants.clone()).await?;
        first.open(&options).await?;
        Ok(SinkPool {
            runtime,
            plugin,
            name: name.to_string(),
            options,
            grants,
            idle: Mutex::new(vec![first]),
            slots: tokio::sync::Semaphore::new(concurrency.max(1)),
            description,
            faults,
        })
    }

    async fn instance(&self) -> Result<SinkInstance, CallError> {
        if let Some(instance) = self.idle.lock().expect("idle lock").pop() {
            return Ok(instance);
        }
        let mut instance =
            SinkInstance::new(&self.runtime, &self.plugin, &self.name, self.grants.clone()).await?;
        instance.open(&self.options).await?;
        Ok(instance)
    }

    async fn call(&self, op: Op<'_>) -> BackendResult<Reply> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| BackendError::new(BackendErrorKind::Permanent, "sink closed"))?;
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            // Opening a new instance can meet the same transient failures as a call (a
            // sink that connects on open); it is retried the same way.
            let (instance, result) = match self.instance().await {
                Ok(mut instance) => {
                    let result = self.attempt(&mut instance, &op).await;
                    (Some(instance), result)
                }
                Err(e) => (None, Err(e)),
            };
            let keep = |instance: Option<SinkInstance>| {
                if let Some(instance) = instance {
                    self.idle.lock().expect("idle lock").push(instance);
                }
            };
            match result {
                Ok(reply) => {
                    keep(instance);
                    return Ok(reply);
                }
                Err(CallError::Failed {
                    error: PluginError::Retryable(message),
                    ..
                }) if attempt < ATTEMPTS => {
                    keep(instance);
                    let jitter = backoff.mul_f64(rand::random::<f64>() * 0.5);
                    tracing::warn!(sink = %self.name, "{}: {message}; retrying in {:.1}s (attempt {attempt} of {ATTEMPTS})", op.describe(), (backoff + jitter).as_secs_f64());
                    tokio::time::sleep(backoff + jitter).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e @ CallError::Failed { .. }) => {
                    keep(instance);
                    return Err(self.error(&op, &e));
                }
                // A crashed instance is dropped; the next call starts a fresh one.
                Err(e) => return Err(self.error(&op, &e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// One attempt of `op`, under the injected faults if there are any.
    async fn attempt(&self, instance: &mut SinkInstance, op: &Op<'_>) -> Result<Reply, CallError> {
        let Some(faults) = &self.faults else {
            return instance.run(op).await;
        };
        let (latency, fault) = faults.draw(op.mutates());
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let injected = |error: PluginError| CallError::Failed {
            plugin: self.name.clone(),
            error,
        };
        match fault {
            Fault::None => instance.run(op).await,
            Fault::Transient => Err(injected(PluginError::Retryable(format!(
                "injected fault: {} failed",
                op.describe()
            )))),
            Fault::Permanent => Err(injected(PluginError::Permanent(format!(
                "injected fault: {} failed for good",
                op.describe()
            )))),
            Fault::LostResponse => {
                instance.run(op).await?;
                Err(injected(PluginError::Retryable(format!(
                    "injected fault: the response to {} was lost",
                    op.describe()
                ))))
            }
        }
    }

    fn error(&self, op: &Op<'_>, e: &CallError) -> BackendError {
        let kind = match e.plugin_error() {
            Some(PluginError::NotFound(_)) => BackendErrorKind::NotFound,
            Some(PluginError::AlreadyExists(_)) => BackendErrorKind::AlreadyExists,
            Some(PluginError::Denied(_)) => BackendErrorKind::Denied,
            Some(PluginError::Config(_)) => BackendErrorKind::Config,
            Some(PluginError::Retryable(_)) => BackendErrorKind::Transient,
            _ => BackendErrorKind::Permanent,
        };
        BackendError::new(
            kind,
            format!("{} ({}): {e}", op.describe(), self.description),
        )
    }
}

fn unexpected(reply: Reply) -> BackendError {
    let what = match reply {
        Reply::Done => "nothing",
        Reply::Bytes(_) => "bytes",
        Reply::List(_) => "a listing",
    };
    BackendError::new(
        BackendErrorKind::Permanent,
        format!("internal: unexpected reply ({what})"),
    )
}

impl Backend for SinkPool {
    fn put<'a>(
        &'a self,
        name: &'a str,
        data: Bytes,
        exclusive: bool,
    ) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            match self
                .call(Op::Put {
                    name,
                    data,
                    exclusive,
                })
                .await?
            {
                Reply::Done => Ok(()),
                other => Err(unexpected(other)),
            }
        })
    }

    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BackendResult<Bytes>> {
        Box::pin(async move {
            match self.call(Op::Get { name, range: None }).await? {
                Reply::Bytes(b) => Ok(b),
                other => Err(unexpected(other)),
            }
        })
    }

    fn get_range<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        length: u64,
    ) -> BoxFuture<'a, BackendResult<Bytes>> {
        Box::pin(async move {
            match self
                .call(Op::Get {
                    name,
                    range: Some((offset, length)),
                })
                .await?
            {
                Reply::Bytes(b) => Ok(b),
                other => Err(unexpected(other)),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, BackendResult<Vec<(String, u64)>>> {
        Box::pin(async move {
            match self.call(Op::List { prefix }).await? {
                Reply::List(l) => Ok(l),
                other => Err(unexpected(other)),
            }
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            match self.call(Op::Delete { name }).await? {
                Reply::Done => Ok(()),
                other => Err(unexpected(other)),
            }
        })
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

//! A running source plugin instance and its calls.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use super::{CallError, Plugin, QUICK_CALL, Runtime, guarded};
use crate::pipeline::capture::{Capture, ItemWriter};
use crate::pipeline::follow::{ChainStore, ChangeReader, ChangeSource, ChangeWriter};
use crate::pipeline::replay::{ItemReader, Replay};
use crate::plugin_api::following::FollowingSourcePlugin;
use crate::plugin_api::source::SourcePlugin;
use crate::plugin_api::{PluginInfo, VerifyReport};
use crate::sandbox::grants::Grants;
use crate::state::{PluginState, ProgressHook};

pub struct SourceInstance {
    store: Store<PluginState>,
    bindings: SourcePlugin,
    name: String,
    memory_limit: usize,
}

impl Runtime {
    /// Instantiates a source plugin under `name` (the source's name in the config).
    pub async fn instantiate_source(
        &self,
        plugin: &Plugin,
        name: &str,
        grants: Arc<Grants>,
    ) -> Result<SourceInstance, CallError> {
        let mut store = self.new_store(name, grants);
        super::arm(&mut store, QUICK_CALL);
        let bindings =
            SourcePlugin::instantiate_async(&mut store, &plugin.component, &self.source_linker)
                .await
                .map_err(|e| CallError::Instantiate {
                    plugin: name.to_string(),
                    message: format!("{e:#}"),
                })?;
        Ok(SourceInstance {
            store,
            bindings,
            name: name.to_string(),
            memory_limit: self.memory_limit,
        })
    }
}

impl SourceInstance {
    pub fn set_progress(&mut self, hook: ProgressHook) {
        self.store.data_mut().progress = Some(hook);
    }

    pub async fn info(&mut self) -> Result<PluginInfo, CallError> {
        let api = self.bindings.cairn_plugin_source();
        let store = &mut self.store;
        guarded!(store, &self.name, self.memory_limit, QUICK_CALL, async {
            api.call_info(&mut *store).await.map(Ok)
        })
    }

    pub async fn validate(&mut self, options: &str) -> Result<(), CallError> {
        let api = self.bindings.cairn_plugin_source();
        let store = &mut self.store;
        guarded!(
            store,
            &self.name,
            self.memory_limit,
            QUICK_CALL,
            api.call_validate(&mut *store, options)
        )
    }

    /// Runs `backup` with `capture` as the item writer's session; returns the session.
    pub async fn backup(
        &mut self,
        options: &str,
        capture: Capture,
        timeout: Duration,
    ) -> (Capture, Result<(), CallError>) {
        self.store.data_mut().capture = Some(capture);
        let result = match self.store.data_mut().table.push(ItemWriter) {
            Ok(writer) => {
                let api = self.bindings.cairn_plugin_source();
                let store = &mut self.store;
                guarded!(
                    store,
                    &self.name,
                    self.memory_limit,
                    timeout,
                    api.call_backup(&mut *store, options, writer)
                )
            }
            Err(e) => Err(CallError::Instantiate {
                plugin: self.name.clone(),
                message: e.to_string(),
            }),
        };
        let capture = self
            .store
            .data_mut()
            .capture
            .take()
            .expect("the capture stays in the store during the call");
        (capture, result)
    }

    pub async fn restore(
        &mut self,
        options: &str,
        replay: Replay,
        target: &str,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let reader = self.begin_replay(replay)?;
        let api = self.bindings.cairn_plugin_source();
        let store = &mut self.store;
        let result = guarded!(
            store,
            &self.name,
            self.memory_limit,
            timeout,
            api.call_restore(&mut *store, options, reader, target)
        );
        self.end_replay(result)
    }

    pub async fn verify(
        &mut self,
        options: &str,
        replay: Replay,
        scratch: &str,
        timeout: Duration,
    ) -> Result<VerifyReport, CallError> {
        let reader = self.begin_replay(replay)?;
        let api = self.bindings.cairn_plugin_source();
        let store = &mut self.store;
        let result = guarded!(
            store,
            &self.name,
            self.memory_limit,
            timeout,
            api.call_verify(&mut *store, options, reader, scratch)
        );
        self.end_replay(result)
    }

    /// Takes the replay back: a plugin that saw less than the whole item list fails.
    fn end_replay<T>(&mut self, result: Result<T, CallError>) -> Result<T, CallError> {
        let replay = self.store.data_mut().replay.take();
        match replay.and_then(Replay::failure) {
            Some(e) => Err(CallError::ItemList {
                plugin: self.name.clone(),
                message: e.to_string(),
            }),
            None => result,
        }
    }

    /// Puts `replay` in the store and hands out the reader the plugin reads it through.
    fn begin_replay(
        &mut self,
        replay: Replay,
    ) -> Result<wasmtime::component::Resource<ItemReader>, CallError> {
        self.store.data_mut().replay = Some(replay);
        self.store
            .data_mut()
            .table
            .push(ItemReader)
            .map_err(|e| self.instantiate_error(e))
    }

    fn instantiate_error(&self, e: impl std::fmt::Display) -> CallError {
        CallError::Instantiate {
            plugin: self.name.clone(),
            message: e.to_string(),
        }
    }
}

/// A source plugin instantiated with continuous capture (`change-stream`).
pub struct FollowingInstance {
    store: Store<PluginState>,
    bindings: FollowingSourcePlugin,
    name: String,
    memory_limit: usize,
}

impl Runtime {
    /// Instantiates a source plugin that offers continuous capture; one built without it
    /// (or for an earlier WIT) is refused, saying so.
    pub async fn instantiate_following(
        &self,
        plugin: &Plugin,
        name: &str,
        grants: Arc<Grants>,
    ) -> Result<FollowingInstance, CallError> {
        let mut store = self.new_store(name, grants);
        super::arm(&mut store, QUICK_CALL);
        let bindings = FollowingSourcePlugin::instantiate_async(
            &mut store,
            &plugin.component,
            &self.source_linker,
        )
        .await
        .map_err(|e| CallError::Instantiate {
            plugin: name.to_string(),
            message: format!(
                "it does not offer continuous capture (the `change-stream` interface): {e:#}"
            ),
        })?;
        Ok(FollowingInstance {
            store,
            bindings,
            name: name.to_string(),
            memory_limit: self.memory_limit,
        })
    }
}

impl FollowingInstance {
    /// Runs `follow` until the plugin returns (after `chain` said stop). `sync_budget`
    /// bounds each sync, not the whole run: the deadline is renewed at every wait.
    pub async fn follow(
        &mut self,
        options: &str,
        max_log: u64,
        chain: Box<dyn ChainStore>,
        sync_budget: Duration,
    ) -> Result<(), CallError> {
        self.store.data_mut().chain = Some(chain);
        let handles = (
            self.store.data_mut().table.push(ItemWriter),
            self.store.data_mut().table.push(ChangeWriter),
        );
        let result = match handles {
            (Ok(items), Ok(changes)) => {
                let api = self.bindings.cairn_plugin_change_stream();
                super::arm(&mut self.store, sync_budget);
                let outcome = api
                    .call_follow(&mut self.store, options, max_log, items, changes)
                    .await;
                super::settle(&self.name, self.memory_limit, sync_budget, Ok(outcome))
            }
            (Err(e), _) | (_, Err(e)) => Err(CallError::Instantiate {
                plugin: self.name.clone(),
                message: e.to_string(),
            }),
        };
        self.store.data_mut().chain = None;
        self.store.data_mut().capture = None;
        result
    }

    /// Runs `apply` over `changes` onto the snapshot restored at `target`.
    pub async fn apply(
        &mut self,
        options: &str,
        changes: Box<dyn ChangeSource>,
        target: &str,
        timeout: Duration,
    ) -> Result<(), CallError> {
        self.store.data_mut().changes_in = Some(changes);
        let result = match self.store.data_mut().table.push(ChangeReader) {
            Ok(reader) => {
                let api = self.bindings.cairn_plugin_change_stream();
                let store = &mut self.store;
                guarded!(
                    store,
                    &self.name,
                    self.memory_limit,
                    timeout,
                    api.call_apply(&mut *store, options, reader, target)
                )
            }
            Err(e) => Err(CallError::Instantiate {
                plugin: self.name.clone(),
                message: e.to_string(),
            }),
        };
        self.store.data_mut().changes_in = None;
        result
    }
}

//! The `postgres` interface for a plugin instance: connections, queries, COPY out and in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;
use tokio_postgres::Config;
use wasmtime::component::Resource;

use super::*;
use crate::capabilities::bulk::Blob;
use crate::plugin_api::PluginError;
use crate::plugin_api::postgres::{self as wit, ServerIdentity};
use crate::state::PluginState;

impl wit::Host for PluginState {
    async fn connect(
        &mut self,
        url: String,
        password: Option<String>,
    ) -> wasmtime::Result<Result<Resource<Connection>, PluginError>> {
        let made = async {
            let url_error = |message: String| {
                PluginError::Config(crate::plugin_api::types::ConfigError {
                    field: "url".into(),
                    message,
                })
            };
            let (url, tls) =
                crate::capabilities::postgres::tls::split_url(&url).map_err(url_error)?;
            let mut config: Config = url.parse().map_err(|e| {
                PluginError::Config(crate::plugin_api::types::ConfigError {
                    field: "url".into(),
                    message: format!(
                        "not a PostgreSQL URL ({e}): use postgres://user@host:port/database"
                    ),
                })
            })?;
            if let Some(password) = password {
                config.password(password);
            }
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(CONNECT_TIMEOUT);
            }
            config.application_name("cairn");
            config.ssl_mode(tls.mode);
            let tls = crate::capabilities::postgres::tls::connector(&tls).map_err(url_error)?;
            let label = describe(&config);
            check_granted(&self.grants.hosts, &config)?;
            let main = Arc::new(open(&config, &tls, &label).await?);
            let identity = identity(&main, &label).await?;
            Ok(Connection {
                runner: Runner::Main(main.clone()),
                main,
                config,
                tls,
                label,
                identity,
            })
        };
        let made = made.await;
        self.push_made(made)
    }
}

impl wit::HostConnection for PluginState {
    async fn identity(&mut self, conn: Resource<Connection>) -> wasmtime::Result<ServerIdentity> {
        Ok(self.table.get(&conn)?.identity.clone())
    }

    async fn query(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
    ) -> wasmtime::Result<Result<Vec<Vec<Option<String>>>, PluginError>> {
        let conn = self.table.get(&conn)?;
        Ok(simple_rows(&conn.main, &conn.label, &sql).await)
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let conn = self.table.get(&conn)?;
        Ok(conn
            .main
            .batch_execute(&sql)
            .await
            .map_err(|e| pg_error(&conn.label, e)))
    }

    async fn open_workers(
        &mut self,
        conn: Resource<Connection>,
        count: u32,
        setup: String,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let entry = self.table.get(&conn)?;
        let (config, tls, label) = (entry.config.clone(), entry.tls.clone(), entry.label.clone());
        let opened = async {
            let count = count.clamp(1, 64) as usize;
            let mut clients = Vec::with_capacity(count);
            for _ in 0..count {
                let client = open(&config, &tls, &label).await?;
                if !setup.is_empty() {
                    client
                        .batch_execute(&setup)
                        .await
                        .map_err(|e| pg_error(&label, e))?;
                }
                clients.push(Arc::new(client));
            }
            Ok::<_, PluginError>(Workers {
                idle: std::sync::Mutex::new(clients),
                free: Arc::new(Semaphore::new(count)),
                count,
            })
        }
        .await;
        Ok(match opened {
            Ok(workers) => {
                self.table.get_mut(&conn)?.runner = Runner::Workers(Arc::new(workers));
                Ok(())
            }
            Err(e) => Err(e),
        })
    }

    async fn copy_out(
        &mut self,
        conn: Resource<Connection>,
        statement: String,
    ) -> wasmtime::Result<Resource<CopyOut>> {
        let conn = self.table.get(&conn)?;
        let copy = CopyOut {
            statement: Some(statement),
            runner: conn.runner.clone(),
            label: conn.label.clone(),
            rows: Arc::new(AtomicU64::new(0)),
        };
        Ok(self.table.push(copy)?)
    }

    async fn copy_in(
        &mut self,
        conn: Resource<Connection>,
        loads: Vec<wit::CopyIn>,
    ) -> wasmtime::Result<Result<Vec<u64>, PluginError>> {
        let mut inputs = Vec::with_capacity(loads.len());
        for load in loads {
            let blob = self.table.delete(load.contents)?.without_prefetch();
            inputs.push((load.statement, blob));
        }
        let conn = self.table.get(&conn)?;
        let label = conn.label.clone();
        Ok(
            on_workers(&conn.runner, inputs, move |lease, (statement, blob)| {
                let label = label.clone();
                async move { copy_in(&lease, &label, &statement, blob).await }
            })
            .await,
        )
    }

    async fn execute_parallel(
        &mut self,
        conn: Resource<Connection>,
        statements: Vec<String>,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        let conn = self.table.get(&conn)?;
        let label = conn.label.clone();
        Ok(on_workers(&conn.runner, statements, move |lease, sql| {
            let label = label.clone();
            async move {
                lease
                    .client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| pg_error(&label, e))
            }
        })
        .await
        .map(drop))
    }

    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wit::HostCopyOut for PluginState {
    async fn contents(
        &mut self,
        copy: Resource<CopyOut>,
    ) -> wasmtime::Result<Result<Resource<Blob>, PluginError>> {
        let copy = self.table.get_mut(&copy)?;
        let Some(statement) = copy.statement.take() else {
            return Ok(Err(PluginError::Permanent(
                "the contents of a COPY OUT can be taken once".into(),
            )));
        };
        let blob = CopyOut::into_stream(
            statement,
            copy.runner.clone(),
            copy.label.clone(),
            copy.rows.clone(),
        );
        self.push_made(Ok(blob))
    }

    async fn rows(&mut self, copy: Resource<CopyOut>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&copy)?.rows.load(Ordering::Relaxed))
    }

    async fn drop(&mut self, rep: Resource<CopyOut>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

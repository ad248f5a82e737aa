//! The `postgres` capability: PostgreSQL connections run by the host (tokio-postgres),
//! catalog queries, COPY OUT streams that splice into the item writer natively, and COPY
//! IN and statements run in parallel on worker connections.
//!
//! A plugin reaches only the hosts its grants name. Worker connections share the main
//! connection's settings; what makes them consistent (one exported snapshot) is the
//! plugin's `setup` statement, so the capability stays a plain client.

mod host;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::capabilities::bulk::{Blob, BlobError};
use crate::plugin_api::PluginError;
use crate::plugin_api::postgres::ServerIdentity;

/// How long opening a connection may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The most rows `query` returns: it is meant for catalogs and probes, not table data.
const MAX_ROWS: usize = 1_000_000;
/// How many bytes of COPY OUT rows go downstream together.
const COPY_OUT_BATCH: usize = 256 * 1024;
/// How much of a blob one COPY IN message carries.
const COPY_IN_PIECE: usize = 1024 * 1024;

/// A connection a plugin holds, with the worker connections it opened.
pub struct Connection {
    main: Arc<Client>,
    config: Config,
    tls: MakeRustlsConnect,
    label: String,
    identity: ServerIdentity,
    runner: Runner,
}

/// One COPY OUT, run when its contents are first read.
pub struct CopyOut {
    statement: Option<String>,
    runner: Runner,
    label: String,
    rows: Arc<AtomicU64>,
}

/// Where bulk statements run: on the main connection, or on a free worker.
#[derive(Clone)]
enum Runner {
    Main(Arc<Client>),
    Workers(Arc<Workers>),
}

struct Workers {
    idle: std::sync::Mutex<Vec<Arc<Client>>>,
    free: Arc<Semaphore>,
    count: usize,
}

/// A connection lent to one statement; a worker goes back to the pool when dropped (before
/// its permit is released, so a waiter always finds an idle client).
struct Lease {
    client: Arc<Client>,
    home: Option<Arc<Workers>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(workers) = &self.home
            && let Ok(mut idle) = workers.idle.lock()
        {
            idle.push(self.client.clone());
        }
    }
}

impl Runner {
    async fn lease(&self) -> Lease {
        match self {
            Runner::Main(client) => Lease {
                client: client.clone(),
                home: None,
                _permit: None,
            },
            Runner::Workers(workers) => {
                // The semaphore is never closed, and holds exactly as many permits as
                // there are clients, so a permit always finds one idle.
                let permit = workers.free.clone().acquire_owned().await.ok();
                let client = workers
                    .idle
                    .lock()
                    .ok()
                    .and_then(|mut idle| idle.pop())
                    .expect("a permit always has an idle worker");
                Lease {
                    client,
                    home: Some(workers.clone()),
                    _permit: permit,
                }
            }
        }
    }

    fn parallelism(&self) -> usize {
        match self {
            Runner::Main(_) => 1,
            Runner::Workers(w) => w.count,
        }
    }
}

/// `host:port/database` of a config, for messages.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
    )
}

/// Maps a client error to what a plugin can act on, naming the server and the fix.
fn pg_error(label: &str, e: tokio_postgres::Error) -> PluginError {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let mut message = format!("{label}: {} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            message.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            message.push_str(&format!("; hint: {hint}"));
        }
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            PluginError::Denied(format!(
                "{message}: check the user in the URL and the `password` option"
            ))
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            PluginError::Denied(message)
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            PluginError::NotFound(message)
        } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::ADMIN_SHUTDOWN
        {
            PluginError::Retryable(message)
        } else {
            PluginError::Permanent(message)
        };
    }
    // The causes say what actually went wrong ("error performing TLS handshake" alone
    // does not): name them all.
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    if e.is_closed() || text.contains("error connecting") || text.contains("timed out") {
        PluginError::Retryable(format!(
            "{label}: {text}: is the server running and reachable at this host and port?"
        ))
    } else if text.contains("TLS") || text.contains("SSL") || text.contains("certificate") {
        PluginError::Permanent(format!(
            "{label}: {text}: check the URL's sslmode (disable, prefer, require, verify-full) and sslrootcert"
        ))
    } else {
        PluginError::Permanent(format!("{label}: {text}"))
    }
}

/// Whether every host of the URL is granted (TCP only: a socket directory is not a grant).
fn check_granted(granted: &[String], config: &Config) -> Result<(), PluginError> {
    let ports = config.get_ports();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let name = match host {
            Host::Tcp(name) => name,
            #[cfg(unix)]
            Host::Unix(path) => {
                return Err(PluginError::Denied(format!(
                    "{}: connecting through a Unix socket is not supported; use host=127.0.0.1 (TCP)",
                    path.display()
                )));
            }
        };
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let with_port = format!("{name}:{port}");
        if !crate::sandbox::host_granted(granted, name, port) {
            return Err(PluginError::Denied(format!(
                "{with_port} is not granted to this plugin: name it in the source's `url`, or grant it with hosts = [\"{with_port}\"]"
            )));
        }
    }
    if config.get_hosts().is_empty() {
        return Err(PluginError::Config(crate::plugin_api::types::ConfigError {
            field: "url".into(),
            message: "the URL names no host: use postgres://user@host:port/database".into(),
        }));
    }
    Ok(())
}

async fn open(
    config: &Config,
    tls: &MakeRustlsConnect,
    label: &str,
) -> Result<Client, PluginError> {
    let (client, connection) = config
        .connect(tls.clone())
        .await
        .map_err(|e| pg_error(label, e))?;
    let label = label.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection to {label} ended: {e}");
        }
    });
    Ok(client)
}

async fn simple_rows(
    client: &Client,
    label: &str,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, PluginError> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| pg_error(label, e))?;
    let mut rows = Vec::new();
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            if rows.len() == MAX_ROWS {
                return Err(PluginError::Permanent(format!(
                    "{label}: the query returned more than {MAX_ROWS} rows"
                )));
            }
            rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

async fn identity(client: &Client, label: &str) -> Result<ServerIdentity, PluginError> {
    let rows = simple_rows(
        client,
        label,
        "SELECT system_identifier::text, current_database(), current_setting('server_version_num') FROM pg_catalog.pg_control_system()",
    )
    .await?;
    let row = rows.first().ok_or_else(|| {
        PluginError::Permanent(format!("{label}: the server did not report its identity"))
    })?;
    let field = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    Ok(ServerIdentity {
        system_identifier: field(0),
        database: field(1),
        server_version: field(2).parse().unwrap_or(0),
    })
}

/// Counts the rows of text-format COPY data: each ends with a newline, and newlines inside
/// values are escaped.
fn count_lines(bytes: &[u8]) -> u64 {
    // Summed a block at a time: the compiler vectorises the inner loop.
    bytes
        .chunks(255)
        .map(|block| block.iter().map(|&b| u8::from(b == b'\n')).sum::<u8>() as u64)
        .sum()
}

impl CopyOut {
    fn into_stream(statement: String, runner: Runner, label: String, rows: Arc<AtomicU64>) -> Blob {
        enum State {
            Start,
            Copying(Lease, std::pin::Pin<Box<tokio_postgres::CopyOutStream>>),
            /// The server said the COPY is complete: polling again would be an error.
            Done,
        }
        let stream = futures::stream::try_unfold(State::Start, move |state| {
            let (statement, runner, label, rows) = (
                statement.clone(),
                runner.clone(),
                label.clone(),
                rows.clone(),
            );
            async move {
                let (lease, mut copy) = match state {
                    State::Start => {
                        let lease = runner.lease().await;
                        let copy = lease
                            .client
                            .copy_out(statement.as_str())
                            .await
                            .map_err(|e| remote(&label, &statement, e))?;
                        (lease, Box::pin(copy))
                    }
                    State::Copying(lease, copy) => (lease, copy),
                    State::Done => return Ok(None),
                };
                // The server sends one message a row: gather them into larger pieces, so
                // the per-piece work downstream is paid per batch, not per row.
                let mut batch = BytesMut::new();
                let mut next = None;
                while batch.len() < COPY_OUT_BATCH {
                    match copy.next().await {
                        Some(Ok(row)) => batch.extend_from_slice(&row),
                        Some(Err(e)) => return Err(remote(&label, &statement, e)),
                        None => {
                            next = Some(State::Done);
                            break;
                        }
                    }
                }
                if batch.is_empty() {
                    return Ok(None);
                }
                rows.fetch_add(count_lines(&batch), Ordering::Relaxed);
                let next = next.unwrap_or(State::Copying(lease, copy));
                Ok(Some((batch.freeze(), next)))
            }
        });
        Blob::Stream {
            stream: Box::pin(stream),
            current: Bytes::new(),
        }
    }
}

fn remote(label: &str, statement: &str, e: tokio_postgres::Error) -> BlobError {
    let short: String = statement.chars().take(120).collect();
    BlobError::Remote(match pg_error(label, e) {
        PluginError::Retryable(m) | PluginError::Permanent(m) | PluginError::Denied(m) => {
            format!("{m} (in `{short}`)")
        }
        other => format!("{other:?} (in `{short}`)"),
    })
}

async fn copy_in(
    lease: &Lease,
    label: &str,
    statement: &str,
    mut blob: Blob,
) -> Result<u64, PluginError> {
    let sink = lease
        .client
        .copy_in::<_, Bytes>(statement)
        .await
        .map_err(|e| pg_error(label, e))?;
    futures::pin_mut!(sink);
    while let Some(piece) = blob
        .next_piece(COPY_IN_PIECE)
        .await
        .map_err(|e| PluginError::Permanent(format!("reading the data for `{statement}`: {e}")))?
    {
        sink.send(piece).await.map_err(|e| pg_error(label, e))?;
    }
    sink.finish().await.map_err(|e| pg_error(label, e))
}

/// Runs `work` for each input on the runner's connections, as many at a time as it has;
/// the results come back in input order and the first failure aborts the rest.
async fn on_workers<I, T, F, Fut>(
    runner: &Runner,
    inputs: Vec<I>,
    work: F,
) -> Result<Vec<T>, PluginError>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(Lease, I) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, PluginError>> + Send + 'static,
{
    crate::parallel::in_order(runner.parallelism(), inputs, |input| {
        let (runner, work) = (runner.clone(), work.clone());
        async move {
            let lease = runner.lease().await;
            work(lease, input).await
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_tcp_hosts_connect() {
        let config: Config = "postgres://u@127.0.0.1:5433/app".parse().unwrap();
        assert!(check_granted(&["127.0.0.1:5433".into()], &config).is_ok());
        assert!(check_granted(&["127.0.0.1".into()], &config).is_ok());
        assert!(matches!(
            check_granted(&["127.0.0.1:5432".into()], &config),
            Err(PluginError::Denied(_))
        ));
        let socket: Config = "host=/var/run/postgresql dbname=app".parse().unwrap();
        assert!(matches!(
            check_granted(&["localhost".into()], &socket),
            Err(PluginError::Denied(_))
        ));
    }

    #[test]
    fn text_copy_rows_are_lines() {
        assert_eq!(count_lines(b"1\ta\\nb\n2\t\\N\n"), 2);
        assert_eq!(count_lines(b""), 0);
    }
}

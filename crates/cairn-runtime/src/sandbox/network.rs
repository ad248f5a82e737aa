//! The network allow-list of a plugin. A plugin gets no network unless its grants name
//! hosts; then it may open TCP connections to exactly those (`host` for any port, or
//! `host:port`), nothing else: no listening, no UDP, no other destination.
//!
//! wasi:sockets asks the check about every address a socket uses. A TCP connect first
//! binds implicitly to the wildcard address with port 0, so that bind, and only that one,
//! is allowed. wasi:http is not linked into plugins at all, so it is no second door.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use wasmtime_wasi::sockets::SocketAddrUse;

use super::HostPort;

/// One allowed destination: an address, and a port unless any port is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

/// Resolves the granted `host` / `host:port` entries (names through the system resolver,
/// once, when the plugin starts). Entries that do not resolve allow nothing.
pub fn resolve(hosts: &[String]) -> Vec<Allowed> {
    let mut out = Vec::new();
    for entry in hosts {
        let HostPort { host, port } = HostPort::parse(entry);
        let lookup = format!("{host}:{}", port.unwrap_or(0));
        match lookup.to_socket_addrs() {
            Ok(addrs) => out.extend(addrs.map(|a| Allowed { ip: a.ip(), port })),
            Err(e) => {
                tracing::warn!("granted host `{entry}` does not resolve ({e}); it allows nothing")
            }
        }
    }
    out
}

/// Whether a plugin with the `allowed` list may use `addr` for `usage`.
pub fn permitted(allowed: &[Allowed], addr: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        // The implicit bind of an outgoing connection.
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        SocketAddrUse::TcpConnect => allowed
            .iter()
            .any(|a| a.ip == addr.ip() && a.port.is_none_or(|p| p == addr.port())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_destinations_and_the_implicit_bind_pass() {
        let allowed = resolve(&["127.0.0.1:5432".into(), "[::1]".into()]);
        let v4 = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(permitted(
            &allowed,
            v4("127.0.0.1:5432"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!permitted(
            &allowed,
            v4("127.0.0.1:5433"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!permitted(
            &allowed,
            v4("127.0.0.2:5432"),
            SocketAddrUse::TcpConnect
        ));
        assert!(permitted(
            &allowed,
            v4("[::1]:80"),
            SocketAddrUse::TcpConnect
        ));
        assert!(permitted(&allowed, v4("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(!permitted(
            &allowed,
            v4("0.0.0.0:8080"),
            SocketAddrUse::TcpBind
        ));
        assert!(!permitted(
            &allowed,
            v4("127.0.0.1:5432"),
            SocketAddrUse::TcpListen
        ));
        assert!(!permitted(
            &allowed,
            v4("127.0.0.1:5432"),
            SocketAddrUse::UdpSend
        ));
        assert!(!permitted(
            &[],
            v4("127.0.0.1:5432"),
            SocketAddrUse::TcpConnect
        ));
    }
}

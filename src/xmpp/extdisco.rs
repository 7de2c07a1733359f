//! External service discovery (XEP-0215): the sans-IO part lives in the protocol crate
//! ([`jingle_ice_proto::xmpp::extdisco`], re-exported here); this module adds [`resolve`], the
//! one step that does I/O (DNS).

use std::net::SocketAddr;

pub use jingle_ice_proto::xmpp::extdisco::*;

/// Why a host could not be resolved by [`resolve`].
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {error}")]
pub struct ResolveError {
    /// The host name.
    pub host: String,
    /// The resolver's error (or "no address" when the name has none).
    pub error: std::io::Error,
}

/// **Does I/O.** Resolves every server of `plan` with the system resolver
/// (`tokio::net::lookup_host`) and collects them. For each server, the first IPv4 and the
/// first IPv6 address are kept (one STUN target or TURN allocation per address family, not
/// one per record). Hosts that fail to resolve are returned alongside, and do not stop the
/// others. IP-literal hosts need no lookup.
pub async fn resolve(plan: &ServerPlan) -> (IceServers, Vec<ResolveError>) {
    let (mut servers, todo) = plan.split_literal();
    let mut errors = Vec::new();
    for server in todo {
        match tokio::net::lookup_host((server.host.as_str(), server.port)).await {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                let v4 = addrs.iter().find(|a| a.is_ipv4());
                let v6 = addrs.iter().find(|a| a.is_ipv6());
                if v4.is_none() && v6.is_none() {
                    errors.push(ResolveError {
                        host: server.host.clone(),
                        error: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
                    });
                }
                for addr in v4.into_iter().chain(v6) {
                    servers.add(server, *addr);
                }
            }
            Err(error) => errors.push(ResolveError {
                host: server.host.clone(),
                error,
            }),
        }
    }
    (servers, errors)
}

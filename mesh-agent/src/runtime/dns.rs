//! DNS lookups for DNS seeds ([`mesh_core::discovery`]): the shell's half. The node
//! decides when to look a name up ([`mesh_core::node::Output::ResolveSeed`]); this does
//! the lookup with hickory-resolver and says why one failed.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use mesh_core::discovery::{DnsSeed, ResolveFailure};

/// How long one query waits for an answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A resolver for DNS seeds.
#[derive(Clone)]
pub(crate) struct SeedResolver {
    resolver: TokioResolver,
}

/// A failed lookup: the reason (the metric label) and the resolver's words.
#[derive(Debug)]
pub(crate) struct LookupError {
    pub(crate) reason: ResolveFailure,
    pub(crate) detail: String,
}

impl From<NetError> for LookupError {
    fn from(e: NetError) -> Self {
        let reason = if e.is_nx_domain() {
            ResolveFailure::NxDomain
        } else if e.is_no_records_found() {
            ResolveFailure::NoRecords
        } else if matches!(e, NetError::Timeout) {
            ResolveFailure::Timeout
        } else {
            ResolveFailure::Error
        };
        Self {
            reason,
            detail: e.to_string(),
        }
    }
}

impl SeedResolver {
    /// A resolver asking `server` (UDP, then TCP), or the system's resolvers
    /// (`/etc/resolv.conf`) when `None`.
    pub(crate) fn new(server: Option<SocketAddr>) -> Result<Self, String> {
        let mut builder = match server {
            Some(addr) => {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = addr.port();
                        c
                    })
                    .collect();
                let ns = NameServerConfig::new(addr.ip(), true, connections);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?,
        };
        builder.options_mut().timeout = QUERY_TIMEOUT;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Self { resolver })
    }

    /// The addresses `seed` stands for now: A and AAAA records at the seed's port, or
    /// each SRV target's addresses at the record's port.
    pub(crate) async fn resolve(&self, seed: &DnsSeed) -> Result<Vec<SocketAddr>, LookupError> {
        // The node's backoff is the rate limit; a cached answer would hide a change
        // (or a record that appeared) until its TTL ran out.
        self.resolver.clear_cache();
        match seed {
            DnsSeed::Host { name, port } => {
                let ips = self.resolver.lookup_ip(name.as_str()).await?;
                Ok(ips.iter().map(|ip| SocketAddr::new(ip, *port)).collect())
            }
            DnsSeed::Srv { name } => {
                let srv = self.resolver.srv_lookup(name.as_str()).await?;
                let mut out = Vec::new();
                let mut last_error = None;
                for record in srv.answers() {
                    let RData::SRV(srv) = &record.data else {
                        continue;
                    };
                    match self.resolver.lookup_ip(srv.target.clone()).await {
                        Ok(ips) => out.extend(ips.iter().map(|ip| SocketAddr::new(ip, srv.port))),
                        Err(e) => last_error = Some(LookupError::from(e)),
                    }
                }
                match (out.is_empty(), last_error) {
                    (true, Some(e)) => Err(LookupError {
                        reason: ResolveFailure::NoRecords,
                        detail: format!("no SRV target has an address ({})", e.detail),
                    }),
                    (true, None) => Err(LookupError {
                        reason: ResolveFailure::NoRecords,
                        detail: "no SRV records".to_owned(),
                    }),
                    (false, _) => Ok(out),
                }
            }
        }
    }
}

//! Starting an agent: [`AgentBuilder`], what [`Agent::start`] is made of.
//!
//! The builder holds an [`AgentConfig`] (the node settings, and the admin settings
//! unless the admin API is off) and where TLS comes from ([`Tls`]: files, PEM bytes
//! in memory or a loaded [`TlsIdentity`]). [`AgentBuilder::start`] checks the node
//! settings (and the admin settings only when the admin API is on), loads TLS, binds
//! the QUIC endpoint (and the admin API's TCP listener, unless
//! [`no_admin`](AgentBuilder::no_admin)), and starts the node task. Every failure
//! comes before anything runs: a [`StartError`] leaves nothing bound or running.

use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mesh_core::discovery::{DiscoveryConfig, DnsSeed};
use mesh_core::identity::NodeId;
use mesh_core::membership::{MembershipConfig, Profile};
use mesh_core::node::{Node, NodeConfig};
use mesh_core::registry::RegistryConfig;
use mesh_transport::tls::{TlsError, TlsIdentity};
use mesh_transport::{Transport, TransportConfig};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::{
    boot_incarnation, quorum_boot, Agent, AgentHandle, Clock, Shared, Shell, Snapshot, StartError,
    COMMAND_QUEUE, EVENT_BUFFER,
};
use crate::config::{AgentConfig, ConfigError};

/// Where an agent's TLS identity (cluster CA, node certificate, node key) comes from.
#[derive(Clone)]
pub enum Tls {
    /// Three PEM files, read at start; errors name the file.
    Files {
        /// The cluster CA certificate(s).
        ca: PathBuf,
        /// This node's certificate (optionally followed by intermediates).
        cert: PathBuf,
        /// This node's private key.
        key: PathBuf,
    },
    /// PEM bytes in memory (from a secret store, an environment variable, or
    /// generated); errors name the input ("CA PEM", "certificate PEM", "key PEM").
    Pem {
        /// The cluster CA certificate(s).
        ca: Vec<u8>,
        /// This node's certificate (optionally followed by intermediates).
        cert: Vec<u8>,
        /// This node's private key.
        key: Vec<u8>,
    },
    /// An identity already loaded (and so already checked).
    Identity(TlsIdentity),
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a private key.
        match self {
            Self::Files { ca, cert, key } => f
                .debug_struct("Files")
                .field("ca", ca)
                .field("cert", cert)
                .field("key", key)
                .finish(),
            Self::Pem { ca, cert, .. } => f
                .debug_struct("Pem")
                .field("ca_bytes", &ca.len())
                .field("cert_bytes", &cert.len())
                .finish_non_exhaustive(),
            Self::Identity(id) => f.debug_tuple("Identity").field(id).finish(),
        }
    }
}

impl Tls {
    /// Loads the identity: the certificate must verify under the CA, carry a DNS name
    /// and match the key.
    pub fn load(&self) -> Result<TlsIdentity, TlsError> {
        match self {
            Self::Files { ca, cert, key } => TlsIdentity::from_files(ca, cert, key),
            Self::Pem { ca, cert, key } => TlsIdentity::from_pem_bytes(ca, cert, key),
            Self::Identity(id) => Ok(id.clone()),
        }
    }
}

/// Builds and starts an agent: [`Agent::builder`] for an application (TLS from
/// anywhere, settings by method), [`AgentBuilder::from_config`] for a whole
/// [`AgentConfig`] (what `meshctl agent` and [`Agent::start`] use).
///
/// The admin HTTP API is on by default, at the config's `admin` address (loopback
/// port 7947 unless set); [`no_admin`](Self::no_admin) turns it off, and then no TCP
/// listener is opened at all and the `admin`/`admin_token` settings are not checked.
#[derive(Debug, Clone)]
pub struct AgentBuilder {
    config: AgentConfig,
    tls: Tls,
    admin: bool,
}

impl Agent {
    /// A builder for node `name` (which must be the DNS name in the certificate), with
    /// TLS from `tls` and every other setting at its default ([`AgentConfig::new`]).
    pub fn builder(name: impl Into<String>, tls: Tls) -> AgentBuilder {
        let mut config = AgentConfig::new(name, PathBuf::new(), PathBuf::new(), PathBuf::new());
        if let Tls::Files { ca, cert, key } = &tls {
            config.ca.clone_from(ca);
            config.cert.clone_from(cert);
            config.key.clone_from(key);
        }
        AgentBuilder {
            config,
            tls,
            admin: true,
        }
    }
}

impl AgentBuilder {
    /// A builder with every setting from `config`: TLS from its `ca`, `cert` and `key`
    /// files, the admin API on at its `admin` address.
    pub fn from_config(config: AgentConfig) -> Self {
        let tls = Tls::Files {
            ca: config.ca.clone(),
            cert: config.cert.clone(),
            key: config.key.clone(),
        };
        Self {
            config,
            tls,
            admin: true,
        }
    }

    /// The settings so far. With TLS from memory, `ca`, `cert` and `key` are empty
    /// paths and unused.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Takes TLS from `tls` instead.
    #[must_use]
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// The UDP address the QUIC endpoint binds (default `127.0.0.1:7946`).
    #[must_use]
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.config.bind = addr;
        self
    }

    /// The address peers dial (default: the bind address; required when that is a
    /// wildcard or port 0).
    #[must_use]
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.config.advertise = Some(addr);
        self
    }

    /// The peers to join through (default none: a cluster of one until someone joins).
    #[must_use]
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.config.seeds = seeds.into_iter().collect();
        self
    }

    /// Seeds given by DNS name, looked up while the node is alone and mixed with
    /// [`seeds`](Self::seeds) (see [`mesh_core::discovery`]), e.g.
    /// `"dns+srv://_mesh._udp.mesh.internal".parse()?`.
    #[must_use]
    pub fn dns_seeds(mut self, seeds: impl IntoIterator<Item = DnsSeed>) -> Self {
        self.config.dns_seeds = seeds.into_iter().collect();
        self
    }

    /// The DNS server (`IP:PORT`) DNS seeds are looked up at (default: the system's
    /// resolvers, `/etc/resolv.conf`).
    #[must_use]
    pub fn dns_server(mut self, server: SocketAddr) -> Self {
        self.config.dns_server = Some(server);
        self
    }

    /// Where durable state lives (the boot counter; a voter's acceptor state).
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// The voters of the quorum plane (3 or 5 node names, the same on every node);
    /// without voters, claims and strong names are off. A voter needs a
    /// [`data_dir`](Self::data_dir).
    #[must_use]
    pub fn voters<S: Into<String>>(mut self, voters: impl IntoIterator<Item = S>) -> Self {
        self.config.voters = voters.into_iter().map(Into::into).collect();
        self
    }

    /// Number of claim shards (the same on every node).
    #[must_use]
    pub fn shards(mut self, shards: u32) -> Self {
        self.config.shards = shards;
        self
    }

    /// Default TTL of claims.
    #[must_use]
    pub fn claims_ttl(mut self, ttl: Duration) -> Self {
        self.config.claims_ttl = ttl;
        self
    }

    /// Hand a dead holder's tasks to the HRW-preferred live sessions (see
    /// [`AgentConfig::claims_reassign`](crate::config::AgentConfig::claims_reassign)).
    #[must_use]
    pub fn claims_reassign(mut self, on: bool) -> Self {
        self.config.claims_reassign = on;
        self
    }

    /// SWIM timing profile.
    #[must_use]
    pub fn profile(mut self, profile: Profile) -> Self {
        self.config.profile = profile;
        self
    }

    /// How long a down node's groups and names stay hidden before they are purged.
    #[must_use]
    pub fn permdown(mut self, permdown: Duration) -> Self {
        self.config.permdown = permdown;
        self
    }

    /// Most live processes (`max_processes`, default 250 000); one more spawn is
    /// refused.
    #[must_use]
    pub fn max_processes(mut self, max: usize) -> Self {
        self.config.max_processes = max;
        self
    }

    /// Most open monitors (`max_monitors`, default 10 000); one more is refused.
    #[must_use]
    pub fn max_monitors(mut self, max: usize) -> Self {
        self.config.max_monitors = max;
        self
    }

    /// Default capacity of a process mailbox, in messages.
    #[must_use]
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.config.mailbox_capacity = capacity;
        self
    }

    /// Serves the admin HTTP API on `addr` (port 0: any free port; read it back with
    /// [`AgentHandle::admin_api`]). A non-loopback address needs an
    /// [`admin_token`](Self::admin_token).
    #[must_use]
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.config.admin = addr;
        self.admin = true;
        self
    }

    /// The bearer token the admin API requires.
    #[must_use]
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.config.admin_token = Some(token.into());
        self
    }

    /// No admin HTTP API: no TCP listener is opened at all, and the `admin` and
    /// `admin_token` settings are neither checked nor used.
    /// [`AgentHandle::admin_api`] is then `None`.
    #[must_use]
    pub fn no_admin(mut self) -> Self {
        self.admin = false;
        self
    }

    /// Checks the settings, loads TLS, binds the transport (and the admin API unless
    /// it is off), and starts joining through the seeds. Must run on a tokio runtime
    /// (multi-threaded or current-thread). On error nothing is left bound or running.
    pub async fn start(self) -> Result<AgentHandle, StartError> {
        let Self { config, tls, admin } = self;
        config.validate_node()?;
        if admin {
            config.validate_admin()?;
        }
        let tls = tls.load().map_err(StartError::Tls)?;
        if tls.name() != config.name {
            return Err(StartError::CertName {
                cert: tls.name().to_owned(),
                name: config.name.clone(),
            });
        }
        let incarnation = boot_incarnation(config.data_dir.as_deref())?;
        let metrics = crate::metrics::install();
        let admin_listener = if admin {
            let listener = tokio::net::TcpListener::bind(config.admin)
                .await
                .map_err(|e| StartError::Admin {
                    addr: config.admin,
                    reason: e.to_string(),
                })?;
            let addr = listener.local_addr().map_err(|e| StartError::Admin {
                addr: config.admin,
                reason: e.to_string(),
            })?;
            Some((listener, addr))
        } else {
            None
        };
        let (transport, inbound) = Transport::bind(TransportConfig::new(config.bind, tls))
            .await
            .map_err(|e| StartError::Bind(e.to_string()))?;

        let resolver = if config.dns_seeds.is_empty() {
            None
        } else {
            Some(
                super::dns::SeedResolver::new(config.dns_server)
                    .map_err(|e| StartError::Config(ConfigError::DnsServer(e)))?,
            )
        };
        let (quorum, store) = quorum_boot(&config)?;
        let clock = Clock::new();
        let now = clock.now();
        let identity = NodeId::new(config.name.clone(), config.advertise_addr(), incarnation);
        let node_config = NodeConfig {
            membership: MembershipConfig {
                profile: config.profile,
                seeds: config.seeds.clone(),
                packet_size: config.packet_size,
                ..MembershipConfig::default()
            },
            registry: RegistryConfig {
                permdown: config.permdown,
            },
            mailbox_capacity: config.mailbox_capacity,
            max_processes: config.max_processes,
            max_monitors: config.max_monitors,
            quorum,
            tags: config.tags.clone(),
            discovery: DiscoveryConfig {
                seeds: config.dns_seeds.clone(),
                ..DiscoveryConfig::default()
            },
            ..NodeConfig::default()
        };
        let node = Node::new(
            identity.clone(),
            node_config,
            rand::random(),
            now,
            clock.wall_ms(),
        )
        .map_err(|e| {
            StartError::Config(match e {
                mesh_core::node::NodeError::Dissemination(e) => {
                    ConfigError::Dissemination(e.to_string())
                }
                mesh_core::node::NodeError::Quorum(e) => ConfigError::Voters(e.to_string()),
                mesh_core::node::NodeError::Tags(e) => ConfigError::Tags(e),
            })
        })?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (claim_events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            snapshot: RwLock::new(Snapshot {
                me: identity,
                members: Vec::new(),
                ready: config.seeds.is_empty() && config.dns_seeds.is_empty(),
                tags: node
                    .tags()
                    .items()
                    .into_iter()
                    .map(|i| (i.name, i.tags))
                    .collect(),
                tags_digest: node.tags().digest(),
            }),
            started: now,
            clock,
            last_turn_ms: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            events,
            claim_events,
            next_command: AtomicU64::new(0),
            metrics,
            admin: admin_listener.as_ref().map(|(_, addr)| *addr),
            dns_server: config.dns_server,
        });
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (stopped_tx, stopped) = watch::channel(false);
        let handle = AgentHandle {
            shared: shared.clone(),
            commands,
            stopped,
        };

        let admin = admin_listener.map(|(listener, _)| {
            let (stop_tx, stop) = oneshot::channel::<()>();
            let router = crate::admin::agent_router(handle.clone(), config.admin_token.clone());
            let task = tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.await;
                };
                if let Err(e) = crate::admin::serve(listener, router, shutdown).await {
                    tracing::error!(
                        error = %e,
                        "admin API stopped; the node runs on without /metrics, /readyz and \
                         meshctl: restart the agent to get them back"
                    );
                }
            });
            (stop_tx, task)
        });

        let seeds_configured = !config.seeds.is_empty() || !config.dns_seeds.is_empty();
        tokio::spawn(async move {
            let (done_tx, done_rx) = mpsc::unbounded_channel();
            let (persist_tx, persist_rx) = mpsc::unbounded_channel();
            let (resolved_tx, resolved_rx) = mpsc::unbounded_channel();
            let mut shell = Shell {
                store,
                persist_tx,
                waiters: HashMap::new(),
                node,
                transport: transport.clone(),
                timers: BinaryHeap::new(),
                timer_seq: 0,
                shared,
                seeds_configured,
                done_tx,
                resolver,
                resolved_tx,
                next_publish: now,
            };
            shell
                .run(inbound, command_rx, done_rx, persist_rx, resolved_rx)
                .await;
            transport.shutdown().await;
            if let Some((stop_tx, task)) = admin {
                let _ = stop_tx.send(());
                let _ = task.await;
            }
            let _ = stopped_tx.send(true);
        });
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use mesh_transport::certs::{generate_ca, issue_node_cert};

    use super::*;

    fn identity(name: &str) -> TlsIdentity {
        let ca = generate_ca("t").expect("ca");
        let node = issue_node_cert(&ca, name).expect("node");
        TlsIdentity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).expect("identity")
    }

    fn free_port() -> SocketAddr {
        UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free port")
    }

    #[tokio::test]
    async fn without_admin_the_admin_settings_are_not_checked_and_nothing_listens() {
        let mut config = AgentConfig::new("n1", PathBuf::new(), PathBuf::new(), PathBuf::new());
        config.bind = free_port();
        // Reachable from other hosts and no token: refused with the admin API on...
        config.admin = "0.0.0.0:0".parse().expect("addr");
        let tls = Tls::Identity(identity("n1"));
        let err = AgentBuilder::from_config(config.clone())
            .tls(tls.clone())
            .start()
            .await
            .expect_err("a public admin API without a token");
        assert!(err.to_string().starts_with("admin_token:"), "{err}");
        // ...and nothing was bound.
        drop(UdpSocket::bind(config.bind).expect("the QUIC port is still free"));

        // ...accepted without it, and then there is no admin address.
        let agent = AgentBuilder::from_config(config)
            .tls(tls)
            .no_admin()
            .start()
            .await
            .expect("starts without the admin API");
        assert_eq!(agent.admin_api(), None);
        assert_eq!(agent.admin_addr(), SocketAddr::from(([0, 0, 0, 0], 0)));
        agent.leave(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn the_admin_api_is_served_where_asked_and_reported() {
        let agent = Agent::builder("n1", Tls::Identity(identity("n1")))
            .bind(free_port())
            .admin("127.0.0.1:0".parse().expect("addr"))
            .start()
            .await
            .expect("starts");
        let admin = agent.admin_api().expect("an admin address");
        assert_ne!(admin.port(), 0);
        assert_eq!(agent.admin_addr(), admin);
        // Something listens there.
        tokio::net::TcpStream::connect(admin)
            .await
            .expect("the admin API accepts connections");
        agent.leave(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_refused() {
        let err = Agent::builder("n1", Tls::Identity(identity("n2")))
            .bind(free_port())
            .no_admin()
            .start()
            .await
            .expect_err("n2's certificate for n1");
        assert!(
            matches!(err, StartError::CertName { ref cert, ref name } if cert == "n2" && name == "n1"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn dns_seeds_alone_make_the_agent_wait_to_join_and_a_bad_dns_server_is_refused() {
        let seed: DnsSeed = "dns://mesh.invalid:7946".parse().expect("seed");
        // Nothing answers DNS there: the agent runs, alone and not ready.
        let dns = free_port();
        let agent = Agent::builder("n1", Tls::Identity(identity("n1")))
            .bind(free_port())
            .no_admin()
            .dns_seeds([seed.clone()])
            .dns_server(dns)
            .start()
            .await
            .expect("starts");
        assert!(!agent.is_ready(), "a DNS seed is a seed: not ready alone");
        assert_eq!(agent.dns_server(), Some(dns));
        agent.leave(Duration::from_secs(1)).await;
        // Without DNS seeds, alone is ready.
        let agent = Agent::builder("n2", Tls::Identity(identity("n2")))
            .bind(free_port())
            .no_admin()
            .start()
            .await
            .expect("starts");
        assert!(agent.is_ready());
        agent.leave(Duration::from_secs(1)).await;
        let err = Agent::builder("n3", Tls::Identity(identity("n3")))
            .bind(free_port())
            .no_admin()
            .dns_seeds([seed])
            .dns_server("0.0.0.0:53".parse().expect("addr"))
            .start()
            .await
            .expect_err("no server to ask");
        assert!(err.to_string().starts_with("dns_server:"), "{err}");
    }

    /// A caller that gives up on `spawn` after its command is queued but before the
    /// reply (a cancelled future: an HTTP client that closed its `listen` request)
    /// must not leave the process behind: the shell ends what an unclaimed reply hands
    /// over, whether the reply was not sent yet or sits in the channel untaken. Without
    /// either half, 100 of the 200 processes below stay for good.
    #[tokio::test]
    async fn a_spawn_abandoned_before_its_reply_leaves_no_process() {
        use futures_util::FutureExt as _;
        let agent = Agent::builder("n1", Tls::Identity(identity("n1")))
            .bind(free_port())
            .no_admin()
            .start()
            .await
            .expect("starts");
        let h = &agent;
        for _ in 0..100 {
            // One poll queues the command; the node task cannot answer before it ends
            // (this runtime has one thread), so the future is dropped unanswered.
            assert!(
                h.spawn(None).now_or_never().is_none(),
                "answered in one poll"
            );
        }
        for _ in 0..100 {
            // The other window: the reply is in the channel, never taken.
            let mut spawn = Box::pin(h.spawn(None));
            assert!(
                spawn.as_mut().now_or_never().is_none(),
                "answered in one poll"
            );
            // A barrier, not a sleep: this call is queued behind the spawn, so when it
            // returns the node has handled the spawn and its reply is in the channel.
            h.call(|_, _| ()).await.expect("node");
            drop(spawn);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let count = h.call(|node, _| node.process_count()).await.expect("node");
            if count == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} abandoned processes are still alive"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A spawn that is waited for still works, and its handle still ends it.
        let p = h.spawn(None).await.expect("spawn");
        assert_eq!(h.call(|n, _| n.process_count()).await.expect("node"), 1);
        drop(p);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while h.call(|n, _| n.process_count()).await.expect("node") != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a dropped handle's process stays"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        agent.leave(Duration::from_secs(2)).await;
    }

    #[test]
    fn debug_never_shows_the_key() {
        let tls = Tls::Pem {
            ca: b"ca".to_vec(),
            cert: b"cert".to_vec(),
            key: b"SECRET KEY".to_vec(),
        };
        assert!(!format!("{tls:?}").contains("SECRET"));
    }
}

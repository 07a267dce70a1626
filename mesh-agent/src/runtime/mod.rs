//! The tokio shell: feeds [`mesh_core::node::Node`] from the QUIC transport and a timer
//! heap, carries out what it asks for, publishes events and metrics, and (unless the
//! agent was built with [`AgentBuilder::no_admin`]) serves the admin API.
//!
//! The shell holds no protocol logic. One task owns the state machine and reads one
//! bounded input channel (the transport's), a command channel (the API: each operation
//! is a [`mesh_core::node::Command`] value handed to `Node::handle_command`, answered by
//! one `Output::Completed` that the one waiter map routes back; reads are closures over
//! `&Node`) and a channel of finished requests; timers live in a deadline heap inside that task —
//! never one spawned sleep per timer (foca issue 26) — and all timers due together are
//! handled in deadline, then foca, order. The loop never awaits IO: datagram and frame
//! sends are non-blocking (the transport counts what it drops), and requests run as
//! spawned tasks whose results come back through the channel.
//!
//! Time: the node's `now` comes from [`Clock`], which follows CLOCK_BOOTTIME, a clock
//! that keeps counting while the machine is suspended — claim validity must never be
//! measured on a clock that stops.
//!
//! ```text
//!  transport ──Inbound──▶ ┌────────────────── node task ───────────────────┐
//!  admin/API ──Command──▶ │ Node::handle_* (now)          ◀── timer heap    │
//!  requests ───Done─────▶ │ poll_output: Datagram/Frame ─▶ transport        │
//!                         │              Request ─▶ spawned transport.request│
//!                         │              Timer ─▶ heap                      │
//!                         │              Membership ─▶ broadcast + metrics  │
//!                         │              Completed ─▶ waiter; Carried ─▶ node│
//!                         └──────────────▶ snapshot (members, ready, live)  ┘
//! ```

mod api;
mod clock;
mod dns;
mod election;
mod start;
mod store;

pub use api::{ApiError, Events, EventsError, Hold, MonitorError, MonitorHandle, ProcessHandle};
pub use clock::Clock;
pub use election::{LeaderOptions, LeaderState, Leadership};
pub use mesh_api::{MemberView, QuorumStatus};
pub use start::{AgentBuilder, Tls};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mesh_transport::{Inbound, PeerRef, Transport};
use metrics::{counter, gauge};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::AgentConfig;
use mesh_core::claims::{HoldOutcome, HolderEvent};
use mesh_core::discovery::{DnsSeed, Resolve, ResolveFailure};
use mesh_core::identity::NodeId;
use mesh_core::membership::{EventKind, MemberInfo, MemberState, MembershipEvent, SwimTimer};
use mesh_core::node::claims_plane::QuorumConfig;
use mesh_core::node::{
    Command as NodeCommand, CommandId, Node, Output, QuorumBoot, Reply, RequestFailed, RequestTag,
};
use store::{Persisted, Store};

/// A finished DNS seed lookup, back in the node task.
struct Resolved {
    index: usize,
    seed: DnsSeed,
    result: Result<Vec<SocketAddr>, dns::LookupError>,
}

/// How often the loop turns even when nothing happens (drives `/livez`).
const HEARTBEAT: Duration = Duration::from_millis(500);
/// `/livez` fails when the loop has not turned for this long.
const LIVENESS_WINDOW: Duration = Duration::from_secs(5);
/// Events kept for slow subscribers before they see `Lagged`.
const EVENT_BUFFER: usize = 1024;

/// Why an agent could not start. Nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The CA, certificate or key could not be loaded (from files or from memory).
    #[error("tls: {0}")]
    Tls(mesh_transport::tls::TlsError),
    /// The certificate is for another node.
    #[error("cert: the certificate is issued to {cert:?} but this node is named {name:?}")]
    CertName {
        /// Name in the certificate.
        cert: String,
        /// Configured name.
        name: String,
    },
    /// The QUIC endpoint could not bind.
    #[error("bind: {0}")]
    Bind(String),
    /// The admin API could not bind.
    #[error("admin: cannot listen on {addr}: {reason}")]
    Admin {
        /// Address tried.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The data directory is unusable.
    #[error("data_dir: {0}")]
    DataDir(String),
}

/// A closure the node task runs against the node and the shell.
type Call = Box<dyn FnOnce(&mut Shell, Instant) + Send>;

/// What the node task takes from handles.
enum ShellCommand {
    /// Leave the cluster, then stop.
    Leave(oneshot::Sender<()>),
    /// A read (or a benchmark's direct drive) of the node.
    Call(Call),
    /// An application command; its reply goes to `reply`, if anyone waits.
    Node {
        id: CommandId,
        cmd: NodeCommand,
        reply: Option<oneshot::Sender<Reply>>,
    },
}

/// How long an anti-entropy request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

struct Snapshot {
    me: NodeId,
    members: Vec<MemberInfo>,
    ready: bool,
    /// Every live member's tags (this node's included), by name; refreshed when the
    /// tag table's digest changes.
    tags: std::collections::BTreeMap<String, mesh_types::tags::Tags>,
    tags_digest: u64,
}

/// Commands queued for the node task before callers see backpressure.
const COMMAND_QUEUE: usize = 4096;

struct Shared {
    snapshot: RwLock<Snapshot>,
    started: Instant,
    clock: Clock,
    /// Milliseconds since `started` when the loop last turned.
    last_turn_ms: AtomicU64,
    stopping: AtomicBool,
    events: broadcast::Sender<MembershipEvent>,
    claim_events: broadcast::Sender<HolderEvent>,
    /// The next command id ([`CommandId`]).
    next_command: AtomicU64,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Where the admin API listens; `None`: it is off (no listener).
    admin: Option<SocketAddr>,
    /// The DNS server DNS seeds are looked up at; `None`: the system's resolvers.
    dns_server: Option<SocketAddr>,
}

impl Shared {
    /// A command id no other command has: the handles' and the shell's own.
    fn fresh_command_id(&self) -> CommandId {
        CommandId(self.next_command.fetch_add(1, Ordering::Relaxed))
    }
}

/// Starts agents.
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// Validates `config`, loads TLS from its files, binds the transport and the admin
    /// API, and starts joining through the seeds: the same as
    /// `AgentBuilder::from_config(config).start()` ([`AgentBuilder`] also takes TLS
    /// from memory and can leave the admin API off).
    pub async fn start(config: AgentConfig) -> Result<AgentHandle, StartError> {
        AgentBuilder::from_config(config).start().await
    }
}

/// A durable write failed: the process must stop, because replies that depend on it
/// may not go out and the state in memory may already be ahead of the disk.
fn fatal(why: &str) -> ! {
    tracing::error!(
        reason = why,
        action = FATAL_ACTION,
        "fatal: stopping the process"
    );
    eprintln!("fatal: {why}");
    eprintln!("hint: {FATAL_ACTION}");
    std::process::exit(70);
}

/// What an operator does after a fatal stop (exit 70).
const FATAL_ACTION: &str = "check the data_dir's disk (free space, permissions, I/O errors in \
                            the kernel log), then restart the agent: everything it acknowledged \
                            is durable, and it resumes from its store";

/// The quorum plane's boot state: settings from the config, and a voter's store.
fn quorum_boot(config: &AgentConfig) -> Result<(Option<QuorumBoot>, Option<Store>), StartError> {
    if config.voters.is_empty() {
        return Ok((None, None));
    }
    let voters = mesh_core::quorum::VoterNames::new(config.voters.iter().cloned())
        .map_err(|e| StartError::Config(crate::config::ConfigError::Voters(e.to_string())))?;
    let mut qc = QuorumConfig::new(voters.clone());
    qc.shards = config.shards;
    qc.ttl = config.claims_ttl;
    qc.reassign = config.claims_reassign;
    let (store, boot) = if voters.contains(&config.name) {
        let dir = config
            .data_dir
            .as_deref()
            .ok_or(StartError::Config(
                crate::config::ConfigError::VoterNeedsDataDir,
            ))?
            .join("quorum");
        let (store, boot) = Store::open(&dir).map_err(StartError::DataDir)?;
        (Some(store), Some(boot))
    } else {
        (None, None)
    };
    Ok((
        Some(QuorumBoot {
            config: qc,
            store: boot,
        }),
        store,
    ))
}

/// Reads the boot counter in `data_dir`, bumps it and writes it back (fsynced) before
/// the node says anything, so every boot has a strictly larger incarnation. Without a
/// data dir the incarnation is the wall clock in milliseconds, which grows across
/// restarts unless the clock steps back.
fn boot_incarnation(data_dir: Option<&Path>) -> Result<u64, StartError> {
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let Some(dir) = data_dir else {
        return Ok(clock);
    };
    let err = |what: &str, e: std::io::Error| {
        StartError::DataDir(format!("{what} {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| err("cannot create", e))?;
    let path = dir.join("incarnation");
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            StartError::DataDir(format!("{} does not hold a number", path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(err("cannot read", e)),
    };
    let next = clock.max(previous.saturating_add(1));
    let tmp = dir.join("incarnation.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| err("cannot write", e))?;
        f.write_all(next.to_string().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| err("cannot write", e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| err("cannot write", e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(next)
}

/// A finished request: its tag and outcome.
type Done = (RequestTag, Result<Bytes, RequestFailed>);

/// The task that owns the state machine.
struct Shell {
    /// A voter's durable store.
    store: Option<Store>,
    persist_tx: mpsc::UnboundedSender<Persisted>,
    /// Callers waiting for a command's reply: one map, as the node has one
    /// [`Output::Completed`].
    waiters: HashMap<CommandId, oneshot::Sender<Reply>>,
    node: Node,
    transport: Transport,
    timers: BinaryHeap<Reverse<(Instant, SwimTimer, u64)>>,
    timer_seq: u64,
    shared: Arc<Shared>,
    seeds_configured: bool,
    done_tx: mpsc::UnboundedSender<Done>,
    /// Looks DNS seeds up; `None` when none are configured.
    resolver: Option<dns::SeedResolver>,
    /// Finished DNS seed lookups come back here.
    resolved_tx: mpsc::UnboundedSender<Resolved>,
    /// When the node's metrics are next published.
    next_publish: Instant,
}

/// How often the node's counters are copied into the metrics (the membership gauges
/// are updated every turn).
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

impl Shell {
    fn now(&self) -> Instant {
        self.shared.clock.now()
    }

    async fn run(
        &mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<ShellCommand>,
        mut done: mpsc::UnboundedReceiver<Done>,
        mut persisted: mpsc::UnboundedReceiver<Persisted>,
        mut resolved: mpsc::UnboundedReceiver<Resolved>,
    ) {
        let mut leaving: Option<(Instant, oneshot::Sender<()>)> = None;
        let now = self.now();
        self.node.handle_tick(now);
        self.flush();
        loop {
            let now = self.now();
            let mut wake = now + HEARTBEAT;
            if let Some(Reverse((at, _, _))) = self.timers.peek() {
                wake = wake.min(*at);
            }
            if let Some(at) = self.node.poll_timeout() {
                wake = wake.min(at.max(now));
            }
            if let Some((until, _)) = &leaving {
                wake = wake.min(*until);
            }
            // The sleep runs on tokio's (monotonic) timer; the deadline is on the boot
            // clock. Across a suspend the boot clock jumps ahead, and the wake-up finds
            // the deadline passed, which is what it should be.
            let sleep_for = wake.saturating_duration_since(now);
            tokio::select! {
                cmd = commands.recv(), if leaving.is_none() => match cmd {
                    Some(ShellCommand::Leave(done)) => {
                        let now = self.now();
                        self.node.leave(now);
                        self.flush();
                        // Linger briefly so the leave notice leaves the socket.
                        leaving = Some((self.now() + Duration::from_millis(300), done));
                    }
                    Some(ShellCommand::Call(call)) => {
                        let now = self.now();
                        call(self, now);
                    }
                    Some(ShellCommand::Node { id, cmd, reply }) => {
                        if let Some(tx) = reply {
                            self.waiters.insert(id, tx);
                        }
                        let now = self.now();
                        self.node.handle_command(now, id, cmd);
                    }
                    None => {
                        // Every handle is gone: stop without a goodbye.
                        return;
                    }
                },
                msg = inbound.recv() => match msg {
                    Some(msg) => self.on_inbound(msg),
                    None => return,
                },
                Some((tag, result)) = done.recv() => {
                    let now = self.now();
                    self.node.handle_response(now, tag, result);
                }
                Some(r) = resolved.recv() => {
                    let now = self.now();
                    self.on_resolved(now, r);
                }
                Some(p) = persisted.recv() => {
                    let now = self.now();
                    match p {
                        Persisted::Commit(id, result) => self.node.handle_persisted(now, id, result),
                        Persisted::Root(result) => self.node.handle_root_persisted(now, result),
                    }
                }
                () = tokio::time::sleep(sleep_for) => {
                    self.fire_due_timers();
                    let now = self.now();
                    self.node.handle_tick(now);
                }
            }
            self.flush();
            if let Some((until, _)) = &leaving {
                if self.now() >= *until {
                    if let Some((_, done)) = leaving.take() {
                        let _ = done.send(());
                    }
                    return;
                }
            }
        }
    }

    fn on_inbound(&mut self, msg: Inbound) {
        let now = self.now();
        match msg {
            Inbound::Datagram { from, data } => {
                // SWIM rejections are counted in the membership stats (published below).
                self.node.handle_datagram(now, &from, &data);
            }
            Inbound::Frame {
                from,
                class,
                payload,
            } => self.node.handle_frame(now, &from, class, &payload),
            Inbound::Request {
                from,
                class,
                payload,
                responder,
            } => match self.node.handle_request(now, &from, class, &payload) {
                Ok(response) => {
                    if let Err(e) = responder.respond(response) {
                        tracing::debug!(peer = %from, error = %e, "response not sent");
                    }
                }
                // Dropping the responder refuses the request; the node counted why.
                Err(e) => tracing::debug!(peer = %from, error = %e, "request refused"),
            },
            Inbound::Connected { name, addr } => {
                tracing::debug!(peer = %name, %addr, "connected");
            }
            Inbound::Disconnected { name } => {
                tracing::debug!(peer = %name, "disconnected");
            }
        }
    }

    /// Handles every timer that is due, earliest first and, among timers due at the
    /// same instant, in foca's order.
    fn fire_due_timers(&mut self) {
        let now = self.now();
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse(entry)) = self.timers.pop() {
                due.push(entry);
            }
        }
        due.sort();
        let now = self.now();
        for (_, timer, _) in due {
            self.node.handle_timer(now, timer);
        }
    }

    /// Carries out what the state machine asked for and refreshes the snapshot.
    fn flush(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Datagram { to, data } => {
                    let peer = PeerRef {
                        name: (!to.is_seed_placeholder()).then(|| to.name.clone()),
                        addr: to.addr,
                    };
                    self.transport.send_datagram(&peer, data);
                }
                Output::Frame { to, class, payload } => {
                    // A refused frame is counted by the transport; the node learns of it
                    // (a user message's sender is told: C4 in `mesh_core::node::command`).
                    if self.transport.send_frame(&to, class, payload).is_err() {
                        let name = to.name.clone().unwrap_or_default();
                        self.node.frame_refused(&name, class);
                    }
                }
                Output::Request {
                    to,
                    tag,
                    class,
                    payload,
                } => {
                    let fut = self.transport.request(&to, class, payload, REQUEST_TIMEOUT);
                    let done = self.done_tx.clone();
                    tokio::spawn(async move {
                        let result = fut.await.map_err(|e| RequestFailed(e.to_string()));
                        // The loop may have stopped; then nobody needs the answer.
                        let _ = done.send((tag, result));
                    });
                }
                Output::Timer { at, timer } => {
                    self.timer_seq += 1;
                    self.timers.push(Reverse((at, timer, self.timer_seq)));
                }
                Output::Membership(ev) => self.on_event(ev),
                Output::Completed { id, result } => {
                    // No waiter: the caller gave up, or asked for no reply. Whatever
                    // the reply hands over (a process, a monitor) is then undone.
                    let unclaimed = match self.waiters.remove(&id) {
                        Some(tx) => tx.send(result).err(),
                        None => Some(result),
                    };
                    if let Some(undo) = unclaimed.as_ref().and_then(Reply::undo_if_unclaimed) {
                        counter!("mesh_runtime_unclaimed_replies_total").increment(1);
                        let now = self.now();
                        let undo_id = self.shared.fresh_command_id();
                        self.node.handle_command(now, undo_id, undo);
                    }
                }
                Output::Carried(mark) => {
                    // Every output before the marker is carried out.
                    let now = self.now();
                    self.node.handle_carried(now, mark);
                }
                Output::Persist { id, entries } => match &self.store {
                    Some(store) => store.commit(id, entries, self.persist_tx.clone()),
                    None => fatal("an acceptor state must be persisted but this node has no store"),
                },
                Output::PersistRoot(root) => match &self.store {
                    Some(store) => store.set_root(root, self.persist_tx.clone()),
                    None => fatal("the root record must be persisted but this node has no store"),
                },
                Output::Fatal(why) => fatal(&why),
                Output::HoldEnded {
                    task,
                    token,
                    outcome,
                } => match outcome {
                    HoldOutcome::Released => {
                        tracing::info!(%task, token, "hold ended; claim released");
                    }
                    HoldOutcome::Gone => {
                        tracing::debug!(%task, token, "hold ended; the claim was already gone");
                    }
                    HoldOutcome::Failed => {
                        tracing::warn!(
                            %task,
                            token,
                            "hold ended; gave up releasing the claim (no quorum answered): it \
                             expires by itself within its TTL, or release it with `meshctl \
                             release TASK --token TOKEN` once `meshctl quorum status` is healthy"
                        );
                    }
                },
                Output::ResolveSeed(r) => self.resolve_seed(r),
                Output::ClaimEvent(ev) => {
                    if matches!(ev, HolderEvent::Renewed { .. }) {
                        tracing::trace!(event = ?ev, "claims");
                    } else {
                        tracing::info!(event = ?ev, "claims");
                    }
                    let _ = self.shared.claim_events.send(ev);
                }
            }
        }
        self.publish();
    }

    /// Starts the lookup the node asked for; the result comes back as [`Resolved`].
    fn resolve_seed(&mut self, r: Resolve) {
        counter!("mesh_seed_resolves_total").increment(1);
        let tx = self.resolved_tx.clone();
        let Some(resolver) = self.resolver.clone() else {
            // Not reached: the node asks only when DNS seeds are configured, and then
            // the resolver was built at start.
            let _ = tx.send(Resolved {
                index: r.index,
                seed: r.seed,
                result: Err(dns::LookupError {
                    reason: ResolveFailure::Error,
                    detail: "no resolver".to_owned(),
                }),
            });
            return;
        };
        tokio::spawn(async move {
            let result = resolver.resolve(&r.seed).await;
            // The loop may have stopped; then nobody needs the answer.
            let _ = tx.send(Resolved {
                index: r.index,
                seed: r.seed,
                result,
            });
        });
    }

    /// A DNS seed lookup ended: a failure gets one log line naming the seed and what
    /// to check, and is counted by reason.
    fn on_resolved(&mut self, now: Instant, r: Resolved) {
        let mut resolved = None;
        let result = match r.result {
            Ok(addrs) => {
                resolved = Some(addrs.clone());
                Ok(addrs)
            }
            Err(e) => {
                counter!("mesh_seed_resolve_failures_total", "reason" => e.reason.as_str())
                    .increment(1);
                let check = match r.seed {
                    DnsSeed::Host { .. } => "A or AAAA records",
                    DnsSeed::Srv { .. } => "SRV records whose targets have addresses",
                };
                tracing::warn!(
                    seed = %r.seed,
                    reason = e.reason.as_str(),
                    error = %e.detail,
                    "DNS seed {} gave no address ({}); check that {} has {check} and that \
                     dns_server (or /etc/resolv.conf) names a server that serves it; \
                     retrying with backoff while alone",
                    r.seed,
                    e.reason.as_str(),
                    r.seed.name(),
                );
                Err(e.reason)
            }
        };
        let changed = self.node.handle_seed_resolved(now, r.index, result);
        if let Some(addrs) = resolved {
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            if changed {
                tracing::info!(seed = %r.seed, "DNS seed {} resolves to {}", r.seed, list.join(", "));
            } else {
                tracing::debug!(seed = %r.seed, "DNS seed {} still resolves to {}", r.seed, list.join(", "));
            }
        }
    }

    fn on_event(&mut self, ev: MembershipEvent) {
        counter!("mesh_membership_events_total", "kind" => ev.kind.as_str()).increment(1);
        tracing::info!(member = %ev.member, kind = ev.kind.as_str(), "membership");
        if matches!(ev.kind, EventKind::Down | EventKind::Left) {
            self.transport.disconnect(&ev.member.name);
        }
        // No receiver is fine: nobody subscribed.
        let _ = self.shared.events.send(ev);
    }

    fn publish(&mut self) {
        let membership = self.node.membership();
        let ready = !self.seeds_configured || membership.is_joined();
        let members: Vec<MemberInfo> = membership.members().cloned().collect();
        let mut counts = [1usize, 0, 0, 0];
        for m in &members {
            counts[m.state as usize] += 1;
        }
        for (state, n) in [
            MemberState::Alive,
            MemberState::Suspect,
            MemberState::Down,
            MemberState::Left,
        ]
        .into_iter()
        .zip(counts)
        {
            gauge!("mesh_membership_members", "state" => state.as_str()).set(n as f64);
        }
        gauge!("mesh_membership_joined").set(if ready { 1.0 } else { 0.0 });
        gauge!("mesh_membership_local_health").set(f64::from(membership.local_health()));
        let stats = membership.stats();
        counter!("mesh_membership_rejoins_total").absolute(stats.rejoins);
        counter!("mesh_membership_probes_failed_total").absolute(stats.probes_failed);
        for (reason, n) in &stats.rejected {
            counter!("mesh_membership_datagrams_dropped_total", "reason" => *reason).absolute(*n);
        }
        let me = membership.identity().clone();
        let now = self.now();
        if now >= self.next_publish {
            self.next_publish = now + PUBLISH_EVERY;
            crate::metrics::publish_node(&mut self.node);
            // Publishes what the kernel dropped at the QUIC socket (a full buffer).
            let _ = self.transport.kernel_udp_drops();
        }
        let mut snap = self
            .shared
            .snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner());
        snap.me = me;
        snap.members = members;
        snap.ready = ready;
        let digest = self.node.tags().digest();
        if digest != snap.tags_digest {
            snap.tags_digest = digest;
            snap.tags = self
                .node
                .tags()
                .items()
                .into_iter()
                .map(|i| (i.name, i.tags))
                .collect();
        }
        drop(snap);
        let turned = self.now().saturating_duration_since(self.shared.started);
        self.shared.last_turn_ms.store(
            u64::try_from(turned.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// A cheap handle on a running agent.
#[derive(Clone)]
pub struct AgentHandle {
    shared: Arc<Shared>,
    commands: mpsc::Sender<ShellCommand>,
    stopped: watch::Receiver<bool>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("identity", &self.identity())
            .finish()
    }
}

impl AgentHandle {
    /// This node's current identity.
    pub fn identity(&self) -> NodeId {
        self.shared
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .me
            .clone()
    }

    /// Every member this node knows, itself first, then by name.
    pub fn members(&self) -> Vec<MemberView> {
        let now = self.shared.clock.now();
        let snap = self
            .shared
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(snap.members.len() + 1);
        out.push(MemberView {
            name: snap.me.name.clone(),
            addr: snap.me.addr,
            incarnation: snap.me.incarnation,
            state: mesh_api::MemberState::Alive,
            age_seconds: now
                .saturating_duration_since(self.shared.started)
                .as_secs_f64(),
            is_self: true,
            tags: snap.tags.get(&snap.me.name).cloned().unwrap_or_default(),
        });
        out.extend(snap.members.iter().map(|m| MemberView {
            name: m.id.name.clone(),
            addr: m.id.addr,
            incarnation: m.id.incarnation,
            state: crate::views::member_state(m.state),
            age_seconds: now.saturating_duration_since(m.since).as_secs_f64(),
            is_self: false,
            tags: if m.state.is_live() {
                snap.tags.get(&m.id.name).cloned().unwrap_or_default()
            } else {
                Default::default()
            },
        }));
        out
    }

    /// The membership loop turned within the last five seconds.
    pub fn is_live(&self) -> bool {
        let last = Duration::from_millis(self.shared.last_turn_ms.load(Ordering::Relaxed));
        let since_start = self
            .shared
            .clock
            .now()
            .saturating_duration_since(self.shared.started);
        !*self.stopped.borrow() && since_start.saturating_sub(last) < LIVENESS_WINDOW
    }

    /// Joined a cluster, or alone with no seeds configured; false once leaving.
    pub fn is_ready(&self) -> bool {
        !self.shared.stopping.load(Ordering::Relaxed)
            && self
                .shared
                .snapshot
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .ready
    }

    /// Address the admin API listens on, or `None` when the agent was started with
    /// [`AgentBuilder::no_admin`] (then nothing listens on TCP).
    pub fn admin_api(&self) -> Option<SocketAddr> {
        self.shared.admin
    }

    /// Address the admin API listens on. Without the admin API
    /// ([`AgentBuilder::no_admin`]) it is the unspecified address `0.0.0.0:0`, where
    /// nothing listens; prefer [`admin_api`](Self::admin_api), which says so.
    pub fn admin_addr(&self) -> SocketAddr {
        self.shared
            .admin
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The DNS server DNS seeds are looked up at (`dns_server`); `None`: the system's
    /// resolvers.
    pub fn dns_server(&self) -> Option<SocketAddr> {
        self.shared.dns_server
    }

    /// Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        match &self.shared.metrics {
            Some(h) => h.render(),
            None => {
                "# metrics unavailable: another recorder was installed in this process\n".into()
            }
        }
    }

    /// Leaves the cluster gracefully (peers see `left`), then stops everything,
    /// waiting at most `grace` in all.
    pub async fn leave(&self, grace: Duration) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        let (done, wait) = oneshot::channel();
        if self.commands.try_send(ShellCommand::Leave(done)).is_err() {
            counter!("mesh_runtime_input_dropped_total", "reason" => "command_queue_full")
                .increment(1);
        }
        let _ = tokio::time::timeout(grace, async {
            let _ = wait.await;
            self.stopped().await;
        })
        .await;
    }

    /// [`leave`](Self::leave) was called (by the owner or by the admin API's
    /// `POST /v1/leave`): a stop that follows is the one asked for.
    pub fn is_leaving(&self) -> bool {
        self.shared.stopping.load(Ordering::Relaxed)
    }

    /// Resolves when the agent has stopped.
    pub async fn stopped(&self) {
        let mut rx = self.stopped.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

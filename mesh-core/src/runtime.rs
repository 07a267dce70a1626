//! The tokio shell: feeds [`crate::membership::Membership`] from the QUIC transport
//! and a timer heap, publishes events and metrics, and serves the admin API.
//!
//! The shell holds no protocol logic. One task owns the state machine and reads one
//! bounded input channel (the transport's) plus a small command channel; timers live
//! in a deadline heap inside that task — never one spawned sleep per timer (foca
//! issue 26) — and all timers due together are handled in deadline, then foca, order.
//! The loop never awaits IO: datagram sends are non-blocking and the transport counts
//! what it drops.
//!
//! ```text
//!  transport ──Inbound──▶ ┌──────────────── membership task ───────────────┐
//!  admin/API ──Command──▶ │ Membership::handle_* (now)  ◀── timer heap     │
//!                         │ poll_output: Send ─▶ transport.send_datagram   │
//!                         │              Timer ─▶ heap                     │
//!                         │              Event ─▶ broadcast + metrics      │
//!                         └──────────────▶ snapshot (members, ready, live) ┘
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mesh_transport::tls::TlsIdentity;
use mesh_transport::{Inbound, PeerRef, Transport, TransportConfig};
use metrics::{counter, gauge, histogram};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::AgentConfig;
use crate::identity::NodeId;
use crate::membership::{
    EventKind, MemberInfo, MemberState, Membership, MembershipConfig, MembershipEvent, Output,
    SwimTimer,
};

/// How often the loop turns even when nothing happens (drives `/livez`).
const HEARTBEAT: Duration = Duration::from_millis(500);
/// `/livez` fails when the loop has not turned for this long.
const LIVENESS_WINDOW: Duration = Duration::from_secs(5);
/// Events kept for slow subscribers before they see `Lagged`.
const EVENT_BUFFER: usize = 1024;

/// One member as the admin API and `meshctl members` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// Address peers dial.
    pub addr: SocketAddr,
    /// Boot incarnation.
    pub incarnation: u64,
    /// Liveness as this node sees it.
    pub state: MemberState,
    /// Seconds since it entered that state.
    pub age_seconds: f64,
    /// True for the node answering.
    #[serde(default)]
    pub is_self: bool,
}

/// Why an agent could not start. Nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The CA, certificate or key could not be loaded.
    #[error("tls: {0}")]
    Tls(String),
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

enum Command {
    Leave(oneshot::Sender<()>),
}

struct Snapshot {
    me: NodeId,
    members: Vec<MemberInfo>,
    ready: bool,
}

struct Shared {
    snapshot: RwLock<Snapshot>,
    started: Instant,
    /// Milliseconds since `started` when the loop last turned.
    last_turn_ms: AtomicU64,
    stopping: AtomicBool,
    events: broadcast::Sender<MembershipEvent>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    admin: SocketAddr,
}

/// Starts agents.
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// Validates `config`, loads TLS, binds the transport and the admin API, and
    /// starts joining through the seeds.
    pub async fn start(config: AgentConfig) -> Result<AgentHandle, StartError> {
        config.validate()?;
        let tls = TlsIdentity::from_files(&config.ca, &config.cert, &config.key)
            .map_err(|e| StartError::Tls(e.to_string()))?;
        if tls.name() != config.name {
            return Err(StartError::CertName {
                cert: tls.name().to_owned(),
                name: config.name.clone(),
            });
        }
        let incarnation = boot_incarnation(config.data_dir.as_deref())?;
        let metrics = crate::metrics::install();
        let admin_listener = tokio::net::TcpListener::bind(config.admin)
            .await
            .map_err(|e| StartError::Admin {
                addr: config.admin,
                reason: e.to_string(),
            })?;
        let admin_addr = admin_listener.local_addr().map_err(|e| StartError::Admin {
            addr: config.admin,
            reason: e.to_string(),
        })?;
        let (transport, inbound) = Transport::bind(TransportConfig::new(config.bind, tls))
            .await
            .map_err(|e| StartError::Bind(e.to_string()))?;

        let now = Instant::now();
        let identity = NodeId::new(config.name.clone(), config.advertise_addr(), incarnation);
        let membership = Membership::new(
            identity.clone(),
            MembershipConfig {
                profile: config.profile,
                seeds: config.seeds.clone(),
                packet_size: config.packet_size,
                ..MembershipConfig::default()
            },
            rand::random(),
            now,
        );
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            snapshot: RwLock::new(Snapshot {
                me: identity,
                members: Vec::new(),
                ready: config.seeds.is_empty(),
            }),
            started: now,
            last_turn_ms: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            events,
            metrics,
            admin: admin_addr,
        });
        let (commands, command_rx) = mpsc::channel(16);
        let (stopped_tx, stopped) = watch::channel(false);
        let handle = AgentHandle {
            shared: shared.clone(),
            commands,
            stopped,
        };

        let (admin_stop_tx, admin_stop) = oneshot::channel::<()>();
        let router = crate::admin::router(handle.clone(), config.admin_token.clone());
        let admin_task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = admin_stop.await;
            };
            if let Err(e) = crate::admin::serve(admin_listener, router, shutdown).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });

        let seeds_configured = !config.seeds.is_empty();
        tokio::spawn(async move {
            let mut shell = Shell {
                membership,
                transport: transport.clone(),
                timers: BinaryHeap::new(),
                timer_seq: 0,
                shared,
                seeds_configured,
            };
            shell.run(inbound, command_rx).await;
            transport.shutdown().await;
            let _ = admin_stop_tx.send(());
            let _ = admin_task.await;
            let _ = stopped_tx.send(true);
        });
        Ok(handle)
    }
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

/// The task that owns the state machine.
struct Shell {
    membership: Membership,
    transport: Transport,
    timers: BinaryHeap<Reverse<(Instant, SwimTimer, u64)>>,
    timer_seq: u64,
    shared: Arc<Shared>,
    seeds_configured: bool,
}

impl Shell {
    async fn run(
        &mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut leaving: Option<(Instant, oneshot::Sender<()>)> = None;
        self.membership.handle_tick(Instant::now());
        self.flush();
        loop {
            let now = Instant::now();
            let mut wake = now + HEARTBEAT;
            if let Some(Reverse((at, _, _))) = self.timers.peek() {
                wake = wake.min(*at);
            }
            if let Some(at) = self.membership.poll_timeout() {
                wake = wake.min(at.max(now));
            }
            if let Some((until, _)) = &leaving {
                wake = wake.min(*until);
            }
            tokio::select! {
                cmd = commands.recv(), if leaving.is_none() => match cmd {
                    Some(Command::Leave(done)) => {
                        self.membership.leave(Instant::now());
                        self.flush();
                        // Linger briefly so the leave notice leaves the socket.
                        leaving = Some((Instant::now() + Duration::from_millis(300), done));
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
                () = tokio::time::sleep_until(wake.into()) => {
                    self.fire_due_timers();
                    self.membership.handle_tick(Instant::now());
                }
            }
            self.flush();
            if let Some((until, _)) = &leaving {
                if Instant::now() >= *until {
                    if let Some((_, done)) = leaving.take() {
                        let _ = done.send(());
                    }
                    return;
                }
            }
        }
    }

    fn on_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Datagram { from, data } => {
                if let Err(reason) = self.membership.handle_data(Instant::now(), &from, &data) {
                    counter!("mesh_membership_datagrams_dropped_total", "reason" => reason.as_str())
                        .increment(1);
                    tracing::trace!(peer = %from, %reason, "SWIM datagram dropped");
                }
            }
            Inbound::Frame { class, .. } => {
                // No subsystem reads stream frames yet; count them so nothing vanishes.
                counter!("mesh_transport_frames_dropped_total", "class" => class.as_str(), "reason" => "no_handler")
                    .increment(1);
            }
            Inbound::Request { from, class, .. } => {
                // No subsystem serves requests yet: dropping the responder (here, with
                // the item) refuses the request at once (the requester gets
                // `Refused { NoResponse }`, the transport counts `no_response`).
                counter!("mesh_transport_frames_dropped_total", "class" => class.as_str(), "reason" => "no_handler")
                    .increment(1);
                tracing::trace!(peer = %from, %class, "request refused: no handler");
            }
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
        let now = Instant::now();
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
        for (_, timer, _) in due {
            self.membership.handle_timer(now, timer);
        }
    }

    /// Carries out what the state machine asked for and refreshes the snapshot.
    fn flush(&mut self) {
        while let Some(out) = self.membership.poll_output() {
            match out {
                Output::Send { to, data } => {
                    let peer = PeerRef {
                        name: (!to.is_seed_placeholder()).then(|| to.name.clone()),
                        addr: to.addr,
                    };
                    self.transport.send_datagram(&peer, data);
                }
                Output::Timer { at, timer } => {
                    self.timer_seq += 1;
                    self.timers.push(Reverse((at, timer, self.timer_seq)));
                }
                Output::Event(ev) => self.on_event(ev),
            }
        }
        for rtt in self.membership.drain_probe_rtts() {
            histogram!("mesh_membership_probe_rtt_seconds").record(rtt.as_secs_f64());
        }
        self.publish();
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
        let ready = !self.seeds_configured || self.membership.is_joined();
        let members: Vec<MemberInfo> = self.membership.members().cloned().collect();
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
        gauge!("mesh_membership_local_health").set(f64::from(self.membership.local_health()));
        let stats = self.membership.stats();
        counter!("mesh_membership_rejoins_total").absolute(stats.rejoins);
        counter!("mesh_membership_probes_failed_total").absolute(stats.probes_failed);
        let mut snap = self
            .shared
            .snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner());
        snap.me = self.membership.identity().clone();
        snap.members = members;
        snap.ready = ready;
        drop(snap);
        let turned = Instant::now().saturating_duration_since(self.shared.started);
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
    commands: mpsc::Sender<Command>,
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
        let now = Instant::now();
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
            state: MemberState::Alive,
            age_seconds: now
                .saturating_duration_since(self.shared.started)
                .as_secs_f64(),
            is_self: true,
        });
        out.extend(snap.members.iter().map(|m| MemberView {
            name: m.id.name.clone(),
            addr: m.id.addr,
            incarnation: m.id.incarnation,
            state: m.state,
            age_seconds: now.saturating_duration_since(m.since).as_secs_f64(),
            is_self: false,
        }));
        out
    }

    /// Membership events from now on. A subscriber that falls more than 1024 events
    /// behind gets `RecvError::Lagged` and should re-read [`AgentHandle::members`].
    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.shared.events.subscribe()
    }

    /// The membership loop turned within the last five seconds.
    pub fn is_live(&self) -> bool {
        let last = Duration::from_millis(self.shared.last_turn_ms.load(Ordering::Relaxed));
        let since_start = Instant::now().saturating_duration_since(self.shared.started);
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

    /// Address the admin API listens on.
    pub fn admin_addr(&self) -> SocketAddr {
        self.shared.admin
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
        if self.commands.try_send(Command::Leave(done)).is_err() {
            counter!("mesh_runtime_input_dropped_total", "reason" => "command_queue_full")
                .increment(1);
        }
        let _ = tokio::time::timeout(grace, async {
            let _ = wait.await;
            self.stopped().await;
        })
        .await;
    }

    /// Resolves when the agent has stopped.
    pub async fn stopped(&self) {
        let mut rx = self.stopped.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

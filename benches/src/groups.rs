//! The groups and messaging measurements of `groups-bench`, mesh side and Erlang side.
//!
//! **Join visibility** ([`mesh_visibility`], [`erlang_visibility`]): in a converged
//! cluster of N agents, one agent (the second, `n2` / `b2`) joins a fresh group, again
//! and again; a sample is the time from just before the join until *every* agent lists
//! the member. mesh: t0 is taken just before `POST /v1/listen` (held open while the
//! sample runs), and one thread per agent polls `GET /v1/groups/{g}` every poll period.
//! Erlang: the joiner takes t0 (`os:system_time`) just before `pg:join/2`, and a poller
//! process on every node calls `pg:get_members/1` every poll period. Either way the
//! poll period is the resolution. A join not seen everywhere by the deadline counts as
//! "more than the deadline", never dropped.
//!
//! **Group-send throughput**: a group of `peers × per_peer` members, 100-byte payloads,
//! deliveries per second counted where the members drain their mailboxes:
//! - [`mesh_in_process`]: one [`Node`] holding every member; a loop sends and drains.
//! - [`mesh_in_memory`]: a sender node and `peers` member nodes wired in memory by the
//!   deterministic simulator (`mesh_tests::sim`): encode, route and decode without QUIC.
//! - [`mesh_quic`]: real agents on loopback, each one a process of this binary embedding
//!   [`mesh_agent::runtime::Agent`] (`groups-bench worker`): a sender agent without
//!   members and `peers` agents with `per_peer` members each, their consumers counting
//!   deliveries; the sender issues group sends in batches as fast as backpressure
//!   allows. Erlang's counterparts live in the controller module (`throughput/5`,
//!   `local_throughput/3`).
//!
//! The worker ([`crate::worker`]) takes [`GroupsCommand`]s on stdin and answers
//! [`GroupsReply`]s on stdout, so the harness can count before and after the window.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use mesh_agent::admin::{GroupView, ListenLine, DEFAULT_SCOPE};
use mesh_agent::runtime::{AgentHandle, ApiError};
use mesh_core::identity::NodeId;
use mesh_core::node::{Dest, GroupMode, Node, NodeConfig};
use mesh_core::process::Mailbox;

use crate::cleanup::ScratchDir;
use crate::cluster::{Cluster, ClusterOptions, SystemKind};
use crate::erlang::{self, ErlangCluster, ErlangOptions};
use crate::ports::free_ports;
use crate::worker::{issue_certs, Worker, WorkerArgs, WorkerCommand, WorkerReply};

// ----- join visibility -------------------------------------------------------------

/// Knobs of the visibility runs.
#[derive(Debug, Clone)]
pub struct VisSettings {
    /// Joins measured per cluster.
    pub joins: usize,
    /// Poll period per agent (the resolution).
    pub poll: Duration,
    /// Deadline of one join.
    pub join_timeout: Duration,
    /// Deadline of cluster convergence.
    pub converge_timeout: Duration,
    /// Pause after convergence before the first join.
    pub settle: Duration,
    /// Pause between two joins.
    pub gap: Duration,
}

/// One system's visibility figures at one cluster size.
#[derive(Debug, Clone, Default)]
pub struct VisResult {
    /// Join visibility of the joins seen everywhere, seconds.
    pub samples: Vec<f64>,
    /// Joins not seen everywhere by the deadline.
    pub censored: usize,
    /// mesh: time until the joiner's agent answered the listen request (the member is
    /// in place there), seconds.
    pub join_call: Vec<f64>,
    /// mesh: per join seen everywhere, every agent's time, sorted (how the join
    /// spread: gossip rounds show as steps), seconds.
    pub spread: Vec<Vec<f64>>,
    /// Time until the cluster was fully connected / converged, seconds.
    pub converged: Option<f64>,
    /// Set when the run could not be completed.
    pub fatal: Option<String>,
}

/// Index of the agent that joins (the second one: not the seed every agent joined
/// through).
pub const JOINER: usize = 1;

/// Prints a progress line on stderr.
pub fn progress(what: &str, message: &str) {
    eprintln!("[{what}] {message}");
}

/// Waits until every agent of `cluster` reports all members alive; returns the time.
fn wait_converged(cluster: &mut Cluster, timeout: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    let names = cluster.names();
    let mut pending: Vec<usize> = (0..cluster.nodes.len()).collect();
    while !pending.is_empty() {
        if t0.elapsed() > timeout {
            bail!(
                "not converged after {:.0} s: {} agents not done",
                timeout.as_secs_f64(),
                pending.len()
            );
        }
        let mut still = Vec::new();
        for &i in &pending {
            let node = &mut cluster.nodes[i];
            node.ensure_running()?;
            match node.view() {
                Ok(view) if view.not_alive(&names).is_empty() => {}
                _ => still.push(i),
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(t0.elapsed())
}

/// Join visibility of mesh at size `n` (see the module docs).
pub fn mesh_visibility(n: usize, opts: &ClusterOptions, s: &VisSettings, salt: u64) -> VisResult {
    let mut result = VisResult::default();
    if let Err(e) = mesh_visibility_into(n, opts, s, salt, &mut result) {
        result.fatal = Some(format!("{e:#}"));
    }
    result
}

fn mesh_visibility_into(
    n: usize,
    opts: &ClusterOptions,
    s: &VisSettings,
    salt: u64,
    result: &mut VisResult,
) -> Result<()> {
    let what = format!("mesh N={n}");
    let mut cluster = Cluster::prepare(SystemKind::Mesh, n, opts, salt)?;
    cluster.start_all()?;
    let converged = wait_converged(&mut cluster, s.converge_timeout)
        .with_context(|| format!("logs in {}", cluster.dir().display()))?;
    result.converged = Some(converged.as_secs_f64());
    progress(
        &what,
        &format!(
            "converged in {:.3} s; settling {:.0} s",
            converged.as_secs_f64(),
            s.settle.as_secs_f64()
        ),
    );
    std::thread::sleep(s.settle);
    let admins: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.control_addr()).collect();
    let pollers: Vec<ureq::Agent> = admins
        .iter()
        .map(|_| {
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(2)))
                .build()
                .into()
        })
        .collect();
    let listener: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(2)))
        .build()
        .into();
    for j in 1..=s.joins {
        for node in &mut cluster.nodes {
            node.ensure_running()?;
        }
        let group = format!("vis-{salt:x}-{j}");
        let sample = one_mesh_join(&admins, &pollers, &listener, &group, s)?;
        match sample.seen {
            Some(d) => {
                result.samples.push(d.as_secs_f64());
                result
                    .spread
                    .push(sample.each.iter().map(Duration::as_secs_f64).collect());
            }
            None => {
                result.censored += 1;
                progress(
                    &what,
                    &format!("join {j}: not seen everywhere within the deadline"),
                );
            }
        }
        result.join_call.push(sample.join_call.as_secs_f64());
        std::thread::sleep(s.gap);
    }
    Ok(())
}

/// One mesh join's outcome.
struct MeshJoin {
    /// Until the joiner's agent answered with the member's PID.
    join_call: Duration,
    /// Until every agent listed the member; `None` if not by the deadline.
    seen: Option<Duration>,
    /// Each agent's time, sorted, when all saw it.
    each: Vec<Duration>,
}

fn one_mesh_join(
    admins: &[SocketAddr],
    pollers: &[ureq::Agent],
    listener: &ureq::Agent,
    group: &str,
    s: &VisSettings,
) -> Result<MeshJoin> {
    // The pollers start at the barrier, t0 is taken right after it; each poller knows
    // the PID only once the listen call answered, so until then it looks for any
    // member (the group is fresh: the only one possible is ours).
    let barrier = Barrier::new(admins.len() + 1);
    std::thread::scope(|scope| -> Result<MeshJoin> {
        let handles: Vec<_> = admins
            .iter()
            .zip(pollers)
            .map(|(addr, agent)| {
                let barrier = &barrier;
                scope.spawn(move || -> Option<Instant> {
                    let url = format!("http://{addr}/v1/groups/{group}");
                    barrier.wait();
                    let deadline = Instant::now() + s.join_timeout;
                    loop {
                        let asked = Instant::now();
                        let seen = agent
                            .get(&url)
                            .call()
                            .ok()
                            .and_then(|mut r| r.body_mut().read_json::<GroupView>().ok())
                            .is_some_and(|v| !v.members.is_empty());
                        if seen {
                            return Some(Instant::now());
                        }
                        if asked >= deadline {
                            return None;
                        }
                        std::thread::sleep(s.poll.saturating_sub(asked.elapsed()));
                    }
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let url = format!("http://{}/v1/listen", admins[JOINER]);
        let listen = listener
            .post(&url)
            .send_json(serde_json::json!({ "groups": [group] }))
            .with_context(|| format!("POST {url}"));
        let joined = Instant::now();
        // Hold the stream open (the member lives as long as it) until every poller is
        // done, then drop it: the member exits.
        let mut stream = match listen {
            Ok(r) => {
                let mut reader = BufReader::new(r.into_body().into_reader());
                let mut first = String::new();
                reader
                    .read_line(&mut first)
                    .context("reading the listen stream")?;
                let ready: ListenLine = serde_json::from_str(&first)
                    .with_context(|| format!("first listen line {first:?}"))?;
                if !matches!(ready, ListenLine::Ready { .. }) {
                    bail!("listen answered {first:?}");
                }
                Some(reader)
            }
            Err(e) => {
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        };
        let seen: Vec<Option<Instant>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or(None))
            .collect();
        drop(stream.take());
        let mut each: Vec<Duration> = seen
            .iter()
            .flatten()
            .map(|at| at.saturating_duration_since(t0))
            .collect();
        each.sort_unstable();
        let everywhere = seen.iter().all(Option::is_some);
        Ok(MeshJoin {
            join_call: joined.saturating_duration_since(t0),
            seen: everywhere.then(|| each.last().copied().unwrap_or_default()),
            each,
        })
    })
}

/// Join visibility of Erlang `pg` at size `n` (see the module docs).
pub fn erlang_visibility(n: usize, opts: &ErlangOptions, s: &VisSettings, salt: u64) -> VisResult {
    let mut result = VisResult::default();
    let run = || -> Result<(Vec<String>, Vec<erlang::JoinSample>)> {
        let mut cluster = ErlangCluster::start(n, opts, salt)?;
        let call = format!(
            "meshbench_pg:visibility({}, {}, {}, {}, {}).",
            erlang::erl_strings(cluster.names()),
            JOINER + 1,
            s.joins,
            s.poll.as_millis().max(1),
            s.join_timeout.as_millis()
        );
        let budget = s.converge_timeout
            + (s.join_timeout + s.gap + Duration::from_millis(200)) * s.joins as u32;
        let lines = cluster
            .control(&call, true, budget)
            .with_context(|| format!("node logs in {}", cluster.dir().display()))?;
        let samples = erlang::parse_visibility(&lines)?;
        Ok((lines, samples))
    };
    match run() {
        Ok((lines, samples)) => {
            result.converged = lines.iter().find_map(|l| {
                l.strip_prefix("connected_ms ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map(|ms| ms / 1000.0)
            });
            for sample in samples {
                match sample {
                    Some(secs) => result.samples.push(secs),
                    None => result.censored += 1,
                }
            }
            if result.samples.len() + result.censored < s.joins {
                result.fatal = Some(format!(
                    "only {} of {} joins reported",
                    result.samples.len() + result.censored,
                    s.joins
                ));
            }
        }
        Err(e) => result.fatal = Some(format!("{e:#}")),
    }
    result
}

// ----- throughput ------------------------------------------------------------------

/// Knobs of the throughput runs.
#[derive(Debug, Clone)]
pub struct TpSettings {
    /// Peers holding members.
    pub peers: usize,
    /// Members per peer.
    pub per_peer: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Sending window.
    pub duration: Duration,
    /// Group sends per call into the node.
    pub batch: usize,
}

impl TpSettings {
    /// Members in all.
    pub fn members(&self) -> usize {
        self.peers * self.per_peer
    }
}

/// The group every throughput run sends to.
pub const TP_GROUP: &str = "tp";

/// One throughput run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Throughput {
    /// Group sends accepted.
    pub sends: u64,
    /// Group sends refused with an error.
    pub send_errors: u64,
    /// Frames the transport refused after the send was accepted (queue full): their
    /// members never got the message.
    pub frames_refused: u64,
    /// Calls refused because the node's command queue was full.
    pub busy: u64,
    /// Members a send reaches.
    pub targets: u64,
    /// Length of the sending window.
    pub elapsed: Duration,
    /// Deliveries counted by the members during the window.
    pub delivered: u64,
    /// Deliveries counted by 1 s after the window.
    pub settled: u64,
    /// Deliveries refused by receiving nodes (full mailbox, gone process).
    pub refused_in: u64,
}

impl Throughput {
    /// Deliveries per second over the window.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.delivered as f64 / secs
        } else {
            0.0
        }
    }

    /// Group sends per second over the window.
    pub fn sends_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.sends as f64 / secs
        } else {
            0.0
        }
    }

    /// From an Erlang run's report.
    pub fn from_erlang(e: &erlang::ErlThroughput) -> Self {
        Self {
            sends: e.sends,
            targets: e.targets,
            elapsed: Duration::from_micros(e.elapsed_us),
            delivered: e.delivered,
            settled: e.settled,
            ..Self::default()
        }
    }
}

/// Drains every mailbox; returns how many messages it took.
fn drain(boxes: &[Mailbox]) -> u64 {
    let mut n = 0;
    for mb in boxes {
        while mb.try_recv().is_some() {
            n += 1;
        }
    }
    n
}

fn group_dest() -> Dest {
    Dest::Group {
        scope: DEFAULT_SCOPE.to_owned(),
        group: TP_GROUP.to_owned(),
        mode: GroupMode::All,
    }
}

/// One [`Node`] holding every member; one thread sends a batch, then drains.
pub fn mesh_in_process(s: &TpSettings) -> Result<Throughput> {
    let start = Instant::now();
    let id = NodeId::new("solo", SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), 1);
    let mut node = Node::new(id, NodeConfig::default(), 1, start, 1_800_000_000_000)
        .map_err(|e| anyhow!("{e}"))?;
    let group = [TP_GROUP.to_owned()];
    let mut boxes = Vec::new();
    for _ in 0..s.members() {
        let (pid, mb) = node.spawn(None);
        node.join(start, DEFAULT_SCOPE, &group, &pid, None)
            .map_err(|e| anyhow!("join: {e}"))?;
        boxes.push(mb);
    }
    while node.poll_output().is_some() {}
    let dest = group_dest();
    let payload = Bytes::from(vec![b'x'; s.payload]);
    let mut tp = Throughput {
        targets: s.members() as u64,
        ..Throughput::default()
    };
    let t0 = Instant::now();
    while t0.elapsed() < s.duration {
        let now = Instant::now();
        for _ in 0..s.batch {
            match node.send(now, None, &dest, payload.clone()) {
                Ok(_) => tp.sends += 1,
                Err(_) => tp.send_errors += 1,
            }
        }
        if node.poll_timeout().is_some_and(|at| at <= now) {
            node.handle_tick(now);
        }
        while node.poll_output().is_some() {}
        tp.delivered += drain(&boxes);
    }
    tp.elapsed = t0.elapsed();
    tp.settled = tp.delivered;
    // Sender and members share the node: a full mailbox is counted as a send error.
    tp.refused_in = node.stats().send_errors.values().sum();
    Ok(tp)
}

/// A sender node and `peers` member nodes wired in memory by the simulator.
pub fn mesh_in_memory(s: &TpSettings, seed: u64) -> Result<Throughput> {
    use mesh_tests::sim::Sim;
    let mut sim = Sim::new(seed);
    let ids = sim.add_cluster(s.peers + 1);
    if !sim.run_until(Duration::from_secs(120), Sim::all_see_all_alive) {
        bail!("the simulated cluster did not converge: {}", sim.describe());
    }
    let group = [TP_GROUP.to_owned()];
    let mut boxes = Vec::new();
    for &i in &ids[1..] {
        for _ in 0..s.per_peer {
            let made = sim.with_node(i, |n, now| {
                let (pid, mb) = n.spawn(None);
                n.join(now, DEFAULT_SCOPE, &group, &pid, None)
                    .map(|()| mb)
                    .map_err(|e| anyhow!("join: {e}"))
            });
            boxes.push(made.context("simulated node not running")??);
        }
    }
    let sender = ids[0];
    let want = s.members();
    let converged = sim.run_until(Duration::from_secs(120), |sim| {
        sim.node(sender)
            .is_some_and(|n| n.registry().members(DEFAULT_SCOPE, TP_GROUP).len() == want)
    });
    if !converged {
        bail!("the sender never saw all {want} members");
    }
    let dest = group_dest();
    let payload = Bytes::from(vec![b'x'; s.payload]);
    let mut tp = Throughput {
        targets: want as u64,
        ..Throughput::default()
    };
    let t0 = Instant::now();
    while t0.elapsed() < s.duration {
        let (d, p, batch) = (dest.clone(), payload.clone(), s.batch);
        let (ok, err) = sim
            .with_node(sender, move |n, now| {
                let mut ok = 0;
                let mut err = 0;
                for _ in 0..batch {
                    match n.send(now, None, &d, p.clone()) {
                        Ok(_) => ok += 1,
                        Err(_) => err += 1,
                    }
                }
                (ok, err)
            })
            .context("sender not running")?;
        tp.sends += ok;
        tp.send_errors += err;
        // Links delay frames by at most 2 ms: 3 ms of simulated time delivers them all.
        sim.run_for(Duration::from_millis(3));
        tp.delivered += drain(&boxes);
    }
    tp.elapsed = t0.elapsed();
    tp.settled = tp.delivered;
    tp.refused_in = ids[1..]
        .iter()
        .filter_map(|&i| sim.node(i))
        .map(|n| n.stats().refused_in.values().sum::<u64>())
        .sum();
    Ok(tp)
}

/// Erlang: every member and the sender in one VM.
pub fn erlang_in_process(s: &TpSettings, opts: &ErlangOptions, salt: u64) -> Result<Throughput> {
    let mut vm = ErlangCluster::start(0, opts, salt)?;
    let call = format!(
        "meshbench_pg:local_throughput({}, {}, {}).",
        s.members(),
        s.payload,
        s.duration.as_millis()
    );
    let lines = vm.control(&call, false, s.duration + Duration::from_secs(60))?;
    Ok(Throughput::from_erlang(&erlang::parse_throughput(&lines)?))
}

/// Erlang: a sender node and `peers` member nodes over Erlang distribution (TCP).
pub fn erlang_distributed(s: &TpSettings, opts: &ErlangOptions, salt: u64) -> Result<Throughput> {
    let mut cluster = ErlangCluster::start(s.peers + 1, opts, salt)?;
    let names = cluster.names().to_vec();
    let call = format!(
        "meshbench_pg:throughput({:?}, {}, {}, {}, {}).",
        names[0],
        erlang::erl_strings(&names[1..]),
        s.per_peer,
        s.payload,
        s.duration.as_millis()
    );
    let lines = cluster
        .control(&call, true, s.duration + Duration::from_secs(120))
        .with_context(|| format!("node logs in {}", cluster.dir().display()))?;
    Ok(Throughput::from_erlang(&erlang::parse_throughput(&lines)?))
}

// ----- mesh over QUIC: worker processes ----------------------------------------------

/// What the harness tells a worker in the groups benchmark (see [`crate::worker`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupsCommand {
    /// Report deliveries so far.
    Count,
    /// Send to the group for `ms` milliseconds, `batch` sends per call, `bytes` each.
    Send {
        /// Window, milliseconds.
        ms: u64,
        /// Payload bytes.
        bytes: usize,
        /// Sends per call into the node.
        batch: usize,
    },
}

impl GroupsCommand {
    /// Whether the numbers can work (a zero batch would spin).
    pub fn is_valid(&self) -> bool {
        match self {
            Self::Count => true,
            Self::Send { batch, .. } => *batch > 0,
        }
    }
}

/// What a worker answers to a [`GroupsCommand`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupsReply {
    /// Deliveries counted by its members, and deliveries its node refused.
    Count {
        /// Counted by the members' consumers.
        delivered: u64,
        /// Refused on arrival (full mailbox, no such process).
        refused_in: u64,
    },
    /// A send window ended.
    Sent {
        /// Sends accepted.
        sends: u64,
        /// Sends refused with an error.
        errors: u64,
        /// Frames the transport refused (queue full) after the sends were accepted.
        frames_refused: u64,
        /// Calls refused with `Busy`.
        busy: u64,
        /// The window, microseconds.
        elapsed_us: u64,
        /// Members one send reached.
        targets: u64,
    },
}

/// The groups side of a worker: its members (consumers counting deliveries) and the
/// sender's loop.
pub(crate) struct GroupsWorker {
    agent: AgentHandle,
    delivered: Arc<AtomicU64>,
}

impl GroupsWorker {
    /// Spawns `members` processes in the benchmark's group, each counting what it gets.
    pub(crate) async fn start(agent: &AgentHandle, members: usize) -> Result<Self> {
        let delivered = Arc::new(AtomicU64::new(0));
        let group = [TP_GROUP.to_owned()];
        for _ in 0..members {
            let process = agent.spawn(None).await?;
            agent
                .join(DEFAULT_SCOPE, &group, process.pid(), None)
                .await
                .map_err(|e| anyhow!("join: {e}"))?;
            let count = delivered.clone();
            tokio::spawn(async move {
                while process.recv().await.is_some() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        Ok(Self {
            agent: agent.clone(),
            delivered,
        })
    }

    /// Runs one command.
    pub(crate) async fn handle(&mut self, cmd: GroupsCommand) -> Result<GroupsReply> {
        match cmd {
            GroupsCommand::Count => {
                let refused_in = self
                    .agent
                    .call(|n, _| n.stats().refused_in.values().sum::<u64>())
                    .await?;
                Ok(GroupsReply::Count {
                    delivered: self.delivered.load(Ordering::Relaxed),
                    refused_in,
                })
            }
            GroupsCommand::Send { ms, bytes, batch } => {
                send_window(&self.agent, Duration::from_millis(ms), bytes, batch).await
            }
        }
    }
}

/// The node's count of frames the transport refused.
fn backpressure(n: &Node) -> u64 {
    n.stats()
        .send_errors
        .get("backpressure")
        .copied()
        .unwrap_or(0)
}

/// Sends to the group for `window`, `batch` sends per call; after a call whose frames
/// the transport refused (queue full), or a `Busy`, waits 1 ms before the next.
async fn send_window(
    agent: &AgentHandle,
    window: Duration,
    bytes: usize,
    batch: usize,
) -> Result<GroupsReply> {
    let dest = group_dest();
    let payload = Bytes::from(vec![b'x'; bytes]);
    let start_bp = agent.call(|n, _| backpressure(n)).await?;
    let mut last_bp = start_bp;
    let (mut sends, mut errors, mut busy, mut targets) = (0u64, 0u64, 0u64, 0u64);
    let t0 = Instant::now();
    while t0.elapsed() < window {
        let (d, p) = (dest.clone(), payload.clone());
        let call = agent
            .call_mut(move |n, now| {
                let (mut ok, mut err, mut reached) = (0u64, 0u64, 0u64);
                // The refusals of the previous call's frames are counted by now.
                let bp = backpressure(n);
                for _ in 0..batch {
                    match n.send(now, None, &d, p.clone()) {
                        Ok(r) => {
                            ok += 1;
                            reached = (r.remote_targets + r.delivered_local) as u64;
                        }
                        Err(_) => err += 1,
                    }
                }
                (ok, err, reached, bp)
            })
            .await;
        match call {
            Ok((ok, err, reached, bp)) => {
                sends += ok;
                errors += err;
                targets = targets.max(reached);
                if bp > last_bp {
                    last_bp = bp;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Err(ApiError::Busy) => {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(ApiError::Stopped) => bail!("the agent stopped"),
        }
    }
    let elapsed = t0.elapsed();
    let end_bp = agent.call(|n, _| backpressure(n)).await?;
    Ok(GroupsReply::Sent {
        sends,
        errors,
        frames_refused: end_bp.saturating_sub(start_bp),
        busy,
        elapsed_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        targets,
    })
}

fn ask_groups(w: &mut Worker, cmd: GroupsCommand, timeout: Duration) -> Result<GroupsReply> {
    match w.ask(&WorkerCommand::Groups(cmd), timeout)? {
        WorkerReply::Groups(reply) => Ok(reply),
        other => bail!(
            "worker {}: expected a groups reply, got {other:?}",
            w.name()
        ),
    }
}

fn count(w: &mut Worker) -> Result<(u64, u64)> {
    match ask_groups(w, GroupsCommand::Count, Duration::from_secs(10))? {
        GroupsReply::Count {
            delivered,
            refused_in,
        } => Ok((delivered, refused_in)),
        other => bail!("worker {}: expected a count, got {other:?}", w.name()),
    }
}

/// Distinct members of the group as the agent at `admin` sees them.
fn members_seen(agent: &ureq::Agent, admin: SocketAddr) -> Result<usize> {
    let url = format!("http://{admin}/v1/groups/{TP_GROUP}");
    let view: GroupView = agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?
        .body_mut()
        .read_json()?;
    Ok(view
        .members
        .iter()
        .map(|m| &m.pid)
        .collect::<BTreeSet<_>>()
        .len())
}

/// Real agents on loopback (see the module docs); `exe` is this binary.
pub fn mesh_quic(
    s: &TpSettings,
    exe: &Path,
    meshctl: &Path,
    keep_files: bool,
    salt: u64,
) -> Result<Throughput> {
    let mut dir = ScratchDir::new("meshbench-groups-quic-")?;
    if keep_files {
        dir.keep();
    }
    let certs = dir.path().join("certs");
    let names: Vec<String> = std::iter::once("s0".to_owned())
        .chain((1..=s.peers).map(|i| format!("m{i}")))
        .collect();
    issue_certs(meshctl, &certs, &names)?;
    let ports = free_ports(2 * names.len(), salt)?;
    let seed = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0]));
    let mut workers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let join = (i > 0).then_some(seed);
        let mut args = WorkerArgs::new(name, &certs, (ports[2 * i], ports[2 * i + 1]), join);
        args.members = if i == 0 { 0 } else { s.per_peer };
        workers.push(Worker::start(exe, dir.path(), &args)?);
    }
    for w in &mut workers {
        w.wait_ready(Duration::from_secs(60))?;
    }
    // The sender routes by its own view: wait until it lists every member.
    let http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let want = s.members();
    let t0 = Instant::now();
    loop {
        let seen = members_seen(&http, workers[0].admin()).unwrap_or(0);
        if seen == want {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!(
                "the sender lists {seen} of {want} members after 120 s (logs in {})",
                dir.path().display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    progress(
        "mesh quic",
        &format!(
            "sender lists all {want} members after {:.1} s; sending for {:.0} s",
            t0.elapsed().as_secs_f64(),
            s.duration.as_secs_f64()
        ),
    );
    let count_all = |workers: &mut Vec<Worker>| -> Result<(u64, u64)> {
        let mut total = (0, 0);
        for w in workers.iter_mut().skip(1) {
            let (d, r) = count(w)?;
            total.0 += d;
            total.1 += r;
        }
        Ok(total)
    };
    let before = count_all(&mut workers)?;
    let cmd = GroupsCommand::Send {
        ms: u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX),
        bytes: s.payload,
        batch: s.batch,
    };
    let sent = ask_groups(&mut workers[0], cmd, s.duration + Duration::from_secs(60))?;
    let after = count_all(&mut workers)?;
    std::thread::sleep(Duration::from_secs(1));
    let settled = count_all(&mut workers)?;
    let GroupsReply::Sent {
        sends,
        errors,
        frames_refused,
        busy,
        elapsed_us,
        targets,
    } = sent
    else {
        bail!("sender: expected a send report, got {sent:?}");
    };
    Ok(Throughput {
        sends,
        send_errors: errors,
        frames_refused,
        busy,
        targets,
        elapsed: Duration::from_micros(elapsed_us),
        delivered: after.0 - before.0,
        settled: settled.0 - before.0,
        refused_in: settled.1 - before.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_lines_round_trip_and_a_zero_batch_is_refused() {
        let replies = [
            WorkerReply::Ready,
            WorkerReply::Groups(GroupsReply::Count {
                delivered: 12,
                refused_in: 3,
            }),
            WorkerReply::Groups(GroupsReply::Sent {
                sends: 1,
                errors: 2,
                frames_refused: 3,
                busy: 4,
                elapsed_us: 5,
                targets: 100,
            }),
            WorkerReply::Error("boom at once".to_owned()),
        ];
        for r in replies {
            assert_eq!(WorkerReply::parse(&r.to_line()), Some(r));
        }
        let send = WorkerCommand::Groups(GroupsCommand::Send {
            ms: 5000,
            bytes: 100,
            batch: 16,
        });
        assert_eq!(WorkerCommand::parse(&send.to_line()), Some(send));
        let zero = WorkerCommand::Groups(GroupsCommand::Send {
            ms: 10,
            bytes: 100,
            batch: 0,
        });
        assert_eq!(
            WorkerCommand::parse(&zero.to_line()),
            None,
            "a zero batch would spin"
        );
    }

    #[test]
    fn in_process_run_delivers_every_send_to_every_member() -> Result<()> {
        let s = TpSettings {
            peers: 2,
            per_peer: 3,
            payload: 100,
            duration: Duration::from_millis(20),
            batch: 4,
        };
        let tp = mesh_in_process(&s)?;
        assert!(tp.sends > 0);
        assert_eq!(tp.send_errors, 0);
        assert_eq!(tp.delivered, tp.sends * 6, "every member gets every send");
        assert!(tp.rate() > 0.0);
        Ok(())
    }

    #[test]
    fn in_memory_run_delivers_every_send_across_simulated_nodes() -> Result<()> {
        let s = TpSettings {
            peers: 2,
            per_peer: 2,
            payload: 100,
            duration: Duration::from_millis(20),
            batch: 4,
        };
        let tp = mesh_in_memory(&s, 7)?;
        assert!(tp.sends > 0);
        assert_eq!(tp.delivered, tp.sends * 4, "remote members get every send");
        assert_eq!(tp.refused_in, 0);
        Ok(())
    }

    #[test]
    fn rates_divide_by_the_window() {
        let tp = Throughput {
            sends: 10,
            delivered: 1000,
            elapsed: Duration::from_millis(500),
            ..Throughput::default()
        };
        assert!((tp.rate() - 2000.0).abs() < 1e-9);
        assert!((tp.sends_per_sec() - 20.0).abs() < 1e-9);
        assert_eq!(Throughput::default().rate(), 0.0);
    }
}

//! `meshctl demo`: a throw-away cluster of N agents on loopback, as child processes
//! of this binary, to try mesh without any setup.
//!
//! Everything lives in a temporary directory: the CA, one data directory per agent
//! (holding its certificate and key) and one log file per agent. Agents are named
//! `n1..nN`; `n1` has no seed and every other agent joins through it. With three
//! agents or more, `n1`, `n2` and `n3` are the voters of the quorum plane: once the
//! cluster formed, the demo waits for every agent to have the voters' root record in
//! force, then claims and releases a task through the last agent, to show task claims
//! working end to end. Before that it shows the groups plane: a listener on the first
//! agent joins a group and registers a name, the last agent resolves the name and
//! sends to the group, and the listener prints what arrived.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use mesh_api::{
    ClaimAnswer, ClaimBody, GroupView, ListenBody, ListenLine, MemberState, NameView, QuorumView,
    ReleaseBody, SendAnswer, SendBody,
};
use mesh_transport::certs::{generate_ca, issue_node_cert, write_pair};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::client::AdminClient;
use crate::error::{failure, Hint};
use crate::members::render_table;

/// How long the cluster has to form.
const FORM_DEADLINE: Duration = Duration::from_secs(30);
/// How long one agent has to start listening.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How long agents have to leave after SIGTERM before they are killed.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Pause between polls.
const POLL: Duration = Duration::from_millis(100);
/// Log lines shown when an agent fails.
const TAIL_LINES: usize = 20;
/// The demo's voters, when it has at least three agents.
const VOTERS: &str = "n1,n2,n3";
/// The task the demo claims and releases.
const DEMO_TASK: &str = "demo-task";
/// The group the demo's listener joins.
const DEMO_GROUP: &str = "demo";
/// The eventual name the demo's listener registers.
const DEMO_NAME: &str = "demo-listener";
/// How long the groups plane has to show each step (gossip, then the message).
const GROUPS_DEADLINE: Duration = Duration::from_secs(15);

/// `meshctl demo` options.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many agents to start.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    peers: u16,
    /// Use fixed ports: agent i (from 1) gets QUIC port P+2(i-1) and admin port
    /// P+2(i-1)+1 [default: free ports chosen by the system].
    #[arg(long, value_name = "P")]
    base_port: Option<u16>,
    /// SWIM timing profile.
    #[arg(long, value_enum, default_value_t = DemoProfile::Local)]
    profile: DemoProfile,
    /// Keep the temporary directory (certificates, data, logs) on exit.
    #[arg(long)]
    keep_dir: bool,
    /// Stop the agents and exit 0 as soon as every agent sees all N alive.
    #[arg(long, hide = true)]
    exit_when_ready: bool,
}

/// Profiles that converge fast enough for a demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DemoProfile {
    /// Probe every 200 ms.
    Local,
    /// Probe every 500 ms.
    Lan,
}

impl DemoProfile {
    fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Lan => "lan",
        }
    }
}

/// Runs `meshctl demo`.
pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let stop = StopSignal::install()?;
    let dir = tempfile::Builder::new()
        .prefix("meshctl-demo-")
        .tempdir()
        .hint("check that the temporary directory ($TMPDIR) is writable")?;
    let result = run_in(&args, dir.path(), &stop);
    if args.keep_dir {
        let kept = dir.keep();
        eprintln!("demo: kept {}", kept.display());
    }
    result
}

fn run_in(args: &DemoArgs, dir: &Path, stop: &StopSignal) -> Result<()> {
    let n = usize::from(args.peers);
    let exe = std::env::current_exe()
        .hint("meshctl starts its agents from its own binary, which it cannot locate")?;
    let ca_dir = dir.join("ca");
    let ca = generate_ca("demo").hint("this is a bug in meshctl; please report it")?;
    write_pair(&ca_dir, "ca", &ca).hint("check that $TMPDIR is writable")?;
    let ports = choose_ports(n, args.base_port)?;
    let voters = (n >= 3).then_some(VOTERS);

    let mut cluster = Cluster {
        nodes: Vec::with_capacity(n),
        keep_hint: if args.keep_dir {
            format!("the logs are in {}", dir.display())
        } else {
            "rerun with --keep-dir to keep the logs".to_owned()
        },
    };
    for (i, (quic, admin)) in ports.into_iter().enumerate() {
        let name = format!("n{}", i + 1);
        let data_dir = dir.join(&name);
        let pair =
            issue_node_cert(&ca, &name).hint("this is a bug in meshctl; please report it")?;
        write_pair(&data_dir, &name, &pair).hint("check that $TMPDIR is writable")?;
        let seed = cluster.nodes.first().map(|first: &Node| first.quic);
        let node = Node::spawn(
            &exe,
            &name,
            quic,
            admin,
            &data_dir,
            &ca_dir,
            seed,
            voters,
            args.profile,
        )?;
        cluster.nodes.push(node);
        // n1 first, so the others have someone to join; then each in turn, so a
        // failure names the agent that failed.
        cluster.wait_started(i, stop)?;
    }

    println!(
        "demo: {n} agents (profile {}), files in {}",
        args.profile.as_str(),
        dir.display()
    );
    for node in &cluster.nodes {
        println!(
            "  {:<4} quic {:<21} admin {:<21} log {}",
            node.name,
            node.quic,
            node.admin_shown(),
            node.log.display()
        );
    }
    println!("look around with:");
    for node in &cluster.nodes {
        println!("  meshctl members --admin {}", node.admin_shown());
    }
    if let Some(last) = cluster.nodes.last().filter(|_| voters.is_some()) {
        println!("  meshctl quorum status --admin {}", last.admin_shown());
        println!(
            "  meshctl claim job-1 --hold --admin {}",
            last.admin_shown()
        );
        println!("  meshctl claims --admin {}", last.admin_shown());
    }
    println!("waiting for every agent to see {n} alive members ...");
    let started = Instant::now();
    cluster.wait_converged(n, stop)?;
    println!(
        "all {n} agents see {n} alive members after {:.1}s:",
        started.elapsed().as_secs_f64()
    );
    if let Some(first) = cluster.nodes.first() {
        print!("{}", render_table(&first.client()?.members()?));
    }
    cluster.show_groups(stop)?;
    match voters {
        Some(voters) => {
            let started = Instant::now();
            cluster.wait_quorum(stop)?;
            println!(
                "claims: voters {voters} formed the quorum plane after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            cluster.show_claim()?;
        }
        None => println!("claims: off (they need 3 voters; run with --peers 3 or more)"),
    }
    if args.exit_when_ready {
        cluster.stop_all();
        return Ok(());
    }
    println!("demo running; press Ctrl-C to stop");
    while !stop.requested() {
        cluster.check_running()?;
        std::thread::sleep(POLL);
    }
    eprintln!("demo: stopping {n} agents");
    cluster.stop_all();
    Ok(())
}

/// QUIC and admin ports for `n` agents: from `base`, or free ones. An admin port of
/// 0 lets the agent pick; we read the one it chose from its first output line.
fn choose_ports(n: usize, base: Option<u16>) -> Result<Vec<(SocketAddr, SocketAddr)>> {
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    if let Some(base) = base {
        let last = usize::from(base) + 2 * n - 1;
        if base == 0 || last > usize::from(u16::MAX) {
            return Err(failure(
                format!("--base-port {base} leaves no room for {n} agents (2 ports each)"),
                format!(
                    "choose a --base-port between 1 and {}",
                    usize::from(u16::MAX) + 1 - 2 * n
                ),
            ));
        }
        return Ok((0..n)
            .map(|i| {
                let quic = usize::from(base) + 2 * i;
                // In range: checked against `last` above.
                let port = |p: usize| u16::try_from(p).unwrap_or(u16::MAX);
                (loopback(port(quic)), loopback(port(quic + 1)))
            })
            .collect());
    }
    // Hold every socket until all are chosen, so no port is handed out twice.
    let sockets = (0..n)
        .map(|_| UdpSocket::bind(loopback(0)))
        .collect::<std::io::Result<Vec<_>>>()
        .hint("cannot bind UDP sockets on 127.0.0.1; is loopback up?")?;
    sockets
        .iter()
        .map(|s| Ok((s.local_addr()?, loopback(0))))
        .collect::<std::io::Result<Vec<_>>>()
        .hint("cannot bind UDP sockets on 127.0.0.1; is loopback up?")
}

/// SIGINT/SIGTERM turned into a flag, checked by the polling loops (here and in
/// `meshctl claim --hold`).
pub(crate) struct StopSignal {
    flag: Arc<AtomicBool>,
    // Owns the task that listens for signals.
    _runtime: tokio::runtime::Runtime,
}

impl StopSignal {
    pub(crate) fn install() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .hint("the process may be out of threads or file descriptors")?;
        let flag = Arc::new(AtomicBool::new(false));
        let _guard = runtime.enter();
        let mut interrupt = signal(SignalKind::interrupt()).hint("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).hint("cannot handle SIGTERM")?;
        let set = Arc::clone(&flag);
        runtime.spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            set.store(true, Ordering::SeqCst);
        });
        Ok(Self {
            flag,
            _runtime: runtime,
        })
    }

    pub(crate) fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// One agent process.
struct Node {
    name: String,
    quic: SocketAddr,
    /// Asked for; port 0 until the agent says which it got.
    admin: SocketAddr,
    log: PathBuf,
    child: Child,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        exe: &Path,
        name: &str,
        quic: SocketAddr,
        admin: SocketAddr,
        data_dir: &Path,
        ca_dir: &Path,
        seed: Option<SocketAddr>,
        voters: Option<&str>,
        profile: DemoProfile,
    ) -> Result<Self> {
        let log = data_dir.with_extension("log");
        let out = File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))
            .hint("check that $TMPDIR is writable")?;
        let err = out
            .try_clone()
            .hint("the process may be out of file descriptors")?;
        let mut command = Command::new(exe);
        command
            .arg("agent")
            .args(["--name", name])
            .arg("--bind")
            .arg(quic.to_string())
            .arg("--admin")
            .arg(admin.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--ca")
            .arg(ca_dir.join("ca.crt"))
            .args(["--profile", profile.as_str()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(seed) = seed {
            command.arg("--seed").arg(seed.to_string());
        }
        if let Some(voters) = voters {
            command.args(["--voters", voters]);
        }
        // Our own MESH_* settings (a config file, an advertise address...) are not
        // meant for the demo agents.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MESH_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start agent {name} from {}", exe.display()))
            .hint("check that the meshctl binary is still in place")?;
        Ok(Self {
            name: name.to_owned(),
            quic,
            admin,
            log,
            child,
        })
    }

    fn admin_shown(&self) -> String {
        self.admin.to_string()
    }

    fn client(&self) -> Result<AdminClient> {
        if self.admin.port() == 0 {
            return Err(failure(
                format!("agent {} has not reported its admin address", self.name),
                "this is a bug in meshctl; please report it",
            ));
        }
        Ok(AdminClient::new(&self.admin.to_string(), None))
    }

    /// The admin address from the agent's "listening" line, once it is there.
    fn listening_admin(&self) -> Option<SocketAddr> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let prefix = format!("agent {} listening on ", self.name);
        let line = text.lines().find(|l| l.starts_with(&prefix))?;
        let (_, admin) = line.split_once("admin http://")?;
        admin.split_whitespace().next()?.parse().ok()
    }

    /// `Some(status)` once the process has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown status ({e})")),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

/// The agents of the demo; stopped when dropped, whatever happened.
struct Cluster {
    nodes: Vec<Node>,
    keep_hint: String,
}

impl Cluster {
    /// The failure of agent `i`, after printing the tail of its log.
    fn agent_failed(&self, i: usize, what: String) -> anyhow::Error {
        if let Some(node) = self.nodes.get(i) {
            eprintln!("--- last lines of {} ---", node.log.display());
            eprintln!("{}", node.log_tail());
            eprintln!("---");
        }
        failure(
            what,
            format!("the agent's log is above; {}", self.keep_hint),
        )
    }

    fn interrupted() -> anyhow::Error {
        failure(
            "interrupted before the cluster formed",
            "run `meshctl demo` again",
        )
    }

    /// Waits for agent `i` to print its "listening" line and records its admin port.
    fn wait_started(&mut self, i: usize, stop: &StopSignal) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if stop.requested() {
                return Err(Self::interrupted());
            }
            let node = &mut self.nodes[i];
            if let Some(admin) = node.listening_admin() {
                node.admin = admin;
                return Ok(());
            }
            if let Some(status) = node.exited() {
                let what = format!("agent {} exited at start-up ({status})", node.name);
                return Err(self.agent_failed(i, what));
            }
            if Instant::now() >= deadline {
                let what = format!(
                    "agent {} did not start listening within {}s",
                    node.name,
                    START_DEADLINE.as_secs()
                );
                return Err(self.agent_failed(i, what));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Fails if an agent has exited.
    fn check_running(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            if let Some(status) = self.nodes[i].exited() {
                let what = format!("agent {} exited ({status})", self.nodes[i].name);
                return Err(self.agent_failed(i, what));
            }
        }
        Ok(())
    }

    /// Waits until every agent sees `n` alive members.
    fn wait_converged(&mut self, n: usize, stop: &StopSignal) -> Result<()> {
        self.wait_all(
            stop,
            "the cluster did not form",
            "sees",
            |client| match client.members() {
                Ok(members) => {
                    let alive: Vec<String> = members
                        .iter()
                        .filter(|m| m.state == MemberState::Alive)
                        .map(|m| m.name.clone())
                        .collect();
                    (alive.len() != n)
                        .then(|| format!("{}/{n} alive ({})", alive.len(), alive.join(", ")))
                }
                Err(e) => Some(format!("no answer ({e})")),
            },
        )
    }

    /// Waits until every agent has the voters' root record in force and reaches a
    /// majority of the voters.
    fn wait_quorum(&mut self, stop: &StopSignal) -> Result<()> {
        let what = "the voters did not form the quorum plane";
        self.wait_all(stop, what, "is", |client| {
            match client.get_json::<QuorumView>("/v1/quorum") {
                Ok((_, v))
                    if v.status.epoch.is_some() && v.status.reachable.len() >= v.status.quorum =>
                {
                    None
                }
                Ok((_, v)) => Some(format!(
                    "{} with {} of {} voters reachable",
                    v.status.state,
                    v.status.reachable.len(),
                    v.status.voters.len()
                )),
                Err(e) => Some(format!("no answer ({e})")),
            }
        })
    }

    /// Polls every agent with `lagging` (None once that agent is ready, else what it
    /// shows) until all are ready, or fails after [`FORM_DEADLINE`] with `what` and each
    /// lagging agent's state ("n2 {verb} ...").
    fn wait_all(
        &mut self,
        stop: &StopSignal,
        what: &str,
        verb: &str,
        lagging: impl Fn(&AdminClient) -> Option<String>,
    ) -> Result<()> {
        let deadline = Instant::now() + FORM_DEADLINE;
        let clients = self
            .nodes
            .iter()
            .map(Node::client)
            .collect::<Result<Vec<_>>>()?;
        loop {
            if stop.requested() {
                return Err(Self::interrupted());
            }
            self.check_running()?;
            let behind: Vec<(usize, String)> = clients
                .iter()
                .enumerate()
                .filter_map(|(i, client)| lagging(client).map(|seen| (i, seen)))
                .collect();
            let Some((worst, _)) = behind.first() else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                let states: Vec<String> = behind
                    .iter()
                    .map(|(i, seen)| format!("{} {verb} {seen}", self.nodes[*i].name))
                    .collect();
                let what = format!(
                    "{what} within {}s: {}",
                    FORM_DEADLINE.as_secs(),
                    states.join("; ")
                );
                return Err(self.agent_failed(*worst, what));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The groups plane: a listener on the first agent in [`DEMO_GROUP`] under
    /// [`DEMO_NAME`]; the last agent resolves the name, sees the member and sends to the
    /// group; the listener prints the message. Each step is a line.
    fn show_groups(&self, stop: &StopSignal) -> Result<()> {
        let (Some(first), Some(last)) = (self.nodes.first(), self.nodes.last()) else {
            return Ok(());
        };
        let listener = first.client()?;
        let body = ListenBody {
            groups: vec![DEMO_GROUP.to_owned()],
            name: Some(DEMO_NAME.to_owned()),
            ..ListenBody::default()
        };
        let mut lines = listener.post_stream("/v1/listen", &body)?;
        let mut next_line = |what: &str| -> Result<ListenLine> {
            let deadline = Instant::now() + GROUPS_DEADLINE;
            loop {
                if stop.requested() {
                    return Err(Self::interrupted());
                }
                let mut line = String::new();
                let read = std::io::BufRead::read_line(&mut lines, &mut line).map_err(|e| {
                    failure(
                        format!("lost the listener's stream on {}: {e}", first.name),
                        "see the agent's log; rerun with --keep-dir to keep it",
                    )
                })?;
                if read == 0 {
                    return Err(failure(
                        format!("agent {} closed the listener's stream", first.name),
                        "see the agent's log; rerun with --keep-dir to keep it",
                    ));
                }
                match listener.parse::<ListenLine>(line.trim())? {
                    // Heartbeats (every second) let the deadline be checked.
                    ListenLine::Heartbeat if Instant::now() < deadline => {}
                    ListenLine::Heartbeat => {
                        return Err(failure(
                            format!(
                                "the demo listener on {} saw no {what} within {}s",
                                first.name,
                                GROUPS_DEADLINE.as_secs()
                            ),
                            format!("see the agents' logs; {}", self.keep_hint),
                        ))
                    }
                    other => return Ok(other),
                }
            }
        };
        let pid = match next_line("ready line")? {
            ListenLine::Ready { pid, .. } => pid,
            other => {
                return Err(failure(
                    format!("the demo listener's first line is {other:?}, not ready"),
                    "this is a bug in meshctl; please report it",
                ))
            }
        };
        println!(
            "groups: {} runs a listener {pid} in group {DEMO_GROUP} under the name {DEMO_NAME}",
            first.name
        );
        let sender = last.client()?;
        let started = Instant::now();
        let name = self.poll(
            stop,
            GROUPS_DEADLINE,
            "the name to reach the last agent",
            || {
                let (_, name) = sender
                    .get_json::<NameView>(&format!("/v1/names/{DEMO_NAME}"))
                    .ok()?;
                let (_, group) = sender
                    .get_json::<GroupView>(&format!("/v1/groups/{DEMO_GROUP}"))
                    .ok()?;
                (group.members.iter().any(|m| m.pid == name.pid)).then_some(name)
            },
        )?;
        println!(
            "names: {} resolves {DEMO_NAME} to {} on {} after {:.1}s",
            last.name,
            name.pid,
            name.node,
            started.elapsed().as_secs_f64()
        );
        let message = format!("hello from {}", last.name);
        let send = SendBody {
            group: Some(DEMO_GROUP.to_owned()),
            payload: Some(message.clone()),
            ..SendBody::default()
        };
        let answer: SendAnswer = sender.parse(&sender.post("/v1/send", &send)?)?;
        println!(
            "groups: {} sent {message:?} to group {DEMO_GROUP}: delivered to {} process{}",
            last.name,
            answer.delivered,
            if answer.delivered == 1 { "" } else { "es" }
        );
        match next_line("message")? {
            ListenLine::Message { payload, .. } => println!(
                "groups: the listener on {} received {:?}",
                first.name,
                payload.unwrap_or_default()
            ),
            other => {
                return Err(failure(
                    format!("the demo listener got {other:?} instead of the message"),
                    format!("see the agents' logs; {}", self.keep_hint),
                ))
            }
        }
        // Dropping the stream ends the listener: it leaves the group and the name.
        Ok(())
    }

    /// Polls `probe` every [`POLL`] until it gives a value, or fails after `within`.
    fn poll<T>(
        &self,
        stop: &StopSignal,
        within: Duration,
        what: &str,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + within;
        loop {
            if stop.requested() {
                return Err(Self::interrupted());
            }
            if let Some(v) = probe() {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(failure(
                    format!("timed out after {}s waiting for {what}", within.as_secs()),
                    format!("see the agents' logs; {}", self.keep_hint),
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Claims and releases [`DEMO_TASK`] through the last agent and says so.
    fn show_claim(&self) -> Result<()> {
        let Some(last) = self.nodes.last() else {
            return Ok(());
        };
        let client = last.client()?.for_quorum(&[(
            503,
            "the voters formed the quorum plane but it is unavailable now: see the logs",
        )]);
        let body = ClaimBody {
            task: DEMO_TASK.to_owned(),
            ttl_ms: None,
        };
        let answer: ClaimAnswer = client.parse(&client.post("/v1/claims", &body)?)?;
        println!(
            "claims: {} claimed {DEMO_TASK} with fencing token {}",
            answer.node, answer.token
        );
        let release = ReleaseBody {
            task: DEMO_TASK.to_owned(),
            token: answer.token,
        };
        client.post("/v1/claims/release", &release)?;
        println!("claims: {} released {DEMO_TASK}", answer.node);
        Ok(())
    }

    /// SIGTERM to every agent, a grace period to leave, then SIGKILL.
    fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if node.exited().is_none() {
                if let Ok(pid) = i32::try_from(node.child.id()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline && self.nodes.iter_mut().any(|n| n.exited().is_none()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for node in &mut self.nodes {
            if node.exited().is_none() {
                eprintln!("demo: agent {} did not stop in time; killing it", node.name);
                let _ = node.child.kill();
                let _ = node.child.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_ports_are_consecutive_pairs() {
        let ports = choose_ports(3, Some(40000)).expect("ports");
        let pairs: Vec<(u16, u16)> = ports.iter().map(|(q, a)| (q.port(), a.port())).collect();
        assert_eq!(pairs, [(40000, 40001), (40002, 40003), (40004, 40005)]);
        assert!(choose_ports(3, Some(65532)).is_err());
        assert!(choose_ports(3, Some(0)).is_err());
    }

    #[test]
    fn free_ports_are_distinct_and_admin_ports_are_left_to_the_agent() {
        let ports = choose_ports(5, None).expect("ports");
        let mut quic: Vec<u16> = ports.iter().map(|(q, _)| q.port()).collect();
        quic.sort_unstable();
        quic.dedup();
        assert_eq!(quic.len(), 5);
        assert!(ports.iter().all(|(_, a)| a.port() == 0));
    }
}

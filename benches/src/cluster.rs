//! A local cluster of agents of one system (mesh or serf) on 127.0.0.1: preparing it
//! (ports, certificates, command lines), starting, killing and restarting agents, and
//! reading each agent's own view of the membership.
//!
//! Every agent is a child process in a [`ChildGuard`]; the cluster's files (logs, data
//! directories, certificates) live in a [`ScratchDir`]. Dropping a [`Cluster`] kills its
//! agents and removes its directory.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::cleanup::{ChildGuard, ScratchDir};
use crate::ports::free_ports;
use crate::serf_rpc::{SerfMember, SerfRpc};

/// Which membership implementation a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    /// `meshctl agent`.
    Mesh,
    /// HashiCorp serf (memberlist), the baseline.
    Serf,
}

impl fmt::Display for SystemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mesh => "mesh",
            Self::Serf => "serf",
        })
    }
}

/// How one agent sees a member, mapped onto one vocabulary for both systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// mesh `alive`, serf `alive`.
    Alive,
    /// mesh `suspect` (serf does not expose suspicion in its member list).
    Suspect,
    /// mesh `down`, serf `failed`.
    Down,
    /// mesh `left`, serf `left` or `leaving`.
    Left,
    /// Anything else (serf `none`, an unknown mesh state).
    Other,
}

impl Status {
    /// From mesh's `/v1/members` `state`.
    fn from_mesh(state: &str) -> Self {
        match state {
            "alive" => Self::Alive,
            "suspect" => Self::Suspect,
            "down" => Self::Down,
            "left" => Self::Left,
            _ => Self::Other,
        }
    }

    /// From serf's member `Status`.
    fn from_serf(status: &str) -> Self {
        match status {
            "alive" => Self::Alive,
            "failed" => Self::Down,
            "left" | "leaving" => Self::Left,
            _ => Self::Other,
        }
    }

    /// True for the states that mean "declared gone" (what detection waits for and
    /// what a false down is).
    pub fn is_down(self) -> bool {
        matches!(self, Self::Down | Self::Left)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Down => "down",
            Self::Left => "left",
            Self::Other => "other",
        })
    }
}

/// One entry of mesh's `GET /v1/members`.
#[derive(Debug, Deserialize)]
struct MeshMember {
    /// Node name.
    name: String,
    /// `alive`, `suspect`, `down` or `left`.
    state: String,
    /// Incarnation; kept loosely typed so a format change does not break polling.
    #[serde(default)]
    incarnation: serde_json::Value,
}

/// One agent's view of the cluster: for each member name, the status of its newest
/// incarnation (a restarted mesh peer may be listed twice, old identity down and new
/// one alive; the newest one is what counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Name → status.
    members: BTreeMap<String, Status>,
}

impl View {
    /// Builds a view from mesh entries, keeping the highest incarnation per name (on a
    /// tie, the "most alive" status).
    fn from_mesh(entries: Vec<MeshMember>) -> Self {
        let mut newest: BTreeMap<String, (u64, Status)> = BTreeMap::new();
        for entry in entries {
            let incarnation = entry.incarnation.as_u64().unwrap_or(0);
            let status = Status::from_mesh(&entry.state);
            let slot = newest.entry(entry.name).or_insert((incarnation, status));
            if (incarnation, std::cmp::Reverse(status)) > (slot.0, std::cmp::Reverse(slot.1)) {
                *slot = (incarnation, status);
            }
        }
        Self {
            members: newest.into_iter().map(|(n, (_, s))| (n, s)).collect(),
        }
    }

    /// Builds a view from serf's member list (one entry per name).
    fn from_serf(members: Vec<SerfMember>) -> Self {
        Self {
            members: members
                .into_iter()
                .map(|m| (m.name, Status::from_serf(&m.status)))
                .collect(),
        }
    }

    /// How `name` is seen, `None` if unknown.
    pub fn status(&self, name: &str) -> Option<Status> {
        self.members.get(name).copied()
    }

    /// The names among `expected` not seen alive, with how they are seen.
    pub fn not_alive<'a>(&self, expected: &'a [String]) -> Vec<(&'a str, Option<Status>)> {
        expected
            .iter()
            .map(|name| (name.as_str(), self.status(name)))
            .filter(|(_, status)| *status != Some(Status::Alive))
            .collect()
    }

    /// Every member and its status.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Status)> {
        self.members.iter().map(|(n, s)| (n.as_str(), *s))
    }
}

/// Describes what a view lacks, e.g. `8/10 alive; n3 suspect, n9 unknown`.
pub fn describe_missing(view: &View, expected: &[String]) -> String {
    let missing = view.not_alive(expected);
    let alive = expected.len() - missing.len();
    let shown: Vec<String> = missing
        .iter()
        .take(8)
        .map(|(name, status)| match status {
            Some(s) => format!("{name} {s}"),
            None => format!("{name} unknown"),
        })
        .collect();
    let more = missing.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(", +{more} more")
    } else {
        String::new()
    };
    format!(
        "{alive}/{} alive; {}{tail}",
        expected.len(),
        shown.join(", ")
    )
}

/// Where the binaries are and how to run the agents.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `meshctl` binary.
    pub meshctl: PathBuf,
    /// `serf` binary.
    pub serf: PathBuf,
    /// Timing profile passed to both (`lan`).
    pub profile: String,
    /// serf `-retry-interval` (serf's `-join` is fatal if the seed is not up yet, so
    /// agents use `-retry-join`; mesh retries by itself). serf 0.8 raises anything
    /// below 1s to 1s.
    pub serf_retry_interval: String,
    /// Bound on every poll (HTTP request or RPC round trip).
    pub poll_timeout: Duration,
    /// Keep the scratch directory (logs) after the run.
    pub keep_files: bool,
}

/// The client an agent is polled with.
#[derive(Debug)]
enum Client {
    /// HTTP to mesh's admin API (one pooled agent, keep-alive).
    Mesh(ureq::Agent),
    /// serf RPC; reconnected after any error.
    Serf(Option<SerfRpc>),
}

/// One agent of a cluster.
#[derive(Debug)]
pub struct Node {
    /// Node name (`n1`, `n2`, ...; `n1` is the seed).
    pub name: String,
    /// Gossip port (UDP for mesh; UDP + TCP for serf).
    pub gossip_port: u16,
    /// Admin (mesh) or RPC (serf) address, used for polling.
    control: SocketAddr,
    /// Binary to run.
    program: PathBuf,
    /// Its arguments.
    args: Vec<OsString>,
    /// File receiving its stdout and stderr (appended across restarts).
    log: PathBuf,
    /// The running process, if any.
    child: Option<ChildGuard>,
    /// How to poll it.
    client: Client,
    /// Bound on one poll.
    poll_timeout: Duration,
}

impl Node {
    /// Starts (or restarts) the agent process.
    pub fn start(&mut self) -> Result<()> {
        if let Some(mut old) = self.child.take() {
            old.kill()?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("RUST_LOG", "warn");
        self.child = Some(ChildGuard::spawn(&mut command)?);
        if let Client::Serf(conn) = &mut self.client {
            *conn = None;
        }
        Ok(())
    }

    /// Kills the agent with `SIGKILL` (a crash, no leave message) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
        }
        if let Client::Serf(conn) = &mut self.client {
            *conn = None;
        }
        Ok(())
    }

    /// The admin API (mesh) or RPC (serf) address.
    pub fn control_addr(&self) -> SocketAddr {
        self.control
    }

    /// The agent's process id, if running.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// Fails with the exit status and the end of the agent's log if the process is
    /// not running (it exited by itself, or was never started).
    pub fn ensure_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} is not running", self.name);
        };
        if let Some(status) = child.exit_status()? {
            self.child = None;
            bail!(
                "{} exited by itself ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 2000)
            );
        }
        Ok(())
    }

    /// Asks the agent for its membership view.
    pub fn view(&mut self) -> Result<View> {
        match &mut self.client {
            Client::Mesh(agent) => {
                let url = format!("http://{}/v1/members", self.control);
                let entries: Vec<MeshMember> = agent
                    .get(&url)
                    .call()
                    .with_context(|| format!("GET {url}"))?
                    .body_mut()
                    .read_json()
                    .with_context(|| format!("parsing {url}"))?;
                Ok(View::from_mesh(entries))
            }
            Client::Serf(conn) => {
                if conn.is_none() {
                    *conn = Some(SerfRpc::connect(self.control, self.poll_timeout)?);
                }
                let rpc = conn.as_mut().context("serf RPC connection")?;
                match rpc.members() {
                    Ok(members) => Ok(View::from_serf(members)),
                    Err(e) => {
                        *conn = None;
                        Err(e)
                    }
                }
            }
        }
    }

    /// mesh only: the agent's `mesh_transport_bytes_total{direction="out"}`.
    pub fn mesh_bytes_out(&mut self) -> Result<f64> {
        let Client::Mesh(agent) = &self.client else {
            bail!("{}: not a mesh agent", self.name);
        };
        let url = format!("http://{}/metrics", self.control);
        let text = agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading {url}"))?;
        metric_sum(&text, "mesh_transport_bytes_total", "direction=\"out\"")
            .with_context(|| format!("{url}: no mesh_transport_bytes_total{{direction=\"out\"}}"))
    }

    /// The last `max_bytes` of the agent's log.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        log_tail(&self.log, max_bytes)
    }

    /// The last `max_lines` warning or error lines of the agent's log (agents log at
    /// `warn`, so start-up banners are all that is there otherwise), one line.
    pub fn log_problems(&self, max_lines: usize) -> String {
        let tail = log_tail(&self.log, 16 * 1024);
        let problems: Vec<&str> = tail
            .lines()
            .filter(|line| {
                let lower = line.to_ascii_lowercase();
                ["warn", "err", "panic", "fatal"]
                    .iter()
                    .any(|word| lower.contains(word))
            })
            .collect();
        if problems.is_empty() {
            return "no warnings or errors".to_owned();
        }
        let start = problems.len().saturating_sub(max_lines);
        problems[start..]
            .iter()
            .map(|line| line.trim())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Resident set size of the agent process, bytes (`VmRSS` in `/proc/PID/status`).
    pub fn rss_bytes(&self) -> Result<u64> {
        let pid = self
            .pid()
            .with_context(|| format!("{} not running", self.name))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .context("no VmRSS line")?
            .parse::<u64>()?;
        Ok(kib * 1024)
    }
}

/// Sum of the samples of `metric` whose label set contains `label` (Prometheus text
/// format), or `None` if there is none.
pub fn metric_sum(text: &str, metric: &str, label: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let Some(labels_and_value) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((labels, value)) = labels_and_value.split_once('}') else {
            continue;
        };
        if !labels.split(',').any(|l| l.trim() == label) {
            continue;
        }
        if let Some(Ok(v)) = value.split_whitespace().next().map(str::parse::<f64>) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The last `max_bytes` of a log file, for error messages.
pub fn log_tail(path: &Path, max_bytes: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) if text.trim().is_empty() => "(empty log)".to_owned(),
        Ok(text) => text,
        Err(e) => format!("(cannot read log: {e})"),
    }
}

/// A cluster of `n` agents of one system, prepared and then started.
#[derive(Debug)]
pub struct Cluster {
    /// Which system.
    pub kind: SystemKind,
    /// The agents; `nodes[0]` is the seed every other agent joins through.
    pub nodes: Vec<Node>,
    /// Logs, certificates, data directories.
    dir: ScratchDir,
}

impl Cluster {
    /// Chooses ports, writes certificates (mesh) and builds every command line; starts
    /// nothing. `salt` varies the ports between runs.
    pub fn prepare(kind: SystemKind, n: usize, opts: &ClusterOptions, salt: u64) -> Result<Self> {
        if n < 2 {
            bail!("a cluster needs at least 2 agents, got {n}");
        }
        let mut dir = ScratchDir::new(&format!("meshbench-{kind}-{n}-"))?;
        if opts.keep_files {
            dir.keep();
        }
        let ports = free_ports(2 * n, salt)?;
        let seed = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0]));
        if kind == SystemKind::Mesh {
            run_checked(
                Command::new(&opts.meshctl)
                    .args(["cert", "ca", "--out"])
                    .arg(dir.path().join("certs")),
            )?;
        }
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("n{}", i + 1);
            let gossip = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[2 * i]));
            let control = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[2 * i + 1]));
            let joins = (i > 0).then_some(seed);
            let (program, args, client) = match kind {
                SystemKind::Mesh => (
                    opts.meshctl.clone(),
                    mesh_args(opts, dir.path(), &name, gossip, control, joins)?,
                    Client::Mesh(
                        ureq::Agent::config_builder()
                            .timeout_global(Some(opts.poll_timeout))
                            .build()
                            .into(),
                    ),
                ),
                SystemKind::Serf => (
                    opts.serf.clone(),
                    serf_args(opts, &name, gossip, control, joins),
                    Client::Serf(None),
                ),
            };
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                gossip_port: gossip.port(),
                control,
                program,
                args,
                child: None,
                client,
                poll_timeout: opts.poll_timeout,
            });
        }
        Ok(Self { kind, nodes, dir })
    }

    /// Starts every agent, seed first, as fast as processes can be spawned.
    pub fn start_all(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            node.start()?;
        }
        Ok(())
    }

    /// Every agent's name, in order.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Every agent's gossip port.
    pub fn gossip_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.gossip_port).collect()
    }

    /// The scratch directory (logs are `NAME.log` in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `meshctl agent` arguments for one node; issues its certificate first.
fn mesh_args(
    opts: &ClusterOptions,
    dir: &Path,
    name: &str,
    bind: SocketAddr,
    admin: SocketAddr,
    seed: Option<SocketAddr>,
) -> Result<Vec<OsString>> {
    let certs = dir.join("certs");
    run_checked(
        Command::new(&opts.meshctl)
            .args(["cert", "issue", "--ca-dir"])
            .arg(&certs)
            .args(["--name", name, "--out"])
            .arg(&certs),
    )?;
    let data = dir.join(format!("{name}-data"));
    std::fs::create_dir_all(&data)?;
    let mut args: Vec<OsString> = vec![
        "agent".into(),
        "--name".into(),
        name.into(),
        "--bind".into(),
        bind.to_string().into(),
        "--admin".into(),
        admin.to_string().into(),
        "--ca".into(),
        certs.join("ca.crt").into(),
        "--cert".into(),
        certs.join(format!("{name}.crt")).into(),
        "--key".into(),
        certs.join(format!("{name}.key")).into(),
        "--profile".into(),
        opts.profile.clone().into(),
        "--data-dir".into(),
        data.into(),
    ];
    if let Some(seed) = seed {
        args.push("--seed".into());
        args.push(seed.to_string().into());
    }
    Ok(args)
}

/// `serf agent` arguments for one node.
fn serf_args(
    opts: &ClusterOptions,
    name: &str,
    bind: SocketAddr,
    rpc: SocketAddr,
    seed: Option<SocketAddr>,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "agent".into(),
        "-node".into(),
        name.into(),
        "-bind".into(),
        bind.to_string().into(),
        "-rpc-addr".into(),
        rpc.to_string().into(),
        "-profile".into(),
        opts.profile.clone().into(),
        "-log-level".into(),
        "warn".into(),
    ];
    if let Some(seed) = seed {
        args.push("-retry-join".into());
        args.push(seed.to_string().into());
        args.push("-retry-interval".into());
        args.push(opts.serf_retry_interval.clone().into());
    }
    args
}

/// Runs a short command to completion, failing with its stderr if it fails.
pub(crate) fn run_checked(command: &mut Command) -> Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_restarted_mesh_peer_counts_by_its_newest_incarnation() -> Result<()> {
        let entries: Vec<MeshMember> = serde_json::from_str(
            r#"[{"name":"n1","addr":"127.0.0.1:1","incarnation":1,"state":"alive","age_seconds":1.0,"is_self":true},
                {"name":"n2","addr":"127.0.0.1:2","incarnation":1,"state":"down","age_seconds":1.0,"is_self":false},
                {"name":"n2","addr":"127.0.0.1:2","incarnation":2,"state":"alive","age_seconds":0.1,"is_self":false},
                {"name":"n3","addr":"127.0.0.1:3","incarnation":5,"state":"suspect","age_seconds":0.1,"is_self":false}]"#,
        )?;
        let view = View::from_mesh(entries);
        assert_eq!(view.status("n2"), Some(Status::Alive));
        assert_eq!(
            view.not_alive(&names(&["n1", "n2", "n3", "n4"])),
            vec![("n3", Some(Status::Suspect)), ("n4", None)]
        );
        assert_eq!(
            describe_missing(&view, &names(&["n1", "n2", "n3", "n4"])),
            "2/4 alive; n3 suspect, n4 unknown"
        );
        Ok(())
    }

    #[test]
    fn serf_failed_is_down_and_left_is_down() {
        let view = View::from_serf(vec![
            SerfMember {
                name: "a".into(),
                status: "failed".into(),
            },
            SerfMember {
                name: "b".into(),
                status: "leaving".into(),
            },
        ]);
        assert!(view.status("a").is_some_and(Status::is_down));
        assert!(view.status("b").is_some_and(Status::is_down));
    }

    #[test]
    fn metric_sum_adds_matching_series_only() {
        let text = "# TYPE mesh_transport_bytes_total counter\n\
            mesh_transport_bytes_total{direction=\"in\"} 10\n\
            mesh_transport_bytes_total{direction=\"out\"} 1234\n\
            mesh_transport_bytes_total_other{direction=\"out\"} 99\n";
        assert_eq!(
            metric_sum(text, "mesh_transport_bytes_total", "direction=\"out\""),
            Some(1234.0)
        );
        assert_eq!(
            metric_sum(text, "mesh_transport_datagrams_total", "direction=\"out\""),
            None
        );
    }
}

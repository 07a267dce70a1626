//! Real `meshctl agent` processes on loopback, for process-level integration tests.
//!
//! A [`Cluster`] owns a temporary directory with a CA, one data directory and one log
//! file per agent, and the agent processes (killed when the cluster is dropped, also
//! when a test panics). Agents run with `--profile local`; their QUIC ports are
//! chosen free, their admin ports are chosen by the agent (`--admin 127.0.0.1:0`) and
//! read from its `agent NAME listening on ADDR, admin http://ADMIN` line.
//!
//! Waiting is always [`Cluster::wait_until`]: poll a condition with short sleeps, and
//! on timeout panic with the last observed state and the tail of every agent's log.
//!
//! The binary is found through `MESHCTL_BIN`, else next to the test executable's
//! directory (`target/debug/meshctl`); `scripts/test` builds it before the tests run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mesh_api::MemberState;
use mesh_api::MemberView;
use mesh_transport::certs::{generate_ca, issue_node_cert, write_pair, CertPair};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long an agent has to print its "listening" line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Agent::call`] waits for an answer: quorum calls answer within the agent's
/// `CALL_DEADLINE` (20 s), plus room.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between polls in [`wait_until`].
const POLL: Duration = Duration::from_millis(50);
/// Log lines shown per agent when a wait fails.
const TAIL_LINES: usize = 25;

/// Process tests start many agents; running them one test at a time keeps a 2-core
/// machine from starving agents into false suspicions.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// Holds the process-test lock until dropped; [`Cluster::new`] takes it too.
pub fn exclusive() -> MutexGuard<'static, ()> {
    // A test that panicked while holding the lock leaves nothing shared broken.
    EXCLUSIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `meshctl` binary: `$MESHCTL_BIN`, else `meshctl` in the directory above the
/// running test executable (`target/debug/meshctl` for `target/debug/deps/agents-*`).
///
/// # Panics
///
/// If there is no such file: build it first with `cargo build -p mesh-cli`.
pub fn meshctl_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("MESHCTL_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("meshctl"))
        .expect("the test executable is in target/<profile>/deps");
    assert!(
        bin.is_file(),
        "{} does not exist: build it first: cargo build -p mesh-cli (or set MESHCTL_BIN)",
        bin.display()
    );
    bin
}

/// A `meshctl` command with none of the caller's `MESH_*` variables.
pub fn meshctl() -> Command {
    let mut command = Command::new(meshctl_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MESH_") {
            command.env_remove(key);
        }
    }
    command
}

/// A loopback UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port on loopback")
}

/// Polls `probe` every 50 ms until it returns `Ok`. After `timeout`, panics with
/// `what`, the probe's last `Err` (the observed state) and `context()`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<(), String>,
    context: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(()) => return,
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting until {what}\nlast observed: {last}\n{}",
                context()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The value of one series in Prometheus text, e.g.
/// `metric_value(text, r#"mesh_transport_handshake_failures_total{kind="auth"}"#)`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A certificate authority on disk.
#[derive(Debug, Clone)]
pub struct Ca {
    /// The CA's certificate and key.
    pub pair: CertPair,
    /// `.../ca.crt`.
    pub cert_file: PathBuf,
}

/// One agent process (or its place, while stopped).
#[derive(Debug)]
pub struct Agent {
    /// Node name.
    pub name: String,
    /// QUIC address (also what peers dial).
    pub quic: SocketAddr,
    /// Admin API address of the current run.
    pub admin: SocketAddr,
    /// Data directory (certificate, key, durable state).
    pub data_dir: PathBuf,
    /// Log file (stdout and stderr of every run, appended).
    pub log: PathBuf,
    ca_file: PathBuf,
    seeds: Vec<SocketAddr>,
    /// Extra `meshctl agent` flags (e.g. `--voters n1,n2,n3`), kept across restarts.
    args: Vec<String>,
    child: Option<Child>,
    http: ureq::Agent,
}

impl Agent {
    /// `GET path` on the admin API: status and body.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        let url = format!("http://{}{path}", self.admin);
        let mut response = self
            .http
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        Ok((status, body))
    }

    /// `method path` on the admin API with an optional JSON body, waiting up to 30 s (a
    /// quorum call answers within the agent's 20 s deadline): status and body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, String)> {
        let url = format!("http://{}{path}", self.admin);
        let response = match (method, body) {
            ("GET", None) => self
                .http
                .get(&url)
                .config()
                .timeout_global(Some(CALL_TIMEOUT))
                .build()
                .call(),
            ("POST", Some(body)) => self
                .http
                .post(&url)
                .config()
                .timeout_global(Some(CALL_TIMEOUT))
                .build()
                .send_json(body),
            _ => bail!(
                "unsupported request {method} {path} (body: {})",
                body.is_some()
            ),
        };
        let mut response = response.with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        Ok((status, text))
    }

    /// `POST path` with a raw body and content type (for malformed-input tests).
    pub fn post_raw(&self, path: &str, content_type: &str, body: &str) -> Result<(u16, String)> {
        let url = format!("http://{}{path}", self.admin);
        let mut response = self
            .http
            .post(&url)
            .header("Content-Type", content_type)
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        Ok((status, text))
    }

    /// `GET /v1/members`, parsed.
    pub fn members(&self) -> Result<Vec<MemberView>> {
        let (status, body) = self.get("/v1/members")?;
        if status != 200 {
            bail!("{} /v1/members answered {status}: {body}", self.name);
        }
        serde_json::from_str(&body)
            .with_context(|| format!("{}: bad members JSON {body}", self.name))
    }

    /// Name → (state, incarnation) as this agent sees it.
    pub fn view(&self) -> Result<BTreeMap<String, (MemberState, u64)>> {
        Ok(self
            .members()?
            .into_iter()
            .map(|m| (m.name, (m.state, m.incarnation)))
            .collect())
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> Result<String> {
        let (status, body) = self.get("/metrics")?;
        if status != 200 {
            bail!("{} /metrics answered {status}", self.name);
        }
        Ok(body)
    }

    /// Whether the process is running (false once it exited or was killed).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status of the process once it has exited, waiting at most `within`
    /// (polling); `None` if it still runs then (or was never started or reaped).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => return None,
            }
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// Starts the process and waits for its "listening" line (records the admin
    /// address). Errors carry the log tail.
    fn spawn(&mut self) -> Result<()> {
        let offset = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let err = out.try_clone()?;
        let mut command = meshctl();
        command
            .arg("agent")
            .args(["--name", &self.name])
            .args(["--bind", &self.quic.to_string()])
            .args(["--admin", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--ca")
            .arg(&self.ca_file)
            .args(["--profile", "local"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for seed in &self.seeds {
            command.args(["--seed", &seed.to_string()]);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        self.child = Some(command.spawn().context("spawn meshctl agent")?);

        let deadline = Instant::now() + START_TIMEOUT;
        let prefix = format!("agent {} listening on ", self.name);
        loop {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let fresh =
                String::from_utf8_lossy(text.get(offset_usize(offset)..).unwrap_or_default())
                    .into_owned();
            let admin = fresh
                .lines()
                .find(|l| l.starts_with(&prefix))
                .and_then(|l| l.split_once("admin http://"))
                .and_then(|(_, a)| a.split_whitespace().next()?.parse().ok());
            if let Some(admin) = admin {
                self.admin = admin;
                return Ok(());
            }
            if !self.is_running() {
                self.child = None;
                bail!("agent {} exited at start-up; log:\n{fresh}", self.name);
            }
            if Instant::now() >= deadline {
                self.kill9();
                bail!(
                    "agent {} did not print its listening line within {START_TIMEOUT:?}; log:\n{fresh}",
                    self.name
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

fn offset_usize(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Agents on loopback sharing a CA and a temporary directory.
#[derive(Debug)]
pub struct Cluster {
    /// The agents, in start order.
    pub agents: Vec<Agent>,
    /// Extra flags for the agents started from now on (see [`Cluster::agent_args`]).
    args: Vec<String>,
    ca: Ca,
    dir: TempDir,
    _exclusive: MutexGuard<'static, ()>,
}

impl Cluster {
    /// An empty cluster with a fresh CA. Holds the [`exclusive`] lock.
    pub fn new() -> Self {
        let exclusive = exclusive();
        let dir = tempfile::Builder::new()
            .prefix("mesh-cluster-")
            .tempdir()
            .expect("temporary directory");
        let ca = make_ca(dir.path(), "ca", "test");
        Self {
            agents: Vec::new(),
            args: Vec::new(),
            ca,
            dir,
            _exclusive: exclusive,
        }
    }

    /// Extra `meshctl agent` flags for every agent started from now on (and kept for
    /// their restarts), e.g. `["--voters", "n1,n2,n3", "--claims-ttl", "2s"]`.
    pub fn agent_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| (*a).to_owned()).collect();
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster's CA.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// A second, unrelated CA (in `<dir>/<label>/`).
    pub fn other_ca(&self, label: &str) -> Ca {
        make_ca(self.dir.path(), label, label)
    }

    /// Starts agent `name` with a certificate from the cluster CA, joining through
    /// `seeds`; returns its index.
    pub fn start(&mut self, name: &str, seeds: &[SocketAddr]) -> usize {
        let ca = self.ca.clone();
        self.start_with_ca(name, seeds, &ca)
    }

    /// Starts agent `name` with a certificate from `ca` and trusting only `ca`.
    pub fn start_with_ca(&mut self, name: &str, seeds: &[SocketAddr], ca: &Ca) -> usize {
        self.start_labelled(name, name, seeds, ca)
    }

    /// Starts a second agent under the name of one already started, with its own valid
    /// certificate for that name, its own directory and log (`NAME-dup`): what an
    /// operator who copies a config makes.
    pub fn start_duplicate(&mut self, name: &str, seeds: &[SocketAddr]) -> usize {
        let ca = self.ca.clone();
        self.start_labelled(&format!("{name}-dup"), name, seeds, &ca)
    }

    fn start_labelled(&mut self, label: &str, name: &str, seeds: &[SocketAddr], ca: &Ca) -> usize {
        let data_dir = self.dir.path().join(label);
        let pair = issue_node_cert(&ca.pair, name).expect("node certificate");
        write_pair(&data_dir, name, &pair).expect("write node certificate");
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut agent = Agent {
            name: name.to_owned(),
            quic: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: self.dir.path().join(format!("{label}.log")),
            data_dir,
            ca_file: ca.cert_file.clone(),
            seeds: seeds.to_vec(),
            args: self.args.clone(),
            child: None,
            http,
        };
        // A port chosen free can be taken before the agent binds it: retry.
        let mut errors = Vec::new();
        for _ in 0..3 {
            agent.quic = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
            match agent.spawn() {
                Ok(()) => {
                    self.agents.push(agent);
                    return self.agents.len() - 1;
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        panic!("agent {name} did not start:\n{}", errors.join("\n---\n"));
    }

    /// Starts `n` agents `n1..nN`, all joining through `n1`; returns the seed address.
    pub fn start_n(&mut self, n: usize) -> SocketAddr {
        let first = self.start("n1", &[]);
        let seed = self.agents[first].quic;
        for i in 2..=n {
            self.start(&format!("n{i}"), &[seed]);
        }
        seed
    }

    /// Index of agent `name`.
    ///
    /// # Panics
    ///
    /// If there is no such agent.
    pub fn index(&self, name: &str) -> usize {
        self.agents
            .iter()
            .position(|a| a.name == name)
            .unwrap_or_else(|| panic!("no agent {name}"))
    }

    /// SIGKILLs agent `i`.
    pub fn kill9(&mut self, i: usize) {
        self.agents[i].kill9();
    }

    /// Starts agent `i` again: same name, address, data directory and seeds.
    ///
    /// # Panics
    ///
    /// If it does not start.
    pub fn restart(&mut self, i: usize) {
        self.agents[i].kill9();
        if let Err(e) = self.agents[i].spawn() {
            panic!("restarting {}: {e:#}", self.agents[i].name);
        }
    }

    /// [`wait_until`] with every agent's log tail as context.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        probe: impl FnMut() -> Result<(), String>,
    ) {
        wait_until(timeout, what, probe, || self.log_tails());
    }

    /// `Ok` when every agent in `observers` sees exactly `expected` (names) alive and
    /// nothing else alive; else what each saw.
    pub fn sees_alive(&self, observers: &[usize], expected: &[&str]) -> Result<(), String> {
        let mut want: Vec<&str> = expected.to_vec();
        want.sort_unstable();
        let mut wrong = String::new();
        for &i in observers {
            let agent = &self.agents[i];
            match agent.view() {
                Ok(view) => {
                    let alive: Vec<&str> = view
                        .iter()
                        .filter(|(_, (state, _))| *state == MemberState::Alive)
                        .map(|(name, _)| name.as_str())
                        .collect();
                    if alive != want {
                        let _ = write!(wrong, "{} sees {view:?}; ", agent.name);
                    }
                }
                Err(e) => {
                    let _ = write!(wrong, "{}: {e:#}; ", agent.name);
                }
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong)
        }
    }

    /// The last lines of every agent's log.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for agent in &self.agents {
            let _ = writeln!(
                out,
                "--- {} (pid {:?}, quic {}, admin {}) {} ---\n{}",
                agent.name,
                agent.pid(),
                agent.quic,
                agent.admin,
                agent.log.display(),
                agent.log_tail(TAIL_LINES)
            );
        }
        out
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

fn make_ca(dir: &Path, label: &str, cluster: &str) -> Ca {
    let pair = generate_ca(cluster).expect("CA");
    let ca_dir = dir.join(label);
    write_pair(&ca_dir, "ca", &pair).expect("write CA");
    Ca {
        pair,
        cert_file: ca_dir.join("ca.crt"),
    }
}

/// Creates an empty file (for logs of commands run by tests).
pub fn log_file(path: &Path) -> File {
    File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_are_found_by_exact_series() {
        let text = "# HELP x y\n\
                    mesh_transport_handshake_failures_total{kind=\"auth\"} 3\n\
                    mesh_transport_handshake_failures_total{kind=\"auth_other\"} 9\n\
                    mesh_members 5 1700000000\n";
        let auth = "mesh_transport_handshake_failures_total{kind=\"auth\"}";
        assert_eq!(metric_value(text, auth), Some(3.0));
        assert_eq!(metric_value(text, "mesh_members"), Some(5.0));
        assert_eq!(metric_value(text, "mesh_member"), None);
    }
}

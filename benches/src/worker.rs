//! Worker processes: a benchmark binary started as `<bench> worker ...` embeds one
//! [`mesh_agent::runtime::Agent`] (real QUIC with mTLS on loopback, no HTTP on the data
//! path) and takes commands from the harness on stdin, one JSON line each, answering on
//! stdout, one JSON line each. Its log goes to stderr (a file), so anything on stdout
//! that is not a reply is ignored.
//!
//! The protocol carries one part per benchmark: [`GroupsCommand`] (group sends and
//! delivery counts, `groups-bench`) and [`ClaimsCommand`] (claims and strong names,
//! `claims-bench`). A worker serves both; which one a run uses is the harness's choice.
//! Commands run one at a time, in order; a reply always answers the last command (a
//! [`ClaimsReply::Trying`] progress line comes before the final reply of an acquire).
//!
//! The harness side is [`Worker`]: [`Worker::start`] spawns the process (killed and
//! reaped on drop, on error and on Ctrl-C, see [`crate::cleanup`]) and [`Worker::ask`]
//! sends a command and waits for the reply.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mesh_agent::config::AgentConfig;
use mesh_agent::runtime::Agent;
use serde::{Deserialize, Serialize};

use crate::claims::{ClaimsCommand, ClaimsReply, ClaimsWorker};
use crate::cleanup::ChildGuard;
use crate::cluster::run_checked;
use crate::groups::{GroupsCommand, GroupsReply, GroupsWorker};

/// What the harness tells a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerCommand {
    /// A `groups-bench` command.
    Groups(GroupsCommand),
    /// A `claims-bench` command.
    Claims(ClaimsCommand),
}

impl WorkerCommand {
    /// The line sent on the worker's stdin.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("unencodable command: {e}"))
    }

    /// Parses a line; `None` if it is not a valid command (a command whose numbers
    /// cannot work, such as a zero batch, is not one either).
    pub fn parse(line: &str) -> Option<Self> {
        let cmd: Self = serde_json::from_str(line).ok()?;
        let valid = match &cmd {
            Self::Groups(c) => c.is_valid(),
            Self::Claims(c) => c.is_valid(),
        };
        valid.then_some(cmd)
    }
}

/// What a worker answers on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerReply {
    /// The agent runs (and its group members, if any, have joined).
    Ready,
    /// A `groups-bench` answer.
    Groups(GroupsReply),
    /// A `claims-bench` answer.
    Claims(ClaimsReply),
    /// The command (or the worker) failed.
    Error(String),
}

impl WorkerReply {
    /// The line written on stdout.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            serde_json::to_string(&Self::Error(format!("unencodable reply: {e}")))
                .unwrap_or_default()
        })
    }

    /// Parses a line; `None` if it is not a reply (log noise).
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }
}

/// How a worker is started (`<bench> worker ...`).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Node name (must match the certificate).
    #[arg(long)]
    pub name: String,
    /// QUIC address.
    #[arg(long)]
    pub bind: SocketAddr,
    /// Admin API address.
    #[arg(long)]
    pub admin: SocketAddr,
    /// Seed to join through.
    #[arg(long)]
    pub seed: Option<SocketAddr>,
    /// CA certificate.
    #[arg(long)]
    pub ca: PathBuf,
    /// Node certificate.
    #[arg(long)]
    pub cert: PathBuf,
    /// Node key.
    #[arg(long)]
    pub key: PathBuf,
    /// Members this agent holds in the groups benchmark's group.
    #[arg(long, default_value_t = 0)]
    pub members: usize,
    /// SWIM profile.
    #[arg(long, default_value = "lan")]
    pub profile: String,
    /// Voters of the quorum plane, comma-separated (none: claims are off).
    #[arg(long, value_delimiter = ',')]
    pub voters: Vec<String>,
    /// Data directory (a voter's acceptor store lives here, fsynced).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Claim shards.
    #[arg(long, default_value_t = mesh_agent::config::DEFAULT_SHARDS)]
    pub shards: u32,
    /// Default claims TTL, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub claims_ttl_ms: u64,
}

impl WorkerArgs {
    /// A worker `name` with certificates from `certs` (as [`issue_certs`] lays them
    /// out), QUIC on `ports.0` and its admin API on `ports.1` of 127.0.0.1, joining
    /// through `seed`; no members, no voters.
    pub fn new(name: &str, certs: &Path, ports: (u16, u16), seed: Option<SocketAddr>) -> Self {
        Self {
            name: name.to_owned(),
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, ports.0)),
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, ports.1)),
            seed,
            ca: certs.join("ca.crt"),
            cert: certs.join(format!("{name}.crt")),
            key: certs.join(format!("{name}.key")),
            members: 0,
            profile: "lan".to_owned(),
            voters: Vec::new(),
            data_dir: None,
            shards: mesh_agent::config::DEFAULT_SHARDS,
            claims_ttl_ms: 10_000,
        }
    }

    /// The command-line arguments after `worker` that parse back into `self`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--name".to_owned(),
            self.name.clone(),
            "--bind".to_owned(),
            self.bind.to_string(),
            "--admin".to_owned(),
            self.admin.to_string(),
            "--ca".to_owned(),
            self.ca.display().to_string(),
            "--cert".to_owned(),
            self.cert.display().to_string(),
            "--key".to_owned(),
            self.key.display().to_string(),
            "--members".to_owned(),
            self.members.to_string(),
            "--profile".to_owned(),
            self.profile.clone(),
            "--shards".to_owned(),
            self.shards.to_string(),
            "--claims-ttl-ms".to_owned(),
            self.claims_ttl_ms.to_string(),
        ];
        if let Some(seed) = self.seed {
            args.extend(["--seed".to_owned(), seed.to_string()]);
        }
        if !self.voters.is_empty() {
            args.extend(["--voters".to_owned(), self.voters.join(",")]);
        }
        if let Some(dir) = &self.data_dir {
            args.extend(["--data-dir".to_owned(), dir.display().to_string()]);
        }
        args
    }

    fn agent_config(&self) -> Result<AgentConfig> {
        let mut config = AgentConfig::new(
            self.name.clone(),
            self.ca.clone(),
            self.cert.clone(),
            self.key.clone(),
        );
        config.bind = self.bind;
        config.admin = self.admin;
        config.seeds = self.seed.into_iter().collect();
        config.profile = self.profile.parse().map_err(|e: String| anyhow!(e))?;
        config.voters = self.voters.clone();
        config.data_dir = self.data_dir.clone();
        config.shards = self.shards;
        config.claims_ttl = Duration::from_millis(self.claims_ttl_ms);
        Ok(config)
    }
}

/// Makes a cluster CA and one certificate per name in `certs` with `meshctl cert`.
pub fn issue_certs(meshctl: &Path, certs: &Path, names: &[String]) -> Result<()> {
    run_checked(
        Command::new(meshctl)
            .args(["cert", "ca", "--out"])
            .arg(certs),
    )?;
    for name in names {
        run_checked(
            Command::new(meshctl)
                .args(["cert", "issue", "--ca-dir"])
                .arg(certs)
                .args(["--name", name, "--out"])
                .arg(certs),
        )?;
    }
    Ok(())
}

/// Runs a worker until its stdin closes: an embedded agent and the line protocol on
/// stdin/stdout.
pub fn run_worker(args: WorkerArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let result = rt.block_on(worker_main(args));
    if let Err(e) = &result {
        say(&WorkerReply::Error(format!("{e:#}")));
    }
    result
}

/// Writes one reply line on stdout.
pub(crate) fn say(reply: &WorkerReply) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", reply.to_line());
    let _ = out.flush();
}

async fn worker_main(args: WorkerArgs) -> Result<()> {
    let config = args.agent_config()?;
    let agent = Agent::start(config).await.context("starting the agent")?;
    let mut groups = GroupsWorker::start(&agent, args.members).await?;
    let mut claims = ClaimsWorker::new(&agent, &args.name, args.shards);
    say(&WorkerReply::Ready);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let reply = match WorkerCommand::parse(&line) {
            Some(WorkerCommand::Groups(cmd)) => groups.handle(cmd).await.map(WorkerReply::Groups),
            Some(WorkerCommand::Claims(cmd)) => claims.handle(cmd).await.map(WorkerReply::Claims),
            None => Err(anyhow!("unknown command {line:?}")),
        };
        say(&reply.unwrap_or_else(|e| WorkerReply::Error(format!("{e:#}"))));
    }
    agent.leave(Duration::from_secs(1)).await;
    Ok(())
}

/// A running worker process as the harness sees it.
#[derive(Debug)]
pub struct Worker {
    args: WorkerArgs,
    child: ChildGuard,
    stdin: ChildStdin,
    replies: Receiver<WorkerReply>,
    log: PathBuf,
}

impl Worker {
    /// Starts `exe worker <args>` (its stderr appended to `<dir>/<name>.log`). Does not
    /// wait for it to be ready: see [`Worker::wait_ready`].
    pub fn start(exe: &Path, dir: &Path, args: &WorkerArgs) -> Result<Self> {
        let log = dir.join(format!("{}.log", args.name));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.arg("worker")
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env("RUST_LOG", "warn");
        let mut child = ChildGuard::spawn(&mut cmd)?;
        let (stdin, stdout) = child.take_pipes();
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            bail!("worker {}: no pipes", args.name);
        };
        let (tx, replies) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(reply) = WorkerReply::parse(&line) {
                    if tx.send(reply).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Self {
            args: args.clone(),
            child,
            stdin,
            replies,
            log,
        })
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.args.name
    }

    /// Its admin API address.
    pub fn admin(&self) -> SocketAddr {
        self.args.admin
    }

    /// How it was started (to start it again after a kill).
    pub fn args(&self) -> &WorkerArgs {
        &self.args
    }

    /// Waits for the worker's `ready` line.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        match self.expect(timeout)? {
            WorkerReply::Ready => Ok(()),
            other => bail!("worker {}: expected ready, got {other:?}", self.name()),
        }
    }

    /// Sends `cmd` without waiting for the answer.
    pub fn send(&mut self, cmd: &WorkerCommand) -> Result<()> {
        writeln!(self.stdin, "{}", cmd.to_line())
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("writing to worker {}", self.args.name))
    }

    /// Sends `cmd` and waits up to `timeout` for the reply.
    pub fn ask(&mut self, cmd: &WorkerCommand, timeout: Duration) -> Result<WorkerReply> {
        self.send(cmd)?;
        self.expect(timeout)
    }

    /// The next reply, within `timeout`; an `error` reply, a timeout or the worker's
    /// exit is an error that quotes the end of its log.
    pub fn expect(&mut self, timeout: Duration) -> Result<WorkerReply> {
        match self.replies.recv_timeout(timeout) {
            Ok(WorkerReply::Error(e)) => bail!("worker {}: {e}", self.args.name),
            Ok(reply) => Ok(reply),
            Err(RecvTimeoutError::Timeout) => bail!(
                "worker {} did not answer within {:.0} s; end of its log:\n{}",
                self.args.name,
                timeout.as_secs_f64(),
                crate::cluster::log_tail(&self.log, 2000)
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.exit_status().ok().flatten();
                bail!(
                    "worker {} exited ({status:?}); end of its log:\n{}",
                    self.args.name,
                    crate::cluster::log_tail(&self.log, 2000)
                )
            }
        }
    }

    /// `SIGKILL`s the worker and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_args_survive_the_command_line() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            w: WorkerArgs,
        }
        let mut args = WorkerArgs::new("n4", Path::new("/c"), (20_001, 20_002), None);
        args.seed = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 20_000)));
        args.voters = vec!["n1".into(), "n2".into(), "n3".into()];
        args.data_dir = Some("/d/n4".into());
        args.claims_ttl_ms = 1000;
        args.members = 3;
        let parsed = Cli::try_parse_from(std::iter::once("w".to_owned()).chain(args.to_args()))
            .expect("parses")
            .w;
        assert_eq!(parsed.to_args(), args.to_args());
        assert_eq!(parsed.voters, args.voters);
        assert_eq!(parsed.cert, PathBuf::from("/c/n4.crt"));
        let config = parsed.agent_config().expect("config");
        assert_eq!(config.claims_ttl, Duration::from_secs(1));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn log_noise_is_not_a_reply_and_bad_commands_are_refused() {
        assert_eq!(WorkerReply::parse("2026-11-24 WARN something"), None);
        assert_eq!(WorkerReply::parse(""), None);
        assert_eq!(
            WorkerReply::parse(&WorkerReply::Error("boom\nat once".into()).to_line()),
            Some(WorkerReply::Error("boom\nat once".into()))
        );
        assert_eq!(WorkerCommand::parse("sned"), None);
        assert_eq!(WorkerCommand::parse(r#"{"groups":"sned"}"#), None);
    }
}

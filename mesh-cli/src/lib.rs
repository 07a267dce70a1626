//! `meshctl`: run a mesh agent and operate a cluster.
//!
//! One binary for everything an operator does: `meshctl agent` runs a node,
//! `meshctl members` asks a node's admin API, `meshctl cert` makes the cluster CA
//! and node certificates, and `meshctl demo` starts a throw-away local cluster.
//!
//! One file per command (`agent.rs`, `members.rs`, `groups.rs`, `names.rs`,
//! `send.rs`, `listen.rs`, `monitor.rs`, `claim.rs` (claim, claims, release), `quorum.rs`, `info.rs`
//! (info, rtt, join, leave, force-leave), `completions.rs`, `cert.rs`,
//! `demo.rs`), plus `client.rs` (the admin API
//! client), `out.rs` (tables, stdout), `config_file.rs` (settings layers) and
//! `error.rs` (how errors are reported: one `error:` line, one `hint:` line, exit
//! code 1; usage errors are clap's, exit code 2).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod cert;
mod claim;
mod client;
mod completions;
mod config_file;
mod demo;
mod elect;
mod error;
mod groups;
mod info;
mod listen;
mod members;
mod monitor;
mod names;
mod out;
mod quorum;
mod send;
mod tags;

/// The `meshctl` command line.
#[derive(Debug, Parser)]
#[command(
    name = "meshctl",
    version,
    about = "Run a mesh agent and operate a cluster.",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a mesh agent (one per host) until SIGTERM or Ctrl-C.
    ///
    /// Every option can also come from a MESH_* environment variable or a TOML
    /// config file (--config); precedence is flag > env > file > default.
    Agent(Box<agent::AgentArgs>),
    /// List the members an agent knows (a table, or --json).
    Members(members::MembersArgs),
    /// List the groups an agent sees with member counts, or one group's members.
    Groups(groups::GroupsArgs),
    /// List the eventual names an agent sees, or find one; with --strong, strong names
    /// (register, whereis, release, transfer through a quorum).
    Names(names::NamesArgs),
    /// Send a message to a group, an eventual or strong name, or a process.
    Send(send::SendArgs),
    /// Hold a process on an agent that joins groups and/or registers a name, and
    /// print what it receives until interrupted.
    Listen(listen::ListenArgs),
    /// Claim a task for an agent (fenced by a token; the agent renews it until
    /// released), or with --hold for as long as this command runs.
    Claim(claim::ClaimArgs),
    /// List the claims (and strong names) of every shard, read through a quorum.
    Claims(claim::ClaimsArgs),
    /// Release a task claimed on this agent, given its current token.
    Release(claim::ReleaseArgs),
    /// Run a command while this agent leads an election (restarted when leadership
    /// returns; stopped before it ends), with the token in MESH_FENCING_TOKEN.
    Elect(elect::ElectArgs),
    /// The quorum plane of claims and strong names.
    #[command(subcommand)]
    Quorum(quorum::QuorumCommand),
    /// What an agent is: version and commit, name, incarnation, uptime, profile,
    /// voters and a summary of its configuration.
    Info(info::InfoArgs),
    /// The measured round trip from an agent to a member (smoothed, from
    /// anti-entropy exchanges).
    Rtt(info::RttArgs),
    /// Ask an agent to join the cluster through other nodes (their advertised
    /// addresses), as a seed would.
    Join(info::JoinArgs),
    /// Ask an agent to leave the cluster gracefully and exit.
    Leave(info::LeaveArgs),
    /// Show or change an agent's tags (KEY=VALUE labels gossiped with membership).
    #[command(subcommand)]
    Tags(tags::TagsCommand),
    /// Which live members should own a key: rendezvous hashing over the members whose
    /// tags match --filter (the preferred owner, then the next choices).
    Place(tags::PlaceArgs),
    /// Stream an agent's membership events, a group monitor (snapshot, then joins and
    /// leaves with reasons) or its claims events until Ctrl-C.
    Monitor(monitor::MonitorArgs),
    /// Mark a dead (down) member as left now, cluster-wide; refused for a live member.
    ForceLeave(info::ForceLeaveArgs),
    /// Make the cluster CA and node certificates.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Start a throw-away cluster of N agents on this machine.
    Demo(demo::DemoArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions(completions::CompletionsArgs),
}

/// Runs `meshctl` with the process's arguments and returns its exit code: 0 on
/// success, 1 on failure (after printing `error:` and `hint:` lines to stderr), 2 on
/// a usage error.
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version also arrive here, with exit code 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = match cli.command {
        Command::Agent(args) => agent::run(*args),
        Command::Members(args) => members::run(args),
        Command::Groups(args) => groups::run(args),
        Command::Names(args) => names::run(args),
        Command::Send(args) => send::run(args),
        Command::Listen(args) => listen::run(args),
        Command::Claim(args) => claim::run_claim(args),
        Command::Claims(args) => claim::run_claims(args),
        Command::Release(args) => claim::run_release(args),
        Command::Elect(args) => elect::run(args),
        Command::Quorum(command) => quorum::run(command),
        Command::Info(args) => info::run_info(args),
        Command::Rtt(args) => info::run_rtt(args),
        Command::Join(args) => info::run_join(args),
        Command::Leave(args) => info::run_leave(args),
        Command::Tags(command) => tags::run(command),
        Command::Place(args) => tags::run_place(args),
        Command::Monitor(args) => monitor::run(args),
        Command::ForceLeave(args) => info::run_force_leave(args),
        Command::Cert(command) => cert::run(command),
        Command::Demo(args) => demo::run(args),
        Command::Completions(args) => completions::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => error::report(&e),
    }
}

/// Not part of meshctl's interface: entry points for the fuzz targets in `fuzz/`
/// (`config_input`), which reach parsers that are otherwise private to the binary.
#[doc(hidden)]
pub mod fuzzing {
    /// Why a config file was refused.
    #[derive(Debug)]
    pub enum ConfigFileError {
        /// It is not valid TOML for the config keys: the 1-based line and a one-line
        /// message.
        Parse {
            /// The line.
            line: usize,
            /// The message.
            message: String,
        },
        /// It parsed, but a value is invalid (the message `error:` would print).
        Invalid(String),
    }

    /// Reads a config file's text as `meshctl agent --config` does (parse, defaults,
    /// validation) and returns the resolved config printed as `--check-config` prints
    /// it (without redacting the token).
    pub fn config_file(text: &str) -> Result<String, ConfigFileError> {
        let layer = crate::config_file::Layer::from_toml(text)
            .map_err(|(line, message)| ConfigFileError::Parse { line, message })?;
        let config = layer
            .resolve()
            .map_err(|e| ConfigFileError::Invalid(e.to_string()))?;
        toml::to_string(&config).map_err(|e| ConfigFileError::Invalid(format!("print: {e}")))
    }
}

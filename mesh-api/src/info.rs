//! The agent routes: `GET /v1/info` (`meshctl info`), `GET /v1/rtt/{name}`
//! (`meshctl rtt`), `POST /v1/join` (`meshctl join`) and `POST /v1/leave`
//! (`meshctl leave`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::MemberState;

/// The answer to `GET /v1/info`: what the agent is, runs and was configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfoView {
    /// The agent's version (`mesh-agent`'s crate version).
    pub version: String,
    /// The git commit the agent was built from (short hash), or `unknown` when it was
    /// built outside a git checkout.
    pub commit: String,
    /// Node name.
    pub name: String,
    /// This boot's incarnation.
    pub incarnation: u64,
    /// Address peers dial.
    pub addr: SocketAddr,
    /// Seconds since the agent started.
    pub uptime_seconds: f64,
    /// SWIM timing profile: `lan`, `wan` or `local`.
    pub profile: String,
    /// The quorum plane's voters; empty when claims are off.
    pub voters: Vec<String>,
    /// The settings that shape the agent's behaviour (no paths, no secrets).
    pub config: ConfigSummary,
    /// What is compiled in: the agent's cargo features that are on (none is defined
    /// yet) and its optional capabilities: `dns-seeds` (hickory-resolver),
    /// `redb-store` (the voters' durable store), `debug-assertions` when on. Empty from
    /// agents older than the field.
    #[serde(default)]
    pub features: Vec<String>,
    /// How the agent binary was built. Empty strings from agents older than the field.
    #[serde(default)]
    pub build: BuildInfo,
}

/// The build part of [`InfoView`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// Cargo profile: `debug` or `release`.
    pub profile: String,
    /// The compiler, as `rustc --version` printed it (`unknown` if it could not run).
    pub rustc: String,
    /// Target triple, e.g. `x86_64-unknown-linux-gnu`.
    pub target: String,
}

/// The configuration part of [`InfoView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSummary {
    /// Address the admin API listens on.
    pub admin: SocketAddr,
    /// The seeds it joins through (static addresses).
    pub seeds: Vec<SocketAddr>,
    /// The DNS seeds it looks up while alone (`dns://NAME:PORT`,
    /// `dns+srv://NAME`); empty from agents older than the field.
    #[serde(default)]
    pub dns_seeds: Vec<String>,
    /// The DNS server those are looked up at; `None`: the system's resolvers.
    #[serde(default)]
    pub dns_server: Option<SocketAddr>,
    /// SWIM packet size in bytes.
    pub packet_size: usize,
    /// Seconds a down node's groups and names stay hidden before they are purged.
    pub permdown_seconds: f64,
    /// Default capacity of a process mailbox, in messages.
    pub mailbox_capacity: usize,
    /// Number of claim shards, when claims are on.
    pub shards: Option<u32>,
    /// Default lease TTL of task claims in seconds, when claims are on.
    pub claims_ttl_seconds: Option<f64>,
}

/// The answer to `GET /v1/rtt/{name}`: the smoothed round trip from the answering
/// agent to member `name`, measured on anti-entropy requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RttView {
    /// The member.
    pub name: String,
    /// Smoothed round trip in milliseconds (an exponential moving average, 1/8 weight
    /// per sample).
    pub rtt_ms: f64,
    /// The member's state as the answering agent sees it: for a member that is not
    /// `alive`, `rtt_ms` is the last value measured while it answered.
    pub state: MemberState,
}

/// The body of `POST /v1/join`: addresses of members to join through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinBody {
    /// Advertised addresses of nodes of the cluster (at least one).
    pub addrs: Vec<SocketAddr>,
    /// How long to wait for each, in milliseconds (default 5 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// One address a join reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The member found there.
    pub name: String,
}

/// One address a join did not reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinFailed {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why.
    pub error: String,
}

/// The answer to `POST /v1/join` (`200`: at least one address was reached; when none
/// was, the route answers `504` with an error naming each failure instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinAnswer {
    /// The addresses reached, with the member found at each.
    pub joined: Vec<Joined>,
    /// The addresses not reached, and why.
    pub failed: Vec<JoinFailed>,
}

/// The answer to `POST /v1/leave` (`202 Accepted`), sent before the agent leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveAnswer {
    /// The node that is leaving.
    pub leaving: String,
}

//! The task-claim routes: `POST /v1/claims`, `POST /v1/claims/hold` (an NDJSON
//! stream of [`HoldLine`]s), `POST /v1/claims/release` and `GET /v1/claims`.

use serde::{Deserialize, Serialize};

use crate::StrongNameView;

/// `POST /v1/claims` and `POST /v1/claims/hold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// The task key (1..=128 bytes).
    pub task: String,
    /// The lease TTL in milliseconds (default: the agent's `claims_ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// The answer to `POST /v1/claims`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimAnswer {
    /// The task.
    pub task: String,
    /// Its fencing token: send it with every effect, and downstream refuse lower ones.
    pub token: u64,
    /// How long the claim is valid from now on the agent's clock, unless renewed (the
    /// agent renews it every TTL/3).
    pub valid_for_ms: u64,
    /// The agent that holds it.
    pub node: String,
}

/// `POST /v1/claims/release` (and its answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// The task.
    pub task: String,
    /// Its current token (a stale one is refused with 409 and changes nothing).
    pub token: u64,
}

/// One line of a `POST /v1/claims/hold` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HoldLine {
    /// The task is claimed: first line.
    Claimed {
        /// The task.
        task: String,
        /// Its fencing token.
        token: u64,
        /// Validity left, in milliseconds.
        valid_for_ms: u64,
    },
    /// A renew was acknowledged: the validity moved on.
    Renewed {
        /// The token (unchanged).
        token: u64,
        /// Validity left, in milliseconds.
        valid_for_ms: u64,
    },
    /// Nothing changed for a second (lets the agent notice a departed client).
    Heartbeat,
    /// The claim is lost and the stream ends: stop using the token.
    Lost {
        /// The task.
        task: String,
        /// The lost token.
        token: u64,
        /// `evicted` (a result showed it gone), `expired` (no renew was acknowledged in
        /// time), `released` (released through the API), `agent_stopped`.
        reason: String,
    },
}

/// A session (lease) in a shard table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// The session id, `node/incarnation/n`.
    pub session: String,
    /// The holder (the session's node).
    pub holder: String,
    /// The lease TTL in milliseconds.
    pub ttl_ms: u64,
    /// The stamp of its last refresh.
    pub renew_seq: u64,
}

/// A claim in a shard table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimView {
    /// The task.
    pub task: String,
    /// Its fencing token.
    pub token: u64,
    /// The holding node.
    pub holder: String,
    /// The holding session.
    pub session: String,
}

/// One shard table as `GET /v1/claims` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardView {
    /// The shard.
    pub shard: u32,
    /// The shard's fencing counter: the next token, version or stamp it hands out.
    pub next_token: u64,
    /// Sessions, by id.
    pub sessions: Vec<SessionView>,
    /// Claims, by task.
    pub claims: Vec<ClaimView>,
    /// Strong names, by name.
    pub names: Vec<StrongNameView>,
}

/// The answer to `GET /v1/claims`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsView {
    /// The shards read: the one asked for (even if never written), or every shard that
    /// was ever written.
    pub shards: Vec<ShardView>,
}

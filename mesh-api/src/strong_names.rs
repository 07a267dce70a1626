//! The strong-name routes: `POST /v1/names/strong` (register), `GET /v1/names/strong`
//! (the cache), `GET /v1/names/strong/{name}` (`whereis`), `POST
//! /v1/names/strong/release` and `POST /v1/names/strong/transfer`.

use serde::{Deserialize, Serialize};

/// A strong name: its owner and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrongNameView {
    /// The name.
    pub name: String,
    /// The owning process.
    pub pid: String,
    /// The owner's node.
    pub node: String,
    /// The version (the name's fencing token).
    pub version: u64,
    /// Whether it vanishes with its registering agent's session.
    pub ephemeral: bool,
    /// For an ephemeral name read from a table or the cache, that session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// `POST /v1/names/strong`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrongBody {
    /// The name (1..=128 bytes).
    pub name: String,
    /// The owner (`node/incarnation/local_id`); without it the agent spawns and keeps a
    /// process to own the name (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// Bind the name to the agent's session: it vanishes if the agent dies.
    #[serde(default)]
    pub ephemeral: bool,
}

/// `POST /v1/names/strong/release` (and its answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrongReleaseBody {
    /// The name.
    pub name: String,
    /// Its current version (a stale one is refused with 409 and changes nothing).
    pub version: u64,
}

/// `POST /v1/names/strong/transfer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrongTransferBody {
    /// The name.
    pub name: String,
    /// Its current version.
    pub version: u64,
    /// The new owner.
    pub pid: String,
}

/// The answer to `GET /v1/names/strong/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhereisAnswer {
    /// The owner and version.
    #[serde(flatten)]
    pub entry: StrongNameView,
    /// True for a quorum read; false for this agent's cache (possibly stale).
    pub linearizable: bool,
}

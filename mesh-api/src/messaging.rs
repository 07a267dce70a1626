//! The messaging routes: `POST /v1/send`, `POST /v1/listen` (an NDJSON stream of
//! [`ListenLine`]s) and `POST /v1/sync`.

use serde::{Deserialize, Serialize};

use crate::Policy;

/// `POST /v1/send`: exactly one of `group`, `name`, `strong`, `pid`; exactly one of `payload`
/// (text) and `payload_base64`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// A group to send to.
    #[serde(default)]
    pub group: Option<String>,
    /// The group's scope (default `default`).
    #[serde(default)]
    pub scope: Option<String>,
    /// Which group members: `all` (default), `local`, `one`, `nearest`.
    #[serde(default)]
    pub mode: Option<GroupMode>,
    /// An eventual name to send to.
    #[serde(default)]
    pub name: Option<String>,
    /// A strong name to send to: its owner as this agent's cache has it. The message
    /// carries the version, and the owner's node refuses it unless that version is
    /// current there (`stale_version`).
    #[serde(default)]
    pub strong: Option<String>,
    /// A PID to send to (`node/incarnation/local_id`).
    #[serde(default)]
    pub pid: Option<String>,
    /// The message as text.
    #[serde(default)]
    pub payload: Option<String>,
    /// The message as base64 (for binary payloads).
    #[serde(default)]
    pub payload_base64: Option<String>,
}

/// A target that did not get the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    /// The target.
    pub pid: String,
    /// Why (`mailbox_full`, `no_process`, ...).
    pub reason: String,
}

/// The answer to `POST /v1/send`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SendAnswer {
    /// Processes the message was delivered to (local and remote).
    pub delivered: usize,
    /// Remote nodes a frame went to.
    pub remote_nodes: usize,
    /// Targets that refused it.
    pub failed: Vec<Failed>,
    /// Nodes that did not confirm in time (their targets' fate is unknown).
    pub timed_out: Vec<String>,
    /// Nodes whose send queue was full: their targets got nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backpressure: Vec<String>,
}

/// `POST /v1/listen`: at least one group or a name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenBody {
    /// Groups to join (in `scope`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The scope (default `default`).
    #[serde(default)]
    pub scope: Option<String>,
    /// An eventual name to register.
    #[serde(default)]
    pub name: Option<String>,
    /// The name's conflict policy (default `notify`).
    #[serde(default)]
    pub policy: Option<Policy>,
    /// Metadata for the group memberships and the name.
    #[serde(default)]
    pub meta: Option<String>,
    /// Mailbox capacity (default: the agent's).
    #[serde(default)]
    pub mailbox: Option<usize>,
}

/// One line of a `listen` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ListenLine {
    /// The process is in place: first line.
    Ready {
        /// Its PID.
        pid: String,
        /// Groups joined.
        groups: Vec<String>,
        /// Scope.
        scope: String,
        /// Name registered, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A message.
    Message {
        /// The sending process, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// The payload, if it is UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<String>,
        /// The payload in base64, if it is not UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload_base64: Option<String>,
    },
    /// The process lost its name to a concurrent registration.
    NameConflict {
        /// The name.
        name: String,
        /// Who keeps it.
        winner: String,
    },
    /// Nothing happened for a second (lets the agent notice a departed client).
    Heartbeat,
    /// The process ended (killed by a name-conflict policy, or the agent stopping).
    Exited,
}

/// `POST /v1/sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    /// `quorum` (default) or `all`.
    #[serde(default = "default_sync_mode")]
    pub mode: SyncMode,
    /// Deadline in milliseconds (default 5000, at most 60000).
    #[serde(default = "default_sync_timeout")]
    pub timeout_ms: u64,
}

impl Default for SyncBody {
    /// What a `POST /v1/sync` without a body asks: `quorum`, 5000 ms.
    fn default() -> Self {
        Self {
            mode: default_sync_mode(),
            timeout_ms: default_sync_timeout(),
        }
    }
}

fn default_sync_mode() -> SyncMode {
    SyncMode::Quorum
}

fn default_sync_timeout() -> u64 {
    5000
}

/// Which members of a group a send reaches, as the API spells it (`all`, `local`,
/// `one`, `nearest`): the core's `GroupMode`, one for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMode {
    /// Every member (one copy per distinct process).
    #[default]
    All,
    /// Every member on this node.
    Local,
    /// One member chosen uniformly at random.
    One,
    /// A member on this node if there is one, else one on the peer with the shortest
    /// measured round trip (random among equals).
    Nearest,
}

/// How many peers a `POST /v1/sync` waits for, as the API spells it (`quorum`,
/// `all`): the core's `SyncMode`, one for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// A majority of the live cluster, this node included.
    Quorum,
    /// Every live peer.
    All,
}

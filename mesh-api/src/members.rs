//! `GET /v1/members`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One member as the admin API and `meshctl members` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// Address peers dial.
    pub addr: SocketAddr,
    /// Boot incarnation.
    pub incarnation: u64,
    /// Liveness as this node sees it.
    pub state: MemberState,
    /// Seconds since it entered that state.
    pub age_seconds: f64,
    /// True for the node answering.
    #[serde(default)]
    pub is_self: bool,
    /// The member's tags (`key=value` labels), as gossiped; absent when it has none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
}

/// What a node knows of a member's liveness, as the API spells it (`alive`,
/// `suspect`, `down`, `left`): the core's `MemberState`, one for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Someone suspects it; it is still treated as alive until declared down.
    Suspect,
    /// Declared down by the cluster.
    Down,
    /// Left the cluster on purpose.
    Left,
}

impl MemberState {
    /// Lower-case name, as used in the JSON, metrics labels and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Down => "down",
            Self::Left => "left",
        }
    }

    /// Alive or suspect: still counted as a member.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }
}

/// `POST /v1/force-leave`: mark a dead member as left now, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceLeaveBody {
    /// The member's name.
    pub name: String,
}

/// The answer to `POST /v1/force-leave` (`200`): the member is `left` in the answering
/// agent's view, and the news is gossiped to every other node. Refusals: `404` for a
/// name the agent does not know, `409` for a member that is alive or suspect (not dead
/// yet), `400` for the agent itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceLeaveAnswer {
    /// The member's name.
    pub name: String,
    /// The incarnation that was marked left.
    pub incarnation: u64,
    /// Its state before (`down`, or `left` if it had already left: nothing changed).
    pub was: MemberState,
}

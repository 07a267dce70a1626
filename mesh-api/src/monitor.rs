//! The monitor streams (`meshctl monitor`): `GET /v1/monitor/members`,
//! `GET /v1/monitor/groups?scope=S[&group=G]` and `GET /v1/monitor/claims`, each an
//! NDJSON stream (`application/x-ndjson`, one [`MonitorLine`] per line).
//!
//! Every stream writes a [`MonitorLine::Heartbeat`] after [`MONITOR_HEARTBEAT_MS`] of
//! silence (so the agent notices a departed client, and the client a silent agent). A
//! subscriber that falls behind is never left with a silent gap: the stream writes
//! [`MonitorLine::Lagged`] (members, claims) or [`MonitorLine::Overflowed`] (groups)
//! and ends; re-read the state and open a new stream. Closing the connection ends the
//! stream and frees its subscription (its group monitor).

use serde::{Deserialize, Serialize};

use crate::MemberState;

/// Longest a monitor stream stays silent: after this many milliseconds without an
/// event it writes a [`MonitorLine::Heartbeat`].
pub const MONITOR_HEARTBEAT_MS: u64 = 1_000;

/// `GET /v1/monitor/groups`'s query: `?scope=S[&group=G]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorGroupsQuery {
    /// The scope (default `default`).
    #[serde(default)]
    pub scope: Option<String>,
    /// One group of the scope; every group of the scope if absent.
    #[serde(default)]
    pub group: Option<String>,
}

/// What happened to a member (`GET /v1/monitor/members`): the core's membership event
/// kinds, spelled as in `mesh_membership_events_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberEventKind {
    /// The member (or a new incarnation of it) became alive.
    Up,
    /// The member became suspect.
    Suspect,
    /// A suspect member refuted the suspicion and is alive again.
    Alive,
    /// The member was declared down.
    Down,
    /// The member left on purpose (or was force-left by an operator).
    Left,
    /// The member's tags changed (its new set is in `GET /v1/members`).
    Tags,
}

impl MemberEventKind {
    /// Lower-case name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Suspect => "suspect",
            Self::Alive => "alive",
            Self::Down => "down",
            Self::Left => "left",
            Self::Tags => "tags",
        }
    }

    /// The member's state after the event (a tags change is reported only for a live
    /// member, and counts as alive here).
    pub fn state(self) -> MemberState {
        match self {
            Self::Up | Self::Alive | Self::Tags => MemberState::Alive,
            Self::Suspect => MemberState::Suspect,
            Self::Down => MemberState::Down,
            Self::Left => MemberState::Left,
        }
    }
}

/// Why a group event fired (`GET /v1/monitor/groups`): the core's event reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupEventReason {
    /// The process joined the group once more (one more occurrence).
    Joined,
    /// The process left the group once (one occurrence fewer).
    Left,
    /// The process exited: one occurrence fewer (one event per occurrence).
    ProcessExit,
    /// The member's node was declared down, or its incarnation superseded or purged:
    /// one occurrence fewer.
    NodeDown,
    /// The member's node came back before permdown: one occurrence more.
    NodeRestored,
    /// The member's metadata changed; its number of occurrences did not.
    MetaChanged,
}

impl GroupEventReason {
    /// The name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Left => "left",
            Self::ProcessExit => "process_exit",
            Self::NodeDown => "node_down",
            Self::NodeRestored => "node_restored",
            Self::MetaChanged => "meta_changed",
        }
    }

    /// The change in the member's number of occurrences: +1, -1 or 0.
    pub fn effect(self) -> i8 {
        match self {
            Self::Joined | Self::NodeRestored => 1,
            Self::Left | Self::ProcessExit | Self::NodeDown => -1,
            Self::MetaChanged => 0,
        }
    }
}

/// One member of a group in a [`MonitorLine::Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMember {
    /// The group.
    pub group: String,
    /// The process (`node/incarnation/local_id`).
    pub pid: String,
    /// Its node's name.
    pub node: String,
    /// Its number of occurrences (joins not yet left), at least 1.
    pub count: usize,
    /// Its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

/// Why a claim (or an ephemeral strong name) was lost (`GET /v1/monitor/claims`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LostReason {
    /// The session (or the claim) was found gone: evicted, or reassigned.
    Evicted,
    /// Its validity ran out before a renew was acknowledged (no quorum reachable, say).
    Expired,
}

impl LostReason {
    /// The name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evicted => "evicted",
            Self::Expired => "expired",
        }
    }
}

/// One line of a monitor stream, tagged by `event`. Which lines each route writes:
///
/// - `GET /v1/monitor/members`: `member`, `heartbeat`, `lagged` (last).
/// - `GET /v1/monitor/groups`: `snapshot` (first, once), `group`, `heartbeat`,
///   `overflowed` (last).
/// - `GET /v1/monitor/claims`: `claim_lost`, `claim_renewed`, `claim_assigned`,
///   `name_lost`, `heartbeat`, `lagged` (last). These are the claims of the agent
///   answering (its holder's events); calls' own results are not repeated here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MonitorLine {
    /// A membership change as the answering agent saw it.
    Member {
        /// What happened.
        kind: MemberEventKind,
        /// The member's name.
        name: String,
        /// The address it advertises.
        addr: std::net::SocketAddr,
        /// Its incarnation (boot).
        incarnation: u64,
    },
    /// The group's (or scope's) visible members when the monitor started; every later
    /// `group` line is a change from it, with nothing lost or repeated in between.
    Snapshot {
        /// The scope.
        scope: String,
        /// The group, or absent for every group of the scope.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// The members, sorted by group then PID.
        members: Vec<SnapshotMember>,
    },
    /// One change to a monitored group (one per occurrence: a process joined twice
    /// that exits gives two lines).
    Group {
        /// The scope.
        scope: String,
        /// The group.
        group: String,
        /// The process (`node/incarnation/local_id`).
        pid: String,
        /// Its node's name.
        node: String,
        /// Its metadata after the event (for a last leave, the metadata it had).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<String>,
        /// Why.
        reason: GroupEventReason,
    },
    /// A claim of this agent is no longer valid and never will be again.
    ClaimLost {
        /// The task.
        task: String,
        /// The lost fencing token.
        token: u64,
        /// Why.
        reason: LostReason,
    },
    /// A session refresh extended a claim this agent holds.
    ClaimRenewed {
        /// The task.
        task: String,
        /// Its fencing token.
        token: u64,
        /// Milliseconds of validity left when the line was written.
        valid_for_ms: u64,
    },
    /// A task was handed to this agent without its asking (a reassignment, or a claim
    /// whose call timed out but took effect).
    ClaimAssigned {
        /// The task.
        task: String,
        /// Its fencing token.
        token: u64,
    },
    /// An ephemeral strong name owned through this agent's session is gone.
    NameLost {
        /// The name.
        name: String,
        /// Its last version.
        version: u64,
        /// Why.
        reason: LostReason,
    },
    /// Nothing happened for [`MONITOR_HEARTBEAT_MS`].
    Heartbeat,
    /// The stream fell behind the agent's event buffer and missed `missed` events; it
    /// ends after this line. Re-read the state (`GET /v1/members`, ...) and reconnect.
    Lagged {
        /// How many events were missed.
        missed: u64,
    },
    /// The group monitor fell too far behind and was ended; the stream ends after
    /// this line. Reconnect for a new snapshot.
    Overflowed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tagged_by_event_in_snake_case() {
        let line = MonitorLine::Member {
            kind: MemberEventKind::Down,
            name: "n2".into(),
            addr: "127.0.0.1:7946".parse().expect("addr"),
            incarnation: 7,
        };
        assert_eq!(
            serde_json::to_string(&line).expect("json"),
            r#"{"event":"member","kind":"down","name":"n2","addr":"127.0.0.1:7946","incarnation":7}"#
        );
        let line = MonitorLine::Group {
            scope: "default".into(),
            group: "g".into(),
            pid: "n1/5/1".into(),
            node: "n1".into(),
            meta: None,
            reason: GroupEventReason::ProcessExit,
        };
        assert_eq!(
            serde_json::to_string(&line).expect("json"),
            r#"{"event":"group","scope":"default","group":"g","pid":"n1/5/1","node":"n1","reason":"process_exit"}"#
        );
        assert_eq!(
            serde_json::to_string(&MonitorLine::Lagged { missed: 3 }).expect("json"),
            r#"{"event":"lagged","missed":3}"#
        );
        assert_eq!(
            serde_json::to_string(&MonitorLine::Heartbeat).expect("json"),
            r#"{"event":"heartbeat"}"#
        );
    }

    #[test]
    fn names_agree_with_the_json() {
        for k in [
            MemberEventKind::Up,
            MemberEventKind::Suspect,
            MemberEventKind::Alive,
            MemberEventKind::Down,
            MemberEventKind::Left,
        ] {
            assert_eq!(
                serde_json::to_string(&k).expect("json"),
                format!("\"{}\"", k.as_str())
            );
        }
        for r in [
            GroupEventReason::Joined,
            GroupEventReason::Left,
            GroupEventReason::ProcessExit,
            GroupEventReason::NodeDown,
            GroupEventReason::NodeRestored,
            GroupEventReason::MetaChanged,
        ] {
            assert_eq!(
                serde_json::to_string(&r).expect("json"),
                format!("\"{}\"", r.as_str())
            );
        }
    }
}

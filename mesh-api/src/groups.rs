//! The groups and eventual-names routes: `GET /v1/scopes`, `GET /v1/groups`, `GET
//! /v1/groups/{group}`, `GET /v1/names`, `GET /v1/names/{name}`.

use serde::{Deserialize, Serialize};

/// A name's conflict policy as the API spells it (`notify`, `kill`,
/// `unregister_both`); the wire format inside the cluster uses one-letter names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The loser's claim is retracted and its process notified (default).
    #[default]
    Notify,
    /// As notify, and the losing process is ended.
    Kill,
    /// Both claims are retracted and both processes notified.
    UnregisterBoth,
}

/// One line of `GET /v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCount {
    /// The group.
    pub group: String,
    /// Distinct member processes.
    pub members: usize,
}

/// One member in `GET /v1/groups/{group}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The process.
    pub pid: String,
    /// Its node.
    pub node: String,
    /// How many times it joined (multiplicity).
    pub count: usize,
    /// Its metadata, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

/// `GET /v1/groups/{group}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The scope.
    pub scope: String,
    /// The group.
    pub group: String,
    /// Members, by PID.
    pub members: Vec<GroupMember>,
}

/// One name in `GET /v1/names`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameView {
    /// The name.
    pub name: String,
    /// The holder.
    pub pid: String,
    /// The holder's node.
    pub node: String,
    /// The claim's hybrid logical timestamp, `wall_ms.logical`.
    pub hlc: String,
    /// Conflict policy.
    pub policy: Policy,
    /// Metadata, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

//! The quorum route: `GET /v1/quorum`, the plane's status plus the preferred proposer
//! of every shard (`meshctl quorum status`).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// The quorum plane as one node sees it (`meshctl quorum status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    /// The configured voters.
    pub voters: Vec<String>,
    /// The root record's epoch, once formation finished.
    pub epoch: Option<u64>,
    /// Formation state: `forming`, `persisting`, `voter`, `non_voter`, `not_a_voter`,
    /// `config_mismatch`.
    pub state: String,
    /// Why, for `not_a_voter` and `config_mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Voters this node reaches (itself included).
    pub reachable: Vec<String>,
    /// Votes needed for a quorum.
    pub quorum: usize,
    /// Whether this node acts as an acceptor.
    pub acceptor: bool,
    /// Number of shards.
    pub shards: u32,
    /// Per voter, how many shards it is the preferred proposer of.
    pub preferred: BTreeMap<String, u32>,
    /// Shards this node watches (evicts expired sessions of).
    pub watched: Vec<u32>,
    /// Shards that look stalled from here, with why (`oversized`, `timeouts`). In the
    /// JSON an object keyed by the shard number as a string (`{"1": "timeouts"}`).
    #[serde(default, deserialize_with = "stalled_from_json")]
    pub stalled: BTreeMap<u32, String>,
    /// The largest shard register value this node sent (bytes), and its shard.
    #[serde(default)]
    pub largest_slot: Option<(u32, u64)>,
}

/// The answer to `GET /v1/quorum`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumView {
    /// The quorum plane as this agent sees it.
    #[serde(flatten)]
    pub status: QuorumStatus,
    /// The preferred proposer of each shard (index = shard) among the reachable voters.
    pub preferred_by_shard: Vec<Option<String>>,
}

/// Reads `stalled`'s shard numbers from the JSON object's string keys. serde_json does
/// that by itself for a plain [`QuorumStatus`], but not once it is flattened into
/// [`QuorumView`] (flattened fields are buffered, and the buffer keeps keys as strings),
/// so the view of a cluster with a stalled shard could not be read back.
fn stalled_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, String>, D::Error> {
    BTreeMap::<String, String>::deserialize(d)?
        .into_iter()
        .map(|(shard, why)| match shard.parse::<u32>() {
            Ok(shard) => Ok((shard, why)),
            Err(_) => Err(serde::de::Error::custom(format!(
                "stalled: shard {shard:?} is not a shard number"
            ))),
        })
        .collect()
}

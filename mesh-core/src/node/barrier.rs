//! The sync barrier (N6): [`Command::Sync`](super::Command::Sync) completes once the chosen peers' digests
//! cover this node's latest change, or fails at its deadline.
//!
//! "Cover" means the whole per-origin digest, not the highest dot: the target is this
//! node's own [`OriginDigest`] of groups and of names at the call, and a peer covers it
//! when [`Orswot::covered_by`](mesh_crdt::Orswot::covered_by) says so (its prefix reaches
//! the target's and its live dots in that prefix hash like ours). A removal (leave,
//! unregister, process exit) mints no dot; comparing sequence numbers alone let a
//! barrier after a removal return at once, with every peer still showing the removed
//! member.

use std::time::{Duration, Instant};

use mesh_crdt::{Digest, OriginDigest};
use serde::{Deserialize, Serialize};

use super::{Completion, Node, OpId};

/// How many peers a [`Command::Sync`](super::Command::Sync) waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// A majority of the live cluster, this node included.
    Quorum,
    /// Every live peer.
    All,
}

/// Identifies a pending [`Command::Sync`](super::Command::Sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyncId(pub u64);

/// Why a [`Command::Sync`](super::Command::Sync) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The deadline passed first.
    #[error("timed out: {covered} of {needed} peers covered this node's latest change")]
    Timeout {
        /// Peers whose digests covered it.
        covered: usize,
        /// Peers needed.
        needed: usize,
    },
}

#[derive(Debug)]
pub(super) struct SyncWaiter {
    id: SyncId,
    pub(super) deadline: Instant,
    mode: SyncMode,
    /// Our own origin's digests at the time of the call.
    target: Cover,
}

/// One replica's digests of our own origin: (groups, names); `None` if it knows nothing
/// of us in that CRDT.
pub(super) type Cover = (Option<OriginDigest>, Option<OriginDigest>);

impl Node {
    /// A propagation barrier: completes ([`Output::Completed`](super::Output::Completed)) once `mode`'s peers'
    /// digests cover this node's latest change to groups and names, or at `timeout`.
    /// Starts an anti-entropy round with every live peer so it does not wait for the
    /// periodic ones. (Scopes share one replica, so the barrier covers every scope.)
    pub(crate) fn sync(&mut self, now: Instant, mode: SyncMode, timeout: Duration) -> SyncId {
        let id = SyncId(self.next_sync);
        self.next_sync += 1;
        let target = self.own_cover();
        self.syncs.push(SyncWaiter {
            id,
            deadline: now + timeout,
            mode,
            target,
        });
        let peers: Vec<String> = self.peers.keys().cloned().collect();
        for p in peers {
            self.dissem.request_anti_entropy(now, &p);
        }
        self.check_syncs(now);
        self.after_input(now);
        id
    }

    fn own_cover(&self) -> Cover {
        (
            self.registry.groups().state().origin_digest(&self.name),
            self.registry.names().state().origin_digest(&self.name),
        )
    }

    /// True if `peer`'s digests of our origin hold everything `target` held.
    fn covers(&self, target: &Cover, peer: &Cover) -> bool {
        fn one<E: Ord + Clone + std::hash::Hash>(
            state: &mesh_crdt::Orswot<String, E>,
            me: &String,
            target: Option<&OriginDigest>,
            peer: Option<&OriginDigest>,
        ) -> bool {
            target.is_none_or(|t| state.covered_by(me, t, peer))
        }
        let groups = self.registry.groups().state();
        let names = self.registry.names().state();
        one(groups, &self.name, target.0.as_ref(), peer.0.as_ref())
            && one(names, &self.name, target.1.as_ref(), peer.1.as_ref())
    }

    fn sync_progress(&self, w: &SyncWaiter) -> (usize, usize) {
        let covered = self
            .peers
            .keys()
            .filter(|p| {
                self.cover
                    .get(*p)
                    .is_some_and(|c| self.covers(&w.target, c))
            })
            .count();
        let n = self.peers.len();
        let needed = match w.mode {
            SyncMode::All => n,
            // A majority of n + 1 nodes, this one included.
            SyncMode::Quorum => n.div_ceil(2),
        };
        (covered, needed)
    }

    pub(super) fn check_syncs(&mut self, now: Instant) {
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.syncs) {
            let (covered, needed) = self.sync_progress(&w);
            if covered >= needed {
                self.finish(OpId::Sync(w.id), Completion::Sync(Ok(())));
            } else if now >= w.deadline {
                self.finish(
                    OpId::Sync(w.id),
                    Completion::Sync(Err(SyncError::Timeout { covered, needed })),
                );
            } else {
                keep.push(w);
            }
        }
        self.syncs = keep;
    }

    pub(super) fn learn_digests(
        &mut self,
        now: Instant,
        peer: &str,
        groups: &Digest<String>,
        names: &Digest<String>,
    ) {
        self.cover.insert(
            peer.to_owned(),
            (
                groups.get(&self.name).copied(),
                names.get(&self.name).copied(),
            ),
        );
        // The peer's own partition header tells its current incarnation.
        if self.peers.contains_key(peer) {
            if let Some(own) = groups.get(&peer.to_owned()) {
                self.registry.node_alive(now, peer, own.incarnation);
            }
        }
        self.check_syncs(now);
    }
}

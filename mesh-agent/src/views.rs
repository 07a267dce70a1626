//! From the core's state to the admin API's wire types ([`mesh_api`]) and back.
//!
//! The wire types live in `mesh-api`, which depends on no core type, so that a client
//! builds without the agent. The core's enums that appear on the wire have their own
//! copies there, spelled the same; these functions convert them one for one (a
//! `From` impl is not possible: neither side is this crate's). Views that are built
//! from a core structure are built here or next to their route (`admin/*.rs`).

use mesh_api::{GroupMode, MemberState, Policy, QuorumStatus, SyncMode};
use mesh_core::membership::MemberState as CoreMemberState;
use mesh_core::node::{GroupMode as CoreGroupMode, SyncMode as CoreSyncMode};
use mesh_core::registry::ConflictPolicy;

/// A member's liveness as the API spells it.
pub(crate) fn member_state(s: CoreMemberState) -> MemberState {
    match s {
        CoreMemberState::Alive => MemberState::Alive,
        CoreMemberState::Suspect => MemberState::Suspect,
        CoreMemberState::Down => MemberState::Down,
        CoreMemberState::Left => MemberState::Left,
    }
}

/// A request's group mode as the core takes it.
pub(crate) fn group_mode(m: GroupMode) -> CoreGroupMode {
    match m {
        GroupMode::All => CoreGroupMode::All,
        GroupMode::Local => CoreGroupMode::Local,
        GroupMode::One => CoreGroupMode::One,
        GroupMode::Nearest => CoreGroupMode::Nearest,
    }
}

/// A request's sync mode as the core takes it.
pub(crate) fn sync_mode(m: SyncMode) -> CoreSyncMode {
    match m {
        SyncMode::Quorum => CoreSyncMode::Quorum,
        SyncMode::All => CoreSyncMode::All,
    }
}

/// A request's conflict policy as the core takes it.
pub(crate) fn conflict_policy(p: Policy) -> ConflictPolicy {
    match p {
        Policy::Notify => ConflictPolicy::Notify,
        Policy::Kill => ConflictPolicy::Kill,
        Policy::UnregisterBoth => ConflictPolicy::UnregisterBoth,
    }
}

/// A name's conflict policy as the API spells it.
pub(crate) fn api_policy(p: ConflictPolicy) -> Policy {
    match p {
        ConflictPolicy::Notify => Policy::Notify,
        ConflictPolicy::Kill => Policy::Kill,
        ConflictPolicy::UnregisterBoth => Policy::UnregisterBoth,
    }
}

/// The quorum plane as one node sees it: [`QuorumStatus`] of `q`.
pub(crate) fn quorum_status_of(q: &mesh_core::node::claims_plane::QuorumPlane) -> QuorumStatus {
    use mesh_core::quorum::FormationState as F;
    let (state, reason) = match q.formation().state() {
        F::Forming => ("forming", None),
        F::Persisting(_) => ("persisting", None),
        F::Voter(_) => ("voter", None),
        F::NonVoter(_) => ("non_voter", None),
        F::NotAVoter { reason, .. } => ("not_a_voter", Some(reason.clone())),
        F::ConfigMismatch { reason } => ("config_mismatch", Some(reason.clone())),
    };
    let voters: Vec<String> = q.config().voters.names().to_vec();
    let reachable = q.reachable_names();
    let mut preferred = std::collections::BTreeMap::new();
    for s in 0..q.config().shards {
        if let Some(p) = q.preferred(mesh_core::claims::ShardId(s)) {
            *preferred.entry(p).or_insert(0) += 1;
        }
    }
    QuorumStatus {
        epoch: q.root().map(|r| r.epoch),
        quorum: mesh_core::quorum::majority(voters.len()),
        voters,
        state: state.to_owned(),
        reason,
        reachable,
        acceptor: q.is_acceptor(),
        shards: q.config().shards,
        preferred,
        watched: q.watcher().watched().map(|s| s.0).collect(),
        stalled: q
            .shard_health()
            .iter()
            .filter_map(|(s, h)| Some((s.0, h.stalled()?.to_owned())))
            .collect(),
        largest_slot: q
            .shard_health()
            .iter()
            .max_by_key(|(_, h)| h.slot_bytes)
            .filter(|(_, h)| h.slot_bytes > 0)
            .map(|(s, h)| (s.0, h.slot_bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of `a` and `b` is the same.
    fn same_json(a: impl serde::Serialize, b: impl serde::Serialize) -> bool {
        serde_json::to_string(&a).ok() == serde_json::to_string(&b).ok()
    }

    // Each conversion maps every variant to the one spelled the same on the wire, so the
    // API's JSON is what it was when the bodies held the core's enums.
    #[test]
    fn member_states_convert_to_the_same_spelling() {
        for s in [
            CoreMemberState::Alive,
            CoreMemberState::Suspect,
            CoreMemberState::Down,
            CoreMemberState::Left,
        ] {
            assert!(same_json(s, member_state(s)), "{s:?}");
            assert_eq!(s.as_str(), member_state(s).as_str());
        }
        // The negative control: different states are told apart.
        assert!(!same_json(CoreMemberState::Down, MemberState::Left));
    }

    #[test]
    fn group_and_sync_modes_convert_to_the_same_spelling() {
        for m in [
            GroupMode::All,
            GroupMode::Local,
            GroupMode::One,
            GroupMode::Nearest,
        ] {
            assert!(same_json(m, group_mode(m)), "{m:?}");
        }
        assert_eq!(group_mode(GroupMode::default()), CoreGroupMode::default());
        for m in [SyncMode::Quorum, SyncMode::All] {
            assert!(same_json(m, sync_mode(m)), "{m:?}");
        }
        assert!(!same_json(SyncMode::All, CoreSyncMode::Quorum));
    }

    #[test]
    fn policies_convert_both_ways() {
        for p in [Policy::Notify, Policy::Kill, Policy::UnregisterBoth] {
            assert_eq!(api_policy(conflict_policy(p)), p);
        }
        assert_eq!(conflict_policy(Policy::Kill), ConflictPolicy::Kill);
        assert_eq!(
            conflict_policy(Policy::UnregisterBoth),
            ConflictPolicy::UnregisterBoth
        );
        assert_eq!(conflict_policy(Policy::default()), ConflictPolicy::Notify);
    }
}

//! Task claims and strong names through the whole node on the simulator: voter
//! formation, forwarding to the preferred proposer, group commit to (in-memory) stores,
//! holders, watchers and SWIM, under loss, partitions, kills and wiped disks. The
//! protocol itself is checked far harder (linearizability, validity windows, clock skew)
//! by `mesh-core/tests/claims_sim.rs` on the bare sans-IO pieces; these tests check that
//! the node wires them so that those properties reach the caller.
//!
//! `MESH_SIM_SEEDS=N` runs N seeds per test; `MESH_SIM_SEED=S` replays one.

use std::time::Duration;

use mesh_core::claims::{CallOk, ClaimReject, ClaimsError, HoldOutcome, HolderEvent, Unavailable};
use mesh_core::membership::MemberState;
use mesh_core::node::claims_plane::CallError;
use mesh_core::node::{Command, CommandId, Dest, Output};
use mesh_core::process::Delivery;
use mesh_tests::sim::{for_each_seed, LinkConfig, Sim};

const SEEDS: u64 = 24;
const TTL: Duration = Duration::from_secs(2);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Five nodes, voters n0..n2, claims TTL 2 s; returns once every node has the root.
fn cluster(seed: u64) -> Result<Sim, String> {
    cluster_with(seed, false)
}

/// [`cluster`], with the watchers' reassignment on or off (`claims_reassign`).
fn cluster_with(seed: u64, reassign: bool) -> Result<Sim, String> {
    let mut sim = Sim::new(seed);
    sim.set_voters(&[0, 1, 2]);
    if let Some(q) = sim.node_config.quorum.as_mut() {
        q.config.ttl = TTL;
        q.config.reassign = reassign;
    }
    sim.add_cluster(5);
    if !sim.run_until(secs(20), Sim::all_see_all_alive) {
        return Err(format!("membership: {}", sim.describe()));
    }
    let formed = sim.run_until(secs(20), |s| {
        s.live_nodes().iter().all(|&i| {
            s.node(i)
                .and_then(|n| n.quorum())
                .is_some_and(|q| q.root().is_some())
        })
    });
    if !formed {
        return Err("the voters never formed a root".into());
    }
    Ok(sim)
}

/// The command `Claim { task }` with the default TTL.
fn claim_cmd(task: &str) -> Command {
    Command::Claim {
        task: task.to_owned(),
        ttl: None,
    }
}

/// Runs `cmd` on node `n` and returns its reply if it came at once (a refusal, with
/// nothing submitted).
fn at_once(sim: &mut Sim, n: usize, cmd: Command) -> Option<Result<CallOk, CallError>> {
    let id = sim.command(n, cmd)?;
    sim.claim_result(n, id)
}

fn claim(sim: &mut Sim, n: usize, task: &str) -> Result<CallOk, String> {
    let Some(call) = sim.command(n, claim_cmd(task)) else {
        return Err(format!("n{n} is not running"));
    };
    match sim.await_claim(n, call, secs(10)) {
        Some(Ok(ok)) => Ok(ok),
        Some(Err(e)) => Err(format!("n{n}: {e}")),
        None => Err(format!("n{n}: no result within 10 s")),
    }
}

fn token_of(ok: &CallOk) -> u64 {
    match ok {
        CallOk::Claimed { token, .. } => *token,
        other => panic!("not a claim: {other:?}"),
    }
}

/// L2 through the node: a killed holder's task is claimable elsewhere within
/// TTL·(1+ρ) + detection + one commit, and with a higher token (S2); meanwhile every
/// attempt is refused with the holder and its token.
#[test]
fn a_killed_holders_task_is_claimable_again_within_the_bound_with_a_higher_token() {
    for_each_seed(
        "a_killed_holders_task_is_claimable_again_within_the_bound_with_a_higher_token",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed)?;
            let first = token_of(&claim(&mut sim, 3, "job")?);
            match claim(&mut sim, 4, "job") {
                Err(e) if e.contains("held by") => {}
                other => {
                    return Err(format!(
                        "a second holder must be refused with the holder: {other:?}"
                    ))
                }
            }
            sim.kill(3);
            let killed = sim.elapsed();
            // TTL·(1+ρ) on the watcher's clock, SWIM detection (LAN ≈ 3 s), one commit and
            // a forward timeout if the watcher's node was the preferred proposer that moved.
            let bound = TTL.mul_f64(1.001) + secs(6);
            loop {
                match claim(&mut sim, 4, "job") {
                    Ok(ok) => {
                        let took = sim.elapsed() - killed;
                        let token = token_of(&ok);
                        if token <= first {
                            return Err(format!("token {token} after {first}: tokens went back"));
                        }
                        if took > bound {
                            return Err(format!("claimable only after {took:?} (bound {bound:?})"));
                        }
                        return Ok(());
                    }
                    Err(e) if e.contains("held by") => {}
                    Err(e) => return Err(format!("unexpected failure: {e}")),
                }
                if sim.elapsed() - killed > bound + secs(5) {
                    return Err("never claimable again".into());
                }
                sim.run_for(Duration::from_millis(200));
            }
        },
    );
}

/// The `Assigned` events node `n` reported for `task`, in order.
fn assigned(sim: &Sim, n: usize, task: &str) -> Vec<u64> {
    sim.results
        .iter()
        .filter_map(|(node, out)| match out {
            Output::ClaimEvent(HolderEvent::Assigned { task: t, token })
                if *node == n && t == task =>
            {
                Some(*token)
            }
            _ => None,
        })
        .collect()
}

/// Reassignment through the node (`claims_reassign`): a worker offers itself by trying
/// to claim the task (refused, but its session in the task's shard stays open and is
/// renewed); when the holder is killed, the task is handed to the worker with a higher
/// token, it reports `Assigned` within TTL·(1+ρ) + detection + a renew period, and
/// holds the task valid. The control: with reassignment off the same run assigns
/// nothing (the task is only freed).
#[test]
fn with_reassignment_a_killed_holders_task_is_assigned_to_the_live_worker() {
    for_each_seed(
        "with_reassignment_a_killed_holders_task_is_assigned_to_the_live_worker",
        SEEDS,
        |seed| {
            for reassign in [true, false] {
                let mut sim = cluster_with(seed, reassign)?;
                let first = token_of(&claim(&mut sim, 3, "job")?);
                match claim(&mut sim, 4, "job") {
                    Err(e) if e.contains("held by") => {}
                    other => return Err(format!("the worker's claim must be refused: {other:?}")),
                }
                sim.kill(3);
                let bound = TTL.mul_f64(1.001) + TTL / 3 + secs(6);
                let came = sim.run_until(bound, |s| !assigned(s, 4, "job").is_empty());
                let tokens = assigned(&sim, 4, "job");
                if !reassign {
                    if came || !tokens.is_empty() {
                        return Err(format!("reassignment off, yet assigned {tokens:?}"));
                    }
                    continue;
                }
                let Some(&token) = tokens.first() else {
                    return Err(format!(
                        "no Assigned within {bound:?} of the kill: {}",
                        sim.describe()
                    ));
                };
                if token <= first {
                    return Err(format!("assigned token {token} after {first}"));
                }
                let valid = sim
                    .node(4)
                    .and_then(|n| n.quorum())
                    .and_then(|q| q.validity("job"));
                match valid {
                    Some((t, _)) if t == token => {}
                    other => return Err(format!("the worker holds {other:?}, not {token}")),
                }
                // Nobody else got it, and another claim is refused with the worker.
                if [0, 1, 2]
                    .iter()
                    .any(|&n| !assigned(&sim, n, "job").is_empty())
                {
                    return Err("assigned to a node that never offered itself".into());
                }
                match claim(&mut sim, 0, "job") {
                    Err(e) if e.contains("held by") => {}
                    other => return Err(format!("a third claim must be refused: {other:?}")),
                }
            }
            Ok(())
        },
    );
}

/// L3 through the node: under 5 % loss, a holder that keeps renewing (by itself,
/// every TTL/3) never loses its claim, and its validity never lapses.
#[test]
fn a_renewing_holder_never_loses_its_claim_under_loss() {
    for_each_seed(
        "a_renewing_holder_never_loses_its_claim_under_loss",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed)?;
            let token = token_of(&claim(&mut sim, 3, "steady")?);
            sim.set_network(LinkConfig {
                loss: 0.05,
                ..LinkConfig::default()
            });
            for step in 0..100 {
                sim.run_for(Duration::from_millis(200));
                let valid = sim.with_node(3, |n, now| {
                    n.quorum().is_some_and(|q| q.is_valid(now, "steady", token))
                });
                if valid != Some(true) {
                    return Err(format!(
                        "the claim lapsed at step {step} ({:?})",
                        sim.elapsed()
                    ));
                }
            }
            Ok(())
        },
    );
}

/// L4: one isolated voter stalls nothing — claims from other nodes complete promptly.
#[test]
fn one_isolated_voter_stalls_nothing() {
    for_each_seed("one_isolated_voter_stalls_nothing", SEEDS, |seed| {
        let mut sim = cluster(seed)?;
        let voter = usize::try_from(seed % 3).unwrap_or(0);
        sim.isolate(voter);
        for k in 0..5 {
            let n = 3 + k % 2;
            let t0 = sim.elapsed();
            claim(&mut sim, n, &format!("task{k}"))?;
            let took = sim.elapsed() - t0;
            // A forward to the isolated voter (if it was preferred) times out once.
            if took > secs(4) {
                return Err(format!("a claim took {took:?} with n{voter} isolated"));
            }
        }
        Ok(())
    });
}

/// Q4: on the minority side of a partition calls answer Unavailable with the reason,
/// at once; the majority side carries on.
#[test]
fn the_minority_side_answers_unavailable_and_the_majority_carries_on() {
    for_each_seed(
        "the_minority_side_answers_unavailable_and_the_majority_carries_on",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed)?;
            sim.partition(&[0, 3], &[1, 2, 4]);
            let apart = sim.run_until(secs(20), |s| {
                s.all_see(&[3], 1, &[MemberState::Down]) && s.all_see(&[3], 2, &[MemberState::Down])
            });
            if !apart {
                return Err("the partition was never seen".into());
            }
            let r = at_once(&mut sim, 3, claim_cmd("x"));
            match r {
                Some(Err(CallError::Claims(ClaimsError::Unavailable {
                    reason:
                        Unavailable::NoQuorum {
                            reachable: 1,
                            needed: 2,
                        },
                }))) => {}
                other => {
                    return Err(format!(
                        "minority: want Unavailable(NoQuorum 1/2), got {other:?}"
                    ))
                }
            }
            claim(&mut sim, 4, "x").map(|_| ())
        },
    );
}

/// Strong names: two concurrent registrations of one name — exactly one wins, the other
/// is refused with the winner; a send to the name reaches the winner with its version.
#[test]
fn concurrent_strong_registrations_have_exactly_one_winner() {
    for_each_seed(
        "concurrent_strong_registrations_have_exactly_one_winner",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed)?;
            let mut calls = Vec::new();
            for n in [3, 4] {
                let (pid, mb) = sim
                    .with_node(n, |node, _| node.spawn(None))
                    .ok_or(format!("n{n} is not running"))?;
                let register = Command::RegisterStrong {
                    name: "leader".into(),
                    owner: pid.clone(),
                    ephemeral: false,
                };
                let call = sim
                    .command(n, register)
                    .ok_or(format!("n{n} is not running"))?;
                calls.push((n, pid, mb, call));
            }
            let mut winners = Vec::new();
            let mut losers = Vec::new();
            for (n, pid, _, call) in &calls {
                match sim.await_claim(*n, *call, secs(10)) {
                    Some(Ok(CallOk::Registered { version, .. })) => {
                        winners.push((pid.clone(), version))
                    }
                    Some(Err(CallError::Claims(ClaimsError::Rejected(
                        ClaimReject::NameTaken { owner, .. },
                    )))) => losers.push(owner),
                    other => return Err(format!("n{n}: {other:?}")),
                }
            }
            let [(winner, version)] = winners.as_slice() else {
                return Err(format!("winners {winners:?}, losers {losers:?}"));
            };
            if losers != vec![winner.clone()] {
                return Err(format!(
                    "the loser must be told the winner {winner:?}: {losers:?}"
                ));
            }
            // The cache reaches every node (gossip); a send carries the version.
            let cached = sim.run_until(secs(10), |s| {
                s.node(0)
                    .and_then(|n| n.quorum())
                    .and_then(|q| q.name_cache().whereis("leader").cloned())
                    .is_some_and(|e| e.owner == *winner && e.version == *version)
            });
            if !cached {
                return Err("the strong name never reached n0's cache".into());
            }
            let sent = sim.with_node(0, |n, now| {
                n.send(
                    now,
                    None,
                    &Dest::Strong("leader".into()),
                    bytes::Bytes::from_static(b"hi"),
                )
            });
            if !matches!(sent, Some(Ok(_))) {
                return Err(format!("send to the strong name: {sent:?}"));
            }
            sim.run_for(secs(1));
            let (_, _, mb, _) = calls
                .iter()
                .find(|(_, p, _, _)| p == winner)
                .ok_or("the winner is one of the two")?;
            match mb.try_recv() {
                Some(Delivery::Message { payload, .. }) if payload.as_ref() == b"hi" => Ok(()),
                other => Err(format!("the owner did not get the message: {other:?}")),
            }
        },
    );
}

/// Q2: a voter whose disk was wiped comes back with a new acceptor id and does not vote
/// under its old one; with the other two voters claims keep working.
#[test]
fn a_wiped_voter_comes_back_not_voting_and_claims_keep_working() {
    for_each_seed(
        "a_wiped_voter_comes_back_not_voting_and_claims_keep_working",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed)?;
            let before = token_of(&claim(&mut sim, 3, "w")?);
            sim.kill(2);
            sim.wipe(2);
            sim.run_for(secs(1));
            sim.restart(2);
            let refused = sim.run_until(secs(20), |s| {
                s.node(2)
                    .and_then(|n| n.quorum())
                    .is_some_and(|q| q.root().is_some() && !q.is_acceptor())
            });
            if !refused {
                return Err(
                    "the wiped voter acts as an acceptor (or never learned the root)".into(),
                );
            }
            let state = format!(
                "{:?}",
                sim.node(2)
                    .and_then(|n| n.quorum())
                    .map(|q| q.formation().state().clone())
            );
            if !state.contains("wiped") {
                return Err(format!("its state must say it was wiped: {state}"));
            }
            claim(&mut sim, 4, "w2")?;
            // What was acknowledged before the wipe survived it (the other two voters hold
            // it): n3 still holds "w" with its token, renewing.
            let kept = sim.with_node(3, |n, now| {
                n.quorum().is_some_and(|q| q.is_valid(now, "w", before))
            });
            if kept != Some(true) {
                return Err("the claim acknowledged before the wipe was lost".into());
            }
            match claim(&mut sim, 4, "w") {
                Err(e) if e.contains("held by") => Ok(()),
                other => Err(format!("the task must still be held by n3: {other:?}")),
            }
        },
    );
}

/// Claims with different TTLs on one node use different holders; their sessions in one
/// shard must not collide (each holder numbers its sessions apart).
#[test]
fn claims_with_two_ttls_in_one_shard_both_hold() {
    let mut sim = cluster(11).expect("cluster");
    let shards = sim
        .node(3)
        .and_then(|n| n.quorum())
        .map(|q| q.config().shards)
        .expect("quorum");
    let shard = |t: &str| mesh_core::claims::shard_of(t.as_bytes(), shards);
    let a = "ttl-a".to_owned();
    let b = (0..10_000)
        .map(|i| format!("ttl-b{i}"))
        .find(|t| shard(t) == shard(&a))
        .expect("a task in the same shard");
    let first = claim(&mut sim, 3, &a).expect("default TTL claim");
    let call = sim
        .command(
            3,
            Command::Claim {
                task: b,
                ttl: Some(secs(5)),
            },
        )
        .expect("n3 runs");
    match sim.await_claim(3, call, secs(10)) {
        Some(Ok(CallOk::Claimed { .. })) => {}
        other => panic!("the 5 s claim in the same shard: {other:?}"),
    }
    sim.run_for(secs(6));
    let valid = sim.with_node(3, |n, now| {
        n.quorum()
            .is_some_and(|q| q.is_valid(now, "ttl-a", token_of(&first)))
    });
    assert_eq!(valid, Some(true), "both holders keep renewing");
}

/// A shard register that outgrows the frame limit is refused at its source, counted
/// (`oversized`) and reported stalled with why, and the caller gets a timeout, never a
/// success it did not have. (The limit is set tiny here so that a few claims reach it;
/// with the real limit, the table's bounds keep a register far below it.)
#[test]
fn a_register_over_the_frame_limit_is_refused_at_its_source_and_shows_stalled() {
    let mut sim = Sim::new(5);
    sim.set_voters(&[0, 1, 2]);
    if let Some(q) = sim.node_config.quorum.as_mut() {
        q.config.ttl = TTL;
        q.config.max_message_bytes = 900;
    }
    sim.add_cluster(5);
    assert!(
        sim.run_until(secs(20), Sim::all_see_all_alive),
        "{}",
        sim.describe()
    );
    assert!(sim.run_until(secs(20), |s| {
        s.live_nodes().iter().all(|&i| {
            s.node(i)
                .and_then(|n| n.quorum())
                .is_some_and(|q| q.root().is_some())
        })
    }));
    let shards = sim
        .node(3)
        .and_then(|n| n.quorum())
        .map(|q| q.config().shards)
        .expect("quorum");
    let target = mesh_core::claims::ShardId(0);
    let tasks: Vec<String> = (0..100_000)
        .map(|i| format!("{}-{i}", "t".repeat(100)))
        .filter(|t| mesh_core::claims::shard_of(t.as_bytes(), shards) == target)
        .take(20)
        .collect();
    let mut claimed = 0;
    let mut failure = None;
    for task in &tasks {
        match claim(&mut sim, 3, task) {
            Ok(_) => claimed += 1,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("the register outgrew 900 bytes within 20 claims");
    assert!(claimed > 0, "small registers still fit");
    assert!(
        failure.contains("timed out"),
        "the caller learns nothing was decided: {failure}"
    );
    let (mut oversized, mut stalled) = (0, Vec::new());
    for i in sim.live_nodes() {
        let Some(q) = sim.node(i).and_then(|n| n.quorum()) else {
            continue;
        };
        oversized += q.stats().dropped.get("oversized").copied().unwrap_or(0);
        if let Some(why) = q.shard_health().get(&target).and_then(|h| h.stalled()) {
            stalled.push((i, why));
        }
    }
    assert!(oversized > 0, "refused at the source and counted");
    assert!(
        stalled.iter().any(|(_, why)| *why == "oversized"),
        "some node reports the shard stalled as oversized: {stalled:?}"
    );
}

/// Releases `task` on node `n` with `token` ([`mesh_core::node::Node::release`]) and
/// waits for the outcome.
fn release(sim: &mut Sim, n: usize, task: &str, token: u64) -> Result<CallOk, ClaimsError> {
    let release = Command::Release {
        task: task.to_owned(),
        token,
    };
    let call = sim.command(n, release).expect("node runs");
    match sim.await_claim(n, call, secs(10)) {
        Some(Ok(ok)) => Ok(ok),
        Some(Err(CallError::Claims(e))) => Err(e),
        Some(Err(other)) => panic!("n{n}: release refused at once: {other:?}"),
        None => panic!("n{n}: no release result within 10 s"),
    }
}

/// Release with a fencing token, checked in the holder: a release carrying an older
/// token of the same task (a stale worker's, after the task was released and claimed
/// again) is refused with `StaleToken` naming the current one and changes nothing (the
/// claim stays valid, others are still refused); another node cannot release it at
/// all; the current token releases it, and the task is claimable again.
#[test]
fn a_release_with_a_stale_token_is_refused_and_changes_nothing() {
    for_each_seed(
        "a_release_with_a_stale_token_is_refused_and_changes_nothing",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed)?;
            let old = token_of(&claim(&mut sim, 3, "job")?);
            release(&mut sim, 3, "job", old).map_err(|e| format!("first release: {e}"))?;
            let current = token_of(&claim(&mut sim, 3, "job")?);
            if current <= old {
                return Err(format!("token {current} after {old}: tokens went back"));
            }
            match release(&mut sim, 3, "job", old) {
                Err(ClaimsError::Rejected(ClaimReject::StaleToken { current: c }))
                    if c == current => {}
                other => return Err(format!("a stale token must be refused: {other:?}")),
            }
            let valid = sim
                .with_node(3, |node, now| {
                    node.quorum()
                        .is_some_and(|q| q.is_valid(now, "job", current))
                })
                .unwrap_or(false);
            if !valid {
                return Err("a refused release must leave the claim valid".into());
            }
            match claim(&mut sim, 4, "job") {
                Err(e) if e.contains("held by") => {}
                other => return Err(format!("the task must still be held: {other:?}")),
            }
            match release(&mut sim, 4, "job", current) {
                Err(ClaimsError::NotHeld { .. }) => {}
                other => return Err(format!("n4 holds nothing to release: {other:?}")),
            }
            release(&mut sim, 3, "job", current)
                .map_err(|e| format!("release with the current token: {e}"))?;
            let next = token_of(&claim(&mut sim, 4, "job")?);
            if next <= current {
                return Err(format!("token {next} after {current}: tokens went back"));
            }
            Ok(())
        },
    );
}

/// The command `Hold { task }` with the default TTL.
fn hold_cmd(task: &str) -> Command {
    Command::Hold {
        task: task.to_owned(),
        ttl: None,
    }
}

/// Opens a hold on `task` at node `n` ([`Command::Hold`]) and waits for its claim; the
/// token, and the command that opened the hold (to end it with).
fn hold(sim: &mut Sim, n: usize, task: &str) -> Result<(u64, CommandId), String> {
    let call = sim
        .command(n, hold_cmd(task))
        .ok_or(format!("n{n} is not running"))?;
    match sim.await_claim(n, call, secs(10)) {
        Some(Ok(ok)) => Ok((token_of(&ok), call)),
        other => Err(format!("n{n}: hold's claim: {other:?}")),
    }
}

/// Ends the hold on `task` that command `hold` opened on node `n`.
fn end_hold(sim: &mut Sim, n: usize, task: &str, hold: CommandId) {
    let end = Command::EndHold {
        task: task.to_owned(),
        hold,
    };
    sim.command(n, end);
}

/// How the release of node `n`'s hold on `task` ended, once it has.
fn hold_ended(sim: &Sim, n: usize, task: &str) -> Option<(u64, HoldOutcome)> {
    sim.results.iter().find_map(|(node, out)| match out {
        Output::HoldEnded {
            task: t,
            token,
            outcome,
        } if *node == n && t == task => Some((*token, *outcome)),
        _ => None,
    })
}

/// Holds through the node (H1, H2 of `mesh_core::claims::hold`): while a hold is open,
/// a plain claim and a second hold of its task on that node are refused at once, with
/// nothing submitted; when the hold ends its claim is released (`Released`, with the
/// hold's token), and another node can claim the task with a higher token.
#[test]
fn a_hold_excludes_other_claims_of_its_task_and_its_end_releases_the_claim() {
    for_each_seed(
        "a_hold_excludes_other_claims_of_its_task_and_its_end_releases_the_claim",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed)?;
            let (token, opened) = hold(&mut sim, 3, "job")?;
            match at_once(&mut sim, 3, claim_cmd("job")) {
                Some(Err(CallError::UnderHold { .. })) => {}
                other => return Err(format!("a claim under a hold: {other:?}")),
            }
            let second = sim.command(3, hold_cmd("job")).ok_or("n3 runs")?;
            match sim.claim_result(3, second) {
                Some(Err(CallError::AlreadyHeld { token: t, .. })) if t == token => {}
                other => return Err(format!("a second hold: {other:?}")),
            }
            // C5: the refused hold's command ends nothing; the task stays under the
            // first hold.
            end_hold(&mut sim, 3, "job", second);
            match at_once(&mut sim, 3, claim_cmd("job")) {
                Some(Err(CallError::UnderHold { .. })) => {}
                other => return Err(format!("a refused hold's end ended a hold: {other:?}")),
            }
            end_hold(&mut sim, 3, "job", opened);
            sim.run_until(secs(10), |s| hold_ended(s, 3, "job").is_some());
            match hold_ended(&sim, 3, "job") {
                Some((t, HoldOutcome::Released)) if t == token => {}
                other => return Err(format!("the ended hold's release: {other:?}")),
            }
            let next = token_of(&claim(&mut sim, 4, "job")?);
            if next <= token {
                return Err(format!("token {next} after {token}: tokens went back"));
            }
            Ok(())
        },
    );
}

/// H2–H4 under a partition: a hold ended while its node is cut off from everyone
/// keeps its task excluded on that node while the release is retried; the release
/// ends as `Released` or `Gone` (never given up within the partition), and it never
/// takes the task from the node that claimed it meanwhile: that claim stays valid
/// after the heal.
#[test]
fn a_hold_ended_in_a_partition_never_releases_the_next_holders_claim() {
    for_each_seed(
        "a_hold_ended_in_a_partition_never_releases_the_next_holders_claim",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed)?;
            let (token, opened) = hold(&mut sim, 3, "job")?;
            sim.partition(&[3], &[0, 1, 2, 4]);
            end_hold(&mut sim, 3, "job", opened);
            match at_once(&mut sim, 3, claim_cmd("job")) {
                Some(Err(CallError::UnderHold { .. })) => {}
                other => return Err(format!("a claim while the release runs: {other:?}")),
            }
            // The claim expires on the other side; n4 takes the task.
            let started = sim.elapsed();
            let next = loop {
                match claim(&mut sim, 4, "job") {
                    Ok(ok) => break token_of(&ok),
                    Err(e) if e.contains("held by") => {}
                    Err(e) => return Err(format!("n4: {e}")),
                }
                if sim.elapsed() - started > secs(30) {
                    return Err("n4 never got the task".into());
                }
                sim.run_for(Duration::from_millis(250));
            };
            if next <= token {
                return Err(format!("token {next} after {token}: tokens went back"));
            }
            sim.run_for(secs(3));
            sim.heal();
            sim.run_until(secs(30), |s| hold_ended(s, 3, "job").is_some());
            match hold_ended(&sim, 3, "job") {
                Some((t, HoldOutcome::Released | HoldOutcome::Gone)) if t == token => {}
                other => return Err(format!("the ended hold's release: {other:?}")),
            }
            sim.run_for(secs(5));
            let valid = sim
                .with_node(4, |node, now| {
                    node.quorum().is_some_and(|q| q.is_valid(now, "job", next))
                })
                .unwrap_or(false);
            if !valid {
                return Err("the hold's release took the next holder's claim".into());
            }
            Ok(())
        },
    );
}

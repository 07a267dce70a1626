//! Seeded simulation of task claims and strong names (`mesh_core::claims`) running the
//! real code: voters are real `Acceptor`s, each holder node runs a real `Proposer`,
//! `Holder` and `Watcher`, and routes its changes through the real claims-plane routing
//! (`claims_plane::routing::Router`, the one `QuorumPlane` runs). Faults: partitions (a voter cut off from some holders, a holder
//! cut off from every voter), pauses (a frozen holder process; an application stalled
//! between its validity check and its write), crashes with un-fsynced loss (voters) and
//! crashes with restarts as a new incarnation (holders), loss, duplication, reordering,
//! and clock rates within ±ρ per node. See `claims_sim/world.rs` for the world and
//! `claims_sim/invariants.rs` for the properties checked over every run:
//!
//! - linearizability per shard (a Wing–Gong/Lowe checker, `claims_sim/lincheck.rs`;
//!   timeouts are indeterminate), including reads from the durable state with any one
//!   voter crashed: acknowledged changes survive F = 1 crashes;
//! - validity windows of different tokens of one task never overlap in global time (nor
//!   does an eviction overlap the evicted holder's validity), and tokens increase in the
//!   order of their validity;
//! - the fenced resource never applies a lower token than one it applied;
//! - a dead holder's sessions are evicted within `TTL·(1+ρ)` + detection + one commit;
//! - a holder that keeps renewing never loses its claim; one isolated voter stalls
//!   nothing.
//!
//! Negative controls, each asserted as caught: an application that ignores its validity
//! deadline (overlap), watchers that wait TTL instead of TTL·(1+ρ) under skew (overlap),
//! quorums of one voter (not linearizable), and two broken routing rules in the plane's
//! router: a retry sent again to the proposer that timed out (calm ops stall after a
//! kill), and no node watching its shards (a dead holder is never evicted).
//!
//! Seeds run through `mesh_sim_seeds`: `MESH_SIM_SEEDS=N` runs more seeds (default 200);
//! `MESH_SIM_SEED=S` runs one seed; a failure prints a `REPRODUCE WITH:` command.

#[path = "claims_sim/invariants.rs"]
mod invariants;
#[path = "claims_sim/lincheck.rs"]
mod lincheck;
#[path = "claims_sim/world.rs"]
mod world;

use mesh_core::claims::Drift;
use mesh_core::node::claims_plane::routing::RoutingMutation;
use mesh_sim_seeds::{for_each_seed, run_seeds, sim_test};
use std::time::{Duration, Instant};
use world::{Options, Record, Sim, Stats};

/// Runs the sim with `opts` on each of `seeds` (on all cores, through
/// `mesh_sim_seeds::run_seeds`) and returns `check`'s verdict per seed, in seed order. A
/// run that panics fails the test: a negative control counts what the checks caught.
fn run_sims<T: Send>(
    seeds: &[u64],
    opts: &Options,
    check: impl Fn(&Record, &Stats) -> T + Sync,
) -> Vec<(u64, T)> {
    run_seeds(seeds, |seed| {
        let (record, stats) = Sim::new(seed, opts.clone()).run();
        check(&record, &stats)
    })
    .into_iter()
    .map(|(seed, verdict)| (seed, verdict.unwrap_or_else(|p| panic!("seed {seed} {p}"))))
    .collect()
}

#[test]
fn claims_stay_safe_and_live_under_partitions_pauses_crashes_and_clock_skew() {
    let started = Instant::now();
    let opts = Options::default();
    let runs = for_each_seed(
        sim_test!("claims_stay_safe_and_live_under_partitions_pauses_crashes_and_clock_skew"),
        200,
        |seed| {
            let (record, stats) = Sim::new(seed, opts.clone()).run();
            invariants::all(&record).map(|m| (stats, m))
        },
    );
    let mut total = Stats::default();
    let (mut steps, mut max_evict, mut max_calm) = (0u64, Duration::ZERO, Duration::ZERO);
    for (_, (stats, m)) in &runs {
        total.add(stats);
        steps += m.checker_steps;
        max_evict = max_evict.max(m.eviction_latency);
        max_calm = max_calm.max(m.calm_op_latency);
    }
    println!(
        "claims sim: {} seeds, {:.1?}; checker steps {steps}; slowest eviction after a kill \
         {max_evict:?} (bound {:?} at the slowest clock); slowest calm op {max_calm:?}\n{total:?}",
        runs.len(),
        started.elapsed(),
        invariants::eviction_bound(1.0 - world::rho()),
    );
    if runs.len() >= 50 {
        // The faults and the paths they should exercise really happened.
        assert!(total.voter_crashes > 0 && total.voter_cuts > 0 && total.holder_isolations > 0);
        assert!(total.holder_crashes > 0 && total.freezes > 0 && total.write_pauses > 0);
        assert!(total.fenced_refused > 0, "paused writers were fenced off");
        assert!(total.evictions > 0 && total.reassigned > 0);
        assert!(total.lost > 0 && total.indeterminate > 0);
        // The real routing ran: forwards, their timeouts and the retries that skipped
        // the proposer that timed out.
        let r = &total.routing;
        assert!(r.forwarded > 0 && r.local > 0, "{r:?}");
        assert!(r.timeouts > 0 && r.skipped > 0, "{r:?}");
    }
}

/// One property over a run's record.
type Check = fn(&Record) -> Result<(), String>;

/// How many of `seeds` seeds run with `opts` fail each of `checks`.
fn caught(seeds: u64, opts: Options, checks: &[Check]) -> Vec<u64> {
    let seeds: Vec<u64> = (0..seeds).collect();
    let results = run_sims(&seeds, &opts, |record, _| {
        checks.iter().map(|c| c(record)).collect::<Vec<_>>()
    });
    let mut counts = vec![0; checks.len()];
    for (seed, verdicts) in &results {
        for (i, v) in verdicts.iter().enumerate() {
            if let Err(why) = v {
                if counts[i] == 0 {
                    println!("check {i} caught on seed {seed}: {why}");
                }
                counts[i] += 1;
            }
        }
    }
    counts
}

#[test]
fn a_holder_that_ignores_its_validity_deadline_is_caught_as_an_overlap() {
    let opts = Options {
        ignore_deadline: true,
        ..Options::default()
    };
    let n = caught(20, opts, &[invariants::validity_windows_never_overlap])[0];
    println!("negative control (ignored deadline): {n} of 20 seeds caught");
    assert!(
        n > 0,
        "the overlap check must catch writes after the deadline"
    );
}

#[test]
fn watchers_that_evict_after_ttl_instead_of_ttl_times_one_plus_rho_are_caught_under_skew() {
    let opts = Options {
        watcher_drift: Some(Drift::ZERO),
        ..Options::default()
    };
    let checks: [Check; 2] = [
        invariants::validity_windows_never_overlap,
        invariants::evictions_follow_validity,
    ];
    let counts = caught(40, opts, &checks);
    println!(
        "negative control (evict after TTL): overlapping windows in {} of 40 seeds, \
         evictions inside a holder's validity in {} of 40",
        counts[0], counts[1]
    );
    assert!(
        counts[0] > 0,
        "the overlap check must catch early evictions under skew"
    );
    assert!(
        counts[1] > counts[0],
        "the eviction check catches them without a claimer"
    );
}

#[test]
fn quorums_of_one_voter_are_caught_as_not_linearizable() {
    let opts = Options {
        quorum_of_one: true,
        ..Options::default()
    };
    let n = caught(
        10,
        opts,
        &[|r| invariants::linearizable_per_shard(r).map(|_| ())],
    )[0];
    println!("negative control (quorum of one): {n} of 10 seeds caught");
    assert!(
        n > 0,
        "the linearizability checker must catch a quorum of one"
    );
}

/// The routing the sim runs is the real one (`claims_plane::routing::Router`, as
/// `QuorumPlane` runs it): breaking its skip rule in the plane is caught here.
#[test]
fn routing_that_retries_on_the_proposer_that_timed_out_is_caught_stalling_calm_ops() {
    let opts = Options {
        routing_mutation: Some(RoutingMutation::NeverSkip),
        ..Options::default()
    };
    let checks: [Check; 2] = [
        |r| invariants::one_isolated_voter_stalls_nothing(r).map(|_| ()),
        invariants::renewing_holders_keep_their_claims,
    ];
    let counts = caught(20, opts, &checks);
    println!(
        "negative control (routing never skips): stalled calm ops in {} of 20 seeds, \
         claims lost by renewing holders in {} of 20",
        counts[0], counts[1]
    );
    assert!(
        counts[0] > 0,
        "a retry sent to the proposer that just timed out must stall an op after a kill"
    );
}

/// Breaking the plane's watch rule (the preferred proposer's node watches the shard) is
/// caught here: nobody evicts a dead holder.
#[test]
fn routing_where_no_node_watches_its_shards_is_caught_leaving_a_dead_holder_in_place() {
    let opts = Options {
        routing_mutation: Some(RoutingMutation::NeverWatch),
        ..Options::default()
    };
    let n = caught(
        10,
        opts,
        &[|r| invariants::dead_holder_is_evicted_in_time(r).map(|_| ())],
    )[0];
    println!("negative control (routing never watches): {n} of 10 seeds caught");
    assert!(
        n > 0,
        "a dead holder nobody watches must be caught as never evicted"
    );
}

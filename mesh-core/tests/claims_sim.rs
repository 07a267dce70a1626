//! Seeded simulation of task claims and strong names (`mesh_core::claims`) running the
//! real code: voters are real `Acceptor`s, each holder node runs a real `Proposer`,
//! `Holder` and `Watcher`. Faults: partitions (a voter cut off from some holders, a holder
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
//! quorums of one voter (not linearizable).
//!
//! `MESH_SIM_SEEDS=N` runs more seeds (default 200); `MESH_SIM_SEED=S` runs one seed.

#[path = "claims_sim/invariants.rs"]
mod invariants;
#[path = "claims_sim/lincheck.rs"]
mod lincheck;
#[path = "claims_sim/world.rs"]
mod world;

use mesh_core::claims::Drift;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use world::{Options, Record, Sim, Stats};

fn seeds(default: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("MESH_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("MESH_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (0..n).collect()
}

/// Run every seed (on as many threads as there are cores, like `tests/src/sim.rs`'s
/// `for_each_seed`; each run is deterministic on its own) and return `check`'s verdict
/// per seed, in seed order.
fn run_seeds<T: Send>(
    seeds: &[u64],
    opts: &Options,
    check: impl Fn(&Record, &Stats) -> T + Sync,
) -> Vec<(u64, T)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(seeds.len().max(1));
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let (out, check) = (&out, &check);
            s.spawn(move || {
                for &seed in seeds.iter().skip(t).step_by(threads) {
                    let (record, stats) = Sim::new(seed, opts.clone()).run();
                    let verdict = check(&record, &stats);
                    out.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((seed, verdict));
                }
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort_by_key(|(seed, _)| *seed);
    out
}

#[test]
fn claims_stay_safe_and_live_under_partitions_pauses_crashes_and_clock_skew() {
    let started = Instant::now();
    let seeds = seeds(200);
    let results = run_seeds(&seeds, &Options::default(), |record, stats| {
        (*stats, invariants::all(record))
    });
    let mut total = Stats::default();
    let (mut steps, mut max_evict, mut max_calm) = (0u64, Duration::ZERO, Duration::ZERO);
    let mut failures = Vec::new();
    for (seed, (stats, verdict)) in &results {
        total.add(stats);
        match verdict {
            Ok(m) => {
                steps += m.checker_steps;
                max_evict = max_evict.max(m.eviction_latency);
                max_calm = max_calm.max(m.calm_op_latency);
            }
            Err(why) => {
                println!("seed {seed} FAILED: {why}");
                failures.push(*seed);
            }
        }
    }
    println!(
        "claims sim: {} seeds, {} failed, {:.1?}; checker steps {steps}; slowest eviction \
         after a kill {max_evict:?} (bound {:?} at the slowest clock); slowest calm op \
         {max_calm:?}\n{total:?}",
        seeds.len(),
        failures.len(),
        started.elapsed(),
        invariants::eviction_bound(1.0 - world::rho()),
    );
    if let Some(first) = failures.first() {
        panic!(
            "failing seeds: {failures:?}\nREPRODUCE WITH: MESH_SIM_SEED={first} cargo test -p \
             mesh-core --test claims_sim claims_stay_safe -- --nocapture"
        );
    }
    if seeds.len() >= 50 {
        // The faults and the paths they should exercise really happened.
        assert!(total.voter_crashes > 0 && total.voter_cuts > 0 && total.holder_isolations > 0);
        assert!(total.holder_crashes > 0 && total.freezes > 0 && total.write_pauses > 0);
        assert!(total.fenced_refused > 0, "paused writers were fenced off");
        assert!(total.evictions > 0 && total.reassigned > 0);
        assert!(total.lost > 0 && total.indeterminate > 0);
    }
}

/// One property over a run's record.
type Check = fn(&Record) -> Result<(), String>;

/// How many of `seeds` seeds run with `opts` fail each of `checks`.
fn caught(seeds: u64, opts: Options, checks: &[Check]) -> Vec<u64> {
    let seeds: Vec<u64> = (0..seeds).collect();
    let results = run_seeds(&seeds, &opts, |record, _| {
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

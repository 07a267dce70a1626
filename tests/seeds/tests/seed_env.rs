//! The seed loop end to end, environment variables included: each test runs this test
//! binary again as a child process that runs only `seed_loop_under_test`, with the
//! environment it wants (so no test changes the environment of this process).

use mesh_sim_seeds::{for_each_seed, sim_test};
use std::collections::BTreeSet;
use std::process::Command;

/// What `seed_loop_under_test` does in the child: `record` or `fail_on_7`.
const MODE_VAR: &str = "MESH_SIM_SEEDS_SELFTEST_MODE";

/// Runs only in a child started by the tests below (a no-op otherwise): a loop with a
/// default of 5 seeds that prints every seed it runs and, in mode `fail_on_7`, panics
/// on seed 7.
#[test]
fn seed_loop_under_test() {
    let Ok(mode) = std::env::var(MODE_VAR) else {
        return;
    };
    let fail_on_7 = mode == "fail_on_7";
    for_each_seed(sim_test!("seed_loop_under_test"), 5, |seed| {
        println!("ran seed {seed}");
        assert!(!(fail_on_7 && seed == 7), "boom on seed {seed}");
        Ok(())
    });
}

/// The child's outcome: whether it passed, the seeds it ran, and its whole output.
struct Child {
    passed: bool,
    ran: BTreeSet<u64>,
    output: String,
}

fn child(mode: &str, env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["seed_loop_under_test", "--exact", "--nocapture"])
        .env_remove("MESH_SIM_SEED")
        .env_remove("MESH_SIM_SEEDS")
        .env(MODE_VAR, mode);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the child test");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ran = output
        .lines()
        .filter_map(|l| l.strip_prefix("ran seed "))
        .map(|s| s.trim().parse().expect("a seed number"))
        .collect();
    assert!(
        output.contains("1 passed") || output.contains("1 failed"),
        "the child ran the one test:\n{output}"
    );
    Child {
        passed: out.status.success(),
        ran,
        output,
    }
}

#[test]
fn without_variables_the_default_count_runs() {
    let c = child("record", &[]);
    assert!(c.passed, "{}", c.output);
    assert_eq!(c.ran, (0..5).collect(), "{}", c.output);
}

#[test]
fn mesh_sim_seeds_sets_how_many_seeds_run() {
    let c = child("record", &[("MESH_SIM_SEEDS", "12")]);
    assert!(c.passed, "{}", c.output);
    assert_eq!(c.ran, (0..12).collect(), "{}", c.output);
}

#[test]
fn mesh_sim_seed_runs_exactly_that_seed() {
    let c = child(
        "record",
        &[("MESH_SIM_SEED", "3"), ("MESH_SIM_SEEDS", "50")],
    );
    assert!(c.passed, "{}", c.output);
    assert_eq!(c.ran, BTreeSet::from([3]), "{}", c.output);
}

#[test]
fn a_panicking_seed_fails_the_loop_with_a_line_that_replays_it() {
    let c = child("fail_on_7", &[("MESH_SIM_SEEDS", "10")]);
    assert!(
        !c.passed,
        "seed 7 panicked, the test must fail:\n{}",
        c.output
    );
    assert_eq!(c.ran, (0..10).collect(), "the other seeds still ran");
    assert!(
        c.output.contains("1 of 10 seeds failed: [7]"),
        "{}",
        c.output
    );
    assert!(c.output.contains("boom on seed 7"), "{}", c.output);
    let line = "REPRODUCE WITH: MESH_SIM_SEED=7 cargo test -p mesh-sim-seeds --test seed_env \
                seed_loop_under_test -- --nocapture";
    assert!(c.output.contains(line), "{}", c.output);
    // What the line says replays the failure, and only it.
    let again = child("fail_on_7", &[("MESH_SIM_SEED", "7")]);
    assert!(!again.passed, "{}", again.output);
    assert_eq!(again.ran, BTreeSet::from([7]));
    let other = child("fail_on_7", &[("MESH_SIM_SEED", "6")]);
    assert!(other.passed, "{}", other.output);
}

#[test]
fn a_seed_that_is_not_a_number_fails_instead_of_running_the_default() {
    let c = child("record", &[("MESH_SIM_SEED", "three")]);
    assert!(!c.passed, "{}", c.output);
    assert!(c.ran.is_empty(), "{}", c.output);
    assert!(
        c.output
            .contains("MESH_SIM_SEED=\"three\" is not a seed number"),
        "{}",
        c.output
    );
}

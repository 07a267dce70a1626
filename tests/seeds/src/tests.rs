//! The loop's own tests, on explicit seed lists (independent of the environment the
//! test run has). `tests/seed_env.rs` runs the environment variables end to end.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};

const TEST: SimTest<'static> = SimTest {
    package: "mesh-core",
    target: "quorum_sim",
    name: "concurrent_increments",
};

#[test]
fn the_default_runs_seeds_from_zero() {
    assert_eq!(seeds_from(None, None, 4), Ok(vec![0, 1, 2, 3]));
}

#[test]
fn mesh_sim_seeds_overrides_the_default_count() {
    assert_eq!(seeds_from(None, Some("3"), 200), Ok(vec![0, 1, 2]));
    assert_eq!(seeds_from(None, Some(" 2 "), 200), Ok(vec![0, 1]));
}

#[test]
fn mesh_sim_seed_runs_exactly_that_seed_even_with_a_count() {
    assert_eq!(seeds_from(Some("3"), None, 200), Ok(vec![3]));
    assert_eq!(seeds_from(Some("3"), Some("10000"), 200), Ok(vec![3]));
    assert_eq!(
        seeds_from(Some("999"), None, 5),
        Ok(vec![999]),
        "outside 0..default"
    );
}

#[test]
fn empty_values_count_as_unset() {
    assert_eq!(seeds_from(Some(""), Some(""), 2), Ok(vec![0, 1]));
}

#[test]
fn values_that_are_not_numbers_are_refused_naming_the_variable() {
    let err = seeds_from(Some("3x"), None, 200).expect_err("not a number");
    assert_eq!(
        err,
        SeedsError::NotANumber {
            var: SEED_VAR,
            value: "3x".to_owned()
        }
    );
    assert!(err.to_string().contains("MESH_SIM_SEED=\"3x\""), "{err}");
    let err = seeds_from(None, Some("-1"), 200).expect_err("negative");
    assert!(err.to_string().starts_with("MESH_SIM_SEEDS="), "{err}");
}

#[test]
fn zero_seeds_is_refused_rather_than_passing_vacuously() {
    assert_eq!(seeds_from(None, Some("0"), 200), Err(SeedsError::NoSeeds));
    assert_eq!(seeds_from(None, None, 0), Err(SeedsError::NoSeeds));
}

#[test]
fn every_seed_runs_once_and_results_come_back_in_the_order_given() {
    let order = [5, 0, 9, 2, 7, 1, 8, 3, 6, 4, 11, 10];
    let calls = AtomicU64::new(0);
    let out = run_seeds(&order, |seed| {
        calls.fetch_add(1, Ordering::Relaxed);
        seed * 10
    });
    assert_eq!(calls.load(Ordering::Relaxed), order.len() as u64);
    let expected: Vec<(u64, Result<u64, String>)> =
        order.iter().map(|&s| (s, Ok(s * 10))).collect();
    assert_eq!(out, expected);
}

#[test]
fn a_closure_that_panics_on_one_seed_fails_the_loop_and_names_that_seed() {
    // The negative control: the loop must not pass a seed that panicked, nor lose the
    // other seeds' runs.
    let calls = AtomicU64::new(0);
    let failure = check_seeds(TEST, &(0..20).collect::<Vec<_>>(), |seed| {
        calls.fetch_add(1, Ordering::Relaxed);
        assert_ne!(seed, 7, "boom on seed {seed}");
        Ok(seed)
    })
    .expect_err("seed 7 panicked");
    assert_eq!(
        calls.load(Ordering::Relaxed),
        20,
        "every other seed still ran"
    );
    assert_eq!(failure.ran, 20);
    assert_eq!(failure.failed.len(), 1, "{failure}");
    let (seed, msg) = &failure.failed[0];
    assert_eq!(*seed, 7);
    assert!(
        msg.starts_with("panicked: ") && msg.contains("boom on seed 7"),
        "{msg}"
    );
    assert_eq!(
        failure.reproduce,
        "REPRODUCE WITH: MESH_SIM_SEED=7 cargo test -p mesh-core --test quorum_sim \
         concurrent_increments -- --nocapture"
    );
}

#[test]
fn errors_fail_the_loop_and_the_lowest_failing_seed_is_the_one_to_replay() {
    // Seeds 9 and 3 fail; whichever thread finishes first, seed 3 is "first".
    let seeds: Vec<u64> = (0..12).collect();
    let failure = check_seeds(TEST, &seeds, |seed| match seed {
        3 | 9 => Err(format!("bad state at seed {seed}\nmore detail")),
        _ => Ok(()),
    })
    .expect_err("two seeds failed");
    assert_eq!(
        failure.failed,
        vec![
            (3, "bad state at seed 3\nmore detail".to_owned()),
            (9, "bad state at seed 9\nmore detail".to_owned()),
        ]
    );
    assert_eq!(
        failure.to_string(),
        "2 of 12 seeds failed: [3, 9]\nfirst failure (seed 3): bad state at seed 3\nmore \
         detail\nREPRODUCE WITH: MESH_SIM_SEED=3 cargo test -p mesh-core --test quorum_sim \
         concurrent_increments -- --nocapture"
    );
}

#[test]
fn passing_seeds_return_their_values_in_seed_order() {
    let passed = check_seeds(TEST, &[0, 1, 2, 3], |seed| Ok(seed + 100)).expect("all pass");
    assert_eq!(passed, vec![(0, 100), (1, 101), (2, 102), (3, 103)]);
}

#[test]
fn non_string_panic_payloads_still_fail_the_seed() {
    let out = run_seeds(&[1], |_| std::panic::panic_any(42_u32));
    assert_eq!(
        out,
        vec![(
            1,
            Err("panicked (with a payload that is not a string)".to_owned())
        )]
    );
}

#[test]
fn sim_test_names_the_calling_package_and_target() {
    let t = sim_test!("some_test");
    assert_eq!(t.package, "mesh-sim-seeds");
    assert_eq!(
        t.target, "mesh_sim_seeds",
        "the unit-test target is the lib"
    );
    assert_eq!(t.name, "some_test");
}

#[test]
fn the_target_is_the_test_binary_name_without_its_hash() {
    assert_eq!(target_of_stem("sim_membership-0123abcd"), "sim_membership");
    assert_eq!(target_of_stem("sim_membership"), "sim_membership");
    assert_eq!(target_of_stem("mesh-sim"), "mesh-sim", "`sim` is not hex");
    assert_eq!(target_of_stem("x-"), "x-");
    assert_eq!(current_target(), "mesh_sim_seeds");
}

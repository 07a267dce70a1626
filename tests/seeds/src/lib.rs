//! mesh-sim-seeds: the one seed loop every mesh simulation runs its seeds with.
//!
//! A simulation test is a function of a seed. This crate decides which seeds run and
//! what a failure prints, the same way for every simulation in the workspace
//! (`mesh-core/tests/*_sim.rs`, `tests/src/sim.rs`):
//!
//! - `MESH_SIM_SEEDS=N` runs seeds `0..N` (the test's own default when unset: each
//!   simulation picks it, e.g. 200, or 50 for a heavier scenario);
//! - `MESH_SIM_SEED=S` runs seed `S` only (it wins over `MESH_SIM_SEEDS`);
//! - a value that is not a number (or `MESH_SIM_SEEDS=0`) fails the test instead of
//!   silently running the default;
//! - a seed fails when its closure returns `Err` **or panics**; the panic is caught, the
//!   other seeds still run, and the loop then panics itself naming every failing seed,
//!   the first failure's message and one line that replays it:
//!
//! ```text
//! REPRODUCE WITH: MESH_SIM_SEED=17 cargo test -p mesh-core --test quorum_sim concurrent_increments -- --nocapture
//! ```
//!
//! Seeds are spread over the machine's cores (each run is deterministic on its own);
//! results and failures are reported in seed order, so what a run reports does not
//! depend on the number of threads.
//!
//! ```
//! use mesh_sim_seeds::{for_each_seed, sim_test};
//!
//! let runs = for_each_seed(sim_test!("doc_example"), 20, |seed| {
//!     let value = seed * 2; // a simulation would run here
//!     if value % 2 == 0 { Ok(value) } else { Err(format!("odd value {value}")) }
//! });
//! // Stats per seed come back in seed order, for the test to sum up.
//! assert!(runs.windows(2).all(|w| w[0].0 < w[1].0));
//! ```
//!
//! A dev-only crate with no dependencies, so that `mesh-core`'s normal dependencies
//! stay sans-IO (`scripts/check-sans-io`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

/// How many seeds to run (seeds `0..N`): the environment variable's name.
pub const SEEDS_VAR: &str = "MESH_SIM_SEEDS";
/// The one seed to run (to replay a failure): the environment variable's name.
pub const SEED_VAR: &str = "MESH_SIM_SEED";

/// The test a seed loop runs in: what the `REPRODUCE WITH:` line names. Build it with
/// [`sim_test!`] inside the test file, which fills in the package and the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimTest<'a> {
    /// The cargo package (`cargo test -p <package>`), e.g. `mesh-core`.
    pub package: &'a str,
    /// The test target (`--test <target>`), e.g. `quorum_sim`.
    pub target: &'a str,
    /// The test function's name (the test filter), e.g. `concurrent_increments_survive`.
    pub name: &'a str,
}

impl SimTest<'_> {
    /// The line that replays `seed` of this test:
    /// `REPRODUCE WITH: MESH_SIM_SEED=<seed> cargo test -p <package> --test <target> <name> -- --nocapture`.
    pub fn reproduce(&self, seed: u64) -> String {
        format!(
            "REPRODUCE WITH: {SEED_VAR}={seed} cargo test -p {} --test {} {} -- --nocapture",
            self.package, self.target, self.name
        )
    }
}

/// `sim_test!("test_name")`: the [`SimTest`] for a test function in the calling test
/// file, with the package (`CARGO_PKG_NAME`) and the test target (`CARGO_CRATE_NAME`,
/// which is the target's name for targets without a `-` in it) of the caller.
///
/// Use it in an integration-test file (`tests/NAME.rs`); from a library helper, build
/// the [`SimTest`] with [`current_target`] instead.
#[macro_export]
macro_rules! sim_test {
    ($name:expr) => {
        $crate::SimTest {
            package: env!("CARGO_PKG_NAME"),
            target: env!("CARGO_CRATE_NAME"),
            name: $name,
        }
    };
}

/// The name of the running test binary (`sim_membership` for
/// `target/debug/deps/sim_membership-0123abcd`), for a [`SimTest`] built in a library
/// that several test targets share. `<test>` when the executable's path is unknown.
pub fn current_target() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| target_of_stem(&stem))
        .unwrap_or_else(|| "<test>".to_owned())
}

/// `sim_membership-0123abcd` → `sim_membership`; a stem without a hash suffix stays.
fn target_of_stem(stem: &str) -> String {
    match stem.rsplit_once('-') {
        Some((name, hash)) if !hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name.to_owned()
        }
        _ => stem.to_owned(),
    }
}

/// A seed environment variable that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeedsError {
    /// The variable is set to something that is not a `u64`.
    NotANumber {
        /// [`SEED_VAR`] or [`SEEDS_VAR`].
        var: &'static str,
        /// What it is set to.
        value: String,
    },
    /// `MESH_SIM_SEEDS=0`: a loop over no seeds would pass without testing anything.
    NoSeeds,
}

impl fmt::Display for SeedsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotANumber { var, value } => {
                write!(f, "{var}={value:?} is not a seed number (a u64)")
            }
            Self::NoSeeds => write!(f, "{SEEDS_VAR}=0 would run no seed at all"),
        }
    }
}

impl std::error::Error for SeedsError {}

/// Which seeds run, from the values of [`SEED_VAR`] (`seed`) and [`SEEDS_VAR`]
/// (`seeds`): `[seed]` when `seed` is set, else `0..seeds`, else `0..default`. An empty
/// value counts as unset.
pub fn seeds_from(
    seed: Option<&str>,
    seeds: Option<&str>,
    default: u64,
) -> Result<Vec<u64>, SeedsError> {
    let parse = |var: &'static str, value: Option<&str>| -> Result<Option<u64>, SeedsError> {
        match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| SeedsError::NotANumber {
                var,
                value: v.to_owned(),
            }),
        }
    };
    if let Some(one) = parse(SEED_VAR, seed)? {
        return Ok(vec![one]);
    }
    match parse(SEEDS_VAR, seeds)?.unwrap_or(default) {
        0 => Err(SeedsError::NoSeeds),
        n => Ok((0..n).collect()),
    }
}

/// Which seeds run, from the environment ([`seeds_from`] with `MESH_SIM_SEED` and
/// `MESH_SIM_SEEDS`).
///
/// # Panics
///
/// When a variable is set but unusable ([`SeedsError`]): a test run that asked for a
/// seed must not silently run others.
pub fn seeds(default: u64) -> Vec<u64> {
    let var = |name| std::env::var(name).ok();
    seeds_from(var(SEED_VAR).as_deref(), var(SEEDS_VAR).as_deref(), default)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `run` once per seed of `seeds`, spread over the machine's cores, catching a
/// panic per seed. Returns every seed with its result (`Err` with the panic's message
/// when it panicked), in the order of `seeds`. Never fails itself: for checkers'
/// negative controls, which count the seeds that fail; tests that must pass on every
/// seed use [`for_each_seed`].
pub fn run_seeds<T: Send>(
    seeds: &[u64],
    run: impl Fn(u64) -> T + Sync,
) -> Vec<(u64, Result<T, String>)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(seeds.len())
        .max(1);
    let out = Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|s| {
        for t in 0..threads {
            let (out, run) = (&out, &run);
            s.spawn(move || {
                for (i, &seed) in seeds.iter().enumerate().skip(t).step_by(threads) {
                    let result = catch_unwind(AssertUnwindSafe(|| run(seed)))
                        .map_err(|payload| panic_message(payload.as_ref()));
                    // A poisoned lock only means another seed's push panicked, which
                    // cannot happen (the pushes do not panic); keep the results anyway.
                    out.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((i, seed, result));
                }
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, seed, r)| (seed, r)).collect()
}

/// A panic's message (`panic!("...")` payloads are `&str` or `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked (with a payload that is not a string)".to_owned()
    }
}

/// The seeds of a loop that failed: what [`for_each_seed`] panics with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The replay line for the first failing seed ([`SimTest::reproduce`]).
    pub reproduce: String,
    /// How many seeds ran.
    pub ran: usize,
    /// Every failing seed with its message (`Err`'s, or the panic's), in seed order.
    pub failed: Vec<(u64, String)>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seeds: Vec<u64> = self.failed.iter().map(|(s, _)| *s).collect();
        write!(f, "{} of {} seeds failed: {seeds:?}", seeds.len(), self.ran)?;
        if let Some((first, msg)) = self.failed.first() {
            write!(f, "\nfirst failure (seed {first}): {msg}")?;
        }
        write!(f, "\n{}", self.reproduce)
    }
}

/// Runs `run` for every seed of `seeds` (see [`run_seeds`]) and returns each seed's
/// `Ok` value in seed order, or the [`Failure`] when any seed returned `Err` or
/// panicked. [`for_each_seed`] is this with the seeds from the environment, panicking.
pub fn check_seeds<T: Send>(
    test: SimTest<'_>,
    seeds: &[u64],
    run: impl Fn(u64) -> Result<T, String> + Sync,
) -> Result<Vec<(u64, T)>, Failure> {
    let mut passed = Vec::with_capacity(seeds.len());
    let mut failed = Vec::new();
    for (seed, result) in run_seeds(seeds, run) {
        match result.and_then(|r| r) {
            Ok(value) => passed.push((seed, value)),
            Err(msg) => failed.push((seed, msg)),
        }
    }
    match failed.first() {
        None => Ok(passed),
        Some(&(first, _)) => Err(Failure {
            reproduce: test.reproduce(first),
            ran: seeds.len(),
            failed,
        }),
    }
}

/// The seed loop: runs `run` for every seed the environment asks for (`MESH_SIM_SEED`,
/// else `MESH_SIM_SEEDS`, else `0..default`; see [`seeds`]), on all cores, and returns
/// each seed's `Ok` value in seed order (for the test to sum its statistics).
///
/// # Panics
///
/// When any seed returned `Err` or panicked (after every seed ran): with the failing
/// seeds, the first failure's message and its `REPRODUCE WITH:` line ([`Failure`]).
/// Each failing seed is also printed as `seed S FAILED: <first line>`. Also panics
/// when the environment is unusable ([`seeds`]).
pub fn for_each_seed<T: Send>(
    test: SimTest<'_>,
    default: u64,
    run: impl Fn(u64) -> Result<T, String> + Sync,
) -> Vec<(u64, T)> {
    match check_seeds(test, &seeds(default), run) {
        Ok(passed) => passed,
        Err(failure) => {
            for (seed, msg) in &failure.failed {
                println!("seed {seed} FAILED: {}", msg.lines().next().unwrap_or(""));
            }
            panic!("{failure}");
        }
    }
}

#[cfg(test)]
mod tests;

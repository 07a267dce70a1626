//! `registry-bench`: the cost of one local join + leave in `mesh_core::registry` as the
//! number of groups grows (10, 1 000, 10 000, 100 000), printed as ns per join+leave.
//!
//! ```text
//! cargo run --release -p mesh-bench --bin registry-bench -- [--iters 200000] [--runs 5]
//! ```
//!
//! Setup per size: one scope with N groups, each with one member from a pool of 1 000
//! local processes. Measured: a further local process joins one group and leaves it
//! again, both as the public API does it (validation, replica, view, one delta per
//! call), with every output drained and dropped, as the node would hand them on. The
//! group is drawn at random (seeded, drawn before timing) so that large sizes are not
//! flattered by a hot cache; the "same group" column repeats one group. The "monitored"
//! column adds a scope monitor, so every join and leave also emits an event. The
//! "replica only" column is the floor under all of it: the same add + remove on a bare
//! `mesh_crdt::Replica<String, GroupEntry>` holding the same entries. Each figure is
//! the median of `--runs` timed runs of `--iters` join+leave pairs.
//!
//! Time is the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) by default, so that a
//! shared machine's other load does not count while this thread is descheduled (its
//! cache pollution still does); `--clock wall` uses the monotonic clock instead. The
//! load average is printed with the table. Goal: at most 1 µs per join+leave, flat in N.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use mesh_bench::stats::SplitMix64;
use mesh_core::pid::Pid;
use mesh_core::registry::{GroupEntry, Registry, RegistryConfig};
use mesh_crdt::Replica;
use nix::time::{clock_gettime, ClockId};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "ns per local join+leave as the number of groups grows")]
struct Args {
    /// Join+leave pairs per timed run.
    #[arg(long, default_value_t = 200_000)]
    iters: usize,
    /// Timed runs per figure (the median is printed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Group counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "10,1000,10000,100000")]
    groups: Vec<usize>,
    /// Which clock times the runs.
    #[arg(long, value_enum, default_value_t = Clock::ThreadCpu)]
    clock: Clock,
}

/// The clock that times a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Clock {
    /// CPU time of this thread.
    ThreadCpu,
    /// Monotonic wall-clock time.
    Wall,
}

/// A start point on the chosen clock.
enum Stamp {
    Cpu(Duration),
    Wall(Instant),
}

impl Clock {
    fn start(self) -> Result<Stamp> {
        Ok(match self {
            Self::ThreadCpu => Stamp::Cpu(cpu_now()?),
            Self::Wall => Stamp::Wall(Instant::now()),
        })
    }
}

impl Stamp {
    fn elapsed_ns(&self) -> Result<f64> {
        Ok(match self {
            Self::Cpu(t0) => (cpu_now()? - *t0).as_nanos() as f64,
            Self::Wall(t0) => t0.elapsed().as_nanos() as f64,
        })
    }
}

fn cpu_now() -> Result<Duration> {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).context("thread CPU clock")?;
    Ok(Duration::from(t))
}

const SCOPE: &str = "default";
const NODE: &str = "bench";

fn registry(groups: &[String]) -> Result<Registry> {
    let now = Instant::now();
    let mut reg = Registry::new(NODE.to_owned(), 1, RegistryConfig::default());
    for (i, g) in groups.iter().enumerate() {
        let pid = Pid::new(NODE, 1, (i % 1_000) as u64);
        reg.join(now, SCOPE, std::slice::from_ref(g), &pid, None)
            .context("prefill join")?;
    }
    while reg.poll_output().is_some() {}
    Ok(reg)
}

/// ns per join+leave of `pid` over the groups at `picks`.
fn time(
    clock: Clock,
    reg: &mut Registry,
    groups: &[String],
    picks: &[usize],
    pid: &Pid,
) -> Result<f64> {
    let now = Instant::now();
    let start = clock.start()?;
    for &i in picks {
        let g = std::slice::from_ref(&groups[i]);
        reg.join(now, SCOPE, g, pid, None).context("join")?;
        reg.leave(now, SCOPE, g, pid).context("leave")?;
        while let Some(out) = reg.poll_output() {
            black_box(out);
        }
    }
    Ok(start.elapsed_ns()? / picks.len() as f64)
}

fn entry(group: &str, pid: &Pid) -> GroupEntry {
    GroupEntry {
        scope: SCOPE.to_owned(),
        group: group.to_owned(),
        pid: pid.clone(),
        meta: None,
    }
}

/// ns per add + remove on a bare replica holding one entry per group.
fn time_replica(clock: Clock, groups: &[String], picks: &[usize], pid: &Pid) -> Result<f64> {
    let mut replica: Replica<String, GroupEntry> = Replica::new(NODE.to_owned(), 1);
    for (i, g) in groups.iter().enumerate() {
        black_box(replica.add(entry(g, &Pid::new(NODE, 1, (i % 1_000) as u64))));
    }
    let start = clock.start()?;
    for &i in picks {
        let e = entry(&groups[i], pid);
        black_box(replica.add(e.clone()));
        black_box(replica.remove(&e).context("remove")?);
    }
    Ok(start.elapsed_ns()? / picks.len() as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.iters > 0 && args.runs > 0,
        "--iters and --runs must be positive"
    );
    println!(
        "local join+leave, ns per pair ({:?} clock, median of {} runs of {} pairs; load average {})",
        args.clock,
        args.runs,
        args.iters,
        mesh_bench::machine::load_average()
    );
    println!();
    println!(
        "| groups | random group | same group | random, monitored | replica only | vs 10 groups |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut base = None;
    for &n in &args.groups {
        anyhow::ensure!(n > 0, "group counts must be positive");
        let groups: Vec<String> = (0..n).map(|i| format!("group-{i:06}")).collect();
        let mut reg = registry(&groups)?;
        let pid = Pid::new(NODE, 1, 1_000_000);
        let mut rng = SplitMix64::new(0x5eed ^ n as u64);
        let random: Vec<usize> = (0..args.iters).map(|_| rng.in_range(0, n)).collect();
        let same = vec![n / 2; args.iters];
        // Warm up once, then time.
        time(
            args.clock,
            &mut reg,
            &groups,
            &random[..args.iters.min(10_000)],
            &pid,
        )?;
        let r = median(
            (0..args.runs)
                .map(|_| time(args.clock, &mut reg, &groups, &random, &pid))
                .collect::<Result<_>>()?,
        );
        let s = median(
            (0..args.runs)
                .map(|_| time(args.clock, &mut reg, &groups, &same, &pid))
                .collect::<Result<_>>()?,
        );
        let (_id, _snapshot) = reg.monitor(None, SCOPE, None);
        let m = median(
            (0..args.runs)
                .map(|_| time(args.clock, &mut reg, &groups, &random, &pid))
                .collect::<Result<_>>()?,
        );
        let c = median(
            (0..args.runs)
                .map(|_| time_replica(args.clock, &groups, &random, &pid))
                .collect::<Result<_>>()?,
        );
        let b = *base.get_or_insert(r);
        println!(
            "| {n} | {r:.0} | {s:.0} | {m:.0} | {c:.0} | {:.2}x |",
            r / b
        );
    }
    Ok(())
}

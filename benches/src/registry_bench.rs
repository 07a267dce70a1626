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
//! Goal: at most 1 µs per join+leave, flat in N.

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use mesh_bench::stats::SplitMix64;
use mesh_core::pid::Pid;
use mesh_core::registry::{GroupEntry, Registry, RegistryConfig};
use mesh_crdt::Replica;

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
fn time(reg: &mut Registry, groups: &[String], picks: &[usize], pid: &Pid) -> Result<f64> {
    let now = Instant::now();
    let start = Instant::now();
    for &i in picks {
        let g = std::slice::from_ref(&groups[i]);
        reg.join(now, SCOPE, g, pid, None).context("join")?;
        reg.leave(now, SCOPE, g, pid).context("leave")?;
        while let Some(out) = reg.poll_output() {
            black_box(out);
        }
    }
    Ok(start.elapsed().as_nanos() as f64 / picks.len() as f64)
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
fn time_replica(groups: &[String], picks: &[usize], pid: &Pid) -> Result<f64> {
    let mut replica: Replica<String, GroupEntry> = Replica::new(NODE.to_owned(), 1);
    for (i, g) in groups.iter().enumerate() {
        black_box(replica.add(entry(g, &Pid::new(NODE, 1, (i % 1_000) as u64))));
    }
    let start = Instant::now();
    for &i in picks {
        let e = entry(&groups[i], pid);
        black_box(replica.add(e.clone()));
        black_box(replica.remove(&e).context("remove")?);
    }
    Ok(start.elapsed().as_nanos() as f64 / picks.len() as f64)
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
        "local join+leave, ns per pair (median of {} runs of {} pairs)",
        args.runs, args.iters
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
        time(&mut reg, &groups, &random[..args.iters.min(10_000)], &pid)?;
        let r = median(
            (0..args.runs)
                .map(|_| time(&mut reg, &groups, &random, &pid))
                .collect::<Result<_>>()?,
        );
        let s = median(
            (0..args.runs)
                .map(|_| time(&mut reg, &groups, &same, &pid))
                .collect::<Result<_>>()?,
        );
        let (_id, _snapshot) = reg.monitor(None, SCOPE, None);
        let m = median(
            (0..args.runs)
                .map(|_| time(&mut reg, &groups, &random, &pid))
                .collect::<Result<_>>()?,
        );
        let c = median(
            (0..args.runs)
                .map(|_| time_replica(&groups, &random, &pid))
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

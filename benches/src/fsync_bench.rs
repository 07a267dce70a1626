//! `fsync-bench`: commit latency of the acceptor store (`RedbStore`: one redb write
//! transaction, fsynced, per commit) on the disk under `--dir`, for group commits of 1, 16
//! and 256 keys — p50 / p99 / max, the cost per key, and the ratio to the first size's p50
//! (what group commit saves: N keys for about the price of one fsync).
//!
//! ```text
//! cargo run --release -p mesh-bench --bin fsync-bench -- \
//!     [--dir .] [--commits 300] [--value-bytes 256] [--batches 1,16,256]
//! ```
//!
//! Each batch rewrites keys of a fixed set of 1024 (as acceptors rewrite their shards'
//! states), so the file stops growing after the warm-up. The store lives in a scratch
//! directory under `--dir`, removed at exit.

use anyhow::{Context, Result};
use clap::Parser;
use mesh_agent::redb_store::RedbStore;
use mesh_bench::stats::{Percentiles, SplitMix64};
use mesh_core::quorum::store::{AcceptorStore, Entry};

/// Commit latency of the acceptor store on this disk.
#[derive(Debug, Parser)]
struct Args {
    /// Where to put the scratch store (its disk is the one measured).
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
    /// Measured commits per batch size.
    #[arg(long, default_value_t = 300)]
    commits: usize,
    /// Bytes of each state.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// Batch sizes (keys per commit).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 256])]
    batches: Vec<usize>,
}

const KEYS: usize = 1024;
const WARMUP: usize = 20;

fn main() -> Result<()> {
    let args = Args::parse();
    let scratch = tempfile::Builder::new()
        .prefix("fsync-bench-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("cannot make a scratch directory in {:?}", args.dir))?;
    let (mut store, _) = RedbStore::open(scratch.path(), &mut rand::rng())?;
    let mut rng = SplitMix64::new(0x5eed);
    let mut value = |len: usize| -> Vec<u8> { (0..len).map(|_| rng.next_u64() as u8).collect() };
    println!(
        "fsync-bench: {} ({} commits per size, {}-byte states, keys from a set of {KEYS})",
        store.path().display(),
        args.commits,
        args.value_bytes
    );
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>12} {:>11} {:>9}",
        "keys", "p50 ms", "p99 ms", "max ms", "p50 us/key", "fsyncs/c", "p50/first"
    );
    let mut base = None;
    for &keys in &args.batches {
        let keys = keys.clamp(1, KEYS);
        let mut next_key = 0usize;
        let mut batch = || -> Vec<Entry> {
            (0..keys)
                .map(|_| {
                    next_key = (next_key + 1) % KEYS;
                    let key = format!("shard-{next_key:04}").into_bytes();
                    (key, value(args.value_bytes))
                })
                .collect()
        };
        for _ in 0..WARMUP {
            store.commit(&batch())?;
        }
        let before = store.stats();
        let mut samples = Vec::with_capacity(args.commits);
        for _ in 0..args.commits {
            let stats = store.commit(&batch())?;
            samples.push(stats.fsync.as_secs_f64() * 1e3);
        }
        let after = store.stats();
        let p = Percentiles::of(&samples, 0, 0.0).context("no commits measured")?;
        let fsyncs = (after.fsyncs - before.fsyncs) as f64 / args.commits as f64;
        let base_p50 = *base.get_or_insert(p.p50.value);
        println!(
            "{:>6} {:>10.3} {:>10.3} {:>10.3} {:>12.1} {:>11.2} {:>9.2}",
            keys,
            p.p50.value,
            p.p99.value,
            p.max.value,
            p.p50.value * 1e3 / keys as f64,
            fsyncs,
            p.p50.value / base_p50,
        );
    }
    Ok(())
}

//! `membership-bench`: mesh membership against serf (memberlist), side by side on
//! 127.0.0.1 — convergence of a fresh cluster, failure detection after `SIGKILL`, idle
//! bytes per second per peer, RSS per peer — printed as one table per cluster size with
//! the ratio mesh/serf, then the goals and whether they were met.
//!
//! ```text
//! cargo run --release -p mesh-bench --bin membership-bench -- \
//!     [--peers 10,50] [--runs 5] [--system mesh|serf|both] [--meshctl PATH] [--serf PATH]
//! ```
//!
//! The systems run one after the other, never at once. All child processes are killed
//! and all scratch files removed on exit, on error and on Ctrl-C. See `BENCHMARKS.md`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use mesh_bench::cluster::{ClusterOptions, SystemKind};
use mesh_bench::machine::{load_average, tool_version};
use mesh_bench::report::{render_goals, render_size, SizeResults};
use mesh_bench::scenario::{measure, Settings, StartMode};
use mesh_bench::stats::SplitMix64;
use mesh_bench::{cleanup, nft};

/// Which systems to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    /// mesh only.
    Mesh,
    /// serf only.
    Serf,
    /// mesh, then serf.
    Both,
}

/// How fresh clusters are started (see `StartMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Start {
    /// All agents spawned at once, t0 before the first spawn.
    AllAtOnce,
    /// Seed started and answering first, t0 before the other spawns.
    SeedFirst,
}

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "membership-bench",
    about = "Membership benchmark: mesh vs serf on loopback (convergence, detection, idle bytes, RSS)"
)]
struct Args {
    /// Cluster sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    peers: Vec<usize>,
    /// Convergence runs (fresh clusters) and detection runs per system and size.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Which systems to run.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    system: Which,
    /// The meshctl binary [default: meshctl next to this binary, i.e. target/release].
    #[arg(long)]
    meshctl: Option<PathBuf>,
    /// The serf binary (Debian package `serf`).
    #[arg(long, default_value = "serf")]
    serf: PathBuf,
    /// Timing profile given to both systems.
    #[arg(long, default_value = "lan")]
    profile: String,
    /// Deadline of every wait (convergence, detection, reconvergence), seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Poll period per agent, milliseconds.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Idle window for the bytes figure, seconds.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Pause after convergence before RSS and idle bytes are measured, seconds.
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
    /// serf `-retry-interval` (serf's `-join` is fatal when the seed is not up yet, so
    /// agents use `-retry-join`; serf raises anything below 1s to 1s).
    #[arg(long, default_value = "1s")]
    serf_retry_interval: String,
    /// Seed for choosing detection victims and ports [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Keep agent logs and data in the temp dir after the run.
    #[arg(long)]
    keep_files: bool,
    /// How fresh clusters are started for the convergence figure.
    #[arg(long, value_enum, default_value_t = Start::AllAtOnce)]
    start: Start,
    /// Print each agent's convergence and detection time on stderr.
    #[arg(long)]
    verbose: bool,
}

fn main() -> Result<()> {
    cleanup::install_signal_handler()?;
    let args = Args::parse();
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(n) = args.peers.iter().find(|&&n| n < 2) {
        bail!("--peers: a cluster needs at least 2 agents, got {n}");
    }
    if args.poll_ms < 10 {
        bail!("--poll-ms must be at least 10");
    }
    let meshctl = match args.meshctl.clone() {
        Some(path) => path,
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("meshctl"),
    };
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let systems: Vec<SystemKind> = match args.system {
        Which::Mesh => vec![SystemKind::Mesh],
        Which::Serf => vec![SystemKind::Serf],
        Which::Both => vec![SystemKind::Mesh, SystemKind::Serf],
    };

    let opts = ClusterOptions {
        meshctl: meshctl.clone(),
        serf: args.serf.clone(),
        profile: args.profile.clone(),
        serf_retry_interval: args.serf_retry_interval.clone(),
        poll_timeout: Duration::from_secs(2),
        keep_files: args.keep_files,
    };
    let settings = Settings {
        runs: args.runs,
        timeout: Duration::from_secs(args.timeout_secs),
        poll_period: Duration::from_millis(args.poll_ms),
        settle: Duration::from_secs(args.settle_secs),
        idle_window: Duration::from_secs(args.idle_secs),
        nft_unavailable: nft::unavailable_reason(),
        verbose: args.verbose,
        start: match args.start {
            Start::AllAtOnce => StartMode::AllAtOnce,
            Start::SeedFirst => StartMode::SeedFirst,
        },
    };

    let mesh_version = systems
        .contains(&SystemKind::Mesh)
        .then(|| tool_version(&meshctl, "--version"));
    let serf_version = systems
        .contains(&SystemKind::Serf)
        .then(|| tool_version(&args.serf, "version"));
    let header = header(&args, seed, mesh_version, serf_version, &settings);
    print!("{header}");

    let mut rng = SplitMix64::new(seed);
    let mut sizes = Vec::new();
    for &n in &args.peers {
        let mut size = SizeResults {
            n,
            ..SizeResults::default()
        };
        for &kind in &systems {
            let unavailable = match kind {
                SystemKind::Mesh if !meshctl.is_file() => Some(format!(
                    "{} not found (cargo build --release -p mesh-cli, or --meshctl PATH)",
                    meshctl.display()
                )),
                _ => None,
            };
            let result = match unavailable {
                Some(why) => mesh_bench::scenario::SystemResult {
                    fatal: Some(why),
                    ..Default::default()
                },
                None => measure(kind, n, &opts, &settings, &mut rng),
            };
            match kind {
                SystemKind::Mesh => size.mesh = Some(result),
                SystemKind::Serf => size.serf = Some(result),
            }
        }
        println!();
        print!("{}", render_size(&size, args.runs));
        sizes.push(size);
    }
    println!();
    print!("{}", render_goals(&sizes, &args.profile));
    println!(
        "load average at end: {} (2 cores: above ~2 means other work competed with the agents)",
        load_average()
    );
    Ok(())
}

/// What was run, on what: printed before the tables.
fn header(
    args: &Args,
    seed: u64,
    mesh_version: Option<String>,
    serf_version: Option<String>,
    settings: &Settings,
) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or("?".to_owned(), |kib| {
            format!("{:.1} GiB", kib as f64 / 1_048_576.0)
        });
    let mut text = format!(
        "membership-bench: peers {:?}, {} runs, start {}, profile {}, poll {} ms, \
         idle window {} s, timeout {} s, seed {seed}\n\
         machine: {cpus} CPUs, {mem} RAM, load average {} at start\n",
        args.peers,
        args.runs,
        match args.start {
            Start::AllAtOnce => "all-at-once",
            Start::SeedFirst => "seed-first",
        },
        args.profile,
        args.poll_ms,
        args.idle_secs,
        args.timeout_secs,
        load_average()
    );
    if let Some(v) = mesh_version {
        text.push_str(&format!("mesh: {v}\n"));
    }
    if let Some(v) = serf_version {
        text.push_str(&format!(
            "serf: {v} (-retry-join through n1, -retry-interval {})\n",
            args.serf_retry_interval
        ));
    }
    if let Some(why) = &settings.nft_unavailable {
        text.push_str(&format!("nft byte counters: n/a ({why})\n"));
    }
    text
}

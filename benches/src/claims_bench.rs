//! `claims-bench`: mesh's task claims and strong names (the CASPaxos quorum plane, 3
//! voters, fsync on) against etcd (3 members, fsync on), side by side on 127.0.0.1 —
//! claim acquire latency, strong-name register latency, claims per second with 1 and
//! 64 clients, and failover time after the holder is `kill -9`'d — printed as tables
//! with the ratio mesh/etcd, then the goals and whether they were met (never asserted).
//!
//! ```text
//! apt-get install -y etcd-server etcd-client
//! cargo build --release -p mesh-cli -p mesh-bench
//! target/release/claims-bench [--bench latency,throughput,failover] [--system mesh,etcd]
//!     [--ops 500] [--clients 1,64] [--window-secs 10] [--ttls 1,2,10] [--etcd-ttls 1,2]
//!     [--runs 10] [--retry-ms 20] [--dir /tmp] [--meshctl PATH] [--keep-files]
//! ```
//!
//! The systems run one after the other, never at once. Every agent, etcd member,
//! `etcdctl` and scratch directory is removed on exit, on error and on Ctrl-C. See the
//! module docs of `mesh_bench::claims` and `mesh_bench::etcd` for the method and
//! `BENCHMARKS.md` for results.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mesh_bench::claims::{
    ClaimOp, ErrorCounts, FailoverRun, LatencyRun, MeshCluster, MeshSettings, WindowRun, CLIENT,
};
use mesh_bench::cleanup;
use mesh_bench::etcd::{self, EtcdCluster, EtcdOp};
use mesh_bench::groups::progress;
use mesh_bench::machine::load_average;
use mesh_bench::stats::{Figure, Percentiles};

/// Which measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    /// Claim and strong-name register latency, one op at a time.
    Latency,
    /// Claims per second with each `--clients` count.
    Throughput,
    /// Time from killing the holder until another client's claim succeeds.
    Failover,
}

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum System {
    /// mesh.
    Mesh,
    /// etcd (Debian packages etcd-server and etcd-client).
    Etcd,
}

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "claims-bench",
    about = "Claims benchmark: mesh's quorum plane vs etcd on loopback (latency, throughput, failover)"
)]
struct Args {
    /// Internal: the embedded agent the runs start as processes.
    #[command(subcommand)]
    command: Option<Internal>,
    /// Measurements to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,throughput,failover"
    )]
    bench: Vec<Bench>,
    /// Systems to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "mesh,etcd")]
    system: Vec<System>,
    /// Operations per latency run.
    #[arg(long, default_value_t = 500)]
    ops: usize,
    /// Concurrent clients of each throughput run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    clients: Vec<usize>,
    /// Window of each throughput run, seconds.
    #[arg(long, default_value_t = 10)]
    window_secs: u64,
    /// mesh failover TTLs, seconds, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,10")]
    ttls: Vec<u64>,
    /// etcd failover lease TTLs asked for, seconds (etcd may raise them).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    etcd_ttls: Vec<u64>,
    /// Failover runs per TTL.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Period of the retrier's claim attempts during failover, milliseconds.
    #[arg(long, default_value_t = 20)]
    retry_ms: u64,
    /// mesh claim shards.
    #[arg(long, default_value_t = 64)]
    shards: u32,
    /// mesh claims TTL of the latency and throughput runs, seconds.
    #[arg(long, default_value_t = 10)]
    ttl_secs: u64,
    /// Where data directories go (must be the real disk, not tmpfs, for fsync to count).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The meshctl binary [default: meshctl next to this binary].
    #[arg(long)]
    meshctl: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// The etcdctl binary.
    #[arg(long, default_value = "etcdctl")]
    etcdctl: PathBuf,
    /// Seed for ports and keys [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Keep data directories and logs after the run.
    #[arg(long)]
    keep_files: bool,
}

/// Internal subcommands.
#[derive(Debug, Subcommand)]
enum Internal {
    /// An embedded mesh agent (started by the harness).
    #[command(hide = true)]
    Worker(mesh_bench::worker::WorkerArgs),
}

/// ρ of the defaults (0.1 %).
const RHO: f64 = 0.001;

/// What one system measured.
#[derive(Default)]
struct Results {
    /// Claim latency from the client (mesh: n4, a non-voter; etcd: session txn).
    claim: Option<LatencyRun>,
    /// mesh: claim latency from a voter (n1). etcd: lease grant + txn.
    claim_alt: Option<LatencyRun>,
    /// Strong-name register latency.
    strong: Option<LatencyRun>,
    /// Throughput by clients.
    windows: BTreeMap<usize, WindowRun>,
    /// Failover runs by TTL asked for (seconds), with the TTL granted.
    failover: BTreeMap<u64, (u64, Vec<FailoverRun>)>,
    /// A failure that ended this system's runs.
    fatal: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Internal::Worker(w)) = args.command {
        // A worker is killed by the harness; it installs no handler of its own.
        return mesh_bench::worker::run_worker(w);
    }
    cleanup::install_signal_handler()?;
    if args.ops == 0 || args.runs == 0 || args.window_secs == 0 || args.retry_ms == 0 {
        bail!("--ops, --runs, --window-secs and --retry-ms must be at least 1");
    }
    if args.clients.contains(&0) || args.ttls.contains(&0) || args.etcd_ttls.contains(&0) {
        bail!("--clients, --ttls and --etcd-ttls must be at least 1");
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let meshctl = args
        .meshctl
        .clone()
        .unwrap_or_else(|| exe.with_file_name("meshctl"));
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "claims-bench: {:?}, systems {:?}, seed {seed}",
        args.bench, args.system
    );
    println!(
        "machine: {} CPUs, load average {} at start",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    println!(
        "data dirs under {} ({})",
        dir.display(),
        filesystem_of(&dir)
    );
    let mesh = if args.system.contains(&System::Mesh) {
        Some(run_mesh(&args, &exe, &meshctl, &dir, seed))
    } else {
        None
    };
    let etcd = if args.system.contains(&System::Etcd) {
        Some(run_etcd(&args, &dir, seed))
    } else {
        None
    };
    for (name, r) in [("mesh", &mesh), ("etcd", &etcd)] {
        if let Some(Results {
            fatal: Some(why), ..
        }) = r
        {
            println!("{name}: stopped early: {why}");
        }
    }
    let mesh = mesh.unwrap_or_default();
    let etcd = etcd.unwrap_or_default();
    if args.bench.contains(&Bench::Latency) {
        print_latency(&args, &mesh, &etcd);
    }
    if args.bench.contains(&Bench::Throughput) {
        print_throughput(&args, &mesh, &etcd);
    }
    if args.bench.contains(&Bench::Failover) {
        print_failover(&args, &mesh, &etcd);
    }
    print_goals(&args, &mesh);
    println!(
        "load average at end: {} (2 cores: above ~2 means other work competed)",
        load_average()
    );
    Ok(())
}

/// `df`'s filesystem type and device of `dir`.
fn filesystem_of(dir: &std::path::Path) -> String {
    Command::new("df")
        .args(["--output=source,fstype"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "filesystem unknown".to_owned())
}

fn run_mesh(
    args: &Args,
    exe: &std::path::Path,
    meshctl: &std::path::Path,
    dir: &std::path::Path,
    seed: u64,
) -> Results {
    let mut r = Results::default();
    if let Err(e) = run_mesh_into(args, exe, meshctl, dir, seed, &mut r) {
        r.fatal = Some(format!("{e:#}"));
    }
    r
}

fn run_mesh_into(
    args: &Args,
    exe: &std::path::Path,
    meshctl: &std::path::Path,
    dir: &std::path::Path,
    seed: u64,
    r: &mut Results,
) -> Result<()> {
    let settings = MeshSettings {
        shards: args.shards,
        ttl: Duration::from_secs(args.ttl_secs),
        dir: dir.to_owned(),
        keep_files: args.keep_files,
    };
    let mut cluster = MeshCluster::start(exe, meshctl, &settings, seed)?;
    println!(
        "mesh: voters n1,n2,n3 (fsync on) + non-voters {CLIENT} (client, retrier) and n5 (holder); {} shards; claims TTL {} s; data in {}",
        args.shards,
        args.ttl_secs,
        cluster.dir().display()
    );
    if args.bench.contains(&Bench::Latency) {
        progress("mesh", "latency: claims from n4");
        r.claim = Some(cluster.latency(CLIENT, ClaimOp::Claim, args.ops)?);
        progress("mesh", "latency: claims from n1");
        // n1's own sessions open during its first ops; a warm-up keeps them out.
        cluster.latency("n1", ClaimOp::Claim, usize::try_from(args.shards)?)?;
        r.claim_alt = Some(cluster.latency("n1", ClaimOp::Claim, args.ops)?);
        progress("mesh", "latency: strong names from n4");
        r.strong = Some(cluster.latency(CLIENT, ClaimOp::StrongName, args.ops)?);
    }
    if args.bench.contains(&Bench::Throughput) {
        for &clients in &args.clients {
            progress("mesh", &format!("throughput: {clients} clients"));
            let w = cluster.window(clients, Duration::from_secs(args.window_secs))?;
            r.windows.insert(clients, w);
        }
    }
    if args.bench.contains(&Bench::Failover) {
        for &ttl in &args.ttls {
            let mut runs = Vec::new();
            for run in 0..args.runs {
                let task = format!("fo-{seed:x}-{ttl}-{run}");
                let timeout = Duration::from_secs(ttl * 3 + 30);
                let f = cluster.failover(
                    &task,
                    Duration::from_secs(ttl),
                    Duration::from_millis(args.retry_ms),
                    timeout,
                )?;
                progress(
                    "mesh",
                    &format!(
                        "failover TTL {ttl} s run {}/{}: {} after {} attempts (token {} -> {:?})",
                        run + 1,
                        args.runs,
                        f.took.map_or("not acquired".to_owned(), |d| format!(
                            "{:.3} s",
                            d.as_secs_f64()
                        )),
                        f.attempts,
                        f.old_token,
                        f.new_token
                    ),
                );
                runs.push(f);
            }
            r.failover.insert(ttl, (ttl, runs));
        }
    }
    Ok(())
}

fn run_etcd(args: &Args, dir: &std::path::Path, seed: u64) -> Results {
    let mut r = Results::default();
    if let Err(e) = run_etcd_into(args, dir, seed, &mut r) {
        r.fatal = Some(format!("{e:#}"));
    }
    r
}

fn run_etcd_into(args: &Args, dir: &std::path::Path, seed: u64, r: &mut Results) -> Result<()> {
    let version = Command::new(&args.etcd)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("?")
                .to_owned()
        })
        .with_context(|| format!("running {} --version", args.etcd.display()))?;
    let cluster = EtcdCluster::start(&args.etcd, &args.etcdctl, dir, args.keep_files, seed)?;
    println!(
        "etcd: {version}; 3 members (WAL fsync on), requests to the leader {} over the JSON gateway; data in {}",
        cluster.leader_name(),
        cluster.dir().display()
    );
    if args.bench.contains(&Bench::Latency) {
        progress("etcd", "latency");
        r.claim = Some(etcd::latency(
            &cluster,
            EtcdOp::ClaimWithSession,
            args.ops,
            seed,
        )?);
        r.claim_alt = Some(etcd::latency(
            &cluster,
            EtcdOp::GrantAndClaim,
            args.ops,
            seed,
        )?);
        r.strong = Some(etcd::latency(&cluster, EtcdOp::StrongName, args.ops, seed)?);
    }
    if args.bench.contains(&Bench::Throughput) {
        for &clients in &args.clients {
            progress("etcd", &format!("throughput: {clients} clients"));
            let w = etcd::window(
                &cluster,
                clients,
                Duration::from_secs(args.window_secs),
                seed ^ clients as u64,
            )?;
            r.windows.insert(clients, w);
        }
    }
    if args.bench.contains(&Bench::Failover) {
        for &ttl in &args.etcd_ttls {
            let mut runs = Vec::new();
            let mut granted_ttl = 0;
            for run in 0..args.runs {
                let key = format!("fo-{seed:x}-{ttl}-{run}");
                let (f, granted) = etcd::failover(
                    &cluster,
                    &key,
                    i64::try_from(ttl)?,
                    Duration::from_millis(args.retry_ms),
                    Duration::from_secs(ttl * 3 + 30),
                )?;
                granted_ttl = u64::try_from(granted).unwrap_or(0);
                progress(
                    "etcd",
                    &format!(
                        "failover TTL {ttl} s (granted {granted} s) run {}/{}: {} after {} attempts",
                        run + 1,
                        args.runs,
                        f.took.map_or("not acquired".to_owned(), |d| format!(
                            "{:.3} s",
                            d.as_secs_f64()
                        )),
                        f.attempts
                    ),
                );
                runs.push(f);
            }
            r.failover.insert(ttl, (granted_ttl, runs));
        }
    }
    Ok(())
}

// ----- printing --------------------------------------------------------------------

/// A table cell: a number with `decimals`, or `n/a`.
fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or("n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

fn row(label: &str, mesh: Option<f64>, etcd: Option<f64>, decimals: usize) {
    let ratio = match (mesh, etcd) {
        (Some(m), Some(e)) if e > 0.0 => format!("{:.2}", m / e),
        _ => String::new(),
    };
    println!(
        "{label:<44}{:>10} {:>10} {:>10}",
        cell(mesh, decimals),
        cell(etcd, decimals),
        ratio
    );
}

fn text_row(label: &str, mesh: &str, etcd: &str) {
    println!("{label:<44}{mesh:>10} {etcd:>10}");
}

/// A percentile of microsecond samples, in milliseconds.
fn pct_ms(samples: &[u64], pick: fn(&Percentiles) -> Figure) -> Option<f64> {
    let ms: Vec<f64> = samples.iter().map(|&us| us as f64 / 1000.0).collect();
    Percentiles::of(&ms, 0, 0.0).map(|p| pick(&p).value)
}

fn errors_text(e: &ErrorCounts) -> String {
    if e.is_empty() {
        "none".to_owned()
    } else {
        e.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn latency_rows(label: &str, mesh: Option<&LatencyRun>, etcd: Option<&LatencyRun>) {
    let get = |r: Option<&LatencyRun>, pick: fn(&Percentiles) -> Figure| {
        r.and_then(|r| pct_ms(&r.acquire, pick))
    };
    row(
        &format!("{label} p50"),
        get(mesh, |p| p.p50),
        get(etcd, |p| p.p50),
        3,
    );
    row(
        &format!("{label} p99"),
        get(mesh, |p| p.p99),
        get(etcd, |p| p.p99),
        3,
    );
    row(
        &format!("{label} max"),
        get(mesh, |p| p.max),
        get(etcd, |p| p.max),
        3,
    );
    let n = |r: Option<&LatencyRun>| r.map_or("n/a".to_owned(), |r| r.acquire.len().to_string());
    text_row("  ops that succeeded", &n(mesh), &n(etcd));
    let rel = |r: Option<&LatencyRun>| r.and_then(|r| pct_ms(&r.release, |p| p.p50));
    row(
        "  release (untimed in the above) p50",
        rel(mesh),
        rel(etcd),
        3,
    );
    if let Some(c) = mesh.and_then(|r| r.commits) {
        commit_rows(&c, None);
    }
    for (name, r) in [("mesh", mesh), ("etcd", etcd)] {
        if let Some(r) = r {
            if !r.errors.is_empty() {
                println!("  {name} errors: {}", errors_text(&r.errors));
            }
        }
    }
}

/// The voters' commit rows: mean time of a commit, and how much of the window a voter
/// had a commit in flight.
fn commit_rows(c: &mesh_bench::claims::CommitTime, window_secs: Option<f64>) {
    row(
        "  mesh: voter commit, mean ms (persist)",
        c.mean_persist_ms(),
        None,
        2,
    );
    row(
        "  mesh: voter commit, mean ms (redb write+fsync)",
        c.mean_fsync_ms(),
        None,
        2,
    );
    if let Some(secs) = window_secs {
        row(
            "  mesh: share of the window a voter is committing",
            Some(c.persist_secs / 3.0 / secs),
            None,
            2,
        );
    }
}

fn print_latency(args: &Args, mesh: &Results, etcd: &Results) {
    println!();
    println!(
        "== acquire latency: one client, one op at a time (ms; {} ops each; nearest rank) ==",
        args.ops
    );
    println!(
        "{:<44}{:>10} {:>10} {:>10}",
        "", "mesh", "etcd", "mesh/etcd"
    );
    latency_rows("claim", mesh.claim.as_ref(), etcd.claim.as_ref());
    println!("  (mesh: from n4, a non-voter; etcd: the claim txn with the client's session lease)");
    latency_rows(
        "claim, other path",
        mesh.claim_alt.as_ref(),
        etcd.claim_alt.as_ref(),
    );
    println!("  (mesh: from n1, a voter; etcd: a lease grant + the claim txn)");
    latency_rows(
        "strong-name register",
        mesh.strong.as_ref(),
        etcd.strong.as_ref(),
    );
    println!("  (mesh: register_strong from n4; etcd: create-if-absent txn without a lease)");
}

fn print_throughput(args: &Args, mesh: &Results, etcd: &Results) {
    println!();
    println!(
        "== claims per second: each client claims a fresh task and releases it, again and again ({} s window) ==",
        args.window_secs
    );
    println!(
        "{:<44}{:>10} {:>10} {:>10}",
        "", "mesh", "etcd", "mesh/etcd"
    );
    for &clients in &args.clients {
        let (m, e) = (mesh.windows.get(&clients), etcd.windows.get(&clients));
        let client_word = if clients == 1 { "client" } else { "clients" };
        row(
            &format!("{clients} {client_word}: claims/s"),
            m.map(WindowRun::rate),
            e.map(WindowRun::rate),
            0,
        );
        let lat = |w: Option<&WindowRun>, pick: fn(&mesh_bench::claims::LatencySummary) -> u64| {
            w.filter(|w| w.latency.n > 0)
                .map(|w| pick(&w.latency) as f64 / 1000.0)
        };
        row(
            "  claim p50 under this load (ms)",
            lat(m, |l| l.p50_us),
            lat(e, |l| l.p50_us),
            2,
        );
        row(
            "  claim p99 under this load (ms)",
            lat(m, |l| l.p99_us),
            lat(e, |l| l.p99_us),
            2,
        );
        if let Some(m) = m {
            let secs = m.elapsed.as_secs_f64();
            let v = &m.voters;
            row(
                "  mesh: durable commits/s, 3 voters summed",
                Some(v.commits as f64 / secs),
                None,
                0,
            );
            row(
                "  mesh: keys per commit",
                (v.commits > 0).then(|| v.commit_keys as f64 / v.commits as f64),
                None,
                2,
            );
            row(
                "  mesh: changes decided/s (claims+releases+renews)",
                Some(v.committed as f64 / secs),
                None,
                0,
            );
            if let Some(c) = m.commits {
                commit_rows(&c, Some(secs));
            }
            row(
                "  mesh: prepare rounds per decided change",
                (v.committed > 0).then(|| v.requests_prepare as f64 / 3.0 / v.committed as f64),
                None,
                3,
            );
        }
        for (name, w) in [("mesh", m), ("etcd", e)] {
            if let Some(w) = w {
                println!("  {name} errors: {}", errors_text(&w.errors));
            }
        }
    }
}

fn failover_secs(runs: &[FailoverRun]) -> (Vec<f64>, usize) {
    let done: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.took.map(|d| d.as_secs_f64()))
        .collect();
    let censored = runs.len() - done.len();
    (done, censored)
}

fn fig(p: Option<Percentiles>, pick: fn(&Percentiles) -> Figure) -> Option<f64> {
    p.map(|p| pick(&p)).filter(|f| !f.at_least).map(|f| f.value)
}

fn print_failover(args: &Args, mesh: &Results, etcd: &Results) {
    println!();
    println!(
        "== failover: from kill -9 of the holder until another client's claim (tried every {} ms) succeeds (s; {} runs per TTL) ==",
        args.retry_ms, args.runs
    );
    println!(
        "{:<44}{:>10} {:>10} {:>10}",
        "", "mesh", "etcd", "mesh/etcd"
    );
    // The TTLs some system measured.
    let ttls: std::collections::BTreeSet<u64> = mesh
        .failover
        .keys()
        .chain(etcd.failover.keys())
        .copied()
        .collect();
    for ttl in ttls {
        let m = mesh.failover.get(&ttl);
        let e = etcd.failover.get(&ttl);
        let bound = ttl as f64 * (1.0 + RHO) + 1.0;
        let granted = e.map_or(String::new(), |(g, _)| format!(", etcd granted {g} s"));
        println!("TTL {ttl} s (bound TTL·(1+ρ)+1 s = {bound:.3} s{granted})");
        let pm = m.and_then(|(_, r)| {
            let (d, c) = failover_secs(r);
            Percentiles::of(&d, c, 0.0)
        });
        let pe = e.and_then(|(_, r)| {
            let (d, c) = failover_secs(r);
            Percentiles::of(&d, c, 0.0)
        });
        row("  p50", fig(pm, |p| p.p50), fig(pe, |p| p.p50), 3);
        let p99 = if args.runs < 100 {
            format!("  p99 (of {} runs: the max)", args.runs)
        } else {
            "  p99".to_owned()
        };
        row(&p99, fig(pm, |p| p.p99), fig(pe, |p| p.p99), 3);
        row(
            "  min",
            m.and_then(|(_, r)| min_secs(r)),
            e.and_then(|(_, r)| min_secs(r)),
            3,
        );
        let within = |x: Option<&(u64, Vec<FailoverRun>)>| {
            x.map_or("n/a".to_owned(), |(_, runs)| {
                let ok = runs
                    .iter()
                    .filter(|r| r.took.is_some_and(|d| d.as_secs_f64() <= bound))
                    .count();
                format!("{ok}/{}", runs.len())
            })
        };
        text_row("  runs within the bound", &within(m), &within(e));
        let tokens_up = m.map_or("n/a".to_owned(), |(_, runs)| {
            let up = runs
                .iter()
                .filter(|r| r.new_token.is_some_and(|t| t > r.old_token))
                .count();
            format!("{up}/{}", runs.len())
        });
        text_row("  mesh: new token > old token", &tokens_up, "");
        for (name, x) in [("mesh", m), ("etcd", e)] {
            if let Some((_, runs)) = x {
                let mut errors = ErrorCounts::new();
                let mut attempts = 0;
                for r in runs {
                    attempts += r.attempts;
                    for (k, v) in &r.errors {
                        *errors.entry(k.clone()).or_default() += v;
                    }
                }
                println!(
                    "  {name}: {attempts} attempts in all; refused: {}",
                    errors_text(&errors)
                );
            }
        }
        let slow: Vec<String> = m
            .map(|(_, runs)| {
                runs.iter()
                    .enumerate()
                    .filter(|(_, r)| r.took.is_none_or(|d| d.as_secs_f64() > bound))
                    .map(|(i, r)| {
                        format!(
                            "run {}: {} after {} attempts, refused: {}",
                            i + 1,
                            r.took.map_or("not acquired".to_owned(), |d| format!(
                                "{:.3} s",
                                d.as_secs_f64()
                            )),
                            r.attempts,
                            errors_text(&r.errors)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        for line in slow {
            println!("  mesh over the bound: {line}");
        }
    }
}

fn min_secs(runs: &[FailoverRun]) -> Option<f64> {
    runs.iter()
        .filter_map(|r| r.took.map(|d| d.as_secs_f64()))
        .min_by(f64::total_cmp)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}

fn print_goals(args: &Args, mesh: &Results) {
    println!();
    println!("== goals (mesh, 3 voters, fsync on) ==");
    if let Some(p50) = mesh
        .claim
        .as_ref()
        .and_then(|r| pct_ms(&r.acquire, |p| p.p50))
    {
        println!(
            "1. claim acquire p50 <= 1 ms: {p50:.3} ms from a non-voter -> {}",
            met(p50 <= 1.0)
        );
    }
    if let Some(w) = mesh.windows.get(&64) {
        println!(
            "2. >= 20000 claims/s with 64 clients: {:.0} -> {}",
            w.rate(),
            met(w.rate() >= 20_000.0)
        );
    }
    if !mesh.failover.is_empty() {
        let parts: Vec<String> = mesh
            .failover
            .iter()
            .map(|(ttl, (_, runs))| {
                let bound = *ttl as f64 * (1.0 + RHO) + 1.0;
                let worst = runs
                    .iter()
                    .map(|r| r.took.map_or(f64::INFINITY, |d| d.as_secs_f64()))
                    .fold(0.0, f64::max);
                format!(
                    "TTL {ttl} s: worst {worst:.3} s vs {bound:.3} s -> {}",
                    met(worst <= bound)
                )
            })
            .collect();
        println!(
            "3. failover <= TTL·(1+ρ) + 1 s in every run ({} runs per TTL):",
            args.runs
        );
        for p in parts {
            println!("   {p}");
        }
    }
}

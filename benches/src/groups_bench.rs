//! `groups-bench`: mesh's process groups and group sends against Erlang/OTP `pg`, side
//! by side on 127.0.0.1 — join visibility (time until every node lists a fresh member)
//! at N = 10 and 50, and group-send throughput to a 100-member group spread over 5
//! peers (in-process and across the network) — printed as tables with the ratio
//! mesh/Erlang, then the goals and whether they were met (never asserted).
//!
//! ```text
//! cargo build --release -p mesh-cli -p mesh-bench
//! target/release/groups-bench [--bench visibility,throughput] [--peers 10,50] [--joins 50]
//!     [--system mesh,erlang] [--poll-ms 5] [--duration-secs 5] [--meshctl PATH]
//! ```
//!
//! The systems run one after the other, never at once. Every agent, Erlang VM, `epmd`
//! and scratch directory is removed on exit, on error and on Ctrl-C. See the module
//! docs of `mesh_bench::groups` for the method and `BENCHMARKS.md` for results.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mesh_bench::cleanup;
use mesh_bench::cluster::ClusterOptions;
use mesh_bench::erlang::ErlangOptions;
use mesh_bench::groups::{self, progress, Throughput, TpSettings, VisResult, VisSettings};
use mesh_bench::machine::{load_average, tool_version};
use mesh_bench::report::ratio;
use mesh_bench::stats::{Figure, Percentiles, SplitMix64};

/// Which measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    /// Join visibility at each `--peers` size.
    Visibility,
    /// Group-send throughput.
    Throughput,
}

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum System {
    /// mesh.
    Mesh,
    /// Erlang/OTP pg (Debian package erlang-base).
    Erlang,
}

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "groups-bench",
    about = "Groups benchmark: mesh vs Erlang pg on loopback (join visibility, group-send throughput)"
)]
struct Args {
    /// Internal: the embedded agent the throughput run starts as a process.
    #[command(subcommand)]
    command: Option<Internal>,
    /// Measurements to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "visibility,throughput")]
    bench: Vec<Bench>,
    /// Systems to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "mesh,erlang")]
    system: Vec<System>,
    /// Cluster sizes for join visibility, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    peers: Vec<usize>,
    /// Joins measured per cluster.
    #[arg(long, default_value_t = 50)]
    joins: usize,
    /// Poll period per agent while a join is measured, milliseconds (the resolution).
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// Deadline of one join, seconds.
    #[arg(long, default_value_t = 10)]
    join_timeout_secs: u64,
    /// Pause after convergence before the first join, seconds (mesh push-pulls every
    /// 500 ms for 5 s after a member joins the cluster; the default waits that out).
    #[arg(long, default_value_t = 6)]
    settle_secs: u64,
    /// mesh SWIM timing profile (`lan`, or `local` to see how the gossip period
    /// moves join visibility).
    #[arg(long, default_value = "lan")]
    profile: String,
    /// Pause between joins, milliseconds.
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
    /// Peers holding group members in the throughput runs.
    #[arg(long, default_value_t = 5)]
    member_peers: usize,
    /// Members per peer.
    #[arg(long, default_value_t = 20)]
    per_peer: usize,
    /// Payload bytes.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Sending window of each throughput run, seconds.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// mesh: group sends per call into the node.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// The meshctl binary [default: meshctl next to this binary, i.e. target/release].
    #[arg(long)]
    meshctl: Option<PathBuf>,
    /// Seed for ports and group names [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Keep agent and node logs in the temp dir after the run.
    #[arg(long)]
    keep_files: bool,
}

/// Internal subcommands.
#[derive(Debug, Subcommand)]
enum Internal {
    /// An embedded mesh agent holding group members (started by the throughput run).
    #[command(hide = true)]
    Worker(mesh_bench::worker::WorkerArgs),
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Internal::Worker(w)) = args.command {
        // A worker is killed by the harness; it installs no handler of its own.
        return mesh_bench::worker::run_worker(w);
    }
    cleanup::install_signal_handler()?;
    if args.joins == 0 || args.peers.iter().any(|&n| n < 2) {
        bail!("--joins must be at least 1 and every --peers size at least 2");
    }
    if args.poll_ms == 0 || args.batch == 0 || args.member_peers == 0 || args.per_peer == 0 {
        bail!("--poll-ms, --batch, --member-peers and --per-peer must be at least 1");
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let meshctl = args
        .meshctl
        .clone()
        .unwrap_or_else(|| exe.with_file_name("meshctl"));
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut rng = SplitMix64::new(seed);
    let mesh = args.system.contains(&System::Mesh);
    let erl = args.system.contains(&System::Erlang);
    let erl_opts = ErlangOptions::from_path(args.keep_files);
    if mesh && !meshctl.is_file() {
        bail!(
            "{} not found (cargo build --release -p mesh-cli, or --meshctl PATH)",
            meshctl.display()
        );
    }

    println!(
        "groups-bench: {:?}, systems {:?}, seed {seed}",
        args.bench, args.system
    );
    println!(
        "machine: {} CPUs, load average {} at start",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    if mesh {
        println!("mesh: {}", tool_version(&meshctl, "--version"));
    }
    if erl {
        match erl_opts.otp_release() {
            Ok(v) => println!("erlang: {v}"),
            Err(e) => println!("erlang: unavailable ({e:#}); install erlang-base"),
        }
    }

    let mut goals = Vec::new();
    if args.bench.contains(&Bench::Visibility) {
        let s = VisSettings {
            joins: args.joins,
            poll: Duration::from_millis(args.poll_ms),
            join_timeout: Duration::from_secs(args.join_timeout_secs),
            converge_timeout: Duration::from_secs(120),
            settle: Duration::from_secs(args.settle_secs),
            gap: Duration::from_millis(args.gap_ms),
        };
        let opts = ClusterOptions {
            meshctl: meshctl.clone(),
            serf: "serf".into(),
            profile: args.profile.clone(),
            serf_retry_interval: "1s".to_owned(),
            poll_timeout: Duration::from_secs(2),
            keep_files: args.keep_files,
        };
        let mut rows = Vec::new();
        for &n in &args.peers {
            let m = mesh.then(|| {
                progress(&format!("mesh N={n}"), "starting agents");
                groups::mesh_visibility(n, &opts, &s, rng.next_u64())
            });
            let e = erl.then(|| {
                progress(&format!("erlang N={n}"), "starting nodes");
                groups::erlang_visibility(n, &erl_opts, &s, rng.next_u64())
            });
            rows.push((n, m, e));
        }
        println!();
        print!("{}", render_visibility(&rows, &s));
        if let Some((_, Some(m), _)) = rows.iter().find(|(n, _, _)| *n == 50) {
            goals.push(visibility_goal(m, &s));
        }
    }
    if args.bench.contains(&Bench::Throughput) {
        let s = TpSettings {
            peers: args.member_peers,
            per_peer: args.per_peer,
            payload: args.payload,
            duration: Duration::from_secs(args.duration_secs),
            batch: args.batch,
        };
        let run =
            |what: &str, f: &mut dyn FnMut() -> Result<Throughput>| -> Result<Throughput, String> {
                progress(what, "running");
                let r = f().map_err(|e| format!("{e:#}"));
                match &r {
                    Ok(tp) => progress(what, &format!("{:.0} deliveries/s", tp.rate())),
                    Err(e) => progress(what, &format!("failed: {e}")),
                }
                r
            };
        let mut table = TpTable::default();
        if mesh {
            table.mesh_local = Some(run("mesh in-process", &mut || groups::mesh_in_process(&s)));
            let sim_seed = rng.next_u64();
            table.mesh_memory = Some(run("mesh in memory", &mut || {
                groups::mesh_in_memory(&s, sim_seed)
            }));
            let salt = rng.next_u64();
            table.mesh_net = Some(run("mesh quic", &mut || {
                groups::mesh_quic(&s, &exe, &meshctl, args.keep_files, salt)
            }));
        }
        if erl {
            let salt = rng.next_u64();
            table.erl_local = Some(run("erlang in-process", &mut || {
                groups::erlang_in_process(&s, &erl_opts, salt)
            }));
            let salt = rng.next_u64();
            table.erl_net = Some(run("erlang distribution", &mut || {
                groups::erlang_distributed(&s, &erl_opts, salt)
            }));
        }
        println!();
        print!("{}", render_throughput(&table, &s));
        goals.extend(throughput_goals(&table));
    }
    println!();
    println!("== goals ==");
    println!("0. local join+leave cost <= 1 us, flat to 100 000 groups: measured by registry-bench (cargo run --release -p mesh-bench --bin registry-bench)");
    for g in goals {
        println!("{g}");
    }
    println!(
        "load average at end: {} (2 cores: above ~2 means other work competed)",
        load_average()
    );
    Ok(())
}

/// p50/p99/max of a visibility result, in seconds.
fn percentiles(r: &VisResult, s: &VisSettings) -> Option<Percentiles> {
    Percentiles::of(&r.samples, r.censored, s.join_timeout.as_secs_f64())
}

/// A figure in milliseconds, `>10000` for a censored one.
fn ms(f: Figure) -> String {
    if f.at_least {
        format!(">{:.0}", f.value * 1000.0)
    } else {
        format!("{:.1}", f.value * 1000.0)
    }
}

/// A ratio as printed: `0.44`, `<0.32`, `>1.50` or `?`.
fn render_ratio(a: Figure, b: Figure) -> String {
    match ratio(a, b) {
        Some((r, std::cmp::Ordering::Equal)) => format!("{r:.2}"),
        Some((r, std::cmp::Ordering::Less)) => format!("<{r:.2}"),
        Some((r, std::cmp::Ordering::Greater)) => format!(">{r:.2}"),
        None => "?".to_owned(),
    }
}

type VisRow = (usize, Option<VisResult>, Option<VisResult>);

fn render_visibility(rows: &[VisRow], s: &VisSettings) -> String {
    let mut out = format!(
        "== join visibility: from the join until every node lists the member (ms; poll every {} ms = resolution; {} joins, deadline {} s) ==\n",
        s.poll.as_millis(),
        s.joins,
        s.join_timeout.as_secs()
    );
    out.push_str(&format!(
        "{:<34} {:>10} {:>10} {:>12}\n",
        "", "mesh", "erlang", "mesh/erlang"
    ));
    for (n, m, e) in rows {
        let pm = m.as_ref().and_then(|r| percentiles(r, s));
        let pe = e.as_ref().and_then(|r| percentiles(r, s));
        type Pick = fn(&Percentiles) -> Figure;
        let picks: [(&str, Pick); 3] = [("p50", |p| p.p50), ("p99", |p| p.p99), ("max", |p| p.max)];
        for (label, pick) in picks {
            let a = pm.as_ref().map(pick);
            let b = pe.as_ref().map(pick);
            out.push_str(&format!(
                "{:<34} {:>10} {:>10} {:>12}\n",
                format!("N={n} {label}"),
                a.map_or("n/a".to_owned(), ms),
                b.map_or("n/a".to_owned(), ms),
                match (a, b) {
                    (Some(a), Some(b)) => render_ratio(a, b),
                    _ => String::new(),
                }
            ));
        }
        let seen = |r: &Option<VisResult>| {
            r.as_ref().map_or("n/a".to_owned(), |r| {
                format!("{}/{}", r.samples.len(), r.samples.len() + r.censored)
            })
        };
        out.push_str(&format!(
            "{:<34} {:>10} {:>10}\n",
            format!("  N={n} joins seen everywhere"),
            seen(m),
            seen(e)
        ));
        if let Some(m) = m {
            let call = Percentiles::of(&m.join_call, 0, 0.0);
            out.push_str(&format!(
                "{:<34} {:>10}\n",
                format!("  N={n} mesh listen answered p50"),
                call.map_or("n/a".to_owned(), |p| ms(p.p50))
            ));
            out.push_str(&format!(
                "  N={n} mesh spread, p50 over joins of the time the k-th agent saw it (ms): {}\n",
                render_spread(&m.spread)
            ));
        }
        let conv = |r: &Option<VisResult>| {
            r.as_ref()
                .and_then(|r| r.converged)
                .map_or("n/a".to_owned(), |c| format!("{c:.2}"))
        };
        out.push_str(&format!(
            "{:<34} {:>10} {:>10}\n",
            format!("  N={n} cluster ready (s)"),
            conv(m),
            conv(e)
        ));
        for (name, r) in [("mesh", m), ("erlang", e)] {
            if let Some(f) = r.as_ref().and_then(|r| r.fatal.as_ref()) {
                out.push_str(&format!("  {name} N={n}: FAILED: {f}\n"));
            }
        }
    }
    out
}

/// `2nd 3.1 | 25% 210.0 | 50% 405.2 | 75% ... | last ...`: for a few ranks k, the
/// median over joins of the time the k-th agent (sorted) saw the member.
fn render_spread(spread: &[Vec<f64>]) -> String {
    let Some(n) = spread.first().map(Vec::len).filter(|&n| n > 1) else {
        return "n/a".to_owned();
    };
    let ranks = [
        ("2nd", 1),
        ("25%", n / 4),
        ("50%", n / 2),
        ("75%", 3 * n / 4),
        ("last", n - 1),
    ];
    let parts: Vec<String> = ranks
        .iter()
        .map(|(label, k)| {
            let at: Vec<f64> = spread.iter().filter_map(|v| v.get(*k).copied()).collect();
            let p50 = Percentiles::of(&at, 0, 0.0).map_or("n/a".to_owned(), |p| ms(p.p50));
            format!("{label} {p50}")
        })
        .collect();
    parts.join(" | ")
}

fn visibility_goal(m: &VisResult, s: &VisSettings) -> String {
    match percentiles(m, s) {
        Some(p) => {
            let met =
                !p.p50.at_least && !p.p99.at_least && p.p50.value <= 0.020 && p.p99.value <= 0.200;
            format!(
                "1. join visible everywhere at N=50: p50 <= 20 ms, p99 <= 200 ms: p50 {} ms, p99 {} ms over {} joins -> {}",
                ms(p.p50),
                ms(p.p99),
                p.completed + p.censored,
                if met { "MET" } else { "NOT MET" }
            )
        }
        None => format!(
            "1. join visible everywhere at N=50: no samples ({}) -> NOT MET",
            m.fatal.as_deref().unwrap_or("no joins")
        ),
    }
}

/// Throughput results by system and setting.
#[derive(Debug, Default)]
struct TpTable {
    mesh_local: Option<Result<Throughput, String>>,
    mesh_memory: Option<Result<Throughput, String>>,
    mesh_net: Option<Result<Throughput, String>>,
    erl_local: Option<Result<Throughput, String>>,
    erl_net: Option<Result<Throughput, String>>,
}

fn render_throughput(t: &TpTable, s: &TpSettings) -> String {
    let mut out = format!(
        "== group-send throughput: {} members over {} peers, {}-byte payloads, {} s window ==\n",
        s.members(),
        s.peers,
        s.payload,
        s.duration.as_secs()
    );
    out.push_str(&format!(
        "{:<44} {:>12} {:>12} {:>12}\n",
        "", "mesh", "erlang", "mesh/erlang"
    ));
    type Get = fn(&Throughput) -> f64;
    let cell = |r: &Option<Result<Throughput, String>>, get: Get| -> (String, Option<f64>) {
        match r {
            Some(Ok(tp)) => {
                let v = get(tp);
                (format!("{v:.0}"), Some(v))
            }
            Some(Err(_)) => ("FAILED".to_owned(), None),
            None => ("n/a".to_owned(), None),
        }
    };
    let mut row = |label: &str,
                   m: &Option<Result<Throughput, String>>,
                   e: &Option<Result<Throughput, String>>,
                   get: Get| {
        let (ms, mv) = cell(m, get);
        let (es, ev) = cell(e, get);
        let r = match (mv, ev) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => String::new(),
        };
        out.push_str(&format!("{label:<44} {ms:>12} {es:>12} {r:>12}\n"));
    };
    let none = None;
    row(
        "in-process deliveries/s (1 node)",
        &t.mesh_local,
        &t.erl_local,
        Throughput::rate,
    );
    row(
        "  group sends/s",
        &t.mesh_local,
        &t.erl_local,
        Throughput::sends_per_sec,
    );
    row(
        "in memory, 1+5 simulated nodes, deliveries/s",
        &t.mesh_memory,
        &none,
        Throughput::rate,
    );
    row(
        "  group sends/s",
        &t.mesh_memory,
        &none,
        Throughput::sends_per_sec,
    );
    row(
        "across the network deliveries/s (1+5 nodes)",
        &t.mesh_net,
        &t.erl_net,
        Throughput::rate,
    );
    row(
        "  group sends/s",
        &t.mesh_net,
        &t.erl_net,
        Throughput::sends_per_sec,
    );
    row(
        "  delivered within 1 s after the window",
        &t.mesh_net,
        &t.erl_net,
        |tp| tp.settled as f64,
    );
    row(
        "  targets of accepted sends",
        &t.mesh_net,
        &t.erl_net,
        |tp| (tp.sends * tp.targets) as f64,
    );
    row("  sends refused (error)", &t.mesh_net, &t.erl_net, |tp| {
        tp.send_errors as f64
    });
    row(
        "  frames refused by the transport (queue full)",
        &t.mesh_net,
        &t.erl_net,
        |tp| tp.frames_refused as f64,
    );
    row("  calls refused busy", &t.mesh_net, &t.erl_net, |tp| {
        tp.busy as f64
    });
    row(
        "  deliveries refused on arrival",
        &t.mesh_net,
        &t.erl_net,
        |tp| tp.refused_in as f64,
    );
    out.push_str("  (mesh across the network: QUIC between 6 agent processes; erlang: distribution over TCP between 6 VMs)\n");
    for (name, r) in [
        ("mesh in-process", &t.mesh_local),
        ("mesh in memory", &t.mesh_memory),
        ("mesh quic", &t.mesh_net),
        ("erlang in-process", &t.erl_local),
        ("erlang distribution", &t.erl_net),
    ] {
        if let Some(Err(e)) = r {
            out.push_str(&format!("  {name}: FAILED: {e}\n"));
        }
    }
    out
}

fn throughput_goals(t: &TpTable) -> Vec<String> {
    let goal = |no: u32, what: &str, r: &Option<Result<Throughput, String>>, want: f64| match r {
        Some(Ok(tp)) => format!(
            "{no}. {what} >= {:.0} deliveries/s: {:.0} -> {}",
            want,
            tp.rate(),
            if tp.rate() >= want { "MET" } else { "NOT MET" }
        ),
        Some(Err(e)) => format!("{no}. {what}: failed ({e}) -> NOT MET"),
        None => format!("{no}. {what}: not run"),
    };
    vec![
        goal(2, "in-process (1 node)", &t.mesh_local, 1e6),
        goal(3, "over QUIC", &t.mesh_net, 5e5),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_reports_the_median_join_per_rank() {
        // Three joins over four agents: rank 1 (2nd) is 10, 20, 30 ms -> median 20 ms.
        let spread = vec![
            vec![0.001, 0.010, 0.200, 0.400],
            vec![0.001, 0.020, 0.210, 0.500],
            vec![0.001, 0.030, 0.220, 0.600],
        ];
        assert_eq!(
            render_spread(&spread),
            "2nd 20.0 | 25% 20.0 | 50% 210.0 | 75% 500.0 | last 500.0"
        );
        assert_eq!(render_spread(&[]), "n/a");
    }

    #[test]
    fn a_censored_p99_fails_the_visibility_goal_even_if_p50_is_fast() {
        let s = VisSettings {
            joins: 2,
            poll: Duration::from_millis(5),
            join_timeout: Duration::from_secs(10),
            converge_timeout: Duration::from_secs(1),
            settle: Duration::ZERO,
            gap: Duration::ZERO,
        };
        let fast = VisResult {
            samples: vec![0.005, 0.006],
            ..VisResult::default()
        };
        assert!(visibility_goal(&fast, &s).ends_with("-> MET"));
        let one_lost = VisResult {
            samples: vec![0.005],
            censored: 1,
            ..VisResult::default()
        };
        let goal = visibility_goal(&one_lost, &s);
        assert!(goal.contains("p99 >10000"), "{goal}");
        assert!(goal.ends_with("NOT MET"), "{goal}");
    }
}

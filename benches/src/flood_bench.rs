//! `flood-bench`: one agent flooded with processes and groups (issue 14's floods:
//! 100 000 processes on one agent, 100 000 groups), measuring what it costs and whether
//! the agent stays responsive.
//!
//! ```text
//! cargo build --release -p mesh-bench
//! target/release/flood-bench [--processes 100000] [--groups 100000] [--batch 500]
//! ```
//!
//! One embedded agent (no peers) on 127.0.0.1 with its admin API. The flood spawns
//! `--processes` processes through the public API, each joining group `g{i % groups}`
//! (so `--groups` distinct groups), `--batch` at a time. All the while a probe asks
//! `GET /readyz` every 50 ms over TCP and keeps the slowest answer. Then every process
//! exits, and the bench waits until the node holds none. Printed: the rates, the
//! resident memory before, at the peak and after, the bytes per process, the slowest
//! probe, and the goals (MET / NOT MET; never asserted). No peer system is run: serf,
//! etcd and Erlang have no equivalent of a process-group flood on one node, so there is
//! no ratio. Results in `BENCHMARKS.md`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use mesh_agent::runtime::{Agent, ApiError, Tls};
use mesh_bench::machine::load_average;
use mesh_transport::certs::{generate_ca, issue_node_cert};
use mesh_transport::tls::TlsIdentity;

/// Wait before retrying a call the agent refused as busy.
const BUSY_WAIT: Duration = Duration::from_millis(1);

/// Goal: the slowest `/readyz` during the flood.
const GOAL_PROBE: Duration = Duration::from_millis(500);
/// Goal: resident memory per live process (with its group membership).
const GOAL_BYTES_PER_PROCESS: f64 = 4096.0;
/// Goal: time for every process to be gone after they all exit.
const GOAL_DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "flood-bench",
    about = "One agent flooded with processes and groups"
)]
struct Args {
    /// Processes to spawn.
    #[arg(long, default_value_t = 100_000)]
    processes: usize,
    /// Distinct groups they join (process i joins g{i % groups}).
    #[arg(long, default_value_t = 100_000)]
    groups: usize,
    /// Spawns and joins in flight at once.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One `GET /readyz`: how long until the status line came back.
fn probe(admin: SocketAddr) -> Option<Duration> {
    let start = Instant::now();
    let mut conn = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    conn.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut first = [0u8; 12];
    conn.read_exact(&mut first).ok()?;
    Some(start.elapsed())
}

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "NOT MET"
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let ca = generate_ca("flood").context("CA")?;
    let node = issue_node_cert(&ca, "flood").context("certificate")?;
    let tls = TlsIdentity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem)
        .context("TLS identity")?;
    // A free port: an agent must advertise a dialable address, never port 0.
    let bind = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let agent = Agent::builder("flood", Tls::Identity(tls))
        .bind(bind)
        .admin("127.0.0.1:0".parse()?)
        .max_processes(args.processes.max(1))
        .start()
        .await
        .context("agent")?;
    let admin = agent.admin_api().context("admin address")?;
    let rss_before = rss_bytes();

    // The probe, on its own thread (it must not wait behind the flood's tasks).
    let stop = Arc::new(AtomicBool::new(false));
    let worst_us = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let prober = {
        let (stop, worst_us, failed) = (stop.clone(), worst_us.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match probe(admin) {
                    Some(d) => {
                        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                        worst_us.fetch_max(us, Ordering::Relaxed);
                    }
                    None => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let start = Instant::now();
    let mut handles = Vec::with_capacity(args.processes);
    let groups = args.groups.max(1);
    let mut i = 0;
    while i < args.processes {
        let n = args.batch.max(1).min(args.processes - i);
        let batch: Vec<_> = (i..i + n)
            .map(|k| {
                let h = agent.clone();
                let group = format!("g{}", k % groups);
                tokio::spawn(async move {
                    let p = unless_busy(|| h.spawn(None)).await?;
                    let groups = [group];
                    unless_busy(|| h.join("default", &groups, p.pid(), None)).await?;
                    anyhow::Ok(p)
                })
            })
            .collect();
        for t in batch {
            handles.push(t.await.context("task")??);
        }
        i += n;
    }
    let flood = start.elapsed();
    let live = processes(&agent).await?;
    let rss_peak = rss_bytes();

    let exit_start = Instant::now();
    drop(handles);
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes(&agent).await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = exit_start.elapsed();
    let left = processes(&agent).await?;
    stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    let rss_after = rss_bytes();
    let worst = Duration::from_micros(worst_us.load(Ordering::Relaxed));
    let probe_failures = failed.load(Ordering::Relaxed);
    agent.leave(Duration::from_secs(2)).await;

    #[allow(clippy::cast_precision_loss)]
    let per_process = rss_peak.saturating_sub(rss_before) as f64 / live.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let rate = live as f64 / flood.as_secs_f64().max(1e-9);
    println!(
        "flood-bench: {} processes in {} groups, batch {}; load average {}",
        args.processes,
        groups,
        args.batch,
        load_average()
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| spawn + join | {:.2} s ({rate:.0} per s), {live} live at the peak |",
        flood.as_secs_f64()
    );
    println!(
        "| RSS before / peak / after | {:.1} / {:.1} / {:.1} MiB |",
        mib(rss_before),
        mib(rss_peak),
        mib(rss_after)
    );
    println!("| RSS per process (peak - before) | {per_process:.0} bytes |");
    println!(
        "| all exited, node empty after | {:.2} s ({left} left) |",
        drained.as_secs_f64()
    );
    println!(
        "| slowest /readyz during the flood | {:.1} ms ({probe_failures} failed) |",
        worst.as_secs_f64() * 1e3
    );
    println!();
    println!("goals:");
    println!(
        "  slowest /readyz < {} ms, none failed: {}",
        GOAL_PROBE.as_millis(),
        verdict(worst < GOAL_PROBE && probe_failures == 0)
    );
    println!(
        "  RSS per process < {GOAL_BYTES_PER_PROCESS:.0} bytes: {}",
        verdict(per_process < GOAL_BYTES_PER_PROCESS)
    );
    println!(
        "  every process gone within {} s of the exits: {}",
        GOAL_DRAIN.as_secs(),
        verdict(left == 0 && drained < GOAL_DRAIN)
    );
    Ok(())
}

/// The node's live processes, waiting out a full command queue (the exits of 100 000
/// dropped handles fill it).
async fn processes(agent: &mesh_agent::runtime::AgentHandle) -> Result<usize> {
    Ok(unless_busy(|| agent.call(|n, _| n.process_count())).await?)
}

/// Runs `call` until the agent does not answer `Busy` (a full command queue is
/// backpressure: wait and retry, as a client would).
async fn unless_busy<T, E, F, Fut>(mut call: F) -> Result<T, ApiError<E>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError<E>>>,
{
    loop {
        match call().await {
            Err(ApiError::Busy) => tokio::time::sleep(BUSY_WAIT).await,
            other => return other,
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

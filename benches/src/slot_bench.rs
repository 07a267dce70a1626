//! `slot-bench`: what a shard's register costs after a long history — its encoded size
//! and the CPU time of one claim — after 0, 10, 100 and 1 000 agent lives, and after
//! 1 000 distinct TTLs, next to what the previous format would hold after the same
//! history.
//!
//! ```text
//! cargo run --release -p mesh-bench --bin slot-bench -- [--claims 300]
//! ```
//!
//! In process, on the real code: one `Proposer` and three `Acceptor`s of the claims
//! plane, every message encoded and decoded as on the wire (MessagePack with field
//! names), no network and no fsync. A *life* is what an agent restart leaves behind on
//! a shard: a holder (node `a-K`, a new incarnation) opens a session, claims a task,
//! and dies; the watcher evicts its session. A *TTL* is one holder of a live agent with
//! its own TTL: it opens a session, claims, releases and closes it (idle). After the
//! history, a steady live state of 4 holders with 2 claims each is written, and then
//! `--claims` claim+release rounds are run; the claim's p50 is thread CPU time.
//!
//! The "previous format" column models the old register: one record per client that
//! ever wrote the shard, each holding the whole table of its last change, never retired
//! (it is a model of that format's size, not the old code run).
//!
//! Goals: the register's size is bounded by the live state — at most the table plus
//! one 40-byte record per live client plus the 16 recent ones — and the claim p50 after
//! 1 000 lives is within 1.25× of that after none.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use mesh_core::claims::{
    client_id, holder_client, SessionId, ShardChange, ShardId, ShardOutcome, ShardSlot, ShardTable,
};
use mesh_core::quorum::{
    Acceptor, AcceptorOutput, NodeId, Outcome, Proposer, ProposerConfig, ProposerOutput, Reply,
    Request, RequestId, RECENT_RECORDS,
};
use nix::time::{clock_gettime, ClockId};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "a shard register's size and claim cost after many lives and TTLs")]
struct Args {
    /// Claim+release rounds timed after each history.
    #[arg(long, default_value_t = 300)]
    claims: usize,
}

const SHARD: ShardId = ShardId(0);
const TTL_MS: u64 = 10_000;

/// One shard's register: a proposer and three acceptors, messages through the codec.
struct Register {
    proposer: Proposer<ShardId, ShardTable, ShardChange>,
    acceptors: Vec<Acceptor<ShardId, ShardSlot>>,
    rng: StdRng,
    now: Instant,
    /// Largest encoded message seen (an accept or a promise: about the slot's size).
    largest: usize,
    /// The previous format's records: per client ever, its last seq and table.
    legacy: BTreeMap<u64, (u64, Option<ShardTable>)>,
    table: Option<ShardTable>,
}

/// The previous format, for its size only.
#[derive(Serialize)]
struct LegacySlot<'a> {
    value: &'a Option<ShardTable>,
    applied: BTreeMap<u64, (u64, LegacyOutcome<'a>)>,
}

#[derive(Serialize)]
enum LegacyOutcome<'a> {
    Applied(&'a Option<ShardTable>),
}

fn through_wire<T: Serialize + serde::de::DeserializeOwned>(msg: &T) -> Result<(T, usize)> {
    let bytes = rmp_serde::to_vec_named(msg).context("encode")?;
    let back = rmp_serde::from_slice(&bytes).context("decode")?;
    Ok((back, bytes.len()))
}

impl Register {
    fn new() -> Self {
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        Self {
            proposer: Proposer::new(NodeId(9), 1, 1, voters, ProposerConfig::default()),
            acceptors: voters.iter().map(|v| Acceptor::new(*v, 1)).collect(),
            rng: StdRng::seed_from_u64(1),
            now: Instant::now(),
            largest: 0,
            legacy: BTreeMap::new(),
            table: None,
        }
    }

    /// Runs one change to its decision.
    fn run(&mut self, request: RequestId, change: ShardChange) -> Result<ShardOutcome> {
        self.proposer
            .propose(self.now, SHARD, Some(request), change);
        loop {
            let Some(out) = self.proposer.poll_output() else {
                bail!("the register stalled");
            };
            match out {
                ProposerOutput::Send(env) => {
                    let (msg, n): (Request<ShardId, ShardSlot>, usize) = through_wire(&env.msg)?;
                    self.largest = self.largest.max(n);
                    let a = &mut self.acceptors[(env.to.0 - 1) as usize];
                    a.handle_request(NodeId(9), msg);
                    while let Some(o) = a.poll_output() {
                        let (AcceptorOutput::Persist { then, .. } | AcceptorOutput::Send(then)) = o;
                        let (rep, n): (Reply<ShardId, ShardSlot>, usize) = through_wire(&then.msg)?;
                        self.largest = self.largest.max(n);
                        let id = a.id();
                        self.proposer.handle_reply(self.now, id, rep, &mut self.rng);
                    }
                }
                ProposerOutput::Complete(c) => {
                    let outcome = c.result.context("timed out")?;
                    if let Some(t) = outcome.value() {
                        self.table = Some(t.clone());
                    }
                    if matches!(outcome, Outcome::Applied { .. }) {
                        self.legacy
                            .insert(request.client, (request.seq, self.table.clone()));
                    }
                    return Ok(outcome);
                }
            }
        }
    }

    /// The encoded size of the register value now, and in the previous format.
    fn sizes(&self) -> Result<(usize, usize, usize)> {
        let slot = self.acceptors[0]
            .state(&SHARD)
            .and_then(|s| s.accepted.as_ref())
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let now = rmp_serde::to_vec_named(&slot).context("encode")?.len();
        let legacy = LegacySlot {
            value: &self.table,
            applied: self
                .legacy
                .iter()
                .map(|(c, (seq, t))| (*c, (*seq, LegacyOutcome::Applied(t))))
                .collect(),
        };
        let old = rmp_serde::to_vec_named(&legacy).context("encode")?.len();
        Ok((now, slot.applied.len(), old))
    }
}

/// A holder life and TTL as a client.
struct Client {
    node: String,
    incarnation: u64,
    ttl_ms: u64,
    seq: u64,
    sid: Option<SessionId>,
}

impl Client {
    fn new(node: &str, incarnation: u64, ttl_ms: u64) -> Self {
        Self {
            node: node.to_owned(),
            incarnation,
            ttl_ms,
            seq: 0,
            sid: None,
        }
    }

    fn rid(&mut self) -> RequestId {
        self.seq += 1;
        RequestId {
            client: holder_client(&self.node, self.incarnation, self.ttl_ms),
            seq: self.seq,
        }
    }

    fn open(&mut self, r: &mut Register) -> Result<()> {
        let change = ShardChange::OpenSession {
            node: self.node.clone(),
            incarnation: self.incarnation,
            ttl_ms: self.ttl_ms,
        };
        let rid = self.rid();
        match r.run(rid, change)?.decision() {
            Some(Ok(n)) => {
                self.sid = Some(SessionId {
                    node: self.node.clone(),
                    incarnation: self.incarnation,
                    n,
                });
                Ok(())
            }
            other => bail!("open: {other:?}"),
        }
    }

    fn sid(&self) -> Result<SessionId> {
        self.sid.clone().context("no session")
    }

    /// Claims `task`; its token.
    fn claim(&mut self, r: &mut Register, task: &str) -> Result<u64> {
        let change = ShardChange::Claim {
            task: task.to_owned(),
            sid: self.sid()?,
        };
        let rid = self.rid();
        match r.run(rid, change)?.decision() {
            Some(Ok(token)) => Ok(token),
            other => bail!("claim {task}: {other:?}"),
        }
    }

    fn release(&mut self, r: &mut Register, task: &str, token: u64) -> Result<()> {
        let rid = self.rid();
        r.run(
            rid,
            ShardChange::Release {
                task: task.to_owned(),
                token,
            },
        )?;
        Ok(())
    }

    fn close(&mut self, r: &mut Register) -> Result<()> {
        let change = ShardChange::CloseSession { sid: self.sid()? };
        let rid = self.rid();
        r.run(rid, change)?;
        Ok(())
    }
}

/// The watcher evicts `sid` (as after its TTL).
fn evict(r: &mut Register, seq: &mut u64, sid: SessionId) -> Result<()> {
    let seen = r
        .table
        .as_ref()
        .and_then(|t| t.sessions.get(&sid))
        .map(|s| s.renew_seq)
        .context("no such session")?;
    *seq += 1;
    let rid = RequestId {
        client: client_id("watcher-node", 1, "watcher"),
        seq: *seq,
    };
    r.run(
        rid,
        ShardChange::Evict {
            sid,
            seen_renew_seq: seen,
        },
    )?;
    Ok(())
}

fn cpu_now() -> Result<Duration> {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).context("thread CPU clock")?;
    Ok(Duration::from(t))
}

/// One row: a history, then the live state, then timed claims.
struct Row {
    label: String,
    bytes: usize,
    records: usize,
    old_bytes: usize,
    largest_message: usize,
    table_bytes: usize,
    live_clients: usize,
    claim_p50: Duration,
}

fn row(label: String, lives: u64, ttls: u64, claims: usize) -> Result<Row> {
    let mut r = Register::new();
    let mut watcher_seq = 0;
    for k in 0..lives {
        let mut c = Client::new(&format!("a-{}", k % 50), k + 1, TTL_MS);
        c.open(&mut r)?;
        c.claim(&mut r, &format!("life-task-{}", k % 7))?;
        let sid = c.sid()?;
        evict(&mut r, &mut watcher_seq, sid)?;
    }
    for t in 0..ttls {
        let mut c = Client::new("busy", 1, 200 + t);
        c.open(&mut r)?;
        let token = c.claim(&mut r, &format!("ttl-task-{}", t % 7))?;
        c.release(&mut r, &format!("ttl-task-{}", t % 7), token)?;
        c.close(&mut r)?;
    }
    // The live state: 4 holders with 2 claims each.
    let mut live: Vec<Client> = (0..4)
        .map(|i| Client::new(&format!("live-{i}"), 1, TTL_MS))
        .collect();
    for (i, c) in live.iter_mut().enumerate() {
        c.open(&mut r)?;
        for j in 0..2 {
            c.claim(&mut r, &format!("held-{i}-{j}"))?;
        }
    }
    let mut samples = Vec::with_capacity(claims);
    for k in 0..claims {
        let task = format!("timed-{}", k % 5);
        let c = &mut live[k % 4];
        let t0 = cpu_now()?;
        let token = c.claim(&mut r, &task)?;
        samples.push(cpu_now()? - t0);
        c.release(&mut r, &task, token)?;
    }
    samples.sort();
    let (bytes, records, old_bytes) = r.sizes()?;
    let table_bytes = rmp_serde::to_vec_named(&r.table).context("encode")?.len();
    Ok(Row {
        label,
        bytes,
        records,
        old_bytes,
        largest_message: r.largest,
        table_bytes,
        live_clients: 4,
        claim_p50: samples[samples.len() / 2],
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "slot-bench: shard register after a history (in process, 1 proposer + 3 acceptors, \
         messages through the codec, no network, no fsync); load average {}",
        mesh_bench::machine::load_average()
    );
    let mut rows = Vec::new();
    for lives in [0u64, 10, 100, 1_000] {
        rows.push(row(format!("{lives} lives"), lives, 0, args.claims)?);
    }
    rows.push(row("1000 distinct TTLs".to_owned(), 0, 1_000, args.claims)?);
    println!();
    println!(
        "| history | register bytes | records | table bytes | largest message | claim p50 (CPU) | previous format bytes |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} µs | {} |",
            r.label,
            r.bytes,
            r.records,
            r.table_bytes,
            r.largest_message,
            r.claim_p50.as_secs_f64() * 1e6,
            r.old_bytes
        );
    }
    println!();
    let bound_ok = rows
        .iter()
        .all(|r| r.bytes <= r.table_bytes + (r.live_clients + RECENT_RECORDS) * 40 + 64);
    println!(
        "goal: register bytes <= table + 40 B x (live clients + {RECENT_RECORDS}) after every history: {}",
        if bound_ok { "MET" } else { "NOT MET" }
    );
    let (first, last) = (&rows[0], &rows[3]);
    let ratio = last.claim_p50.as_secs_f64() / first.claim_p50.as_secs_f64();
    println!(
        "goal: claim p50 after 1000 lives <= 1.25x after 0 lives: {ratio:.2}x {}",
        if ratio <= 1.25 { "MET" } else { "NOT MET" }
    );
    println!(
        "previous format after 1000 lives: {} bytes ({:.0}x the register now)",
        last.old_bytes,
        last.old_bytes as f64 / last.bytes as f64
    );
    Ok(())
}

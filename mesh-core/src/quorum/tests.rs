//! Unit tests of the register: the proposer against real acceptors, hand-delivered.

use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::{Duration, Instant};

type Val = u32;
type Ch = RegisterChange<Val>;
type S = Slot<Val, CasMismatch>;
type P = Proposer<&'static str, Val, Ch>;
type A = Acceptor<&'static str, S>;

const K: &str = "k";

/// A tiny hand-driven cluster: acceptors persist at once; messages wait in `inflight`
/// until a test delivers (or drops) them.
struct Cluster {
    now: Instant,
    rng: StdRng,
    acceptors: Vec<A>,
    inflight: Vec<(NodeId, Envelope<Request<&'static str, S>>)>,
    replies: Vec<(NodeId, Envelope<Reply<&'static str, S>>)>,
    done: Vec<Completion<&'static str, Val, CasMismatch>>,
}

fn voters() -> Vec<NodeId> {
    vec![NodeId(1), NodeId(2), NodeId(3)]
}

impl Cluster {
    fn new() -> Self {
        Self {
            now: Instant::now(),
            rng: StdRng::seed_from_u64(7),
            acceptors: voters().into_iter().map(|id| A::new(id, 1)).collect(),
            inflight: Vec::new(),
            replies: Vec::new(),
            done: Vec::new(),
        }
    }

    fn proposer(&self, id: u64) -> P {
        P::new(NodeId(id), 1, 1, voters(), ProposerConfig::default())
    }

    fn drain(&mut self, p: &mut P) {
        while let Some(o) = p.poll_output() {
            match o {
                ProposerOutput::Send(e) => self.inflight.push((p.id(), e)),
                ProposerOutput::Complete(c) => self.done.push(c),
            }
        }
    }

    /// Deliver requests to the acceptors in `to` (dropping the others when `drop_rest`),
    /// and their replies to `p`.
    fn round(&mut self, p: &mut P, to: &[u64], drop_rest: bool) {
        self.drain(p);
        let inflight = std::mem::take(&mut self.inflight);
        for (from, env) in inflight {
            if to.contains(&env.to.0) {
                let a = &mut self.acceptors[(env.to.0 - 1) as usize];
                a.handle_request(from, env.msg);
                while let Some(out) = a.poll_output() {
                    let reply = match out {
                        AcceptorOutput::Persist { then, .. } => then,
                        AcceptorOutput::Send(e) => e,
                    };
                    self.replies.push((a.id(), reply));
                }
            } else if !drop_rest {
                self.inflight.push((from, env));
            }
        }
        for (from, env) in std::mem::take(&mut self.replies) {
            if env.to == p.id() {
                p.handle_reply(self.now, from, env.msg, &mut self.rng);
            }
        }
        self.drain(p);
    }

    /// Run rounds (all acceptors) until `p` has nothing in flight.
    fn settle(&mut self, p: &mut P) {
        self.drain(p);
        for _ in 0..10 {
            if self.inflight.is_empty() {
                break;
            }
            self.round(p, &[1, 2, 3], true);
        }
    }

    /// Drive `p` through acceptors `via` (and its timers) until one more change completes.
    fn run_via(&mut self, p: &mut P, via: &[u64]) {
        let before = self.done.len();
        let mut rng = StdRng::seed_from_u64(11);
        self.drain(p);
        for _ in 0..100 {
            while !self.inflight.is_empty() && self.done.len() == before {
                self.round(p, via, true);
            }
            if self.done.len() > before {
                return;
            }
            let Some(t) = p.poll_timeout() else { return };
            self.now = self.now.max(t);
            p.handle_timeout(self.now, &mut rng);
            self.drain(p);
        }
    }

    fn run(&mut self, p: &mut P) {
        self.run_via(p, &[1, 2, 3]);
    }

    fn last(&self) -> Option<Outcome<Val, CasMismatch>> {
        self.done.last().and_then(|c| c.result.clone().ok())
    }
}

fn prepares_sent(c: &Cluster) -> usize {
    c.inflight
        .iter()
        .filter(|(_, e)| matches!(e.msg, Request::Prepare { .. }))
        .count()
}

#[test]
fn a_write_takes_two_round_trips_and_the_next_one_uses_the_cached_promise() {
    let mut c = Cluster::new();
    let mut p = c.proposer(10);
    p.propose(c.now, K, None, Ch::Write(1));
    c.drain(&mut p);
    assert_eq!(prepares_sent(&c), 3);
    c.settle(&mut p);
    assert_eq!(
        c.last(),
        Some(Outcome::Applied {
            value: Some(1),
            receipt: 0
        })
    );
    assert!(p.has_cached_promise(&K));

    p.propose(c.now, K, None, Ch::Write(2));
    c.drain(&mut p);
    assert_eq!(prepares_sent(&c), 0, "the cache skips phase 1");
    c.round(&mut p, &[1, 2, 3], true);
    assert_eq!(
        c.last(),
        Some(Outcome::Applied {
            value: Some(2),
            receipt: 0
        })
    );
    assert_eq!(p.stats().cache_hits, 1);
    assert_eq!(p.stats().prepares, 1);
}

#[test]
fn a_conflict_drops_the_cache_and_the_retry_climbs_above_the_higher_ballot() {
    let mut c = Cluster::new();
    let mut p = c.proposer(10);
    let mut q = c.proposer(20);
    p.propose(c.now, K, None, Ch::Write(1));
    c.settle(&mut p);
    assert!(p.has_cached_promise(&K));
    // Another proposer writes in between: its promises beat p's cached ballot.
    q.propose(c.now, K, None, Ch::Write(5));
    c.run(&mut q);
    assert_eq!(
        c.last(),
        Some(Outcome::Applied {
            value: Some(5),
            receipt: 0
        })
    );
    p.propose(
        c.now,
        K,
        None,
        Ch::Cas {
            expected: Some(1),
            new: 2,
        },
    );
    c.round(&mut p, &[1, 2, 3], true);
    assert!(!p.has_cached_promise(&K));
    assert!(p.stats().failed_rounds >= 1);
    // After the backoff it runs phase 1 again, sees 5, and the CAS is refused.
    c.now += Duration::from_secs(1);
    let mut rng = StdRng::seed_from_u64(1);
    p.handle_timeout(c.now, &mut rng);
    c.settle(&mut p);
    assert_eq!(
        c.last(),
        Some(Outcome::Rejected {
            reason: CasMismatch,
            current: Some(5)
        })
    );
}

#[test]
fn a_read_still_completes_the_accept_round() {
    let mut c = Cluster::new();
    let mut p = c.proposer(10);
    p.propose(c.now, K, None, Ch::Read);
    c.drain(&mut p);
    c.round(&mut p, &[1, 2, 3], true);
    assert!(c.done.is_empty(), "a read does not answer after phase 1");
    let accepts = c
        .inflight
        .iter()
        .filter(|(_, e)| matches!(e.msg, Request::Accept { .. }))
        .count();
    assert_eq!(accepts, 3);
    c.settle(&mut p);
    assert_eq!(
        c.last(),
        Some(Outcome::Applied {
            value: None,
            receipt: 0
        })
    );
}

#[test]
fn a_refused_cas_still_writes_the_current_value_back() {
    let mut c = Cluster::new();
    let mut p = c.proposer(10);
    p.propose(
        c.now,
        K,
        None,
        Ch::Cas {
            expected: Some(9),
            new: 1,
        },
    );
    c.drain(&mut p);
    c.round(&mut p, &[1, 2, 3], true);
    assert!(c
        .inflight
        .iter()
        .any(|(_, e)| matches!(e.msg, Request::Accept { .. })));
    c.settle(&mut p);
    assert!(matches!(c.last(), Some(Outcome::Rejected { .. })));
}

#[test]
fn a_retried_request_id_is_applied_only_once() {
    let mut c = Cluster::new();
    let mut p = c.proposer(10);
    let rid = RequestId { client: 7, seq: 1 };
    let incr = |from: u32| Ch::Cas {
        expected: Some(from),
        new: from + 1,
    };
    p.propose(c.now, K, None, Ch::Write(0));
    c.settle(&mut p);
    // The increment reaches only acceptor 1 in phase 2, then the proposer times out.
    p.propose(c.now, K, Some(rid), incr(0));
    c.drain(&mut p);
    c.round(&mut p, &[1], true);
    c.now += Duration::from_secs(10);
    let mut rng = StdRng::seed_from_u64(1);
    p.handle_timeout(c.now, &mut rng);
    c.drain(&mut p);
    assert_eq!(
        c.done.last().map(|d| d.result.clone()),
        Some(Err(ProposeError::Timeout))
    );
    // The client retries the same id on another proposer, which sees the partial accept
    // through acceptor 1 and finishes it, without applying the increment twice.
    let mut q = c.proposer(20);
    q.propose(c.now, K, Some(rid), incr(0));
    c.run_via(&mut q, &[1, 2]);
    assert_eq!(
        c.last(),
        Some(Outcome::Replayed {
            decision: Ok(0),
            current: Some(1)
        }),
        "the retry finds the first attempt's decision, and applies nothing"
    );
    q.propose(c.now, K, None, Ch::Read);
    c.run(&mut q);
    assert_eq!(
        c.last(),
        Some(Outcome::Applied {
            value: Some(1),
            receipt: 0
        })
    );
}

#[test]
fn an_older_request_of_the_same_client_is_superseded_not_applied() {
    let mut c = Cluster::new();
    let mut p = c.proposer(10);
    p.propose(
        c.now,
        K,
        Some(RequestId { client: 1, seq: 2 }),
        Ch::Write(2),
    );
    c.settle(&mut p);
    p.propose(
        c.now,
        K,
        Some(RequestId { client: 1, seq: 1 }),
        Ch::Write(1),
    );
    c.settle(&mut p);
    assert_eq!(c.last(), Some(Outcome::Superseded));
    p.propose(c.now, K, None, Ch::Read);
    c.settle(&mut p);
    assert_eq!(
        c.last(),
        Some(Outcome::Applied {
            value: Some(2),
            receipt: 0
        })
    );
}

#[test]
fn replies_from_non_voters_and_stale_ballots_are_ignored() {
    let mut c = Cluster::new();
    let mut p = c.proposer(10);
    p.propose(c.now, K, None, Ch::Write(1));
    c.drain(&mut p);
    let fake = Reply::Promise {
        key: K,
        ballot: Ballot::first(NodeId(10), 1),
        accepted: None,
    };
    p.handle_reply(c.now, NodeId(99), fake.clone(), &mut c.rng);
    let stale = Reply::Accepted {
        key: K,
        ballot: Ballot::ZERO,
        next_promised: true,
    };
    p.handle_reply(c.now, NodeId(1), stale, &mut c.rng);
    assert_eq!(p.stats().ignored_replies, 2);
    c.settle(&mut p);
    assert_eq!(
        c.last(),
        Some(Outcome::Applied {
            value: Some(1),
            receipt: 0
        })
    );
}

#[test]
fn an_op_without_a_quorum_times_out_after_backing_off() {
    let mut c = Cluster::new();
    let mut p = c.proposer(10);
    p.propose(c.now, K, None, Ch::Write(1));
    let start = c.now;
    let mut rng = StdRng::seed_from_u64(3);
    // Only one acceptor ever answers.
    for _ in 0..1000 {
        c.drain(&mut p);
        c.round(&mut p, &[1], true);
        let Some(t) = p.poll_timeout() else { break };
        c.now = t;
        p.handle_timeout(c.now, &mut rng);
    }
    c.drain(&mut p);
    let last = c.done.last().cloned();
    assert_eq!(last.map(|d| d.result), Some(Err(ProposeError::Timeout)));
    assert!(c.now - start >= ProposerConfig::default().op_timeout);
    assert!(p.stats().failed_rounds > 1);
}

#[test]
fn backoff_jitter_comes_from_the_injected_rng() {
    let run = |seed: u64| {
        let mut c = Cluster::new();
        let mut p = c.proposer(10);
        p.propose(c.now, K, None, Ch::Write(1));
        c.drain(&mut p);
        c.inflight.clear();
        let mut rng = StdRng::seed_from_u64(seed);
        let t = p.poll_timeout().unwrap_or(c.now);
        p.handle_timeout(t, &mut rng);
        p.poll_timeout().map(|b| b - t)
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn hrw_is_pinned_and_only_picks_among_candidates() {
    let v = voters();
    // Pinned: these values must never change (every peer must agree on them).
    assert_eq!(hrw_weight(b"shard-0", NodeId(1)), 0x32a7_1606_6288_370f);
    assert_eq!(hrw_weight(b"shard-0", NodeId(2)), 0x92a3_0fd7_4c1f_1afb);
    assert_eq!(hrw_weight(b"shard-0", NodeId(3)), 0x235f_3ab8_ecfe_fb62);
    let pick = preferred_proposer(b"shard-0", &v);
    assert_eq!(pick, Some(NodeId(2)));
    assert!(pick.is_some_and(|p| v.contains(&p)));
    assert_eq!(preferred_proposer(b"x", &[]), None);
    // Removing a non-preferred candidate never moves the preference.
    let Some(p) = pick else { return };
    let others: Vec<NodeId> = v.iter().copied().filter(|n| *n != p).collect();
    let fewer = vec![p, others[0]];
    assert_eq!(preferred_proposer(b"shard-0", &fewer), Some(p));
    // Spread: over many keys each voter is preferred sometimes.
    let mut counts = [0usize; 3];
    for i in 0..300u32 {
        if let Some(n) = preferred_proposer(&i.to_le_bytes(), &v) {
            counts[(n.0 - 1) as usize] += 1;
        }
    }
    assert!(counts.iter().all(|c| *c > 60), "{counts:?}");
    assert_eq!(majority(3), 2);
    assert_eq!(majority(5), 3);
}

/// The Cassandra LWT bug, reproduced by hand with the real acceptors: a write reaches
/// one acceptor only; a read that answers after phase 1 returns it from a quorum that
/// includes that acceptor; a later read, from a quorum that does not, returns the old
/// value. The first read finished before the second began, so no linearization exists.
/// The real proposer's read writes the value back in phase 2, and the second read sees it.
#[test]
fn read_that_skips_phase_two_is_not_linearizable() {
    use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

    // A phase-1-only read against acceptors `ids`: the highest accepted value.
    fn phase1_read(acceptors: &mut [A], ids: &[usize], ballot: Ballot) -> Option<Val> {
        let mut best: Option<(Ballot, S)> = None;
        for &i in ids {
            acceptors[i].handle_request(
                ballot.node,
                Request::Prepare {
                    key: K,
                    epoch: 1,
                    ballot,
                },
            );
            while let Some(out) = acceptors[i].poll_output() {
                let (AcceptorOutput::Persist { then, .. } | AcceptorOutput::Send(then)) = out;
                if let Reply::Promise {
                    accepted: Some(acc),
                    ..
                } = then.msg
                {
                    if best.as_ref().is_none_or(|b| acc.0 > b.0) {
                        best = Some(acc);
                    }
                }
            }
        }
        best.and_then(|(_, s)| s.value)
    }

    let run = |skip_phase_two: bool| -> bool {
        let mut c = Cluster::new();
        let mut history = LinearizabilityTester::new(Register(0u32));
        // Thread 0 writes 1; its accept reaches acceptor 1 only; it never returns.
        let mut w = c.proposer(10);
        let _ = history.on_invoke(0, RegisterOp::Write(1));
        w.propose(c.now, K, None, Ch::Write(1));
        c.drain(&mut w);
        c.round(&mut w, &[1, 2, 3], true);
        c.round(&mut w, &[1], true);
        // Thread 1 reads through acceptors {1, 2}, then thread 2 through {2, 3}.
        let reads: [(u64, [u64; 2]); 2] = [(20, [1, 2]), (30, [2, 3])];
        for (t, (pid, quorum)) in reads.into_iter().enumerate() {
            let _ = history.on_invoke(t as u64 + 1, RegisterOp::Read);
            let got = if skip_phase_two {
                let ids: Vec<usize> = quorum.iter().map(|q| (*q - 1) as usize).collect();
                let ballot = Ballot {
                    round: 10,
                    node: NodeId(pid),
                    incarnation: 1,
                };
                phase1_read(&mut c.acceptors, &ids, ballot)
            } else {
                let mut r = c.proposer(pid);
                r.propose(c.now, K, None, Ch::Read);
                c.run_via(&mut r, &quorum);
                match c.last() {
                    Some(Outcome::Applied { value, .. }) => value,
                    other => panic!("read did not complete: {other:?}"),
                }
            };
            let _ = history.on_return(t as u64 + 1, RegisterRet::ReadOk(got.unwrap_or(0)));
        }
        history.serialized_history().is_some()
    };
    assert!(run(false), "reads that complete phase 2 are linearizable");
    assert!(!run(true), "reads that skip phase 2 are not");
}

// ---------------------------------------------------------------- bounded records

/// A register whose value is the set of clients that joined it: only joined clients are
/// live, so leaving retires a client's record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Club {
    Join(u64),
    Leave(u64),
    /// Refused unless the set is empty.
    IfEmpty,
}

type Members = std::collections::BTreeSet<u64>;

impl Change<Members> for Club {
    type Reject = CasMismatch;

    fn apply(&self, current: Option<&Members>) -> Result<Option<Members>, CasMismatch> {
        let mut set = current.cloned().unwrap_or_default();
        match self {
            Self::Join(c) => {
                set.insert(*c);
            }
            Self::Leave(c) => {
                set.remove(c);
            }
            Self::IfEmpty if set.is_empty() => {}
            Self::IfEmpty => return Err(CasMismatch),
        }
        Ok(Some(set))
    }

    fn receipt(&self, new: Option<&Members>) -> u64 {
        new.map_or(0, |s| s.len() as u64)
    }

    fn live_clients(value: Option<&Members>) -> Option<Vec<u64>> {
        Some(
            value
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
        )
    }
}

fn rid(client: u64, seq: u64) -> Option<RequestId> {
    Some(RequestId { client, seq })
}

#[test]
fn a_retry_gets_the_recorded_receipt_and_applies_nothing() {
    let slot = Slot::<Members, CasMismatch>::default();
    let (slot, first) = decide(slot, rid(1, 1), &Club::Join(1));
    assert!(matches!(first, Outcome::Applied { receipt: 1, .. }));
    let (slot, _) = decide(slot, rid(2, 1), &Club::Join(2));
    let (after, again) = decide(slot.clone(), rid(1, 1), &Club::Join(1));
    assert_eq!(
        again,
        Outcome::Replayed {
            decision: Ok(1),
            current: slot.value.clone()
        },
        "the receipt of then, the value of now"
    );
    assert_eq!(after, slot, "a replay changes nothing");
}

#[test]
fn a_refusal_from_a_client_without_a_record_leaves_no_trace() {
    let (slot, _) = decide(Slot::default(), rid(1, 1), &Club::Join(1));
    let (after, refused) = decide(slot.clone(), rid(9, 1), &Club::IfEmpty);
    assert!(matches!(refused, Outcome::Rejected { .. }));
    assert_eq!(after, slot, "nothing recorded for client 9");
    // A client with a record has the refusal recorded in place (no new entry).
    let (after, _) = decide(slot.clone(), rid(1, 2), &Club::IfEmpty);
    assert_eq!(after.applied.len(), 1);
    assert_eq!(after.applied[&1].seq, 2);
    assert_eq!(after.applied[&1].result, Err(CasMismatch));
    let (_, replay) = decide(after, rid(1, 2), &Club::IfEmpty);
    assert!(matches!(
        replay,
        Outcome::Replayed {
            decision: Err(CasMismatch),
            ..
        }
    ));
}

#[test]
fn records_are_compact_whatever_the_value() {
    let mut slot = Slot::<Members, CasMismatch>::default();
    for c in 0..1000 {
        slot = decide(slot, None, &Club::Join(c)).0;
    }
    let (slot, _) = decide(slot, rid(5, 1), &Club::Join(5));
    let record = rmp_serde::to_vec_named(&slot.applied[&5]).expect("encode");
    assert!(record.len() < 32, "{} bytes for a record", record.len());
}

#[test]
fn records_of_clients_no_longer_live_are_retired_but_for_the_most_recent() {
    let mut slot = Slot::<Members, CasMismatch>::default();
    let gone = RECENT_RECORDS as u64 + 5;
    for c in 0..gone {
        slot = decide(slot, rid(c, 1), &Club::Join(c)).0;
        slot = decide(slot, rid(c, 2), &Club::Leave(c)).0;
    }
    // Every client left: only the most recent RECENT_RECORDS records remain.
    assert_eq!(slot.applied.len(), RECENT_RECORDS);
    let kept: Vec<u64> = slot.applied.keys().copied().collect();
    let expected: Vec<u64> = (gone - RECENT_RECORDS as u64..gone).collect();
    assert_eq!(kept, expected, "the oldest went first");
    // Live clients are never retired, however many others come and go.
    slot = decide(slot, rid(1000, 1), &Club::Join(1000)).0;
    for c in 2000..2000 + 3 * RECENT_RECORDS as u64 {
        slot = decide(slot, rid(c, 1), &Club::Join(c)).0;
        slot = decide(slot, rid(c, 2), &Club::Leave(c)).0;
    }
    assert!(slot.applied.contains_key(&1000));
    assert_eq!(slot.applied.len(), RECENT_RECORDS + 1);
    // A retired client's retry is judged afresh: here it applies again, which is why
    // the layer above must make a retired client's changes refuse (see `claims`).
    let (_, late) = decide(slot, rid(0, 1), &Club::Join(0));
    assert!(matches!(late, Outcome::Applied { .. }));
}

#[test]
fn a_slot_of_the_previous_format_decodes_with_its_records_dropped() {
    /// The previous format: a whole outcome (value included) per client.
    #[derive(serde::Serialize)]
    struct LegacySlot {
        value: Option<Val>,
        applied: std::collections::BTreeMap<u64, (u64, Outcome<Val, CasMismatch>)>,
    }
    let legacy = LegacySlot {
        value: Some(7),
        applied: [
            (
                1,
                (
                    3,
                    Outcome::Applied {
                        value: Some(7),
                        receipt: 0,
                    },
                ),
            ),
            (
                2,
                (
                    1,
                    Outcome::Rejected {
                        reason: CasMismatch,
                        current: Some(6),
                    },
                ),
            ),
        ]
        .into(),
    };
    for named in [true, false] {
        let bytes = if named {
            rmp_serde::to_vec_named(&legacy)
        } else {
            rmp_serde::to_vec(&legacy)
        }
        .expect("encode");
        let slot: S = rmp_serde::from_slice(&bytes).expect("the old format still decodes");
        assert_eq!(slot.value, Some(7));
        assert!(slot.applied.is_empty(), "old records are dropped");
    }
    // The current format round-trips, records included.
    let (slot, _) = decide(S::default(), rid(4, 2), &Ch::Write(3));
    let back: S =
        rmp_serde::from_slice(&rmp_serde::to_vec_named(&slot).expect("encode")).expect("decode");
    assert_eq!(back, slot);
    assert_eq!(back.applied.len(), 1);
}

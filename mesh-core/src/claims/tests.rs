//! Unit and property tests of the claims plane: the table, the holder, the watcher, the
//! fenced resource, the name cache and `run_while_holding`.

use super::table::{MAX_CLAIMS, MAX_KEY_BYTES, MAX_NAMES, MAX_SESSIONS, MIN_TTL_MS};
use super::*;
use crate::pid::Pid;
use crate::quorum::{Change, Outcome, ProposeError, Request, RequestId};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn sid(node: &str, n: u64) -> SessionId {
    SessionId {
        node: node.to_owned(),
        incarnation: 1,
        n,
    }
}

fn pid(node: &str, id: u64) -> Pid {
    Pid::new(node, 1, id)
}

/// Apply a change to a table as the register would.
fn step(t: &ShardTable, c: &ShardChange) -> Result<ShardTable, ClaimReject> {
    c.apply(Some(t)).map(|v| v.unwrap_or_default())
}

/// A table with session `s` added as `OpenSession` adds one (one fresh stamp), but
/// with an id the test picks: fixtures name their sessions. The register's numbering
/// itself is checked by `an_open_session_is_numbered_by_the_register_and_never_reused`.
fn open(t: &ShardTable, s: &SessionId) -> ShardTable {
    let mut t = t.clone();
    let renew_seq = t.next_token;
    t.next_token += 1;
    t.sessions.insert(
        s.clone(),
        Session {
            ttl_ms: 1000,
            renew_seq,
        },
    );
    t
}

/// `OpenSession` for `node` (incarnation 1) through the change; the new session's id.
fn open_new(
    t: &ShardTable,
    node: &str,
    ttl_ms: u64,
) -> Result<(ShardTable, SessionId), ClaimReject> {
    let change = ShardChange::OpenSession {
        node: node.to_owned(),
        incarnation: 1,
        ttl_ms,
    };
    let t = step(t, &change)?;
    let n = change.receipt(Some(&t));
    Ok((t, sid(node, n)))
}

/// A register of a strong name under session `s`, durable or bound to it.
fn register(name: &str, owner: Pid, s: &SessionId, ephemeral: bool) -> ShardChange {
    ShardChange::RegisterName {
        name: name.to_owned(),
        owner,
        sid: s.clone(),
        ephemeral,
    }
}

fn claim(t: &ShardTable, task: &str, s: &SessionId) -> Result<ShardTable, ClaimReject> {
    step(
        t,
        &ShardChange::Claim {
            task: task.to_owned(),
            sid: s.clone(),
        },
    )
}

fn token(t: &ShardTable, task: &str) -> u64 {
    t.claims.get(task).map_or(0, |r| r.token)
}

// ---------------------------------------------------------------- the table

#[test]
fn shard_of_is_pinned_and_spreads_keys_over_every_shard() {
    let got: Vec<u32> = ["", "a", "job-1", "job-2", "orders/eu/42"]
        .iter()
        .map(|k| shard_of(k.as_bytes(), 16).0)
        .collect();
    assert_eq!(got, PINNED_SHARDS);
    assert_eq!(pinned_hash(&[b"job-1"]), PINNED_HASH);
    let mut counts = [0u32; 8];
    for i in 0..8000 {
        counts[shard_of(format!("task-{i}").as_bytes(), 8).0 as usize] += 1;
    }
    assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    assert_eq!(shard_of(b"x", 0), ShardId(0));
    assert_eq!(shard_of(b"x", 1), ShardId(0));
}

const PINNED_SHARDS: [u32; 5] = [10, 12, 7, 6, 2];
const PINNED_HASH: u64 = 8_675_242_136_403_688_157;

#[test]
fn preferred_owner_is_pinned_and_ignores_candidate_order() {
    let a = preferred_owner("job-1", ["n1", "n2", "n3"]);
    let b = preferred_owner("job-1", ["n3", "n1", "n2"]);
    assert_eq!(a, b);
    assert_eq!(a, Some(PINNED_OWNER));
    assert_eq!(preferred_owner("job-1", []), None);
    // Removing a non-preferred candidate never moves the task.
    let others: Vec<&str> = ["n1", "n2", "n3"]
        .into_iter()
        .filter(|n| Some(*n) != a)
        .collect();
    let rest = preferred_owner("job-1", [a.unwrap_or("n1"), others[0]]);
    assert_eq!(rest, a);
}

const PINNED_OWNER: &str = "n2";

#[test]
fn a_free_task_gets_the_next_token_and_a_retry_by_the_same_session_the_same_one() {
    let s = sid("n1", 1);
    let t = open(&ShardTable::default(), &s);
    let first = t.next_token;
    let t = claim(&t, "job", &s).expect("free task");
    assert_eq!(token(&t, "job"), first);
    assert_eq!(t.next_token, first + 1);
    let again = claim(&t, "job", &s).expect("retry");
    assert_eq!(token(&again, "job"), first, "same token on a retry");
    // The retry refreshed the session (a claim proves the holder alive).
    assert!(again.sessions[&s].renew_seq > t.sessions[&s].renew_seq);
}

#[test]
fn a_task_held_by_another_session_is_refused_with_its_holder_and_token() {
    let (a, b) = (sid("n1", 1), sid("n2", 1));
    let t = open(&open(&ShardTable::default(), &a), &b);
    let t = claim(&t, "job", &a).expect("claim");
    assert_eq!(
        claim(&t, "job", &b),
        Err(ClaimReject::Held {
            holder: a,
            token: token(&t, "job")
        })
    );
}

#[test]
fn a_claim_without_a_session_is_refused() {
    let t = ShardTable::default();
    let s = sid("n1", 1);
    assert_eq!(claim(&t, "job", &s), Err(ClaimReject::NoSession { sid: s }));
}

#[test]
fn release_frees_at_once_and_the_next_claim_gets_a_higher_token() {
    let (a, b) = (sid("n1", 1), sid("n2", 1));
    let t = open(&open(&ShardTable::default(), &a), &b);
    let t = claim(&t, "job", &a).expect("claim");
    let k = token(&t, "job");
    let stale = step(
        &t,
        &ShardChange::Release {
            task: "job".into(),
            token: k - 1,
        },
    );
    assert_eq!(stale, Err(ClaimReject::StaleToken { current: k }));
    let t = step(
        &t,
        &ShardChange::Release {
            task: "job".into(),
            token: k,
        },
    )
    .expect("release");
    assert!(t.claims.is_empty());
    let t = claim(&t, "job", &b).expect("claim again");
    assert!(token(&t, "job") > k);
}

#[test]
fn evict_applies_only_while_the_renew_seq_is_the_one_seen() {
    let s = sid("n1", 1);
    let t = claim(&open(&ShardTable::default(), &s), "job", &s).expect("claim");
    let seen = t.sessions[&s].renew_seq;
    let renewed = step(&t, &ShardChange::Renew { sid: s.clone() }).expect("renew");
    let current = renewed.sessions[&s].renew_seq;
    let evict = ShardChange::Evict {
        sid: s.clone(),
        seen_renew_seq: seen,
    };
    assert_eq!(
        step(&renewed, &evict),
        Err(ClaimReject::RenewSeqMoved { current })
    );
    let gone = step(&t, &evict).expect("evict with the seen seq");
    assert!(gone.sessions.is_empty() && gone.claims.is_empty());
}

#[test]
fn an_evict_never_matches_a_later_life_of_the_same_session_id() {
    let s = sid("n1", 1);
    let t = open(&ShardTable::default(), &s);
    let seen = t.sessions[&s].renew_seq;
    let closed = step(&t, &ShardChange::CloseSession { sid: s.clone() }).expect("close");
    let reopened = open(&closed, &s);
    assert_ne!(
        reopened.sessions[&s].renew_seq, seen,
        "stamps are never reused"
    );
    let evict = ShardChange::Evict {
        sid: s,
        seen_renew_seq: seen,
    };
    assert!(matches!(
        step(&reopened, &evict),
        Err(ClaimReject::RenewSeqMoved { .. })
    ));
}

#[test]
fn closing_a_session_removes_its_claims_and_ephemeral_names_but_not_durable_ones() {
    let (a, b) = (sid("n1", 1), sid("n2", 1));
    let mut t = open(&open(&ShardTable::default(), &a), &b);
    t = claim(&t, "j1", &a).expect("claim");
    t = claim(&t, "j2", &b).expect("claim");
    for (name, ephemeral) in [("eph", true), ("durable", false)] {
        t = step(&t, &register(name, pid("n1", 1), &a, ephemeral)).expect("register");
    }
    let t = step(&t, &ShardChange::CloseSession { sid: a.clone() }).expect("close");
    assert!(!t.sessions.contains_key(&a));
    assert_eq!(t.claims.keys().collect::<Vec<_>>(), ["j2"]);
    assert_eq!(t.names.keys().collect::<Vec<_>>(), ["durable"]);
}

#[test]
fn reassign_hands_the_tasks_to_live_sessions_with_fresh_tokens_in_one_change() {
    let (a, b) = (sid("n1", 1), sid("n2", 1));
    let mut t = open(&open(&ShardTable::default(), &a), &b);
    t = claim(&t, "j1", &a).expect("claim");
    t = claim(&t, "j2", &a).expect("claim");
    let seen = t.sessions[&a].renew_seq;
    let old = token(&t, "j1");
    let to: BTreeMap<String, SessionId> = [("j1".to_owned(), b.clone())].into();
    let after = step(
        &t,
        &ShardChange::Reassign {
            sid: a.clone(),
            seen_renew_seq: seen,
            to,
        },
    )
    .expect("reassign");
    assert!(!after.sessions.contains_key(&a));
    assert_eq!(after.claims["j1"].sid, b);
    assert!(after.claims["j1"].token > old);
    assert!(!after.claims.contains_key("j2"), "unlisted tasks are freed");
    // Refusals change nothing: a vanished target, a target that is the evicted session,
    // a task the session does not hold.
    for (task, target, why) in [
        (
            "j1",
            sid("n9", 1),
            ClaimReject::NoSession { sid: sid("n9", 1) },
        ),
        ("j1", a.clone(), ClaimReject::ReassignToEvicted),
        (
            "zz",
            b.clone(),
            ClaimReject::NotHeld {
                task: "zz".to_owned(),
            },
        ),
    ] {
        let change = ShardChange::Reassign {
            sid: a.clone(),
            seen_renew_seq: seen,
            to: [(task.to_owned(), target)].into(),
        };
        assert_eq!(step(&t, &change), Err(why));
    }
}

#[test]
fn a_strong_name_is_taken_only_once_and_a_re_registration_gets_a_higher_version() {
    let a = sid("n1", 1);
    let t = open(&ShardTable::default(), &a);
    let reg = |t: &ShardTable, owner: Pid| step(t, &register("db", owner, &a, false));
    let t = reg(&t, pid("n1", 1)).expect("register");
    let v1 = t.names["db"].version;
    assert_eq!(
        reg(&t, pid("n2", 1)),
        Err(ClaimReject::NameTaken {
            owner: pid("n1", 1),
            version: v1
        })
    );
    let wrong = step(
        &t,
        &ShardChange::TransferName {
            name: "db".into(),
            version: v1 + 5,
            to: pid("n2", 1),
            sid: None,
        },
    );
    assert_eq!(wrong, Err(ClaimReject::VersionMismatch { current: v1 }));
    let t = step(
        &t,
        &ShardChange::TransferName {
            name: "db".into(),
            version: v1,
            to: pid("n2", 1),
            sid: None,
        },
    )
    .expect("transfer");
    let v2 = t.names["db"].version;
    assert!(v2 > v1 && t.names["db"].owner == pid("n2", 1));
    let stale_release = step(
        &t,
        &ShardChange::ReleaseName {
            name: "db".into(),
            version: v1,
        },
    );
    assert_eq!(
        stale_release,
        Err(ClaimReject::VersionMismatch { current: v2 })
    );
    let t = step(
        &t,
        &ShardChange::ReleaseName {
            name: "db".into(),
            version: v2,
        },
    )
    .expect("release");
    let t = reg(&t, pid("n3", 1)).expect("register again");
    assert!(t.names["db"].version > v2, "versions never go back");
    let none = step(
        &ShardTable::default(),
        &ShardChange::ReleaseName {
            name: "db".into(),
            version: 1,
        },
    );
    assert_eq!(none, Err(ClaimReject::NoSuchName));
}

#[test]
fn bad_input_is_refused_with_what_was_wrong() {
    let s = sid("n1", 1);
    let t = open(&ShardTable::default(), &s);
    let long = "x".repeat(MAX_KEY_BYTES + 1);
    assert!(matches!(
        claim(&t, &long, &s),
        Err(ClaimReject::BadLength {
            field: Field::Task,
            ..
        })
    ));
    assert!(matches!(
        claim(&t, "", &s),
        Err(ClaimReject::BadLength { len: 0, .. })
    ));
    let bad_ttl = open_new(&t, "n2", 5).map(|_| ());
    assert_eq!(bad_ttl, Err(ClaimReject::InvalidTtl { ttl_ms: 5 }));
    let long_node = open_new(&t, &"n".repeat(64), 1000).map(|_| ());
    assert!(matches!(
        long_node,
        Err(ClaimReject::BadLength {
            field: Field::Node,
            ..
        })
    ));
}

#[test]
fn an_open_session_is_numbered_by_the_register_and_never_reused() {
    let (t, a) = open_new(&ShardTable::default(), "n1", 1000).expect("open");
    assert_eq!(a.n, 1, "the first stamp of a fresh shard");
    assert_eq!(
        t.sessions[&a].renew_seq, a.n,
        "its first renew_seq is its number"
    );
    // The same open again (a late copy) opens another session, never the same one.
    let (t, b) = open_new(&t, "n1", 1000).expect("open");
    assert_ne!(a, b);
    assert!(b.n > a.n);
    let t = step(&t, &ShardChange::CloseSession { sid: a.clone() }).expect("close");
    let (t, c) = open_new(&t, "n1", 1000).expect("open");
    assert!(
        c.n > b.n,
        "a closed session's number is never handed out again"
    );
    assert!(!t.sessions.contains_key(&a));
    // A change made under the closed session is refused and changes nothing.
    assert_eq!(
        claim(&t, "job", &a),
        Err(ClaimReject::NoSession { sid: a.clone() })
    );
}

#[test]
fn every_table_is_bounded_and_a_full_one_refuses_growth() {
    let mut t = ShardTable::default();
    for i in 0..MAX_SESSIONS as u64 {
        t = open(&t, &sid("n1", i));
    }
    assert_eq!(
        open_new(&t, "n2", 1000).map(|_| ()),
        Err(ClaimReject::TableFull {
            kind: TableKind::Sessions,
            max: MAX_SESSIONS
        })
    );
    let s = sid("n1", 0);
    for i in 0..MAX_CLAIMS {
        t = claim(&t, &format!("task-{i}"), &s).expect("room");
    }
    assert!(matches!(
        claim(&t, "one-more", &s),
        Err(ClaimReject::TableFull {
            kind: TableKind::Claims,
            ..
        })
    ));
    for i in 0..MAX_NAMES {
        let change = register(&format!("name-{i}"), pid("n1", i as u64), &s, false);
        t = step(&t, &change).expect("room");
    }
    assert!(matches!(
        step(&t, &register("one-more", pid("n1", 1), &s, false)),
        Err(ClaimReject::TableFull {
            kind: TableKind::Names,
            ..
        })
    ));
}

#[test]
fn a_full_table_with_the_longest_keys_encodes_under_160_kib() {
    let mut t = ShardTable::default();
    let node = "n".repeat(63);
    for i in 0..MAX_SESSIONS as u64 {
        let s = SessionId {
            node: node.clone(),
            incarnation: u64::MAX,
            n: i,
        };
        t.sessions.insert(
            s,
            Session {
                ttl_ms: u64::MAX,
                renew_seq: u64::MAX,
            },
        );
    }
    let s = SessionId {
        node: node.clone(),
        incarnation: u64::MAX,
        n: 0,
    };
    for i in 0..MAX_CLAIMS {
        let key = format!("{i:0>128}");
        t.claims.insert(
            key,
            ClaimRecord {
                sid: s.clone(),
                token: u64::MAX,
            },
        );
    }
    for i in 0..MAX_NAMES {
        t.names.insert(
            format!("{i:0>128}"),
            StrongName {
                owner: Pid::new(node.clone(), u64::MAX, u64::MAX),
                version: u64::MAX,
                sid: Some(s.clone()),
            },
        );
    }
    let named = rmp_serde::to_vec_named(&t).expect("encode");
    let compact = rmp_serde::to_vec(&t).expect("encode");
    println!(
        "a full table: {} bytes of named MessagePack, {} compact",
        named.len(),
        compact.len()
    );
    assert!(named.len() < 160 * 1024, "{} bytes", named.len());
    let back: ShardTable = rmp_serde::from_slice(&named).expect("decode");
    assert_eq!(back, t);
}

#[test]
fn wire_types_round_trip_through_messagepack_and_the_table_through_json() {
    let s = sid("n1", 1);
    let mut t = claim(&open(&ShardTable::default(), &s), "job", &s).expect("claim");
    t = step(&t, &register("db", pid("n1", 3), &s, true)).expect("register");
    let slot = ShardSlot {
        value: Some(t.clone()),
        applied: [
            (
                7,
                crate::quorum::Record {
                    seq: 3,
                    result: Err(ClaimReject::Held {
                        holder: s.clone(),
                        token: 4,
                    }),
                    at: 1,
                },
            ),
            (
                8,
                crate::quorum::Record {
                    seq: 9,
                    result: Ok(5),
                    at: 2,
                },
            ),
        ]
        .into(),
        decided: 2,
    };
    let req: Request<ShardId, ShardSlot> = Request::Accept {
        key: ShardId(3),
        epoch: 1,
        ballot: crate::quorum::Ballot::ZERO,
        value: slot,
        next: crate::quorum::Ballot::ZERO,
    };
    for named in [false, true] {
        let bytes = if named {
            rmp_serde::to_vec_named(&req)
        } else {
            rmp_serde::to_vec(&req)
        }
        .expect("encode");
        let back: Request<ShardId, ShardSlot> = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, req);
    }
    let changes = [
        ShardChange::Reassign {
            sid: s.clone(),
            seen_renew_seq: 3,
            to: [("job".to_owned(), sid("n2", 1))].into(),
        },
        ShardChange::TransferName {
            name: "db".into(),
            version: 2,
            to: pid("n2", 1),
            sid: None,
        },
        ShardChange::Read,
    ];
    for c in changes {
        let bytes = rmp_serde::to_vec_named(&c).expect("encode");
        assert_eq!(rmp_serde::from_slice::<ShardChange>(&bytes).ok(), Some(c));
    }
    let json = serde_json::to_string(&t).expect("json");
    assert_eq!(serde_json::from_str::<ShardTable>(&json).ok(), Some(t));
    let dup = r#"{"t":5,"s":[[{"n":"a","i":1,"s":1},{"t":1000,"r":2}],[{"n":"a","i":1,"s":1},{"t":1000,"r":3}]],"c":{},"n":{}}"#;
    assert!(
        serde_json::from_str::<ShardTable>(dup).is_err(),
        "duplicate session ids"
    );
}

#[test]
fn validate_accepts_only_the_current_token() {
    let s = sid("n1", 1);
    let t = claim(&open(&ShardTable::default(), &s), "job", &s).expect("claim");
    let k = token(&t, "job");
    assert_eq!(t.validate("job", k).map(|r| r.token), Ok(k));
    assert_eq!(
        t.validate("job", k - 1).err(),
        Some(ClaimReject::StaleToken { current: k })
    );
    assert!(matches!(
        t.validate("other", k),
        Err(ClaimReject::NotHeld { .. })
    ));
}

#[test]
fn drift_shrinks_down_and_stretches_up_and_refuses_half_or_more() {
    let d = Drift::from_ppm(100_000).expect("10 %");
    let ttl = Duration::from_millis(1000);
    assert_eq!(d.shrink(ttl), Duration::from_millis(900));
    assert_eq!(d.stretch(ttl), Duration::from_millis(1100));
    assert_eq!(
        Drift::from_ppm(3)
            .expect("3 ppm")
            .stretch(Duration::from_nanos(1)),
        Duration::from_nanos(2),
        "rounded up"
    );
    assert_eq!(
        Drift::from_ppm(3)
            .expect("3 ppm")
            .shrink(Duration::from_nanos(1)),
        Duration::ZERO,
        "rounded down"
    );
    assert!(Drift::from_ppm(500_000).is_err());
    assert_eq!(Drift::ZERO.stretch(ttl), ttl);
}

/// An abstract op, resolved against the current table so that conditional changes
/// (evict, release, transfer) hit their "matching" case often, plus raw ones that miss.
#[derive(Clone, Debug)]
enum Op {
    Open(usize, u64),
    Renew(usize),
    Close(usize),
    Claim(usize, usize),
    ReleaseCurrent(usize),
    ReleaseRaw(usize, u64),
    EvictCurrent(usize),
    EvictRaw(usize, u64),
    Reassign(usize, usize),
    Register(usize, usize, Option<usize>),
    TransferCurrent(usize, usize, Option<usize>),
    ReleaseNameCurrent(usize),
    ReleaseNameRaw(usize, u64),
}

const SESSIONS: [&str; 3] = ["a", "b", "c"];
const TASKS: [&str; 3] = ["t0", "t1", "t2"];
const NAMES: [&str; 2] = ["x0", "x1"];

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SESSIONS.len();
    let k = 0..TASKS.len();
    let n = 0..NAMES.len();
    prop_oneof![
        (s.clone(), prop_oneof![Just(50u64), Just(1000), Just(2000)])
            .prop_map(|(a, t)| Op::Open(a, t)),
        s.clone().prop_map(Op::Renew),
        s.clone().prop_map(Op::Close),
        (k.clone(), s.clone()).prop_map(|(t, a)| Op::Claim(t, a)),
        (k.clone(), s.clone()).prop_map(|(t, a)| Op::Claim(t, a)),
        k.clone().prop_map(Op::ReleaseCurrent),
        (k, 0..20u64).prop_map(|(t, v)| Op::ReleaseRaw(t, v)),
        s.clone().prop_map(Op::EvictCurrent),
        (s.clone(), 0..20u64).prop_map(|(a, v)| Op::EvictRaw(a, v)),
        (s.clone(), s.clone()).prop_map(|(a, b)| Op::Reassign(a, b)),
        (n.clone(), 0..3usize, proptest::option::of(s.clone()))
            .prop_map(|(x, p, b)| Op::Register(x, p, b)),
        (n.clone(), 0..3usize, proptest::option::of(s))
            .prop_map(|(x, p, b)| Op::TransferCurrent(x, p, b)),
        n.clone().prop_map(Op::ReleaseNameCurrent),
        (n, 0..20u64).prop_map(|(x, v)| Op::ReleaseNameRaw(x, v)),
    ]
}

fn resolve(t: &ShardTable, op: &Op) -> ShardChange {
    // A node's latest session (sessions are numbered by the register), or one it never
    // had (n = 0, never a stamp).
    let s = |i: usize| {
        t.sessions
            .keys()
            .filter(|sid| sid.node == SESSIONS[i])
            .max()
            .cloned()
            .unwrap_or_else(|| sid(SESSIONS[i], 0))
    };
    let seq = |i: usize| t.sessions.get(&s(i)).map_or(0, |x| x.renew_seq);
    let ver = |x: usize| t.names.get(NAMES[x]).map_or(0, |n| n.version);
    match op.clone() {
        Op::Open(a, ttl_ms) => ShardChange::OpenSession {
            node: SESSIONS[a].into(),
            incarnation: 1,
            ttl_ms,
        },
        Op::Renew(a) => ShardChange::Renew { sid: s(a) },
        Op::Close(a) => ShardChange::CloseSession { sid: s(a) },
        Op::Claim(k, a) => ShardChange::Claim {
            task: TASKS[k].into(),
            sid: s(a),
        },
        Op::ReleaseCurrent(k) => ShardChange::Release {
            task: TASKS[k].into(),
            token: token(t, TASKS[k]),
        },
        Op::ReleaseRaw(k, v) => ShardChange::Release {
            task: TASKS[k].into(),
            token: v,
        },
        Op::EvictCurrent(a) => ShardChange::Evict {
            sid: s(a),
            seen_renew_seq: seq(a),
        },
        Op::EvictRaw(a, v) => ShardChange::Evict {
            sid: s(a),
            seen_renew_seq: v,
        },
        Op::Reassign(a, b) => ShardChange::Reassign {
            sid: s(a),
            seen_renew_seq: seq(a),
            to: t
                .claims_of(&s(a))
                .map(|(task, _)| (task.to_owned(), s(b)))
                .collect(),
        },
        Op::Register(x, p, b) => ShardChange::RegisterName {
            name: NAMES[x].into(),
            owner: pid("n1", p as u64),
            sid: s(b.unwrap_or(p % SESSIONS.len())),
            ephemeral: b.is_some(),
        },
        Op::TransferCurrent(x, p, b) => ShardChange::TransferName {
            name: NAMES[x].into(),
            version: ver(x),
            to: pid("n2", p as u64),
            sid: b.map(s),
        },
        Op::ReleaseNameCurrent(x) => ShardChange::ReleaseName {
            name: NAMES[x].into(),
            version: ver(x),
        },
        Op::ReleaseNameRaw(x, v) => ShardChange::ReleaseName {
            name: NAMES[x].into(),
            version: v,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The table invariants over random change sequences.
    #[test]
    fn random_changes_keep_the_counter_tokens_and_versions_monotone_and_sessions_whole(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let mut t = ShardTable::default();
        let mut last_token: BTreeMap<String, u64> = BTreeMap::new();
        let mut last_version: BTreeMap<String, u64> = BTreeMap::new();
        let mut applied = 0;
        for op in &ops {
            let change = resolve(&t, op);
            let before = t.clone();
            let Ok(after) = step(&t, &change) else { continue };
            applied += 1;
            // The counter never decreases, and a change that modified the table took a
            // fresh stamp.
            prop_assert!(after.next_token >= before.next_token);
            if after != before {
                prop_assert!(after.next_token > before.next_token, "{change:?}");
            }
            // Evicts apply only with the seen renew_seq; the session and everything bound
            // to it leave in the same change.
            if let ShardChange::Evict { sid, seen_renew_seq }
                | ShardChange::Reassign { sid, seen_renew_seq, .. } = &change
            {
                prop_assert_eq!(before.sessions.get(sid).map(|s| s.renew_seq), Some(*seen_renew_seq));
            }
            if let ShardChange::Evict { sid, .. }
                | ShardChange::Reassign { sid, .. }
                | ShardChange::CloseSession { sid } = &change
            {
                prop_assert!(!after.sessions.contains_key(sid));
                prop_assert!(after.claims.values().all(|r| r.sid != *sid));
                prop_assert!(after.names.values().all(|n| n.sid.as_ref() != Some(sid)));
            }
            // Idempotent claim: the holding session keeps its token.
            if let ShardChange::Claim { task, sid } = &change {
                if let Some(rec) = before.claims.get(task) {
                    prop_assert_eq!(&rec.sid, sid);
                    prop_assert_eq!(after.claims[task].token, rec.token);
                }
            }
            // Referential integrity and stamps below the counter, unique per session.
            for rec in after.claims.values() {
                prop_assert!(after.sessions.contains_key(&rec.sid));
                prop_assert!(rec.token < after.next_token);
            }
            for n in after.names.values() {
                if let Some(s) = &n.sid {
                    prop_assert!(after.sessions.contains_key(s));
                }
                prop_assert!(n.version < after.next_token);
            }
            let mut seqs: Vec<u64> = after.sessions.values().map(|s| s.renew_seq).collect();
            seqs.sort_unstable();
            seqs.dedup();
            prop_assert_eq!(seqs.len(), after.sessions.len());
            // Tokens per task and versions per name never go back, across releases and
            // evictions; a new holder or owner always gets a strictly higher one.
            for (task, rec) in &after.claims {
                let prev = last_token.insert(task.clone(), rec.token).unwrap_or(0);
                let same = before.claims.get(task) == Some(rec);
                prop_assert!(rec.token > prev || (same && rec.token == prev), "{task}");
            }
            for (name, n) in &after.names {
                let prev = last_version.insert(name.clone(), n.version).unwrap_or(0);
                let same = before.names.get(name) == Some(n);
                prop_assert!(n.version > prev || (same && n.version == prev), "{name}");
            }
            t = after;
        }
        prop_assert!(applied > 0 || ops.len() < 3 || t == ShardTable::default());
    }

    /// A fenced resource applies effects in non-decreasing token order per task and
    /// refuses exactly the tokens below the highest applied.
    #[test]
    fn a_fenced_resource_never_applies_a_lower_token_than_one_it_applied(
        writes in proptest::collection::vec((0..3usize, 0..10u64), 1..80)
    ) {
        let mut r: FencedResource<Vec<u64>> = FencedResource::new();
        let mut highest: BTreeMap<usize, u64> = BTreeMap::new();
        for (task, tok) in writes {
            let name = TASKS[task];
            let res = r.apply(name, tok, |log| log.push(tok));
            let h = highest.get(&task).copied();
            match h {
                Some(h) if tok < h => prop_assert_eq!(res, Err(FenceError::Stale { token: tok, highest: h })),
                _ => {
                    prop_assert!(res.is_ok());
                    highest.insert(task, tok);
                }
            }
        }
        for (task, name) in TASKS.iter().enumerate() {
            if let Some(log) = r.get(name) {
                prop_assert!(log.windows(2).all(|w| w[0] <= w[1]));
                prop_assert_eq!(log.last().copied(), highest.get(&task).copied());
            }
        }
    }
}

// ---------------------------------------------------------------- the holder

const TTL: Duration = Duration::from_secs(3);
const GUARD: Duration = Duration::from_millis(50);

fn drift() -> Drift {
    Drift::from_ppm(10_000).expect("1 %")
}

/// A holder against an in-memory register that applies each change at once, in order.
struct Harness {
    holder: Holder,
    table: Option<ShardTable>,
    now: Instant,
    /// Submissions not yet answered.
    pending: Vec<Submission>,
}

impl Harness {
    fn new() -> Self {
        Self::with_voters(3)
    }

    fn with_voters(voters: usize) -> Self {
        let mut config = HolderConfig::new("n1", 7, 1, voters);
        config.ttl = TTL;
        config.drift = drift();
        config.guard = GUARD;
        Self {
            holder: Holder::new(config).expect("valid config"),
            table: None,
            now: Instant::now(),
            pending: Vec::new(),
        }
    }

    fn collect(&mut self) {
        while let Some(s) = self.holder.poll_submit() {
            self.pending.push(s);
        }
    }

    /// Answer the oldest pending submission with what the register would say.
    fn answer_one(&mut self) -> Option<Submission> {
        self.collect();
        if self.pending.is_empty() {
            return None;
        }
        let sub = self.pending.remove(0);
        let outcome = match sub.change.apply(self.table.as_ref()) {
            Ok(new) => {
                if !sub.change.is_read() {
                    self.table = new.clone();
                }
                let receipt = sub.change.receipt(new.as_ref());
                Outcome::Applied {
                    value: new,
                    receipt,
                }
            }
            Err(reason) => Outcome::Rejected {
                reason,
                current: self.table.clone(),
            },
        };
        self.holder
            .handle_completion(self.now, sub.request, Ok(outcome));
        Some(sub)
    }

    fn settle(&mut self) -> Vec<Submission> {
        std::iter::from_fn(|| self.answer_one()).collect()
    }

    fn time_out_one(&mut self) -> Option<Submission> {
        self.collect();
        if self.pending.is_empty() {
            return None;
        }
        let sub = self.pending.remove(0);
        self.holder
            .handle_completion(self.now, sub.request, Err(ProposeError::Timeout));
        Some(sub)
    }

    fn events(&mut self) -> Vec<HolderEvent> {
        std::iter::from_fn(|| self.holder.poll_event()).collect()
    }

    fn advance_to(&mut self, t: Instant) {
        self.now = self.now.max(t);
        self.holder.handle_timeout(self.now);
    }

    fn tick(&mut self) {
        if let Some(t) = self.holder.poll_timeout() {
            self.advance_to(t);
        }
    }

    /// Rewrite the register behind the holder's back (another node's change).
    fn external(&mut self, change: ShardChange) {
        let new = change
            .apply(self.table.as_ref())
            .expect("external change applies");
        self.table = new;
    }

    /// Another node opens a session (an external change); its id.
    fn external_session(&mut self, node: &str) -> SessionId {
        let change = ShardChange::OpenSession {
            node: node.to_owned(),
            incarnation: 1,
            ttl_ms: 1000,
        };
        self.external(change.clone());
        sid(node, change.receipt(self.table.as_ref()))
    }

    /// Another holder (`n2`) claims "orphan" and dies; a watcher reassigns the task to
    /// session `to` (external changes, as if another node made them).
    fn reassign_orphan_to(&mut self, to: SessionId) {
        let dead = self.external_session("n2");
        self.external(ShardChange::Claim {
            task: "orphan".into(),
            sid: dead.clone(),
        });
        let seen = self
            .table
            .as_ref()
            .map(|t| t.sessions[&dead].renew_seq)
            .expect("table");
        self.external(ShardChange::Reassign {
            sid: dead,
            seen_renew_seq: seen,
            to: [("orphan".to_owned(), to)].into(),
        });
    }
}

fn done(events: &[HolderEvent]) -> Vec<Result<CallOk, ClaimsError>> {
    events
        .iter()
        .filter_map(|e| match e {
            HolderEvent::Done { result, .. } => Some(result.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_claim_opens_the_session_first_and_is_valid_from_its_t0_for_ttl_times_one_minus_rho() {
    let mut h = Harness::new();
    let t0 = h.now;
    h.holder.claim(t0, "job").expect("admitted");
    h.collect();
    assert_eq!(h.pending.len(), 1, "one change per shard in flight");
    assert!(matches!(
        h.pending[0].change,
        ShardChange::OpenSession { .. }
    ));
    h.now += Duration::from_millis(20);
    h.answer_one();
    h.collect();
    assert!(matches!(h.pending[0].change, ShardChange::Claim { .. }));
    let claim_t0 = h.now;
    h.now += Duration::from_millis(30);
    h.settle();
    let (token, until) = h.holder.validity("job").expect("held");
    assert_eq!(until, claim_t0 + drift().shrink(TTL) - GUARD);
    assert!(h
        .holder
        .is_valid(until - Duration::from_nanos(1), "job", token));
    assert!(!h.holder.is_valid(until, "job", token));
    assert!(!h.holder.is_valid(claim_t0, "job", token + 1));
    assert_eq!(
        done(&h.events()),
        [Ok(CallOk::Claimed {
            task: "job".into(),
            token,
            valid_until: until
        })]
    );
}

#[test]
fn a_retry_after_a_timeout_keeps_the_request_id_and_the_first_t0() {
    let mut h = Harness::new();
    h.holder.claim(h.now, "job").expect("admitted");
    h.settle(); // the open and the claim
    h.events();
    let t0 = h.now + Duration::from_secs(1);
    h.now = t0;
    h.holder.renew(h.now, "job").expect("admitted");
    let first = h.time_out_one().expect("the renew");
    h.now += Duration::from_millis(700);
    let retry = h.answer_one().expect("the retry");
    assert_eq!(retry.request, first.request, "same at-most-once id");
    assert_eq!(retry.change, first.change);
    let (_, until) = h.holder.validity("job").expect("held");
    assert_eq!(
        until,
        t0 + drift().shrink(TTL) - GUARD,
        "t0 of the first attempt"
    );
}

#[test]
fn open_sessions_renew_every_third_of_the_ttl_and_extend_validity() {
    let mut h = Harness::new();
    h.holder.claim(h.now, "job").expect("admitted");
    let claim_t0 = h.now;
    h.settle();
    let (token, first_until) = h.holder.validity("job").expect("held");
    assert_eq!(h.holder.poll_timeout(), Some(claim_t0 + TTL / 3));
    for i in 1..=6u32 {
        h.tick();
        h.collect();
        assert!(
            matches!(h.pending.as_slice(), [s] if matches!(s.change, ShardChange::Renew { .. })),
            "renew {i}: {:?}",
            h.pending
        );
        h.settle();
    }
    let (same, until) = h.holder.validity("job").expect("still held");
    assert_eq!(same, token);
    assert_eq!(until, claim_t0 + 2 * TTL + drift().shrink(TTL) - GUARD);
    assert!(until > first_until);
    assert!(h
        .events()
        .iter()
        .all(|e| !matches!(e, HolderEvent::Lost { .. })));
}

#[test]
fn an_evicted_session_loses_every_claim_of_the_shard_on_the_next_result() {
    let mut h = Harness::new();
    for task in ["a", "b"] {
        h.holder.claim(h.now, task).expect("admitted");
    }
    h.settle();
    h.events();
    let sid = h.holder.session(ShardId(0)).cloned().expect("session");
    let seen = h
        .table
        .as_ref()
        .map(|t| t.sessions[&sid].renew_seq)
        .expect("table");
    h.external(ShardChange::Evict {
        sid,
        seen_renew_seq: seen,
    });
    h.tick();
    h.settle();
    let mut lost: Vec<String> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            HolderEvent::Lost {
                task,
                reason: LostReason::Evicted,
                ..
            } => Some(task),
            _ => None,
        })
        .collect();
    lost.sort();
    assert_eq!(lost, ["a", "b"]);
    assert_eq!(h.holder.validity("a"), None);
    assert_eq!(h.holder.session(ShardId(0)), None);
}

#[test]
fn claims_expire_when_no_renew_is_acknowledged_and_the_next_claim_opens_a_new_session() {
    let mut h = Harness::new();
    h.holder.claim(h.now, "job").expect("admitted");
    h.settle();
    let (token, until) = h.holder.validity("job").expect("held");
    let old = h.holder.session(ShardId(0)).cloned().expect("session");
    // Every renew times out from now on; the holder keeps trying until its validity ends.
    let mut renews = 0;
    loop {
        h.tick();
        h.collect();
        if h.holder.session(ShardId(0)).is_none() {
            break;
        }
        while h
            .pending
            .first()
            .is_some_and(|s| matches!(s.change, ShardChange::Renew { .. }))
        {
            renews += 1;
            h.time_out_one();
            h.collect();
        }
        assert!(h.now < until, "no expiry by the end of validity");
    }
    assert_eq!(h.now, until, "expired exactly at the end of validity");
    assert!(renews >= 3, "{renews} renew attempts");
    assert!(!h.holder.is_valid(h.now, "job", token));
    let lost: Vec<HolderEvent> = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, HolderEvent::Lost { .. }))
        .collect();
    assert_eq!(
        lost,
        [HolderEvent::Lost {
            task: "job".into(),
            token,
            reason: LostReason::Expired
        }]
    );
    h.collect();
    assert!(h
        .pending
        .iter()
        .any(|s| s.change == ShardChange::CloseSession { sid: old.clone() }));
    h.holder.claim(h.now, "job").expect("admitted");
    h.settle();
    let new = h.holder.session(ShardId(0)).cloned().expect("new session");
    assert_ne!(new, old);
    let (again, _) = h.holder.validity("job").expect("held again");
    assert!(again > token, "a new claim gets a new, higher token");
}

#[test]
fn calls_fail_at_once_as_unavailable_without_voters_or_without_a_quorum() {
    let mut h = Harness::with_voters(0);
    assert_eq!(
        h.holder.claim(h.now, "job"),
        Err(ClaimsError::Unavailable {
            reason: Unavailable::NoVoters
        })
    );
    let mut h2 = Harness::new();
    h2.holder.set_reachable_voters(1);
    let pid = pid("n1", 1);
    assert_eq!(
        h2.holder.register_strong(h2.now, "db", pid, false),
        Err(ClaimsError::Unavailable {
            reason: Unavailable::NoQuorum {
                reachable: 1,
                needed: 2
            }
        })
    );
    h.collect();
    h2.collect();
    assert!(
        h.pending.is_empty() && h2.pending.is_empty(),
        "nothing submitted"
    );
    assert_eq!(h2.holder.stats().refused_unavailable, 1);
}

#[test]
fn bad_input_and_unheld_tasks_are_refused_before_anything_is_submitted() {
    let mut h = Harness::new();
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    assert!(matches!(
        h.holder.claim(h.now, &long),
        Err(ClaimsError::Rejected(ClaimReject::BadLength { .. }))
    ));
    assert_eq!(
        h.holder.release(h.now, "job"),
        Err(ClaimsError::NotHeld { task: "job".into() })
    );
    h.collect();
    assert!(h.pending.is_empty());
    assert_eq!(h.holder.stats().refused_bad_input, 2);
}

#[test]
fn a_full_call_queue_refuses_more_calls() {
    let mut config = HolderConfig::new("n1", 7, 1, 3);
    config.max_calls = 2;
    let mut holder = Holder::new(config).expect("valid");
    let now = Instant::now();
    holder.claim(now, "a").expect("1"); // open + claim: two queued
    assert_eq!(
        holder.claim(now, "b"),
        Err(ClaimsError::Overloaded { max: 2 })
    );
    assert_eq!(holder.stats().refused_overloaded, 1);
}

#[test]
fn a_task_held_by_another_holder_is_reported_with_its_holder_and_token() {
    let mut h = Harness::new();
    let other = h.external_session("n2");
    h.external(ShardChange::Claim {
        task: "job".into(),
        sid: other.clone(),
    });
    let tok = h.table.as_ref().map(|t| token(t, "job")).expect("table");
    h.holder.claim(h.now, "job").expect("admitted");
    h.settle();
    assert_eq!(
        done(&h.events()),
        [Err(ClaimsError::Rejected(ClaimReject::Held {
            holder: other,
            token: tok
        }))]
    );
    assert_eq!(h.holder.validity("job"), None);
}

#[test]
fn a_released_claim_is_invalid_at_once_and_never_comes_back() {
    let mut h = Harness::new();
    h.holder.claim(h.now, "job").expect("admitted");
    h.holder.claim(h.now, "other").expect("admitted");
    h.settle();
    let (token, _) = h.holder.validity("job").expect("held");
    // A renew is in flight when the release is submitted; its result still shows the
    // claim, and must not bring it back.
    h.holder.renew(h.now, "job").expect("admitted");
    h.holder.release(h.now, "job").expect("admitted");
    assert!(!h.holder.is_valid(h.now, "job", token));
    h.answer_one();
    assert_eq!(h.holder.validity("job"), None);
    h.settle();
    assert_eq!(h.holder.validity("job"), None);
    assert!(h
        .table
        .as_ref()
        .is_some_and(|t| !t.claims.contains_key("job")));
    assert!(h
        .events()
        .iter()
        .all(|e| !matches!(e, HolderEvent::Assigned { .. })));
}

#[test]
fn a_task_reassigned_to_this_session_arrives_as_assigned_and_is_valid() {
    let mut h = Harness::new();
    h.holder.claim(h.now, "mine").expect("admitted");
    h.settle();
    h.events();
    let me = h.holder.session(ShardId(0)).cloned().expect("session");
    h.reassign_orphan_to(me);
    h.tick();
    h.settle();
    let tok = h.table.as_ref().map(|t| token(t, "orphan")).expect("table");
    let events: Vec<HolderEvent> = h
        .events()
        .into_iter()
        .filter(|e| !matches!(e, HolderEvent::Renewed { .. }))
        .collect();
    assert_eq!(
        events,
        [HolderEvent::Assigned {
            task: "orphan".into(),
            token: tok
        }]
    );
    assert!(h.holder.is_valid(h.now, "orphan", tok));
}

#[test]
fn an_ephemeral_strong_name_is_lost_with_its_session() {
    let mut h = Harness::new();
    h.holder
        .register_strong(h.now, "db", pid("n1", 5), true)
        .expect("admitted");
    h.settle();
    let version = match done(&h.events()).as_slice() {
        [Ok(CallOk::Registered { version, .. })] => *version,
        other => panic!("{other:?}"),
    };
    let sid = h.holder.session(ShardId(0)).cloned().expect("session");
    let seen = h
        .table
        .as_ref()
        .map(|t| t.sessions[&sid].renew_seq)
        .expect("table");
    h.external(ShardChange::Evict {
        sid,
        seen_renew_seq: seen,
    });
    h.tick();
    h.settle();
    assert_eq!(
        h.events(),
        [HolderEvent::NameLost {
            name: "db".into(),
            version,
            reason: LostReason::Evicted
        }]
    );
    assert!(h.table.as_ref().is_some_and(|t| t.names.is_empty()));
}

#[test]
fn a_linearizable_whereis_reports_owner_and_version() {
    let mut h = Harness::new();
    h.holder
        .register_strong(h.now, "db", pid("n1", 5), false)
        .expect("admitted");
    h.holder.whereis(h.now, "db").expect("admitted");
    h.holder.whereis(h.now, "nope").expect("admitted");
    h.settle();
    let results = done(&h.events());
    let Some(Ok(CallOk::Registered { version, .. })) = results.first() else {
        panic!("{results:?}")
    };
    assert_eq!(
        results[1],
        Ok(CallOk::Whereis {
            name: "db".into(),
            entry: Some(StrongName {
                owner: pid("n1", 5),
                version: *version,
                sid: None
            })
        })
    );
    assert_eq!(
        results[2],
        Ok(CallOk::Whereis {
            name: "nope".into(),
            entry: None
        })
    );
}

#[test]
fn calls_wait_for_the_open_and_go_under_the_session_the_register_numbered() {
    let mut h = Harness::new();
    h.holder.claim(h.now, "a").expect("admitted");
    h.holder
        .register_strong(h.now, "db", pid("n1", 1), true)
        .expect("admitted");
    h.collect();
    assert_eq!(h.pending.len(), 1, "only the open is in flight");
    assert!(matches!(
        h.pending[0].change,
        ShardChange::OpenSession { .. }
    ));
    h.settle();
    let me = h.holder.session(ShardId(0)).cloned().expect("opened");
    let t = h.table.clone().expect("table");
    assert!(t.sessions.contains_key(&me));
    assert_eq!(t.claims["a"].sid, me);
    assert_eq!(t.names["db"].sid.as_ref(), Some(&me));
    assert!(matches!(
        done(&h.events()).as_slice(),
        [Ok(CallOk::Claimed { .. }), Ok(CallOk::Registered { .. })]
    ));
}

#[test]
fn an_open_that_timed_out_fails_its_calls_and_the_next_call_opens_a_new_session() {
    for took_effect in [false, true] {
        let mut h = Harness::new();
        h.holder.claim(h.now, "job").expect("admitted");
        h.collect();
        let open = h.pending.remove(0);
        if took_effect {
            // The open applies, but every answer is lost: the holder cannot know which
            // session it made. That session is nobody's (the watcher evicts it).
            h.table = open.change.apply(h.table.as_ref()).expect("applies");
        }
        for _ in 0..=h.holder.config().retries {
            h.holder
                .handle_completion(h.now, open.request, Err(ProposeError::Timeout));
            h.collect();
            h.pending.retain(|s| s.request != open.request);
        }
        assert_eq!(done(&h.events()), [Err(ClaimsError::Timeout)]);
        assert_eq!(h.holder.session(ShardId(0)), None);
        assert!(h.pending.is_empty(), "the claim was never sent");
        h.holder.claim(h.now, "job").expect("admitted");
        h.settle();
        let second = h.holder.session(ShardId(0)).cloned().expect("new session");
        assert!(h.holder.validity("job").is_some());
        let t = h.table.clone().expect("table");
        assert_eq!(t.claims["job"].sid, second);
        assert_eq!(t.sessions.len(), if took_effect { 2 } else { 1 });
    }
}

#[test]
fn an_idle_session_keeps_renewing_so_a_reassigned_task_arrives_valid() {
    let mut h = Harness::new();
    h.holder.claim(h.now, "mine").expect("admitted");
    h.settle();
    h.holder.release(h.now, "mine").expect("admitted");
    h.settle();
    h.events();
    // Nothing held; a long while later the session is still alive and renewed.
    let start = h.now;
    while h.now < start + 3 * TTL {
        h.tick();
        h.settle();
    }
    let me = h.holder.session(ShardId(0)).cloned().expect("still open");
    h.reassign_orphan_to(me);
    h.tick();
    h.settle();
    let tok = h.table.as_ref().map(|t| token(t, "orphan")).expect("table");
    assert!(h.holder.is_valid(h.now, "orphan", tok));
    assert!(h
        .events()
        .iter()
        .all(|e| !matches!(e, HolderEvent::Lost { .. })));
}

#[test]
fn completions_of_unknown_requests_are_counted_and_ignored() {
    let mut h = Harness::new();
    let other = RequestId {
        client: h.holder.client() ^ 1,
        seq: 1,
    };
    h.holder
        .handle_completion(h.now, other, Err(ProposeError::Timeout));
    let stale = RequestId {
        client: h.holder.client(),
        seq: 99,
    };
    h.holder
        .handle_completion(h.now, stale, Err(ProposeError::Timeout));
    assert_eq!(h.holder.stats().submit.dropped_unknown, 2);
    assert!(h.events().is_empty());
}

#[test]
fn a_config_whose_guard_leaves_no_time_to_renew_is_refused() {
    let mut config = HolderConfig::new("n1", 1, 4, 3);
    config.ttl = Duration::from_secs(1);
    config.guard = Duration::from_millis(700);
    assert!(matches!(
        Holder::new(config.clone()),
        Err(HolderConfigError::Guard { .. })
    ));
    config.guard = Duration::ZERO;
    config.ttl = Duration::from_millis(10);
    assert!(matches!(
        Holder::new(config),
        Err(HolderConfigError::Ttl { ttl_ms: 10 })
    ));
}

// ---------------------------------------------------------------- the watcher

fn watcher(reassign: bool) -> Watcher {
    let mut config = WatcherConfig::new("w", 1);
    config.drift = drift();
    config.refresh = Duration::from_secs(10);
    config.reassign = reassign;
    Watcher::new(config)
}

fn submissions(w: &mut Watcher) -> Vec<Submission> {
    std::iter::from_fn(|| w.poll_submit()).collect()
}

fn table_with(sessions: &[(&SessionId, &[&str])]) -> ShardTable {
    let mut t = ShardTable::default();
    for (s, tasks) in sessions {
        t = open(&t, s);
        for task in tasks.iter() {
            t = claim(&t, task, s).expect("claim");
        }
    }
    t
}

#[test]
fn the_watcher_evicts_only_after_ttl_times_one_plus_rho_since_it_learned_the_renew_seq() {
    let mut w = watcher(false);
    let now = Instant::now();
    let s = sid("n1", 1);
    let t = table_with(&[(&s, &["job"])]);
    w.watch(now, ShardId(0));
    w.observe(now, ShardId(0), &t);
    let ttl = Duration::from_millis(1000);
    let due = now + drift().stretch(ttl);
    assert_eq!(drift().stretch(ttl), Duration::from_millis(1010));
    w.handle_timeout(now); // the first read
    assert!(submissions(&mut w)
        .iter()
        .all(|s| s.change == ShardChange::Read));
    w.handle_timeout(due - Duration::from_nanos(1));
    assert!(submissions(&mut w).is_empty(), "not one nanosecond early");
    assert_eq!(w.poll_timeout(), Some(due));
    w.handle_timeout(due);
    // The read is still in flight (one change per shard): the evict is queued behind it.
    let subs = submissions(&mut w);
    assert!(subs.is_empty(), "{subs:?}");
    assert_eq!(w.stats().evicts, 1);
}

#[test]
fn a_new_renew_seq_restarts_the_timer_and_the_same_one_does_not() {
    let mut w = watcher(false);
    let start = Instant::now();
    let s = sid("n1", 1);
    let t = table_with(&[(&s, &[])]);
    w.watch(start, ShardId(0));
    w.observe(start, ShardId(0), &t);
    let ttl = Duration::from_millis(1000);
    // The same table again, later: the timer keeps its start.
    w.observe(start + Duration::from_millis(500), ShardId(0), &t);
    let due = w.poll_timeout();
    assert_eq!(due, Some(start)); // the initial read is due now
    let renewed = step(&t, &ShardChange::Renew { sid: s.clone() }).expect("renew");
    let later = start + Duration::from_millis(600);
    w.observe(later, ShardId(0), &renewed);
    // Skip the read: what matters is the evict timer.
    w.handle_timeout(start);
    submissions(&mut w);
    w.handle_timeout(start + drift().stretch(ttl));
    assert_eq!(w.stats().evicts, 0, "the renew restarted the timer");
    w.handle_timeout(later + drift().stretch(ttl));
    assert_eq!(w.stats().evicts, 1);
    // An older table is ignored, and does not restart the timer either.
    w.observe(later + Duration::from_secs(5), ShardId(0), &t);
    assert_eq!(w.stats().dropped_stale, 1);
}

/// Drive a watcher's submissions through an in-memory register holding `t`.
fn serve(w: &mut Watcher, now: Instant, t: &mut ShardTable) -> Vec<ShardChange> {
    let mut seen = Vec::new();
    while let Some(sub) = w.poll_submit() {
        let outcome = match sub.change.apply(Some(t)) {
            Ok(new) => {
                let new = new.unwrap_or_default();
                *t = new.clone();
                Outcome::Applied {
                    receipt: sub.change.receipt(Some(&new)),
                    value: Some(new),
                }
            }
            Err(reason) => Outcome::Rejected {
                reason,
                current: Some(t.clone()),
            },
        };
        seen.push(sub.change.clone());
        w.handle_completion(now, sub.request, Ok(outcome));
    }
    seen
}

#[test]
fn a_refused_evict_teaches_the_current_renew_seq_and_the_session_survives() {
    let mut w = watcher(false);
    let start = Instant::now();
    let s = sid("n1", 1);
    let old = table_with(&[(&s, &["job"])]);
    let mut t = step(&old, &ShardChange::Renew { sid: s.clone() }).expect("renew");
    w.watch(start, ShardId(0));
    w.observe(start, ShardId(0), &old); // an old view (e.g. from this node's own result)
                                        // The periodic read is far away; the timer of the old renew_seq fires first.
    w.handle_timeout(start);
    let _ = serve(&mut w, start, &mut old.clone());
    w.observe(start, ShardId(0), &old);
    let due = start + drift().stretch(Duration::from_millis(1000));
    w.handle_timeout(due);
    let changes = serve(&mut w, due, &mut t);
    assert!(matches!(changes.as_slice(), [ShardChange::Evict { .. }]));
    assert_eq!(w.stats().refused_moved, 1);
    assert!(t.sessions.contains_key(&s), "the renewed session survives");
    // The refusal taught the new renew_seq: the next evict waits a whole TTL·(1+ρ) again.
    w.handle_timeout(due + Duration::from_millis(500));
    assert!(serve(&mut w, due, &mut t)
        .iter()
        .all(|c| *c == ShardChange::Read));
    assert_eq!(w.stats().evicts, 1);
    let again = due + drift().stretch(Duration::from_millis(1000));
    w.handle_timeout(again);
    serve(&mut w, again, &mut t);
    assert_eq!(w.stats().evicted, 1);
    assert!(t.sessions.is_empty() && t.claims.is_empty());
    assert!(matches!(w.poll_event(), Some(WatcherEvent::Evicted { .. })));
}

#[test]
fn a_swim_down_hurries_the_read_but_never_the_evict() {
    let mut w = watcher(false);
    let start = Instant::now();
    let s = sid("n1", 1);
    let mut t = table_with(&[(&s, &["job"])]);
    w.watch(start, ShardId(0));
    w.handle_timeout(start);
    serve(&mut w, start, &mut t);
    let soon = start + Duration::from_millis(100);
    assert!(w.poll_timeout() > Some(soon));
    w.node_down(soon, "n1");
    assert_eq!(w.poll_timeout(), Some(soon), "an early read");
    w.handle_timeout(soon);
    let changes = serve(&mut w, soon, &mut t);
    assert_eq!(changes, [ShardChange::Read]);
    let due = start + drift().stretch(Duration::from_millis(1000));
    w.handle_timeout(due - Duration::from_millis(1));
    assert!(serve(&mut w, due, &mut t).is_empty());
    w.handle_timeout(due);
    assert!(matches!(
        serve(&mut w, due, &mut t).as_slice(),
        [ShardChange::Evict { .. }]
    ));
}

#[test]
fn reassignment_aims_each_task_at_its_hrw_preferred_live_session() {
    let mut w = watcher(true);
    let start = Instant::now();
    let dead = sid("n1", 1);
    let (b, c) = (sid("n2", 1), sid("n3", 1));
    let tasks = ["j0", "j1", "j2", "j3", "j4", "j5"];
    let mut t = table_with(&[(&dead, &tasks), (&b, &[]), (&c, &[])]);
    w.watch(start, ShardId(0));
    w.handle_timeout(start);
    serve(&mut w, start, &mut t);
    // b and c keep renewing; n1 is silent.
    let mut now = start;
    for _ in 0..4 {
        now += Duration::from_millis(300);
        for s in [&b, &c] {
            t = step(&t, &ShardChange::Renew { sid: s.clone() }).expect("renew");
        }
        w.observe(now, ShardId(0), &t);
        w.handle_timeout(now);
        serve(&mut w, now, &mut t);
    }
    assert_eq!(w.stats().evicted, 1);
    for task in tasks {
        let want = preferred_owner(task, ["n2", "n3"]).expect("candidates");
        assert_eq!(t.claims[task].sid.node, want, "{task}");
    }
    assert!(matches!(
        w.poll_event(),
        Some(WatcherEvent::Evicted { reassigned, .. }) if reassigned.len() == tasks.len()
    ));
}

// ---------------------------------------------------------------- strong-name cache

#[test]
fn the_name_cache_only_moves_forward_and_the_receiver_refuses_stale_versions() {
    let mut cache = NameCache::new(1);
    let owner = pid("n1", 1);
    let a = sid("n1", 1);
    let t1 = step(
        &open(&ShardTable::default(), &a),
        &register("db", owner.clone(), &a, false),
    )
    .expect("register");
    let v1 = t1.names["db"].version;
    let t2 = step(
        &t1,
        &ShardChange::TransferName {
            name: "db".into(),
            version: v1,
            to: pid("n2", 1),
            sid: None,
        },
    )
    .expect("transfer");
    let v2 = t2.names["db"].version;
    assert!(cache.learn(ShardId(0), &t2));
    assert!(!cache.learn(ShardId(0), &t1), "an older table is ignored");
    assert_eq!(cache.whereis("db").map(|n| n.version), Some(v2));
    assert_eq!(
        cache.check_send("db", v1, &owner),
        Err(SendRefused::Stale { current: v2 })
    );
    assert_eq!(
        cache.check_send("db", v2, &owner),
        Err(SendRefused::WrongOwner {
            owner: pid("n2", 1)
        })
    );
    assert_eq!(cache.check_send("db", v2, &pid("n2", 1)), Ok(()));
    assert_eq!(
        cache.check_send("db", v2 + 1, &pid("n2", 1)),
        Err(SendRefused::NotCurrent { known: Some(v2) })
    );
    assert_eq!(
        cache.check_send("nope", 1, &owner),
        Err(SendRefused::NotCurrent { known: None })
    );
    assert_eq!(cache.stats().sends_accepted, 1);
    assert_eq!(cache.stats().sends_refused, 4);
}

// ---------------------------------------------------------------- run_while_holding

mod singleton {
    use super::super::{run_while_holding, Cancelled};
    use std::cell::Cell;
    use std::future::Future;
    use std::pin::pin;
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    /// A simulated clock: sleeps complete once it has reached their deadline.
    #[derive(Clone)]
    struct Clock(Rc<Cell<Instant>>);

    struct Sleep(Clock, Instant);

    impl Future for Sleep {
        type Output = ();
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.0 .0.get() >= self.1 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    /// A job that finishes when the clock reaches `at`.
    fn job(clock: &Clock, at: Instant) -> impl Future<Output = &'static str> {
        let c = clock.clone();
        std::future::poll_fn(move |_| {
            if c.0.get() >= at {
                Poll::Ready("done")
            } else {
                Poll::Pending
            }
        })
    }

    /// Advance the clock in 10 ms steps, polling `f` after each, until it finishes.
    fn drive<T>(clock: &Clock, f: impl Future<Output = T>, limit: Duration) -> Option<T> {
        let mut f = pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        let end = clock.0.get() + limit;
        while clock.0.get() < end {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return Some(v);
            }
            clock.0.set(clock.0.get() + Duration::from_millis(10));
        }
        None
    }

    #[test]
    fn the_job_is_cancelled_at_its_deadline_when_no_renew_extends_it() {
        let start = Instant::now();
        let clock = Clock(Rc::new(Cell::new(start)));
        let deadline = start + Duration::from_millis(100);
        let c = clock.clone();
        let out = drive(
            &clock,
            run_while_holding(
                job(&clock, start + Duration::from_secs(1)),
                || Some(deadline),
                move |at| Sleep(c.clone(), at),
            ),
            Duration::from_secs(2),
        );
        assert_eq!(
            out,
            Some(Err(Cancelled {
                deadline: Some(deadline)
            }))
        );
        assert!(clock.0.get() >= deadline && clock.0.get() < deadline + Duration::from_millis(20));
    }

    #[test]
    fn a_renewed_deadline_lets_the_job_finish() {
        let start = Instant::now();
        let clock = Clock(Rc::new(Cell::new(start)));
        let c = clock.clone();
        let c2 = clock.clone();
        // Each time it is asked, the deadline is 100 ms ahead (renews keep succeeding).
        let out = drive(
            &clock,
            run_while_holding(
                job(&clock, start + Duration::from_millis(450)),
                move || Some(c2.0.get() + Duration::from_millis(100)),
                move |at| Sleep(c.clone(), at),
            ),
            Duration::from_secs(2),
        );
        assert_eq!(out, Some(Ok("done")));
    }

    #[test]
    fn without_a_valid_claim_the_job_never_starts() {
        let start = Instant::now();
        let clock = Clock(Rc::new(Cell::new(start)));
        let c = clock.clone();
        let started = Rc::new(Cell::new(false));
        let s = started.clone();
        let out = drive(
            &clock,
            run_while_holding(
                async move {
                    s.set(true);
                },
                || None,
                move |at| Sleep(c.clone(), at),
            ),
            Duration::from_secs(1),
        );
        assert_eq!(out, Some(Err(Cancelled { deadline: None })));
        assert!(!started.get());
    }
}

// ---------------------------------------------------------------- bounded register (S6)

/// One holder life and TTL as a client of a shard register.
struct Life {
    node: String,
    incarnation: u64,
    ttl_ms: u64,
    seq: u64,
    session: Option<SessionId>,
    alive: bool,
}

impl Life {
    fn client(&self) -> u64 {
        holder_client(&self.node, self.incarnation, self.ttl_ms)
    }

    fn next(&mut self) -> RequestId {
        self.seq += 1;
        RequestId {
            client: self.client(),
            seq: self.seq,
        }
    }
}

/// A shard change whose register keeps no live clients' records (only the recent
/// pool): the negative control of `lives_and_ttls_never_grow_the_slot_nor_apply_twice`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Forgetful(ShardChange);

impl Change<ShardTable> for Forgetful {
    type Reject = ClaimReject;
    fn apply(&self, current: Option<&ShardTable>) -> Result<Option<ShardTable>, ClaimReject> {
        self.0.apply(current)
    }
    fn is_read(&self) -> bool {
        self.0.is_read()
    }
    fn receipt(&self, new: Option<&ShardTable>) -> u64 {
        self.0.receipt(new)
    }
    fn live_clients(_: Option<&ShardTable>) -> Option<Vec<u64>> {
        Some(Vec::new())
    }
}

/// What one run of random lives did to a shard register.
#[derive(Debug, Default)]
struct LivesRun {
    /// Requests (other than opens) applied more than once.
    applied_twice: Vec<String>,
    most_records: usize,
    largest_slot: usize,
    lives: u64,
    ttls: std::collections::BTreeSet<u64>,
    late_copies: u64,
}

/// Random holder lives, each with its own TTL out of many, on one shard register run by
/// [`crate::quorum::decide`]: lives open a session, claim, renew, release, register
/// names, close, die (a watcher evicts them), and any earlier request may arrive again
/// at any later time (a retry, or a copy stuck at a slow proposer).
fn run_lives<C, W>(seed: u64, steps: usize, wrap: W) -> LivesRun
where
    C: Change<ShardTable, Reject = ClaimReject> + Clone,
    W: Fn(ShardChange) -> C,
{
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut slot = crate::quorum::Slot::<ShardTable, ClaimReject>::default();
    let mut lives: Vec<Life> = Vec::new();
    let mut sent: Vec<(RequestId, ShardChange)> = Vec::new();
    let mut applied: BTreeMap<RequestId, u32> = BTreeMap::new();
    let mut run = LivesRun::default();
    let watcher = RequestId {
        client: client_id("w", seed, "watcher"),
        seq: 0,
    };
    let mut watcher_seq = 0;
    let mut incarnation = 0;
    for _ in 0..steps {
        let pick = rng.random_range(0..100u32);
        let (request, change) = if pick < 8 || lives.iter().all(|l| !l.alive) {
            incarnation += 1;
            let ttl_ms = rng.random_range(MIN_TTL_MS..=2_000u64);
            run.ttls.insert(ttl_ms);
            run.lives += 1;
            lives.push(Life {
                node: format!("n{}", rng.random_range(0..12u32)),
                incarnation,
                ttl_ms,
                seq: 0,
                session: None,
                alive: true,
            });
            let life = lives.last_mut().expect("pushed");
            let change = ShardChange::OpenSession {
                node: life.node.clone(),
                incarnation: life.incarnation,
                ttl_ms,
            };
            (life.next(), change)
        } else if pick < 14 {
            // A live holder dies; its session stays until the watcher evicts it.
            let alive: Vec<usize> = (0..lives.len()).filter(|i| lives[*i].alive).collect();
            if !alive.is_empty() {
                lives[alive[rng.random_range(0..alive.len())]].alive = false;
            }
            continue;
        } else if pick < 22 {
            // The watcher evicts a session of a dead life.
            let table = slot.value.clone().unwrap_or_default();
            let dead: Vec<SessionId> = lives
                .iter()
                .filter(|l| !l.alive)
                .filter_map(|l| l.session.clone())
                .filter(|s| table.sessions.contains_key(s))
                .collect();
            let Some(sid) = dead.first().cloned() else {
                continue;
            };
            watcher_seq += 1;
            let seen = table.sessions[&sid].renew_seq;
            let change = ShardChange::Evict {
                sid,
                seen_renew_seq: seen,
            };
            (
                RequestId {
                    seq: watcher_seq,
                    ..watcher
                },
                change,
            )
        } else if pick < 40 && !sent.is_empty() {
            // A late copy of any earlier request.
            run.late_copies += 1;
            sent[rng.random_range(0..sent.len())].clone()
        } else {
            let table = slot.value.clone().unwrap_or_default();
            let alive: Vec<usize> = (0..lives.len()).filter(|i| lives[*i].alive).collect();
            let l = &mut lives[alive[rng.random_range(0..alive.len())]];
            let Some(sid) = l.session.clone() else {
                continue;
            };
            let task = format!("t{}", rng.random_range(0..20u32));
            let name = format!("x{}", rng.random_range(0..6u32));
            let change = match rng.random_range(0..6u32) {
                0 | 1 => ShardChange::Claim { task, sid },
                2 => ShardChange::Renew { sid },
                3 => match table.claims.get(&task) {
                    Some(rec) => ShardChange::Release {
                        task,
                        token: rec.token,
                    },
                    None => ShardChange::Renew { sid },
                },
                4 => ShardChange::RegisterName {
                    name,
                    owner: pid(&l.node, 1),
                    sid,
                    ephemeral: rng.random_bool(0.5),
                },
                _ => match table.names.get(&name) {
                    Some(n) => ShardChange::ReleaseName {
                        name,
                        version: n.version,
                    },
                    None => ShardChange::CloseSession { sid },
                },
            };
            (l.next(), change)
        };
        sent.push((request, change.clone()));
        let (next, outcome) = crate::quorum::decide(
            std::mem::take(&mut slot),
            Some(request),
            &wrap(change.clone()),
        );
        slot = next;
        if let (Outcome::Applied { receipt, .. }, false) = (&outcome, change.is_read()) {
            let n = applied.entry(request).or_default();
            *n += 1;
            if *n > 1 && !matches!(change, ShardChange::OpenSession { .. }) {
                run.applied_twice.push(format!("{request:?} {change:?}"));
            }
            // The life learns its session from the open's receipt (first answer only).
            if let ShardChange::OpenSession {
                node, incarnation, ..
            } = &change
            {
                if let Some(l) = lives
                    .iter_mut()
                    .find(|l| l.node == *node && l.incarnation == *incarnation)
                {
                    l.session.get_or_insert(SessionId {
                        node: node.clone(),
                        incarnation: *incarnation,
                        n: *receipt,
                    });
                }
            }
        }
        run.most_records = run.most_records.max(slot.applied.len());
        let bytes = rmp_serde::to_vec_named(&slot).expect("encode").len();
        run.largest_slot = run.largest_slot.max(bytes);
    }
    run
}

#[test]
fn lives_and_ttls_never_grow_the_slot_nor_apply_twice() {
    let seeds = 32;
    let (mut lives, mut late, mut ttls) = (0, 0, std::collections::BTreeSet::new());
    for seed in 0..seeds {
        let run = run_lives(seed, 1500, |c| c);
        assert!(
            run.applied_twice.is_empty(),
            "seed {seed}: applied twice: {:?}",
            run.applied_twice
        );
        assert!(
            run.most_records <= MAX_SESSIONS + crate::quorum::RECENT_RECORDS,
            "seed {seed}: {} records",
            run.most_records
        );
        // The table's own bound (a full table, longest keys: under 160 KiB) plus one
        // compact record per possible client.
        assert!(
            run.largest_slot < 160 * 1024 + (MAX_SESSIONS + crate::quorum::RECENT_RECORDS) * 300,
            "seed {seed}: slot of {} bytes",
            run.largest_slot
        );
        lives += run.lives;
        late += run.late_copies;
        ttls.extend(run.ttls);
    }
    // The runs did what they claim: many lives, many distinct TTLs, many late copies.
    assert!(
        lives > 2_500 && ttls.len() > 1_000 && late > 5_000,
        "{lives} lives, {} ttls, {late} late copies",
        ttls.len()
    );
}

#[test]
fn a_register_that_forgets_live_clients_applies_late_copies_twice() {
    // Negative control for the check above: with no live clients, a record survives
    // only in the recent pool, and a late copy from beyond it is applied again.
    let caught = (0..64).any(|seed| !run_lives(seed, 1500, Forgetful).applied_twice.is_empty());
    assert!(caught, "the check must catch a forgetful register");
}

#[test]
fn a_renew_reports_each_claim_of_the_session_renewed_with_its_new_validity() {
    let mut h = Harness::new();
    h.holder.claim(h.now, "a").expect("admitted");
    h.holder.claim(h.now, "b").expect("admitted");
    h.settle();
    let before = h.holder.validity("a").expect("held");
    assert!(
        h.events()
            .iter()
            .all(|e| !matches!(e, HolderEvent::Renewed { .. })),
        "a claim is not a renew"
    );
    h.now += Duration::from_millis(500);
    h.holder.renew(h.now, "a").expect("admitted");
    h.settle();
    let after = h.holder.validity("a").expect("still held");
    assert!(after.1 > before.1, "the renew extended the validity");
    let mut renewed: Vec<(String, u64, Instant)> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            HolderEvent::Renewed {
                task,
                token,
                valid_until,
            } => Some((task, token, valid_until)),
            _ => None,
        })
        .collect();
    renewed.sort();
    let b = h.holder.validity("b").expect("held");
    assert_eq!(
        renewed,
        [
            ("a".to_owned(), after.0, after.1),
            ("b".to_owned(), b.0, b.1)
        ]
    );
}

#[test]
fn a_kept_process_ends_only_when_the_cache_shows_its_name_gone_or_taken_since() {
    let mut cache = NameCache::new(1);
    let mine = pid("n1", 1);
    let a = sid("n1", 1);
    let t1 = step(
        &open(&ShardTable::default(), &a),
        &register("db", mine.clone(), &a, false),
    )
    .expect("register");
    let v1 = t1.names["db"].version;
    // Nothing learned yet: a registration of unknown or known version is kept.
    assert_eq!(cache.judge_kept("db", &mine, 0), None);
    assert_eq!(cache.judge_kept("db", &mine, v1), None);
    assert!(cache.learn(ShardId(0), &t1));
    assert_eq!(
        cache.judge_kept("db", &mine, 0),
        Some(KeptVerdict::Learn(v1)),
        "a timed-out registration that took effect learns its version"
    );
    assert_eq!(cache.judge_kept("db", &mine, v1), None, "still the owner");
    let t2 = step(
        &t1,
        &ShardChange::TransferName {
            name: "db".into(),
            version: v1,
            to: pid("n2", 1),
            sid: None,
        },
    )
    .expect("transfer");
    assert!(cache.learn(ShardId(0), &t2));
    assert_eq!(cache.judge_kept("db", &mine, v1), Some(KeptVerdict::End));
    assert_eq!(
        cache.judge_kept("db", &mine, 0),
        None,
        "a registration of unknown version waits to be shown the owner"
    );
    let t3 = step(
        &t2,
        &ShardChange::ReleaseName {
            name: "db".into(),
            version: t2.names["db"].version,
        },
    )
    .expect("release");
    let mut fresh = NameCache::new(1);
    assert!(fresh.learn(ShardId(0), &t3));
    assert_eq!(
        fresh.judge_kept("db", &mine, v1),
        Some(KeptVerdict::End),
        "absent from a newer table: released"
    );
    let mut old = NameCache::new(1);
    assert!(old.learn(ShardId(0), &open(&ShardTable::default(), &a)));
    assert_eq!(
        old.judge_kept("db", &mine, v1),
        None,
        "absent from a table older than the registration: not learned yet"
    );
}

//! Writes the seed corpora under `fuzz/corpus/<target>/` from real encodings: frames
//! made by `encode_frame`, states and digests of replicas that ran real operations,
//! and the traffic two real `Node`s exchange while they join, gossip groups and names,
//! answer anti-entropy and send user messages.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus` (a normal build:
//! no fuzzing flags needed). Seeds are named by content, so rerunning adds nothing
//! new unless an encoding changed.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesh_core::dissemination::{decode_batch, Dissemination};
use mesh_core::membership::SwimTimer;
use mesh_core::node::{Dest, Node, Output, StateFrame};
use mesh_crdt::{Orswot, Replica};
use mesh_fuzz::harness::{make_node, Sent, SCOPE};
use mesh_fuzz::join_pieces;
use mesh_transport::frame::{encode_frame, Class, DEFAULT_MAX_FRAME};

struct Corpus {
    root: PathBuf,
    written: BTreeMap<String, usize>,
}

impl Corpus {
    fn add(&mut self, target: &str, bytes: &[u8]) {
        if bytes.len() > 16 * 1024 {
            return;
        }
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        // FNV-1a names the seed by content.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        let path = dir.join(format!("seed-{h:016x}"));
        if !path.exists() {
            std::fs::write(&path, bytes).expect("write seed");
            *self.written.entry(target.to_owned()).or_default() += 1;
        }
    }
}

fn frames(c: &mut Corpus) {
    let f = |class, payload: &[u8]| encode_frame(class, payload, DEFAULT_MAX_FRAME).expect("fits");
    let mut stream = Vec::new();
    for (class, payload) in [
        (Class::Control, &b""[..]),
        (Class::State, &b"\x81\xa1o\x80"[..]),
        (Class::User, &b"hello"[..]),
    ] {
        stream.extend_from_slice(&f(class, payload));
    }
    let with = |max: u16, sizes: &[u8], stream: &[u8]| {
        let mut out = max.to_be_bytes().to_vec();
        out.push(sizes.len() as u8);
        out.extend_from_slice(sizes);
        out.extend_from_slice(stream);
        out
    };
    c.add("frame_decode", &with(1024, &[], &stream));
    c.add("frame_decode", &with(1024, &[1, 3, 7], &stream));
    c.add("frame_decode", &with(4, &[2], &stream)); // over the limit: oversized
    let mut bad = stream.clone();
    bad[4] = 9; // unknown version
    bad.extend_from_slice(&[0, 0, 0, 3, 1, 7, b'x']); // unknown class
    bad.extend_from_slice(&[0, 0, 0, 1, 1]); // too short
    c.add("frame_decode", &with(64, &[5], &bad));
    c.add("frame_decode", &with(64, &[], &stream[..stream.len() - 2])); // truncated
}

fn crdt(c: &mut Corpus) {
    let mut a: Replica<String, String> = Replica::new("n1".into(), 3);
    let mut b: Replica<String, String> = Replica::new("n2".into(), 1);
    let mut deltas = vec![a.announce(), b.announce()];
    for e in ["g1", "g2", "g1", "g3"] {
        deltas.push(a.add(e.into()));
    }
    deltas.push(a.remove(&"g1".to_string()).expect("added"));
    deltas.push(b.add("g2".into()));
    deltas.push(b.add("g4".into()));
    deltas.push(b.remove_all(&"g4".to_string()).expect("added"));
    for d in &deltas {
        b.merge(d);
    }
    let lost_some = {
        let mut r: Replica<String, String> = Replica::new("n3".into(), 1);
        r.merge(&deltas[2]);
        r.merge(&deltas[4]);
        r
    };
    let purged = {
        let mut s = b.state().clone();
        s.purge_origin(&"n1".to_string()).expect("known").delta
    };
    let enc = |s: &Orswot<String, String>| s.encode().expect("encode");
    let states = [
        a.state().clone(),
        b.state().clone(),
        lost_some.state().clone(),
        purged,
    ];
    for mode in 1..4u8 {
        for limit in [0u8, 20, 255] {
            let pieces: Vec<Vec<u8>> = states.iter().skip(usize::from(mode) - 1).map(enc).collect();
            let mut input = vec![mode, limit];
            input.extend(join_pieces(&pieces));
            c.add("crdt_decode", &input);
        }
    }
    for d in deltas.iter().take(6) {
        let mut input = vec![1, 8];
        input.extend(join_pieces(&[enc(d)]));
        c.add("crdt_decode", &input);
    }
    for (s, d) in [
        (&a, lost_some.digest()),
        (&b, a.digest()),
        (&lost_some, b.digest()),
    ] {
        let mut input = vec![0, 10];
        input.extend(join_pieces(&[enc(s.state()), d.encode().expect("encode")]));
        c.add("crdt_decode", &input);
    }
}

/// Two real nodes: n2 joins through n1, both gossip groups and names, run
/// anti-entropy, and n2 sends user messages to n1's process; every byte n2 sends to n1
/// is captured.
fn cluster(c: &mut Corpus) {
    let t0 = Instant::now();
    let (mut n1, p1, _m1) = make_node("n1", 1, Vec::new(), t0);
    let (mut n2, p2, _m2) = make_node("n2", 2, vec![mesh_fuzz::harness::addr(1)], t0);
    let mut timers: Vec<(Instant, usize, SwimTimer)> = Vec::new();
    let mut to_n1: Vec<(Sent, Bytes)> = Vec::new();
    let mut responses: Vec<Bytes> = Vec::new();
    let mut now = t0;
    for step in 0..400u32 {
        now += Duration::from_millis(5);
        match step {
            40 => {
                let _ = n2.join(
                    now,
                    SCOPE,
                    &["g1".into(), "g9".into()],
                    &p2,
                    Some("meta".into()),
                );
            }
            60 => {
                // An acknowledged send, so the corpus has acks too.
                n2.handle_command(
                    now,
                    mesh_core::node::CommandId(1),
                    mesh_core::node::Command::SendConfirmed {
                        from: Some(p2.clone()),
                        dest: Dest::Pid(p1.clone()),
                        payload: Bytes::from_static(b"hi"),
                    },
                );
            }
            80 => {
                let dest = Dest::Group {
                    scope: SCOPE.into(),
                    group: "g1".into(),
                    mode: Default::default(),
                };
                let _ = n2.send(now, None, &dest, Bytes::from_static(b"to all"));
            }
            120 => {
                let _ = n2.leave_groups(now, SCOPE, &["g9".into()], &p2);
            }
            200 => {
                let _ = n2.exit(now, &p2);
            }
            _ => {}
        }
        timers.sort_by(|a, b| a.0.cmp(&b.0));
        let split = timers.partition_point(|(at, _, _)| *at <= now);
        for (_, n, timer) in timers.drain(..split).collect::<Vec<_>>() {
            if n == 1 {
                n1.handle_timer(now, timer)
            } else {
                n2.handle_timer(now, timer)
            }
        }
        n1.handle_tick(now);
        n2.handle_tick(now);
        route(
            &mut n1,
            &mut n2,
            1,
            now,
            &mut timers,
            &mut Vec::new(),
            &mut responses,
        );
        route(
            &mut n2,
            &mut n1,
            2,
            now,
            &mut timers,
            &mut to_n1,
            &mut Vec::new(),
        );
    }
    // Also what n2's state looks like to an anti-entropy peer.
    for (kind, bytes) in &to_n1 {
        match kind {
            Sent::Datagram => {
                c.add("wire_decode", &[&[8u8][..], bytes].concat());
                if let Ok((swim, items)) = Dissemination::unwrap_datagram(bytes) {
                    c.add("wire_decode", &[&[9u8][..], swim].concat());
                    for (ch, item) in items {
                        c.add("wire_decode", &[&[5 + ch.0][..], &item].concat());
                    }
                }
            }
            Sent::Frame(class) => {
                let sel = match class {
                    Class::State => 0u8,
                    Class::User => 1,
                    Class::Control => 2,
                };
                c.add("wire_decode", &[&[sel][..], bytes].concat());
                if let Ok(StateFrame::Batch(batch)) = rmp_serde::from_slice::<StateFrame>(bytes) {
                    c.add("wire_decode", &[&[7u8][..], &batch].concat());
                    for (ch, item) in decode_batch(&batch).unwrap_or_default() {
                        c.add("wire_decode", &[&[5 + ch.0][..], &item].concat());
                    }
                }
            }
            Sent::Request => c.add("wire_decode", &[&[3u8][..], bytes].concat()),
        }
    }
    for r in &responses {
        c.add("wire_decode", &[&[4u8][..], r].concat());
    }
    // node_input: n2's traffic as n1 got it, in windows of a few inputs, with time
    // passing between them.
    let as_piece = |(kind, bytes): &(Sent, Bytes)| -> Vec<u8> {
        let k = match kind {
            Sent::Frame(Class::State) => 0u8,
            Sent::Frame(Class::User) => 1,
            Sent::Frame(Class::Control) => 2,
            Sent::Request => 3,
            Sent::Datagram => 4,
        };
        [&[k][..], bytes].concat()
    };
    for window in to_n1.chunks(6).take(24) {
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        for item in window {
            pieces.push(as_piece(item));
            pieces.push(vec![6, 1]);
        }
        for r in responses.iter().take(1) {
            pieces.push([&[5u8][..], r].concat());
        }
        c.add("node_input", &join_pieces(&pieces));
    }
}

#[allow(clippy::too_many_arguments)]
fn route(
    from: &mut Node,
    to: &mut Node,
    me: usize,
    now: Instant,
    timers: &mut Vec<(Instant, usize, SwimTimer)>,
    captured: &mut Vec<(Sent, Bytes)>,
    responses: &mut Vec<Bytes>,
) {
    let from_name = from.name().to_owned();
    let mut outs = Vec::new();
    while let Some(o) = from.poll_output() {
        outs.push(o);
    }
    for o in outs {
        match o {
            Output::Datagram { data, .. } => {
                captured.push((Sent::Datagram, data.clone()));
                to.handle_datagram(now, &from_name, &data);
            }
            Output::Frame { class, payload, .. } => {
                captured.push((Sent::Frame(class), payload.clone()));
                to.handle_frame(now, &from_name, class, &payload);
            }
            Output::Request {
                tag,
                class,
                payload,
                ..
            } => {
                captured.push((Sent::Request, payload.clone()));
                let answer = to.handle_request(now, &from_name, class, &payload);
                if let Ok(bytes) = &answer {
                    responses.push(bytes.clone());
                }
                from.handle_response(
                    now,
                    tag,
                    answer.map_err(|e| mesh_core::node::RequestFailed(e.to_string())),
                );
            }
            Output::Timer { at, timer } => timers.push((at, me, timer)),
            _ => {}
        }
    }
}

/// Real quorum traffic: a proposer and three acceptors run an open-session and a claim
/// on one shard; every request and reply becomes a `quorum_input` seed, as do the
/// persisted states, a root record, and the requests to acceptor 1 as one sequence.
fn quorum(c: &mut Corpus) {
    use mesh_core::claims::{ShardChange, ShardId, ShardSlot};
    use mesh_core::node::claims_plane::QuorumMsg;
    use mesh_core::quorum::store::encode_state;
    use mesh_core::quorum::{
        Acceptor, AcceptorOutput, NodeId, Proposer, ProposerConfig, ProposerOutput, RequestId,
        RootRecord,
    };
    use rand::SeedableRng;

    let with = |selector: u8, bytes: &[u8]| {
        let mut out = vec![selector];
        out.extend_from_slice(bytes);
        out
    };
    let now = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let voters = [NodeId(1), NodeId(2), NodeId(3)];
    let mut acceptors: Vec<Acceptor<ShardId, ShardSlot>> =
        voters.iter().map(|id| Acceptor::new(*id, 1)).collect();
    let mut proposer = Proposer::new(NodeId(10), 1, 1, voters, ProposerConfig::default());
    let changes = [
        ShardChange::OpenSession {
            node: "n1".into(),
            incarnation: 7,
            ttl_ms: 10_000,
        },
        ShardChange::Claim {
            task: "job-1".into(),
            sid: mesh_core::claims::SessionId {
                node: "n1".into(),
                incarnation: 7,
                n: 1,
            },
        },
    ];
    let mut to_first = Vec::new();
    for (seq, change) in changes.into_iter().enumerate() {
        let rid = RequestId {
            client: 10,
            seq: seq as u64 + 1,
        };
        proposer.propose(now, ShardId(0), Some(rid), change);
        while let Some(out) = proposer.poll_output() {
            let ProposerOutput::Send(env) = out else {
                continue;
            };
            let msg = QuorumMsg::Request {
                to: env.to.0,
                req: env.msg.clone(),
            };
            let bytes = rmp_serde::to_vec_named(&msg).expect("encodes");
            c.add("quorum_input", &with(0, &bytes));
            if env.to.0 == 1 {
                to_first.push(bytes);
            }
            let acceptor = &mut acceptors[(env.to.0 - 1) as usize];
            acceptor.handle_request(proposer.id(), env.msg);
            while let Some(out) = acceptor.poll_output() {
                let then = match out {
                    AcceptorOutput::Persist { state, then, .. } => {
                        c.add(
                            "quorum_input",
                            &with(2, &encode_state(&state).expect("encodes")),
                        );
                        then
                    }
                    AcceptorOutput::Send(then) => then,
                };
                let reply = QuorumMsg::Reply {
                    to: 10,
                    from: acceptor.id().0,
                    rep: then.msg.clone(),
                };
                c.add(
                    "quorum_input",
                    &with(0, &rmp_serde::to_vec_named(&reply).expect("encodes")),
                );
                proposer.handle_reply(now, acceptor.id(), then.msg, &mut rng);
            }
        }
    }
    c.add("quorum_input", &with(3, &join_pieces(&to_first)));
    let root = RootRecord {
        epoch: 1,
        voters: vec![("n1".into(), 11), ("n2".into(), 12), ("n3".into(), 13)],
        quorums: None,
        pending: None,
    };
    c.add(
        "quorum_input",
        &with(1, &encode_state(&root).expect("encodes")),
    );
}

/// Admin API bodies as clients send them, and tag lists and selectors.
fn admin(c: &mut Corpus) {
    for (selector, text) in [
        (0u8, r#"{"task":"job-1","ttl_ms":10000}"#),
        (1, r#"{"task":"job-1","token":7}"#),
        (2, r#"{"group":"jobs","payload":"aGk=","mode":"all"}"#),
        (3, r#"{"groups":["jobs"],"name":"svc"}"#),
        (4, r#"{"timeout_ms":500}"#),
        (5, r#"{"name":"svc","pid":"n1/1/2"}"#),
        (6, r#"{"name":"svc","version":3}"#),
        (7, r#"{"name":"svc","version":3,"to":"n2/1/2"}"#),
        (8, r#"{"addrs":["127.0.0.1:7946"],"timeout_ms":5000}"#),
        (9, r#"{"set":{"region":"eu"},"unset":["zone"]}"#),
        (10, "region=eu,role=worker"),
        (11, "region=eu,role!=edge,gpu,!draining"),
    ] {
        let mut out = vec![selector];
        out.extend_from_slice(text.as_bytes());
        c.add("admin_input", &out);
    }
}

/// Config files as operators write them.
fn config(c: &mut Corpus) {
    for text in [
        "name = \"n1\"\nbind = \"127.0.0.1:7946\"\nseeds = [\"127.0.0.1:7947\"]\n",
        "name = \"n1\"\ndata_dir = \"/var/lib/mesh\"\nvoters = [\"n1\", \"n2\", \"n3\"]\nclaims_ttl = \"10s\"\npermdown = \"5m\"\n",
        "name = \"n1\"\nca = \"ca.crt\"\ncert = \"n1.crt\"\nkey = \"n1.key\"\nprofile = \"local\"\n[tags]\nregion = \"eu\"\n",
    ] {
        c.add("config_input", text.as_bytes());
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut c = Corpus {
        root,
        written: BTreeMap::new(),
    };
    frames(&mut c);
    crdt(&mut c);
    cluster(&mut c);
    quorum(&mut c);
    admin(&mut c);
    config(&mut c);
    for (target, n) in &c.written {
        println!("{target}: {n} new seeds");
    }
}

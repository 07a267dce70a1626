//! Shared pieces of mesh's fuzz targets (see `FUZZING.md`): input framing, a
//! reference frame parser, and invariant checks on `mesh-crdt` states.
//!
//! Everything here panics on a broken invariant: a panic is how a fuzz target reports.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::hash::Hash;

use bytes::Bytes;
use mesh_crdt::{Orswot, SeqSet};
use mesh_transport::frame::{Class, FrameError, FRAME_VERSION};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Splits fuzz input into pieces `[len u16 BE][bytes]...`; a short last piece takes
/// what is left. Seeds are written with [`join_pieces`].
pub fn split_pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&[l0, l1], rest)) = data.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes([l0, l1])).min(rest.len());
        let (piece, tail) = rest.split_at(len);
        out.push(piece);
        data = tail;
    }
    out
}

/// The inverse of [`split_pieces`] (for writing seeds).
pub fn join_pieces<T: AsRef<[u8]>>(pieces: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        let p = p.as_ref();
        let len = u16::try_from(p.len()).expect("seed piece under 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Cuts `data` into chunks whose sizes come from `sizes` (cycled; 0 counts as 1).
pub fn chunked<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .map_or(rest.len(), |&s| usize::from(s.max(1)))
            .min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
        i += 1;
    }
    out
}

/// What a whole-buffer, non-incremental parser makes of a frame stream, written from
/// the format in `mesh-transport/src/frame.rs`'s docs (not from its code):
/// `[body length u32 BE][version][class][payload]`, length counting the body.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Frames and per-frame errors, in stream order.
    pub items: Vec<Result<(Class, Bytes), FrameError>>,
    /// Bytes held after the last complete frame: a partial prefix, or the partial body
    /// once its prefix is complete (0 once oversized: nothing is kept).
    pub leftover: usize,
    /// Whether an oversized prefix ended the stream.
    pub failed: bool,
}

/// The reference parse of `stream` with body limit `max`.
pub fn reference_parse(stream: &[u8], max: usize) -> Parsed {
    let mut items = Vec::new();
    let mut rest = stream;
    loop {
        let Some((&prefix, body)) = rest.split_first_chunk::<4>() else {
            return Parsed {
                items,
                leftover: rest.len(),
                failed: false,
            };
        };
        let len = u32::from_be_bytes(prefix) as usize;
        if len > max {
            items.push(Err(FrameError::Oversized { len, max }));
            return Parsed {
                items,
                leftover: 0,
                failed: true,
            };
        }
        if body.len() < len {
            // A complete prefix is parsed, not held: only the partial body counts.
            return Parsed {
                items,
                leftover: body.len(),
                failed: false,
            };
        }
        let (frame, tail) = body.split_at(len);
        items.push(match frame {
            [] | [_] => Err(FrameError::Malformed(
                "frame body shorter than its version and class bytes",
            )),
            [v, _, ..] if *v != FRAME_VERSION => Err(FrameError::UnknownVersion(*v)),
            [_, c, payload @ ..] => match *c {
                0 => Ok((Class::Control, Bytes::copy_from_slice(payload))),
                1 => Ok((Class::State, Bytes::copy_from_slice(payload))),
                2 => Ok((Class::User, Bytes::copy_from_slice(payload))),
                other => Err(FrameError::UnknownClass(other)),
            },
        });
        rest = tail;
    }
}

/// Feeds `stream` to a fresh `FrameDecoder` in the chunks `sizes` gives and checks it
/// against [`reference_parse`] and the decoder's documented limits.
pub fn check_frame_stream(stream: &[u8], max: usize, sizes: &[u8]) {
    use mesh_transport::frame::FrameDecoder;
    let want = reference_parse(stream, max);
    let mut dec = FrameDecoder::new(max);
    let mut got = Vec::new();
    for chunk in chunked(stream, sizes) {
        dec.push(chunk);
        while let Some(item) = dec.next_frame() {
            if let Ok((_, payload)) = &item {
                assert!(payload.len() + 2 <= max, "a frame over the limit came out");
            }
            got.push(item);
        }
        assert!(
            dec.buffered() <= max.saturating_add(4),
            "buffered {} with limit {max}",
            dec.buffered()
        );
    }
    assert_eq!(
        got, want.items,
        "incremental decode differs from the reference"
    );
    assert_eq!(dec.is_failed(), want.failed);
    assert_eq!(
        dec.buffered(),
        want.leftover,
        "bytes held after the last frame"
    );
}

/// Encodes `value` as MessagePack with named fields, as every mesh codec does.
pub fn encode_named<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("encoding a decoded value cannot fail")
}

/// For a value decoded from the wire: encoding it and decoding that gives the same
/// value back, and encoding is a fixed point from then on.
pub fn check_reencode<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = encode_named(value);
    let back: T = match rmp_serde::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => panic!("re-encoded value does not decode: {e}\nvalue: {value:?}"),
    };
    assert_eq!(&back, value, "decode(encode(v)) != v");
    assert_eq!(encode_named(&back), bytes, "encoding is not canonical");
}

/// Per (origin, incarnation, seq): the element of each live dot of `state`.
pub fn dot_map<O, E>(state: &Orswot<O, E>) -> BTreeMap<(O, u64, u64), E>
where
    O: Ord + Clone,
    E: Ord + Clone + Hash,
{
    let mut out = BTreeMap::new();
    for element in state.elements().keys() {
        for dot in state.dots_of(element) {
            let prev = out.insert((dot.origin, dot.incarnation, dot.seq), (*element).clone());
            assert!(prev.is_none(), "one dot live for two elements in one state");
        }
    }
    out
}

/// True if no dot is live with one element in `a` and another in `b`. Two replicas of
/// a real cluster never disagree like that (only the origin mints a dot), but a
/// decoded pair of arbitrary states may; only structure is compared for such pairs.
pub fn consistent<O, E>(states: &[&Orswot<O, E>]) -> bool
where
    O: Ord + Clone,
    E: Ord + Clone + Hash,
{
    let mut seen: BTreeMap<(O, u64, u64), E> = BTreeMap::new();
    for s in states {
        for (k, e) in dot_map(s) {
            match seen.get(&k) {
                Some(prev) if *prev != e => return false,
                Some(_) => {}
                None => {
                    seen.insert(k, e);
                }
            }
        }
    }
    true
}

/// The invariants `mesh-crdt` documents for any state it accepted, checked through
/// its public API: every live dot is in its origin's context and belongs to that
/// origin's current incarnation, a retired origin holds nothing, multiplicities add up.
pub fn check_state<O, E>(state: &Orswot<O, E>)
where
    O: Ord + Clone + std::fmt::Debug,
    E: Ord + Clone + Hash + std::fmt::Debug,
{
    let mut total = 0;
    for (element, count) in state.elements() {
        let dots = state.dots_of(element);
        assert_eq!(dots.len(), count, "multiplicity of {element:?}");
        assert_eq!(state.multiplicity(element), count);
        assert!(state.contains(element));
        for dot in &dots {
            assert_eq!(state.incarnation_of(&dot.origin), Some(dot.incarnation));
            assert!(
                !state.is_retired(&dot.origin),
                "a retired origin holds {dot:?}"
            );
            let ctx = state.context_of(&dot.origin).expect("origin known");
            assert!(
                ctx.contains(dot.seq),
                "live dot {dot:?} outside its context"
            );
        }
        total += count;
    }
    assert_eq!(total, state.live_dots());
    for origin in state.origins() {
        let ctx = state.context_of(origin).expect("listed origin");
        check_seqset(ctx);
        if state.is_retired(origin) {
            assert!(ctx.is_empty(), "retired origin {origin:?} keeps a context");
            assert_eq!(state.elements_of(origin).count(), 0);
        }
        let digest = state.origin_digest(origin).expect("listed origin");
        assert_eq!(
            digest.incarnation,
            state.incarnation_of(origin).unwrap_or(0)
        );
        assert_eq!(digest.contiguous, ctx.contiguous());
    }
}

/// [`SeqSet`]'s documented normal form: ascending, disjoint, non-adjacent ranges of
/// seqs >= 1, the first one starting at 1 iff there is a contiguous prefix.
pub fn check_seqset(set: &SeqSet) {
    let ranges: Vec<_> = set.ranges().collect();
    for r in &ranges {
        assert!(*r.start() >= 1 && r.start() <= r.end(), "bad range {r:?}");
    }
    for w in ranges.windows(2) {
        assert!(
            w[0].end().saturating_add(1) < *w[1].start(),
            "ranges overlap or touch: {ranges:?}"
        );
    }
    match ranges.first() {
        Some(r) if *r.start() == 1 => assert_eq!(*r.end(), set.contiguous()),
        _ => assert_eq!(set.contiguous(), 0),
    }
    assert_eq!(set.max(), ranges.last().map(|r| *r.end()));
    assert_eq!(set.is_empty(), ranges.is_empty());
}

/// A node under test, driven as the agent drives it, with checks after every input.
pub mod harness {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use mesh_core::dissemination::{decode_batch, Dissemination};
    use mesh_core::identity::NodeId;
    use mesh_core::membership::SwimTimer;
    use mesh_core::node::{
        AeRequest, AeResponse, ControlFrame, MonitorItem, Node, NodeConfig, Output, RequestTag,
        StateFrame, UserFrame,
    };
    use mesh_core::pid::Pid;
    use mesh_core::process::{Inbox, Mailbox};
    use mesh_core::registry::{ConflictPolicy, MemberInfo, MonitorView, Snapshot};
    use mesh_transport::frame::Class;

    /// The wall clock the harness nodes start at (ms since the Unix epoch).
    pub const WALL_MS: u64 = 1_800_000_000_000;
    /// The scope the harness joins and monitors.
    pub const SCOPE: &str = "s";

    /// An address for harness node `i`.
    pub fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7000 + i))
    }

    /// A fresh node `name` (`i` picks its address), with one process that joined two
    /// groups of [`SCOPE`] and registered one name.
    pub fn make_node(
        name: &str,
        i: u16,
        seeds: Vec<SocketAddr>,
        t0: Instant,
    ) -> (Node, Pid, Mailbox) {
        let mut config = NodeConfig::default();
        config.membership.seeds = seeds;
        let id = NodeId::new(name, addr(i), 1);
        let mut node = Node::new(id, config, u64::from(i), t0, WALL_MS).expect("valid config");
        let (pid, mailbox) = node.spawn(None);
        node.join(
            t0,
            SCOPE,
            &["g1".to_owned(), "g2".to_owned()],
            &pid,
            Some("m".into()),
        )
        .expect("join");
        node.register(
            t0,
            &format!("svc-{name}"),
            &pid,
            None,
            ConflictPolicy::default(),
        )
        .expect("register");
        (node, pid, mailbox)
    }

    /// Node `n1` under test, which knows `n2` as a live member (n2's first announce was
    /// delivered), watched by a monitor of [`SCOPE`].
    pub struct Harness {
        /// The node under test.
        pub node: Node,
        /// Its local time.
        pub now: Instant,
        /// Its process.
        pub pid: Pid,
        _mailbox: Mailbox,
        inbox: Inbox<MonitorItem>,
        view: MonitorView,
        /// Tags of the anti-entropy requests it made, not answered yet.
        pub pending: Vec<RequestTag>,
        /// Timers it armed.
        pub timers: Vec<(Instant, SwimTimer)>,
        /// Everything it sent, for seeding corpora: (kind, bytes).
        pub sent: Vec<(Sent, Bytes)>,
    }

    /// What kind of output the harness captured.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Sent {
        /// A datagram.
        Datagram,
        /// A stream frame of this class.
        Frame(Class),
        /// A request (an `AeRequest`).
        Request,
    }

    impl Harness {
        /// n1, and n2's announce delivered to it.
        pub fn new() -> Self {
            let t0 = Instant::now();
            let (mut node, pid, mailbox) = make_node("n1", 1, Vec::new(), t0);
            let (id, snapshot, inbox) = node.monitor(None, SCOPE, None).expect("monitor");
            let _ = id;
            let mut h = Self {
                node,
                now: t0,
                pid,
                _mailbox: mailbox,
                inbox,
                view: MonitorView::new(&snapshot),
                pending: Vec::new(),
                timers: Vec::new(),
                sent: Vec::new(),
            };
            for data in n2_announce() {
                h.node.handle_datagram(t0, "n2", data);
            }
            h.after();
            h
        }

        /// Drains outputs and checks what the node did (see the module docs of the
        /// `node_input` target).
        pub fn after(&mut self) {
            while let Some(out) = self.node.poll_output() {
                match out {
                    Output::Datagram { data, .. } => {
                        let unwrapped = Dissemination::unwrap_datagram(&data);
                        assert!(unwrapped.is_ok(), "the node sent a datagram it cannot read");
                        self.sent.push((Sent::Datagram, data));
                    }
                    Output::Frame { class, payload, .. } => {
                        check_own_frame(class, &payload);
                        self.sent.push((Sent::Frame(class), payload));
                    }
                    Output::Request {
                        tag,
                        class,
                        payload,
                        ..
                    } => {
                        assert_eq!(class, Class::State);
                        let req = rmp_serde::from_slice::<AeRequest>(&payload);
                        assert!(req.is_ok(), "the node sent an AE request it cannot read");
                        if self.pending.len() < 16 {
                            self.pending.push(tag);
                        }
                        self.sent.push((Sent::Request, payload));
                    }
                    Output::Timer { at, timer } => {
                        if self.timers.len() < 256 {
                            self.timers.push((at, timer));
                        }
                    }
                    _ => {}
                }
            }
            self.check_views();
        }

        /// The monitor's snapshot plus its events equals the registry's snapshot
        /// (exact tracking), and the registry's view equals the replicated state.
        fn check_views(&mut self) {
            while let Some(item) = self.inbox.try_recv() {
                match item {
                    MonitorItem::Event(e) => {
                        if let Err(err) = self.view.apply(&e) {
                            panic!("monitor event does not apply to the view: {err}\n{e:?}");
                        }
                    }
                    MonitorItem::Overflowed => panic!("monitor overflowed"),
                }
            }
            let registry = self.node.registry();
            let snapshot = registry.snapshot(SCOPE, None);
            assert_eq!(
                self.view.snapshot(),
                snapshot,
                "snapshot + events != snapshot"
            );
            assert_eq!(
                snapshot,
                state_snapshot(&self.node),
                "view != replicated state"
            );
        }

        /// Advances the clock by `ms`, fires due timers and ticks.
        pub fn tick(&mut self, ms: u64) {
            self.now += Duration::from_millis(ms);
            self.timers
                .sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            let due: Vec<_> = {
                let split = self.timers.partition_point(|(at, _)| *at <= self.now);
                self.timers.drain(..split).collect()
            };
            for (_, timer) in due {
                self.node.handle_timer(self.now, timer);
            }
            self.node.handle_tick(self.now);
            self.after();
        }
    }

    /// The datagrams n2 sends on its first tick (its announce to its seed, n1): the same
    /// bytes every time (fixed seeds and clock), so made once per process.
    fn n2_announce() -> &'static [Bytes] {
        static ANNOUNCE: std::sync::OnceLock<Vec<Bytes>> = std::sync::OnceLock::new();
        ANNOUNCE.get_or_init(|| {
            let t0 = Instant::now();
            let (mut n2, _, _mb2) = make_node("n2", 2, vec![addr(1)], t0);
            n2.handle_tick(t0);
            std::iter::from_fn(|| n2.poll_output())
                .filter_map(|out| match out {
                    Output::Datagram { data, .. } => Some(data),
                    _ => None,
                })
                .collect()
        })
    }

    impl Default for Harness {
        fn default() -> Self {
            Self::new()
        }
    }

    fn check_own_frame(class: Class, payload: &[u8]) {
        match class {
            Class::State => match rmp_serde::from_slice::<StateFrame>(payload) {
                Ok(StateFrame::Batch(b)) => {
                    assert!(
                        decode_batch(&b).is_ok(),
                        "the node sent a batch it cannot read"
                    );
                }
                Ok(StateFrame::Push { .. }) => {}
                Err(e) => panic!("the node sent a state frame it cannot read: {e}"),
            },
            Class::User => {
                assert!(rmp_serde::from_slice::<UserFrame>(payload).is_ok());
            }
            Class::Control => {
                assert!(rmp_serde::from_slice::<ControlFrame>(payload).is_ok());
            }
        }
    }

    /// The snapshot of [`SCOPE`] computed from the groups replica, without hidden
    /// origins: count = live dots of (group, pid), metadata = the newest dot's.
    pub fn state_snapshot(node: &Node) -> Snapshot {
        let registry = node.registry();
        let hidden = registry.hidden_nodes();
        let state = registry.groups().state();
        let mut members: BTreeMap<(String, Pid), (usize, (u64, u64), Option<String>)> =
            BTreeMap::new();
        for origin in state.origins() {
            if hidden.contains(origin) {
                continue;
            }
            for (entry, _) in state.elements_of(origin) {
                if entry.scope != SCOPE {
                    continue;
                }
                for dot in state.dots_of(entry) {
                    let slot = members
                        .entry((entry.group.clone(), entry.pid.clone()))
                        .or_insert((0, (0, 0), None));
                    slot.0 += 1;
                    if (dot.incarnation, dot.seq) >= slot.1 {
                        slot.1 = (dot.incarnation, dot.seq);
                        slot.2.clone_from(&entry.meta);
                    }
                }
            }
        }
        Snapshot {
            scope: SCOPE.to_owned(),
            group: None,
            members: members
                .into_iter()
                .map(|((group, pid), (count, _, meta))| MemberInfo {
                    group,
                    pid,
                    count,
                    meta,
                })
                .collect(),
        }
    }

    /// Decodes an AE response the node produced; it must decode.
    pub fn check_own_response(bytes: &[u8]) -> AeResponse {
        match rmp_serde::from_slice::<AeResponse>(bytes) {
            Ok(r) => r,
            Err(e) => panic!("the node answered with a response it cannot read: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_harness_node_knows_n2_and_its_views_agree() {
        let mut h = harness::Harness::new();
        let peers: Vec<_> = h.node.live_peers().map(|p| p.name.clone()).collect();
        assert_eq!(peers, ["n2"]);
        // n2's announce carried its own join piggybacked: both processes are in g1.
        assert_eq!(h.node.registry().member_count(harness::SCOPE, "g1"), 2);
        h.tick(10);
    }

    /// The observation in FUZZING.md ("Findings"): two states that disagree on a dot's
    /// element merge order-dependently, and their digests cannot tell.
    #[test]
    fn states_disagreeing_on_a_dots_element_merge_by_order_and_digest_alike() {
        #[derive(Serialize)]
        struct Wire<'a> {
            o: BTreeMap<&'a str, WireOrigin<'a>>,
        }
        #[derive(Serialize)]
        struct WireOrigin<'a> {
            i: u64,
            c: WireCtx,
            e: Vec<(&'a str, Vec<u64>)>,
        }
        #[derive(Serialize)]
        struct WireCtx {
            c: u64,
        }
        let state = |element: &str| -> Orswot<String, String> {
            let origin = WireOrigin {
                i: 1,
                c: WireCtx { c: 1 },
                e: vec![(element, vec![1])],
            };
            let bytes = encode_named(&Wire {
                o: [("n1", origin)].into(),
            });
            Orswot::decode(&bytes).expect("a valid state")
        };
        let (a, b) = (state("a"), state("b"));
        assert!(!consistent(&[&a, &b]));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, a, "a keeps its element");
        assert_eq!(ba, b, "b keeps its element");
        assert_ne!(ab, ba);
        assert_eq!(ab.digest(), ba.digest(), "digests hash seqs, not elements");
        assert!(
            a.missing_for(&b.digest()).is_empty(),
            "anti-entropy sees nothing to do"
        );
    }

    #[test]
    fn pieces_round_trip() {
        let pieces: [&[u8]; 3] = [b"", b"ab", &[7; 300]];
        assert_eq!(split_pieces(&join_pieces(&pieces)), pieces);
    }

    #[test]
    fn the_reference_parser_reads_a_frame_and_a_partial_one() {
        let mut stream = mesh_transport::frame::encode_frame(Class::User, b"x", 16)
            .expect("fits")
            .to_vec();
        stream.extend_from_slice(&[0, 0, 0, 5, 1]);
        let parsed = reference_parse(&stream, 16);
        assert_eq!(parsed.items, [Ok((Class::User, Bytes::from_static(b"x")))]);
        assert_eq!(parsed.leftover, 1);
        check_frame_stream(&stream, 16, &[1, 2]);
    }
}

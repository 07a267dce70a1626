//! Unit and property tests of the dissemination scheduler: one section per property of
//! the module docs (codec and S5, S1–S4, F1–F3, S6), then configuration and bad calls.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const GROUPS: ChannelId = ChannelId(0);
const NAMES: ChannelId = ChannelId(1);
const THIRD: ChannelId = ChannelId(7);

fn channels(k: usize) -> Vec<(ChannelId, &'static str)> {
    [
        (GROUPS, "groups"),
        (NAMES, "names"),
        (THIRD, "third"),
        (ChannelId(9), "fourth"),
    ][..k]
        .to_vec()
}

fn node(config: DisseminationConfig, k: usize) -> Dissemination {
    Dissemination::new(config, &channels(k), 1).expect("valid config")
}

/// No periodic anti-entropy, so outputs are only what a test provokes.
fn quiet() -> DisseminationConfig {
    DisseminationConfig {
        anti_entropy_interval: None,
        ..DisseminationConfig::default()
    }
}

fn peers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i:03}")).collect()
}

/// A distinct item: its first four bytes are `id`.
fn item(id: u32, len: usize) -> Bytes {
    assert!(len >= 4, "items carry a 4-byte id");
    let mut v = id.to_be_bytes().to_vec();
    v.resize(len, 0xAB);
    Bytes::from(v)
}

fn id_of(bytes: &Bytes) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Wraps a SWIM packet of `swim_len` bytes for `to`; returns the datagram's items.
fn wrap(d: &mut Dissemination, now: Instant, to: &str, swim_len: usize) -> Vec<(ChannelId, Bytes)> {
    let swim = vec![0x5A; swim_len];
    let datagram = d.wrap_datagram(now, to, &swim).expect("swim fits");
    assert!(datagram.len() <= MAX_DATAGRAM);
    let (back, items) = Dissemination::unwrap_datagram(&datagram).expect("own datagram parses");
    assert_eq!(back, &swim[..]);
    items
}

fn outputs(d: &mut Dissemination) -> Vec<DisseminationOutput> {
    std::iter::from_fn(|| d.poll_output()).collect()
}

fn batches(outs: &[DisseminationOutput]) -> Vec<(String, Vec<(ChannelId, Bytes)>)> {
    outs.iter()
        .filter_map(|o| match o {
            DisseminationOutput::Batch { to, frame } => {
                Some((to.clone(), decode_batch(frame).expect("own frame parses")))
            }
            DisseminationOutput::AntiEntropy { .. } => None,
        })
        .collect()
}

fn anti_entropy_partners(outs: &[DisseminationOutput]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            DisseminationOutput::AntiEntropy { with } => Some(with.clone()),
            DisseminationOutput::Batch { .. } => None,
        })
        .collect()
}

/// S2 and S4, checked from the inside.
fn assert_accounting(d: &Dissemination) {
    for (c, ch) in d.channels.iter().enumerate() {
        let s = &d.stats.channels[c];
        assert_eq!(
            s.pushed,
            s.queued_items + s.retired + s.dropped_overflow,
            "S2: pushed = queued + retired + dropped ({:?})",
            s
        );
        let queued: usize = ch.queues.iter().map(|q| q.items.len()).sum();
        assert_eq!(s.queued_items, queued as u64);
        for q in &ch.queues {
            let bytes: usize = q.items.iter().map(|i| i.bytes.len()).sum();
            assert_eq!(q.bytes, bytes);
            assert!(q.bytes <= d.config.queue_max_bytes, "S4: queue bound");
            for i in &q.items {
                let distinct: BTreeSet<&String> = i.sent_to.iter().collect();
                assert_eq!(
                    distinct.len(),
                    i.sent_to.len(),
                    "S3: never twice to one peer"
                );
            }
        }
    }
}

// ---- Codec and S5: parsing is total -------------------------------------------------

#[test]
fn a_wrapped_datagram_unwraps_to_its_swim_packet_and_items() {
    let mut d = node(quiet(), 2);
    let now = Instant::now();
    d.push(now, GROUPS, item(1, 10)).expect("accepted");
    d.push(now, NAMES, item(2, 20)).expect("accepted");
    let swim = b"swim packet".to_vec();
    let datagram = d.wrap_datagram(now, "p1", &swim).expect("valid");
    assert_eq!(datagram[0], DATAGRAM_V1);
    assert_eq!(
        datagram.len(),
        DATAGRAM_HEADER + swim.len() + 2 * ITEM_HEADER + 30
    );
    let (back, mut items) = Dissemination::unwrap_datagram(&datagram).expect("valid");
    assert_eq!(back, &swim[..]);
    items.sort();
    assert_eq!(items, vec![(GROUPS, item(1, 10)), (NAMES, item(2, 20))]);
}

#[test]
fn a_datagram_with_nothing_to_piggyback_is_the_header_and_the_swim_packet() {
    let mut d = node(quiet(), 1);
    let datagram = d
        .wrap_datagram(Instant::now(), "p1", b"ping")
        .expect("valid");
    assert_eq!(
        &datagram[..],
        &[DATAGRAM_V1, 0, 4, 0, 0, b'p', b'i', b'n', b'g']
    );
}

#[test]
fn each_kind_of_malformed_datagram_gets_its_own_error() {
    let unwrap = Dissemination::unwrap_datagram;
    assert_eq!(
        unwrap(&[0u8; MAX_DATAGRAM + 1]),
        Err(DatagramError::TooLarge {
            len: MAX_DATAGRAM + 1
        })
    );
    assert_eq!(
        unwrap(&[DATAGRAM_V1, 0, 0]),
        Err(DatagramError::TruncatedHeader { len: 3 })
    );
    assert_eq!(
        unwrap(&[0x12, 0, 0, 0, 0]),
        Err(DatagramError::UnknownVersion(0x12))
    );
    assert_eq!(
        unwrap(&[BATCH_V1, 0, 0, 0, 0]),
        Err(DatagramError::UnknownVersion(BATCH_V1)),
        "a batch frame is not a datagram"
    );
    assert_eq!(
        unwrap(&[DATAGRAM_V1, 0, 9, 0, 0, 1, 2]),
        Err(DatagramError::TruncatedSwim {
            len: 9,
            available: 2
        })
    );
    assert_eq!(
        unwrap(&[DATAGRAM_V1, 0, 0, 0, 1, 0, 0]),
        Err(DatagramError::Trailer(ItemError::TruncatedHeader {
            index: 0
        }))
    );
    assert_eq!(
        unwrap(&[DATAGRAM_V1, 0, 0, 0, 1, 0, 0, 0]),
        Err(DatagramError::Trailer(ItemError::Empty { index: 0 }))
    );
    assert_eq!(
        unwrap(&[DATAGRAM_V1, 0, 0, 0, 1, 0, 0, 5, 1]),
        Err(DatagramError::Trailer(ItemError::Truncated {
            index: 0,
            len: 5,
            remaining: 1
        }))
    );
    assert_eq!(
        unwrap(&[DATAGRAM_V1, 0, 0, 0, 0, 9]),
        Err(DatagramError::Trailer(ItemError::TrailingBytes { len: 1 }))
    );
    assert_eq!(
        DatagramError::Trailer(ItemError::Empty { index: 0 }).reason(),
        "malformed_trailer"
    );
}

#[test]
fn each_kind_of_malformed_batch_frame_gets_its_own_error() {
    assert_eq!(
        decode_batch(&[BATCH_V1, 0]),
        Err(BatchError::TruncatedHeader { len: 2 })
    );
    assert_eq!(
        decode_batch(&[DATAGRAM_V1, 0, 0]),
        Err(BatchError::UnknownVersion(DATAGRAM_V1)),
        "a datagram is not a batch frame"
    );
    assert_eq!(
        decode_batch(&[BATCH_V1, 0, 2, 3, 0, 1, 42]),
        Err(BatchError::Items(ItemError::TruncatedHeader { index: 1 }))
    );
    assert_eq!(decode_batch(&[BATCH_V1, 0, 0]), Ok(Vec::new()));
}

#[test]
fn encode_batch_refuses_empty_and_oversized_items_and_too_many_items() {
    assert_eq!(
        encode_batch(&[(GROUPS, Bytes::from_static(b"x")), (GROUPS, Bytes::new())]),
        Err(EncodeBatchError::ItemLength { index: 1, len: 0 })
    );
    let big = Bytes::from(vec![0u8; 65_536]);
    assert_eq!(
        encode_batch(&[(GROUPS, big)]),
        Err(EncodeBatchError::ItemLength {
            index: 0,
            len: 65_536
        })
    );
    let many = vec![(GROUPS, Bytes::from_static(b"x")); 65_536];
    assert_eq!(
        encode_batch(&many),
        Err(EncodeBatchError::TooManyItems(65_536))
    );
}

fn arb_items() -> impl Strategy<Value = Vec<(ChannelId, Bytes)>> {
    prop::collection::vec(
        (any::<u8>(), prop::collection::vec(any::<u8>(), 1..300)),
        0..20,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(c, b)| (ChannelId(c), Bytes::from(b)))
            .collect()
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_parsers(data in prop::collection::vec(any::<u8>(), 0..1400)) {
        let _ = Dissemination::unwrap_datagram(&data);
        let _ = decode_batch(&data);
        // With a valid kind byte, parsing goes deeper.
        let mut data = data;
        if !data.is_empty() {
            data[0] = DATAGRAM_V1;
            let _ = Dissemination::unwrap_datagram(&data);
            data[0] = BATCH_V1;
            let _ = decode_batch(&data);
        }
    }

    #[test]
    fn encode_batch_then_decode_batch_returns_the_items(items in arb_items()) {
        let frame = encode_batch(&items).expect("encodable");
        prop_assert_eq!(decode_batch(&frame).expect("valid"), items);
    }

    #[test]
    fn every_strict_prefix_and_every_extension_of_a_batch_frame_is_an_error(
        items in arb_items(), extra in prop::collection::vec(any::<u8>(), 1..8)
    ) {
        let frame = encode_batch(&items).expect("encodable");
        for cut in 0..frame.len() {
            prop_assert!(decode_batch(&frame[..cut]).is_err(), "prefix of {} bytes", cut);
        }
        let mut longer = frame.to_vec();
        longer.extend_from_slice(&extra);
        prop_assert!(decode_batch(&longer).is_err());
    }

    /// Items pushed, one datagram wrapped: the datagram holds the SWIM packet unchanged
    /// and a subset of the items, byte for byte, and what is not in it is still queued.
    #[test]
    fn wrap_then_unwrap_returns_the_swim_packet_and_exactly_the_items_taken(
        swim in prop::collection::vec(any::<u8>(), 0..=MAX_SWIM),
        pushed in prop::collection::vec((0usize..3, 4usize..=256), 0..30),
    ) {
        let mut d = node(quiet(), 3);
        let now = Instant::now();
        let mut expected = BTreeMap::new();
        for (id, &(c, len)) in pushed.iter().enumerate() {
            let ch = channels(3)[c].0;
            d.push(now, ch, item(id as u32, len)).expect("accepted");
            expected.insert(id as u32, (ch, item(id as u32, len)));
        }
        let datagram = d.wrap_datagram(now, "p1", &swim).expect("valid");
        prop_assert!(datagram.len() <= MAX_DATAGRAM);
        let (back, items) = Dissemination::unwrap_datagram(&datagram).expect("valid");
        prop_assert_eq!(back, &swim[..]);
        let mut in_datagram = BTreeSet::new();
        for (ch, bytes) in items {
            let id = id_of(&bytes);
            prop_assert_eq!(expected.get(&id), Some(&(ch, bytes.clone())));
            prop_assert!(in_datagram.insert(id), "an item twice in one datagram");
        }
        // With transmissions >= 3 nothing retires yet: every item is still queued, marked
        // sent to p1 exactly if it was in the datagram.
        let mut queued = BTreeSet::new();
        for ch in &d.channels {
            for i in &ch.queues[Lane::Piggyback as usize].items {
                let id = id_of(&i.bytes);
                prop_assert_eq!(i.sent_to.is_empty(), !in_datagram.contains(&id));
                queued.insert(id);
            }
        }
        prop_assert_eq!(queued.len(), expected.len(), "every item is sent or still queued");
        assert_accounting(&d);
    }

    #[test]
    fn every_strict_prefix_and_every_extension_of_a_datagram_is_an_error(
        swim_len in 0usize..600,
        pushed in prop::collection::vec((0usize..2, 4usize..=100), 0..12),
        extra in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let mut d = node(quiet(), 2);
        let now = Instant::now();
        for (id, &(c, len)) in pushed.iter().enumerate() {
            d.push(now, channels(2)[c].0, item(id as u32, len)).expect("accepted");
        }
        let datagram = d.wrap_datagram(now, "p1", &vec![1; swim_len]).expect("valid");
        for cut in 0..datagram.len() {
            prop_assert!(Dissemination::unwrap_datagram(&datagram[..cut]).is_err(), "prefix {}", cut);
        }
        let mut longer = datagram.to_vec();
        longer.extend_from_slice(&extra);
        prop_assert!(Dissemination::unwrap_datagram(&longer).is_err());
    }
}

// ---- S1–S4 under random operations ---------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Push { channel: usize, len: usize },
    PushOwn { channel: usize, len: usize },
    Wrap { to: usize, swim_len: usize },
    Tick { advance_ms: u64 },
    Peers { n: usize },
    RequestAntiEntropy { peer: usize },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3, 4usize..=400).prop_map(|(channel, len)| Op::Push { channel, len }),
        2 => (0usize..3, 4usize..=400).prop_map(|(channel, len)| Op::PushOwn { channel, len }),
        4 => (0usize..12, 0usize..=MAX_SWIM).prop_map(|(to, swim_len)| Op::Wrap { to, swim_len }),
        2 => (0u64..400).prop_map(|advance_ms| Op::Tick { advance_ms }),
        1 => (0usize..12).prop_map(|n| Op::Peers { n }),
        1 => (0usize..12).prop_map(|peer| Op::RequestAntiEntropy { peer }),
    ]
}

/// A small config that makes overflow, full frames and retirement all happen.
fn tight() -> DisseminationConfig {
    DisseminationConfig {
        piggyback_max_item: 120,
        batch_max_bytes: 900,
        queue_max_bytes: 2_000,
        anti_entropy_interval: Some(Duration::from_millis(700)),
        // Peers go up to 12: direct push is on at times and off at others.
        direct_max_peers: 6,
        ..DisseminationConfig::default()
    }
}

/// Runs `ops` on a fresh node; returns everything it produced, checking S1–S4 after
/// every step.
fn run_ops(seed: u64, ops: &[Op]) -> Vec<String> {
    let mut d = Dissemination::new(tight(), &channels(3), seed).expect("valid");
    let t0 = Instant::now();
    let mut now = t0;
    let mut next_id = 0u32;
    let mut sent: BTreeSet<(u32, String)> = BTreeSet::new();
    let mut log = Vec::new();
    let mut record = |log: &mut Vec<String>, to: &str, items: &[(ChannelId, Bytes)]| {
        for (_, b) in items {
            assert!(
                sent.insert((id_of(b), to.to_owned())),
                "S3: item sent twice to {to}"
            );
        }
        log.push(format!(
            "{to}: {:?}",
            items
                .iter()
                .map(|(c, b)| (c.0, id_of(b)))
                .collect::<Vec<_>>()
        ));
    };
    for op in ops {
        match *op {
            Op::Push { channel, len } => {
                d.push(now, channels(3)[channel].0, item(next_id, len))
                    .expect("accepted");
                next_id += 1;
            }
            Op::PushOwn { channel, len } => {
                d.push_own(now, channels(3)[channel].0, item(next_id, len))
                    .expect("accepted");
                next_id += 1;
            }
            Op::Wrap { to, swim_len } => {
                let to = format!("p{to:03}");
                let datagram = d
                    .wrap_datagram(now, &to, &vec![0; swim_len])
                    .expect("valid");
                assert!(datagram.len() <= MAX_DATAGRAM, "S1: datagram bound");
                let (_, items) = Dissemination::unwrap_datagram(&datagram).expect("valid");
                record(&mut log, &to, &items);
            }
            Op::Tick { advance_ms } => {
                now += Duration::from_millis(advance_ms);
                d.handle_tick(now);
            }
            Op::Peers { n } => d.set_peers(now, &peers(n)),
            Op::RequestAntiEntropy { peer } => d.request_anti_entropy(now, &format!("p{peer:03}")),
        }
        while let Some(out) = d.poll_output() {
            match out {
                DisseminationOutput::Batch { to, frame } => {
                    assert!(frame.len() <= d.config().batch_max_bytes, "S1: frame bound");
                    assert!(d.peers().contains(&to), "batches go to live peers");
                    let items = decode_batch(&frame).expect("valid");
                    assert!(!items.is_empty(), "no empty frames");
                    record(&mut log, &to, &items);
                }
                DisseminationOutput::AntiEntropy { with } => log.push(format!("ae {with}")),
            }
        }
        assert_accounting(&d);
        if let Some(at) = d.poll_timeout() {
            assert!(at > now, "every deadline is in the future after each input");
        }
    }
    log.push(format!("{:?}", d.stats()));
    log
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_operations_keep_the_size_bounds_the_accounting_and_one_send_per_peer(
        seed in any::<u64>(), ops in prop::collection::vec(arb_op(), 1..300)
    ) {
        run_ops(seed, &ops);
    }

    #[test]
    fn the_same_seed_and_inputs_give_the_same_outputs(
        seed in any::<u64>(), ops in prop::collection::vec(arb_op(), 1..200)
    ) {
        prop_assert_eq!(run_ops(seed, &ops), run_ops(seed, &ops));
    }
}

// ---- S2, S4: overflow is the only drop, counted, oldest first -------------------------

fn small_queues() -> DisseminationConfig {
    // max_item = 100 - 6 = 94, the smallest allowed queue bound.
    DisseminationConfig {
        piggyback_max_item: 16,
        batch_max_bytes: 100,
        queue_max_bytes: 94,
        anti_entropy_interval: None,
        ..DisseminationConfig::default()
    }
}

#[test]
fn overflow_drops_the_oldest_items_and_counts_them() {
    let mut d = node(small_queues(), 2);
    let now = Instant::now();
    for id in 0..20 {
        d.push(now, GROUPS, item(id, 10)).expect("accepted");
    }
    let s = &d.stats().channels[0];
    assert_eq!((s.pushed, s.dropped_overflow, s.queued_items), (20, 11, 9));
    assert_eq!((s.dropped_overflow_bytes, s.queued_bytes), (110, 90));
    let ids: Vec<u32> = wrap(&mut d, now, "p1", 0)
        .iter()
        .map(|(_, b)| id_of(b))
        .collect();
    assert_eq!(
        ids,
        (11..20).collect::<Vec<_>>(),
        "the newest nine stay, in order"
    );
}

#[test]
fn overflow_in_one_queue_never_drops_another_channels_or_lanes_items() {
    let mut d = node(small_queues(), 2);
    let now = Instant::now();
    d.push(now, NAMES, item(100, 10)).expect("accepted");
    d.push(now, GROUPS, item(200, 90)).expect("accepted"); // batch lane of GROUPS
    for id in 0..50 {
        d.push(now, GROUPS, item(id, 16)).expect("accepted"); // piggyback lane of GROUPS overflows
    }
    assert_eq!(d.stats().channels[1].dropped_overflow, 0);
    assert_eq!(d.stats().channels[1].queued_items, 1);
    assert_eq!(d.channels[0].queues[Lane::Batch as usize].items.len(), 1);
    assert_eq!(d.stats().channels[0].dropped_overflow, 50 - 94 / 16);
    assert_accounting(&d);
}

#[test]
fn the_largest_accepted_item_always_fits_its_queue() {
    let mut d = node(small_queues(), 1);
    let now = Instant::now();
    d.push(now, GROUPS, item(1, 50)).expect("accepted");
    d.push(now, GROUPS, item(2, 94)).expect("accepted");
    let s = &d.stats().channels[0];
    assert_eq!(
        (s.dropped_overflow, s.queued_items, s.queued_bytes),
        (1, 1, 94)
    );
}

// ---- Waiting, never vanishing ---------------------------------------------------------

#[test]
fn items_wait_when_the_swim_packet_leaves_no_room_and_go_with_a_smaller_packet() {
    let mut d = node(quiet(), 2);
    let now = Instant::now();
    d.push(now, GROUPS, item(1, 40)).expect("accepted");
    d.push(now, NAMES, item(2, 40)).expect("accepted");
    assert!(
        wrap(&mut d, now, "p1", MAX_SWIM).is_empty(),
        "no room at all"
    );
    assert!(
        wrap(&mut d, now, "p1", MAX_SWIM - 43 + 1).is_empty(),
        "one byte short"
    );
    assert_eq!(d.stats().channels[0].queued_items, 1);
    assert_eq!(d.stats().channels[1].queued_items, 1);
    let items = wrap(&mut d, now, "p1", MAX_SWIM - 2 * 43);
    assert_eq!(items.len(), 2, "exactly enough room for both");
}

#[test]
fn an_item_larger_than_the_room_waits_while_smaller_ones_pass() {
    let mut d = node(quiet(), 1);
    let now = Instant::now();
    d.push(now, GROUPS, item(1, 200)).expect("accepted");
    d.push(now, GROUPS, item(2, 10)).expect("accepted");
    let room = 100;
    let items = wrap(&mut d, now, "p1", MAX_SWIM - room);
    assert_eq!(
        items.iter().map(|(_, b)| id_of(b)).collect::<Vec<_>>(),
        vec![2]
    );
    let items = wrap(&mut d, now, "p2", 0);
    let ids: Vec<u32> = items.iter().map(|(_, b)| id_of(b)).collect();
    assert_eq!(
        ids,
        vec![1, 2],
        "the big item goes once there is room, the small one to a new peer"
    );
}

#[test]
fn with_no_live_peer_batch_items_wait_and_go_once_a_peer_is_live() {
    let mut d = node(quiet(), 1);
    let t0 = Instant::now();
    d.push(t0, GROUPS, item(1, 1000)).expect("accepted");
    let due = d.poll_timeout().expect("a batch round is due");
    assert_eq!(due, t0 + Duration::from_millis(100));
    d.handle_tick(due);
    assert!(outputs(&mut d).is_empty());
    assert_eq!(d.stats().batch_rounds_without_peers, 1);
    assert_eq!(d.stats().channels[0].queued_items, 1);
    d.set_peers(due, &peers(1));
    let due = d.poll_timeout().expect("still due while items wait");
    d.handle_tick(due);
    let b = batches(&outputs(&mut d));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].0, "p000");
    assert_eq!(b[0].1, vec![(GROUPS, item(1, 1000))]);
}

// ---- Transmissions and retirement (S2, S3) --------------------------------------------

#[test]
fn transmissions_scale_with_log10_of_the_cluster_and_never_go_below_the_floor() {
    let t = Transmissions::default();
    // A cluster of N = n + 1 nodes: multiplier × ⌈log10(N + 1)⌉.
    let table = [(0, 4), (1, 4), (8, 4), (9, 8), (98, 8), (99, 12), (999, 16)];
    for (n, want) in table {
        assert_eq!(t.for_peers(n), want, "n = {n}");
    }
    let floor_only = Transmissions {
        multiplier: 0,
        floor: 2,
    };
    assert_eq!(floor_only.for_peers(500), 2);
    let small_multiplier = Transmissions {
        multiplier: 1,
        floor: 3,
    };
    assert_eq!(small_multiplier.for_peers(9), 3, "the floor wins");
    assert_eq!(small_multiplier.for_peers(999), 4);
}

#[test]
fn an_item_goes_to_transmissions_n_distinct_peers_then_retires() {
    let mut d = node(quiet(), 1);
    let now = Instant::now();
    let live = peers(20);
    d.set_peers(now, &live);
    let t = d.config().transmissions.for_peers(20);
    assert_eq!(t, 8);
    d.push(now, GROUPS, item(1, 30)).expect("accepted");
    let mut got = Vec::new();
    for round in 0..3 {
        for p in &live {
            if !wrap(&mut d, now, p, 100).is_empty() {
                got.push((round, p.clone()));
            }
        }
    }
    assert_eq!(got.len(), t, "exactly transmissions(n) sends");
    let distinct: BTreeSet<&String> = got.iter().map(|(_, p)| p).collect();
    assert_eq!(distinct.len(), t);
    let s = &d.stats().channels[0];
    assert_eq!((s.piggybacked_sends, s.piggybacked_bytes), (8, 240));
    assert_eq!((s.retired, s.queued_items), (1, 0));
}

#[test]
fn an_item_is_never_sent_twice_to_the_same_peer() {
    let mut d = node(quiet(), 1);
    let now = Instant::now();
    d.set_peers(now, &peers(20));
    d.push(now, GROUPS, item(1, 30)).expect("accepted");
    assert_eq!(wrap(&mut d, now, "p000", 100).len(), 1);
    for _ in 0..10 {
        assert!(wrap(&mut d, now, "p000", 100).is_empty());
    }
    assert_eq!(
        d.stats().channels[0].queued_items,
        1,
        "it waits for other peers"
    );
    assert_eq!(wrap(&mut d, now, "p001", 100).len(), 1);
}

#[test]
fn an_item_retires_once_every_live_peer_has_it() {
    let mut d = node(quiet(), 1);
    let now = Instant::now();
    d.set_peers(now, &peers(2));
    d.push(now, GROUPS, item(1, 30)).expect("accepted");
    wrap(&mut d, now, "p000", 0);
    assert_eq!(d.stats().channels[0].retired, 0);
    wrap(&mut d, now, "p001", 0);
    let s = &d.stats().channels[0];
    assert_eq!((s.piggybacked_sends, s.retired, s.queued_items), (2, 1, 0));
}

#[test]
fn losing_peers_retires_the_items_every_remaining_peer_has() {
    let mut d = node(quiet(), 1);
    let now = Instant::now();
    d.set_peers(now, &peers(5));
    d.push(now, GROUPS, item(1, 30)).expect("accepted");
    d.push(now, GROUPS, item(2, 2000)).expect("accepted");
    wrap(&mut d, now, "p000", 0);
    wrap(&mut d, now, "p001", 0);
    assert_eq!(d.stats().channels[0].retired, 0);
    d.set_peers(
        now,
        &["p001".to_owned(), "p000".to_owned(), "p001".to_owned()],
    );
    let s = &d.stats().channels[0];
    assert_eq!(
        (s.retired, s.queued_items),
        (1, 1),
        "the batch item still waits"
    );
    assert_eq!(d.peers(), ["p000", "p001"]);
}

#[test]
fn with_no_peers_known_an_item_still_goes_to_whoever_swim_talks_to() {
    // A joining node announces to its seed before membership lists anyone.
    let mut d = node(quiet(), 1);
    let now = Instant::now();
    d.push(now, GROUPS, item(1, 30)).expect("accepted");
    assert_eq!(wrap(&mut d, now, "seed", 100).len(), 1);
    assert_eq!(
        d.stats().channels[0].queued_items,
        1,
        "floor 3: two more to go"
    );
}

// ---- F1: fairness --------------------------------------------------------------------

#[test]
fn a_flooding_channel_does_not_delay_another_channels_single_item_past_the_next_datagram() {
    let config = DisseminationConfig {
        queue_max_bytes: 2_000_000,
        ..quiet()
    };
    let mut d = node(config, 2);
    let now = Instant::now();
    d.set_peers(now, &peers(50));
    for id in 0..10_000 {
        d.push(now, GROUPS, item(id, 100)).expect("accepted");
    }
    assert_eq!(d.stats().channels[0].dropped_overflow, 0);
    for (round, to) in ["p000", "p001", "p002"].into_iter().enumerate() {
        let single = 100_000 + round as u32;
        d.push(now, NAMES, item(single, 60)).expect("accepted");
        let items = wrap(&mut d, now, to, 200);
        assert!(
            items.contains(&(NAMES, item(single, 60))),
            "datagram {round} carries the single item"
        );
        let used: usize = items.iter().map(|(_, b)| ITEM_HEADER + b.len()).sum();
        assert!(
            MAX_SWIM - 200 - used < ITEM_HEADER + 100,
            "and the flood gets the rest of the room ({used} bytes used)"
        );
    }
}

#[test]
fn long_run_byte_shares_of_two_flooding_channels_are_within_ten_percent() {
    // Small items against large ones; each item sent once, so both stay backlogged.
    let config = DisseminationConfig {
        transmissions: Transmissions {
            multiplier: 0,
            floor: 1,
        },
        queue_max_bytes: 1_000_000,
        ..quiet()
    };
    let mut d = node(config, 2);
    let mut rng = StdRng::seed_from_u64(99);
    let now = Instant::now();
    let mut next = 0u32;
    let mut bytes = [0u64; 2];
    for _ in 0..2_000 {
        while d.channels[0].queues[0].items.len() < 60 {
            d.push(now, GROUPS, item(next, 30)).expect("accepted");
            next += 1;
        }
        while d.channels[1].queues[0].items.len() < 10 {
            d.push(now, NAMES, item(next, 200)).expect("accepted");
            next += 1;
        }
        let swim = rng.random_range(50..600);
        for (c, b) in wrap(&mut d, now, "p1", swim) {
            bytes[usize::from(c == NAMES)] += (ITEM_HEADER + b.len()) as u64;
        }
    }
    let share = bytes[0] as f64 / (bytes[0] + bytes[1]) as f64;
    assert!(
        (0.45..=0.55).contains(&share),
        "small-item channel share {share:.3}, {bytes:?}"
    );
}

#[test]
fn room_a_channel_cannot_use_goes_to_the_others() {
    let mut d = node(quiet(), 2);
    let now = Instant::now();
    d.set_peers(now, &peers(20));
    d.push(now, GROUPS, item(1, 250)).expect("accepted");
    for id in 10..100 {
        d.push(now, NAMES, item(id, 10)).expect("accepted");
    }
    // Room 200: too small for the 250-byte item, so the small items get all of it.
    let items = wrap(&mut d, now, "p000", MAX_SWIM - 200);
    assert_eq!(items.len(), 200 / 13);
    assert!(items.iter().all(|(c, _)| *c == NAMES));
    // A channel whose items this peer already has yields its share too.
    let mut d = node(quiet(), 2);
    d.set_peers(now, &peers(20));
    d.push(now, GROUPS, item(1, 50)).expect("accepted");
    wrap(&mut d, now, "p000", 0);
    for id in 10..200 {
        d.push(now, NAMES, item(id, 10)).expect("accepted");
    }
    let items = wrap(&mut d, now, "p000", 0);
    assert_eq!(items.len(), MAX_SWIM / 13);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// F1 for 2–4 channels that each always hold more than a datagram's worth of items:
    /// per-datagram and cumulative shares stay within their bounds (what was forgiven
    /// accounted), and no room is wasted.
    #[test]
    fn shares_stay_within_the_lag_window_datagram_by_datagram_and_over_time_and_no_room_is_wasted(
        k in 2usize..=4,
        max_item in 4usize..=300,
        sizes in prop::collection::vec((4usize..=300, 4usize..=300), 4),
        swims in prop::collection::vec(0usize..1000, 1..150),
    ) {
        let config = DisseminationConfig {
            piggyback_max_item: max_item,
            transmissions: Transmissions { multiplier: 0, floor: 1 },
            queue_max_bytes: 1_000_000,
            ..quiet()
        };
        let mut d = node(config, k);
        let m = (max_item + ITEM_HEADER) as u64;
        let l = 2 * m;
        let now = Instant::now();
        let mut next = 0u32;
        let mut total = vec![0u64; k];
        for swim in swims {
            // Refill: every channel holds more than a datagram can take.
            for (c, &(lo, hi)) in sizes.iter().enumerate().take(k) {
                let (lo, hi) = (lo.min(hi).min(max_item), lo.max(hi).min(max_item));
                while d.channels[c].queues[0].bytes < 2 * MAX_DATAGRAM {
                    let len = lo + (next as usize * 7919) % (hi - lo + 1);
                    d.push(now, channels(k)[c].0, item(next, len)).expect("accepted");
                    next += 1;
                }
            }
            let datagram = d.wrap_datagram(now, "p1", &vec![0; swim]).expect("fits");
            let (_, items) = Dissemination::unwrap_datagram(&datagram).expect("parses");
            let mut share = vec![0u64; k];
            for (ch, b) in &items {
                let c = channels(k).iter().position(|(id, _)| id == ch).expect("registered");
                share[c] += (ITEM_HEADER + b.len()) as u64;
            }
            for c in 0..k {
                total[c] += share[c];
            }
            for a in 0..k {
                for b in 0..k {
                    prop_assert!(share[a] <= share[b] + l + 2 * m, "datagram shares {:?}", share);
                    let forgiven = d.stats().channels[a].lag_forgiven_bytes
                        + d.stats().channels[b].lag_forgiven_bytes;
                    prop_assert!(
                        total[a] <= total[b] + l + m + forgiven,
                        "totals {:?}, forgiven {}", total, forgiven
                    );
                }
            }
            let left = MAX_DATAGRAM - datagram.len();
            for ch in &d.channels {
                for i in &ch.queues[0].items {
                    prop_assert!(i.wire_len() > left, "an item of {} fit the {} bytes left", i.wire_len(), left);
                }
            }
        }
    }
}

#[test]
fn a_channel_that_could_not_send_for_a_while_catches_up_by_at_most_the_lag_window() {
    let config = DisseminationConfig {
        transmissions: Transmissions {
            multiplier: 0,
            floor: 1,
        },
        queue_max_bytes: 1_000_000,
        ..quiet()
    };
    let mut d = node(config, 2);
    let now = Instant::now();
    let (m, l) = (256 + ITEM_HEADER as u64, 2 * (256 + ITEM_HEADER as u64));
    let mut next = 0u32;
    let mut refill = |d: &mut Dissemination| {
        while d.channels[0].queues[0].bytes < 3000 {
            d.push(now, GROUPS, item(next, 20)).expect("accepted");
            next += 1;
        }
        while d.channels[1].queues[0].bytes < 3000 {
            d.push(now, NAMES, item(next, 250)).expect("accepted");
            next += 1;
        }
    };
    // Twenty datagrams with room 200: NAMES's 253-byte items never fit, GROUPS takes all.
    for _ in 0..20 {
        refill(&mut d);
        let items = wrap(&mut d, now, "p1", MAX_SWIM - 200);
        assert!(items.iter().all(|(c, _)| *c == GROUPS));
    }
    // Then full datagrams: NAMES goes first, but its lead is bounded by the window.
    let mut bytes = [0u64; 2];
    for round in 0..10 {
        refill(&mut d);
        for (c, b) in wrap(&mut d, now, "p1", 0) {
            bytes[usize::from(c == NAMES)] += (ITEM_HEADER + b.len()) as u64;
        }
        if round == 0 {
            assert!(
                bytes[1] > bytes[0],
                "the blocked channel is paid back first: {bytes:?}"
            );
        }
    }
    assert!(bytes[1] <= bytes[0] + l + m, "catch-up bounded: {bytes:?}");
    assert!(bytes[0] <= bytes[1] + l + m, "then equal shares: {bytes:?}");
    let forgiven = d.stats().channels[1].lag_forgiven_bytes;
    assert!(
        forgiven > 20 * 150,
        "the shortfall beyond the window is forgiven: {forgiven}"
    );
    assert_eq!(d.stats().channels[0].lag_forgiven_bytes, 0);
}

// ---- Batches --------------------------------------------------------------------------

#[test]
fn items_above_piggyback_max_item_are_batched_and_smaller_ones_piggybacked() {
    let mut d = node(quiet(), 1);
    let now = Instant::now();
    d.set_peers(now, &peers(3));
    d.push(now, GROUPS, item(1, 256)).expect("accepted");
    d.push(now, GROUPS, item(2, 257)).expect("accepted");
    assert_eq!(wrap(&mut d, now, "p000", 0), vec![(GROUPS, item(1, 256))]);
    d.handle_tick(now + Duration::from_millis(100));
    for (_, items) in batches(&outputs(&mut d)) {
        assert_eq!(items, vec![(GROUPS, item(2, 257))]);
    }
    let s = &d.stats().channels[0];
    assert_eq!(
        (s.piggybacked_sends, s.batched_sends, s.batched_bytes),
        (1, 2, 514)
    );
}

#[test]
fn eager_small_items_go_out_in_the_next_batch_round_and_still_ride_datagrams() {
    let mut config = quiet();
    config.eager = true;
    let mut d = node(config, 1);
    let now = Instant::now();
    d.set_peers(now, &peers(3));
    d.push(now, GROUPS, item(1, 40)).expect("accepted");
    // Without any SWIM traffic, the batch round carries it.
    assert_eq!(d.poll_timeout(), Some(now + d.config().batch_interval));
    d.handle_tick(now + d.config().batch_interval);
    let sent = batches(&outputs(&mut d));
    assert_eq!(sent.len(), 2, "fanout(3) = 2 peers: {sent:?}");
    for (_, items) in &sent {
        assert_eq!(items, &vec![(GROUPS, item(1, 40))]);
    }
    // The piggyback copy is still there for SWIM packets, to a peer the batch missed.
    let missed = peers(3)
        .into_iter()
        .find(|p| sent.iter().all(|(to, _)| to != p))
        .expect("one peer left");
    assert_eq!(wrap(&mut d, now, &missed, 0), vec![(GROUPS, item(1, 40))]);
    // Without eager, the same item waits for a datagram.
    let mut lazy = node(quiet(), 1);
    lazy.set_peers(now, &peers(3));
    lazy.push(now, GROUPS, item(1, 40)).expect("accepted");
    lazy.handle_tick(now + Duration::from_millis(100));
    assert!(batches(&outputs(&mut lazy)).is_empty());
}

#[test]
fn batch_fanout_targets_are_distinct_live_peers_and_scale_as_log2() {
    let table = [
        (1, 1),
        (2, 2),
        (3, 2),
        (4, 3),
        (7, 3),
        (8, 4),
        (15, 4),
        (16, 5),
        (31, 5),
        (32, 6),
        (64, 7),
        (100, 7),
    ];
    for (n, want) in table {
        assert_eq!(fanout(n), want, "fanout({n})");
        let mut d = node(quiet(), 1);
        let now = Instant::now();
        let live = peers(n);
        d.set_peers(now, &live);
        d.push(now, GROUPS, item(1, 1000)).expect("accepted");
        d.handle_tick(now + Duration::from_millis(100));
        let targets: Vec<String> = batches(&outputs(&mut d))
            .into_iter()
            .map(|(to, _)| to)
            .collect();
        assert_eq!(targets.len(), want, "n = {n}");
        let distinct: BTreeSet<&String> = targets.iter().collect();
        assert_eq!(distinct.len(), want, "distinct, n = {n}");
        assert!(targets.iter().all(|t| live.contains(t)), "live, n = {n}");
    }
    assert_eq!(fanout(0), 0);
}

#[test]
fn an_own_item_goes_to_every_live_peer_up_to_direct_max_peers_and_a_relayed_one_gossips() {
    let mut config = quiet();
    config.eager = true;
    config.direct_max_peers = 30;
    let now = Instant::now();
    let due = now + config.batch_interval;
    let live = peers(20);
    let limit = config.transmissions.for_peers(20);
    assert!(limit < 20, "the gossip limit is below the cluster size");

    // Made here: one batch round reaches all 20 peers, each once, then it retires.
    let mut d = node(config.clone(), 1);
    d.set_peers(now, &live);
    d.push_own(now, GROUPS, item(1, 40)).expect("accepted");
    d.push(now, GROUPS, item(2, 1000)).expect("accepted");
    d.push(now, GROUPS, item(5, 40)).expect("accepted");
    d.handle_tick(due);
    let sent = batches(&outputs(&mut d));
    let got = |id: u32| -> BTreeSet<String> {
        sent.iter()
            .filter(|(_, items)| items.iter().any(|(_, b)| id_of(b) == id))
            .map(|(to, _)| to.clone())
            .collect()
    };
    assert_eq!(
        got(1),
        live.iter().cloned().collect(),
        "own item: every live peer"
    );
    assert_eq!(sent.len(), 20, "one frame per peer");
    // A large relayed item rode the same round but stopped at its transmissions; a
    // small relayed one is not batched at all while direct push is on.
    assert_eq!(got(2).len(), limit, "relayed item: transmissions(n) peers");
    assert!(got(5).is_empty(), "small relayed item: datagrams only");
    assert_accounting(&d);
    assert_eq!(
        d.stats().channels[0].queued_items,
        2,
        "the batch copies retired; the piggyback copies of 1 and 5 wait for SWIM packets"
    );
    assert_eq!(
        wrap(&mut d, now, &live[0], 0).len(),
        2,
        "1 and 5 ride a datagram"
    );

    // Beyond direct_max_peers an own item gossips like any other.
    let mut big = node(config.clone(), 1);
    big.set_peers(now, &peers(40));
    big.push_own(now, GROUPS, item(3, 40)).expect("accepted");
    big.handle_tick(due);
    assert_eq!(
        batches(&outputs(&mut big)).len(),
        fanout(40),
        "fanout(40) peers"
    );

    // Without direct push (the default) an own item gossips too.
    let mut off = node(
        DisseminationConfig {
            direct_max_peers: 0,
            ..config
        },
        1,
    );
    off.set_peers(now, &live);
    off.push_own(now, GROUPS, item(4, 40)).expect("accepted");
    off.handle_tick(due);
    assert_eq!(batches(&outputs(&mut off)).len(), fanout(20));
}

#[test]
fn batch_targets_vary_between_rounds() {
    let mut d = node(quiet(), 1);
    let now = Instant::now();
    d.set_peers(now, &peers(30));
    let mut seen = BTreeSet::new();
    for round in 0..20u32 {
        d.push(now, GROUPS, item(round, 1000)).expect("accepted");
        d.handle_tick(now + Duration::from_millis(100) * (round + 1));
        seen.extend(batches(&outputs(&mut d)).into_iter().map(|(to, _)| to));
    }
    assert!(
        seen.len() > 20,
        "random fanout reaches most peers: {}",
        seen.len()
    );
}

#[test]
fn a_batch_frame_holds_at_most_batch_max_bytes_and_the_rest_waits_for_the_next_round() {
    let config = DisseminationConfig {
        batch_max_bytes: 3_000,
        transmissions: Transmissions {
            multiplier: 0,
            floor: 1,
        },
        ..quiet()
    };
    let mut d = node(config, 2);
    let t0 = Instant::now();
    d.set_peers(t0, &peers(1));
    for id in 0..5 {
        d.push(t0, GROUPS, item(id, 997)).expect("accepted"); // 1000 wire bytes each
        d.push(t0, NAMES, item(100 + id, 997)).expect("accepted");
    }
    let mut rounds = Vec::new();
    let mut now = t0;
    while let Some(due) = d.poll_timeout() {
        assert_eq!(
            due,
            now + Duration::from_millis(100),
            "one round per interval"
        );
        now = due;
        d.handle_tick(now);
        let b = batches(&outputs(&mut d));
        assert_eq!(b.len(), 1);
        rounds.push(b[0].1.iter().map(|(_, b)| id_of(b)).collect::<Vec<_>>());
    }
    // Two items per frame (3 would be 3003 bytes), channels alternating.
    assert_eq!(
        rounds.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 2, 2, 2]
    );
    let all: BTreeSet<u32> = rounds.into_iter().flatten().collect();
    assert_eq!(all.len(), 10, "every item went once");
    assert_eq!(d.stats().batch_frames, 5);
}

#[test]
fn no_batch_round_is_scheduled_while_the_batch_buffer_is_empty() {
    let mut d = node(quiet(), 1);
    let t0 = Instant::now();
    d.set_peers(t0, &peers(2));
    d.push(t0, GROUPS, item(1, 10)).expect("accepted");
    assert_eq!(d.poll_timeout(), None, "piggyback items need no timer");
    let t1 = t0 + Duration::from_millis(30);
    d.push(t1, GROUPS, item(2, 1000)).expect("accepted");
    assert_eq!(d.poll_timeout(), Some(t1 + Duration::from_millis(100)));
    d.handle_tick(t1 + Duration::from_millis(99));
    assert!(outputs(&mut d).is_empty(), "not before it is due");
    d.handle_tick(t1 + Duration::from_millis(100));
    assert_eq!(batches(&outputs(&mut d)).len(), 2);
    assert_eq!(
        d.poll_timeout(),
        None,
        "the item reached every peer and retired"
    );
}

// ---- F3: anti-entropy -----------------------------------------------------------------

/// Ticks through `rounds` periodic anti-entropy rounds; returns the partners.
fn anti_entropy_rounds(d: &mut Dissemination, now: &mut Instant, rounds: usize) -> Vec<String> {
    let mut partners = Vec::new();
    while partners.len() < rounds {
        *now = d.poll_timeout().expect("anti-entropy is periodic");
        d.handle_tick(*now);
        partners.extend(anti_entropy_partners(&outputs(d)));
    }
    partners
}

#[test]
fn anti_entropy_visits_every_peer_in_any_n_consecutive_rounds() {
    for n in [1, 2, 7, 10] {
        let mut d = node(DisseminationConfig::default(), 1);
        let mut now = Instant::now();
        let live = peers(n);
        d.set_peers(now, &live);
        let partners = anti_entropy_rounds(&mut d, &mut now, 5 * n);
        for window in partners.windows(n) {
            let got: BTreeSet<&String> = window.iter().collect();
            assert_eq!(got.len(), n, "n = {n}: {window:?}");
        }
        assert!(partners.iter().all(|p| live.contains(p)));
    }
}

#[test]
fn a_new_peer_is_visited_within_n_rounds_and_a_departed_one_never_again() {
    let mut d = node(DisseminationConfig::default(), 1);
    let mut now = Instant::now();
    d.set_peers(now, &peers(6));
    anti_entropy_rounds(&mut d, &mut now, 3);
    let mut live = peers(6);
    live.retain(|p| p != "p002");
    live.push("new".to_owned());
    d.set_peers(now, &live);
    let partners = anti_entropy_rounds(&mut d, &mut now, 6);
    assert!(partners.contains(&"new".to_owned()), "{partners:?}");
    assert!(!partners.contains(&"p002".to_owned()));
    let got: BTreeSet<&String> = partners.iter().collect();
    assert_eq!(
        got.len(),
        6,
        "still every live peer once per turn: {partners:?}"
    );
}

proptest! {
    /// F3 under churn: partners are always live, and once the peers stop changing, the
    /// next `n` rounds visit every one of them exactly once.
    #[test]
    fn anti_entropy_partners_are_live_and_every_turn_of_the_ring_visits_everyone(
        seed in any::<u64>(),
        changes in prop::collection::vec(
            (prop::collection::btree_set(0usize..16, 1..12), 0usize..20),
            1..8,
        ),
    ) {
        let mut d = Dissemination::new(DisseminationConfig::default(), &channels(1), seed)
            .expect("valid");
        let mut now = Instant::now();
        let mut live = Vec::new();
        for (members, rounds) in changes {
            live = members.iter().map(|m| format!("p{m:03}")).collect::<Vec<_>>();
            d.set_peers(now, &live);
            for partner in anti_entropy_rounds(&mut d, &mut now, rounds) {
                prop_assert!(live.contains(&partner), "{} is not live", partner);
            }
        }
        let turn = anti_entropy_rounds(&mut d, &mut now, live.len());
        let visited: BTreeSet<&String> = turn.iter().collect();
        prop_assert_eq!(visited.len(), live.len(), "one turn: {:?}", turn);
    }
}

#[test]
fn anti_entropy_rounds_come_every_interval_with_a_random_first_offset() {
    let mut d = node(DisseminationConfig::default(), 1);
    let t0 = Instant::now();
    d.set_peers(t0, &peers(3));
    let first = d.poll_timeout().expect("the clock started");
    assert!(first > t0 && first <= t0 + Duration::from_secs(1));
    d.handle_tick(first);
    assert_eq!(anti_entropy_partners(&outputs(&mut d)).len(), 1);
    assert_eq!(d.poll_timeout(), Some(first + Duration::from_secs(1)));
    // A late tick runs one round, not a burst, and the next comes an interval later.
    let late = first + Duration::from_secs(5);
    d.handle_tick(late);
    assert_eq!(anti_entropy_partners(&outputs(&mut d)).len(), 1);
    assert_eq!(d.poll_timeout(), Some(late + Duration::from_secs(1)));
    assert_eq!(d.stats().anti_entropy_rounds, 2);
}

#[test]
fn disabled_periodic_anti_entropy_never_starts_a_round_by_itself() {
    let mut d = node(quiet(), 1);
    let t0 = Instant::now();
    d.set_peers(t0, &peers(3));
    assert_eq!(d.poll_timeout(), None);
    d.handle_tick(t0 + Duration::from_secs(60));
    assert!(outputs(&mut d).is_empty());
}

#[test]
fn anti_entropy_without_peers_is_skipped_and_counted() {
    let mut d = node(DisseminationConfig::default(), 1);
    let t0 = Instant::now();
    d.handle_tick(t0);
    let due = d.poll_timeout().expect("valid");
    d.handle_tick(due);
    assert!(outputs(&mut d).is_empty());
    assert_eq!(d.stats().anti_entropy_without_peers, 1);
    assert_eq!(d.stats().anti_entropy_rounds, 0);
}

#[test]
fn request_anti_entropy_starts_an_immediate_round_and_leaves_the_ring_alone() {
    let mut d = node(DisseminationConfig::default(), 1);
    let mut now = Instant::now();
    d.set_peers(now, &peers(4));
    d.request_anti_entropy(now, "p003");
    assert_eq!(
        outputs(&mut d),
        vec![DisseminationOutput::AntiEntropy {
            with: "p003".into()
        }]
    );
    let partners = anti_entropy_rounds(&mut d, &mut now, 4);
    assert_eq!(partners.iter().collect::<BTreeSet<_>>().len(), 4);
    assert_eq!(d.stats().anti_entropy_requested, 1);
    assert_eq!(d.stats().anti_entropy_rounds, 5);
}

// ---- S6: determinism ------------------------------------------------------------------

#[test]
fn different_seeds_choose_different_partners() {
    let order = |seed| {
        let mut d =
            Dissemination::new(DisseminationConfig::default(), &channels(1), seed).expect("valid");
        let mut now = Instant::now();
        d.set_peers(now, &peers(10));
        anti_entropy_rounds(&mut d, &mut now, 10)
    };
    assert_eq!(order(5), order(5));
    assert!((0..5).map(order).collect::<BTreeSet<_>>().len() > 1);
}

// ---- Configuration and bad calls ------------------------------------------------------

#[test]
fn config_errors_name_the_key_and_build_nothing() {
    let bad = [
        (
            DisseminationConfig {
                piggyback_max_item: 0,
                ..DisseminationConfig::default()
            },
            "piggyback_max_item",
        ),
        (
            DisseminationConfig {
                piggyback_max_item: MAX_SWIM - ITEM_HEADER + 1,
                ..DisseminationConfig::default()
            },
            "piggyback_max_item",
        ),
        (
            DisseminationConfig {
                transmissions: Transmissions {
                    multiplier: 4,
                    floor: 0,
                },
                ..DisseminationConfig::default()
            },
            "transmissions.floor",
        ),
        (
            DisseminationConfig {
                batch_interval: Duration::ZERO,
                ..DisseminationConfig::default()
            },
            "batch_interval",
        ),
        (
            DisseminationConfig {
                batch_max_bytes: 256 + 6,
                ..DisseminationConfig::default()
            },
            "batch_max_bytes",
        ),
        (
            DisseminationConfig {
                batch_max_bytes: MAX_BATCH_BYTES + 1,
                queue_max_bytes: usize::MAX,
                ..DisseminationConfig::default()
            },
            "batch_max_bytes",
        ),
        (
            DisseminationConfig {
                anti_entropy_interval: Some(Duration::ZERO),
                ..DisseminationConfig::default()
            },
            "anti_entropy_interval",
        ),
        (
            DisseminationConfig {
                queue_max_bytes: 1000,
                ..DisseminationConfig::default()
            },
            "queue_max_bytes",
        ),
    ];
    for (config, key) in bad {
        let err = Dissemination::new(config, &channels(1), 0).expect_err("refused");
        assert!(err.to_string().starts_with(key), "{err} names {key}");
    }
    let ok = DisseminationConfig::default();
    assert_eq!(
        Dissemination::new(ok.clone(), &[], 0).expect_err("refused"),
        ConfigError::NoChannels
    );
    assert_eq!(
        Dissemination::new(ok.clone(), &[(GROUPS, "a"), (NAMES, "b"), (GROUPS, "c")], 0)
            .expect_err("refused"),
        ConfigError::DuplicateChannel(GROUPS)
    );
    assert!(Dissemination::new(small_queues(), &channels(1), 0).is_ok());
    assert!(Dissemination::new(ok, &channels(4), 0).is_ok());
}

#[test]
fn bad_pushes_are_refused_counted_and_change_nothing() {
    let mut d = node(DisseminationConfig::default(), 2);
    let now = Instant::now();
    assert_eq!(
        d.push(now, ChannelId(3), item(1, 10)),
        Err(PushError::UnknownChannel(ChannelId(3)))
    );
    assert_eq!(d.push(now, GROUPS, Bytes::new()), Err(PushError::Empty));
    let max = d.config().max_item();
    assert_eq!(max, 64 * 1024 - 6);
    assert_eq!(
        d.push(now, GROUPS, Bytes::from(vec![0; max + 1])),
        Err(PushError::TooLarge { len: max + 1, max })
    );
    assert_eq!(
        d.push(now, GROUPS, Bytes::from(vec![0; 70_000])),
        Err(PushError::TooLarge { len: 70_000, max })
    );
    assert_eq!(d.stats().rejected_unknown_channel, 1);
    assert_eq!(d.stats().channels[0].rejected, 3);
    assert_eq!(d.stats().channels[0].pushed, 0);
    assert_eq!(
        d.poll_timeout().map(|_| ()),
        Some(()),
        "only the AE clock started"
    );
    assert!(d.batch_due.is_none());
    assert!(wrap(&mut d, now, "p1", 0).is_empty());
    d.push(now, GROUPS, Bytes::from(vec![0; max]))
        .expect("valid");
}

#[test]
fn wrap_refuses_a_swim_packet_too_large_to_wrap_and_takes_nothing() {
    let mut d = node(quiet(), 1);
    let now = Instant::now();
    d.push(now, GROUPS, item(1, 10)).expect("accepted");
    assert_eq!(
        d.wrap_datagram(now, "p1", &[0; MAX_SWIM + 1]),
        Err(WrapError::SwimTooLarge {
            len: MAX_SWIM + 1,
            max: MAX_SWIM
        })
    );
    assert_eq!(d.stats().datagrams_refused, 1);
    assert_eq!(d.stats().channels[0].piggybacked_sends, 0);
    assert_eq!(
        wrap(&mut d, now, "p1", MAX_SWIM - 13).len(),
        1,
        "still there"
    );
}

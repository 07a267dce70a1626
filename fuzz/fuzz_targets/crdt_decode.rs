//! `mesh-crdt` states (deltas, chunks, anti-entropy replies: one type) and digests as
//! decoded from the wire, then used: `[mode][chunk limit][piece]...` with pieces as in
//! `mesh_fuzz::split_pieces`.
//!
//! Whatever decodes must satisfy the crate's documented invariants, re-encode to
//! itself, and behave as a join: merging into an empty state gives it back, merging
//! twice equals once, a merge only inflates, merges of two or three states commute and
//! associate (in full when the states agree on every dot's element, and structurally —
//! equal digests — always), cutting into chunks of at most the limit and merging them
//! back gives the state, any chunk merged into the state changes nothing, and
//! anti-entropy against a decoded digest never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mesh_crdt::{Digest, Orswot, Replica};
use mesh_fuzz::{check_state, consistent, split_pieces};

type State = Orswot<String, String>;

fn decode_state(bytes: &[u8]) -> Option<State> {
    let state = State::decode(bytes).ok()?;
    check_state(&state);
    let again = state.encode().expect("encode");
    assert_eq!(state.encoded_len().expect("len"), again.len());
    let back = State::decode(&again).expect("a re-encoded state decodes");
    assert_eq!(back, state, "decode(encode(s)) != s");
    assert_eq!(
        back.encode().expect("encode"),
        again,
        "encoding is not canonical"
    );
    Some(state)
}

fn merged(a: &State, b: &State) -> State {
    let mut out = a.clone();
    out.merge(b);
    check_state(&out);
    out
}

fn check_one(s: &State, limit: usize) {
    // Merging into the empty state gives the state; merging again changes nothing.
    let mut fresh = State::new();
    let report = fresh.merge(s);
    assert_eq!(&fresh, s, "empty ⊔ s != s");
    assert_eq!(
        report.changes.len(),
        s.live_dots(),
        "every live dot is reported added"
    );
    let again = fresh.merge(s);
    assert!(
        again.is_empty(),
        "merging twice changed something: {again:?}"
    );
    assert_eq!(&fresh, s);

    // Anti-entropy against itself and against nothing.
    assert!(
        s.missing_for(&s.digest()).is_empty(),
        "a state lacks something of itself"
    );
    assert_eq!(
        &s.missing_for(&Digest::default()),
        s,
        "an empty peer lacks everything"
    );
    let digest_bytes = s.digest().encode().expect("encode");
    assert_eq!(
        Digest::<String>::decode(&digest_bytes).expect("digest decodes"),
        s.digest()
    );

    // Chunks: bounded, each valid on the wire, a no-op on the whole, and together the
    // whole in either order.
    let Ok(pieces) = s.chunks(limit) else {
        return;
    };
    let mut forward = State::new();
    for piece in &pieces {
        let bytes = piece.encode().expect("encode");
        assert!(
            bytes.len() <= limit,
            "chunk of {} bytes over {limit}",
            bytes.len()
        );
        let piece = State::decode(&bytes).expect("a chunk decodes");
        let mut whole = s.clone();
        let report = whole.merge(&piece);
        assert!(report.is_empty(), "a chunk of s changed s: {report:?}");
        forward.merge(&piece);
    }
    assert_eq!(&forward, s, "the chunks do not add up to the state");
    let mut backward = State::new();
    for piece in pieces.iter().rev() {
        backward.merge(piece);
    }
    assert_eq!(&backward, s);

    // A replica merging it keeps its own partition.
    let mut r: Replica<String, String> = Replica::new("self".into(), 2);
    let _ = r.add("mine".into());
    let own_before = r.state().context_of(&"self".to_string()).cloned();
    let report = r.merge(s);
    assert_eq!(
        r.state().context_of(&"self".to_string()).cloned(),
        own_before
    );
    assert_eq!(r.local_multiplicity(&"mine".to_string()), 1);
    let theirs = s
        .incarnation_of(&"self".to_string())
        .map(|i| (i, s.is_retired(&"self".to_string())));
    let superseded = theirs.is_some_and(|k| k > (2, false));
    assert_eq!(report.own_incarnation_superseded_by.is_some(), superseded);
    check_state(r.state());
}

fn check_pair(a: &State, b: &State) {
    let ab = merged(a, b);
    let ba = merged(b, a);
    // Inflation and idempotence.
    assert_eq!(merged(&ab, a), ab, "(a ⊔ b) ⊔ a != a ⊔ b");
    assert_eq!(merged(&ab, b), ab, "(a ⊔ b) ⊔ b != a ⊔ b");
    // Commutativity: structure always, elements when the two agree.
    assert_eq!(
        ab.digest(),
        ba.digest(),
        "a ⊔ b and b ⊔ a differ in structure"
    );
    if consistent(&[a, b]) {
        assert_eq!(ab, ba, "a ⊔ b != b ⊔ a");
    }
    // Anti-entropy one way: b lacks nothing of a after merging what a says it lacks.
    let mut b2 = b.clone();
    b2.merge(&a.missing_for(&b.digest()));
    check_state(&b2);
}

fn check_triple(a: &State, b: &State, c: &State) {
    let left = merged(&merged(a, b), c);
    let right = merged(a, &merged(b, c));
    assert_eq!(
        left.digest(),
        right.digest(),
        "(a ⊔ b) ⊔ c and a ⊔ (b ⊔ c) differ in structure"
    );
    if consistent(&[a, b, c]) {
        assert_eq!(left, right, "(a ⊔ b) ⊔ c != a ⊔ (b ⊔ c)");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, limit], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limit = 24 + usize::from(limit) * 4;
    let pieces = split_pieces(rest);
    match mode % 4 {
        // Digests, and anti-entropy answering them.
        0 => {
            for piece in &pieces {
                if let Ok(d) = Digest::<String>::decode(piece) {
                    let again = d.encode().expect("encode");
                    assert_eq!(Digest::<String>::decode(&again).expect("decodes"), d);
                    let mut r: Replica<String, String> = Replica::new("self".into(), 1);
                    let _ = r.add("x".into());
                    let reply = r.missing_for(&d);
                    check_state(&reply);
                }
            }
            if let (Some(s), Some(d)) = (
                pieces.first().and_then(|p| decode_state(p)),
                pieces.get(1).and_then(|p| Digest::<String>::decode(p).ok()),
            ) {
                let reply = s.missing_for(&d);
                check_state(&reply);
                assert_eq!(
                    merged(&s, &reply),
                    s,
                    "a reply holds something the state lacks"
                );
                if let Ok(chunks) = reply.chunks(limit) {
                    for c in &chunks {
                        assert!(c.encoded_len().expect("len") <= limit);
                    }
                }
            }
        }
        _ => {
            let states: Vec<State> = pieces.iter().filter_map(|p| decode_state(p)).collect();
            for s in &states {
                check_one(s, limit);
            }
            if let [a, b, ..] = &states[..] {
                check_pair(a, b);
            }
            if let [a, b, c, ..] = &states[..] {
                check_triple(a, b, c);
            }
        }
    }
});

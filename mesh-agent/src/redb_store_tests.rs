//! Tests of the redb store: across reopen, wipe and failed fsyncs.

use super::*;
use mesh_core::quorum::store::{encode_key, load_acceptor};
use mesh_core::quorum::{AcceptorState, Ballot, NodeId};
use rand::rngs::StdRng;
use rand::SeedableRng;

const P: NodeId = NodeId(9);

/// The format byte mesh-core's [`encode_state`] writes first (checked below).
const STATE_FORMAT: u8 = 1;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn entry(key: &str, value: u32) -> Entry {
    let state = AcceptorState {
        promised: Ballot::first(P, 1),
        accepted: Some((Ballot::first(P, 1), value)),
        epoch: 1,
    };
    (
        encode_key(key).expect("a string key encodes"),
        encode_state(&state).expect("a state encodes"),
    )
}

fn root() -> RootRecord {
    RootRecord {
        epoch: 1,
        quorums: None,
        pending: None,
        voters: vec![("n1".into(), 11), ("n2".into(), 12), ("n3".into(), 13)],
    }
}

#[test]
fn committed_states_and_the_root_survive_reopening_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut store, opened) = RedbStore::open(dir.path(), &mut rng(1)).expect("open");
        assert_eq!(opened, Opened::Created);
        assert_eq!(store.root().expect("readable"), None);
        let stats = store
            .commit(&[entry("a", 1), entry("b", 2)])
            .expect("commit");
        assert_eq!(stats.keys, 2);
        store.commit(&[entry("a", 3)]).expect("commit");
        store.set_root(&root()).expect("set_root");
    }
    let (store, opened) = RedbStore::open(dir.path(), &mut rng(2)).expect("reopen");
    assert_eq!(opened, Opened::Existing);
    assert_eq!(
        store.load().expect("load"),
        vec![entry("a", 3), entry("b", 2)]
    );
    assert_eq!(store.root().expect("readable"), Some(root()));
    let typed = load_acceptor::<String, u32>(&store).expect("decodes");
    assert_eq!(typed[0].0, "a");
    assert_eq!(typed[0].1.accepted.map(|(_, v)| v), Some(3));
}

#[test]
fn the_acceptor_id_is_stable_across_reopen_and_new_after_the_directory_is_wiped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("quorum");
    let mut entropy = rng(7);
    let first = RedbStore::open(&store_dir, &mut entropy)
        .expect("open")
        .0
        .acceptor_id();
    assert_ne!(first, 0);
    // A reopen keeps the id whatever the RNG says.
    let (again, opened) = RedbStore::open(&store_dir, &mut entropy).expect("reopen");
    assert_eq!((again.acceptor_id(), opened), (first, Opened::Existing));
    drop(again);
    std::fs::remove_dir_all(&store_dir).expect("wipe");
    let (wiped, opened) = RedbStore::open(&store_dir, &mut entropy).expect("recreate");
    assert_eq!(opened, Opened::Created);
    assert_ne!(wiped.acceptor_id(), first);
    assert_eq!(wiped.load().expect("load"), Vec::<Entry>::new());
}

#[test]
fn a_commit_of_1000_keys_is_one_transaction_and_one_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = RedbStore::open(dir.path(), &mut rng(1)).expect("open");
    let file_len = |s: &RedbStore| std::fs::metadata(s.path()).map(|m| m.len()).expect("stat");
    let mut last = Vec::new();
    for round in 0..4 {
        let batch: Vec<Entry> = (0..1000)
            .map(|i| entry(&format!("shard-{i}"), i + round))
            .collect();
        let (before, len) = (store.stats(), file_len(&store));
        let stats = store.commit(&batch).expect("commit");
        let after = store.stats();
        // One fsync per commit, plus one when the file had to grow (redb makes the new
        // length durable before the header can point into it).
        let grew = u64::from(file_len(&store) > len);
        assert_eq!(
            (after.commits - before.commits, after.fsyncs - before.fsyncs),
            (1, 1 + grew),
            "round {round}"
        );
        assert_eq!(stats.keys, 1000);
        assert_eq!(
            stats.bytes,
            batch.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        );
        last = batch;
    }
    drop(store);
    let (store, _) = RedbStore::open(dir.path(), &mut rng(1)).expect("reopen");
    last.sort();
    assert_eq!(store.load().expect("load"), last);
}

#[test]
fn an_empty_batch_writes_nothing_and_costs_no_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = RedbStore::open(dir.path(), &mut rng(1)).expect("open");
    let before = store.stats();
    assert_eq!(store.commit(&[]).expect("commit"), CommitStats::default());
    assert_eq!(store.stats(), before);
}

#[test]
fn a_corrupt_acceptor_id_or_root_is_an_error_naming_the_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(RedbStore::open(dir.path(), &mut rng(1)).expect("open"));
    let poke = |key: &str, value: &[u8]| {
        let db = Database::create(dir.path().join(STORE_FILE)).expect("redb opens");
        let txn = db.begin_write().expect("txn");
        txn.open_table(META)
            .expect("meta")
            .insert(key, value)
            .expect("insert");
        txn.commit().expect("commit");
    };
    assert_eq!(encode_state(&root()).expect("encodes")[0], STATE_FORMAT);
    poke(META_ROOT, &[STATE_FORMAT, 0x93, 0xff]);
    let (store, _) = RedbStore::open(dir.path(), &mut rng(1)).expect("opens");
    let err = store.root().expect_err("corrupt root");
    assert!(err.to_string().contains("meta/root"), "{err}");
    drop(store);
    poke(META_ACCEPTOR_ID, &[1, 2, 3]);
    let err = RedbStore::open(dir.path(), &mut rng(1)).expect_err("corrupt id");
    assert!(
        matches!(&err, StoreError::Corrupt { key, .. } if key == "meta/acceptor_id"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_store_fails_to_open_with_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(STORE_FILE), vec![0x5a; 64 << 10]).expect("write");
    let err = RedbStore::open(dir.path(), &mut rng(1)).expect_err("not redb");
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
}

#[test]
fn a_damaged_page_fails_the_integrity_check_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = b"MARKER-0123456789";
    {
        let (mut store, _) = RedbStore::open(dir.path(), &mut rng(1)).expect("open");
        store
            .commit(&[(b"k".to_vec(), marker.to_vec())])
            .expect("commit");
    }
    let path = dir.path().join(STORE_FILE);
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the value is in the file");
    bytes[at] ^= 0xff;
    std::fs::write(&path, bytes).expect("write");
    match RedbStore::open(dir.path(), &mut rng(1)) {
        Err(StoreError::Open { reason, .. }) => assert!(!reason.is_empty()),
        Err(other) => panic!("expected Open, got {other:?}"),
        Ok((store, _)) => panic!("opened a damaged store: {:?}", store.load()),
    }
}

#[test]
fn a_second_open_of_an_open_store_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, _) = RedbStore::open(dir.path(), &mut rng(1)).expect("open");
    let err = RedbStore::open(dir.path(), &mut rng(1)).expect_err("locked");
    assert!(err.to_string().contains("already open"), "{err}");
}

#[test]
fn a_failed_fsync_stops_the_store_and_the_batch_is_all_or_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = RedbStore::open(dir.path(), &mut rng(1)).expect("open");
    store.commit(&[entry("kept", 1)]).expect("commit");
    store.fail_fsyncs();
    let batch: Vec<Entry> = (0..50).map(|i| entry(&format!("lost-{i}"), i)).collect();
    assert!(matches!(store.commit(&batch), Err(StoreError::Write(_))));
    assert!(matches!(store.commit(&batch), Err(StoreError::Stopped)));
    assert!(matches!(store.set_root(&root()), Err(StoreError::Stopped)));
    assert_eq!(store.stats().failed_writes, 1);
    drop(store);
    let (store, _) = RedbStore::open(dir.path(), &mut rng(1)).expect("reopen");
    let keys = store.load().expect("load").len();
    assert!(keys == 1 || keys == 51, "a partial batch: {keys} keys");
    assert_eq!(store.load().expect("load")[0], entry("kept", 1));
}

/// The file image after applying `ops` to `image`; `torn`: the last write lands only
/// half (a sector-level tear).
fn replay(image: &[u8], ops: &[BackendOp], torn: bool) -> Vec<u8> {
    let mut out = image.to_vec();
    for (i, op) in ops.iter().enumerate() {
        match op {
            BackendOp::Write(offset, data) => {
                let data = if torn && i + 1 == ops.len() {
                    &data[..data.len() / 2]
                } else {
                    &data[..]
                };
                let end = *offset as usize + data.len();
                if out.len() < end {
                    out.resize(end, 0);
                }
                out[*offset as usize..end].copy_from_slice(data);
            }
            BackendOp::SetLen(len) => out.resize(*len as usize, 0),
            BackendOp::Sync => {}
        }
    }
    out
}

/// Torn writes at every step of a commit: a crash after any prefix of the commit's file
/// operations — the last write whole or torn in half — leaves a store that opens with
/// exactly the previous state or exactly the new one (never a mix, never garbage), or
/// refuses to open with an error; it never votes on partial state.
#[test]
fn a_crash_at_any_step_of_a_commit_leaves_the_old_or_the_new_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(STORE_FILE);
    let (mut store, _) = RedbStore::open(dir.path(), &mut rng(1)).expect("open");
    store
        .commit(&[entry("a", 1), entry("b", 2)])
        .expect("commit");
    store.set_root(&root()).expect("set_root");
    let old_state = store.load().expect("load");
    let before = std::fs::read(&path).expect("read");

    store.log_file_ops(true);
    let mut batch: Vec<Entry> = (0..200).map(|i| entry(&format!("k{i:03}"), i)).collect();
    batch.push(entry("a", 3));
    store.commit(&batch).expect("commit");
    let ops = store.log_file_ops(false);
    let new_state = store.load().expect("load");
    let after = std::fs::read(&path).expect("read");
    drop(store);
    // The log is complete: replaying all of it gives the file as it is (the control
    // that makes the prefixes below meaningful).
    assert_eq!(
        replay(&before, &ops, false),
        after,
        "the op log misses writes"
    );
    assert!(
        ops.iter()
            .filter(|o| matches!(o, BackendOp::Write(..)))
            .count()
            >= 2,
        "a commit of 201 keys wrote fewer than two pieces: {} ops",
        ops.len()
    );

    let (mut old, mut new, mut refused) = (0, 0, 0);
    for k in 0..=ops.len() {
        for torn in [false, true] {
            if torn && !matches!(ops[..k].last(), Some(BackendOp::Write(..))) {
                continue;
            }
            let trial = tempfile::tempdir().expect("tempdir");
            std::fs::write(
                trial.path().join(STORE_FILE),
                replay(&before, &ops[..k], torn),
            )
            .expect("write image");
            match RedbStore::open(trial.path(), &mut rng(2)) {
                Ok((s, opened)) => {
                    assert_eq!(opened, Opened::Existing, "prefix {k} torn={torn}");
                    assert_eq!(s.root().expect("readable"), Some(root()), "prefix {k}");
                    let state = s.load().expect("a store that opens loads");
                    if state == old_state {
                        old += 1;
                    } else if state == new_state {
                        new += 1;
                    } else {
                        panic!(
                            "prefix {k} (torn={torn}) of {} ops opened with a mixed state of {} keys",
                            ops.len(),
                            state.len()
                        );
                    }
                }
                Err(StoreError::Open { .. } | StoreError::Corrupt { .. }) => refused += 1,
                Err(other) => panic!("prefix {k}: an unclear error {other:?}"),
            }
        }
    }
    assert!(old > 0, "no crash point kept the old state");
    assert!(
        new > 0,
        "no crash point had the new state (the full replay must)"
    );
    eprintln!(
        "{} ops: {old} crash points open with the old state, {new} with the new, {refused} refuse to open",
        ops.len()
    );
}

/// A store truncated anywhere (a copy cut short, a full disk during a restore) opens
/// with exactly what it held, or refuses with an error naming the file; it never
/// panics, and never opens with part of the data or as a fresh store (which would
/// vote as a new acceptor with nothing).
#[test]
fn a_truncated_store_opens_whole_or_refuses_with_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(STORE_FILE);
    let (id, state) = {
        let (mut store, _) = RedbStore::open(dir.path(), &mut rng(1)).expect("open");
        let batch: Vec<Entry> = (0..100).map(|i| entry(&format!("k{i:03}"), i)).collect();
        store.commit(&batch).expect("commit");
        store.set_root(&root()).expect("set_root");
        (store.acceptor_id(), store.load().expect("load"))
    };
    let whole = std::fs::read(&path).expect("read");
    let mut cuts: Vec<usize> = (0..whole.len()).step_by(whole.len() / 61 + 1).collect();
    cuts.extend([1, 4095, 4096, 4097, whole.len() - 1]);
    let (mut opened, mut refused) = (0, 0);
    for cut in cuts {
        let trial = tempfile::tempdir().expect("tempdir");
        std::fs::write(trial.path().join(STORE_FILE), &whole[..cut]).expect("write");
        match RedbStore::open(trial.path(), &mut rng(2)) {
            Ok((store, how)) => {
                // An empty file is a new store (nothing was there to lose); anything
                // else that opens must be the whole store.
                if cut == 0 {
                    assert_eq!(how, Opened::Created);
                    continue;
                }
                assert_eq!(how, Opened::Existing, "cut at {cut}: opened as a new store");
                assert_eq!(store.acceptor_id(), id, "cut at {cut}");
                assert_eq!(store.load().expect("load"), state, "cut at {cut}: partial");
                opened += 1;
            }
            Err(StoreError::Open { path, reason }) => {
                assert!(
                    path.ends_with(STORE_FILE) && !reason.is_empty(),
                    "cut at {cut}"
                );
                refused += 1;
            }
            Err(other) => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert!(
        refused > 0,
        "no cut was refused: the check is not exercised"
    );
    eprintln!("truncations: {opened} opened whole, {refused} refused");
}

//! Unit tests of the root record and its formation, hand-driven.

use super::*;
use crate::quorum::{AcceptorStore, MemStore};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;

fn voters() -> VoterNames {
    VoterNames::parse("n1,n2,n3").expect("valid voters")
}

fn config(
    name: &str,
    acceptor_id: Option<u64>,
    stored_root: Option<RootRecord>,
) -> FormationConfig {
    FormationConfig {
        name: name.to_owned(),
        voters: voters(),
        acceptor_id,
        stored_root,
        retry: DEFAULT_RETRY,
        seed: 1,
    }
}

fn voter(now: Instant, name: &str, id: u64) -> Formation {
    Formation::new(config(name, Some(id), None), now).expect("valid config")
}

fn root(ids: [u64; 3]) -> RootRecord {
    RootRecord {
        epoch: ROOT_EPOCH,
        quorums: None,
        pending: None,
        voters: vec![
            ("n1".into(), ids[0]),
            ("n2".into(), ids[1]),
            ("n3".into(), ids[2]),
        ],
    }
}

fn drain(f: &mut Formation) -> Vec<FormationOutput> {
    std::iter::from_fn(|| f.poll_output()).collect()
}

/// The nonce of `f`'s ask to `to` among `outs`.
fn ask_to(outs: &[FormationOutput], to: &str) -> Option<u64> {
    outs.iter().find_map(|o| match o {
        FormationOutput::Send { to: t, hello } if t == to => hello.ask,
        _ => None,
    })
}

fn sent_to<'a>(outs: &'a [FormationOutput], to: &str) -> Vec<&'a Hello> {
    outs.iter()
        .filter_map(|o| match o {
            FormationOutput::Send { to: t, hello } if t == to => Some(hello),
            _ => None,
        })
        .collect()
}

/// A hello from voter `name` (acceptor `id`) answering `answer`.
fn from_voter(name: &str, id: u64, root: Option<RootRecord>, answer: Option<u64>) -> Hello {
    Hello {
        name: name.to_owned(),
        acceptor_id: Some(id),
        root,
        voter_names_hash: voters().hash(),
        ask: None,
        answer,
    }
}

/// Instant delivery between formations that persist to `MemStore`s at once.
struct Cluster {
    now: Instant,
    nodes: BTreeMap<String, Formation>,
    stores: BTreeMap<String, MemStore>,
    in_force: BTreeMap<String, Vec<RootRecord>>,
    persists: BTreeMap<String, usize>,
}

impl Cluster {
    fn new(now: Instant, names: &[&str]) -> Self {
        let mut rng = StdRng::seed_from_u64(3);
        let mut c = Self {
            now,
            nodes: BTreeMap::new(),
            stores: BTreeMap::new(),
            in_force: BTreeMap::new(),
            persists: BTreeMap::new(),
        };
        for name in names {
            let id = voters().contains(name).then(|| {
                let store = MemStore::new(&mut rng);
                let id = store.acceptor_id();
                c.stores.insert((*name).to_owned(), store);
                id
            });
            let f = Formation::new(config(name, id, None), now).expect("valid config");
            c.nodes.insert((*name).to_owned(), f);
        }
        c
    }

    /// Deliver everything, then fire the earliest timers, until nobody has a timer (at
    /// most 20 rounds).
    fn run(&mut self) {
        let mut queue: VecDeque<(String, Hello)> = VecDeque::new();
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for _ in 0..20 {
            for n in &names {
                self.flush(n, &mut queue);
            }
            let mut delivered = 0;
            while let Some((to, hello)) = queue.pop_front() {
                delivered += 1;
                assert!(delivered < 10_000, "a message storm");
                if let Some(f) = self.nodes.get_mut(&to) {
                    f.handle_hello(self.now, hello);
                    self.flush(&to, &mut queue);
                }
            }
            let Some(next) = self
                .nodes
                .values()
                .filter_map(Formation::poll_timeout)
                .min()
            else {
                return;
            };
            self.now = self.now.max(next);
            for f in self.nodes.values_mut() {
                f.handle_timeout(self.now);
            }
        }
        panic!("still asking after 20 rounds");
    }

    fn flush(&mut self, name: &str, queue: &mut VecDeque<(String, Hello)>) {
        loop {
            let Some(out) = self.nodes.get_mut(name).and_then(Formation::poll_output) else {
                return;
            };
            match out {
                FormationOutput::Send { to, hello } => queue.push_back((to, hello)),
                FormationOutput::Persist(root) => {
                    let store = self.stores.get_mut(name).expect("voters have stores");
                    store.set_root(&root).expect("durable");
                    *self.persists.entry(name.to_owned()).or_default() += 1;
                    let f = self.nodes.get_mut(name).expect("node");
                    f.handle_persisted(self.now).expect("a root was pending");
                }
                FormationOutput::RootInForce(root) => {
                    self.in_force.entry(name.to_owned()).or_default().push(root);
                }
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Names and hashes

#[test]
fn proposer_ids_are_pinned() {
    // Pinned: every node must map a name to the same ballot node id, in every version.
    assert_eq!(proposer_id("n1"), NodeId(0xcfdc_99a7_df3a_c461));
    assert_eq!(proposer_id("node-2.example"), NodeId(0x8ea1_69b7_69c7_b0ee));
    assert_ne!(proposer_id("n1"), proposer_id("n2"));
}

#[test]
fn voter_names_are_sorted_and_hash_the_same_in_any_order() {
    let a = VoterNames::parse("n3,n1,n2").expect("valid");
    let b = VoterNames::parse(" n1, n2 ,n3").expect("valid");
    assert_eq!(a, b);
    assert_eq!(a.names(), ["n1", "n2", "n3"]);
    assert_eq!(a.creator(), "n1");
    assert!(a.contains("n2") && !a.contains("n4"));
    // Pinned too: nodes of different versions must agree on it.
    assert_eq!(a.hash(), 0x08f9_e109_844a_f6f7);
    let other = VoterNames::parse("n1,n2,n4").expect("valid");
    assert_ne!(other.hash(), a.hash());
    // The separator keeps "n1,n2n3" apart from "n1n2,n3".
    let x = VoterNames::new(["a", "bc", "d"]).expect("valid");
    let y = VoterNames::new(["ab", "c", "d"]).expect("valid");
    assert_ne!(x.hash(), y.hash());
}

#[test]
fn voter_lists_of_the_wrong_size_with_duplicates_or_bad_names_are_refused() {
    assert_eq!(VoterNames::parse("n1,n2"), Err(VotersError::Count(2)));
    assert_eq!(VoterNames::parse("n1,n2,n3,n4"), Err(VotersError::Count(4)));
    assert_eq!(
        VoterNames::parse("n1,n2,n1"),
        Err(VotersError::Duplicate("n1".into()))
    );
    assert!(matches!(
        VoterNames::parse("n1,,n3"),
        Err(VotersError::Name(_))
    ));
    assert!(matches!(
        VoterNames::parse("n1,bad name,n3"),
        Err(VotersError::Name(_))
    ));
    assert!(VoterNames::parse("a,b,c,d,e").is_ok());
}

#[test]
fn a_root_routes_acceptor_ids_to_voter_names() {
    let r = root([11, 12, 13]);
    assert_eq!(r.acceptor_ids(), [NodeId(11), NodeId(12), NodeId(13)]);
    assert_eq!(r.acceptor_of("n2"), Some(NodeId(12)));
    assert_eq!(r.voter_of(NodeId(13)), Some("n3"));
    assert_eq!(r.voter_of(NodeId(99)), None);
}

#[test]
fn a_misconfigured_node_is_refused_at_start() {
    let now = Instant::now();
    let err = |c| Formation::new(c, now).expect_err("refused");
    assert_eq!(
        err(config("n1", None, None)),
        FormationError::MissingAcceptorId("n1".into())
    );
    assert_eq!(
        err(config("c1", Some(5), None)),
        FormationError::NotAVoterStore("c1".into())
    );
    assert_eq!(
        err(config("c1", None, Some(root([1, 2, 3])))),
        FormationError::NotAVoterStore("c1".into())
    );
    assert_eq!(
        err(config("n1", Some(0), None)),
        FormationError::ZeroAcceptorId
    );
    assert!(matches!(
        err(config("bad name", None, None)),
        FormationError::Name(_)
    ));
    let mut c = config("n1", Some(1), None);
    c.retry = Duration::ZERO;
    assert_eq!(err(c), FormationError::ZeroRetry);
}

// ---------------------------------------------------------------------------------------
// Formation

#[test]
fn three_voters_and_a_client_form_one_root_listing_every_acceptor_id() {
    let mut c = Cluster::new(Instant::now(), &["n1", "n2", "n3", "c1"]);
    c.run();
    let ids: Vec<(String, u64)> = c
        .stores
        .iter()
        .map(|(n, s)| (n.clone(), s.acceptor_id()))
        .collect();
    let expected = RootRecord {
        epoch: ROOT_EPOCH,
        quorums: None,
        pending: None,
        voters: ids,
    };
    for (name, f) in &c.nodes {
        assert_eq!(f.root_in_force(), Some(&expected), "{name}");
        assert_eq!(c.in_force[name].len(), 1, "{name}: RootInForce once");
        assert_eq!(c.in_force[name][0], expected, "{name}");
        assert_eq!(f.is_acceptor(), name != "c1", "{name}");
    }
    assert_eq!(
        c.nodes["c1"].state(),
        &FormationState::NonVoter(expected.clone())
    );
    for (name, store) in &c.stores {
        assert_eq!(
            store.root().expect("readable"),
            Some(expected.clone()),
            "{name}"
        );
        assert_eq!(c.persists[name], 1, "{name} persisted once");
    }
    let created: u64 = c.nodes.values().map(|f| f.stats().roots_created).sum();
    assert_eq!((created, c.nodes["n1"].stats().roots_created), (1, 1));
    // Quiet afterwards: nobody asks any more once everyone showed the root.
    assert!(c.nodes.values().all(|f| f.poll_timeout().is_none()));
}

#[test]
fn the_creator_waits_for_a_fresh_answer_from_every_other_voter() {
    let now = Instant::now();
    let mut n1 = voter(now, "n1", 11);
    let outs = drain(&mut n1);
    let (to2, to3) = (ask_to(&outs, "n2"), ask_to(&outs, "n3"));
    n1.handle_hello(now, from_voter("n2", 12, None, to2));
    assert!(drain(&mut n1).is_empty(), "no root with one voter missing");
    assert_eq!(n1.state(), &FormationState::Forming);
    // An unsolicited hello from n3 is no answer either.
    n1.handle_hello(now, from_voter("n3", 13, None, None));
    assert!(drain(&mut n1).is_empty());
    n1.handle_hello(now, from_voter("n3", 13, None, to3));
    assert_eq!(
        drain(&mut n1),
        [FormationOutput::Persist(root([11, 12, 13]))]
    );
    assert_eq!(n1.state(), &FormationState::Persisting(root([11, 12, 13])));
    assert!(!n1.is_acceptor(), "not in force before it is durable");
}

#[test]
fn only_the_smallest_named_voter_creates_the_root() {
    let now = Instant::now();
    let mut n2 = voter(now, "n2", 12);
    let outs = drain(&mut n2);
    n2.handle_hello(now, from_voter("n1", 11, None, ask_to(&outs, "n1")));
    n2.handle_hello(now, from_voter("n3", 13, None, ask_to(&outs, "n3")));
    assert!(drain(&mut n2).is_empty());
    assert_eq!(n2.state(), &FormationState::Forming);
    assert_eq!(n2.stats().roots_created, 0);
}

#[test]
fn a_voter_persists_an_adopted_root_before_acting_on_it_or_reporting_it() {
    let now = Instant::now();
    let mut n2 = voter(now, "n2", 12);
    let outs = drain(&mut n2);
    let r = root([11, 12, 13]);
    n2.handle_hello(
        now,
        from_voter("n1", 11, Some(r.clone()), ask_to(&outs, "n1")),
    );
    assert_eq!(drain(&mut n2), [FormationOutput::Persist(r.clone())]);
    // n3 asks meanwhile: the answer waits until the root is durable.
    let ask = Hello {
        ask: Some(77),
        ..from_voter("n3", 13, None, None)
    };
    n2.handle_hello(now, ask);
    assert!(drain(&mut n2).is_empty());
    assert_eq!(n2.stats().asks_deferred, 1);
    n2.handle_persisted(now).expect("pending");
    let outs = drain(&mut n2);
    assert_eq!(outs[0], FormationOutput::RootInForce(r.clone()));
    let answer = sent_to(&outs, "n3");
    assert_eq!(answer.len(), 1);
    assert_eq!(
        (answer[0].answer, &answer[0].root),
        (Some(77), &Some(r.clone()))
    );
    assert_eq!(n2.state(), &FormationState::Voter(r));
    assert!(n2.is_acceptor());
}

#[test]
fn a_client_takes_the_root_only_from_a_majority_of_the_voters() {
    let now = Instant::now();
    let mut c1 = Formation::new(config("c1", None, None), now).expect("valid");
    let outs = drain(&mut c1);
    let r = root([11, 12, 13]);
    c1.handle_hello(
        now,
        from_voter("n1", 11, Some(r.clone()), ask_to(&outs, "n1")),
    );
    assert_eq!(
        c1.root_in_force(),
        None,
        "one voter could be a creator about to be wiped"
    );
    c1.handle_hello(
        now,
        from_voter("n2", 12, Some(r.clone()), ask_to(&outs, "n2")),
    );
    assert_eq!(drain(&mut c1), [FormationOutput::RootInForce(r.clone())]);
    assert_eq!(c1.state(), &FormationState::NonVoter(r));
    assert!(!c1.is_acceptor());
}

#[test]
fn a_stored_root_is_in_force_at_boot_without_any_message() {
    let now = Instant::now();
    let r = root([11, 12, 13]);
    let mut n2 = Formation::new(config("n2", Some(12), Some(r.clone())), now).expect("valid");
    assert_eq!(drain(&mut n2), [FormationOutput::RootInForce(r.clone())]);
    assert!(n2.is_acceptor());
    assert_eq!(n2.poll_timeout(), None, "only the creator pushes the root");
    // The creator pushes it to every voter that has not shown it yet.
    let mut n1 = Formation::new(config("n1", Some(11), Some(r.clone())), now).expect("valid");
    let outs = drain(&mut n1);
    assert_eq!(sent_to(&outs, "n2")[0].root, Some(r.clone()));
    assert!(ask_to(&outs, "n3").is_some());
    let nonce = ask_to(&outs, "n2");
    n1.handle_hello(now, from_voter("n2", 12, Some(r.clone()), nonce));
    n1.handle_timeout(now + DEFAULT_RETRY);
    let outs = drain(&mut n1);
    assert!(sent_to(&outs, "n2").is_empty(), "n2 acked");
    assert_eq!(sent_to(&outs, "n3").len(), 1, "n3 did not");
}

#[test]
fn a_wiped_voter_adopts_the_root_but_never_acts_as_an_acceptor() {
    let now = Instant::now();
    let r = root([11, 12, 13]);
    // n2's store was wiped: it has acceptor id 0x99 now and no root.
    let mut n2 = voter(now, "n2", 0x99);
    let outs = drain(&mut n2);
    n2.handle_hello(
        now,
        from_voter("n1", 11, Some(r.clone()), ask_to(&outs, "n1")),
    );
    assert_eq!(drain(&mut n2), [FormationOutput::Persist(r.clone())]);
    n2.handle_persisted(now).expect("pending");
    assert_eq!(drain(&mut n2)[0], FormationOutput::RootInForce(r.clone()));
    assert_eq!(
        n2.state(),
        &FormationState::NotAVoter {
            root: r.clone(),
            reason: "wiped: acceptor id 0000000000000099, root lists 000000000000000c".into()
        }
    );
    assert!(!n2.is_acceptor());
    assert_eq!(
        n2.root_in_force(),
        Some(&r),
        "it still proposes as a client"
    );
    // After a restart, from its own store, the same.
    let again = Formation::new(config("n2", Some(0x99), Some(r)), now).expect("valid");
    assert!(matches!(again.state(), FormationState::NotAVoter { .. }));
}

#[test]
fn a_voter_seen_with_a_new_acceptor_id_is_asked_again_by_the_creator() {
    let mut c = Cluster::new(Instant::now(), &["n1", "n2", "n3"]);
    c.run();
    let r = c.nodes["n1"].root_in_force().cloned().expect("formed");
    // n3 is wiped and restarts: a new store, a new id.
    let store = MemStore::new(&mut StdRng::seed_from_u64(99));
    let id = store.acceptor_id();
    c.stores.insert("n3".into(), store);
    c.nodes.insert(
        "n3".into(),
        Formation::new(config("n3", Some(id), None), c.now).expect("valid"),
    );
    c.run();
    let n3 = &c.nodes["n3"];
    assert!(matches!(n3.state(), FormationState::NotAVoter { .. }));
    assert_eq!(n3.root_in_force(), Some(&r));
    assert_eq!(c.stores["n3"].root().expect("readable"), Some(r.clone()));
    assert!(
        c.nodes["n1"].stats().peer_lives_changed + c.nodes["n2"].stats().peer_lives_changed >= 1
    );
    assert_eq!(
        c.nodes["n1"].root_in_force(),
        Some(&r),
        "the root never changes"
    );
}

#[test]
fn a_stale_answer_is_dropped_and_counted() {
    let now = Instant::now();
    let mut n2 = voter(now, "n2", 12);
    let outs = drain(&mut n2);
    let nonce = ask_to(&outs, "n1");
    let r = root([11, 12, 13]);
    n2.handle_hello(now, from_voter("n1", 11, None, nonce));
    // A duplicate of the same answer, now carrying a root: the nonce was used up.
    n2.handle_hello(now, from_voter("n1", 11, Some(r.clone()), nonce));
    n2.handle_hello(now, from_voter("n1", 11, Some(r), nonce.map(|n| n ^ 1)));
    assert!(drain(&mut n2).is_empty());
    assert_eq!(n2.state(), &FormationState::Forming);
    assert_eq!((n2.stats().fresh_answers, n2.stats().stale_answers), (1, 2));
}

#[test]
fn a_root_from_a_wiped_creators_earlier_life_is_not_taken_once_its_new_life_was_heard() {
    let now = Instant::now();
    let old_root = root([11, 12, 13]);
    let mut n2 = voter(now, "n2", 12);
    let first_ask = ask_to(&drain(&mut n2), "n1");
    // n1 was wiped (11 -> 21); its new life asks n2, which answers "no root".
    let new_life = Hello {
        ask: Some(5),
        ..from_voter("n1", 21, None, None)
    };
    n2.handle_hello(now, new_life);
    let outs = drain(&mut n2);
    assert_eq!(sent_to(&outs, "n1")[0].root, None);
    // Now the old life's answer to n2's first ask arrives, late, with its root.
    n2.handle_hello(now, from_voter("n1", 11, Some(old_root), first_ask));
    assert!(
        drain(&mut n2).is_empty(),
        "the old life's root is not taken"
    );
    assert_eq!(n2.state(), &FormationState::Forming);
    assert_eq!(n2.stats().stale_answers, 1);
    assert_eq!(n2.stats().peer_lives_changed, 1);
}

#[test]
fn a_root_taken_from_a_creators_earlier_life_is_passed_on_to_its_new_life() {
    let now = Instant::now();
    let old_root = root([11, 12, 13]);
    let mut n2 = voter(now, "n2", 12);
    let first_ask = ask_to(&drain(&mut n2), "n1");
    n2.handle_hello(now, from_voter("n1", 11, Some(old_root.clone()), first_ask));
    assert_eq!(drain(&mut n2), [FormationOutput::Persist(old_root.clone())]);
    n2.handle_persisted(now).expect("pending");
    drain(&mut n2);
    // The new life of n1 (wiped) asks; it learns the old root, and adopts it.
    n2.handle_hello(
        now,
        Hello {
            ask: Some(5),
            ..from_voter("n1", 21, None, None)
        },
    );
    let outs = drain(&mut n2);
    let answer = sent_to(&outs, "n1");
    assert_eq!(
        (answer[0].answer, &answer[0].root),
        (Some(5), &Some(old_root.clone()))
    );
    let mut n1 = voter(now, "n1", 21);
    let outs = drain(&mut n1);
    n1.handle_hello(
        now,
        from_voter("n2", 12, Some(old_root.clone()), ask_to(&outs, "n2")),
    );
    assert_eq!(drain(&mut n1), [FormationOutput::Persist(old_root)]);
    assert_eq!(n1.stats().roots_created, 0);
}

#[test]
fn a_voter_with_another_voter_set_stops_formation_and_nothing_is_merged() {
    let now = Instant::now();
    let mut n1 = voter(now, "n1", 11);
    let outs = drain(&mut n1);
    let theirs = VoterNames::parse("n1,n3,n9").expect("valid");
    let odd = Hello {
        voter_names_hash: theirs.hash(),
        ask: Some(4),
        ..from_voter("n3", 13, None, ask_to(&outs, "n3"))
    };
    n1.handle_hello(now, odd);
    let outs = drain(&mut n1);
    let answer = sent_to(&outs, "n3");
    assert_eq!((answer[0].answer, &answer[0].root), (Some(4), &None));
    assert!(matches!(
        &outs[0],
        FormationOutput::ConfigMismatch { peer: Some(p), reason } if p == "n3" && reason.contains("n1,n2,n3")
    ));
    assert!(matches!(n1.state(), FormationState::ConfigMismatch { .. }));
    assert_eq!(n1.poll_timeout(), None);
    // From now on: no root, no answers, whatever arrives.
    n1.handle_hello(now, from_voter("n2", 12, None, ask_to(&outs, "n2")));
    n1.handle_hello(
        now,
        Hello {
            ask: Some(6),
            ..from_voter("n2", 12, Some(root([11, 12, 13])), None)
        },
    );
    assert!(drain(&mut n1).is_empty());
    assert!(matches!(n1.state(), FormationState::ConfigMismatch { .. }));
    assert_eq!(n1.stats().config_mismatches, 1);
    assert_eq!(n1.stats().asks_refused, 1);
    // Peers of another configuration are still answered, so that they refuse too.
    n1.handle_hello(
        now,
        Hello {
            voter_names_hash: theirs.hash(),
            ask: Some(8),
            ..from_voter("n3", 13, None, None)
        },
    );
    assert_eq!(sent_to(&drain(&mut n1), "n3")[0].answer, Some(8));
}

#[test]
fn a_node_in_force_reports_a_mismatched_peer_once_and_keeps_its_root() {
    let now = Instant::now();
    let r = root([11, 12, 13]);
    let mut n2 = Formation::new(config("n2", Some(12), Some(r.clone())), now).expect("valid");
    drain(&mut n2);
    let odd = Hello {
        voter_names_hash: 42,
        ask: Some(3),
        ..from_voter("n3", 13, None, None)
    };
    n2.handle_hello(now, odd.clone());
    n2.handle_hello(now, odd);
    let outs = drain(&mut n2);
    let reports = outs
        .iter()
        .filter(|o| matches!(o, FormationOutput::ConfigMismatch { .. }))
        .count();
    assert_eq!(reports, 1);
    // It is answered (so it sees our configuration) but without our root.
    assert!(sent_to(&outs, "n3").iter().all(|h| h.root.is_none()));
    assert_eq!(n2.state(), &FormationState::Voter(r));
    assert_eq!(n2.stats().config_mismatches, 2);
}

#[test]
fn a_stored_root_of_another_voter_set_is_refused_at_boot() {
    let now = Instant::now();
    let foreign = RootRecord {
        epoch: ROOT_EPOCH,
        quorums: None,
        pending: None,
        voters: vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
    };
    let mut n1 = Formation::new(config("n1", Some(11), Some(foreign)), now).expect("starts");
    let outs = drain(&mut n1);
    assert!(matches!(
        &outs[..],
        [FormationOutput::ConfigMismatch { peer: None, .. }]
    ));
    assert!(matches!(n1.state(), FormationState::ConfigMismatch { .. }));
    assert_eq!(n1.root_in_force(), None);
}

#[test]
fn hellos_with_bad_names_roles_or_roots_are_dropped_and_counted() {
    let now = Instant::now();
    let mut n2 = voter(now, "n2", 12);
    let outs = drain(&mut n2);
    let nonce = ask_to(&outs, "n1");
    let bad = [
        from_voter("n2", 12, None, None),       // our own name
        from_voter("bad name", 12, None, None), // not a node name
        from_voter("c1", 77, None, None),       // a non-voter with an acceptor id
        Hello {
            acceptor_id: None,
            ..from_voter("n1", 11, None, nonce)
        }, // a voter without one
        from_voter("n1", 0, None, nonce),       // acceptor id 0
    ];
    for hello in bad {
        n2.handle_hello(now, hello);
    }
    assert_eq!(n2.stats().bad_hellos, 5);
    let bad_roots = [
        RootRecord {
            epoch: 2,
            quorums: None,
            pending: None,
            ..root([11, 12, 13])
        },
        root([11, 11, 13]),
        root([11, 0, 13]),
        RootRecord {
            epoch: 1,
            quorums: None,
            pending: None,
            voters: vec![("n1".into(), 11), ("n2".into(), 12)],
        },
    ];
    for r in bad_roots {
        n2.handle_hello(now, from_voter("n1", 11, Some(r), nonce));
    }
    assert_eq!(n2.stats().bad_roots, 4);
    assert!(drain(&mut n2).is_empty());
    assert_eq!(n2.state(), &FormationState::Forming);
    // The nonce was not used up by any of them.
    n2.handle_hello(now, from_voter("n1", 11, Some(root([11, 12, 13])), nonce));
    assert!(matches!(drain(&mut n2)[..], [FormationOutput::Persist(_)]));
}

#[test]
fn a_fresh_report_of_another_root_is_a_conflict_never_a_merge() {
    let now = Instant::now();
    let r = root([11, 12, 13]);
    let mut n1 = Formation::new(config("n1", Some(11), Some(r.clone())), now).expect("valid");
    let outs = drain(&mut n1);
    let other = root([11, 12, 31]);
    for _ in 0..2 {
        n1.handle_hello(
            now,
            from_voter("n3", 13, Some(other.clone()), ask_to(&outs, "n3")),
        );
    }
    let outs = drain(&mut n1);
    assert_eq!(
        outs,
        [FormationOutput::RootConflict {
            peer: "n3".into(),
            theirs: other
        }]
    );
    assert_eq!(n1.root_in_force(), Some(&r));
    assert_eq!(n1.stats().root_conflicts, 1, "the second copy was stale");
}

#[test]
fn answers_carry_no_ask_so_two_forming_voters_do_not_answer_each_other_forever() {
    let now = Instant::now();
    let (mut n2, mut n3) = (voter(now, "n2", 12), voter(now, "n3", 13));
    let mut to_n3: Vec<Hello> = sent_to(&drain(&mut n2), "n3")
        .into_iter()
        .cloned()
        .collect();
    let mut to_n2: Vec<Hello> = sent_to(&drain(&mut n3), "n2")
        .into_iter()
        .cloned()
        .collect();
    for _ in 0..3 {
        for h in std::mem::take(&mut to_n3) {
            n3.handle_hello(now, h);
        }
        for h in std::mem::take(&mut to_n2) {
            n2.handle_hello(now, h);
        }
        to_n2.extend(sent_to(&drain(&mut n3), "n2").into_iter().cloned());
        to_n3.extend(sent_to(&drain(&mut n2), "n3").into_iter().cloned());
    }
    assert!(
        to_n2.is_empty() && to_n3.is_empty(),
        "still talking without a timer"
    );
    assert_eq!(n2.stats().fresh_answers + n3.stats().fresh_answers, 2);
}

#[test]
fn handle_persisted_without_a_pending_root_is_refused() {
    let now = Instant::now();
    let mut n1 = voter(now, "n1", 11);
    drain(&mut n1);
    assert_eq!(
        n1.handle_persisted(now),
        Err(PersistedError::NothingPending)
    );
    assert_eq!(n1.state(), &FormationState::Forming);
    assert!(drain(&mut n1).is_empty());
}

#[test]
fn unanswered_asks_are_repeated_every_retry_with_the_same_nonce() {
    let now = Instant::now();
    let mut n2 = voter(now, "n2", 12);
    let first = drain(&mut n2);
    assert_eq!(first.len(), 2, "asks n1 and n3 at once");
    assert_eq!(n2.poll_timeout(), Some(now + DEFAULT_RETRY));
    n2.handle_timeout(now + DEFAULT_RETRY / 2);
    assert!(drain(&mut n2).is_empty(), "not due yet");
    n2.handle_timeout(now + DEFAULT_RETRY);
    let again = drain(&mut n2);
    assert_eq!(ask_to(&again, "n1"), ask_to(&first, "n1"));
    assert_eq!(n2.poll_timeout(), Some(now + 2 * DEFAULT_RETRY));
    assert_eq!(n2.stats().asks_sent, 4);
}

#[test]
fn nonces_come_from_the_seed() {
    let now = Instant::now();
    let asks = |seed| {
        let mut c = config("n2", Some(12), None);
        c.seed = seed;
        let mut f = Formation::new(c, now).expect("valid");
        ask_to(&drain(&mut f), "n1")
    };
    assert_eq!(asks(1), asks(1));
    assert_ne!(asks(1), asks(2));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Mostly the real root or none; sometimes a malformed one.
    fn any_root() -> impl Strategy<Value = Option<RootRecord>> {
        let ids = prop::collection::vec(0u64..4, 3);
        let names = prop::sample::select(vec!["n1,n2,n3", "n1,n2,n4", "n1,n2"]);
        let odd = (0u64..3, ids, names).prop_map(|(epoch, ids, names)| RootRecord {
            epoch,
            quorums: None,
            pending: None,
            voters: names
                .split(',')
                .zip(ids)
                .map(|(n, id)| (n.to_owned(), id + 10))
                .collect(),
        });
        prop_oneof![
            3 => Just(None),
            3 => Just(Some(root([11, 12, 13]))),
            2 => odd.prop_map(Some),
        ]
    }

    /// Mostly well-formed hellos of our voters (with their ids) and a client; sometimes
    /// anything.
    fn any_hello() -> impl Strategy<Value = Hello> {
        let who = prop_oneof![
            4 => prop::sample::select(vec![("n1", Some(11)), ("n2", Some(12)), ("n3", Some(13))]),
            1 => Just(("c1", None)),
            1 => prop::sample::select(vec![
                ("n3", Some(31)),
                ("n2", None),
                ("c1", Some(5)),
                ("bad name", None),
                ("", Some(11)),
            ]),
        ];
        let hash = prop_oneof![4 => Just(voters().hash()), 1 => any::<u64>()];
        (
            who,
            any_root(),
            hash,
            prop::option::of(0u64..3),
            prop::option::of(0u64..3),
        )
            .prop_map(|((name, id), root, hash, ask, answer)| Hello {
                name: name.to_owned(),
                acceptor_id: id,
                root,
                voter_names_hash: hash,
                ask,
                answer,
            })
    }

    proptest! {
        /// Whatever peers send: no panic, every hello counted, a root in force or being
        /// persisted is always a valid root of our configuration, only the creator ever
        /// creates one, and a client never holds a root fewer than two voters reported.
        #[test]
        fn arbitrary_hellos_never_break_formation(
            name in prop::sample::select(vec!["n1", "n2", "c1"]),
            hellos in prop::collection::vec(any_hello(), 0..60),
            guess_nonces in any::<bool>(),
        ) {
            let now = Instant::now();
            let id = (name != "c1").then_some(if name == "n1" { 11 } else { 12 });
            let mut f = Formation::new(config(name, id, None), now).expect("valid");
            let mut asked: BTreeMap<String, u64> = BTreeMap::new();
            for (i, mut hello) in hellos.into_iter().enumerate() {
                for out in drain(&mut f) {
                    match out {
                        FormationOutput::Send { to, hello: h } => {
                            if let Some(nonce) = h.ask {
                                asked.insert(to, nonce);
                            }
                        }
                        FormationOutput::Persist(_) => {
                            f.handle_persisted(now).expect("pending");
                        }
                        _ => {}
                    }
                }
                // Half the runs answer the nonce last asked of the sender, so that answers
                // are often fresh.
                if guess_nonces && hello.answer.is_some() {
                    hello.answer = asked.get(&hello.name).copied().or(hello.answer);
                }
                if i % 8 == 7 {
                    f.handle_timeout(now + DEFAULT_RETRY * (i as u32 + 1));
                }
                f.handle_hello(now, hello);
                prop_assert_eq!(f.stats().hellos, i as u64 + 1);
                let held = match f.state() {
                    FormationState::Persisting(r) => Some(r),
                    _ => f.root_in_force(),
                };
                if let Some(r) = held {
                    prop_assert!(r.check(&voters()).is_ok(), "{:?}", r);
                }
                prop_assert!(name == "n1" || f.stats().roots_created == 0);
                if name == "c1" && f.root_in_force().is_some() {
                    prop_assert!(f.stats().fresh_answers >= 2);
                }
            }
        }
    }
}

//! Invariant 5: incarnations. A newer incarnation of an origin purges the older one's
//! entries at once and older-incarnation dots arriving later are ignored; a purged
//! (retired) incarnation never returns, and its owner comes back only by reincarnating.

mod common;

use common::{config, live_dots, Node, State};
use mesh_crdt::{ChangeKind, Replica};
use proptest::prelude::*;

/// Runs `script` (element, add?) on `owner`, returning every delta it produced.
fn play(owner: &mut Node, script: &[(u8, bool)]) -> Vec<State> {
    let mut out = Vec::new();
    for &(element, add) in script {
        if add {
            out.push(owner.add(element));
        } else if let Ok(d) = owner.remove(&element) {
            out.push(d);
        }
    }
    out
}

fn script() -> impl Strategy<Value = Vec<(u8, bool)>> {
    prop::collection::vec((0u8..6, prop::bool::weighted(0.7)), 0..30)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_new_incarnation_purges_the_old_one_and_old_dots_never_return(
        old_script in script(),
        new_script in script(),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..120),
    ) {
        let mut old = Replica::new(0u8, 1);
        let mut messages = play(&mut old, &old_script);
        messages.push(old.state().clone());
        let mut new = Replica::new(0u8, 2);
        messages.push(new.announce());
        messages.extend(play(&mut new, &new_script));

        // Deliver a random sequence (with repeats), then everything once more.
        let mut observer = State::new();
        let picks: Vec<usize> = order.iter().map(|i| i.index(messages.len())).collect();
        for i in picks.into_iter().chain(0..messages.len()) {
            let report = observer.merge(&messages[i]);
            if observer.incarnation_of(&0) == Some(2) {
                for dot in live_dots(&observer).keys() {
                    prop_assert_eq!(dot.incarnation, 2, "old dot {:?} is live", dot);
                }
                for change in &report.changes {
                    if change.dot.incarnation == 1 {
                        prop_assert_eq!(&change.kind, &ChangeKind::Purged);
                    }
                }
            }
        }
        prop_assert_eq!(observer.incarnation_of(&0), Some(2));
        prop_assert_eq!(live_dots(&observer), live_dots(new.state()));
        prop_assert_eq!(&observer, new.state());
    }

    #[test]
    fn a_purged_incarnation_never_returns_and_its_owner_comes_back_by_reincarnating(
        script in script(),
        before in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        after in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let mut owner = Replica::new(0u8, 1);
        let mut messages = play(&mut owner, &script);
        messages.push(owner.state().clone());
        let mut observer: Node = Replica::new(1, 1);
        for i in &before {
            observer.merge(&messages[i.index(messages.len())]);
        }
        // Permdown: the observer purges the owner's incarnation.
        let marker = match observer.purge_origin(&0) {
            Ok(purged) => purged.delta,
            Err(_) => {
                // Never heard of it: learn the incarnation from its state, then purge.
                observer.merge(owner.state());
                observer.purge_origin(&0).expect("known and live").delta
            }
        };
        prop_assert!(observer.state().elements_of(&0).next().is_none());
        // Late deltas and stale states of the purged incarnation change nothing.
        for i in after.iter().map(|i| i.index(messages.len())).chain(0..messages.len()) {
            let report = observer.merge(&messages[i]);
            prop_assert!(report.changes.is_empty());
        }
        prop_assert!(observer.state().is_retired(&0));
        // The owner hears of its purge, keeps its entries, and reincarnates.
        let report = owner.merge(&marker);
        prop_assert_eq!(report.own_incarnation_superseded_by, Some(1));
        prop_assert!(report.changes.is_empty());
        let elements_before: Vec<_> = owner.state().elements_of(&0).map(|(e, n)| (*e, n)).collect();
        let back = owner.reincarnate(2).expect("newer");
        let elements_after: Vec<_> = owner.state().elements_of(&0).map(|(e, n)| (*e, n)).collect();
        prop_assert_eq!(&elements_before, &elements_after);
        observer.merge(&back);
        let seen: Vec<_> = observer.state().elements_of(&0).map(|(e, n)| (*e, n)).collect();
        prop_assert_eq!(seen, elements_after);
        // And the old incarnation still cannot come back.
        for m in &messages {
            prop_assert!(observer.merge(m).changes.is_empty());
        }
    }

    #[test]
    fn stale_incarnations_are_ignored_whatever_the_order(
        scripts in prop::collection::vec(script(), 2..5),
        order in prop::collection::vec(any::<prop::sample::Index>(), 1..150),
    ) {
        // Several boots of one origin, each with its own deltas; any delivery order.
        let mut messages = Vec::new();
        let mut last = State::new();
        for (k, s) in scripts.iter().enumerate() {
            let mut boot = Replica::new(0u8, k as u64 + 1);
            messages.push(boot.announce());
            messages.extend(play(&mut boot, s));
            last = boot.state().clone();
        }
        let newest = scripts.len() as u64;
        let mut observer = State::new();
        let mut highest = 0;
        for i in order.iter().map(|i| i.index(messages.len())).chain(0..messages.len()) {
            observer.merge(&messages[i]);
            let inc = observer.incarnation_of(&0).expect("known");
            prop_assert!(inc >= highest, "went back from {} to {}", highest, inc);
            highest = inc;
            for dot in live_dots(&observer).keys() {
                prop_assert_eq!(dot.incarnation, inc);
            }
        }
        prop_assert_eq!(highest, newest);
        prop_assert_eq!(&observer, &last);
    }
}

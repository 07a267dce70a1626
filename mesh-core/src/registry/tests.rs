//! Unit tests of the registry: `pg` semantics, validation, monitors, the two-phase node
//! failure, incarnations and name conflicts, each driven by hand.

use std::time::{Duration, Instant};

use super::*;
use crate::hlc::Hlc;

const PERMDOWN: Duration = Duration::from_secs(10);

fn reg(node: &str) -> Registry {
    reg_at(node, 1)
}

fn reg_at(node: &str, incarnation: u64) -> Registry {
    Registry::new(
        node.to_owned(),
        incarnation,
        RegistryConfig { permdown: PERMDOWN },
    )
}

fn pid(node: &str, id: u64) -> Pid {
    Pid::new(node, 1, id)
}

fn g(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn drain(r: &mut Registry) -> Vec<RegistryOutput> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

/// Merges every delta in `outs` into `to` (what `to` outputs stays queued on `to`).
fn deliver(now: Instant, outs: &[RegistryOutput], to: &mut Registry) {
    for o in outs {
        match o {
            RegistryOutput::GroupsDelta { delta, exited } => {
                to.merge_groups(now, delta, exited).expect("valid delta");
            }
            RegistryOutput::NamesDelta(delta) => {
                to.merge_names(now, delta).expect("valid delta");
            }
            _ => {}
        }
    }
}

/// Moves `from`'s queued deltas to `to`; returns all of `from`'s outputs.
fn flush(now: Instant, from: &mut Registry, to: &mut Registry) -> Vec<RegistryOutput> {
    let outs = drain(from);
    deliver(now, &outs, to);
    outs
}

/// One push-pull anti-entropy round between `a` and `b`, both replicas.
fn anti_entropy(now: Instant, a: &mut Registry, b: &mut Registry) {
    let to_b = a.groups().missing_for(&b.groups().digest());
    let to_a = b.groups().missing_for(&a.groups().digest());
    b.merge_groups(now, &to_b, &[]).expect("valid");
    a.merge_groups(now, &to_a, &[]).expect("valid");
    let to_b = a.names().missing_for(&b.names().digest());
    let to_a = b.names().missing_for(&a.names().digest());
    b.merge_names(now, &to_b).expect("valid");
    a.merge_names(now, &to_a).expect("valid");
}

fn events(outs: &[RegistryOutput], id: MonitorId) -> Vec<(String, Pid, EventReason)> {
    outs.iter()
        .filter_map(|o| match o {
            RegistryOutput::Monitor { id: i, event } if *i == id => {
                Some((event.group.clone(), event.pid.clone(), event.reason))
            }
            _ => None,
        })
        .collect()
}

fn conflicts(outs: &[RegistryOutput]) -> Vec<(String, Pid, Pid)> {
    outs.iter()
        .filter_map(|o| match o {
            RegistryOutput::NameConflict {
                name,
                loser,
                winner,
            } => Some((name.clone(), loser.clone(), winner.clone())),
            _ => None,
        })
        .collect()
}

fn deltas(outs: &[RegistryOutput]) -> (usize, usize) {
    let groups = outs
        .iter()
        .filter(|o| matches!(o, RegistryOutput::GroupsDelta { .. }))
        .count();
    let names = outs
        .iter()
        .filter(|o| matches!(o, RegistryOutput::NamesDelta(_)))
        .count();
    (groups, names)
}

// --- pg semantics ----------------------------------------------------------------------

#[test]
fn joining_twice_takes_two_leaves() {
    let now = Instant::now();
    let mut r = reg("n1");
    let p = pid("n1", 1);
    r.join(now, "s", &g(&["a"]), &p, None).expect("accepted");
    r.join(now, "s", &g(&["a"]), &p, None).expect("accepted");
    assert_eq!(r.members("s", "a"), vec![p.clone(), p.clone()]);
    assert_eq!(r.member_count("s", "a"), 2);
    assert_eq!(r.members_with_meta("s", "a"), vec![(p.clone(), 2, None)]);
    r.leave(now, "s", &g(&["a"]), &p).expect("accepted");
    assert_eq!(r.members("s", "a"), vec![p.clone()]);
    r.leave(now, "s", &g(&["a"]), &p).expect("accepted");
    assert!(r.members("s", "a").is_empty());
    assert_eq!(
        r.leave(now, "s", &g(&["a"]), &p),
        Err(LeaveError::NotJoined)
    );
}

#[test]
fn a_group_listed_twice_is_joined_twice_and_left_as_often_as_joined() {
    let now = Instant::now();
    let mut r = reg("n1");
    let p = pid("n1", 1);
    r.join(now, "s", &g(&["a", "a", "b"]), &p, None)
        .expect("accepted");
    assert_eq!(r.member_count("s", "a"), 2);
    assert_eq!(r.member_count("s", "b"), 1);
    // Leaving "b" twice removes its one occurrence and succeeds.
    r.leave(now, "s", &g(&["b", "b"]), &p).expect("accepted");
    assert_eq!(r.member_count("s", "b"), 0);
    assert_eq!(r.member_count("s", "a"), 2);
}

#[test]
fn leave_fails_with_not_joined_only_if_none_of_the_groups_was_joined() {
    let now = Instant::now();
    let mut r = reg("n1");
    let p = pid("n1", 1);
    r.join(now, "s", &g(&["a"]), &p, None).expect("accepted");
    drain(&mut r);
    r.leave(now, "s", &g(&["x", "a"]), &p).expect("accepted");
    assert!(r.members("s", "a").is_empty());
    assert_eq!(deltas(&drain(&mut r)), (1, 0));
    let digest = r.groups().digest();
    assert_eq!(
        r.leave(now, "s", &g(&["x", "a"]), &p),
        Err(LeaveError::NotJoined)
    );
    assert!(drain(&mut r).is_empty(), "a refused leave queues nothing");
    assert_eq!(r.groups().digest(), digest);
}

#[test]
fn an_empty_group_never_appears() {
    let now = Instant::now();
    let mut r = reg("n1");
    let (p, q) = (pid("n1", 1), pid("n1", 2));
    r.join(now, "s", &g(&["a", "b"]), &p, None)
        .expect("accepted");
    r.join(now, "s", &g(&["a"]), &q, None).expect("accepted");
    r.leave(now, "s", &g(&["a", "b"]), &p).expect("accepted");
    assert_eq!(r.which_groups("s"), g(&["a"]));
    assert_eq!(r.which_local_groups("s"), g(&["a"]));
    assert_eq!(r.group_counts("s"), vec![("a".to_owned(), 1)]);
    r.process_exited(now, &q);
    assert!(r.which_groups("s").is_empty());
    assert!(r.which_local_groups("s").is_empty());
    assert!(r.group_counts("s").is_empty());
    assert!(r.scopes().is_empty());
    assert!(r.snapshot("s", None).members.is_empty());
    let s = r.stats();
    assert_eq!(
        (s.scopes, s.groups, s.members, s.local_members),
        (0, 0, 0, 0)
    );
}

#[test]
fn scopes_are_independent_namespaces() {
    let now = Instant::now();
    let mut r = reg("n1");
    let (p, q) = (pid("n1", 1), pid("n1", 2));
    r.join(now, "s1", &g(&["a"]), &p, None).expect("accepted");
    r.join(now, "s2", &g(&["a"]), &q, None).expect("accepted");
    assert_eq!(r.members("s1", "a"), vec![p.clone()]);
    assert_eq!(r.members("s2", "a"), vec![q.clone()]);
    assert_eq!(
        r.leave(now, "s2", &g(&["a"]), &p),
        Err(LeaveError::NotJoined)
    );
    r.leave(now, "s1", &g(&["a"]), &p).expect("accepted");
    assert_eq!(r.scopes(), g(&["s2"]));
    assert_eq!(r.members("s2", "a"), vec![q]);
}

#[test]
fn local_queries_show_only_this_nodes_processes() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let (p, q) = (pid("n1", 1), pid("n2", 1));
    n1.join(now, "s", &g(&["a"]), &p, None).expect("accepted");
    n2.join(now, "s", &g(&["a", "b"]), &q, None)
        .expect("accepted");
    flush(now, &mut n2, &mut n1);
    assert_eq!(n1.members("s", "a"), vec![p.clone(), q.clone()]);
    assert_eq!(n1.local_members("s", "a"), vec![p.clone()]);
    assert_eq!(n1.which_groups("s"), g(&["a", "b"]));
    assert_eq!(n1.which_local_groups("s"), g(&["a"]));
    assert!(n1.local_members("s", "b").is_empty());
    // A remote PID is not ours to change.
    assert_eq!(
        n1.join(now, "s", &g(&["a"]), &q, None),
        Err(JoinError::NotLocal { pid: q.clone() })
    );
    assert_eq!(
        n1.leave(now, "s", &g(&["a"]), &q),
        Err(LeaveError::NotLocal { pid: q })
    );
}

#[test]
fn metadata_is_written_by_its_owner_and_the_last_write_wins_everywhere() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let p = pid("n1", 1);
    n1.join(now, "s", &g(&["a"]), &p, Some("v1".into()))
        .expect("accepted");
    n1.join(now, "s", &g(&["a"]), &p, None).expect("accepted"); // keeps v1
    assert_eq!(
        n1.members_with_meta("s", "a"),
        vec![(p.clone(), 2, Some("v1".into()))]
    );
    let early = drain(&mut n1);
    n1.set_meta(now, "s", "a", &p, Some("v2".into()))
        .expect("accepted");
    let late = drain(&mut n1);
    assert_eq!(deltas(&late), (1, 0));
    // The newer write delivered before the older ones: the newest still wins.
    deliver(now, &late, &mut n2);
    deliver(now, &early, &mut n2);
    let want = vec![(p.clone(), 2, Some("v2".to_owned()))];
    assert_eq!(n1.members_with_meta("s", "a"), want);
    assert_eq!(n2.members_with_meta("s", "a"), want);
    // A join with new metadata rewrites every occurrence.
    n1.join(now, "s", &g(&["a"]), &p, Some("v3".into()))
        .expect("accepted");
    flush(now, &mut n1, &mut n2);
    assert_eq!(
        n2.members_with_meta("s", "a"),
        vec![(p.clone(), 3, Some("v3".into()))]
    );
    // Setting the same value again changes nothing and sends nothing.
    n1.set_meta(now, "s", "a", &p, Some("v3".into()))
        .expect("accepted");
    assert!(drain(&mut n1).is_empty());
    // Only the owner writes.
    assert_eq!(
        n2.set_meta(now, "s", "a", &p, None),
        Err(SetMetaError::NotLocal { pid: p.clone() })
    );
    assert_eq!(
        n1.set_meta(now, "s", "b", &p, None),
        Err(SetMetaError::NotJoined)
    );
    // Clearing it.
    n1.set_meta(now, "s", "a", &p, None).expect("accepted");
    flush(now, &mut n1, &mut n2);
    assert_eq!(n2.members_with_meta("s", "a"), vec![(p, 3, None)]);
}

#[test]
fn invalid_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let now = Instant::now();
    let mut r = reg("n1");
    let p = pid("n1", 1);
    r.join(now, "s", &g(&["a"]), &p, None).expect("accepted");
    r.register(now, 1, "name", &p, None, ConflictPolicy::Notify)
        .expect("accepted");
    drain(&mut r);
    let (gd, nd) = (r.groups().digest(), r.names().digest());
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    let huge = "m".repeat(MAX_META_BYTES + 1);
    let too_long = |field| InvalidField::TooLong {
        field,
        len: MAX_NAME_BYTES + 1,
        max: MAX_NAME_BYTES,
    };
    assert_eq!(r.join(now, "s", &[], &p, None), Err(JoinError::NoGroups));
    assert_eq!(
        r.join(now, "", &g(&["a"]), &p, None),
        Err(JoinError::Invalid(InvalidField::Empty {
            field: Field::Scope
        }))
    );
    // One bad group refuses the whole call, the valid "b" included.
    assert_eq!(
        r.join(now, "s", &[String::from("b"), long.clone()], &p, None),
        Err(JoinError::Invalid(too_long(Field::Group)))
    );
    assert_eq!(
        r.join(now, "s", &g(&["b"]), &p, Some(huge.clone())),
        Err(JoinError::Invalid(InvalidField::TooLong {
            field: Field::Meta,
            len: MAX_META_BYTES + 1,
            max: MAX_META_BYTES
        }))
    );
    assert_eq!(
        r.leave(now, "s", &g(&["a", ""]), &p),
        Err(LeaveError::Invalid(InvalidField::Empty {
            field: Field::Group
        }))
    );
    assert!(matches!(
        r.set_meta(now, "s", "a", &p, Some(huge.clone())),
        Err(SetMetaError::Invalid(_))
    ));
    assert_eq!(
        r.register(now, 1, &long, &p, None, ConflictPolicy::Notify),
        Err(RegisterError::Invalid(too_long(Field::Name)))
    );
    assert!(matches!(
        r.register(now, 1, "other", &p, Some(huge), ConflictPolicy::Notify),
        Err(RegisterError::Invalid(_))
    ));
    assert_eq!(
        r.register(now, 1, "other", &pid("n2", 1), None, ConflictPolicy::Notify),
        Err(RegisterError::NotLocal { pid: pid("n2", 1) })
    );
    assert_eq!(
        r.unregister(now, ""),
        Err(UnregisterError::Invalid(InvalidField::Empty {
            field: Field::Name
        }))
    );
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.groups().digest(), gd);
    assert_eq!(r.names().digest(), nd);
    assert_eq!(r.which_groups("s"), g(&["a"]));
    assert_eq!(r.members_with_meta("s", "a"), vec![(p.clone(), 1, None)]);
    assert_eq!(r.whereis("name").map(|i| i.pid), Some(p));
}

#[test]
fn a_remote_delta_with_a_foreign_or_oversized_entry_is_refused_whole() {
    let now = Instant::now();
    let mut r = reg("n1");
    // n2 claims an entry for a process of n3, next to a valid one of its own.
    let mut forger: Replica<String, GroupEntry> = Replica::new("n2".into(), 1);
    let entry = |pid: Pid, meta: Option<String>| GroupEntry {
        scope: "s".into(),
        group: "a".into(),
        pid,
        meta,
    };
    let mut delta = forger.add(entry(pid("n2", 1), None));
    delta.merge(&forger.add(entry(pid("n3", 1), None)));
    assert_eq!(
        r.merge_groups(now, &delta, &[]),
        Err(MergeError::ForeignEntry {
            origin: "n2".into(),
            pid: pid("n3", 1)
        })
    );
    let big = forger.add(entry(pid("n2", 2), Some("m".repeat(MAX_META_BYTES + 1))));
    assert!(matches!(
        r.merge_groups(now, &big, &[]),
        Err(MergeError::InvalidEntry { .. })
    ));
    let mut names: Replica<String, NameClaim> = Replica::new("n2".into(), 1);
    let claim = names.add(NameClaim {
        name: "x".into(),
        hlc: Hlc::default(),
        pid: pid("n1", 5),
        policy: ConflictPolicy::Notify,
        meta: None,
    });
    assert!(matches!(
        r.merge_names(now, &claim),
        Err(MergeError::ForeignEntry { .. })
    ));
    assert!(r.which_groups("s").is_empty());
    assert!(r.whereis("x").is_none());
    assert!(r
        .groups()
        .state()
        .incarnation_of(&"n2".to_owned())
        .is_none());
    let s = r.stats();
    assert_eq!((s.dropped.foreign_entry, s.dropped.invalid_entry), (2, 1));
}

#[test]
fn one_call_on_many_groups_is_one_delta() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let p = pid("n1", 1);
    n1.join(now, "s", &g(&["a", "b", "c"]), &p, None)
        .expect("accepted");
    let outs = drain(&mut n1);
    assert_eq!(deltas(&outs), (1, 0));
    deliver(now, &outs, &mut n2);
    assert_eq!(n2.which_groups("s"), g(&["a", "b", "c"]));
    n1.leave(now, "s", &g(&["a", "c"]), &p).expect("accepted");
    let outs = drain(&mut n1);
    assert_eq!(deltas(&outs), (1, 0));
    deliver(now, &outs, &mut n2);
    assert_eq!(n2.which_groups("s"), g(&["b"]));
}

#[test]
fn an_exit_leaves_every_group_and_name_in_one_delta_each_with_the_exit_hint() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let p = pid("n1", 1);
    n1.join(now, "s", &g(&["a", "b"]), &p, None)
        .expect("accepted");
    n1.join(now, "t", &g(&["a"]), &p, None).expect("accepted");
    n1.register(now, 10, "x", &p, None, ConflictPolicy::Notify)
        .expect("accepted");
    n1.register(now, 11, "y", &p, None, ConflictPolicy::Notify)
        .expect("accepted");
    flush(now, &mut n1, &mut n2);
    let (m, _) = n2.monitor(None, "s", None);
    n1.process_exited(now, &p);
    let outs = drain(&mut n1);
    assert_eq!(deltas(&outs), (1, 1));
    assert!(outs.iter().any(
        |o| matches!(o, RegistryOutput::GroupsDelta { exited, .. } if exited == &vec![p.clone()])
    ));
    deliver(now, &outs, &mut n2);
    assert_eq!(
        events(&drain(&mut n2), m),
        vec![
            ("a".into(), p.clone(), EventReason::ProcessExit),
            ("b".into(), p.clone(), EventReason::ProcessExit)
        ]
    );
    assert!(n2.scopes().is_empty());
    assert!(n2.registered().is_empty());
    assert!(n1.local_claims().is_empty());
}

#[test]
fn a_removal_repaired_by_anti_entropy_is_reported_left() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let p = pid("n1", 1);
    n1.join(now, "s", &g(&["a"]), &p, None).expect("accepted");
    flush(now, &mut n1, &mut n2);
    let (m, _) = n2.monitor(None, "s", Some("a"));
    n1.process_exited(now, &p);
    drain(&mut n1); // the exit broadcast is lost
    let events_before = n2.stats().monitor_events;
    anti_entropy(now, &mut n1, &mut n2);
    assert_eq!(
        events(&drain(&mut n2), m),
        vec![("a".into(), p, EventReason::Left)]
    );
    assert_eq!(n2.stats().monitor_events, events_before + 1);
}

// --- monitors --------------------------------------------------------------------------

/// Applies every event of `id` in `outs` to `view`.
fn track(view: &mut MonitorView, outs: &[RegistryOutput], id: MonitorId) {
    for o in outs {
        if let RegistryOutput::Monitor { id: i, event } = o {
            if *i == id {
                view.apply(event).expect("a consistent stream");
            }
        }
    }
}

#[test]
fn a_monitor_snapshot_plus_its_events_equals_the_view() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let (p, q) = (pid("n1", 1), pid("n2", 1));
    n1.join(now, "s", &g(&["a"]), &p, Some("m0".into()))
        .expect("accepted");
    let (id, snap) = n1.monitor(None, "s", Some("a"));
    assert_eq!(
        snap.members,
        vec![MemberInfo {
            group: "a".into(),
            pid: p.clone(),
            count: 1,
            meta: Some("m0".into())
        }]
    );
    let mut view = MonitorView::new(&snap);
    n1.join(now, "s", &g(&["a", "b"]), &p, Some("m1".into()))
        .expect("accepted");
    let outs = drain(&mut n1);
    assert_eq!(
        events(&outs, id),
        vec![
            ("a".into(), p.clone(), EventReason::MetaChanged),
            ("a".into(), p.clone(), EventReason::Joined)
        ],
        "group b is not monitored"
    );
    track(&mut view, &outs, id);
    n2.join(now, "s", &g(&["a"]), &q, None).expect("accepted");
    flush(now, &mut n2, &mut n1);
    let outs = drain(&mut n1);
    track(&mut view, &outs, id);
    n1.leave(now, "s", &g(&["a"]), &p).expect("accepted");
    n1.set_meta(now, "s", "a", &p, None).expect("accepted");
    let outs = drain(&mut n1);
    assert_eq!(
        events(&outs, id),
        vec![
            ("a".into(), p.clone(), EventReason::Left),
            ("a".into(), p.clone(), EventReason::MetaChanged)
        ]
    );
    track(&mut view, &outs, id);
    assert_eq!(view.snapshot(), n1.snapshot("s", Some("a")));
    assert_eq!(view.snapshot().members.len(), 2);
}

#[test]
fn no_event_for_a_monitor_is_output_after_demonitor_returns() {
    let now = Instant::now();
    let mut r = reg("n1");
    let p = pid("n1", 1);
    let (id, _) = r.monitor(None, "s", None);
    let (other, _) = r.monitor(None, "s", None);
    r.join(now, "s", &g(&["a"]), &p, None).expect("accepted");
    assert!(r.demonitor(id), "queued events exist, the monitor is live");
    r.leave(now, "s", &g(&["a"]), &p).expect("accepted");
    let outs = drain(&mut r);
    assert!(events(&outs, id).is_empty());
    assert_eq!(events(&outs, other).len(), 2);
    assert_eq!(r.stats().dropped.demonitored_events, 1);
    assert!(!r.demonitor(id), "already gone");
}

#[test]
fn a_monitor_is_removed_when_its_owner_exits() {
    let now = Instant::now();
    let mut r = reg("n1");
    let (owner, p) = (pid("n1", 1), pid("n1", 2));
    let (id, _) = r.monitor(Some(owner.clone()), "s", None);
    r.join(now, "s", &g(&["a"]), &p, None).expect("accepted");
    r.process_exited(now, &owner);
    r.leave(now, "s", &g(&["a"]), &p).expect("accepted");
    assert!(events(&drain(&mut r), id).is_empty());
    assert!(!r.demonitor(id));
    assert_eq!(r.stats().monitors, 0);
}

#[test]
fn a_scope_monitor_sees_every_group_of_its_scope_and_nothing_else() {
    let now = Instant::now();
    let mut r = reg("n1");
    let p = pid("n1", 1);
    let (id, _) = r.monitor(None, "s", None);
    r.join(now, "s", &g(&["a", "b"]), &p, None)
        .expect("accepted");
    r.join(now, "t", &g(&["a"]), &p, None).expect("accepted");
    assert_eq!(
        events(&drain(&mut r), id),
        vec![
            ("a".into(), p.clone(), EventReason::Joined),
            ("b".into(), p, EventReason::Joined)
        ]
    );
}

#[test]
fn a_view_refuses_events_that_do_not_fit_it() {
    let snap = Snapshot {
        scope: "s".into(),
        group: Some("a".into()),
        members: Vec::new(),
    };
    let mut view = MonitorView::new(&snap);
    let ev = |group: &str, reason| GroupEvent {
        scope: "s".into(),
        group: group.into(),
        pid: pid("n1", 1),
        meta: None,
        reason,
    };
    assert!(matches!(
        view.apply(&ev("a", EventReason::Left)),
        Err(ViewError::NotAMember { .. })
    ));
    assert!(matches!(
        view.apply(&ev("b", EventReason::Joined)),
        Err(ViewError::OutOfScope { .. })
    ));
    assert!(matches!(
        view.apply(&ev("a", EventReason::MetaChanged)),
        Err(ViewError::NotAMember { .. })
    ));
    assert_eq!(view.snapshot(), snap, "refused events change nothing");
}

// --- node failure ------------------------------------------------------------------------

#[test]
fn a_down_node_is_hidden_and_restored_without_any_transfer() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let q = pid("n2", 1);
    n2.join(now, "s", &g(&["a"]), &q, Some("m".into()))
        .expect("accepted");
    n2.join(now, "s", &g(&["a"]), &q, None).expect("accepted");
    n2.register(now, 5, "x", &q, None, ConflictPolicy::Notify)
        .expect("accepted");
    flush(now, &mut n2, &mut n1);
    let (id, snap) = n1.monitor(None, "s", None);
    let mut view = MonitorView::new(&snap);
    n1.node_down(now, "n2");
    let outs = drain(&mut n1);
    assert_eq!(
        events(&outs, id),
        vec![
            ("a".into(), q.clone(), EventReason::NodeDown),
            ("a".into(), q.clone(), EventReason::NodeDown)
        ]
    );
    track(&mut view, &outs, id);
    assert!(n1.members("s", "a").is_empty());
    assert!(n1.whereis("x").is_none());
    assert_eq!(n1.hidden_nodes(), g(&["n2"]));
    assert_eq!(n1.stats().hidden_entries, 3);
    assert_eq!(n1.poll_timeout(), Some(now + PERMDOWN));
    // n2 keeps changing meanwhile: merged silently.
    n2.join(now, "s", &g(&["b"]), &q, None).expect("accepted");
    flush(now, &mut n2, &mut n1);
    assert!(drain(&mut n1).is_empty());
    assert!(n1.which_groups("s").is_empty());
    // Back before permdown: the current entries reappear, with no transfer at all.
    n1.node_alive(now + PERMDOWN / 2, "n2", n2.crdt_incarnation());
    let outs = drain(&mut n1);
    assert_eq!(deltas(&outs), (0, 0));
    assert_eq!(
        events(&outs, id),
        vec![
            ("a".into(), q.clone(), EventReason::NodeRestored),
            ("a".into(), q.clone(), EventReason::NodeRestored),
            ("b".into(), q.clone(), EventReason::NodeRestored)
        ]
    );
    track(&mut view, &outs, id);
    assert_eq!(view.snapshot(), n1.snapshot("s", None));
    assert_eq!(
        n1.members_with_meta("s", "a"),
        vec![(q.clone(), 2, Some("m".into()))]
    );
    assert_eq!(n1.whereis("x").map(|i| i.pid), Some(q));
    assert_eq!(n1.poll_timeout(), None);
    assert_eq!(n1.stats().hidden_entries, 0);
}

#[test]
fn permdown_purges_a_hidden_node_and_nothing_of_it_comes_back() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let q = pid("n2", 1);
    n2.join(now, "s", &g(&["a"]), &q, None).expect("accepted");
    n2.register(now, 5, "x", &q, None, ConflictPolicy::Notify)
        .expect("accepted");
    let old = drain(&mut n2);
    deliver(now, &old, &mut n1);
    n1.node_down(now, "n2");
    n1.handle_tick(now + PERMDOWN - Duration::from_millis(1));
    assert_eq!(n1.hidden_nodes(), g(&["n2"]), "not yet");
    n1.handle_tick(now + PERMDOWN);
    let outs = drain(&mut n1);
    assert_eq!(deltas(&outs), (1, 1), "the retirement markers spread");
    assert!(n1.hidden_nodes().is_empty());
    assert_eq!(n1.stats().purged_entries, 2);
    assert!(n1.groups().state().is_retired(&"n2".to_owned()));
    // Late deltas, a stale alive report and an anti-entropy reply from the old
    // incarnation bring nothing back.
    deliver(now, &old, &mut n1);
    n1.node_alive(now + PERMDOWN, "n2", 1);
    let to_n1 = n2.groups().missing_for(&n1.groups().digest());
    n1.merge_groups(now, &to_n1, &[]).expect("valid");
    assert!(n1.members("s", "a").is_empty());
    assert!(n1.whereis("x").is_none());
    // A free name again.
    n1.register(now, 6, "x", &pid("n1", 1), None, ConflictPolicy::Notify)
        .expect("accepted");
}

#[test]
fn a_node_purged_while_cut_off_reincarnates_and_its_entries_come_back() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let q = pid("n2", 1);
    n2.join(now, "s", &g(&["a"]), &q, None).expect("accepted");
    n2.register(now, 5, "x", &q, None, ConflictPolicy::Notify)
        .expect("accepted");
    flush(now, &mut n2, &mut n1);
    let (id2, _) = n2.monitor(None, "s", None);
    n1.node_down(now, "n2");
    n1.handle_tick(now + PERMDOWN);
    // n2 was only cut off: the purge markers reach it.
    let markers = drain(&mut n1);
    deliver(now, &markers, &mut n2);
    assert_eq!(n2.crdt_incarnation(), 2);
    assert_eq!(n2.stats().reincarnations, 1);
    let outs = drain(&mut n2);
    assert_eq!(deltas(&outs), (1, 1));
    assert!(
        events(&outs, id2).is_empty(),
        "n2's own view did not change"
    );
    assert_eq!(n2.members("s", "a"), vec![q.clone()]);
    deliver(now, &outs, &mut n1);
    n1.node_alive(now, "n2", n2.crdt_incarnation());
    assert_eq!(n1.members("s", "a"), vec![q.clone()]);
    assert_eq!(n1.whereis("x").map(|i| i.pid), Some(q.clone()));
    // n2 still works normally in its new incarnation.
    n2.leave(now, "s", &g(&["a"]), &q).expect("accepted");
    flush(now, &mut n2, &mut n1);
    assert!(n1.members("s", "a").is_empty());
}

#[test]
fn a_newer_incarnation_purges_the_older_one_at_once() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let q = pid("n2", 1);
    n2.join(now, "s", &g(&["a"]), &q, None).expect("accepted");
    let old = drain(&mut n2);
    deliver(now, &old, &mut n1);
    let (id, _) = n1.monitor(None, "s", None);
    // n2 restarts; n1 hears of the new incarnation before any delta of it.
    let mut n2 = reg_at("n2", 2);
    n1.node_alive(now, "n2", n2.crdt_incarnation());
    assert_eq!(
        events(&drain(&mut n1), id),
        vec![("a".into(), q.clone(), EventReason::NodeDown)]
    );
    assert!(n1.members("s", "a").is_empty());
    deliver(now, &old, &mut n1);
    assert!(n1.members("s", "a").is_empty(), "old deltas are ignored");
    // The new boot's processes show up as usual.
    let q2 = Pid::new("n2", 2, 1);
    n2.announce();
    n2.join(now, "s", &g(&["a"]), &q2, None).expect("accepted");
    flush(now, &mut n2, &mut n1);
    assert_eq!(n1.members("s", "a"), vec![q2]);
}

#[test]
fn a_new_incarnation_learned_while_hidden_unhides_as_joins() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    n2.join(now, "s", &g(&["a"]), &pid("n2", 1), None)
        .expect("accepted");
    flush(now, &mut n2, &mut n1);
    n1.node_down(now, "n2");
    let mut n2 = reg_at("n2", 2);
    n2.announce();
    let q2 = Pid::new("n2", 2, 1);
    n2.join(now, "s", &g(&["b"]), &q2, None).expect("accepted");
    flush(now, &mut n2, &mut n1);
    let (id, snap) = n1.monitor(None, "s", None);
    assert!(snap.members.is_empty());
    n1.node_alive(now, "n2", 2);
    assert_eq!(
        events(&drain(&mut n1), id),
        vec![("b".into(), q2, EventReason::Joined)]
    );
    assert_eq!(n1.which_groups("s"), g(&["b"]));
}

#[test]
fn membership_reports_about_ourselves_or_stale_incarnations_are_ignored() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg_at("n2", 5));
    let p = pid("n1", 1);
    n1.join(now, "s", &g(&["a"]), &p, None).expect("accepted");
    n2.join(now, "s", &g(&["a"]), &Pid::new("n2", 5, 1), None)
        .expect("accepted");
    flush(now, &mut n2, &mut n1);
    n1.node_down(now, "n1");
    assert_eq!(n1.members("s", "a").len(), 2);
    assert!(n1.hidden_nodes().is_empty());
    n1.node_alive(now, "n2", 4);
    assert_eq!(n1.members("s", "a").len(), 2);
    let d = n1.stats().dropped;
    assert_eq!((d.self_membership, d.stale_alive), (1, 1));
}

// --- names -------------------------------------------------------------------------------

#[test]
fn register_consults_the_local_view_and_unregister_only_local_claims() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let (p, q) = (pid("n1", 1), pid("n2", 1));
    n1.register(
        now,
        100,
        "x",
        &p,
        Some("meta".into()),
        ConflictPolicy::Notify,
    )
    .expect("accepted");
    assert_eq!(
        n1.register(now, 101, "x", &pid("n1", 2), None, ConflictPolicy::Notify),
        Err(RegisterError::AlreadyRegistered(p.clone()))
    );
    assert_eq!(
        n1.register(now, 101, "x", &p, None, ConflictPolicy::Notify),
        Err(RegisterError::AlreadyRegistered(p.clone()))
    );
    n1.register(now, 102, "y", &p, None, ConflictPolicy::Kill)
        .expect("accepted");
    flush(now, &mut n1, &mut n2);
    let info = n2.whereis("x").expect("x is registered");
    assert_eq!(
        (info.pid.clone(), info.meta.as_deref()),
        (p.clone(), Some("meta"))
    );
    assert_eq!(
        info.hlc,
        Hlc {
            wall_ms: 100,
            logical: 0
        }
    );
    assert_eq!(
        n2.registered()
            .into_iter()
            .map(|(n, i)| (n, i.policy))
            .collect::<Vec<_>>(),
        vec![
            ("x".into(), ConflictPolicy::Notify),
            ("y".into(), ConflictPolicy::Kill)
        ]
    );
    assert_eq!(
        n2.register(now, 1, "x", &q, None, ConflictPolicy::Notify),
        Err(RegisterError::AlreadyRegistered(p.clone()))
    );
    assert_eq!(
        n2.unregister(now, "x"),
        Err(UnregisterError::NotLocal { owner: p.clone() })
    );
    assert_eq!(n2.unregister(now, "z"), Err(UnregisterError::NotRegistered));
    assert_eq!(n1.unregister(now, "x"), Ok(p));
    flush(now, &mut n1, &mut n2);
    assert!(n2.whereis("x").is_none());
    n2.register(now, 1, "x", &q, None, ConflictPolicy::Notify)
        .expect("accepted");
}

/// Two partitioned nodes claim `name`; returns them after the claims crossed, with
/// every output produced on the way (per node).
fn split_brain(
    policy: ConflictPolicy,
    walls: (u64, u64),
) -> (Registry, Registry, Vec<RegistryOutput>, Vec<RegistryOutput>) {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    n1.register(now, walls.0, "x", &pid("n1", 1), None, policy)
        .expect("accepted");
    n2.register(now, walls.1, "x", &pid("n2", 1), None, policy)
        .expect("accepted");
    let (mut o1, mut o2) = (Vec::new(), Vec::new());
    // Heal: exchange until quiet, with every message duplicated.
    for _ in 0..4 {
        let a = drain(&mut n1);
        let b = drain(&mut n2);
        deliver(now, &a, &mut n2);
        deliver(now, &a, &mut n2);
        deliver(now, &b, &mut n1);
        deliver(now, &b, &mut n1);
        o1.extend(a);
        o2.extend(b);
        anti_entropy(now, &mut n1, &mut n2);
    }
    o1.extend(drain(&mut n1));
    o2.extend(drain(&mut n2));
    (n1, n2, o1, o2)
}

#[test]
fn concurrent_claims_converge_on_the_earliest_and_the_loser_is_notified_once_on_its_node() {
    // n2's claim is earlier although n2 sorts after n1.
    let (n1, n2, o1, o2) = split_brain(ConflictPolicy::Notify, (200, 100));
    let w = pid("n2", 1);
    assert_eq!(n1.whereis("x").map(|i| i.pid), Some(w.clone()));
    assert_eq!(n2.whereis("x").map(|i| i.pid), Some(w.clone()));
    assert_eq!(conflicts(&o1), vec![("x".into(), pid("n1", 1), w)]);
    assert!(conflicts(&o2).is_empty(), "the winner's node does nothing");
    assert!(n1.local_claims().is_empty(), "the loser is retracted");
    assert_eq!(n1.names().digest(), n2.names().digest());
    assert_eq!(n1.stats().name_conflicts, 1);
}

#[test]
fn equal_hlcs_are_ordered_by_node_then_pid() {
    let (n1, n2, o1, o2) = split_brain(ConflictPolicy::Notify, (100, 100));
    let w = pid("n1", 1);
    assert_eq!(n1.whereis("x").map(|i| i.pid), Some(w.clone()));
    assert_eq!(n2.whereis("x").map(|i| i.pid), Some(w.clone()));
    assert!(conflicts(&o1).is_empty());
    assert_eq!(conflicts(&o2), vec![("x".into(), pid("n2", 1), w)]);
}

#[test]
fn kill_policy_asks_the_losers_node_to_kill_it() {
    let (_, n2, o1, o2) = split_brain(ConflictPolicy::Kill, (100, 200));
    let kills: Vec<_> = o2
        .iter()
        .filter(|o| matches!(o, RegistryOutput::Kill { .. }))
        .cloned()
        .collect();
    assert_eq!(
        kills,
        vec![RegistryOutput::Kill {
            pid: pid("n2", 1),
            name: "x".into(),
            winner: pid("n1", 1)
        }]
    );
    assert_eq!(conflicts(&o2).len(), 1);
    assert!(o1.iter().all(|o| !matches!(o, RegistryOutput::Kill { .. })));
    assert_eq!(n2.stats().kills, 1);
}

#[test]
fn unregister_both_retracts_both_claims_and_notifies_each_process_once() {
    let (n1, n2, o1, o2) = split_brain(ConflictPolicy::UnregisterBoth, (100, 200));
    let w = pid("n1", 1);
    assert_eq!(conflicts(&o1), vec![("x".into(), w.clone(), w.clone())]);
    assert_eq!(conflicts(&o2), vec![("x".into(), pid("n2", 1), w)]);
    assert!(n1.whereis("x").is_none());
    assert!(n2.whereis("x").is_none());
    assert!(n1.local_claims().is_empty() && n2.local_claims().is_empty());
}

#[test]
fn unregister_both_works_when_the_winner_only_sees_the_merged_state() {
    let now = Instant::now();
    let (mut n1, mut n2, mut n3) = (reg("n1"), reg("n2"), reg("n3"));
    let policy = ConflictPolicy::UnregisterBoth;
    n1.register(now, 100, "x", &pid("n1", 1), None, policy)
        .expect("accepted");
    n2.register(now, 200, "x", &pid("n2", 1), None, policy)
        .expect("accepted");
    drain(&mut n1);
    drain(&mut n2);
    // n2 learns of n1's claim through n3; n1 hears nothing directly.
    anti_entropy(now, &mut n1, &mut n3);
    anti_entropy(now, &mut n3, &mut n2);
    let o2 = drain(&mut n2);
    assert_eq!(conflicts(&o2).len(), 1);
    assert!(
        n2.local_claims().is_empty(),
        "the process has lost the name"
    );
    assert_eq!(
        n2.names().state().elements_of(&"n2".to_owned()).count(),
        1,
        "the losing claim waits in the replica"
    );
    assert_eq!(n2.stats().pending_retractions, 1);
    // n1 only ever sees merged states (anti-entropy through n3).
    drain(&mut n3);
    // Rounds: n1 retracts; its retraction reaches n2 via n3; n2 retracts; that
    // reaches n1 via n3.
    let mut o1 = Vec::new();
    for _ in 0..5 {
        anti_entropy(now, &mut n2, &mut n3);
        anti_entropy(now, &mut n3, &mut n1);
        o1.extend(drain(&mut n1));
        drain(&mut n2);
        drain(&mut n3);
    }
    assert_eq!(conflicts(&o1).len(), 1);
    for r in [&n1, &n2, &n3] {
        assert!(r.whereis("x").is_none(), "{} still resolves x", r.node());
        assert!(r.local_claims().is_empty());
    }
}

#[test]
fn names_go_with_their_process_and_a_hidden_claim_is_settled_on_unhide() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let (p, q) = (pid("n1", 1), pid("n2", 1));
    n2.register(now, 100, "x", &q, None, ConflictPolicy::Notify)
        .expect("accepted");
    flush(now, &mut n2, &mut n1);
    n1.node_down(now, "n2");
    // The hidden claim neither resolves nor blocks.
    assert!(n1.whereis("x").is_none());
    n1.register(now, 300, "x", &p, None, ConflictPolicy::Notify)
        .expect("accepted");
    assert!(conflicts(&drain(&mut n1)).is_empty());
    // n2 comes back: its earlier claim wins, n1's loses once.
    n1.node_alive(now, "n2", n2.crdt_incarnation());
    let outs = drain(&mut n1);
    assert_eq!(conflicts(&outs), vec![("x".into(), p.clone(), q.clone())]);
    assert_eq!(n1.whereis("x").map(|i| i.pid), Some(q.clone()));
    // And q's exit unregisters it everywhere.
    n2.process_exited(now, &q);
    flush(now, &mut n2, &mut n1);
    assert!(n1.whereis("x").is_none());
    assert!(n2.registered().is_empty());
}

#[test]
fn a_later_local_claim_is_stamped_after_every_claim_seen() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    n2.register(now, 5_000, "x", &pid("n2", 1), None, ConflictPolicy::Notify)
        .expect("accepted");
    flush(now, &mut n2, &mut n1);
    // n1's wall clock is far behind.
    n1.register(now, 10, "y", &pid("n1", 1), None, ConflictPolicy::Notify)
        .expect("accepted");
    let y = n1.whereis("y").expect("y is registered").hlc;
    assert!(y > n1.whereis("x").expect("x is registered").hlc, "{y:?}");
}

#[test]
fn an_unregister_both_loser_that_exits_still_gets_the_winner_retracted() {
    let now = Instant::now();
    let (mut n1, mut n2) = (reg("n1"), reg("n2"));
    let policy = ConflictPolicy::UnregisterBoth;
    let (w, l) = (pid("n1", 1), pid("n2", 1));
    n1.register(now, 100, "x", &w, None, policy)
        .expect("accepted");
    n2.register(now, 200, "x", &l, None, policy)
        .expect("accepted");
    drain(&mut n2);
    // n2 sees the winner first; its process hears of the conflict and exits at once.
    flush(now, &mut n1, &mut n2);
    assert_eq!(
        conflicts(&drain(&mut n2)),
        vec![("x".into(), l.clone(), w.clone())]
    );
    n2.process_exited(now, &l);
    assert_eq!(
        n2.unregister(now, "x"),
        Err(UnregisterError::NotLocal { owner: w.clone() }),
        "the name is no longer the loser's"
    );
    drain(&mut n2);
    // n1 only now hears of the losing claim (anti-entropy), and gives its claim up.
    anti_entropy(now, &mut n1, &mut n2);
    assert_eq!(conflicts(&drain(&mut n1)), vec![("x".into(), w.clone(), w)]);
    anti_entropy(now, &mut n1, &mut n2);
    anti_entropy(now, &mut n1, &mut n2);
    for r in [&n1, &n2] {
        assert!(r.whereis("x").is_none(), "{} resolves x", r.node());
        assert_eq!(r.stats().pending_retractions, 0);
    }
    assert!(
        conflicts(&drain(&mut n2)).is_empty(),
        "the loser was told once"
    );
}

#[test]
fn an_unregister_both_loser_keeps_waiting_while_the_winner_is_merely_hidden() {
    let now = Instant::now();
    let (mut n1, mut n2, mut n3) = (reg("n1"), reg("n2"), reg("n3"));
    let policy = ConflictPolicy::UnregisterBoth;
    n1.register(now, 100, "x", &pid("n1", 1), None, policy)
        .expect("accepted");
    n2.register(now, 200, "x", &pid("n2", 1), None, policy)
        .expect("accepted");
    drain(&mut n2);
    flush(now, &mut n1, &mut n2);
    assert_eq!(n2.stats().pending_retractions, 1);
    n2.node_down(now, "n1");
    // Something else touches the name while the winner is hidden.
    n3.register(now, 300, "x", &pid("n3", 1), None, ConflictPolicy::Notify)
        .expect("accepted");
    flush(now, &mut n3, &mut n2);
    assert_eq!(
        n2.stats().pending_retractions,
        1,
        "a hidden winner is not a gone winner"
    );
    assert_eq!(n2.names().state().elements_of(&"n2".to_owned()).count(), 1);
    // The winner's node returns, sees the loser, and gives up; then the loser goes.
    n2.node_alive(now, "n1", n1.crdt_incarnation());
    drain(&mut n2);
    anti_entropy(now, &mut n1, &mut n2);
    assert_eq!(
        conflicts(&drain(&mut n1)),
        vec![("x".into(), pid("n1", 1), pid("n1", 1))]
    );
    anti_entropy(now, &mut n1, &mut n2);
    assert_eq!(n2.stats().pending_retractions, 0);
    assert_eq!(n2.names().state().elements_of(&"n2".to_owned()).count(), 0);
}

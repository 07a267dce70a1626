//! Sends between processes through the whole node on the simulator: one frame per
//! remote node for a group send (N4), order between one sender and one receiver under
//! jitter (N3), and errors instead of silent drops (N2). See `mesh_core::node`.

use std::time::Duration;

use bytes::Bytes;
use mesh_core::node::{Command, Dest, GroupMode, Output, Reply, SendError, Undeliverable};
use mesh_core::pid::Pid;
use mesh_core::process::{Delivery, Mailbox};
use mesh_tests::sim::{for_each_seed, LinkConfig, Sim};
use mesh_transport::frame::Class;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn cluster(seed: u64, n: usize) -> Result<Sim, String> {
    let mut sim = Sim::new(seed);
    sim.add_cluster(n);
    if sim.run_until(secs(15), Sim::all_see_all_alive) {
        Ok(sim)
    } else {
        Err(sim.describe())
    }
}

/// Spawns `k` processes on node `n` that join `group`; returns them.
fn members(sim: &mut Sim, n: usize, group: &str, k: usize, capacity: usize) -> Vec<(Pid, Mailbox)> {
    (0..k)
        .filter_map(|_| {
            sim.with_node(n, |node, now| {
                let (pid, mb) = node.spawn(Some(capacity));
                node.join(now, "default", &[group.to_owned()], &pid, None)
                    .map(|()| (pid, mb))
                    .ok()
            })
            .flatten()
        })
        .collect()
}

fn payloads(mb: &Mailbox) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(d) = mb.try_recv() {
        if let Delivery::Message { payload, .. } = d {
            out.push(payload.to_vec());
        }
    }
    out
}

/// N4: a send to a group of 20 members on 4 remote nodes goes out as 4 frames, and
/// every member gets it exactly once.
#[test]
fn a_group_send_is_one_frame_per_remote_node_and_reaches_every_member_once() {
    let mut sim = cluster(3, 5).expect("cluster");
    let mut all = Vec::new();
    for n in 1..5 {
        all.extend(members(&mut sim, n, "g", 5, 64));
    }
    assert!(sim.run_until(secs(5), |s| s
        .node(0)
        .is_some_and(|n| n.registry().member_count("default", "g") == 20)));
    let frames = sim
        .with_node(0, |node, now| {
            let dest = Dest::Group {
                scope: "default".into(),
                group: "g".into(),
                mode: GroupMode::All,
            };
            let receipt = node
                .send(now, None, &dest, Bytes::from_static(b"once"))
                .expect("sent");
            assert_eq!((receipt.remote_nodes, receipt.remote_targets), (4, 20));
            let mut frames = 0;
            while let Some(out) = node.poll_output() {
                if matches!(
                    out,
                    Output::Frame {
                        class: Class::User,
                        ..
                    }
                ) {
                    frames += 1;
                }
            }
            frames
        })
        .expect("n0 runs");
    assert_eq!(frames, 4, "one frame per remote node, not one per member");
    // The frames were taken out above, so send again through the simulator.
    sim.with_node(0, |node, now| {
        let dest = Dest::Group {
            scope: "default".into(),
            group: "g".into(),
            mode: GroupMode::All,
        };
        node.send(now, None, &dest, Bytes::from_static(b"once"))
            .expect("sent")
    });
    sim.run_for(secs(1));
    for (pid, mb) in &all {
        assert_eq!(payloads(mb), vec![b"once".to_vec()], "{pid:?}");
    }
}

/// N3: messages from one sender to one receiver arrive in the order sent, over links
/// whose jitter reorders packets, with loss.
#[test]
fn messages_between_one_sender_and_one_receiver_keep_their_order_under_jitter_and_loss() {
    for_each_seed(
        "messages_between_one_sender_and_one_receiver_keep_their_order_under_jitter_and_loss",
        50,
        |seed| {
            let mut sim = cluster(seed, 3)?;
            sim.set_network(LinkConfig {
                delay_min: Duration::from_millis(1),
                delay_max: Duration::from_millis(40),
                loss: 0.1,
                duplicate: 0.1,
            });
            let (rx, mb) = members(&mut sim, 2, "r", 1, 1024)
                .pop()
                .ok_or("no receiver")?;
            let (tx, _) = sim.with_node(0, |n, _| n.spawn(None)).ok_or("no sender")?;
            for i in 0..200u32 {
                let payload = Bytes::from(i.to_be_bytes().to_vec());
                let r = sim.with_node(0, |n, now| {
                    n.send(now, Some(tx.clone()), &Dest::Pid(rx.clone()), payload)
                });
                if !matches!(r, Some(Ok(_))) {
                    return Err(format!("send {i}: {r:?}"));
                }
                sim.run_for(Duration::from_millis(3));
            }
            sim.run_for(secs(5));
            let got: Vec<u32> = payloads(&mb)
                .into_iter()
                .map(|p| u32::from_be_bytes(p.try_into().unwrap_or([0; 4])))
                .collect();
            let want: Vec<u32> = (0..200).collect();
            if got == want {
                Ok(())
            } else {
                Err(format!("received out of order or incomplete: {got:?}"))
            }
        },
    );
}

/// N2: sending to an unknown PID, a PID on a dead node, an unknown name or an empty
/// group is an error to the sender; so is a full local mailbox; a full remote mailbox
/// is reported back to an acknowledged send.
#[test]
fn undeliverable_sends_are_errors_to_the_sender() {
    let mut sim = cluster(5, 3).expect("cluster");
    let (local, _mb) = members(&mut sim, 0, "solo", 1, 1).pop().expect("local");
    let (remote, _rmb) = members(&mut sim, 1, "far", 1, 1).pop().expect("remote");
    sim.run_for(secs(1));
    let send = |sim: &mut Sim, dest: Dest, ack: bool| {
        sim.send_via_shell(0, None, &dest, Bytes::from_static(b"x"), ack)
            .expect("n0 runs")
    };
    let ghost = Pid::new("n0", local.incarnation, 999);
    assert_eq!(
        send(&mut sim, Dest::Pid(ghost.clone()), false),
        Err(SendError::NoProcess(ghost))
    );
    assert_eq!(
        send(&mut sim, Dest::Name("nobody".into()), false),
        Err(SendError::NoSuchName("nobody".into()))
    );
    assert!(matches!(
        send(
            &mut sim,
            Dest::Group {
                scope: "default".into(),
                group: "empty".into(),
                mode: GroupMode::All
            },
            false
        ),
        Err(SendError::EmptyGroup { .. })
    ));
    // The local mailbox holds one message: the second send is refused, not dropped.
    assert!(send(&mut sim, Dest::Pid(local.clone()), false).is_ok());
    assert_eq!(
        send(&mut sim, Dest::Pid(local.clone()), false),
        Err(SendError::MailboxFull(local.clone()))
    );
    // The remote mailbox also holds one: an acknowledged second send learns why.
    assert!(send(&mut sim, Dest::Pid(remote.clone()), true).is_ok());
    sim.run_for(secs(1));
    assert!(send(&mut sim, Dest::Pid(remote.clone()), true).is_ok());
    sim.run_for(secs(1));
    let refusal = sim.results.iter().rev().find_map(|(n, out)| match out {
        Output::Completed {
            result: Reply::Confirmed(Ok((_, outcome))),
            ..
        } if *n == 0 && !outcome.failed.is_empty() => Some(outcome.failed.clone()),
        _ => None,
    });
    assert_eq!(
        refusal,
        Some(vec![(remote.clone(), Undeliverable::MailboxFull)])
    );
    // A node that is down: the send fails at once.
    sim.kill(1);
    assert!(sim.run_until(secs(15), |s| s.all_see(
        &[0],
        1,
        &[mesh_core::membership::MemberState::Down]
    )));
    assert_eq!(
        send(&mut sim, Dest::Pid(remote), false),
        Err(SendError::NodeDown("n1".into()))
    );
}

/// N2 under backpressure, with the shell's rule run by the core
/// (`Node::settle_send`): while the user stream to n1 is full, a send to one process
/// there fails with `Backpressure` naming n1 and delivers nothing; a group send with
/// members on n1 and n2 reaches n2, names n1 in `refused_nodes`, and its acknowledged
/// outcome reports n1 as refused at once (not after the ack timeout). Once the stream
/// drains, the same send to one process arrives.
#[test]
fn a_full_send_queue_is_the_senders_error_for_one_process_and_a_footnote_for_a_group() {
    for_each_seed(
        "a_full_send_queue_is_the_senders_error_for_one_process_and_a_footnote_for_a_group",
        20,
        |seed| {
            let mut sim = cluster(seed, 3)?;
            let (one, one_mb) = members(&mut sim, 1, "g", 1, 64).pop().ok_or("n1 member")?;
            let (_two, two_mb) = members(&mut sim, 2, "g", 1, 64).pop().ok_or("n2 member")?;
            let seen = sim.run_until(secs(5), |s| {
                s.node(0)
                    .is_some_and(|n| n.registry().member_count("default", "g") == 2)
            });
            if !seen {
                return Err("n0 never saw both members".into());
            }
            sim.set_user_stream_full(0, 1, true);
            let before = sim
                .node(0)
                .and_then(|n| n.stats().send_errors.get("backpressure").copied())
                .unwrap_or(0);
            let r = sim.send_via_shell(
                0,
                None,
                &Dest::Pid(one.clone()),
                Bytes::from_static(b"a"),
                false,
            );
            if r != Some(Err(SendError::Backpressure("n1".into()))) {
                return Err(format!("a send to one process on a full stream: {r:?}"));
            }
            let group = Dest::Group {
                scope: "default".into(),
                group: "g".into(),
                mode: GroupMode::All,
            };
            let sent_at = sim.elapsed();
            let confirmed = Command::SendConfirmed {
                from: None,
                dest: group,
                payload: Bytes::from_static(b"b"),
            };
            let (receipt, outcome) = match sim.run_command(0, confirmed, secs(10)) {
                Some(Reply::Confirmed(Ok(r))) => r,
                other => return Err(format!("a group send must succeed in part: {other:?}")),
            };
            if receipt.refused_nodes != vec!["n1".to_owned()] {
                return Err(format!("refused nodes: {:?}", receipt.refused_nodes));
            }
            if outcome.refused != vec!["n1".to_owned()] || outcome.delivered != 1 {
                return Err(format!("group outcome: {outcome:?}"));
            }
            if sim.elapsed() - sent_at >= mesh_core::node::ACK_TIMEOUT {
                return Err("the refused node was waited for until the ack timeout".into());
            }
            if payloads(&two_mb) != vec![b"b".to_vec()] {
                return Err("n2's member must get the group send".into());
            }
            if !payloads(&one_mb).is_empty() {
                return Err("nothing may reach n1 through a full stream".into());
            }
            let after = sim
                .node(0)
                .and_then(|n| n.stats().send_errors.get("backpressure").copied())
                .unwrap_or(0);
            if after < before + 2 {
                return Err(format!("refused frames counted {before} -> {after}"));
            }
            sim.set_user_stream_full(0, 1, false);
            match sim.send_via_shell(0, None, &Dest::Pid(one), Bytes::from_static(b"c"), false) {
                Some(Ok(_)) => {}
                other => return Err(format!("after the stream drained: {other:?}")),
            }
            let mut got = Vec::new();
            let arrived = sim.run_until(secs(2), |_| {
                got.extend(payloads(&one_mb));
                !got.is_empty()
            });
            if !arrived || got != vec![b"c".to_vec()] {
                return Err("the send after the stream drained did not arrive".into());
            }
            Ok(())
        },
    );
}

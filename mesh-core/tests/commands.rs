//! Commands as data (`mesh_core::node::command`), on one node with no peers: C1 (one
//! reply per command, with its id), C2 (a refusal changes nothing), C3 (many PIDs: all
//! or none), and the one `NotLocal` / `Exited` split of a PID that is not a live local
//! process. (C4 and C5 need peers: `tests/tests/sim_sends.rs` and `sim_claims.rs`.)

use std::time::{Duration, Instant};

use mesh_core::identity::NodeId;
use mesh_core::node::{
    Command, CommandId, Dest, GroupError, NameError, Node, NodeConfig, Output, ProcessError,
    ReadError, Reply, Resource, SendError,
};
use mesh_core::pid::Pid;
use mesh_core::registry::ConflictPolicy;

struct One {
    node: Node,
    now: Instant,
    next: u64,
}

impl One {
    fn new() -> Self {
        let now = Instant::now();
        let id = NodeId::new("n0", "127.0.0.1:7000".parse().expect("addr"), 1);
        let node = Node::new(id, NodeConfig::default(), 7, now, 1_700_000_000_000).expect("node");
        Self { node, now, next: 0 }
    }

    /// Runs `cmd` and returns every reply that came out in the same step.
    fn run(&mut self, cmd: Command) -> (CommandId, Vec<(CommandId, Reply)>) {
        self.next += 1;
        let id = CommandId(self.next);
        self.node.handle_command(self.now, id, cmd);
        let mut replies = Vec::new();
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Completed { id, result } => replies.push((id, result)),
                // No transport here: the marker is reached at once.
                Output::Carried(mark) => self.node.handle_carried(self.now, mark),
                _ => {}
            }
        }
        (id, replies)
    }

    /// Runs `cmd` and returns its one reply (C1).
    fn reply(&mut self, cmd: Command) -> Reply {
        let (id, replies) = self.run(cmd);
        match replies.as_slice() {
            [(got, reply)] if *got == id => reply.clone(),
            other => panic!("command {id:?} must get exactly one reply, got {other:?}"),
        }
    }

    fn spawn(&mut self) -> Pid {
        match self.reply(Command::Spawn { capacity: None }) {
            Reply::Spawned { pid, .. } => pid,
            other => panic!("spawn: {other:?}"),
        }
    }

    fn join(&mut self, pids: &[Pid]) -> Result<(), GroupError> {
        match self.reply(Command::Join {
            scope: "s".into(),
            groups: vec!["g".into()],
            pids: pids.to_vec(),
            meta: None,
        }) {
            Reply::Groups(r) => r,
            other => panic!("join: {other:?}"),
        }
    }

    fn leave(&mut self, pids: &[Pid]) -> Result<(), GroupError> {
        match self.reply(Command::Leave {
            scope: "s".into(),
            groups: vec!["g".into()],
            pids: pids.to_vec(),
        }) {
            Reply::Groups(r) => r,
            other => panic!("leave: {other:?}"),
        }
    }

    fn members(&self) -> Vec<Pid> {
        self.node.registry().members("s", "g")
    }
}

#[test]
fn a_join_of_many_pids_is_all_or_nothing() {
    let mut one = One::new();
    let (a, b, gone) = (one.spawn(), one.spawn(), one.spawn());
    assert_eq!(
        one.reply(Command::Exit { pid: gone.clone() })
            .clone_exited(),
        Ok(())
    );
    let remote = Pid::new("n9", 1, 1);
    // Any PID that is not a live local process: nothing joins, for any of them.
    assert_eq!(
        one.join(&[a.clone(), gone.clone(), b.clone()]),
        Err(GroupError::Exited(gone.clone()))
    );
    assert_eq!(
        one.join(&[a.clone(), remote.clone()]),
        Err(GroupError::NotLocal(remote.clone()))
    );
    assert_eq!(
        one.members(),
        Vec::<Pid>::new(),
        "a refused join left members"
    );
    // All live and local: every one joins.
    assert_eq!(one.join(&[a.clone(), b.clone()]), Ok(()));
    assert_eq!(one.members(), vec![a.clone(), b.clone()]);
    // A leave with a bad PID leaves nothing either.
    assert_eq!(
        one.leave(&[a.clone(), gone.clone()]),
        Err(GroupError::Exited(gone))
    );
    assert_eq!(one.members(), vec![a.clone(), b.clone()]);
    // A leave of several PIDs where only some had joined succeeds for those.
    let c = one.spawn();
    assert_eq!(one.leave(&[a.clone(), c.clone()]), Ok(()));
    assert_eq!(one.members(), vec![b]);
    // NotJoined only when none of them had joined.
    assert_eq!(one.leave(&[a, c]), Err(GroupError::NotJoined));
    assert_eq!(one.join(&[]), Err(GroupError::NoGroups));
}

#[test]
fn an_exited_pid_is_exited_and_another_nodes_pid_is_not_local() {
    let mut one = One::new();
    let p = one.spawn();
    let earlier_boot = Pid::new("n0", 0, p.local_id);
    assert_eq!(
        one.reply(Command::Exit { pid: p.clone() }).clone_exited(),
        Ok(())
    );
    for (pid, want_exited) in [
        (p.clone(), true),
        (earlier_boot, true),
        (Pid::new("n1", 1, 1), false),
    ] {
        let reg = one.reply(Command::Register {
            name: "svc".into(),
            pid: pid.clone(),
            meta: None,
            policy: ConflictPolicy::default(),
        });
        let want = if want_exited {
            NameError::Exited(pid.clone())
        } else {
            NameError::NotLocal(pid.clone())
        };
        match reg {
            Reply::Registered(r) => assert_eq!(r, Err(want)),
            other => panic!("register: {other:?}"),
        }
        let exit = one.reply(Command::Exit { pid: pid.clone() }).clone_exited();
        let want = if want_exited {
            ProcessError::Exited(pid)
        } else {
            ProcessError::NotLocal(pid)
        };
        assert_eq!(exit, Err(want));
    }
    assert!(
        one.node.whereis("svc").is_none(),
        "a refused register changed state"
    );
}

#[test]
fn every_command_gets_exactly_one_reply_with_its_id() {
    let mut one = One::new();
    let p = one.spawn();
    // Immediate ones, refused or not, each answered once in the same step.
    let sends = [
        Command::Send {
            from: None,
            dest: Dest::Pid(p.clone()),
            payload: bytes::Bytes::from_static(b"x"),
        },
        Command::SendConfirmed {
            from: None,
            dest: Dest::Name("nobody".into()),
            payload: bytes::Bytes::from_static(b"x"),
        },
    ];
    let [sent, confirmed] = sends.map(|c| one.reply(c));
    assert!(matches!(sent, Reply::Sent(Ok(_))), "{sent:?}");
    assert!(
        matches!(&confirmed, Reply::Confirmed(Err(SendError::NoSuchName(n))) if n == "nobody"),
        "{confirmed:?}"
    );
    // No voters: claims and reads are refused at once, and say so.
    match one.reply(Command::Claim {
        task: "t".into(),
        ttl: None,
    }) {
        Reply::Claims(Err(e)) => assert!(e.to_string().contains("voters"), "{e}"),
        other => panic!("claim without voters: {other:?}"),
    }
    assert!(matches!(
        one.reply(Command::ReadShard {
            shard: mesh_core::claims::ShardId(0)
        }),
        Reply::Read(Err(ReadError::Off))
    ));
    // A barrier with no peers is covered at once, or at its deadline; either way it is
    // answered once.
    let (id, now_replies) = one.run(Command::Sync {
        mode: mesh_core::node::SyncMode::All,
        timeout: Duration::from_millis(10),
    });
    let mut replies = now_replies;
    if replies.is_empty() {
        one.now += Duration::from_millis(20);
        one.node.handle_tick(one.now);
        while let Some(out) = one.node.poll_output() {
            if let Output::Completed { id, result } = out {
                replies.push((id, result));
            }
        }
    }
    assert!(
        matches!(replies.as_slice(), [(got, Reply::Synced(_))] if *got == id),
        "{replies:?}"
    );
    // An end-hold that names no hold ends nothing.
    assert!(matches!(
        one.reply(Command::EndHold {
            task: "t".into(),
            hold: CommandId(12345)
        }),
        Reply::HoldEnding(false)
    ));
}

/// Test helper: the result of an exit reply.
trait ExitReply {
    fn clone_exited(&self) -> Result<(), ProcessError>;
}

impl ExitReply for Reply {
    fn clone_exited(&self) -> Result<(), ProcessError> {
        match self {
            Self::Exited(r) => r.clone(),
            other => panic!("not an exit reply: {other:?}"),
        }
    }
}

/// A reply that hands over a process or a monitor names the command that undoes it,
/// and running that command frees it: an unclaimed spawn leaves no process and no
/// group member behind, an unclaimed monitor is gone. Replies that hand over nothing
/// name no undo.
#[test]
fn an_unclaimed_spawn_or_monitor_reply_names_its_undo_and_the_undo_frees_it() {
    let mut one = One::new();
    let spawned = one.reply(Command::Spawn { capacity: None });
    let Reply::Spawned { pid, .. } = &spawned else {
        panic!("spawn: {spawned:?}");
    };
    let pid = pid.clone();
    assert_eq!(one.join(std::slice::from_ref(&pid)), Ok(()));
    assert_eq!(one.node.process_count(), 1);
    let undo = spawned
        .undo_if_unclaimed()
        .expect("a spawn hands over a process");
    assert!(
        matches!(&undo, Command::Exit { pid: p } if *p == pid),
        "{undo:?}"
    );
    assert!(matches!(one.reply(undo), Reply::Exited(Ok(()))));
    assert_eq!(one.node.process_count(), 0, "the process is gone");
    assert!(!one.node.is_local_alive(&pid));
    assert!(
        one.join(std::slice::from_ref(&pid)).is_err(),
        "an exited pid joins nothing"
    );

    let monitoring = one.reply(Command::Monitor {
        owner: None,
        scope: "s".into(),
        group: None,
    });
    let Reply::Monitoring(Ok((id, _, _))) = &monitoring else {
        panic!("monitor: {monitoring:?}");
    };
    let id = *id;
    let undo = monitoring
        .undo_if_unclaimed()
        .expect("a monitor hands over a monitor");
    assert!(matches!(undo, Command::Demonitor { id: i } if i == id));
    assert!(matches!(one.reply(undo), Reply::Demonitored(true)));
    assert!(
        matches!(
            one.reply(Command::Demonitor { id }),
            Reply::Demonitored(false)
        ),
        "the monitor is gone"
    );

    // A reply that hands over nothing has nothing to undo.
    assert!(Reply::Exited(Ok(())).undo_if_unclaimed().is_none());
    assert!(Reply::Groups(Ok(())).undo_if_unclaimed().is_none());
    assert!(Reply::Demonitored(true).undo_if_unclaimed().is_none());
}

/// Resource limits (issue 14): at `max_processes` a spawn is refused with the limit
/// and its setting, counted, and changes nothing (C2); an exit makes room again. The
/// same for monitors at `max_monitors`.
#[test]
fn spawns_and_monitors_past_their_limits_are_refused_counted_and_change_nothing() {
    let now = Instant::now();
    let id = NodeId::new("n0", "127.0.0.1:7000".parse().expect("addr"), 1);
    let config = NodeConfig {
        max_processes: 3,
        max_monitors: 2,
        ..NodeConfig::default()
    };
    let node = Node::new(id, config, 7, now, 1_700_000_000_000).expect("node");
    let mut one = One { node, now, next: 0 };
    let pids: Vec<Pid> = (0..3).map(|_| one.spawn()).collect();
    match one.reply(Command::Spawn { capacity: None }) {
        Reply::OverLimit(e) => {
            assert_eq!((e.resource, e.max), (Resource::Processes, 3));
            let text = e.to_string();
            assert!(
                text.contains("max_processes") && text.contains('3'),
                "{text}"
            );
        }
        other => panic!("a fourth spawn: {other:?}"),
    }
    assert_eq!(one.node.process_count(), 3, "the refusal made nothing");
    assert_eq!(one.node.stats().over_limit.get("processes"), Some(&1));
    assert!(matches!(
        one.reply(Command::Exit {
            pid: pids[0].clone()
        }),
        Reply::Exited(Ok(()))
    ));
    one.spawn();
    assert_eq!(one.node.process_count(), 3, "an exit made room for one");

    let monitor = |one: &mut One| {
        one.reply(Command::Monitor {
            owner: None,
            scope: "s".into(),
            group: None,
        })
    };
    let first = match monitor(&mut one) {
        Reply::Monitoring(Ok((id, _, _))) => id,
        other => panic!("monitor: {other:?}"),
    };
    assert!(matches!(monitor(&mut one), Reply::Monitoring(Ok(_))));
    assert!(matches!(
        monitor(&mut one),
        Reply::OverLimit(e) if e.resource == Resource::Monitors && e.max == 2
    ));
    assert_eq!(one.node.monitor_count(), 2);
    assert_eq!(one.node.stats().over_limit.get("monitors"), Some(&1));
    assert!(matches!(
        one.reply(Command::Demonitor { id: first }),
        Reply::Demonitored(true)
    ));
    assert!(matches!(monitor(&mut one), Reply::Monitoring(Ok(_))));
}

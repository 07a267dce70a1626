//! Commands: every application operation enters the node as a value.
//!
//! A shell (the agent, the simulator, a test) hands the node a [`Command`] with an id
//! of its choosing ([`Node::handle_command`]); the operation ends as exactly one
//! [`Output::Completed`] with that id and a [`Reply`]. Operations that finish at once
//! (a join, a spawn, a refused claim) complete in the same step; the others (an
//! acknowledged send, a barrier, a claim, a shard read) complete when the network has
//! answered or their deadline passed. So the shell keeps one map from id to waiter and
//! knows nothing of what each operation does.
//!
//! # Properties
//!
//! - **C1 one reply.** Every command gets exactly one [`Output::Completed`], with its
//!   id, while the node runs. Async operations end by their own deadlines
//!   ([`ACK_TIMEOUT`](super::ACK_TIMEOUT), a barrier's timeout, the claims op timeout),
//!   so none waits forever.
//! - **C2 refusal changes nothing.** A command refused at once (bad input, a PID that
//!   is not a live local process, no voters) changes no state; its reply says why.
//! - **C3 all or nothing for many PIDs.** [`Command::Join`] and [`Command::Leave`] with
//!   several PIDs check every PID before changing anything, as `pg:join/3` does: if any
//!   is not a live local process, nothing is joined or left.
//! - **C4 backpressure is the core's rule.** A send's reply is decided only after the
//!   shell has carried out its frames: the node asks for that with
//!   [`Output::Carried`], the shell reports every refused frame with
//!   [`Node::frame_refused`] as it carries the outputs out, in order, and calls
//!   [`Node::handle_carried`] when it reaches the marker. The single-destination rule
//!   ([`Dest::is_single`]) and the group rule ([`SendReceipt::refused_nodes`]) are then
//!   applied here ([`Node::settle_send`]), never in a shell.
//! - **C5 a hold is ended only by the command that opened it.** [`Command::EndHold`]
//!   names the [`Command::Hold`] it ends; a client whose hold was refused (the task
//!   was already held) cannot end another client's hold on the same task.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use super::claims_plane::{CallError, ClaimCall};
use super::{
    Dest, MonitorItem, Node, OpId, Output, ProcessError, SendError, SendOutcome, SendReceipt,
    SyncError, SyncMode,
};
use crate::claims::{CallOk, ShardId, ShardTable};
use crate::pid::Pid;
use crate::process::{Inbox, Mailbox};
use crate::quorum::ProposeError;
use crate::registry::{ConflictPolicy, InvalidField, MonitorId, Snapshot};

/// Identifies one command, chosen by the shell; it comes back in the command's
/// [`Output::Completed`]. Ids must be unique among the shell's commands in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// An application operation, as data ([`Node::handle_command`]).
#[derive(Debug, Clone)]
pub enum Command {
    /// Start a process with a mailbox of `capacity` messages (the configured default
    /// if `None`). Replies [`Reply::Spawned`], or [`Reply::OverLimit`] at [`super::NodeConfig::max_processes`].
    Spawn {
        /// Mailbox capacity.
        capacity: Option<usize>,
    },
    /// End a local process: its mailbox closes, it leaves every group and name, its
    /// monitors end. Replies [`Reply::Exited`].
    Exit {
        /// The process.
        pid: Pid,
    },
    /// `pg:join/3`: every PID (each a live local process) joins each group once more.
    /// Replies [`Reply::Groups`].
    Join {
        /// The scope.
        scope: String,
        /// The groups.
        groups: Vec<String>,
        /// The processes (all or none join, C3).
        pids: Vec<Pid>,
        /// Metadata of the new memberships.
        meta: Option<String>,
    },
    /// `pg:leave/3`: every PID leaves each group once. Replies [`Reply::Groups`]:
    /// [`GroupError::NotJoined`] only if none of them had joined any of the groups.
    Leave {
        /// The scope.
        scope: String,
        /// The groups.
        groups: Vec<String>,
        /// The processes (all are checked before any leaves, C3).
        pids: Vec<Pid>,
    },
    /// Replace the metadata of `pid`'s membership of `group`. Replies
    /// [`Reply::Groups`].
    SetMeta {
        /// The scope.
        scope: String,
        /// The group.
        group: String,
        /// The process.
        pid: Pid,
        /// The new metadata.
        meta: Option<String>,
    },
    /// Register an eventual name for a local process. Replies [`Reply::Registered`].
    Register {
        /// The name.
        name: String,
        /// The process.
        pid: Pid,
        /// Metadata.
        meta: Option<String>,
        /// How a concurrent registration elsewhere is resolved.
        policy: ConflictPolicy,
    },
    /// Unregister a name held by a local process. Replies [`Reply::Unregistered`].
    Unregister {
        /// The name.
        name: String,
    },
    /// Subscribe to a group (or a whole scope with `group = None`): the snapshot and
    /// the inbox of later events, in one step. Replies [`Reply::Monitoring`], or [`Reply::OverLimit`] at [`super::NodeConfig::max_monitors`].
    Monitor {
        /// A local process whose exit ends the monitor.
        owner: Option<Pid>,
        /// The scope.
        scope: String,
        /// The group, or every group of the scope.
        group: Option<String>,
    },
    /// End a monitor. Replies [`Reply::Demonitored`].
    Demonitor {
        /// The monitor.
        id: MonitorId,
    },
    /// Send without waiting for remote delivery. Replies [`Reply::Sent`] once the
    /// frames are carried out (C4).
    Send {
        /// The sending process, if any.
        from: Option<Pid>,
        /// Where to.
        dest: Dest,
        /// The message.
        payload: Bytes,
    },
    /// Send and wait until every remote node holding a target has said whether it
    /// delivered (or [`ACK_TIMEOUT`](super::ACK_TIMEOUT) passed). Replies
    /// [`Reply::Confirmed`].
    SendConfirmed {
        /// The sending process, if any.
        from: Option<Pid>,
        /// Where to.
        dest: Dest,
        /// The message.
        payload: Bytes,
    },
    /// A propagation barrier (`Node::sync`: N6 in [`node`](super)). Replies [`Reply::Synced`].
    Sync {
        /// Whose digests must cover this node's latest change.
        mode: SyncMode,
        /// When to give up.
        timeout: Duration,
    },
    /// Claim a task on the holder of `ttl` (the default TTL if `None`). Replies
    /// [`Reply::Claims`].
    Claim {
        /// The task.
        task: String,
        /// The claim's TTL.
        ttl: Option<Duration>,
    },
    /// Release a task if `token` is this node's current token for it. Replies
    /// [`Reply::Claims`].
    Release {
        /// The task.
        task: String,
        /// The token the caller holds.
        token: u64,
    },
    /// Open a hold on a task ([`crate::claims::hold`]): claim it and keep every other
    /// claim of it on this node out until [`Command::EndHold`]. Replies
    /// [`Reply::Claims`] with the claim's result.
    Hold {
        /// The task.
        task: String,
        /// The claim's TTL.
        ttl: Option<Duration>,
    },
    /// End the hold that command `hold` opened (its client went away); nothing if that
    /// command opened no hold, or its hold already ended (C5). Replies
    /// [`Reply::HoldEnding`].
    EndHold {
        /// The task.
        task: String,
        /// The [`Command::Hold`] that opened the hold.
        hold: CommandId,
    },
    /// Register a strong name for `owner` if it has no owner. Replies
    /// [`Reply::Claims`] ([`CallOk::Registered`] carries the version).
    RegisterStrong {
        /// The name.
        name: String,
        /// Its owner.
        owner: Pid,
        /// Bound to this node's session: the name vanishes with it.
        ephemeral: bool,
    },
    /// Transfer a strong name held at `version` to `to`. Replies [`Reply::Claims`].
    TransferStrong {
        /// The name.
        name: String,
        /// The version the caller holds.
        version: u64,
        /// The new owner.
        to: Pid,
    },
    /// Release a strong name held at `version`. Replies [`Reply::Claims`].
    ReleaseStrong {
        /// The name.
        name: String,
        /// The version the caller holds.
        version: u64,
    },
    /// A linearizable read of a strong name (one quorum round). Replies
    /// [`Reply::Claims`] with [`CallOk::Whereis`].
    WhereisStrong {
        /// The name.
        name: String,
    },
    /// A linearizable read of one shard's table. Replies [`Reply::Read`].
    ReadShard {
        /// The shard.
        shard: ShardId,
    },
    /// Change this node's tags: `set` adds or replaces, then `unset` removes. Replies
    /// [`Reply::Tags`] with the whole new set; a refused change keeps the old one. The
    /// change is gossiped to every member (a newer version always wins there).
    SetTags {
        /// Tags to add or replace.
        set: mesh_types::tags::Tags,
        /// Keys to remove.
        unset: Vec<String>,
    },
    /// Join through `addr` (an operator's `meshctl join`): announce to it now, and
    /// reply [`Reply::Announced`] once a member advertising that address is alive in
    /// this node's view (at once if one already is), or at `timeout`.
    Announce {
        /// The peer's advertised address.
        addr: std::net::SocketAddr,
        /// When to give up waiting for it.
        timeout: Duration,
    },
    /// Mark the down member `name` as left now, cluster-wide (an operator's `meshctl
    /// force-leave`; [`Membership::force_leave`](crate::membership::Membership::force_leave)).
    /// Replies [`Reply::ForceLeft`] in the same step; a refusal (unknown name, a member
    /// alive or suspect, this node itself) changes nothing (C2).
    ForceLeave {
        /// The member's name.
        name: String,
    },
}

/// Why a group operation ([`Command::Join`], [`Command::Leave`],
/// [`Command::SetMeta`]) was refused. Nothing changed, for any of the PIDs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The list of groups (or of PIDs) was empty.
    #[error("no group to join or leave")]
    NoGroups,
    /// The scope, a group or the metadata breaks a limit.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The PID is a process of another node; only its own node changes its entries.
    #[error("{0} is not a process of this node")]
    NotLocal(Pid),
    /// The PID is a process of this node (this boot or an earlier one) that is no
    /// longer alive.
    #[error("{0} has exited")]
    Exited(Pid),
    /// None of the PIDs had joined any of the groups (leave), or the process is not a
    /// member of the group (set-meta).
    #[error("the process has joined none of the groups")]
    NotJoined,
}

/// Why an eventual-name operation ([`Command::Register`], [`Command::Unregister`]) was
/// refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name or metadata breaks a limit.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The PID (register) or the name's holder (unregister) is a process of another
    /// node, which alone may change the name.
    #[error("{0} is not a process of this node")]
    NotLocal(Pid),
    /// The PID is a process of this node that is no longer alive.
    #[error("{0} has exited")]
    Exited(Pid),
    /// This node's view already has a winner for the name (possibly the PID itself).
    #[error("the name is registered to {0}")]
    AlreadyRegistered(Pid),
    /// No visible claim on the name.
    #[error("the name is not registered")]
    NotRegistered,
}

/// Why a shard read ([`Command::ReadShard`]) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The quorum plane is off (no voters) or not formed yet. Nothing was asked.
    #[error("the quorum plane is off or not formed yet")]
    Off,
    /// No quorum answered in time.
    #[error(transparent)]
    Timeout(#[from] ProposeError),
}

/// Why a [`Command::Announce`] did not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// No member advertising the address came up in time (nothing answers there, it is
    /// not a mesh node of this cluster, or it advertises another address).
    #[error("no member at {addr} came up within {timeout_ms} ms")]
    Timeout {
        /// The address.
        addr: std::net::SocketAddr,
        /// How long this node waited.
        timeout_ms: u64,
    },
}

/// How a command ended ([`Output::Completed`]); which variant answers which command is
/// said on each [`Command`] variant.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A process started.
    Spawned {
        /// Its PID.
        pid: Pid,
        /// Its mailbox.
        mailbox: Mailbox,
    },
    /// A spawn or a monitor refused by a resource limit: nothing was made.
    OverLimit(super::LimitError),
    /// A process ended, or was not a live local process.
    Exited(Result<(), ProcessError>),
    /// A join, leave or set-meta.
    Groups(Result<(), GroupError>),
    /// A registration.
    Registered(Result<(), NameError>),
    /// An unregistration: the PID that held the name.
    Unregistered(Result<Pid, NameError>),
    /// A monitor: its id, its snapshot and its inbox.
    Monitoring(Result<(MonitorId, Snapshot, Inbox<MonitorItem>), ProcessError>),
    /// A monitor ended (`false`: it was not known).
    Demonitored(bool),
    /// A send's local part.
    Sent(Result<SendReceipt, SendError>),
    /// An acknowledged send: its receipt and what happened remotely.
    Confirmed(Result<(SendReceipt, SendOutcome), SendError>),
    /// A barrier.
    Synced(Result<(), SyncError>),
    /// A claims or strong-name call.
    Claims(Result<CallOk, CallError>),
    /// An end-hold (`false`: the command named opened no hold that is still open).
    HoldEnding(bool),
    /// A shard read (`None`: the shard was never written).
    Read(Result<Option<ShardTable>, ReadError>),
    /// A join through an address: the name of the member found there.
    Announced(Result<String, AnnounceError>),
    /// A tags change: this node's whole tag set after it.
    Tags(Result<mesh_types::tags::Tags, mesh_types::tags::TagError>),
    /// A force-leave: the member's identity and its state before.
    ForceLeft(
        Result<
            (crate::identity::NodeId, crate::membership::MemberState),
            crate::membership::ForceLeaveError,
        >,
    ),
}

impl Reply {
    /// The command that undoes what this reply hands over, for a reply nobody takes.
    ///
    /// A [`Reply::Spawned`] hands over a process and a [`Reply::Monitoring`] a monitor;
    /// both live until their handle ends them. When the caller has gone before the reply
    /// came (an HTTP client that closes its `listen` request before the answer, a
    /// cancelled future), nobody holds a handle, so the shell must run this command at
    /// once or the process stays in its groups for good. Every other reply hands over
    /// nothing (`None`): holds end by their own handle or by TTL, and claims expire.
    pub fn undo_if_unclaimed(&self) -> Option<Command> {
        match self {
            Self::Spawned { pid, .. } => Some(Command::Exit { pid: pid.clone() }),
            Self::Monitoring(Ok((id, _, _))) => Some(Command::Demonitor { id: *id }),
            _ => None,
        }
    }
}

/// A send whose frames the shell is carrying out (C4).
#[derive(Debug)]
struct OpenSend {
    mark: u64,
    id: CommandId,
    dest: Dest,
    receipt: SendReceipt,
    confirmed: bool,
    refused: Vec<String>,
}

/// The node's bookkeeping of commands in flight.
#[derive(Debug, Default)]
pub(super) struct Commands {
    /// Async operations started by a command: the command, and for an acknowledged
    /// send its receipt (the reply carries it).
    waiting: HashMap<OpId, (CommandId, Option<SendReceipt>)>,
    /// Sends waiting for [`Node::handle_carried`], oldest first.
    open_sends: VecDeque<OpenSend>,
    next_mark: u64,
    /// Joins through an address waiting for a member there: (command, address, when
    /// it started, deadline).
    announces: Vec<(
        CommandId,
        std::net::SocketAddr,
        std::time::Instant,
        std::time::Instant,
    )>,
    /// Open holds: task -> the command that opened it.
    holds: BTreeMap<String, CommandId>,
    /// While a command runs: operations that ended before their command could wait for
    /// them (a barrier already covered, say), kept until [`Node::handle_command`] is
    /// done.
    early: Option<Vec<(OpId, super::Completion)>>,
}

impl Node {
    /// Runs `cmd`; its end comes as one [`Output::Completed`] with `id` (C1), at once
    /// or when the operation has finished.
    pub fn handle_command(&mut self, now: std::time::Instant, id: CommandId, cmd: Command) {
        self.commands.early = Some(Vec::new());
        let reply = self.run_command(now, id, cmd);
        // Whatever ended early and is not this command's was nobody's.
        self.commands.early = None;
        if let Some(result) = reply {
            self.outputs.push_back(Output::Completed { id, result });
        }
    }

    fn run_command(
        &mut self,
        now: std::time::Instant,
        id: CommandId,
        cmd: Command,
    ) -> Option<Reply> {
        match cmd {
            Command::Spawn { capacity } => Some(match self.try_spawn(capacity) {
                Ok((pid, mailbox)) => Reply::Spawned { pid, mailbox },
                Err(e) => Reply::OverLimit(e),
            }),
            Command::Exit { pid } => Some(Reply::Exited(self.exit(now, &pid))),
            Command::Join {
                scope,
                groups,
                pids,
                meta,
            } => Some(Reply::Groups(
                self.join_many(now, &scope, &groups, &pids, meta),
            )),
            Command::Leave {
                scope,
                groups,
                pids,
            } => Some(Reply::Groups(self.leave_many(now, &scope, &groups, &pids))),
            Command::SetMeta {
                scope,
                group,
                pid,
                meta,
            } => Some(Reply::Groups(
                self.set_meta(now, &scope, &group, &pid, meta),
            )),
            Command::Register {
                name,
                pid,
                meta,
                policy,
            } => Some(Reply::Registered(
                self.register(now, &name, &pid, meta, policy),
            )),
            Command::Unregister { name } => Some(Reply::Unregistered(self.unregister(now, &name))),
            Command::Monitor {
                owner,
                scope,
                group,
            } => Some(
                match self.within(super::Resource::Monitors, self.monitor_count()) {
                    Ok(()) => Reply::Monitoring(self.monitor(owner, &scope, group.as_deref())),
                    Err(e) => Reply::OverLimit(e),
                },
            ),
            Command::Demonitor { id } => Some(Reply::Demonitored(self.demonitor(id))),
            Command::Send {
                from,
                dest,
                payload,
            } => self.start_send(now, id, from, dest, payload, false),
            Command::SendConfirmed {
                from,
                dest,
                payload,
            } => self.start_send(now, id, from, dest, payload, true),
            Command::Sync { mode, timeout } => {
                let sync = self.sync(now, mode, timeout);
                self.wait(OpId::Sync(sync), id);
                None
            }
            Command::Claim { task, ttl } => {
                let started = self.claim(now, &task, ttl);
                self.claims_started(id, started)
            }
            Command::Release { task, token } => {
                let started = self.release(now, &task, token);
                self.claims_started(id, started)
            }
            Command::Hold { task, ttl } => {
                let started = self.hold(now, &task, ttl);
                if started.is_ok() {
                    self.commands.holds.insert(task, id);
                }
                self.claims_started(id, started)
            }
            Command::EndHold { task, hold } => {
                let open = self.commands.holds.get(&task) == Some(&hold);
                if open {
                    self.commands.holds.remove(&task);
                    self.end_hold(now, &task);
                }
                Some(Reply::HoldEnding(open))
            }
            Command::RegisterStrong {
                name,
                owner,
                ephemeral,
            } => {
                let started = self.claims_call(now, None, |h, now| {
                    h.register_strong(now, &name, owner, ephemeral)
                });
                self.claims_started(id, started)
            }
            Command::TransferStrong { name, version, to } => {
                let started = self.claims_call(now, None, |h, now| {
                    h.transfer_name(now, &name, version, to, false)
                });
                self.claims_started(id, started)
            }
            Command::ReleaseStrong { name, version } => {
                let started =
                    self.claims_call(now, None, |h, now| h.release_name(now, &name, version));
                self.claims_started(id, started)
            }
            Command::WhereisStrong { name } => {
                let started = self.claims_call(now, None, |h, now| h.whereis(now, &name));
                self.claims_started(id, started)
            }
            Command::SetTags { set, unset } => Some(Reply::Tags(self.set_tags(now, &set, &unset))),
            Command::Announce { addr, timeout } => {
                if let Some(name) = self.live_member_at(addr) {
                    return Some(Reply::Announced(Ok(name)));
                }
                self.membership.announce_to(now, addr);
                self.after_input(now);
                self.commands.announces.push((id, addr, now, now + timeout));
                None
            }
            Command::ForceLeave { name } => {
                let result = self.membership.force_leave(now, &name);
                self.after_input(now);
                Some(Reply::ForceLeft(result))
            }
            Command::ReadShard { shard } => match self.read_shard(now, shard) {
                Some(read) => {
                    self.wait(OpId::Read(read), id);
                    None
                }
                None => Some(Reply::Read(Err(ReadError::Off))),
            },
        }
    }

    /// Remembers that `op`'s end answers command `id` (and answers it now if `op`
    /// already ended while the command was starting it).
    fn wait(&mut self, op: OpId, id: CommandId) {
        self.commands.waiting.insert(op, (id, None));
        let early = self.commands.early.as_mut().and_then(|early| {
            let i = early.iter().position(|(o, _)| *o == op)?;
            Some(early.swap_remove(i).1)
        });
        if let Some(done) = early {
            self.finish(op, done);
        }
    }

    fn claims_started(
        &mut self,
        id: CommandId,
        started: Result<ClaimCall, CallError>,
    ) -> Option<Reply> {
        match started {
            Ok(call) => {
                self.wait(OpId::Claims(call), id);
                None
            }
            Err(e) => Some(Reply::Claims(Err(e))),
        }
    }

    /// An operation ended: its command (if a command started it) gets its reply. An
    /// operation no command waits for (a hold's own release call) ends silently.
    pub(super) fn finish(&mut self, op: OpId, done: super::Completion) {
        let Some((id, receipt)) = self.commands.waiting.remove(&op) else {
            if let Some(early) = self.commands.early.as_mut() {
                early.push((op, done));
            }
            return;
        };
        let result = match done {
            super::Completion::Send(outcome) => {
                Reply::Confirmed(Ok((receipt.unwrap_or_default(), outcome)))
            }
            super::Completion::Sync(r) => Reply::Synced(r),
            super::Completion::Claims(r) => Reply::Claims(r.map_err(CallError::Claims)),
            super::Completion::Read(r) => Reply::Read(r.map_err(ReadError::Timeout)),
        };
        self.outputs.push_back(Output::Completed { id, result });
    }

    fn start_send(
        &mut self,
        now: std::time::Instant,
        id: CommandId,
        from: Option<Pid>,
        dest: Dest,
        payload: Bytes,
        confirmed: bool,
    ) -> Option<Reply> {
        match self.send_with(now, from, &dest, payload, confirmed) {
            Err(e) if confirmed => Some(Reply::Confirmed(Err(e))),
            Err(e) => Some(Reply::Sent(Err(e))),
            Ok(receipt) => {
                // The frames are in the outputs; the marker goes after them.
                self.commands.next_mark += 1;
                let mark = self.commands.next_mark;
                self.commands.open_sends.push_back(OpenSend {
                    mark,
                    id,
                    dest,
                    receipt,
                    confirmed,
                    refused: Vec::new(),
                });
                self.outputs.push_back(Output::Carried(mark));
                None
            }
        }
    }

    /// A user frame to `node` was refused while a send's frames were being carried
    /// out: the oldest open send is the one being carried (C4).
    pub(super) fn note_refused_user(&mut self, node: &str) {
        if let Some(open) = self.commands.open_sends.front_mut() {
            open.refused.push(node.to_owned());
        }
    }

    /// The shell has carried out every output before [`Output::Carried`]`(mark)`: the
    /// send it ends is settled by the backpressure rule (C4) and, unless it waits for
    /// acks, replied to.
    pub fn handle_carried(&mut self, now: std::time::Instant, mark: u64) {
        while let Some(open) = self.commands.open_sends.front() {
            if open.mark > mark {
                break;
            }
            let Some(open) = self.commands.open_sends.pop_front() else {
                break;
            };
            self.settle_open(open);
        }
        self.after_input(now);
    }

    fn settle_open(&mut self, open: OpenSend) {
        let OpenSend {
            id,
            dest,
            receipt,
            confirmed,
            refused,
            ..
        } = open;
        let pending = receipt.pending;
        if !confirmed {
            let result = self.settle_send(&dest, receipt, refused);
            self.outputs.push_back(Output::Completed {
                id,
                result: Reply::Sent(result),
            });
            return;
        }
        // Settling may finish the acks (every frame refused) before anyone waits for
        // them: catch that outcome as a starting command's early ends are caught.
        let outer = self.commands.early.replace(Vec::new());
        let result = self.settle_send(&dest, receipt, refused);
        let early = std::mem::replace(&mut self.commands.early, outer).unwrap_or_default();
        let finished = early.into_iter().find_map(|(op, done)| match (op, done) {
            (OpId::Send(aid), super::Completion::Send(outcome)) if Some(aid) == pending => {
                Some(outcome)
            }
            _ => None,
        });
        let reply = match result {
            Err(e) => {
                if let Some(aid) = pending {
                    // Nobody waits for those acks any more.
                    self.acks.remove(&aid);
                }
                Reply::Confirmed(Err(e))
            }
            Ok(receipt) => match (pending, finished) {
                (_, Some(outcome)) => Reply::Confirmed(Ok((receipt, outcome))),
                (Some(aid), None) => {
                    self.commands
                        .waiting
                        .insert(OpId::Send(aid), (id, Some(receipt)));
                    return;
                }
                (None, None) => Reply::Confirmed(Ok((receipt, SendOutcome::default()))),
            },
        };
        self.outputs
            .push_back(Output::Completed { id, result: reply });
    }

    /// The name of the live peer advertising `addr`, if any.
    fn live_member_at(&self, addr: std::net::SocketAddr) -> Option<String> {
        self.peers
            .values()
            .find(|p| p.addr == addr)
            .map(|p| p.name.clone())
    }

    /// Answers the joins waiting for a member that is now live, and those whose
    /// deadline passed.
    pub(super) fn check_announces(&mut self, now: std::time::Instant) {
        if self.commands.announces.is_empty() {
            return;
        }
        for (id, addr, started, deadline) in std::mem::take(&mut self.commands.announces) {
            let result = match self.live_member_at(addr) {
                Some(name) => Ok(name),
                None if now >= deadline => Err(AnnounceError::Timeout {
                    addr,
                    timeout_ms: u64::try_from(
                        deadline.saturating_duration_since(started).as_millis(),
                    )
                    .unwrap_or(u64::MAX),
                }),
                None => {
                    self.commands.announces.push((id, addr, started, deadline));
                    continue;
                }
            };
            self.outputs.push_back(Output::Completed {
                id,
                result: Reply::Announced(result),
            });
        }
    }

    /// The earliest deadline of a waiting join.
    pub(super) fn announce_deadline(&self) -> Option<std::time::Instant> {
        self.commands.announces.iter().map(|a| a.3).min()
    }
}

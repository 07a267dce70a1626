//! The application API of a running agent: processes, groups, names, send, monitors,
//! the propagation barrier, claims and strong names.
//!
//! Every operation is a [`Command`] value handed to the node task, which runs it on the
//! core ([`mesh_core::node::Node::handle_command`]) and answers with one [`Reply`]; the
//! shell keeps one map from command id to waiter. So an operation sees and changes the
//! node's state atomically with respect to the network: a monitor's snapshot and its
//! subscription, for instance, happen in one step.
//!
//! Every method returns `Result<T, ApiError<E>>`, where `E` is its family's refusal
//! ([`GroupError`] for joins and leaves, [`NameError`] for eventual names,
//! [`SendError`], [`SyncError`], [`CallError`] for claims and strong names,
//! [`ReadError`], [`ProcessError`]). [`ApiError::Stopped`] and [`ApiError::Busy`] did
//! nothing; [`ApiError::Failed`] says in `E`'s variant what happened to the state
//! (each variant's docs say; refusals changed nothing).
//!
//! # Groups: what differs from Erlang's `pg`
//!
//! The group calls are `pg`'s ([`join`](AgentHandle::join) / [`join_many`](AgentHandle::join_many)
//! = `pg:join/3`, [`leave_groups`](AgentHandle::leave_groups) /
//! [`leave_many`](AgentHandle::leave_many) = `pg:leave/3`,
//! [`members_of`](AgentHandle::members_of) = `get_members`,
//! [`local_members`](AgentHandle::local_members), [`which_groups`](AgentHandle::which_groups),
//! [`which_local_groups`](AgentHandle::which_local_groups),
//! [`monitor`](AgentHandle::monitor) = `pg:monitor`), with these deliberate differences:
//!
//! - **Scopes need no start**: any scope name works at once ([`scopes`](AgentHandle::scopes)
//!   lists those with a group).
//! - **Members are sorted by PID**, one entry per join (a process joined twice appears
//!   twice), not in join order.
//! - **Monitor events are per occurrence**: a process that joined twice and exits
//!   gives two leave events, in order; the snapshot and the events never overlap or
//!   leave a gap.
//! - **A down node's members are hidden, not removed**, and come back without a
//!   transfer if the node returns within `permdown`; after it they are purged. (`pg`
//!   removes them when the node disconnects.)
//! - **A PID is refused, not ignored**: a PID of another node is
//!   [`GroupError::NotLocal`], one of this node that exited is [`GroupError::Exited`],
//!   and a many-PID join or leave with either changes nothing (`pg:join/3` with a
//!   non-local PID raises, too).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use metrics::counter;
use tokio::sync::{broadcast, oneshot};

use super::{AgentHandle, Shell, ShellCommand};
use crate::views::quorum_status_of;
use mesh_api::QuorumStatus;
use mesh_core::claims::{CallOk, ClaimsError, HolderEvent, ShardTable, StrongName};
use mesh_core::identity::NodeId;
use mesh_core::membership::{ForceLeaveError, MemberState, MembershipEvent};
use mesh_core::node::claims_plane::CallError;
use mesh_core::node::{
    AnnounceError, Command, CommandId, Dest, GroupError, LimitError, MonitorItem, NameError, Node,
    ProcessError, ReadError, Reply, SendError, SendOutcome, SendReceipt, SyncError, SyncMode,
};
use mesh_core::pid::Pid;
use mesh_core::process::{Delivery, Inbox, Mailbox};
use mesh_core::registry::{ConflictPolicy, MonitorId, NameInfo, Snapshot};

/// Why an API call failed. `E` is the operation family's refusal (`Infallible` for
/// operations the node never refuses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError<E = Infallible> {
    /// The agent has stopped. Nothing was done.
    #[error("the agent has stopped")]
    Stopped,
    /// The node's command queue is full. Nothing was done; retry later.
    #[error("the agent is busy (command queue full); retry later")]
    Busy,
    /// The node refused the operation, or it failed; the variant of `E` says what
    /// happened to the state.
    #[error(transparent)]
    Failed(E),
}

impl ApiError {
    /// The same failure for an operation of another family (`Stopped` and `Busy` are
    /// the only failures of an infallible one).
    pub fn widen<E>(self) -> ApiError<E> {
        match self {
            Self::Stopped => ApiError::Stopped,
            Self::Busy => ApiError::Busy,
            Self::Failed(never) => match never {},
        }
    }
}

impl<E> ApiError<E> {
    /// The refusal, if the node refused (`None` for `Stopped` and `Busy`).
    pub fn failed(&self) -> Option<&E> {
        match self {
            Self::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// `Ok` with the refusal, or `Err` with the failure that did nothing (`Stopped`,
    /// `Busy`): for callers that handle those two alike for every family.
    pub fn into_failed(self) -> Result<E, ApiError> {
        match self {
            Self::Failed(e) => Ok(e),
            Self::Stopped => Err(ApiError::Stopped),
            Self::Busy => Err(ApiError::Busy),
        }
    }
}

/// The core answered a command with another command's reply: a bug in the core's
/// dispatch (C1 in `mesh_core::node::command`), never caused by input.
fn mismatched(what: &str, reply: &Reply) -> ! {
    unreachable!("{what} got the reply {reply:?}")
}

/// The receiving end of one command's reply; see [`AgentHandle::command`].
struct ReplyWaiter<'a> {
    rx: oneshot::Receiver<Reply>,
    agent: &'a AgentHandle,
    taken: bool,
}

impl Drop for ReplyWaiter<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        // From here on the node task's send fails (and it undoes the reply itself);
        // a reply that made it into the channel before is undone here.
        self.rx.close();
        if let Some(undo) = self
            .rx
            .try_recv()
            .ok()
            .as_ref()
            .and_then(Reply::undo_if_unclaimed)
        {
            counter!("mesh_runtime_unclaimed_replies_total").increment(1);
            self.agent.push_from_drop(undo);
        }
    }
}

/// Why a monitor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitorError {
    /// Its owner is not a live local process.
    #[error(transparent)]
    Owner(ProcessError),
    /// The node already holds its `max_monitors`.
    #[error(transparent)]
    OverLimit(LimitError),
}

/// A stream of events (membership, claims) from the moment it was made.
#[derive(Debug)]
pub struct Events<T> {
    rx: broadcast::Receiver<T>,
}

/// Why [`Events::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    /// This subscriber fell behind and missed this many events; the stream goes on
    /// with the next one. (Re-read the state the events describe.)
    #[error("missed {0} events")]
    Lagged(u64),
    /// The agent stopped: no more events.
    #[error("the agent has stopped")]
    Closed,
}

impl<T: Clone> Events<T> {
    pub(super) fn new(rx: broadcast::Receiver<T>) -> Self {
        Self { rx }
    }

    /// The next event.
    pub async fn recv(&mut self) -> Result<T, EventsError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => EventsError::Lagged(n),
            broadcast::error::RecvError::Closed => EventsError::Closed,
        })
    }

    /// An event if one is waiting (`Ok(None)`: none yet).
    pub fn try_recv(&mut self) -> Result<Option<T>, EventsError> {
        match self.rx.try_recv() {
            Ok(ev) => Ok(Some(ev)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Err(EventsError::Lagged(n)),
            Err(broadcast::error::TryRecvError::Closed) => Err(EventsError::Closed),
        }
    }
}

impl AgentHandle {
    /// Reads the node: runs `f` on the node task with the node (read-only) and the
    /// current time, and returns its result. The escape hatch for queries the API has no
    /// method for; every change is a [`Command`].
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Node, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        self.call_shell(move |shell, now| f(&shell.node, now)).await
    }

    /// Runs `f` on the node task with the node and the current time, past every rule
    /// of the API. Public only for benchmarks that drive the node directly (sends
    /// without backpressure settling); applications use the methods.
    #[doc(hidden)]
    pub async fn call_mut<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        self.call_shell(move |shell, now| f(&mut shell.node, now))
            .await
    }

    async fn call_shell<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Shell, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let (tx, rx) = oneshot::channel();
        let call = Box::new(move |shell: &mut Shell, now| {
            let _ = tx.send(f(shell, now));
        });
        self.queue(ShellCommand::Call(call))?;
        rx.await.map_err(|_| ApiError::Stopped)
    }

    /// Puts `cmd` in the node task's queue, or fails at once.
    fn queue(&self, cmd: ShellCommand) -> Result<(), ApiError> {
        match self.commands.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                counter!("mesh_runtime_input_dropped_total", "reason" => "command_queue_full")
                    .increment(1);
                Err(ApiError::Busy)
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Err(ApiError::Stopped),
        }
    }

    /// A fresh command id.
    fn next_id(&self) -> CommandId {
        self.shared.fresh_command_id()
    }

    /// Runs `cmd` on the node and waits for its reply.
    ///
    /// If this future is dropped before the reply is taken, whatever the reply hands
    /// over (a spawned process, a monitor) is undone ([`Reply::undo_if_unclaimed`]):
    /// the waiter closes its channel, so a reply not sent yet is undone by the node
    /// task, and one already in the channel is undone here.
    pub async fn command(&self, cmd: Command) -> Result<Reply, ApiError> {
        let (_, rx) = self.start(cmd)?;
        let mut waiter = ReplyWaiter {
            rx,
            agent: self,
            taken: false,
        };
        let reply = (&mut waiter.rx).await.map_err(|_| ApiError::Stopped);
        waiter.taken = true;
        reply
    }

    /// Queues `cmd` under a fresh id, with a waiter for its reply.
    fn start(&self, cmd: Command) -> Result<(CommandId, oneshot::Receiver<Reply>), ApiError> {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.queue(ShellCommand::Node {
            id,
            cmd,
            reply: Some(tx),
        })?;
        Ok((id, rx))
    }

    /// Queues `cmd` with nobody waiting for its reply, waiting for room in the queue
    /// (for commands that must not be lost: a process's exit, a hold's end). `false`
    /// if the agent has stopped.
    async fn push(&self, cmd: Command) -> bool {
        let id = self.next_id();
        self.commands
            .send(ShellCommand::Node {
                id,
                cmd,
                reply: None,
            })
            .await
            .is_ok()
    }

    /// Queues `cmd` from a `Drop`, which cannot wait: at once when the queue has room,
    /// else from a task that waits for room (an abandoned process, monitor or hold must
    /// still be undone under load). A stopped agent needs nothing: its processes,
    /// monitors and holds ended with it. Lost, counted and logged, only when no tokio
    /// runtime is left to wait on.
    fn push_from_drop(&self, cmd: Command) {
        use tokio::sync::mpsc::error::TrySendError;
        let id = self.next_id();
        let queued = ShellCommand::Node {
            id,
            cmd,
            reply: None,
        };
        let Err(TrySendError::Full(queued)) = self.commands.try_send(queued) else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let commands = self.commands.clone();
            rt.spawn(async move {
                let _ = commands.send(queued).await;
            });
        } else {
            counter!("mesh_runtime_input_dropped_total", "reason" => "drop_command_lost")
                .increment(1);
            tracing::warn!(
                "a dropped handle's undo (exit, demonitor or end-hold) was lost: the \
                 command queue is full and no runtime is left to wait for room"
            );
        }
    }

    /// Starts a process on this node. It exits when the handle is dropped (or
    /// [`ProcessHandle::exit`] is called): its mailbox closes and it leaves every
    /// group and name in one delta.
    ///
    /// Refused ([`ApiError::Failed`]) when the node already holds its
    /// `max_processes`.
    pub async fn spawn(
        &self,
        mailbox_capacity: Option<usize>,
    ) -> Result<ProcessHandle, ApiError<LimitError>> {
        let reply = self
            .command(Command::Spawn {
                capacity: mailbox_capacity,
            })
            .await
            .map_err(ApiError::widen)?;
        let (pid, mailbox) = match reply {
            Reply::Spawned { pid, mailbox } => (pid, mailbox),
            Reply::OverLimit(e) => return Err(ApiError::Failed(e)),
            other => mismatched("spawn", &other),
        };
        Ok(ProcessHandle {
            pid,
            mailbox,
            agent: self.clone(),
            exited: false,
        })
    }

    async fn groups_command(&self, cmd: Command) -> Result<(), ApiError<GroupError>> {
        match self.command(cmd).await.map_err(ApiError::widen)? {
            Reply::Groups(r) => r.map_err(ApiError::Failed),
            other => mismatched("a group command", &other),
        }
    }

    /// `pg:join/3` for one local process: it joins each of `groups` once more.
    pub async fn join(
        &self,
        scope: &str,
        groups: &[String],
        pid: &Pid,
        meta: Option<String>,
    ) -> Result<(), ApiError<GroupError>> {
        self.join_many(scope, groups, std::slice::from_ref(pid), meta)
            .await
    }

    /// `pg:join/3` for many local processes: all of them join, or none (if any is not
    /// a live local process, nothing changes).
    pub async fn join_many(
        &self,
        scope: &str,
        groups: &[String],
        pids: &[Pid],
        meta: Option<String>,
    ) -> Result<(), ApiError<GroupError>> {
        self.groups_command(Command::Join {
            scope: scope.to_owned(),
            groups: groups.to_vec(),
            pids: pids.to_vec(),
            meta,
        })
        .await
    }

    /// `pg:leave/3` for one local process: it leaves each of `groups` once
    /// ([`GroupError::NotJoined`] only if it was in none).
    pub async fn leave_groups(
        &self,
        scope: &str,
        groups: &[String],
        pid: &Pid,
    ) -> Result<(), ApiError<GroupError>> {
        self.leave_many(scope, groups, std::slice::from_ref(pid))
            .await
    }

    /// `pg:leave/3` for many local processes: every PID is checked first; each leaves
    /// each group once; [`GroupError::NotJoined`] only if none had joined any.
    pub async fn leave_many(
        &self,
        scope: &str,
        groups: &[String],
        pids: &[Pid],
    ) -> Result<(), ApiError<GroupError>> {
        self.groups_command(Command::Leave {
            scope: scope.to_owned(),
            groups: groups.to_vec(),
            pids: pids.to_vec(),
        })
        .await
    }

    /// Replaces the metadata of `pid`'s membership of `group`.
    pub async fn set_meta(
        &self,
        scope: &str,
        group: &str,
        pid: &Pid,
        meta: Option<String>,
    ) -> Result<(), ApiError<GroupError>> {
        self.groups_command(Command::SetMeta {
            scope: scope.to_owned(),
            group: group.to_owned(),
            pid: pid.clone(),
            meta,
        })
        .await
    }

    /// `pg:get_members/2`: members of a group (one entry per join, sorted by PID), in
    /// this node's view.
    pub async fn members_of(&self, scope: &str, group: &str) -> Result<Vec<Pid>, ApiError> {
        let (scope, group) = (scope.to_owned(), group.to_owned());
        self.call(move |n, _| n.registry().members(&scope, &group))
            .await
    }

    /// `pg:get_local_members/2`: the members of a group that live on this node.
    pub async fn local_members(&self, scope: &str, group: &str) -> Result<Vec<Pid>, ApiError> {
        let (scope, group) = (scope.to_owned(), group.to_owned());
        self.call(move |n, _| n.registry().local_members(&scope, &group))
            .await
    }

    /// `pg:which_groups/1`: the groups of `scope` with at least one visible member.
    pub async fn which_groups(&self, scope: &str) -> Result<Vec<String>, ApiError> {
        let scope = scope.to_owned();
        self.call(move |n, _| n.registry().which_groups(&scope))
            .await
    }

    /// `pg:which_local_groups/1`: the groups of `scope` with a member on this node.
    pub async fn which_local_groups(&self, scope: &str) -> Result<Vec<String>, ApiError> {
        let scope = scope.to_owned();
        self.call(move |n, _| n.registry().which_local_groups(&scope))
            .await
    }

    /// The scopes with at least one visible group (scopes need no start in mesh).
    pub async fn scopes(&self) -> Result<Vec<String>, ApiError> {
        self.call(|n, _| n.registry().scopes()).await
    }

    /// Registers an eventual name for a local process.
    pub async fn register(
        &self,
        name: &str,
        pid: &Pid,
        meta: Option<String>,
        policy: ConflictPolicy,
    ) -> Result<(), ApiError<NameError>> {
        let cmd = Command::Register {
            name: name.to_owned(),
            pid: pid.clone(),
            meta,
            policy,
        };
        match self.command(cmd).await.map_err(ApiError::widen)? {
            Reply::Registered(r) => r.map_err(ApiError::Failed),
            other => mismatched("register", &other),
        }
    }

    /// Unregisters a name held by a local process; returns that process.
    pub async fn unregister(&self, name: &str) -> Result<Pid, ApiError<NameError>> {
        let cmd = Command::Unregister {
            name: name.to_owned(),
        };
        match self.command(cmd).await.map_err(ApiError::widen)? {
            Reply::Unregistered(r) => r.map_err(ApiError::Failed),
            other => mismatched("unregister", &other),
        }
    }

    /// The holder of an eventual name in this node's view.
    pub async fn whereis(&self, name: &str) -> Result<Option<NameInfo>, ApiError> {
        let name = name.to_owned();
        self.call(move |n, _| n.whereis(&name)).await
    }

    /// Sends without waiting for remote delivery: local errors (and unreachable nodes,
    /// full send queues) are returned; remote refusals are counted on the receiver.
    pub async fn send(
        &self,
        from: Option<Pid>,
        dest: Dest,
        payload: Bytes,
    ) -> Result<SendReceipt, ApiError<SendError>> {
        let cmd = Command::Send {
            from,
            dest,
            payload,
        };
        match self.command(cmd).await.map_err(ApiError::widen)? {
            Reply::Sent(r) => r.map_err(ApiError::Failed),
            other => mismatched("send", &other),
        }
    }

    /// Sends and waits until every remote node holding a target has said whether it
    /// delivered (or [`mesh_core::node::ACK_TIMEOUT`] passed).
    pub async fn send_confirmed(
        &self,
        from: Option<Pid>,
        dest: Dest,
        payload: Bytes,
    ) -> Result<(SendReceipt, SendOutcome), ApiError<SendError>> {
        let cmd = Command::SendConfirmed {
            from,
            dest,
            payload,
        };
        match self.command(cmd).await.map_err(ApiError::widen)? {
            Reply::Confirmed(r) => r.map_err(ApiError::Failed),
            other => mismatched("send_confirmed", &other),
        }
    }

    /// Subscribes to a group (or a whole scope with `group = None`): the snapshot and
    /// every later change, with nothing lost or repeated between them. Events come one
    /// per occurrence (a process joined twice leaves twice), as pg's monitors do.
    pub async fn monitor(
        &self,
        owner: Option<Pid>,
        scope: &str,
        group: Option<&str>,
    ) -> Result<(Snapshot, MonitorHandle), ApiError<MonitorError>> {
        let cmd = Command::Monitor {
            owner,
            scope: scope.to_owned(),
            group: group.map(str::to_owned),
        };
        match self.command(cmd).await.map_err(ApiError::widen)? {
            Reply::OverLimit(e) => Err(ApiError::Failed(MonitorError::OverLimit(e))),
            Reply::Monitoring(r) => {
                let (id, snapshot, inbox) =
                    r.map_err(|e| ApiError::Failed(MonitorError::Owner(e)))?;
                Ok((
                    snapshot,
                    MonitorHandle {
                        id,
                        inbox,
                        agent: self.clone(),
                        ended: false,
                    },
                ))
            }
            other => mismatched("monitor", &other),
        }
    }

    /// Joins the cluster through the node advertising `addr` (an operator's join): the
    /// member's name once it is alive in this node's view, or
    /// [`AnnounceError::Timeout`] after `timeout`.
    pub async fn announce(
        &self,
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> Result<String, ApiError<AnnounceError>> {
        match self
            .command(Command::Announce { addr, timeout })
            .await
            .map_err(ApiError::widen)?
        {
            Reply::Announced(r) => r.map_err(ApiError::Failed),
            other => mismatched("announce", &other),
        }
    }

    /// Changes this node's tags at run time: `set` adds or replaces, then `unset`
    /// removes ([`Command::SetTags`]). Returns the whole new set. The change is gossiped;
    /// every member sees it (and reports a [`EventKind::Tags`] membership event) within
    /// a dissemination round or, failing that, an anti-entropy round.
    ///
    /// [`EventKind::Tags`]: mesh_core::membership::EventKind::Tags
    pub async fn set_tags(
        &self,
        set: mesh_types::tags::Tags,
        unset: Vec<String>,
    ) -> Result<mesh_types::tags::Tags, ApiError<mesh_types::tags::TagError>> {
        match self
            .command(Command::SetTags { set, unset })
            .await
            .map_err(ApiError::widen)?
        {
            Reply::Tags(r) => r.map_err(ApiError::Failed),
            other => mismatched("set_tags", &other),
        }
    }

    /// The live members whose tags match `selector`, best first for `key` (rendezvous
    /// hashing, [`mesh_core::placement`]), at most `n`: `place(key, sel, 1)` is the
    /// preferred owner. Computed from this node's view of members and tags.
    pub fn place(&self, key: &str, selector: &mesh_types::tags::Selector, n: usize) -> Vec<String> {
        let members = self.members();
        let live: Vec<(&str, &mesh_types::tags::Tags)> = members
            .iter()
            .filter(|m| m.state.is_live())
            .map(|m| (m.name.as_str(), &m.tags))
            .collect();
        mesh_core::placement::ranked_owners(key, live, selector, n)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Marks the down member `name` as left now, cluster-wide ([`Command::ForceLeave`]):
    /// its identity and its state before, or the refusal (which changed nothing).
    pub async fn force_leave(
        &self,
        name: &str,
    ) -> Result<(NodeId, MemberState), ApiError<ForceLeaveError>> {
        match self
            .command(Command::ForceLeave {
                name: name.to_owned(),
            })
            .await
            .map_err(ApiError::widen)?
        {
            Reply::ForceLeft(r) => r.map_err(ApiError::Failed),
            other => mismatched("force_leave", &other),
        }
    }

    /// Waits until peers' digests cover this node's latest change to groups and names,
    /// removals included ([`Command::Sync`]).
    pub async fn sync(&self, mode: SyncMode, timeout: Duration) -> Result<(), ApiError<SyncError>> {
        match self
            .command(Command::Sync { mode, timeout })
            .await
            .map_err(ApiError::widen)?
        {
            Reply::Synced(r) => r.map_err(ApiError::Failed),
            other => mismatched("sync", &other),
        }
    }
}

impl AgentHandle {
    /// Runs a claims or strong-name command and waits for its result.
    async fn claims_command(&self, cmd: Command) -> Result<CallOk, ApiError<CallError>> {
        let (_, rx) = self.start(cmd).map_err(ApiError::widen)?;
        Self::claims_reply(rx).await
    }

    async fn claims_reply(rx: oneshot::Receiver<Reply>) -> Result<CallOk, ApiError<CallError>> {
        match rx.await.map_err(|_| ApiError::Stopped)? {
            Reply::Claims(r) => r.map_err(ApiError::Failed),
            other => mismatched("a claims command", &other),
        }
    }

    /// Claims `task` for this node (its session renews itself until the task is
    /// released or the node dies). Its fencing token comes in [`CallOk::Claimed`].
    pub async fn claim(
        &self,
        task: &str,
        ttl: Option<Duration>,
    ) -> Result<CallOk, ApiError<CallError>> {
        self.claims_command(Command::Claim {
            task: task.to_owned(),
            ttl,
        })
        .await
    }

    /// Opens a hold on `task` ([`mesh_core::claims::hold`]): returns the hold (end it
    /// with [`Hold::end`], or by dropping it) and a future of its claim's result. The
    /// hold is open from the moment this returns, so a caller that stops waiting for
    /// the claim can still end it.
    pub fn hold(
        &self,
        task: &str,
        ttl: Option<Duration>,
    ) -> Result<
        (
            Hold,
            impl std::future::Future<Output = Result<CallOk, ApiError<CallError>>>,
        ),
        ApiError,
    > {
        let (id, rx) = self.start(Command::Hold {
            task: task.to_owned(),
            ttl,
        })?;
        let hold = Hold {
            task: task.to_owned(),
            id,
            agent: Some(self.clone()),
        };
        Ok((hold, Self::claims_reply(rx)))
    }

    /// Releases a task this node holds, if `token` is its current token (else
    /// `StaleToken`, changing nothing).
    pub async fn release(&self, task: &str, token: u64) -> Result<CallOk, ApiError<CallError>> {
        self.claims_command(Command::Release {
            task: task.to_owned(),
            token,
        })
        .await
    }

    /// The token and the end of validity (boot clock) of a task this node holds.
    pub async fn validity(
        &self,
        task: &str,
    ) -> Result<Option<(u64, std::time::Instant)>, ApiError> {
        let task = task.to_owned();
        self.call(move |n, _| n.quorum().and_then(|q| q.validity(&task)))
            .await
    }

    /// Registers strong name `name` for `owner` if it has no owner; its version (the
    /// fencing token) comes in [`CallOk::Registered`]. An `ephemeral` name is bound to
    /// this node's session and vanishes with it.
    pub async fn register_strong(
        &self,
        name: &str,
        owner: Pid,
        ephemeral: bool,
    ) -> Result<CallOk, ApiError<CallError>> {
        self.claims_command(Command::RegisterStrong {
            name: name.to_owned(),
            owner,
            ephemeral,
        })
        .await
    }

    /// Transfers strong name `name`, held at `version`, to `to`.
    pub async fn transfer_strong(
        &self,
        name: &str,
        version: u64,
        to: Pid,
    ) -> Result<CallOk, ApiError<CallError>> {
        self.claims_command(Command::TransferStrong {
            name: name.to_owned(),
            version,
            to,
        })
        .await
    }

    /// Releases strong name `name` held at `version`.
    pub async fn release_strong(
        &self,
        name: &str,
        version: u64,
    ) -> Result<CallOk, ApiError<CallError>> {
        self.claims_command(Command::ReleaseStrong {
            name: name.to_owned(),
            version,
        })
        .await
    }

    /// The owner and version of strong name `name`: with `linearizable`, one quorum
    /// round; else this node's cache (possibly stale, versioned). `Ok(None)`: no owner.
    pub async fn whereis_strong(
        &self,
        name: &str,
        linearizable: bool,
    ) -> Result<Option<StrongName>, ApiError<CallError>> {
        let name = name.to_owned();
        if linearizable {
            return match self.claims_command(Command::WhereisStrong { name }).await? {
                CallOk::Whereis { entry, .. } => Ok(entry),
                other => unreachable!("a strong-name read got {other:?}"),
            };
        }
        self.call(move |n, _| match n.quorum() {
            Some(q) => Ok(q.name_cache().whereis(&name).cloned()),
            None => Err(CallError::Claims(ClaimsError::Unavailable {
                reason: mesh_core::claims::Unavailable::NoVoters,
            })),
        })
        .await
        .map_err(ApiError::widen)?
        .map_err(ApiError::Failed)
    }

    /// A linearizable read of one shard's table (`Ok(None)`: never written).
    pub async fn read_shard(
        &self,
        shard: mesh_core::claims::ShardId,
    ) -> Result<Option<ShardTable>, ApiError<ReadError>> {
        match self
            .command(Command::ReadShard { shard })
            .await
            .map_err(ApiError::widen)?
        {
            Reply::Read(r) => r.map_err(ApiError::Failed),
            other => mismatched("read_shard", &other),
        }
    }

    /// The quorum plane as this node sees it.
    pub async fn quorum_status(&self) -> Result<Option<QuorumStatus>, ApiError> {
        self.call(|n, _| n.quorum().map(quorum_status_of)).await
    }

    /// Claim events (lost, renewed, assigned) from now on.
    pub fn subscribe_claims(&self) -> Events<HolderEvent> {
        Events::new(self.shared.claim_events.subscribe())
    }

    /// Membership events (up, suspect, down, left, ...) from now on.
    pub fn subscribe(&self) -> Events<MembershipEvent> {
        Events::new(self.shared.events.subscribe())
    }
}

/// An open hold ([`AgentHandle::hold`]). Ending it (or dropping it) releases its claim,
/// with retries, unless it was lost.
#[derive(Debug)]
pub struct Hold {
    task: String,
    id: CommandId,
    agent: Option<AgentHandle>,
}

impl Hold {
    /// The task.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// Ends the hold: the core releases its claim, with retries, unless it was lost.
    /// Waits for room in the command queue rather than failing when it is full, since a
    /// hold never ended would keep its claim.
    pub async fn end(mut self) {
        if let Some(agent) = self.agent.take() {
            // `false`: the agent stopped, and its sessions go with it.
            let _ = agent
                .push(Command::EndHold {
                    task: self.task.clone(),
                    hold: self.id,
                })
                .await;
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(agent) = self.agent.take() else {
            return;
        };
        agent.push_from_drop(Command::EndHold {
            task: self.task.clone(),
            hold: self.id,
        });
    }
}

/// A process on a running agent. Dropping it ends the process.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: Pid,
    mailbox: Mailbox,
    agent: AgentHandle,
    exited: bool,
}

impl ProcessHandle {
    /// The process's PID.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// The next delivery; `None` once the process has exited.
    pub async fn recv(&self) -> Option<Delivery> {
        self.mailbox.recv().await
    }

    /// A delivery if one is waiting.
    pub fn try_recv(&self) -> Option<Delivery> {
        self.mailbox.try_recv()
    }

    /// The agent the process lives on.
    pub fn agent(&self) -> &AgentHandle {
        &self.agent
    }

    /// Ends the process and waits until the node has removed it from every group and
    /// name. Exiting a process that already exited (killed by a name-conflict policy)
    /// is not an error.
    pub async fn exit(mut self) -> Result<(), ApiError> {
        self.exited = true;
        let pid = self.pid.clone();
        self.agent.command(Command::Exit { pid }).await?;
        Ok(())
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        self.agent.push_from_drop(Command::Exit {
            pid: self.pid.clone(),
        });
    }
}

/// A group monitor. Dropping it ends the monitor.
#[derive(Debug)]
pub struct MonitorHandle {
    id: MonitorId,
    inbox: Inbox<MonitorItem>,
    agent: AgentHandle,
    ended: bool,
}

impl MonitorHandle {
    /// The next event; `None` once the monitor ended.
    pub async fn recv(&self) -> Option<MonitorItem> {
        self.inbox.recv().await
    }

    /// An event if one is waiting.
    pub fn try_recv(&self) -> Option<MonitorItem> {
        self.inbox.try_recv()
    }

    /// Ends the monitor; no event is delivered after this returns.
    pub async fn demonitor(mut self) -> Result<(), ApiError> {
        self.ended = true;
        self.agent
            .command(Command::Demonitor { id: self.id })
            .await?;
        Ok(())
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        if !self.ended {
            self.agent
                .push_from_drop(Command::Demonitor { id: self.id });
        }
    }
}

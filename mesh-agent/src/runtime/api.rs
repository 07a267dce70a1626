//! The application API of a running agent: processes, groups, names, send, monitors,
//! the propagation barrier.
//!
//! Every call is a closure run on the node task ([`AgentHandle::call`]), so it sees
//! and changes the node's state atomically with respect to the network: a monitor's
//! snapshot and its subscription, for instance, happen in one step. Calls fail with
//! [`ApiError::Stopped`] once the agent has stopped, and with
//! [`ApiError::Busy`] when the node's command queue is full (the caller should back
//! off) — never by blocking the node.

use std::time::Duration;

use bytes::Bytes;
use metrics::counter;
use tokio::sync::{broadcast, oneshot};

use super::{AgentHandle, Command, Shell};
use crate::views::quorum_status_of;
use mesh_api::QuorumStatus;
use mesh_core::claims::{CallId, CallOk, ClaimsError, Holder, HolderEvent, StrongName};
use mesh_core::node::claims_plane::{CallError, ClaimCall};
use mesh_core::node::{
    Completion, Dest, MonitorItem, Node, NodeOpError, OpId, ProcessError, SendError, SendOutcome,
    SendReceipt, SyncError, SyncMode,
};
use mesh_core::pid::Pid;
use mesh_core::process::{Delivery, Inbox, Mailbox};
use mesh_core::registry::{
    ConflictPolicy, JoinError, LeaveError, MonitorId, NameInfo, RegisterError, Snapshot,
    UnregisterError,
};

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The agent has stopped.
    #[error("the agent has stopped")]
    Stopped,
    /// The node's command queue is full; nothing was done. Retry later.
    #[error("the agent is busy (command queue full); retry later")]
    Busy,
}

impl AgentHandle {
    /// Reads the node: runs `f` on the node task with the node (read-only) and the
    /// current time, and returns its result. The escape hatch for queries the API has no
    /// method for; every change goes through a method of its own.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Node, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        self.call_shell(move |shell, now| f(&shell.node, now)).await
    }

    /// Runs `f` on the node task with the node and the current time: what the API's
    /// methods that change the node are made of. Public only for benchmarks and tests
    /// that drive the node past the API's rules (e.g. sends without the backpressure
    /// rule of [`send`](Self::send)); applications use the methods.
    #[doc(hidden)]
    pub async fn call_mut<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        self.call_shell(move |shell, now| f(&mut shell.node, now))
            .await
    }

    pub(super) async fn call_shell<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Shell, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let (tx, rx) = oneshot::channel();
        let call = Box::new(move |shell: &mut Shell, now| {
            let _ = tx.send(f(shell, now));
        });
        match self.commands.try_send(Command::Call(call)) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                counter!("mesh_runtime_input_dropped_total", "reason" => "command_queue_full")
                    .increment(1);
                return Err(ApiError::Busy);
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                return Err(ApiError::Stopped)
            }
        }
        rx.await.map_err(|_| ApiError::Stopped)
    }

    /// Starts a process on this node. It exits when the handle is dropped (or
    /// [`ProcessHandle::exit`] is called): its mailbox closes and it leaves every
    /// group and name in one delta.
    pub async fn spawn(&self, mailbox_capacity: Option<usize>) -> Result<ProcessHandle, ApiError> {
        let (pid, mailbox) = self.call_mut(move |n, _| n.spawn(mailbox_capacity)).await?;
        Ok(ProcessHandle {
            pid,
            mailbox,
            agent: self.clone(),
            exited: false,
        })
    }

    /// `pg:join` for a local process.
    pub async fn join(
        &self,
        scope: &str,
        groups: &[String],
        pid: &Pid,
        meta: Option<String>,
    ) -> Result<Result<(), NodeOpError<JoinError>>, ApiError> {
        let (scope, groups, pid) = (scope.to_owned(), groups.to_vec(), pid.clone());
        self.call_mut(move |n, now| n.join(now, &scope, &groups, &pid, meta))
            .await
    }

    /// `pg:leave` for a local process.
    pub async fn leave_groups(
        &self,
        scope: &str,
        groups: &[String],
        pid: &Pid,
    ) -> Result<Result<(), NodeOpError<LeaveError>>, ApiError> {
        let (scope, groups, pid) = (scope.to_owned(), groups.to_vec(), pid.clone());
        self.call_mut(move |n, now| n.leave_groups(now, &scope, &groups, &pid))
            .await
    }

    /// Members of a group (with duplicates for multiplicity), in this node's view.
    pub async fn members_of(&self, scope: &str, group: &str) -> Result<Vec<Pid>, ApiError> {
        let (scope, group) = (scope.to_owned(), group.to_owned());
        self.call(move |n, _| n.registry().members(&scope, &group))
            .await
    }

    /// Registers an eventual name for a local process.
    pub async fn register(
        &self,
        name: &str,
        pid: &Pid,
        meta: Option<String>,
        policy: ConflictPolicy,
    ) -> Result<Result<(), NodeOpError<RegisterError>>, ApiError> {
        let (name, pid) = (name.to_owned(), pid.clone());
        self.call_mut(move |n, now| n.register(now, &name, &pid, meta, policy))
            .await
    }

    /// Unregisters a name held by a local process.
    pub async fn unregister(&self, name: &str) -> Result<Result<Pid, UnregisterError>, ApiError> {
        let name = name.to_owned();
        self.call_mut(move |n, now| n.unregister(now, &name)).await
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
    ) -> Result<Result<SendReceipt, SendError>, ApiError> {
        self.call_shell(move |shell, now| shell.send_now(now, from, &dest, payload, false))
            .await
    }

    /// Sends and waits until every remote node holding a target has said whether it
    /// delivered (or [`mesh_core::node::ACK_TIMEOUT`] passed).
    pub async fn send_confirmed(
        &self,
        from: Option<Pid>,
        dest: Dest,
        payload: Bytes,
    ) -> Result<Result<(SendReceipt, SendOutcome), SendError>, ApiError> {
        let started = self
            .call_shell(move |shell, now| {
                // An outcome resolved during the send (every frame refused) is flushed
                // only after this closure returns, so the waiter is in place for it.
                let receipt = shell.send_now(now, from, &dest, payload, true)?;
                let rx = receipt.pending.map(|id| shell.wait_for(OpId::Send(id)));
                Ok((receipt, rx))
            })
            .await?;
        let (receipt, rx) = match started {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let outcome = match rx {
            Some(rx) => {
                completion(rx, |c| match c {
                    Completion::Send(o) => Some(o),
                    _ => None,
                })
                .await?
            }
            None => SendOutcome::default(),
        };
        Ok(Ok((receipt, outcome)))
    }

    /// Subscribes to a group (or a whole scope with `group = None`): the snapshot and
    /// every later change, with nothing lost or repeated between them.
    pub async fn monitor(
        &self,
        owner: Option<Pid>,
        scope: &str,
        group: Option<&str>,
    ) -> Result<Result<(Snapshot, MonitorHandle), ProcessError>, ApiError> {
        let (scope, group) = (scope.to_owned(), group.map(str::to_owned));
        let r = self
            .call_mut(move |n, _| n.monitor(owner, &scope, group.as_deref()))
            .await?;
        Ok(r.map(|(id, snapshot, inbox)| {
            (
                snapshot,
                MonitorHandle {
                    id,
                    inbox,
                    agent: self.clone(),
                    ended: false,
                },
            )
        }))
    }

    /// Waits until peers' digests cover this node's latest change (see
    /// [`Node::sync`]).
    pub async fn sync(
        &self,
        mode: SyncMode,
        timeout: Duration,
    ) -> Result<Result<(), SyncError>, ApiError> {
        let rx = self
            .call_shell(move |shell, now| {
                let id = shell.node.sync(now, mode, timeout);
                shell.wait_for(OpId::Sync(id))
            })
            .await?;
        // The node may have finished the barrier in the same step; the flush after this
        // closure delivers it.
        completion(rx, |c| match c {
            Completion::Sync(r) => Some(r),
            _ => None,
        })
        .await
    }
}

impl AgentHandle {
    /// Runs a claims or strong-name call on the holder of `ttl` (the default claims TTL
    /// if `None`) and waits for its result. `Err(CallError)` inside means it never
    /// started (unavailable, bad input); a started call ends in `Ok` or a
    /// [`ClaimsError`] (timeout, refused).
    pub async fn claims_call(
        &self,
        ttl: Option<Duration>,
        f: impl FnOnce(&mut Holder, std::time::Instant) -> Result<CallId, ClaimsError> + Send + 'static,
    ) -> Result<Result<CallOk, CallError>, ApiError> {
        self.start_claims_call(move |node, now| node.claims_call(now, ttl, f))
            .await
    }

    /// Starts a claims call with `start` and waits for its result.
    async fn start_claims_call(
        &self,
        start: impl FnOnce(&mut Node, std::time::Instant) -> Result<ClaimCall, CallError>
            + Send
            + 'static,
    ) -> Result<Result<CallOk, CallError>, ApiError> {
        let started = self
            .call_shell(move |shell, now| {
                let call = start(&mut shell.node, now)?;
                Ok::<_, CallError>(shell.wait_for(OpId::Claims(call)))
            })
            .await?;
        let rx = match started {
            Ok(rx) => rx,
            Err(e) => return Ok(Err(e)),
        };
        let result = completion(rx, |c| match c {
            Completion::Claims(r) => Some(r),
            _ => None,
        })
        .await?;
        Ok(result.map_err(CallError::Claims))
    }

    /// Claims `task` for this node (its session renews itself until the task is
    /// released or the node dies). Its fencing token comes in [`CallOk::Claimed`].
    pub async fn claim(
        &self,
        task: &str,
        ttl: Option<Duration>,
    ) -> Result<Result<CallOk, CallError>, ApiError> {
        let task = task.to_owned();
        self.start_claims_call(move |node, now| node.claim(now, &task, ttl))
            .await
    }

    /// Opens a hold on `task` ([`mesh_core::claims::hold`]) and waits for its claim.
    /// `opened` is set on the agent's loop the moment the core opened the hold (before
    /// the claim is decided), so a caller that gives up waiting can still
    /// [`end_hold`](Self::end_hold) it; a refused hold leaves it unset.
    pub async fn hold(
        &self,
        task: &str,
        ttl: Option<Duration>,
        opened: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Result<CallOk, CallError>, ApiError> {
        let task = task.to_owned();
        self.start_claims_call(move |node, now| {
            let call = node.hold(now, &task, ttl)?;
            opened.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(call)
        })
        .await
    }

    /// Ends the hold on `task` (its client went away): the core releases its claim,
    /// with retries, unless it was lost. Waits for room in the command queue rather
    /// than failing when it is full, since a hold never ended would keep its claim.
    pub async fn end_hold(&self, task: &str) {
        let task = task.to_owned();
        let call = Box::new(move |shell: &mut Shell, now| shell.node.end_hold(now, &task));
        // Closed: the agent stopped, and its sessions go with it.
        let _ = self.commands.send(Command::Call(call)).await;
    }

    /// Releases a task this node holds, if `token` is its current token (else
    /// `StaleToken`, changing nothing).
    pub async fn release(
        &self,
        task: &str,
        token: u64,
    ) -> Result<Result<CallOk, CallError>, ApiError> {
        let task = task.to_owned();
        self.start_claims_call(move |node, now| node.release(now, &task, token))
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
    ) -> Result<Result<CallOk, CallError>, ApiError> {
        let name = name.to_owned();
        self.claims_call(None, move |h, now| {
            h.register_strong(now, &name, owner, ephemeral)
        })
        .await
    }

    /// Transfers strong name `name`, held at `version`, to `to`.
    pub async fn transfer_strong(
        &self,
        name: &str,
        version: u64,
        to: Pid,
    ) -> Result<Result<CallOk, CallError>, ApiError> {
        let name = name.to_owned();
        self.claims_call(None, move |h, now| {
            h.transfer_name(now, &name, version, to, false)
        })
        .await
    }

    /// Releases strong name `name` held at `version`.
    pub async fn release_strong(
        &self,
        name: &str,
        version: u64,
    ) -> Result<Result<CallOk, CallError>, ApiError> {
        let name = name.to_owned();
        self.claims_call(None, move |h, now| h.release_name(now, &name, version))
            .await
    }

    /// The owner and version of strong name `name`: with `linearizable`, one quorum
    /// round; else this node's cache (possibly stale, versioned). `Ok(None)`: no owner.
    pub async fn whereis_strong(
        &self,
        name: &str,
        linearizable: bool,
    ) -> Result<Result<Option<StrongName>, CallError>, ApiError> {
        let name = name.to_owned();
        if linearizable {
            let r = self
                .claims_call(None, move |h, now| h.whereis(now, &name))
                .await?;
            return Ok(r.map(|ok| match ok {
                CallOk::Whereis { entry, .. } => entry,
                _ => None,
            }));
        }
        self.call(move |n, _| match n.quorum() {
            Some(q) => Ok(q.name_cache().whereis(&name).cloned()),
            None => Err(CallError::Claims(ClaimsError::Unavailable {
                reason: mesh_core::claims::Unavailable::NoVoters,
            })),
        })
        .await
    }

    /// A linearizable read of one shard's table (`Ok(None)`: quorum plane off or not
    /// formed yet; `Err` inside: no quorum answered in time).
    pub async fn read_shard(
        &self,
        shard: mesh_core::claims::ShardId,
    ) -> Result<
        Option<Result<Option<mesh_core::claims::ShardTable>, mesh_core::quorum::ProposeError>>,
        ApiError,
    > {
        let rx = self
            .call_shell(move |shell, now| {
                let id = shell.node.read_shard(now, shard)?;
                Some(shell.wait_for(OpId::Read(id)))
            })
            .await?;
        match rx {
            Some(rx) => Ok(Some(
                completion(rx, |c| match c {
                    Completion::Read(r) => Some(r),
                    _ => None,
                })
                .await?,
            )),
            None => Ok(None),
        }
    }

    /// The quorum plane as this node sees it.
    pub async fn quorum_status(&self) -> Result<Option<QuorumStatus>, ApiError> {
        self.call(|n, _| n.quorum().map(quorum_status_of)).await
    }

    /// Claim events (lost, assigned) from now on.
    pub fn subscribe_claims(&self) -> broadcast::Receiver<HolderEvent> {
        self.shared.claim_events.subscribe()
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
    /// name.
    pub async fn exit(mut self) -> Result<(), ApiError> {
        self.exited = true;
        let pid = self.pid.clone();
        // Exiting a process that already exited (killed by a name-conflict policy)
        // is not an error.
        self.agent
            .call_mut(move |n, now| n.exit(now, &pid).ok())
            .await?;
        Ok(())
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        let pid = self.pid.clone();
        let call = Box::new(move |shell: &mut Shell, now| {
            let _ = shell.node.exit(now, &pid);
        });
        if self.agent.commands.try_send(Command::Call(call)).is_err() {
            counter!("mesh_runtime_input_dropped_total", "reason" => "exit_on_drop_lost")
                .increment(1);
            tracing::warn!(pid = %self.pid, "could not queue the exit of a dropped process");
        }
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
        let id = self.id;
        self.agent.call_mut(move |n, _| n.demonitor(id)).await?;
        Ok(())
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let id = self.id;
        let call = Box::new(move |shell: &mut Shell, _| {
            shell.node.demonitor(id);
        });
        let _ = self.agent.commands.try_send(Command::Call(call));
    }
}

/// Waits for an operation's completion and takes the variant `pick` expects (the node
/// completes an [`OpId`] with the matching [`Completion`]; anything else, like a dropped
/// waiter, means the agent stopped).
async fn completion<T>(
    rx: oneshot::Receiver<Completion>,
    pick: impl FnOnce(Completion) -> Option<T>,
) -> Result<T, ApiError> {
    rx.await.ok().and_then(pick).ok_or(ApiError::Stopped)
}

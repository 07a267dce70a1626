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
use tokio::sync::oneshot;

use super::{AgentHandle, Command, Shell};
use crate::node::{
    Dest, MonitorItem, Node, NodeOpError, ProcessError, SendError, SendOutcome, SendReceipt,
    SyncError, SyncMode,
};
use crate::pid::Pid;
use crate::process::{Delivery, Inbox, Mailbox};
use crate::registry::{
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
    /// Runs `f` on the node task with the node and the current time, and returns its
    /// result. The building block of every API call.
    pub async fn call<R: Send + 'static>(
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
        let (pid, mailbox) = self.call(move |n, _| n.spawn(mailbox_capacity)).await?;
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
        self.call(move |n, now| n.join(now, &scope, &groups, &pid, meta))
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
        self.call(move |n, now| n.leave_groups(now, &scope, &groups, &pid))
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
        self.call(move |n, now| n.register(now, &name, &pid, meta, policy))
            .await
    }

    /// Unregisters a name held by a local process.
    pub async fn unregister(&self, name: &str) -> Result<Result<Pid, UnregisterError>, ApiError> {
        let name = name.to_owned();
        self.call(move |n, now| n.unregister(now, &name)).await
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
        self.call(move |n, now| n.send(now, from, &dest, payload, false))
            .await
    }

    /// Sends and waits until every remote node holding a target has said whether it
    /// delivered (or [`crate::node::ACK_TIMEOUT`] passed).
    pub async fn send_confirmed(
        &self,
        from: Option<Pid>,
        dest: Dest,
        payload: Bytes,
    ) -> Result<Result<(SendReceipt, SendOutcome), SendError>, ApiError> {
        let started = self
            .call_shell(move |shell, now| {
                let receipt = shell.node.send(now, from, &dest, payload, true)?;
                let rx = receipt.pending.map(|id| {
                    let (tx, rx) = oneshot::channel();
                    shell.acks.insert(id, tx);
                    rx
                });
                Ok((receipt, rx))
            })
            .await?;
        let (receipt, rx) = match started {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let outcome = match rx {
            Some(rx) => rx.await.map_err(|_| ApiError::Stopped)?,
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
            .call(move |n, _| n.monitor(owner, &scope, group.as_deref()))
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
                let (tx, rx) = oneshot::channel();
                shell.syncs.insert(id, tx);
                rx
            })
            .await?;
        // The node may have finished the barrier in the same step; flush delivered it.
        rx.await.map_err(|_| ApiError::Stopped)
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
            .call(move |n, now| n.exit(now, &pid).ok())
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
        self.agent.call(move |n, _| n.demonitor(id)).await?;
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

//! Local processes and monitors: spawn and exit, the groups and eventual names a
//! local process joins or holds, and the monitor inboxes of group events.

use std::time::Instant;

use super::Node;
use crate::pid::Pid;
use crate::process::{Inbox, Mailbox};
use crate::registry::{
    ConflictPolicy, GroupEvent, JoinError, LeaveError, MonitorId, NameInfo, RegisterError,
    SetMetaError, Snapshot, UnregisterError,
};

/// Capacity of a monitor's event inbox; a monitor that falls this far behind is
/// ended with [`MonitorItem::Overflowed`] (never a silent gap).
pub const MONITOR_CAPACITY: usize = 65_536;

/// What a monitor's inbox carries.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorItem {
    /// A change, in order.
    Event(GroupEvent),
    /// The monitor fell [`MONITOR_CAPACITY`] events behind and was ended; take a new
    /// snapshot with a new monitor.
    Overflowed,
}

/// Why a local process operation was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The PID is not a live process of this node (this boot).
    #[error("{0} is not a live process of this node")]
    NotLocal(Pid),
}

#[derive(Debug)]
pub(super) struct ProcEntry {
    pub(super) mailbox: Mailbox,
}

#[derive(Debug)]
pub(super) struct MonitorEntry {
    pub(super) inbox: Inbox<MonitorItem>,
}

impl Node {
    /// Starts a process with a mailbox of `capacity` messages (the configured default
    /// if `None`).
    pub fn spawn(&mut self, capacity: Option<usize>) -> (Pid, Mailbox) {
        let local_id = self.next_local_id;
        self.next_local_id += 1;
        let mailbox = Mailbox::new(capacity.unwrap_or(self.config.mailbox_capacity));
        self.processes.insert(
            local_id,
            ProcEntry {
                mailbox: mailbox.clone(),
            },
        );
        self.stats.processes_spawned += 1;
        (
            Pid::new(self.name.clone(), self.boot_incarnation, local_id),
            mailbox,
        )
    }

    /// True if `pid` is a live process of this node.
    pub fn is_local_alive(&self, pid: &Pid) -> bool {
        self.local_id(pid).is_some()
    }

    pub(super) fn local_id(&self, pid: &Pid) -> Option<u64> {
        (pid.node == self.name
            && pid.incarnation == self.boot_incarnation
            && self.processes.contains_key(&pid.local_id))
        .then_some(pid.local_id)
    }

    pub(super) fn check_local(&self, pid: &Pid) -> Result<(), ProcessError> {
        self.local_id(pid)
            .map(|_| ())
            .ok_or_else(|| ProcessError::NotLocal(pid.clone()))
    }

    /// Ends a process: its mailbox closes, it leaves every group and name in one delta,
    /// and monitors it owns end.
    pub fn exit(&mut self, now: Instant, pid: &Pid) -> Result<(), ProcessError> {
        self.check_local(pid)?;
        if let Some(p) = self.processes.remove(&pid.local_id) {
            p.mailbox.close();
        }
        self.stats.processes_exited += 1;
        self.registry.process_exited(now, pid);
        self.after_input(now);
        Ok(())
    }

    /// Number of live local processes.
    pub fn process_count(&self) -> usize {
        self.processes.len()
    }

    /// `pg:join`: `pid` (local) joins each of `groups` once more.
    pub fn join(
        &mut self,
        now: Instant,
        scope: &str,
        groups: &[String],
        pid: &Pid,
        meta: Option<String>,
    ) -> Result<(), NodeOpError<JoinError>> {
        self.check_local(pid)?;
        self.registry
            .join(now, scope, groups, pid, meta)
            .map_err(NodeOpError::Op)?;
        self.after_input(now);
        Ok(())
    }

    /// `pg:leave`: `pid` (local) leaves each of `groups` once; `NotJoined` only if it
    /// was in none of them.
    pub fn leave_groups(
        &mut self,
        now: Instant,
        scope: &str,
        groups: &[String],
        pid: &Pid,
    ) -> Result<(), NodeOpError<LeaveError>> {
        self.check_local(pid)?;
        self.registry
            .leave(now, scope, groups, pid)
            .map_err(NodeOpError::Op)?;
        self.after_input(now);
        Ok(())
    }

    /// Replaces the metadata of `pid`'s membership of `group`.
    pub fn set_meta(
        &mut self,
        now: Instant,
        scope: &str,
        group: &str,
        pid: &Pid,
        meta: Option<String>,
    ) -> Result<(), NodeOpError<SetMetaError>> {
        self.check_local(pid)?;
        self.registry
            .set_meta(now, scope, group, pid, meta)
            .map_err(NodeOpError::Op)?;
        self.after_input(now);
        Ok(())
    }

    /// Subscribes to a group (or, with `group = None`, a whole scope): the snapshot and
    /// the inbox of later events, atomically. With an `owner`, the monitor ends when
    /// that local process exits.
    pub fn monitor(
        &mut self,
        owner: Option<Pid>,
        scope: &str,
        group: Option<&str>,
    ) -> Result<(MonitorId, Snapshot, Inbox<MonitorItem>), ProcessError> {
        if let Some(o) = &owner {
            self.check_local(o)?;
        }
        let (id, snapshot) = self.registry.monitor(owner, scope, group);
        let inbox = Inbox::new(MONITOR_CAPACITY);
        self.monitors.insert(
            id,
            MonitorEntry {
                inbox: inbox.clone(),
            },
        );
        Ok((id, snapshot, inbox))
    }

    /// Ends a monitor. Its inbox is closed and emptied: no event arrives after this.
    pub fn demonitor(&mut self, id: MonitorId) -> bool {
        let known = self.registry.demonitor(id);
        if let Some(m) = self.monitors.remove(&id) {
            m.inbox.close();
            while m.inbox.try_recv().is_some() {}
        }
        known
    }

    /// Registers an eventual name for a local process (checked against this node's
    /// view only; a concurrent registration elsewhere is resolved later).
    pub fn register(
        &mut self,
        now: Instant,
        name: &str,
        pid: &Pid,
        meta: Option<String>,
        policy: ConflictPolicy,
    ) -> Result<(), NodeOpError<RegisterError>> {
        self.check_local(pid)?;
        let wall = self.wall_ms(now);
        self.registry
            .register(now, wall, name, pid, meta, policy)
            .map_err(NodeOpError::Op)?;
        self.after_input(now);
        Ok(())
    }

    /// Unregisters a name held by a local process.
    pub fn unregister(&mut self, now: Instant, name: &str) -> Result<Pid, UnregisterError> {
        let r = self.registry.unregister(now, name);
        self.after_input(now);
        r
    }

    /// The holder of an eventual name in this node's view.
    pub fn whereis(&self, name: &str) -> Option<NameInfo> {
        self.registry.whereis(name)
    }
}

/// A local operation failed: either the PID is not local, or the operation itself
/// refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeOpError<E> {
    /// The PID is not a live process of this node.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The operation refused.
    #[error(transparent)]
    Op(E),
}

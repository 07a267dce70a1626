//! Local processes and monitors: spawn and exit, the groups and eventual names a
//! local process joins or holds, and the monitor inboxes of group events.

use std::time::Instant;

use super::{GroupError, NameError, Node};
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
    /// The PID is a process of another node.
    #[error("{0} is not a process of this node")]
    NotLocal(Pid),
    /// The PID is a process of this node (this boot or an earlier one) that is no
    /// longer alive.
    #[error("{0} has exited")]
    Exited(Pid),
}

impl From<ProcessError> for GroupError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::NotLocal(pid) => Self::NotLocal(pid),
            ProcessError::Exited(pid) => Self::Exited(pid),
        }
    }
}

impl From<ProcessError> for NameError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::NotLocal(pid) => Self::NotLocal(pid),
            ProcessError::Exited(pid) => Self::Exited(pid),
        }
    }
}

impl From<JoinError> for GroupError {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::NoGroups => Self::NoGroups,
            JoinError::Invalid(f) => Self::Invalid(f),
            JoinError::NotLocal { pid } => Self::NotLocal(pid),
        }
    }
}

impl From<LeaveError> for GroupError {
    fn from(e: LeaveError) -> Self {
        match e {
            LeaveError::NoGroups => Self::NoGroups,
            LeaveError::Invalid(f) => Self::Invalid(f),
            LeaveError::NotLocal { pid } => Self::NotLocal(pid),
            LeaveError::NotJoined => Self::NotJoined,
        }
    }
}

impl From<SetMetaError> for GroupError {
    fn from(e: SetMetaError) -> Self {
        match e {
            SetMetaError::Invalid(f) => Self::Invalid(f),
            SetMetaError::NotLocal { pid } => Self::NotLocal(pid),
            SetMetaError::NotJoined => Self::NotJoined,
        }
    }
}

impl From<RegisterError> for NameError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Invalid(f) => Self::Invalid(f),
            RegisterError::NotLocal { pid } => Self::NotLocal(pid),
            RegisterError::AlreadyRegistered(pid) => Self::AlreadyRegistered(pid),
        }
    }
}

impl From<UnregisterError> for NameError {
    fn from(e: UnregisterError) -> Self {
        match e {
            UnregisterError::Invalid(f) => Self::Invalid(f),
            UnregisterError::NotRegistered => Self::NotRegistered,
            UnregisterError::NotLocal { owner } => Self::NotLocal(owner),
        }
    }
}

/// Default [`super::NodeConfig::max_processes`]: room for the 100 000-process flood of
/// the hardening issue with headroom; each process costs a mailbox and its entries.
pub const DEFAULT_MAX_PROCESSES: usize = 250_000;
/// Default [`super::NodeConfig::max_monitors`]: each admin `monitor` stream and each
/// library monitor holds one, with an inbox of [`MONITOR_CAPACITY`] events.
pub const DEFAULT_MAX_MONITORS: usize = 10_000;

/// A resource a node bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Live local processes ([`super::NodeConfig::max_processes`]).
    Processes,
    /// Open monitors ([`super::NodeConfig::max_monitors`]).
    Monitors,
}

impl Resource {
    /// Every resource, for registering metrics at zero.
    pub const ALL: [Self; 2] = [Self::Processes, Self::Monitors];

    /// Metric label and the word in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processes => "processes",
            Self::Monitors => "monitors",
        }
    }

    /// The setting that bounds it.
    pub fn setting(self) -> &'static str {
        match self {
            Self::Processes => "max_processes",
            Self::Monitors => "max_monitors",
        }
    }
}

/// A command refused because the node holds the most it may of a resource. Nothing
/// changed (C2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this node already holds its maximum of {max} {} ({}); end some, or raise {}", .resource.as_str(), .resource.setting(), .resource.setting())]
pub struct LimitError {
    /// What ran out.
    pub resource: Resource,
    /// The limit.
    pub max: usize,
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

    /// [`Node::spawn`] within [`super::NodeConfig::max_processes`]: what
    /// [`super::Command::Spawn`] runs. At the limit it refuses, counted, and changes
    /// nothing.
    pub fn try_spawn(&mut self, capacity: Option<usize>) -> Result<(Pid, Mailbox), LimitError> {
        self.within(Resource::Processes, self.processes.len())?;
        Ok(self.spawn(capacity))
    }

    /// `Ok` while `held` is below the limit of `resource`; else the refusal, counted.
    pub(super) fn within(&mut self, resource: Resource, held: usize) -> Result<(), LimitError> {
        let max = match resource {
            Resource::Processes => self.config.max_processes,
            Resource::Monitors => self.config.max_monitors,
        };
        if held < max {
            return Ok(());
        }
        *self.stats.over_limit.entry(resource.as_str()).or_default() += 1;
        Err(LimitError { resource, max })
    }

    /// Number of open monitors.
    pub fn monitor_count(&self) -> usize {
        self.monitors.len()
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

    /// `Ok` for a live local process; else whether the PID is another node's or one
    /// of this node's that has exited (this boot or an earlier one).
    pub(super) fn check_local(&self, pid: &Pid) -> Result<(), ProcessError> {
        match self.local_id(pid) {
            Some(_) => Ok(()),
            None if pid.node == self.name => Err(ProcessError::Exited(pid.clone())),
            None => Err(ProcessError::NotLocal(pid.clone())),
        }
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
    ) -> Result<(), GroupError> {
        self.join_many(now, scope, groups, std::slice::from_ref(pid), meta)
    }

    /// `pg:join/3`: each of `pids` joins each of `groups` once more — all of them, or
    /// (if any PID is not a live local process, or the input breaks a limit) none
    /// ([`Command::Join`](super::Command::Join), C3).
    pub fn join_many(
        &mut self,
        now: Instant,
        scope: &str,
        groups: &[String],
        pids: &[Pid],
        meta: Option<String>,
    ) -> Result<(), GroupError> {
        if pids.is_empty() {
            return Err(GroupError::NoGroups);
        }
        for pid in pids {
            self.check_local(pid)?;
        }
        // Every PID is local and alive, and the scope, groups and metadata are the same
        // for each: the first join refuses exactly when every one would.
        for pid in pids {
            self.registry
                .join(now, scope, groups, pid, meta.clone())
                .map_err(GroupError::from)?;
        }
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
    ) -> Result<(), GroupError> {
        self.leave_many(now, scope, groups, std::slice::from_ref(pid))
    }

    /// `pg:leave/3`: each of `pids` leaves each of `groups` once; every PID is checked
    /// first (C3), and [`GroupError::NotJoined`] only if none of them had joined any of
    /// the groups.
    pub fn leave_many(
        &mut self,
        now: Instant,
        scope: &str,
        groups: &[String],
        pids: &[Pid],
    ) -> Result<(), GroupError> {
        if pids.is_empty() {
            return Err(GroupError::NoGroups);
        }
        for pid in pids {
            self.check_local(pid)?;
        }
        let mut left = false;
        for pid in pids {
            match self.registry.leave(now, scope, groups, pid) {
                Ok(()) => left = true,
                Err(LeaveError::NotJoined) => {}
                // The same input for every PID: the first refuses, nothing changed.
                Err(e) => return Err(e.into()),
            }
        }
        self.after_input(now);
        if left {
            Ok(())
        } else {
            Err(GroupError::NotJoined)
        }
    }

    /// Replaces the metadata of `pid`'s membership of `group`.
    pub fn set_meta(
        &mut self,
        now: Instant,
        scope: &str,
        group: &str,
        pid: &Pid,
        meta: Option<String>,
    ) -> Result<(), GroupError> {
        self.check_local(pid)?;
        self.registry
            .set_meta(now, scope, group, pid, meta)
            .map_err(GroupError::from)?;
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
    ) -> Result<(), NameError> {
        self.check_local(pid)?;
        let wall = self.wall_ms(now);
        self.registry
            .register(now, wall, name, pid, meta, policy)
            .map_err(NameError::from)?;
        self.after_input(now);
        Ok(())
    }

    /// Unregisters a name held by a local process.
    pub fn unregister(&mut self, now: Instant, name: &str) -> Result<Pid, NameError> {
        let r = self.registry.unregister(now, name);
        self.after_input(now);
        r.map_err(NameError::from)
    }

    /// The holder of an eventual name in this node's view.
    pub fn whereis(&self, name: &str) -> Option<NameInfo> {
        self.registry.whereis(name)
    }
}

//! Sends and routing: where a message goes ([`Dest`]), the single-destination and
//! group rules, one frame per remote node (N4), acknowledged sends and their outcomes,
//! and what arrives as a [`UserFrame`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesh_types::frame::Class;
use mesh_types::PeerRef;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::wire::{self, Undeliverable, UserFrame};
use super::{bump, Completion, DropReason, Node, OpId, Output};
use crate::pid::Pid;
use crate::process::{Delivery, PushError};

/// Largest user payload.
pub const MAX_PAYLOAD: usize = 512 << 10;
/// How long an acknowledged send waits for its acks.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dest {
    /// One process.
    Pid(Pid),
    /// The process holding an eventual name (as this node sees it).
    Name(String),
    /// The owner of a strong name, as this node's cache has it; the message carries
    /// the version and the owner's node refuses it unless that version is current.
    Strong(String),
    /// Members of a group.
    Group {
        /// The scope.
        scope: String,
        /// The group.
        group: String,
        /// Which members.
        mode: GroupMode,
    },
}

/// Which members of a group a send reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMode {
    /// Every member (one copy per distinct process).
    #[default]
    All,
    /// Every member on this node.
    Local,
    /// One member chosen uniformly at random.
    One,
    /// A member on this node if there is one, else one on the peer with the shortest
    /// measured round trip (random among equals).
    Nearest,
}

/// Why a send failed. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The destination process does not exist (exited, unknown, or of an earlier boot
    /// of its node).
    #[error("no such process: {0}")]
    NoProcess(Pid),
    /// No process holds the name in this node's view.
    #[error("no process is registered as {0:?}")]
    NoSuchName(String),
    /// The group has no member (of the kind asked for) in this node's view.
    #[error("group {group:?} in scope {scope:?} has no member to send to")]
    EmptyGroup {
        /// The scope.
        scope: String,
        /// The group.
        group: String,
    },
    /// The destination's node is not a live member.
    #[error("node {0} is not reachable (not a live member)")]
    NodeDown(String),
    /// The destination's mailbox is full.
    #[error("the mailbox of {0} is full")]
    MailboxFull(Pid),
    /// The stream to the destination's node is full: it is slow or unreachable.
    #[error("the send queue to node {0} is full")]
    Backpressure(String),
    /// A strong name was asked for, but no voters are configured: strong names are
    /// off (they never fall back to eventual names).
    #[error("strong names are unavailable: no voters are configured")]
    NoVoters,
    /// The payload is larger than [`MAX_PAYLOAD`].
    #[error("the payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Dest {
    /// True for a destination that names one process (a PID, an eventual or a strong
    /// name). The single-destination rule: a send to one process is all or nothing —
    /// anything that stops it (a down node, a full mailbox, a full send queue) is the
    /// sender's error; a group send reports per-target and per-node failures in its
    /// receipt instead.
    pub fn is_single(&self) -> bool {
        matches!(self, Self::Pid(_) | Self::Name(_) | Self::Strong(_))
    }
}

impl SendError {
    /// Every metric label, for registering at zero.
    pub const REASONS: [&'static str; 8] = [
        "no_process",
        "no_such_name",
        "empty_group",
        "node_down",
        "mailbox_full",
        "backpressure",
        "too_large",
        "no_voters",
    ];

    /// Metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoProcess(_) => "no_process",
            Self::NoSuchName(_) => "no_such_name",
            Self::EmptyGroup { .. } => "empty_group",
            Self::NodeDown(_) => "node_down",
            Self::MailboxFull(_) => "mailbox_full",
            Self::Backpressure(_) => "backpressure",
            Self::TooLarge { .. } => "too_large",
            Self::NoVoters => "no_voters",
        }
    }
}

/// Identifies an acknowledged send's pending outcome ([`Output::Completed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckId(pub u64);

/// What a successful [`Node::send`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendReceipt {
    /// Local mailboxes the message went into.
    pub delivered_local: usize,
    /// Local targets that refused it (full mailbox) in a group send.
    pub failed_local: Vec<(Pid, Undeliverable)>,
    /// Remote nodes a frame went to (one per node).
    pub remote_nodes: usize,
    /// Remote processes targeted.
    pub remote_targets: usize,
    /// Set for an acknowledged send with remote targets: the outcome comes as
    /// [`Output::Completed`].
    pub pending: Option<AckId>,
    /// Remote nodes whose send queue was full, so their frame was not sent (set by the
    /// shell, which carries the frames out; see [`Node::refuse_ack`]).
    pub refused_nodes: Vec<String>,
}

/// The outcome of an acknowledged send's remote part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendOutcome {
    /// Remote targets delivered to.
    pub delivered: usize,
    /// Remote targets that refused, and why.
    pub failed: Vec<(Pid, Undeliverable)>,
    /// Nodes that did not answer within [`ACK_TIMEOUT`] (their outcome is unknown).
    pub timed_out: Vec<String>,
    /// Nodes whose send queue was full: their targets got nothing.
    pub refused: Vec<String>,
}

#[derive(Debug)]
pub(super) struct PendingAck {
    pub(super) deadline: Instant,
    /// Remote node -> its targets (local ids), until it answers.
    waiting: BTreeMap<String, (u64, Vec<u64>)>,
    outcome: SendOutcome,
}

impl Node {
    /// Sends `payload` to `dest`: local targets get it at once, remote ones get one
    /// frame per node. The direct form of [`Command::Send`](super::Command::Send)
    /// without its backpressure settling (benchmarks and simulations that drive the
    /// transport themselves use it); applications send with the command.
    pub fn send(
        &mut self,
        now: Instant,
        from: Option<Pid>,
        dest: &Dest,
        payload: Bytes,
    ) -> Result<SendReceipt, SendError> {
        self.send_with(now, from, dest, payload, false)
    }

    /// [`Node::send`], waiting for acks if `ack` (their end goes to the command that
    /// started the send).
    pub(super) fn send_with(
        &mut self,
        now: Instant,
        from: Option<Pid>,
        dest: &Dest,
        payload: Bytes,
        ack: bool,
    ) -> Result<SendReceipt, SendError> {
        let result = self.route(now, from, dest, payload, ack);
        if let Err(e) = &result {
            bump(&mut self.stats.send_errors, e.as_str());
        }
        self.after_input(now);
        result
    }

    fn route(
        &mut self,
        now: Instant,
        from: Option<Pid>,
        dest: &Dest,
        payload: Bytes,
        ack: bool,
    ) -> Result<SendReceipt, SendError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let mut strong = None;
        let strict = dest.is_single();
        let targets = match dest {
            Dest::Pid(pid) => vec![pid.clone()],
            Dest::Name(name) => match self.registry.whereis(name) {
                Some(info) => vec![info.pid],
                None => return Err(SendError::NoSuchName(name.clone())),
            },
            Dest::Strong(name) => {
                let Some(q) = self.quorum.as_ref() else {
                    return Err(SendError::NoVoters);
                };
                let entry = q.name_cache().whereis(name).cloned();
                match entry {
                    Some(e) => {
                        strong = Some((name.clone(), e.version));
                        vec![e.owner]
                    }
                    None => return Err(SendError::NoSuchName(name.clone())),
                }
            }
            Dest::Group { scope, group, mode } => {
                let t = self.group_targets(scope, group, *mode);
                if t.is_empty() {
                    return Err(SendError::EmptyGroup {
                        scope: scope.clone(),
                        group: group.clone(),
                    });
                }
                t
            }
        };
        // Split by node; check every remote node is reachable before sending anything.
        let mut local = Vec::new();
        let mut remote: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
        for pid in targets {
            if pid.node == self.name {
                local.push(pid);
            } else {
                let e = remote
                    .entry(pid.node.clone())
                    .or_insert((pid.incarnation, Vec::new()));
                if e.0 == pid.incarnation {
                    e.1.push(pid.local_id);
                } else if strict {
                    return Err(SendError::NoProcess(pid));
                }
            }
        }
        if strict {
            if let Some(node) = remote.keys().find(|n| !self.peers.contains_key(*n)) {
                return Err(SendError::NodeDown(node.clone()));
            }
        }
        remote.retain(|node, _| self.peers.contains_key(node));
        let mut receipt = SendReceipt::default();
        for pid in &local {
            if let Some((name, version)) = &strong {
                let current = self
                    .quorum
                    .as_mut()
                    .is_some_and(|q| q.check_strong_send(name, *version, pid));
                if !current {
                    return Err(SendError::NoSuchName(name.clone()));
                }
            }
            let delivery = Delivery::Message {
                from: from.clone(),
                payload: payload.clone(),
            };
            let pushed = match self.local_id(pid) {
                Some(id) => self.processes[&id].mailbox.push(delivery),
                None => Err(PushError::Closed),
            };
            match pushed {
                Ok(()) => {
                    receipt.delivered_local += 1;
                    self.stats.delivered += 1;
                }
                Err(e) if strict => {
                    return Err(match e {
                        PushError::Full => SendError::MailboxFull(pid.clone()),
                        PushError::Closed => SendError::NoProcess(pid.clone()),
                    })
                }
                Err(e) => {
                    let why = match e {
                        PushError::Full => Undeliverable::MailboxFull,
                        PushError::Closed => Undeliverable::NoProcess,
                    };
                    bump(&mut self.stats.send_errors, why.as_str());
                    receipt.failed_local.push((pid.clone(), why));
                }
            }
        }
        if remote.is_empty() {
            if receipt.delivered_local == 0 && !local.is_empty() && !strict {
                // Every target refused: say so rather than claim success.
                if let Some((pid, why)) = receipt.failed_local.first() {
                    return Err(match why {
                        Undeliverable::MailboxFull => SendError::MailboxFull(pid.clone()),
                        _ => SendError::NoProcess(pid.clone()),
                    });
                }
            }
            return Ok(receipt);
        }
        let id = self.next_msg_id;
        self.next_msg_id += 1;
        for (node, (incarnation, targets)) in &remote {
            let frame = UserFrame::Send {
                id,
                ack,
                from: from.clone(),
                incarnation: *incarnation,
                targets: targets.clone(),
                strong: strong.clone(),
                payload: payload.clone(),
            };
            let Ok(bytes) = wire::encode(&frame) else {
                self.stats.drop_input(DropReason::EncodeFailed);
                continue;
            };
            let Some(peer) = self.peers.get(node) else {
                continue;
            };
            receipt.remote_nodes += 1;
            receipt.remote_targets += targets.len();
            self.stats.user_frames_out += 1;
            self.outputs.push_back(Output::Frame {
                to: PeerRef {
                    name: Some(node.clone()),
                    addr: peer.addr,
                },
                class: Class::User,
                payload: bytes,
            });
        }
        if ack {
            let aid = AckId(id);
            self.acks.insert(
                aid,
                PendingAck {
                    deadline: now + ACK_TIMEOUT,
                    waiting: remote,
                    outcome: SendOutcome::default(),
                },
            );
            receipt.pending = Some(aid);
        }
        Ok(receipt)
    }

    /// The shell could not queue a frame (the stream is full). Counted; for a user
    /// message the shell reports it to the sender (see [`Node::refuse_ack`]).
    pub fn frame_refused(&mut self, to: &str, class: Class) {
        bump(
            &mut self.stats.send_errors,
            SendError::Backpressure(to.to_owned()).as_str(),
        );
        if class == Class::User {
            tracing::debug!(peer = to, "user frame refused by the transport");
            self.note_refused_user(to);
        }
    }

    /// The shell carried out a send's frames and the transport refused those to the
    /// nodes in `refused` (their send queues were full). Applies the backpressure rule:
    /// an acknowledged send stops waiting for those nodes ([`Node::refuse_ack`]); a
    /// single destination ([`Dest::is_single`]) fails with [`SendError::Backpressure`];
    /// a group send succeeds with the nodes in [`SendReceipt::refused_nodes`]. (Each
    /// refused frame was already counted by [`Node::frame_refused`].)
    pub fn settle_send(
        &mut self,
        dest: &Dest,
        mut receipt: SendReceipt,
        refused: Vec<String>,
    ) -> Result<SendReceipt, SendError> {
        let Some(first) = refused.first() else {
            return Ok(receipt);
        };
        // The ack's outcome (if every frame was refused) is queued as an output, for
        // the shell to act on after the caller has its receipt.
        if let Some(id) = receipt.pending {
            for node in &refused {
                self.refuse_ack(id, node);
            }
        }
        if dest.is_single() {
            return Err(SendError::Backpressure(first.clone()));
        }
        receipt.refused_nodes = refused;
        Ok(receipt)
    }

    /// The frame of acknowledged send `id` to `node` was refused by the transport: do
    /// not wait for that node's ack (its targets got nothing).
    pub fn refuse_ack(&mut self, id: AckId, node: &str) {
        let Some(pending) = self.acks.get_mut(&id) else {
            return;
        };
        if pending.waiting.remove(node).is_some() {
            pending.outcome.refused.push(node.to_owned());
        }
        if pending.waiting.is_empty() {
            if let Some(done) = self.acks.remove(&id) {
                self.finish(OpId::Send(id), Completion::Send(done.outcome));
            }
        }
    }

    fn group_targets(&mut self, scope: &str, group: &str, mode: GroupMode) -> Vec<Pid> {
        let mut members = self.registry.members(scope, group);
        members.dedup();
        match mode {
            GroupMode::All => members,
            GroupMode::Local => members
                .into_iter()
                .filter(|p| p.node == self.name)
                .collect(),
            GroupMode::One => {
                if members.is_empty() {
                    return members;
                }
                let i = self.rng.random_range(0..members.len());
                vec![members.swap_remove(i)]
            }
            GroupMode::Nearest => {
                let local: Vec<Pid> = members
                    .iter()
                    .filter(|p| p.node == self.name)
                    .cloned()
                    .collect();
                let pool = if local.is_empty() {
                    let best = members
                        .iter()
                        .filter_map(|p| self.rtt.get(&p.node))
                        .min()
                        .copied();
                    match best {
                        Some(best) => members
                            .iter()
                            .filter(|p| self.rtt.get(&p.node) == Some(&best))
                            .cloned()
                            .collect(),
                        None => members,
                    }
                } else {
                    local
                };
                if pool.is_empty() {
                    return pool;
                }
                let i = self.rng.random_range(0..pool.len());
                vec![pool[i].clone()]
            }
        }
    }

    pub(super) fn on_user_frame(&mut self, _now: Instant, from: &str, frame: UserFrame) {
        match frame {
            UserFrame::Send {
                id,
                ack,
                from: sender,
                incarnation,
                targets,
                strong,
                payload,
            } => {
                let mut delivered = 0u32;
                let mut failed = Vec::new();
                for local_id in targets {
                    if let Some((name, version)) = &strong {
                        let pid = Pid::new(self.name.clone(), incarnation, local_id);
                        let current = self
                            .quorum
                            .as_mut()
                            .is_some_and(|q| q.check_strong_send(name, *version, &pid));
                        if !current {
                            bump(
                                &mut self.stats.refused_in,
                                Undeliverable::StaleVersion.as_str(),
                            );
                            failed.push((local_id, Undeliverable::StaleVersion));
                            continue;
                        }
                    }
                    let entry = (incarnation == self.boot_incarnation)
                        .then(|| self.processes.get(&local_id))
                        .flatten();
                    let result = match entry {
                        Some(p) => p.mailbox.push(Delivery::Message {
                            from: sender.clone(),
                            payload: payload.clone(),
                        }),
                        None => Err(PushError::Closed),
                    };
                    match result {
                        Ok(()) => {
                            delivered += 1;
                            self.stats.delivered += 1;
                        }
                        Err(e) => {
                            let why = match e {
                                PushError::Full => Undeliverable::MailboxFull,
                                PushError::Closed => Undeliverable::NoProcess,
                            };
                            bump(&mut self.stats.refused_in, why.as_str());
                            failed.push((local_id, why));
                        }
                    }
                }
                if ack {
                    let reply = UserFrame::Ack {
                        id,
                        delivered,
                        failed,
                    };
                    if let (Ok(bytes), Some(peer)) = (wire::encode(&reply), self.peers.get(from)) {
                        self.outputs.push_back(Output::Frame {
                            to: PeerRef {
                                name: Some(from.to_owned()),
                                addr: peer.addr,
                            },
                            class: Class::User,
                            payload: bytes,
                        });
                    }
                }
            }
            UserFrame::Ack {
                id,
                delivered,
                failed,
            } => {
                let aid = AckId(id);
                let Some(pending) = self.acks.get_mut(&aid) else {
                    self.stats.drop_input(DropReason::LateAck);
                    return;
                };
                let Some((incarnation, _)) = pending.waiting.remove(from) else {
                    self.stats.drop_input(DropReason::UnexpectedAck);
                    return;
                };
                pending.outcome.delivered += delivered as usize;
                pending.outcome.failed.extend(
                    failed
                        .into_iter()
                        .map(|(l, why)| (Pid::new(from, incarnation, l), why)),
                );
                if pending.waiting.is_empty() {
                    if let Some(done) = self.acks.remove(&aid) {
                        self.finish(OpId::Send(aid), Completion::Send(done.outcome));
                    }
                }
            }
        }
    }

    pub(super) fn expire_acks(&mut self, now: Instant) {
        let due: Vec<AckId> = self
            .acks
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(mut a) = self.acks.remove(&id) {
                a.outcome.timed_out = a.waiting.into_keys().collect();
                self.finish(OpId::Send(id), Completion::Send(a.outcome));
            }
        }
    }
}

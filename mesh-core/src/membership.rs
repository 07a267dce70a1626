//! SWIM membership as a sans-IO state machine around `foca`.
//!
//! [`Membership`] takes inputs — a datagram from a named peer, a timer that fired,
//! a periodic tick, a request to leave — each with an explicit `now`, and queues
//! outputs that the caller drains with [`Membership::poll_output`]: datagrams to send,
//! timers to arm at an absolute deadline, and membership events. It reads no clock,
//! does no IO and draws randomness only from the seeded RNG it was built with, so the
//! same inputs give the same outputs; the deterministic simulator in `tests/` and the
//! tokio shell in `mesh-agent` (`mesh_agent::runtime`) drive the same code.
//!
//! # Properties
//!
//! Safety:
//! - **S1 identity binding.** A datagram is only handed to foca if the SWIM source
//!   name in its header equals the certificate name of the connection it arrived on;
//!   anything else is dropped and counted ([`Rejected::IdentityMismatch`]).
//! - **S2 no resurrection.** A member's identity only moves to a larger incarnation;
//!   an event never reports an older incarnation of a name after a newer one.
//! - **S3 events are ordered per member.** For one identity the event stream is a
//!   path of the state machine `Up → (Suspect ↔ Alive)* → Down|Left`, where a `Down`
//!   may be followed by one `Left` when an operator force-leaves the dead member
//!   ([`Membership::force_leave`]).
//! - **S4 bad input changes nothing.** Malformed packets are rejected with a reason
//!   before foca sees them or by foca's own checks; neither panics.
//!
//! Liveness (checked by the simulator over many seeds):
//! - **L1 convergence.** Connected live nodes that know one seed all come to see each
//!   other alive.
//! - **L2 detection.** A node that stops answering is declared down by every live
//!   node, within `probe_period + suspicion + dissemination`.
//! - **L3 heal.** After a partition heals — or after every node restarted — nodes that
//!   find themselves alone re-announce to their seeds (with backoff), and foca's
//!   periodic announce to down members rejoins the rest, so one view forms again.
//! - **L4 no false down.** At moderate loss (10 %), healthy nodes are not declared down.
//!
//! # Local health
//!
//! A node whose own direct probes keep missing their deadline — because the network
//! around it is lossy or because it is starved of CPU — is the node most likely to
//! suspect healthy peers. Following Lifeguard, it then trusts its own judgement less:
//! [`Membership::local_health`] rises with the recent miss ratio and stretches the
//! suspicion timeout, giving a falsely suspected peer more time to refute. On a clean
//! network the level stays 0 and detection keeps its short timeout.
//!
//! # Additions to foca's dissemination
//!
//! foca piggybacks each update on the next few packets it sends, whoever they go to.
//! The simulator found three gaps, closed here without changing foca:
//! - **Buddy system** (Lifeguard): a packet to a member we hold as suspect always
//!   carries that suspicion, so the suspect hears it and refutes
//!   ([`Stats::suspicions_told`]).
//! - **A suspicion timer on every node**, as in memberlist: foca arms the
//!   suspect→down timer only on the prober, so a node that missed the `Down` kept the
//!   member suspect until it probed it itself ([`Stats::suspicions_expired`]).
//! - **Fast push-pull while joining**: for [`CHURN_WINDOW`] after a member comes up,
//!   announce to a random member every [`CHURN_PUSH_PULL`], so a mass join does not
//!   leave stragglers waiting for the 5 s push-pull ([`Stats::churn_announces`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foca::{BroadcastHandler, Foca, Invalidates, Message, Notification, State, Timer};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::codec::{peek_header, SwimCodec};
use crate::identity::NodeId;

/// The smallest SWIM packet we accept in configuration: a header plus a few updates.
pub const MIN_PACKET_SIZE: usize = 512;
/// The largest SWIM packet: it must fit in the first QUIC datagram of a connection
/// (quinn allows 1162 bytes before path MTU discovery), less our one-byte tag.
pub const MAX_PACKET_SIZE: usize = 1150;
/// Default SWIM packet budget.
pub const DEFAULT_PACKET_SIZE: usize = 1100;

/// Timing profile: how fast SWIM probes and how long it waits before declaring down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Data-centre networks: probe every 500 ms, suspicion 2 s × max(1, log10 N).
    #[default]
    Lan,
    /// Across regions: foca's WAN timings (probe every 5 s).
    Wan,
    /// One machine (tests, demos): probe every 200 ms.
    Local,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lan" => Ok(Self::Lan),
            "wan" => Ok(Self::Wan),
            "local" => Ok(Self::Local),
            other => Err(format!(
                "unknown profile {other:?}: expected lan, wan or local"
            )),
        }
    }
}

impl Profile {
    /// foca's configuration for this profile and a cluster of `cluster_size` nodes.
    pub fn foca_config(self, cluster_size: usize, packet_size: usize) -> foca::Config {
        let n = NonZeroU32::new(u32::try_from(cluster_size.max(1)).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        let scale = f64::from(n.get()).log10().max(1.0);
        let (mut c, period, rtt, suspicion_mult, gossip, down_announce) = match self {
            Self::Lan => (
                foca::Config::new_lan(n),
                Duration::from_millis(500),
                Duration::from_millis(200),
                4.0,
                Duration::from_millis(200),
                Duration::from_secs(3),
            ),
            Self::Wan => (
                foca::Config::new_wan(n),
                Duration::from_secs(5),
                Duration::from_secs(3),
                6.0,
                Duration::from_millis(500),
                Duration::from_secs(30),
            ),
            Self::Local => (
                foca::Config::new_lan(n),
                Duration::from_millis(200),
                Duration::from_millis(100),
                3.0,
                Duration::from_millis(100),
                Duration::from_secs(1),
            ),
        };
        // Retransmit each update at least MIN_TRANSMISSIONS times: foca's own count
        // (4·log10(N+1)) is 1 for tiny clusters, and an update piggybacks on whatever
        // goes out next, so with few copies the one member that must hear it — a
        // suspect that has to refute — can be missed for seconds.
        c.max_transmissions = c
            .max_transmissions
            .max(NonZeroU8::new(6).unwrap_or(NonZeroU8::MIN));
        // Push-pull: announce to one random member every 5 s (LAN/local); the Feed
        // reply repairs any update that dissemination missed.
        if self != Self::Wan {
            c.periodic_announce = Some(foca::PeriodicParams {
                frequency: Duration::from_secs(5),
                num_members: NonZeroUsize::MIN,
            });
        }
        // Five indirect probes: at 10 % loss a healthy node fails a whole probe
        // cycle ~0.1 % of the time instead of ~0.8 % with three.
        c.num_indirect_probes = NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN);
        c.probe_period = period;
        c.probe_rtt = rtt;
        c.suspect_to_down_after = period.mul_f64(suspicion_mult * scale);
        c.max_packet_size =
            NonZeroUsize::new(packet_size.max(MIN_PACKET_SIZE)).unwrap_or(NonZeroUsize::MIN);
        c.notify_down_members = true;
        c.periodic_gossip = Some(foca::PeriodicParams {
            frequency: gossip,
            num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        });
        c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: down_announce,
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        // Forget down identities after an hour rather than foca's default day: a
        // restarted node comes back as a newer incarnation anyway.
        c.remove_down_after = Some(Duration::from_secs(3600));
        c
    }
}

/// Configuration of the membership state machine.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// Timing profile.
    pub profile: Profile,
    /// Addresses to join through. Our own address is ignored if listed.
    pub seeds: Vec<SocketAddr>,
    /// SWIM packet budget in bytes, [`MIN_PACKET_SIZE`]..=[`MAX_PACKET_SIZE`].
    pub packet_size: usize,
    /// First delay between announces to seeds while alone.
    pub rejoin_backoff_min: Duration,
    /// Largest delay between announces to seeds while alone.
    pub rejoin_backoff_max: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            profile: Profile::Lan,
            seeds: Vec::new(),
            packet_size: DEFAULT_PACKET_SIZE,
            rejoin_backoff_min: Duration::from_millis(200),
            rejoin_backoff_max: Duration::from_secs(5),
        }
    }
}

/// What a node knows of a member's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Someone suspects it; it is still treated as alive until declared down.
    Suspect,
    /// Declared down by the cluster.
    Down,
    /// Left the cluster on purpose.
    Left,
}

impl MemberState {
    /// Lower-case name, as used in metrics labels and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Down => "down",
            Self::Left => "left",
        }
    }

    /// Alive or suspect: still counted as a member.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }
}

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its current identity.
    pub id: NodeId,
    /// Its state.
    pub state: MemberState,
    /// When it entered that state (by the caller's clock).
    pub since: Instant,
}

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A member (or a new incarnation of one) became alive.
    Up,
    /// A member became suspect.
    Suspect,
    /// A suspect member refuted the suspicion.
    Alive,
    /// A member was declared down.
    Down,
    /// A member left on purpose.
    Left,
    /// A live member's tags changed (made by the node from gossiped tags, not by SWIM;
    /// it does not change the member's state, so S3 is about the other kinds).
    Tags,
}

impl EventKind {
    /// Every kind, for registering metrics at zero.
    pub const ALL: [Self; 6] = [
        Self::Up,
        Self::Suspect,
        Self::Alive,
        Self::Down,
        Self::Left,
        Self::Tags,
    ];

    /// Lower-case name, as used in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Suspect => "suspect",
            Self::Alive => "alive",
            Self::Down => "down",
            Self::Left => "left",
            Self::Tags => "tags",
        }
    }
}

/// A membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipEvent {
    /// What happened.
    pub kind: EventKind,
    /// To whom.
    pub member: NodeId,
    /// When this node learned it.
    pub at: Instant,
}

/// A foca timer, ordered the way foca wants timers that fire together handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwimTimer(pub(crate) Timer<NodeId>);

impl PartialOrd for SwimTimer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SwimTimer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// Something the caller must do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send this SWIM packet to `to` as one datagram. A seed placeholder
    /// ([`NodeId::is_seed_placeholder`]) is reached by address alone.
    Send {
        /// Destination.
        to: NodeId,
        /// The packet.
        data: Bytes,
    },
    /// Call [`Membership::handle_timer`] with `timer` at `at`. Timers due at the same
    /// instant must be handled in `Ord` order.
    Timer {
        /// Deadline.
        at: Instant,
        /// The timer.
        timer: SwimTimer,
    },
    /// A membership change, for subscribers.
    Event(MembershipEvent),
}

/// Why [`Membership::force_leave`] refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForceLeaveError {
    /// This node knows no member of that name.
    #[error("no member named {0:?} is known")]
    Unknown(String),
    /// The member is alive or suspect in this node's view: it is not dead (yet).
    #[error("{name} is {} here; only a member declared down can be force-left", state.as_str())]
    Live {
        /// The member.
        name: String,
        /// Its state in this node's view.
        state: MemberState,
    },
    /// The name is this node's own.
    #[error("a node cannot force-leave itself (ask it to leave instead)")]
    Myself,
}

/// Why an incoming datagram was dropped. Nothing about the state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejected {
    /// The header's source name is not the name in the sender's certificate.
    #[error("SWIM source does not match the connection's certificate name")]
    IdentityMismatch,
    /// The packet could not be decoded.
    #[error("malformed SWIM packet")]
    Malformed,
    /// The packet is larger than the configured SWIM packet size.
    #[error("SWIM packet too large")]
    TooLarge,
    /// foca refused it (from ourselves, stale, or inconsistent).
    #[error("refused by SWIM")]
    Refused,
}

impl Rejected {
    /// Every reason, for registering metrics at zero.
    pub const ALL: [Self; 4] = [
        Self::IdentityMismatch,
        Self::Malformed,
        Self::TooLarge,
        Self::Refused,
    ];

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdentityMismatch => "identity_mismatch",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::Refused => "refused",
        }
    }
}

/// Counters kept by the state machine; the shell publishes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed in.
    pub datagrams_in: u64,
    /// Datagrams queued for sending.
    pub datagrams_out: u64,
    /// Datagrams dropped, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Events emitted, by kind.
    pub events: BTreeMap<&'static str, u64>,
    /// Announces sent to seeds while alone.
    pub seed_announces: u64,
    /// Times this node was declared down and rejoined as a newer incarnation.
    pub rejoins: u64,
    /// Probes that got no answer, direct or indirect.
    pub probes_failed: u64,
    /// Packets to a suspect member that had its suspicion added (buddy system).
    pub suspicions_told: u64,
    /// Suspects this node declared down when its own suspicion timer ran out.
    pub suspicions_expired: u64,
    /// Extra push-pulls made while members were joining.
    pub churn_announces: u64,
    /// `TurnUndead` messages foca wanted to send to a member that had refuted its
    /// suspicion, dropped (see `drop_undeserved_turn_undead`).
    pub turn_undead_dropped: u64,
    /// Announces sent to known members right after a rejoin (see
    /// `announce_after_rejoin`).
    pub rejoin_announces: u64,
}

/// Returns `packet` with `update` added to its piggybacked updates, or `None` if the
/// message kind carries no updates, the update is already there, the packet does not
/// parse, or the result would exceed `limit` bytes.
///
/// A foca packet is `header | u16 count | count × member | custom broadcasts`.
fn with_update(packet: &[u8], update: &foca::Member<NodeId>, limit: usize) -> Option<Vec<u8>> {
    let mut rest = packet;
    let header: foca::Header<NodeId> =
        foca::Codec::decode_header(&mut SwimCodec, &mut rest).ok()?;
    let carries_updates = matches!(
        header.message,
        Message::Ping(_)
            | Message::Ack(_)
            | Message::PingReq { .. }
            | Message::IndirectPing { .. }
            | Message::IndirectAck { .. }
            | Message::ForwardedAck { .. }
            | Message::Gossip
    );
    if !carries_updates || rest.len() < 2 {
        return None;
    }
    let header_len = packet.len() - rest.len();
    let count = u16::from_be_bytes([rest[0], rest[1]]);
    rest = &rest[2..];
    for _ in 0..count {
        let m: foca::Member<NodeId> = foca::Codec::decode_member(&mut SwimCodec, &mut rest).ok()?;
        if m.id() == update.id()
            && m.state() == update.state()
            && m.incarnation() >= update.incarnation()
        {
            return None;
        }
    }
    let members_end = packet.len() - rest.len();
    let mut encoded = Vec::new();
    foca::Codec::encode_member(&mut SwimCodec, update, &mut encoded).ok()?;
    if packet.len() + encoded.len() > limit {
        return None;
    }
    let mut out = Vec::with_capacity(packet.len() + encoded.len());
    out.extend_from_slice(&packet[..header_len]);
    out.extend_from_slice(&count.checked_add(1)?.to_be_bytes());
    out.extend_from_slice(&packet[header_len + 2..members_end]);
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&packet[members_end..]);
    Some(out)
}

/// Custom broadcasts carried on SWIM packets. Version-tagged so later subsystems can
/// add variants; an unknown tag is refused, not misread.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
enum Broadcast {
    /// The node is leaving on purpose: its coming `Down` is a `Left`.
    Leaving(NodeId),
}

const BROADCAST_VERSION: u8 = 1;

/// Push-pull period while members are joining.
pub const CHURN_PUSH_PULL: Duration = Duration::from_millis(500);
/// How long after the last join the fast push-pull lasts.
pub const CHURN_WINDOW: Duration = Duration::from_secs(5);

/// Floor on how many times each membership update is retransmitted.
pub const MIN_TRANSMISSIONS: u8 = 10;

/// Members announced to right after this node renewed its identity.
pub const REJOIN_ANNOUNCES: usize = 3;

/// Highest local-health level: suspicion lasts up to 2.5 times its base.
pub const MAX_HEALTH_LEVEL: u8 = 3;

/// A missed probe counts against local health if the peer is heard from within this.
const MISS_WINDOW: Duration = Duration::from_secs(10);

/// Bound on pings tracked for round-trip measurement (and on unread samples).
const MAX_PINGS_TRACKED: usize = 1024;

fn encode_broadcast(b: &Broadcast) -> Vec<u8> {
    let mut out = vec![BROADCAST_VERSION];
    // Encoding a small enum of owned data into a Vec cannot fail.
    out.extend(rmp_serde::to_vec(b).unwrap_or_default());
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BroadcastKey(NodeId);

impl Invalidates for BroadcastKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.0.name == other.0.name && self.0.incarnation >= other.0.incarnation
    }
}

/// Identities that announced they are leaving, shared with the foca-owned handler.
type LeftMarks = Arc<Mutex<HashMap<String, u64>>>;

#[derive(Debug, thiserror::Error)]
#[error("malformed custom broadcast")]
struct BadBroadcast;

struct Broadcasts {
    left: LeftMarks,
    /// Identities newly marked as left, for [`Membership::apply_fresh_left_marks`].
    fresh: FreshLeftMarks,
}

/// Identities the handler newly marked as left and the state machine has not looked at.
type FreshLeftMarks = Arc<Mutex<Vec<NodeId>>>;

impl BroadcastHandler<NodeId> for Broadcasts {
    type Key = BroadcastKey;
    type Error = BadBroadcast;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeId>,
    ) -> Result<Option<BroadcastKey>, BadBroadcast> {
        let (&version, body) = data.split_first().ok_or(BadBroadcast)?;
        if version != BROADCAST_VERSION {
            return Err(BadBroadcast);
        }
        let Broadcast::Leaving(id) = rmp_serde::from_slice(body).map_err(|_| BadBroadcast)?;
        let mut left = self.left.lock().unwrap_or_else(|p| p.into_inner());
        match left.get(&id.name) {
            Some(&inc) if inc >= id.incarnation => Ok(None),
            _ => {
                left.insert(id.name.clone(), id.incarnation);
                self.fresh
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(id.clone());
                Ok(Some(BroadcastKey(id)))
            }
        }
    }
}

/// Collects what foca asks for during one call.
#[derive(Default)]
struct Collect {
    sends: Vec<(NodeId, Bytes)>,
    timers: Vec<(Duration, Timer<NodeId>)>,
    notes: Vec<foca::OwnedNotification<NodeId>>,
}

impl foca::Runtime<NodeId> for Collect {
    fn notify(&mut self, n: Notification<'_, NodeId>) {
        self.notes.push(n.to_owned());
    }
    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.sends.push((to, Bytes::copy_from_slice(data)));
    }
    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.timers.push((after, event));
    }
}

/// The membership state machine. See the module docs.
pub struct Membership {
    foca: Foca<NodeId, SwimCodec, StdRng, Broadcasts>,
    config: MembershipConfig,
    left: LeftMarks,
    fresh_left: FreshLeftMarks,
    members: BTreeMap<String, MemberInfo>,
    outputs: VecDeque<Output>,
    stats: Stats,
    /// Cluster size the current foca config was computed for.
    config_size: usize,
    /// Local-health level the current foca config was computed for.
    config_health: u8,
    /// The suspicion timeout in force.
    suspicion_timeout: Duration,
    /// Members we hold as suspect: SWIM incarnation suspected, and when our own
    /// suspicion runs out.
    suspects: HashMap<String, (u16, Instant)>,
    /// Our own randomness (separate from foca's), for picking push-pull partners.
    rng: StdRng,
    /// While membership is changing, push-pull faster until this time.
    churn_until: Option<Instant>,
    /// Next fast push-pull while churning.
    next_churn_announce: Instant,
    joined: bool,
    next_seed_announce: Instant,
    seed_backoff: Duration,
    seed_cursor: usize,
    /// Direct pings in flight: (target name, probe number) -> sent at.
    pings: HashMap<(String, u8), Instant>,
    /// Measured probe round trips not yet drained.
    rtts: Vec<Duration>,
    /// Peers whose direct probe missed its deadline, by when.
    missed: HashMap<String, Instant>,
    /// Moving average of direct probes that missed their deadline (0..=1).
    miss_ratio: f64,
    /// Local-health level derived from `miss_ratio`, 0..=[`MAX_HEALTH_LEVEL`].
    health_level: u8,
    /// foca renewed our identity during the current input.
    rejoined: bool,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("identity", self.foca.identity())
            .field("members", &self.members.len())
            .finish()
    }
}

impl Membership {
    /// Builds the state machine for `identity`. Announcing to seeds starts at the
    /// first [`Membership::handle_tick`].
    pub fn new(
        identity: NodeId,
        mut config: MembershipConfig,
        rng_seed: u64,
        now: Instant,
    ) -> Self {
        config.packet_size = config.packet_size.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE);
        config.seeds.retain(|s| *s != identity.addr);
        config.seeds.dedup();
        let left: LeftMarks = Arc::default();
        let fresh_left: FreshLeftMarks = Arc::default();
        let initial = config.profile.foca_config(1, config.packet_size);
        let suspicion_timeout = initial.suspect_to_down_after;
        let foca = Foca::with_custom_broadcast(
            identity,
            initial,
            StdRng::seed_from_u64(rng_seed),
            SwimCodec,
            Broadcasts {
                left: left.clone(),
                fresh: fresh_left.clone(),
            },
        );
        Self {
            foca,
            seed_backoff: config.rejoin_backoff_min,
            config,
            left,
            fresh_left,
            members: BTreeMap::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            config_size: 1,
            config_health: 0,
            suspicion_timeout,
            suspects: HashMap::new(),
            rng: StdRng::seed_from_u64(rng_seed ^ 0x6d65_7368_5f70_7070),
            churn_until: None,
            next_churn_announce: now,
            joined: false,
            next_seed_announce: now,
            seed_cursor: 0,
            pings: HashMap::new(),
            rtts: Vec::new(),
            missed: HashMap::new(),
            miss_ratio: 0.0,
            health_level: 0,
            rejoined: false,
        }
    }

    /// This node's current identity (it changes if the node is declared down and
    /// rejoins as a newer incarnation).
    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    /// Configuration in force.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// True once some member knows us and we are not alone.
    pub fn is_joined(&self) -> bool {
        self.joined && self.foca.num_members() > 0
    }

    /// Members other than this node, including down and left ones still remembered.
    pub fn members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.values()
    }

    /// One member by name.
    pub fn member(&self, name: &str) -> Option<&MemberInfo> {
        self.members.get(name)
    }

    /// Number of live (alive or suspect) members, not counting this node.
    pub fn live_count(&self) -> usize {
        self.foca.num_members()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Round trips of direct probes measured since the last call.
    pub fn drain_probe_rtts(&mut self) -> std::vec::Drain<'_, Duration> {
        self.rtts.drain(..)
    }

    /// Next output to act on, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Membership::handle_tick`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let seeds = (!self.config.seeds.is_empty()).then_some(self.next_seed_announce);
        let suspects = self.suspects.values().map(|&(_, at)| at).min();
        let churn = self.churn_until.map(|_| self.next_churn_announce);
        [seeds, suspects, churn].into_iter().flatten().min()
    }

    /// A datagram arrived on a connection whose certificate names `from`.
    pub fn handle_data(&mut self, now: Instant, from: &str, data: &[u8]) -> Result<(), Rejected> {
        self.stats.datagrams_in += 1;
        let result = self.accept_data(now, from, data);
        if let Err(reason) = result {
            *self.stats.rejected.entry(reason.as_str()).or_default() += 1;
        }
        result
    }

    fn accept_data(&mut self, now: Instant, from: &str, data: &[u8]) -> Result<(), Rejected> {
        if data.len() > self.config.packet_size {
            return Err(Rejected::TooLarge);
        }
        let mut header = peek_header(data).map_err(|_| Rejected::Malformed)?;
        if header.src.name != from || header.src.is_seed_placeholder() {
            return Err(Rejected::IdentityMismatch);
        }
        let mut rt = Collect::default();
        let result = if header.message == Message::Announce && header.dst.is_seed_placeholder() {
            // The sender dialed us as a seed without knowing our name. An announce
            // carries nothing but its header, so re-address it to us.
            header.dst = self.identity().clone();
            let mut buf = Vec::with_capacity(data.len() + 32);
            foca::Codec::encode_header(&mut SwimCodec, &header, &mut buf)
                .map_err(|_| Rejected::Malformed)?;
            self.foca.handle_data(&buf, &mut rt)
        } else {
            self.foca.handle_data(data, &mut rt)
        };
        self.absorb(now, rt);
        match result {
            Ok(()) => Ok(()),
            Err(
                foca::Error::Decode(_)
                | foca::Error::MalformedPacket
                | foca::Error::CustomBroadcast(_),
            ) => Err(Rejected::Malformed),
            Err(foca::Error::DataTooBig) => Err(Rejected::TooLarge),
            Err(_) => Err(Rejected::Refused),
        }
    }

    /// A timer armed by an [`Output::Timer`] is due.
    pub fn handle_timer(&mut self, now: Instant, timer: SwimTimer) {
        if let Timer::SendIndirectProbe { probed_id, .. } = &timer.0 {
            // The direct probe got no ack within probe_rtt. Whether that says
            // something about *our* health is only known if the peer turns out to
            // be alive: remember the miss until we hear from it.
            let before = self.pings.len();
            self.pings.retain(|(name, _), _| *name != probed_id.name);
            if self.pings.len() < before {
                if self.missed.len() >= MAX_PINGS_TRACKED {
                    self.missed.clear();
                }
                self.missed.insert(probed_id.name.clone(), now);
            }
        }
        let suspect = match &timer.0 {
            Timer::ChangeSuspectToDown { member_id, .. } => Some(member_id.clone()),
            _ => None,
        };
        let mut rt = Collect::default();
        if let Err(e) = self.foca.handle_timer(timer.0, &mut rt) {
            tracing::debug!(error = %e, "timer refused");
        }
        if let Some(member) = suspect {
            self.drop_undeserved_turn_undead(&member, &mut rt);
        }
        self.absorb(now, rt);
    }

    /// foca 2.0 sends `TurnUndead` ("you are declared down") when a suspicion timer
    /// fires even if the member refuted the suspicion in the meantime and was *not*
    /// declared down: the apply fails its incarnation condition but the courtesy
    /// message still goes out, and the healthy member then renews itself as a new
    /// incarnation. Under loss that is a steady trickle of needless rejoins (found by
    /// the chaos suite; 21 in 20 simulated minutes of 10 % loss). Drop the message
    /// unless the member really is down now.
    fn drop_undeserved_turn_undead(&mut self, member: &NodeId, rt: &mut Collect) {
        let is_down = !self.foca.iter_members().any(|m| m.id() == member);
        if is_down {
            return;
        }
        let before = rt.sends.len();
        rt.sends.retain(|(to, data)| {
            to != member || peek_header(data).map_or(true, |h| h.message != Message::TurnUndead)
        });
        self.stats.turn_undead_dropped += u64::try_from(before - rt.sends.len()).unwrap_or(0);
    }

    /// Periodic housekeeping: declare down the suspects whose suspicion ran out, and
    /// announce to seeds while alone (with backoff). Call it at
    /// [`Membership::poll_timeout`] or more often.
    pub fn handle_tick(&mut self, now: Instant) {
        self.expire_suspects(now);
        self.announce_to_seeds(now);
        self.push_pull_while_churning(now);
    }

    /// While members are joining, push-pull (announce to a random member, which
    /// answers with a feed of members) every [`CHURN_PUSH_PULL`] instead of every
    /// 5 s. A mass join otherwise leaves a few nodes missing a few members until the
    /// periodic push-pull or a probe happens to fill the gap (20 s at N = 50 in the
    /// simulator).
    fn push_pull_while_churning(&mut self, now: Instant) {
        let Some(until) = self.churn_until else {
            return;
        };
        if now >= until {
            self.churn_until = None;
            return;
        }
        if now < self.next_churn_announce {
            return;
        }
        self.next_churn_announce = now + CHURN_PUSH_PULL;
        let n = self.foca.num_members();
        if n == 0 {
            return;
        }
        let pick = rand::RngExt::random_range(&mut self.rng, 0..n);
        let Some(target) = self.foca.iter_members().nth(pick).map(|m| m.id().clone()) else {
            return;
        };
        let mut rt = Collect::default();
        if self.foca.announce(target, &mut rt).is_ok() {
            self.stats.churn_announces += 1;
        }
        self.absorb(now, rt);
    }

    /// Every node that learns a suspicion keeps its own timer, as in memberlist:
    /// foca only arms one on the node whose probe failed, so a node that missed
    /// the resulting `Down` would hold the member suspect until it happened to
    /// probe it itself. A refutation (a newer SWIM incarnation) cancels the timer.
    fn expire_suspects(&mut self, now: Instant) {
        let due: Vec<(String, u16)> = self
            .suspects
            .iter()
            .filter(|(_, &(_, at))| at <= now)
            .map(|(name, &(inc, _))| (name.clone(), inc))
            .collect();
        for (name, inc) in due {
            self.suspects.remove(&name);
            let still_suspect = self
                .foca
                .iter_members()
                .find(|m| {
                    m.id().name == name && m.state() == State::Suspect && m.incarnation() == inc
                })
                .map(|m| m.id().clone());
            if let Some(id) = still_suspect {
                let mut rt = Collect::default();
                let down = foca::Member::new(id, inc, State::Down);
                if let Err(e) = self.foca.apply_many(std::iter::once(down), true, &mut rt) {
                    tracing::debug!(error = %e, "could not declare suspect down");
                }
                self.stats.suspicions_expired += 1;
                self.absorb(now, rt);
            }
        }
    }

    fn announce_to_seeds(&mut self, now: Instant) {
        if self.config.seeds.is_empty() || now < self.next_seed_announce {
            return;
        }
        if self.foca.num_members() > 0 {
            // Not alone: look again later; the backoff starts small next time.
            self.seed_backoff = self.config.rejoin_backoff_min;
            self.next_seed_announce = now + self.config.rejoin_backoff_max;
            return;
        }
        let seed = self.config.seeds[self.seed_cursor % self.config.seeds.len()];
        self.seed_cursor = self.seed_cursor.wrapping_add(1);
        let mut rt = Collect::default();
        if self.foca.announce(NodeId::seed(seed), &mut rt).is_ok() {
            self.stats.seed_announces += 1;
        }
        self.absorb(now, rt);
        // Try every seed once before backing off.
        if self.seed_cursor.is_multiple_of(self.config.seeds.len()) {
            self.next_seed_announce = now + self.seed_backoff;
            self.seed_backoff = (self.seed_backoff * 2).min(self.config.rejoin_backoff_max);
        }
    }

    /// Announces to a specific address now (an operator's `join`).
    pub fn announce_to(&mut self, now: Instant, addr: SocketAddr) {
        let mut rt = Collect::default();
        let _ = self.foca.announce(NodeId::seed(addr), &mut rt);
        self.absorb(now, rt);
    }

    /// Replaces the addresses announced to while alone (the static seeds and what DNS
    /// seeds resolved to; our own address is dropped). A changed list is tried from
    /// its start at once, with the backoff back at its minimum.
    pub fn set_seeds(&mut self, now: Instant, seeds: Vec<SocketAddr>) {
        let me = self.identity().addr;
        let mut unique = Vec::with_capacity(seeds.len());
        for s in seeds {
            if s != me && !unique.contains(&s) {
                unique.push(s);
            }
        }
        if unique == self.config.seeds {
            return;
        }
        self.config.seeds = unique;
        self.seed_cursor = 0;
        self.seed_backoff = self.config.rejoin_backoff_min;
        self.next_seed_announce = now;
    }

    /// Leaves the cluster gracefully: tells peers we are leaving, then declares
    /// ourselves down. After this the node answers nothing.
    pub fn leave(&mut self, now: Instant) {
        let me = self.identity().clone();
        let data = encode_broadcast(&Broadcast::Leaving(me));
        let mut rt = Collect::default();
        if let Err(e) = self.foca.add_broadcast(&data) {
            tracing::debug!(error = %e, "could not queue leave notice");
        }
        if let Err(e) = self.foca.leave_cluster(&mut rt) {
            tracing::debug!(error = %e, "leave refused");
        }
        self.absorb(now, rt);
        self.config.seeds.clear();
    }

    /// Marks the down member `name` as left now (an operator's `force-leave`): this node
    /// reports it `left` at once, with a [`EventKind::Left`] event, and gossips a leave
    /// notice for its incarnation, so every node that holds it down (or declares it
    /// down later) reports it left too. Returns its identity and its state before
    /// (`Left` if it had already left: nothing changes).
    ///
    /// Refused, changing nothing, for this node itself, a name this node does not
    /// know, and a member that is alive or suspect: only a member the cluster has
    /// declared down can be force-left (a node that comes back does so as a newer
    /// incarnation, which the notice does not cover).
    pub fn force_leave(
        &mut self,
        now: Instant,
        name: &str,
    ) -> Result<(NodeId, MemberState), ForceLeaveError> {
        if name == self.identity().name {
            return Err(ForceLeaveError::Myself);
        }
        let info = self
            .members
            .get(name)
            .ok_or_else(|| ForceLeaveError::Unknown(name.to_owned()))?;
        let (id, was) = (info.id.clone(), info.state);
        let live_in_foca = self.foca.iter_members().any(|m| m.id().name == name);
        match was {
            MemberState::Left => return Ok((id, was)),
            MemberState::Alive | MemberState::Suspect => {
                return Err(ForceLeaveError::Live {
                    name: name.to_owned(),
                    state: was,
                })
            }
            MemberState::Down if live_in_foca => {
                return Err(ForceLeaveError::Live {
                    name: name.to_owned(),
                    state: MemberState::Alive,
                })
            }
            MemberState::Down => {}
        }
        let data = encode_broadcast(&Broadcast::Leaving(id.clone()));
        // The handler sees our own broadcasts first: this marks it left here too.
        if let Err(e) = self.foca.add_broadcast(&data) {
            tracing::warn!(error = %e, member = %id, "could not gossip a force-leave notice: only this node reports it left; retry meshctl force-leave");
        }
        self.apply_fresh_left_marks(now);
        // Already marked before (the notice had come, but not turned it left): say it
        // here all the same.
        if self
            .members
            .get(name)
            .is_some_and(|m| m.state == MemberState::Down)
        {
            self.set_member(now, id.clone(), MemberState::Left);
            self.emit(now, EventKind::Left, id.clone());
        }
        Ok((id, was))
    }

    /// Reports left every down member whose incarnation a leave notice just marked (a
    /// force-leave, here or gossiped).
    fn apply_fresh_left_marks(&mut self, now: Instant) {
        let fresh = std::mem::take(&mut *self.fresh_left.lock().unwrap_or_else(|p| p.into_inner()));
        for id in fresh {
            let down = self
                .members
                .get(&id.name)
                .is_some_and(|m| m.id == id && m.state == MemberState::Down);
            if down {
                self.set_member(now, id.clone(), MemberState::Left);
                self.emit(now, EventKind::Left, id);
            }
        }
    }

    /// Turns what foca asked for into outputs and events.
    fn absorb(&mut self, now: Instant, rt: Collect) {
        for (to, data) in rt.sends {
            self.stats.datagrams_out += 1;
            let data = self.tell_suspect(&to, data);
            self.outputs.push_back(Output::Send { to, data });
        }
        for (after, timer) in rt.timers {
            self.outputs.push_back(Output::Timer {
                at: now + after,
                timer: SwimTimer(timer),
            });
        }
        for note in rt.notes {
            self.apply_notification(now, note);
        }
        self.apply_fresh_left_marks(now);
        self.reconcile_suspects(now);
        self.follow_cluster_size();
        if std::mem::take(&mut self.rejoined) {
            self.announce_after_rejoin(now);
        }
    }

    /// After foca renews our identity (we were declared down), it resets itself to
    /// "disconnected" and drops its timers; it reconnects only when some update
    /// arrives. Everything addressed to our old identity is refused, so if every
    /// node of a group renewed at once (a partition heals and each side tells the
    /// other it is down) nobody hears anything again: each still lists the others,
    /// so none is "alone" and none announces to its seeds. The simulator found this
    /// (4 nodes, 2 | 2, under loss). An announce is accepted whatever incarnation it
    /// is addressed to, and its answer carries the sender's members: announce to a few
    /// members right away.
    fn announce_after_rejoin(&mut self, now: Instant) {
        let members: Vec<NodeId> = self.foca.iter_members().map(|m| m.id().clone()).collect();
        if members.is_empty() {
            return;
        }
        let mut rt = Collect::default();
        for _ in 0..REJOIN_ANNOUNCES.min(members.len()) {
            let pick = rand::RngExt::random_range(&mut self.rng, 0..members.len());
            if self.foca.announce(members[pick].clone(), &mut rt).is_ok() {
                self.stats.rejoin_announces += 1;
            }
        }
        self.absorb(now, rt);
    }

    /// Lifeguard's buddy system: a packet to a member we hold as suspect always
    /// carries that suspicion, so the suspect learns of it and refutes in time.
    ///
    /// foca piggybacks each update on the next few packets it sends, whoever they
    /// go to; in a busy cluster those copies can all go to other members and the
    /// suspect never hears that it must refute (seen in the simulator at 10 % loss).
    /// Here the suspicion is appended to the packet's update list when it is
    /// missing and fits; otherwise the packet goes out unchanged.
    fn tell_suspect(&mut self, to: &NodeId, data: Bytes) -> Bytes {
        let Some(suspicion) = self
            .foca
            .iter_members()
            .find(|m| m.id() == to && m.state() == State::Suspect)
            .cloned()
        else {
            return data;
        };
        match with_update(&data, &suspicion, self.config.packet_size) {
            Some(rewritten) => {
                self.stats.suspicions_told += 1;
                Bytes::from(rewritten)
            }
            None => data,
        }
    }

    fn emit(&mut self, now: Instant, kind: EventKind, member: NodeId) {
        *self.stats.events.entry(kind.as_str()).or_default() += 1;
        self.outputs.push_back(Output::Event(MembershipEvent {
            kind,
            member,
            at: now,
        }));
    }

    fn set_member(&mut self, now: Instant, id: NodeId, state: MemberState) {
        self.members.insert(
            id.name.clone(),
            MemberInfo {
                id,
                state,
                since: now,
            },
        );
    }

    fn apply_notification(&mut self, now: Instant, note: foca::OwnedNotification<NodeId>) {
        use foca::OwnedNotification as N;
        match note {
            N::MemberUp(id) => {
                if self.is_stale(&id) {
                    return;
                }
                if self.churn_until.is_none() {
                    self.next_churn_announce = now + CHURN_PUSH_PULL;
                }
                self.churn_until = Some(now + CHURN_WINDOW);
                self.set_member(now, id.clone(), MemberState::Alive);
                self.emit(now, EventKind::Up, id);
            }
            N::MemberDown(id) => {
                if self.is_stale(&id) {
                    return;
                }
                let left = self
                    .left
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id.name)
                    .is_some_and(|&inc| inc == id.incarnation);
                let (state, kind) = if left {
                    (MemberState::Left, EventKind::Left)
                } else {
                    (MemberState::Down, EventKind::Down)
                };
                self.suspects.remove(&id.name);
                self.set_member(now, id.clone(), state);
                self.emit(now, kind, id);
            }
            N::Rename(old, new) => {
                if let Some(info) = self.members.get_mut(&old.name) {
                    if info.id.incarnation <= new.incarnation {
                        info.id = new;
                    }
                }
            }
            N::Active => self.joined = true,
            N::Idle => self.joined = false,
            N::Defunct => self.joined = false,
            N::Rejoin(_) => {
                self.stats.rejoins += 1;
                self.rejoined = true;
            }
            N::ProbeFailed(..) => self.stats.probes_failed += 1,
            N::DataSent(h) => {
                if let Message::Ping(n) = h.message {
                    if self.pings.len() >= MAX_PINGS_TRACKED {
                        self.pings.clear();
                    }
                    self.pings.insert((h.dst.name, n), now);
                }
            }
            N::DataReceived(h) => {
                if let Some(at) = self.missed.remove(&h.src.name) {
                    // A peer we missed is alive after all: the miss was ours (or the
                    // network's). Misses of peers never heard from again — dead ones —
                    // say nothing about our health and expire unseen.
                    if now.saturating_duration_since(at) <= MISS_WINDOW {
                        self.record_probe(true);
                    }
                }
                if let Message::Ack(n) = h.message {
                    if let Some(sent) = self.pings.remove(&(h.src.name, n)) {
                        self.record_probe(false);
                        if self.rtts.len() < MAX_PINGS_TRACKED {
                            self.rtts.push(now.saturating_duration_since(sent));
                        }
                    }
                }
            }
        }
    }

    /// An identity older than the one we already report for that name.
    fn is_stale(&self, id: &NodeId) -> bool {
        self.members
            .get(&id.name)
            .is_some_and(|m| m.id.incarnation > id.incarnation)
    }

    /// foca has no suspect notification: compare its states with ours.
    fn reconcile_suspects(&mut self, now: Instant) {
        let mut changes = Vec::new();
        for m in self.foca.iter_members() {
            let Some(info) = self.members.get(&m.id().name) else {
                continue;
            };
            if info.id != *m.id() {
                continue;
            }
            match (info.state, m.state()) {
                (MemberState::Alive, State::Suspect) => {
                    changes.push((m.id().clone(), Some(m.incarnation())));
                }
                (MemberState::Suspect, State::Alive) => changes.push((m.id().clone(), None)),
                _ => {}
            }
        }
        for (id, suspect) in changes {
            if let Some(inc) = suspect {
                self.suspects
                    .insert(id.name.clone(), (inc, now + self.suspicion_timeout));
                self.set_member(now, id.clone(), MemberState::Suspect);
                self.emit(now, EventKind::Suspect, id);
            } else {
                self.suspects.remove(&id.name);
                self.set_member(now, id.clone(), MemberState::Alive);
                self.emit(now, EventKind::Alive, id);
            }
        }
    }

    /// Local health: how degraded this node's own view of the network is, from
    /// 0 (direct probes answered) to [`MAX_HEALTH_LEVEL`] (15 % or more missed).
    /// Each level lengthens the suspicion timeout by half (Lifeguard's local-health
    /// multiplier, applied to suspicion since foca fixes the probe timings).
    pub fn local_health(&self) -> u8 {
        self.health_level
    }

    fn record_probe(&mut self, missed: bool) {
        const ALPHA: f64 = 0.1;
        self.miss_ratio = self.miss_ratio * (1.0 - ALPHA) + if missed { ALPHA } else { 0.0 };
        // Levels at 5 % steps of missed direct probes.
        let level = (self.miss_ratio * 20.0)
            .floor()
            .clamp(0.0, f64::from(MAX_HEALTH_LEVEL));
        // `level` is a small non-negative integer after the clamp.
        self.health_level = level as u8;
    }

    /// Re-derive foca's config whenever the cluster size or the local health
    /// changes, so the suspicion timeout and retransmissions follow log(N) and the
    /// suspicion timeout stretches while our own probes are being lost.
    fn follow_cluster_size(&mut self) {
        let n = self.foca.num_members() + 1;
        if (n, self.health_level) != (self.config_size, self.config_health) {
            let mut cfg = self.config.profile.foca_config(n, self.config.packet_size);
            cfg.suspect_to_down_after = cfg
                .suspect_to_down_after
                .mul_f64(1.0 + f64::from(self.health_level) / 2.0);
            let suspicion = cfg.suspect_to_down_after;
            if self.foca.set_config(cfg).is_ok() {
                self.suspicion_timeout = suspicion;
                self.config_size = n;
                self.config_health = self.health_level;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{Codec, Header, Member};

    fn id(name: &str) -> NodeId {
        NodeId::new(name, SocketAddr::from(([10, 0, 0, 1], 7946)), 1)
    }

    fn packet(message: Message<NodeId>, members: &[Member<NodeId>], trailer: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        let header = Header {
            src: id("a"),
            src_incarnation: 0,
            dst: id("b"),
            message,
        };
        SwimCodec.encode_header(&header, &mut buf).expect("header");
        buf.extend_from_slice(&u16::try_from(members.len()).expect("few").to_be_bytes());
        for m in members {
            SwimCodec.encode_member(m, &mut buf).expect("member");
        }
        buf.extend_from_slice(trailer);
        buf
    }

    fn members_of(packet: &[u8]) -> (Vec<Member<NodeId>>, Vec<u8>) {
        let mut rest = packet;
        SwimCodec.decode_header(&mut rest).expect("header");
        let n = u16::from_be_bytes([rest[0], rest[1]]);
        rest = &rest[2..];
        let ms = (0..n)
            .map(|_| SwimCodec.decode_member(&mut rest).expect("member"))
            .collect();
        (ms, rest.to_vec())
    }

    #[test]
    fn a_suspicion_is_added_once_before_the_custom_broadcasts() {
        let other = Member::new(id("c"), 0, State::Alive);
        let suspicion = Member::new(id("b"), 3, State::Suspect);
        let trailer = [0u8, 2, 0xAA, 0xBB];
        let original = packet(Message::Ping(7), std::slice::from_ref(&other), &trailer);
        let added = with_update(&original, &suspicion, 1100).expect("fits");
        let (ms, rest) = members_of(&added);
        assert_eq!(ms, vec![other, suspicion.clone()]);
        assert_eq!(rest, trailer, "custom broadcasts stay after the updates");
        assert_eq!(with_update(&added, &suspicion, 1100), None, "never twice");
    }

    #[test]
    fn a_suspicion_is_not_added_where_it_cannot_go() {
        let suspicion = Member::new(id("b"), 3, State::Suspect);
        let announce = packet(Message::Announce, &[], &[]);
        assert_eq!(
            with_update(&announce[..announce.len() - 2], &suspicion, 1100),
            None
        );
        let ping = packet(Message::Ping(1), &[], &[]);
        assert_eq!(
            with_update(&ping, &suspicion, ping.len() + 1),
            None,
            "over the limit"
        );
        assert_eq!(
            with_update(&[0xc1, 0, 0], &suspicion, 1100),
            None,
            "garbage"
        );
    }
}

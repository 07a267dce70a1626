//! The transport's bookkeeping, kept free of IO so that its rules can be tested on
//! their own: which connection to keep when two exist to the same peer, how long to
//! wait before dialing an address again, and how many requests are in flight per peer
//! and per connection.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::frame::Class;
use crate::stats::HandshakeFailure;
use crate::PeerRef;

/// A connection older than this is replaced by a newer one to the same peer whoever
/// dialed it: the peer restarted or lost the old one without us noticing yet.
pub(crate) const REPLACE_AFTER: Duration = Duration::from_secs(5);

/// First delay after a transient dial failure; it doubles with every further failure.
pub(crate) const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Longest delay after transient dial failures.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Delay after an authentication failure (or dialing ourselves): it will not fix
/// itself soon.
pub(crate) const BACKOFF_AUTH: Duration = Duration::from_secs(60);

/// Delay after a peer refused our connection because our name is bound there to a
/// live connection from another address: long enough that a second agent with a
/// copied name costs each peer one handshake per 2 s, short enough that an agent that
/// restarted at a new address is let in soon after the peer's old connection closes.
pub(crate) const BACKOFF_NAME_CONFLICT: Duration = Duration::from_secs(2);

/// Backoff entries older than this are forgotten when the table grows large.
const BACKOFF_FORGET: Duration = Duration::from_secs(600);
const BACKOFF_PRUNE_AT: usize = 1024;

/// What the connection-choice rule needs to know about a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnMeta<'a> {
    /// Name of the node that dialed it.
    pub(crate) dialer: &'a str,
    /// When this side registered it.
    pub(crate) since: Instant,
    /// Whether it is already closed.
    pub(crate) closed: bool,
    /// The peer's address as this side sees it.
    pub(crate) remote: SocketAddr,
}

/// The rule that keeps one connection per peer pair. Given the connection in use
/// (`old`) and a newly established one (`new`) to the same peer, the new one replaces
/// the old one when:
///
/// 1. the old one is closed, or
/// 2. the old one is at least [`REPLACE_AFTER`] old (the peer restarted or lost it;
///    it would not dial again otherwise), or
/// 3. the new one was dialed by the lexicographically smaller node name, or
/// 4. both were dialed by the same node (that node replaced its own connection).
///
/// Otherwise the old one stays. In a simultaneous dial both sides see the same two
/// connections, both young and open, so rule 3 makes both keep the one dialed by the
/// smaller name, in whatever order the handshakes finished. The loser is closed after a
/// short grace and is read until then.
pub(crate) fn new_replaces_old(old: ConnMeta<'_>, new: ConnMeta<'_>, now: Instant) -> bool {
    debug_assert!(!is_name_conflict(old, new), "checked first");
    old.closed
        || now.saturating_duration_since(old.since) >= REPLACE_AFTER
        || new.dialer <= old.dialer
}

/// Whether `new` must be refused because `old`, the open connection in use for the
/// same name, comes from another address: a name is bound to its first live
/// connection. Checked before [`new_replaces_old`].
///
/// One agent's connections all use its one QUIC socket, so a crossing dial or a
/// reconnect comes from the address already in use and is never a conflict; a restart
/// at the same address replaces the old connection as before. Two open connections for
/// one name from two addresses mean two processes hold a certificate for it (a copied
/// config, a second agent started with a live one's name). Before this rule the
/// newcomer always won (rule 3 or 4 of [`new_replaces_old`]): traffic for the real node
/// went to the newcomer and the real node was pushed out. Now the newcomer is refused
/// (counted as [`HandshakeFailure::NameConflict`] on both sides) until the old
/// connection closes.
///
/// The cost, said in the README: an agent that restarts at a *new* address is refused
/// by a peer until that peer's connection to its old life closes (the QUIC idle
/// timeout, 10 s by default), and a peer whose dials leave from an address other than
/// the one it is dialed at keeps only the connection dialed to it.
pub(crate) fn is_name_conflict(old: ConnMeta<'_>, new: ConnMeta<'_>) -> bool {
    // `remote` is canonical (see `Peer::meta`): on a dual-stack socket one peer can show
    // as 10.0.0.1 and as ::ffff:10.0.0.1.
    !old.closed && old.remote != new.remote
}

/// `addr` with an IPv4-mapped IPv6 address written as the IPv4 address.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Why a dial gave no usable connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialFailure {
    /// The handshake failed (counted as a handshake failure of this kind).
    Handshake(HandshakeFailure),
    /// The address answered with this node's own certificate.
    Myself,
}

/// Per-address dial backoff: exponential for transient failures, long for
/// authentication failures (and for our own address), forgotten on success.
#[derive(Debug, Default)]
pub(crate) struct Backoffs {
    by_addr: HashMap<SocketAddr, BackoffEntry>,
}

#[derive(Debug, Clone, Copy)]
struct BackoffEntry {
    failures: u32,
    until: Instant,
    last: DialFailure,
}

impl Backoffs {
    /// Records a failed dial to `addr` and returns how long to wait before the next.
    pub(crate) fn failed(&mut self, addr: SocketAddr, why: DialFailure, now: Instant) -> Duration {
        if self.by_addr.len() >= BACKOFF_PRUNE_AT {
            self.by_addr
                .retain(|_, e| now.saturating_duration_since(e.until) < BACKOFF_FORGET);
        }
        let entry = self.by_addr.entry(addr).or_insert(BackoffEntry {
            failures: 0,
            until: now,
            last: why,
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last = why;
        let delay = match why {
            DialFailure::Handshake(HandshakeFailure::Auth) | DialFailure::Myself => BACKOFF_AUTH,
            // Fixed, not doubling: the dial itself succeeds (and clears the count)
            // before the peer refuses it.
            DialFailure::Handshake(HandshakeFailure::NameConflict) => BACKOFF_NAME_CONFLICT,
            DialFailure::Handshake(
                HandshakeFailure::Timeout | HandshakeFailure::Reset | HandshakeFailure::Other,
            ) => {
                let doublings = entry.failures.saturating_sub(1).min(16);
                BACKOFF_INITIAL
                    .saturating_mul(1 << doublings)
                    .min(BACKOFF_MAX)
            }
        };
        entry.until = now + delay;
        delay
    }

    /// Forgets the failures of `addr` after a successful connection.
    pub(crate) fn succeeded(&mut self, addr: SocketAddr) {
        self.by_addr.remove(&addr);
    }

    /// How long dialing `addr` must still wait, if at all, and why the last dial
    /// failed.
    pub(crate) fn remaining(
        &self,
        addr: SocketAddr,
        now: Instant,
    ) -> Option<(Duration, DialFailure)> {
        let entry = self.by_addr.get(&addr)?;
        (entry.until > now).then(|| (entry.until - now, entry.last))
    }
}

/// How many of something each key holds (requests per peer, request streams per
/// connection). A key at zero is forgotten, so the table holds only keys in use.
#[derive(Debug)]
pub(crate) struct Counts<K> {
    by_key: HashMap<K, usize>,
}

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Counts<K> {
    /// Adds one for `key` unless it already holds `limit`; whether it was added.
    pub(crate) fn try_add(&mut self, key: K, limit: usize) -> bool {
        match self.by_key.entry(key) {
            Entry::Occupied(mut held) if *held.get() < limit => {
                *held.get_mut() += 1;
                true
            }
            Entry::Occupied(_) => false,
            Entry::Vacant(free) if limit > 0 => {
                free.insert(1);
                true
            }
            Entry::Vacant(_) => false,
        }
    }

    /// Takes one back from `key` and returns how many it still holds. Taking from a
    /// key that holds nothing changes nothing.
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(n) = self.by_key.get_mut(key) else {
            return 0;
        };
        *n = n.saturating_sub(1);
        let left = *n;
        if left == 0 {
            self.by_key.remove(key);
        }
        left
    }

    /// How many `key` holds.
    pub(crate) fn get<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.by_key.get(key).copied().unwrap_or(0)
    }

    /// Keys holding at least one.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// The connection in use for one peer.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) conn: quinn::Connection,
    pub(crate) dialer: String,
    pub(crate) since: Instant,
}

impl Peer {
    pub(crate) fn meta(&self) -> ConnMeta<'_> {
        ConnMeta {
            dialer: &self.dialer,
            since: self.since,
            closed: self.conn.close_reason().is_some(),
            remote: canonical(self.conn.remote_address()),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }
}

/// Who a send queue is for: a peer name when known, otherwise an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Name(String),
    Addr(SocketAddr),
}

/// One (peer, class) send queue and the task that drains it.
#[derive(Debug)]
pub(crate) struct Writer {
    /// Distinguishes this writer from a later one for the same key.
    pub(crate) id: u64,
    pub(crate) tx: mpsc::Sender<Bytes>,
    /// Where to dial when there is no connection (the latest address given).
    pub(crate) addr: SocketAddr,
}

/// Whether a dial was started for a send that found no connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialState {
    /// A dial was started now.
    Started,
    /// A dial to that address is already running.
    InProgress,
    /// The address is backing off for `left` after a dial that failed with `why`.
    Backoff {
        /// How long until the next dial may start.
        left: Duration,
        /// Why the last dial failed.
        why: DialFailure,
    },
}

/// Everything behind the transport's lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The connection in use, by peer certificate name.
    pub(crate) peers: HashMap<String, Peer>,
    /// Remote addresses of connections in use, for name-less [`PeerRef`]s.
    pub(crate) by_addr: HashMap<SocketAddr, String>,
    /// Dials in progress, with the datagrams waiting for them (oldest first).
    pub(crate) dials: HashMap<SocketAddr, VecDeque<Bytes>>,
    pub(crate) backoff: Backoffs,
    pub(crate) writers: HashMap<(Target, Class), Writer>,
    pub(crate) next_writer_id: u64,
    /// Requests being served (read, waiting in `Inbound`, or being answered), by peer
    /// certificate name, over all of that peer's connections.
    pub(crate) serving: Counts<std::sync::Arc<str>>,
    /// Request streams open on each connection (by `stable_id`), in either role; a
    /// duplicate connection is not closed while it carries any.
    pub(crate) request_streams: Counts<usize>,
}

impl State {
    /// The open connection for `to`: by name when given, else by address.
    pub(crate) fn lookup(&self, to: &PeerRef) -> Option<&Peer> {
        let name = match &to.name {
            Some(name) => name,
            None => self.by_addr.get(&to.addr)?,
        };
        self.peers.get(name).filter(|p| p.is_open())
    }

    /// The queue key for frames to `to`.
    pub(crate) fn target(&self, to: &PeerRef) -> Target {
        match (&to.name, self.by_addr.get(&to.addr)) {
            (Some(name), _) | (None, Some(name)) => Target::Name(name.clone()),
            (None, None) => Target::Addr(to.addr),
        }
    }

    /// Removes `name`'s connection entry and address index; returns the entry.
    pub(crate) fn remove_peer(&mut self, name: &str) -> Option<Peer> {
        let peer = self.peers.remove(name)?;
        self.by_addr.retain(|_, n| n != name);
        Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(dialer: &str, since: Instant) -> ConnMeta<'_> {
        ConnMeta {
            dialer,
            since,
            closed: false,
            remote: "10.0.0.2:7946".parse().expect("addr"),
        }
    }

    #[test]
    fn a_live_connection_keeps_its_name_against_one_from_another_address() {
        let t = Instant::now();
        let real = meta("n2", t);
        let impostor = ConnMeta {
            remote: "10.0.0.9:7946".parse().expect("addr"),
            ..meta("n2", t + Duration::from_secs(30))
        };
        // Whoever dialed, however old the live one is: the newcomer is refused.
        assert!(is_name_conflict(real, impostor));
        assert!(is_name_conflict(
            ConnMeta {
                dialer: "n1",
                ..real
            },
            impostor
        ));
        // Once the old connection is closed, the name is free again.
        assert!(!is_name_conflict(
            ConnMeta {
                closed: true,
                ..real
            },
            impostor
        ));
        // An IPv4-mapped address is the IPv4 address.
        let mapped: SocketAddr = "[::ffff:10.0.0.2]:7946".parse().expect("addr");
        assert_eq!(canonical(mapped), real.remote);
        // The same address (a crossing dial, a reconnect, a restart in place) is never
        // a conflict, and the old rules choose.
        let again = meta("n1", t + Duration::from_secs(30));
        assert!(!is_name_conflict(real, again));
        assert!(new_replaces_old(real, again, t + Duration::from_secs(30)));
    }

    #[test]
    fn both_sides_keep_the_connection_dialed_by_the_smaller_name_in_either_order() {
        let t = Instant::now();
        let by_a = meta("a", t);
        let by_b = meta("b", t + Duration::from_millis(3));
        let now = t + Duration::from_millis(5);
        // Side that registered a's connection first: b's does not replace it.
        assert!(!new_replaces_old(by_a, by_b, now));
        // Side that registered b's connection first: a's replaces it.
        assert!(new_replaces_old(by_b, by_a, now));
    }

    #[test]
    fn the_same_dialer_replaces_its_own_connection() {
        let t = Instant::now();
        assert!(new_replaces_old(meta("b", t), meta("b", t), t));
    }

    #[test]
    fn a_closed_or_old_connection_is_replaced_whoever_dialed() {
        let t = Instant::now();
        let closed = ConnMeta {
            closed: true,
            ..meta("a", t)
        };
        assert!(new_replaces_old(closed, meta("b", t), t));
        assert!(new_replaces_old(
            meta("a", t),
            meta("b", t),
            t + REPLACE_AFTER
        ));
        assert!(!new_replaces_old(
            meta("a", t),
            meta("b", t),
            t + REPLACE_AFTER - Duration::from_millis(1)
        ));
    }

    #[test]
    fn transient_failures_back_off_exponentially_up_to_a_cap_and_reset_on_success() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let t = Instant::now();
        let mut b = Backoffs::default();
        let delays: Vec<_> = (0..10)
            .map(|_| b.failed(addr, DialFailure::Handshake(HandshakeFailure::Timeout), t))
            .collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[2], Duration::from_millis(400));
        assert_eq!(delays[9], BACKOFF_MAX);
        assert_eq!(
            b.remaining(addr, t),
            Some((
                BACKOFF_MAX,
                DialFailure::Handshake(HandshakeFailure::Timeout)
            ))
        );
        assert_eq!(b.remaining(addr, t + BACKOFF_MAX), None);
        b.succeeded(addr);
        let reset = DialFailure::Handshake(HandshakeFailure::Reset);
        assert_eq!(b.failed(addr, reset, t), BACKOFF_INITIAL);
        assert_eq!(b.remaining(addr, t).map(|(_, why)| why), Some(reset));
    }

    #[test]
    fn auth_failures_and_our_own_address_back_off_hard() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let t = Instant::now();
        let mut b = Backoffs::default();
        let auth = DialFailure::Handshake(HandshakeFailure::Auth);
        assert_eq!(b.failed(addr, auth, t), BACKOFF_AUTH);
        assert!(b.remaining(addr, t + Duration::from_secs(59)).is_some());
        let other: SocketAddr = "127.0.0.1:2".parse().expect("addr");
        assert_eq!(b.failed(other, DialFailure::Myself, t), BACKOFF_AUTH);
        assert_eq!(
            b.remaining(other, t).map(|(_, why)| why),
            Some(DialFailure::Myself)
        );
    }

    #[test]
    fn a_limit_of_zero_admits_nothing_and_leaves_no_entry() {
        let mut c = Counts::default();
        assert!(!c.try_add("p", 0));
        assert_eq!((c.get("p"), c.len()), (0, 0));
        assert_eq!(c.remove("p"), 0, "taking from an empty key changes nothing");
        assert_eq!(c.len(), 0);
    }

    proptest::proptest! {
        /// Against a plain model: a key never holds more than the limit, an add is
        /// refused exactly when the key is full, and once everything is given back no
        /// entry is left (nothing leaks, whatever the order).
        #[test]
        fn counts_never_exceed_the_limit_and_give_everything_back(
            ops in proptest::collection::vec((0u8..4, proptest::bool::ANY), 0..200),
            limit in 1usize..5,
        ) {
            let mut c: Counts<u8> = Counts::default();
            let mut model: HashMap<u8, usize> = HashMap::new();
            for (key, add) in ops {
                let held = model.get(&key).copied().unwrap_or(0);
                if add {
                    let added = c.try_add(key, limit);
                    proptest::prop_assert_eq!(added, held < limit);
                    if added {
                        *model.entry(key).or_default() += 1;
                    }
                } else if held > 0 {
                    proptest::prop_assert_eq!(c.remove(&key), held - 1);
                    *model.entry(key).or_default() -= 1;
                }
                let now = model.get(&key).copied().unwrap_or(0);
                proptest::prop_assert!(c.get(&key) <= limit);
                proptest::prop_assert_eq!(c.get(&key), now);
            }
            for (key, held) in model {
                for _ in 0..held {
                    c.remove(&key);
                }
            }
            proptest::prop_assert_eq!(c.len(), 0);
        }
    }
}

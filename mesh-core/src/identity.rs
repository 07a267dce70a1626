//! Node identity: `{name, addr, incarnation}`.
//!
//! A node is known to the cluster by its *name* (which is also the name in its TLS
//! certificate). Every boot of a node gets a fresh, strictly larger *incarnation*, so
//! a restarted node is a new incarnation of the same name and never resurrects the
//! old one. foca uses [`NodeId::addr`] (the name) to tell that two identities belong
//! to the same node, and keeps the one with the larger incarnation.
//!
//! The wire encoding is a MessagePack *map* with short keys, so fields can be added
//! later (`#[serde(default)]`) without breaking older peers, which ignore unknown keys.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The longest node name we accept (a DNS label fits in 63 bytes).
pub const MAX_NAME_LEN: usize = mesh_types::node_name::MAX_NODE_NAME_LEN;

/// A cluster member's identity.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// The node's name; unique in the cluster and equal to its certificate name.
    /// Empty only for a seed whose name is not known yet.
    #[serde(rename = "n")]
    pub name: String,
    /// The address peers dial to reach this node.
    #[serde(rename = "a")]
    pub addr: SocketAddr,
    /// Which boot of the node this is: larger means newer.
    #[serde(rename = "i")]
    pub incarnation: u64,
}

impl NodeId {
    /// Makes an identity.
    pub fn new(name: impl Into<String>, addr: SocketAddr, incarnation: u64) -> Self {
        Self {
            name: name.into(),
            addr,
            incarnation,
        }
    }

    /// The placeholder identity used to announce to a seed whose name we do not know.
    /// The transport dials it by address; foca never adds it as a member.
    pub fn seed(addr: SocketAddr) -> Self {
        Self {
            name: String::new(),
            addr,
            incarnation: 0,
        }
    }

    /// True for a [`NodeId::seed`] placeholder.
    pub fn is_seed_placeholder(&self) -> bool {
        self.name.is_empty()
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.incarnation)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl foca::Identity for NodeId {
    type Addr = String;

    /// A node declared down rejoins at once as the next incarnation of itself.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            name: self.name.clone(),
            addr: self.addr,
            incarnation: self.incarnation.saturating_add(1),
        })
    }

    fn addr(&self) -> String {
        self.name.clone()
    }

    /// The newer incarnation wins; on a tie (the same boot seen at two addresses,
    /// which only a misconfiguration produces) the larger address wins so that every
    /// node picks the same one.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, self.addr) > (adversary.incarnation, adversary.addr)
    }
}

/// Why a node name was refused: it must be 1 to 63 bytes of `[A-Za-z0-9.-]`,
/// starting and ending with a letter or digit, so it is also a valid DNS name in a
/// certificate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("node name {0:?} is not valid: use 1 to {MAX_NAME_LEN} letters, digits, '-' or '.', starting and ending with a letter or digit")]
pub struct NameError(pub String);

/// Checks that `name` can be a node name. The rule is the certificate's
/// ([`mesh_types::node_name::is_valid_node_name`], which `mesh-transport` checks before
/// issuing one), so a name that passes here can always be issued a certificate.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if mesh_types::node_name::is_valid_node_name(name) {
        Ok(())
    } else {
        Err(NameError(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7946))
    }

    #[test]
    fn renew_makes_a_newer_incarnation_that_wins() {
        let a = NodeId::new("n1", addr(), 5);
        let b = a.renew().expect("renew always yields");
        assert_eq!(b.incarnation, 6);
        assert_eq!(a.addr(), b.addr());
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
    }

    #[test]
    fn encoding_tolerates_added_fields() {
        #[derive(Serialize)]
        struct Future<'a> {
            n: &'a str,
            a: SocketAddr,
            i: u64,
            zone: &'a str,
        }
        let bytes = rmp_serde::to_vec_named(&Future {
            n: "n1",
            a: addr(),
            i: 9,
            zone: "eu",
        })
        .expect("encode");
        let id: NodeId = rmp_serde::from_slice(&bytes).expect("older decoder ignores new keys");
        assert_eq!(id, NodeId::new("n1", addr(), 9));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("n1").is_ok());
        assert!(validate_name("db-1.eu").is_ok());
        assert!(validate_name(&"a".repeat(63)).is_ok());
        for bad in ["", "-x", "x-", "a b", "a_b", &"a".repeat(64)] {
            assert_eq!(
                validate_name(bad),
                Err(NameError(bad.to_owned())),
                "{bad:?}"
            );
        }
    }
}

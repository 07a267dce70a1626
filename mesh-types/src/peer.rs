//! How to reach a peer.

use std::net::SocketAddr;

/// How to reach a peer: by name when known, always by address.
///
/// With a name, an existing connection to that name is used wherever it is, and a dial
/// to `addr` fails (as `auth`) unless the certificate there carries that name. Without
/// a name (a seed known only by address), a connection to `addr` is used or made and
/// whoever answers with a valid certificate is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerRef {
    /// The peer's certificate name, if known.
    pub name: Option<String>,
    /// The peer's address.
    pub addr: SocketAddr,
}

//! Helpers shared by the loopback test files: identities, binding, and waiting on
//! conditions with a deadline (never a bare sleep).

#![allow(dead_code)] // each test file uses its own subset

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_transport::certs::{issue_node_cert, CertPair};
use mesh_transport::tls::TlsIdentity;
use mesh_transport::{Inbound, PeerRef, Transport, TransportConfig};
use tokio::sync::mpsc::Receiver;

pub(crate) const DEADLINE: Duration = Duration::from_secs(15);

pub(crate) fn identity(ca: &CertPair, name: &str) -> TlsIdentity {
    let node = issue_node_cert(ca, name).expect("issue");
    TlsIdentity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).expect("identity")
}

/// A config on a free loopback port.
pub(crate) fn config(ca: &CertPair, name: &str) -> TransportConfig {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    TransportConfig::new(addr, identity(ca, name))
}

pub(crate) async fn bind(ca: &CertPair, name: &str) -> (Transport, Receiver<Inbound>) {
    Transport::bind(config(ca, name)).await.expect("bind")
}

pub(crate) fn peer(t: &Transport) -> PeerRef {
    PeerRef {
        name: Some(t.local_name().to_owned()),
        addr: t.local_addr(),
    }
}

pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `cond` every 10 ms until it holds, failing after the deadline.
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Receives until an item matches `pred`; returns it and everything received before.
pub(crate) async fn recv_until(
    rx: &mut Receiver<Inbound>,
    what: &str,
    mut pred: impl FnMut(&Inbound) -> bool,
) -> (Inbound, Vec<Inbound>) {
    within(what, async {
        let mut before = Vec::new();
        loop {
            let item = rx.recv().await.expect("inbound channel open");
            if pred(&item) {
                return (item, before);
            }
            before.push(item);
        }
    })
    .await
}

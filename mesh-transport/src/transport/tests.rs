//! Loopback tests that need more than the public API: a peer whose identity skipped
//! the CA check, and raw bytes written on a stream of an authenticated connection.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::Receiver;

use super::{Inbound, PeerRef, Transport, TransportConfig};
use crate::certs::{generate_ca, issue_node_cert, CertPair};
use crate::frame::{encode_frame, Class, FRAME_VERSION};
use crate::stats::{FrameDrop, HandshakeFailure};
use crate::tls::TlsIdentity;

const DEADLINE: Duration = Duration::from_secs(15);

async fn bind_with(tls: TlsIdentity) -> (Transport, Receiver<Inbound>) {
    let addr = "127.0.0.1:0".parse().expect("addr");
    Transport::bind(TransportConfig::new(addr, tls))
        .await
        .expect("bind")
}

async fn bind(ca: &CertPair, name: &str) -> (Transport, Receiver<Inbound>) {
    let node = issue_node_cert(ca, name).expect("issue");
    bind_with(TlsIdentity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).expect("identity"))
        .await
}

fn peer(t: &Transport) -> PeerRef {
    PeerRef {
        name: Some(t.local_name().to_owned()),
        addr: t.local_addr(),
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(DEADLINE, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Connects `a` to `b` and returns the QUIC connection `a` uses.
async fn connected(
    a: &Transport,
    b: &Transport,
    b_rx: &mut Receiver<Inbound>,
) -> quinn::Connection {
    a.send_datagram(&peer(b), Bytes::from_static(b"hi"));
    tokio::time::timeout(DEADLINE, async {
        while !matches!(b_rx.recv().await, Some(Inbound::Datagram { .. })) {}
    })
    .await
    .expect("connected");
    let st = a.inner.lock();
    st.peers.get(b.local_name()).expect("peer").conn.clone()
}

#[tokio::test]
async fn a_foreign_certificate_from_a_peer_that_trusts_our_ca_is_refused_when_accepting() {
    let ca = generate_ca("cluster").expect("ca");
    let other = generate_ca("other").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    // Trusts our CA, so it accepts a's certificate, but presents one from another CA.
    let forged = issue_node_cert(&other, "b").expect("issue");
    let rogue_tls =
        TlsIdentity::from_pem_unchecked(&ca.cert_pem, &forged.cert_pem, &forged.key_pem)
            .expect("identity");
    let (rogue, _rogue_rx) = bind_with(rogue_tls).await;

    rogue.send_datagram(&peer(&a), Bytes::from_static(b"let me in"));
    eventually("a counts an auth failure on accept", || {
        a.stats().handshake_failures(HandshakeFailure::Auth) >= 1
    })
    .await;
    // The rogue learns of the refusal through a TLS alert, counted as auth too.
    eventually("the rogue sees the refusal", || {
        rogue.stats().handshake_failures(HandshakeFailure::Auth) >= 1
    })
    .await;
    assert!(a.connected_peers().is_empty());
    assert!(a_rx.try_recv().is_err(), "nothing may reach a");
    assert_eq!(a.stats().datagrams_in, 0);
}

#[tokio::test]
async fn bad_frames_are_dropped_and_counted_and_repeated_abuse_closes_the_connection() {
    let ca = generate_ca("cluster").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;
    let conn = connected(&a, &b, &mut b_rx).await;

    // A few bad frames between good ones: the good ones still arrive, in order.
    let mut send = conn.open_uni().await.expect("stream");
    let mut raw = Vec::new();
    raw.extend_from_slice(&encode_frame(Class::User, b"one", 1024).expect("fits"));
    raw.extend_from_slice(&[0, 0, 0, 3, 9, 2, b'x']); // unknown version 9
    raw.extend_from_slice(&[0, 0, 0, 3, FRAME_VERSION, 7, b'x']); // unknown class 7
    raw.extend_from_slice(&[0, 0, 0, 1, FRAME_VERSION]); // too short
    raw.extend_from_slice(&encode_frame(Class::User, b"two", 1024).expect("fits"));
    send.write_all(&raw).await.expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while got.len() < 2 {
            if let Some(Inbound::Frame { payload, .. }) = b_rx.recv().await {
                got.push(payload);
            }
        }
    })
    .await
    .expect("good frames");
    assert_eq!(
        got,
        [Bytes::from_static(b"one"), Bytes::from_static(b"two")]
    );
    let stats = b.stats();
    assert_eq!(stats.frames_dropped(FrameDrop::UnknownVersion), 1);
    assert_eq!(stats.frames_dropped(FrameDrop::UnknownClass), 1);
    assert_eq!(stats.frames_dropped(FrameDrop::Malformed), 1);

    // An oversized length prefix: refused, and the stream is stopped.
    let mut big = conn.open_uni().await.expect("stream");
    big.write_all(&[0xff, 0xff, 0xff, 0xff, FRAME_VERSION, 0])
        .await
        .expect("write");
    let stopped = tokio::time::timeout(DEADLINE, big.stopped())
        .await
        .expect("stopped in time")
        .expect("stopped, not lost");
    assert!(stopped.is_some(), "b stopped the stream with a code");
    assert_eq!(b.stats().frames_dropped(FrameDrop::Oversized), 1);
    assert_eq!(
        b.connected_peers(),
        ["a"],
        "four bad frames are not yet abuse"
    );

    // Enough garbage closes the connection.
    let mut junk = conn.open_uni().await.expect("stream");
    let bad: Vec<u8> = (0..120).flat_map(|_| [0, 0, 0, 2, 9, 0]).collect();
    // The write may fail once b closes the connection mid-way.
    let _ = junk.write_all(&bad).await;
    tokio::time::timeout(DEADLINE, conn.closed())
        .await
        .expect("a's connection closed by b");
    eventually("b forgets a", || b.connected_peers().is_empty()).await;
}

#[tokio::test]
async fn shutdown_stops_every_task_and_counts_what_was_queued() {
    let ca = generate_ca("cluster").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;
    connected(&a, &b, &mut b_rx).await;
    // One idle writer (its frame went out) and one stuck dialing nobody.
    a.send_frame(&peer(&b), Class::State, Bytes::from_static(b"s"))
        .expect("queued");
    eventually("the state frame is written", || a.stats().frames_out == 1).await;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let ghost = PeerRef {
        name: Some("ghost".to_owned()),
        addr: silent.local_addr().expect("addr"),
    };
    for _ in 0..3 {
        a.send_frame(&ghost, Class::User, Bytes::from_static(b"u"))
            .expect("queued");
    }

    a.shutdown().await;
    // Only the handle and its drop guard still hold the shared state: no task is left
    // waiting on it.
    eventually("background tasks end", || {
        std::sync::Arc::strong_count(&a.inner) == 2
    })
    .await;
    assert_eq!(a.stats().frames_dropped(FrameDrop::Shutdown), 3);
    assert_eq!(
        a.send_frame(&ghost, Class::User, Bytes::new()),
        Err(super::SendError::Shutdown)
    );
}

#[test]
fn handles_and_items_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Transport>();
    send_sync::<Inbound>();
    send_sync::<TlsIdentity>();
}

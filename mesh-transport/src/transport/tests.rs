//! Loopback tests that need more than the public API: a peer whose identity skipped
//! the CA check, raw bytes written on a stream of an authenticated connection, a raw
//! QUIC server answering requests, and a forced connection replacement.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::Receiver;

use super::request::code;
use super::{
    Inbound, Part, PeerRef, Refusal, RequestError, Responder, Transport, TransportConfig,
    DEFAULT_MAX_RESPONSE,
};
use crate::certs::{generate_ca, issue_node_cert, CertPair};
use crate::frame::{encode_frame, Class, FrameError, FRAME_VERSION};
use crate::stats::{FrameDrop, HandshakeFailure, RequestResult, ServedResult};
use crate::tls::TlsIdentity;

const DEADLINE: Duration = Duration::from_secs(15);

async fn bind_with(tls: TlsIdentity) -> (Transport, Receiver<Inbound>) {
    let addr = "127.0.0.1:0".parse().expect("addr");
    Transport::bind(TransportConfig::new(addr, tls))
        .await
        .expect("bind")
}

async fn bind(ca: &CertPair, name: &str) -> (Transport, Receiver<Inbound>) {
    bind_with(identity(ca, name)).await
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
    eventually("background tasks end", || Arc::strong_count(&a.inner) == 2).await;
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
    send_sync::<Responder>();
    send_sync::<TlsIdentity>();
}

// ---- requests ----------------------------------------------------------------------

const LONG: Duration = Duration::from_secs(30);

fn identity(ca: &CertPair, name: &str) -> TlsIdentity {
    let node = issue_node_cert(ca, name).expect("issue");
    TlsIdentity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).expect("identity")
}

/// Items received so far that are requests.
fn requests_received(rx: &mut Receiver<Inbound>) -> usize {
    std::iter::from_fn(|| rx.try_recv().ok())
        .filter(|i| matches!(i, Inbound::Request { .. }))
        .count()
}

async fn next_request(rx: &mut Receiver<Inbound>) -> (Bytes, Responder) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(Inbound::Request {
                payload, responder, ..
            }) = rx.recv().await
            {
                return (payload, responder);
            }
        }
    })
    .await
    .expect("a request")
}

#[tokio::test]
async fn a_request_announcing_4_gib_is_refused_from_its_prefix_alone() {
    let ca = generate_ca("cluster").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;
    let conn = connected(&a, &b, &mut b_rx).await;

    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    // The prefix and header only: no body follows and the stream is not finished, so
    // b can only have decided from the four length bytes, with nothing buffered.
    send.write_all(&[0xff, 0xff, 0xff, 0xff, FRAME_VERSION, 0])
        .await
        .expect("write");
    let stopped = tokio::time::timeout(DEADLINE, send.stopped())
        .await
        .expect("stopped in time")
        .expect("stopped, not lost");
    assert_eq!(stopped, Some(code::REQUEST_TOO_LARGE));
    let read = tokio::time::timeout(DEADLINE, recv.read_chunk(1024, true))
        .await
        .expect("reset in time");
    assert!(
        matches!(read, Err(quinn::ReadError::Reset(c)) if c == code::REQUEST_TOO_LARGE),
        "{read:?}"
    );
    eventually("b counts the refusal", || {
        b.stats().requests_served(ServedResult::TooLarge) == 1
    })
    .await;
    assert_eq!(requests_received(&mut b_rx), 0);
}

#[tokio::test]
async fn malformed_requests_are_refused_and_counted_and_never_delivered() {
    let ca = generate_ca("cluster").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;
    let conn = connected(&a, &b, &mut b_rx).await;

    let mut trailing = encode_frame(Class::User, b"ok", 1024)
        .expect("fits")
        .to_vec();
    trailing.push(0);
    let bodies: [&[u8]; 3] = [
        &[0, 0, 0, 3, FRAME_VERSION, 7, b'x'], // unknown class 7
        &trailing,                             // data after the frame
        &[],                                   // no frame at all
    ];
    for body in bodies {
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        send.write_all(body).await.expect("write");
        send.finish().expect("finish");
        let read = tokio::time::timeout(DEADLINE, recv.read_chunk(1024, true))
            .await
            .expect("reset in time");
        assert!(
            matches!(read, Err(quinn::ReadError::Reset(c)) if c == code::MALFORMED),
            "{body:?}: {read:?}"
        );
    }
    eventually("b counts three malformed requests", || {
        b.stats().requests_served(ServedResult::Malformed) == 3
    })
    .await;
    assert_eq!(requests_received(&mut b_rx), 0);
    assert_eq!(
        b.connected_peers(),
        ["a"],
        "three bad requests are not yet abuse"
    );
}

/// What the raw server answers to each request, in turn.
#[derive(Debug, Clone, Copy)]
enum RawAnswer {
    /// A frame of another class than asked.
    WrongClass,
    /// A valid frame followed by a stray byte.
    Trailing,
    /// A prefix announcing 4 GiB, no body, not finished.
    Huge,
}

/// A QUIC server with a cluster certificate that answers requests with raw bytes;
/// reports the stop code a requester sent on each stream.
async fn raw_server(
    ca: &CertPair,
    name: &str,
    answers: Vec<RawAnswer>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Option<quinn::VarInt>>,
) {
    let tls = identity(ca, name);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(
        tls.server_config().expect("server config"),
    )
    .expect("quic config");
    let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint =
        quinn::Endpoint::server(server, "127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = endpoint.local_addr().expect("addr");
    let (stops, stops_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let incoming = endpoint.accept().await.expect("incoming");
        let conn = incoming.await.expect("handshake");
        for answer in answers {
            let (mut send, mut recv) = conn.accept_bi().await.expect("request stream");
            let request = recv.read_to_end(1 << 20).await.expect("request");
            let class = Class::try_from(request[5]).expect("class");
            let other = if class == Class::User {
                Class::State
            } else {
                Class::User
            };
            match answer {
                RawAnswer::WrongClass => {
                    let frame = encode_frame(other, b"x", 1024).expect("fits");
                    send.write_all(&frame).await.expect("write");
                    let _ = send.finish();
                }
                RawAnswer::Trailing => {
                    let mut frame = encode_frame(class, b"x", 1024).expect("fits").to_vec();
                    frame.push(0);
                    send.write_all(&frame).await.expect("write");
                    let _ = send.finish();
                }
                RawAnswer::Huge => {
                    send.write_all(&[0xff, 0xff, 0xff, 0xff, FRAME_VERSION, class as u8])
                        .await
                        .expect("write");
                }
            }
            let _ = stops.send(send.stopped().await.ok().flatten());
        }
        // Keep the connection (and endpoint) until the requester goes.
        conn.closed().await;
    });
    (addr, stops_rx)
}

#[tokio::test]
async fn malformed_and_oversized_responses_are_refused_and_the_stream_stopped() {
    let ca = generate_ca("cluster").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (addr, mut stops) = raw_server(
        &ca,
        "b",
        vec![RawAnswer::WrongClass, RawAnswer::Trailing, RawAnswer::Huge],
    )
    .await;
    let b = PeerRef {
        name: Some("b".to_owned()),
        addr,
    };
    let ask = || a.request(&b, Class::User, Bytes::from_static(b"?"), LONG);

    assert_eq!(
        ask().await,
        Err(RequestError::Malformed(FrameError::Malformed(
            "the response's class differs from the request's"
        )))
    );
    assert_eq!(
        ask().await,
        Err(RequestError::Malformed(FrameError::Malformed(
            "data after the frame"
        )))
    );
    // Only the prefix was sent, so a refused it without waiting for (or buffering) any
    // of the 4 GiB.
    assert_eq!(
        ask().await,
        Err(RequestError::TooLarge {
            part: Part::Response,
            len: u32::MAX as usize,
            max: DEFAULT_MAX_RESPONSE
        })
    );
    let stop = tokio::time::timeout(DEADLINE, async {
        let mut last = None;
        for _ in 0..3 {
            last = stops.recv().await.expect("stop report");
        }
        last
    })
    .await
    .expect("stops");
    assert_eq!(
        stop,
        Some(code::RESPONSE_TOO_LARGE),
        "a told why it stopped"
    );
    let stats = a.stats();
    assert_eq!(stats.requests(RequestResult::Malformed), 2);
    assert_eq!(stats.requests(RequestResult::TooLarge), 1);
}

#[tokio::test]
async fn a_peer_presenting_a_foreign_certificate_never_gets_a_request_through() {
    let ca = generate_ca("cluster").expect("ca");
    let other = generate_ca("other").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    // Trusts our CA, so it accepts a's certificate and opens streams on what it takes
    // for an established connection, but presents a certificate from another CA.
    let forged = issue_node_cert(&other, "b").expect("issue");
    let rogue_tls =
        TlsIdentity::from_pem_unchecked(&ca.cert_pem, &forged.cert_pem, &forged.key_pem)
            .expect("identity");
    let (rogue, _rogue_rx) = bind_with(rogue_tls).await;

    let result = rogue
        .request(
            &peer(&a),
            Class::User,
            Bytes::from_static(b"let me in"),
            LONG,
        )
        .await;
    assert_eq!(
        result,
        Err(RequestError::Unreachable {
            addr: a.local_addr(),
            kind: HandshakeFailure::Auth
        })
    );
    assert_eq!(requests_received(&mut a_rx), 0);
    let served: u64 = ServedResult::ALL
        .iter()
        .map(|r| a.stats().requests_served(*r))
        .sum();
    assert_eq!(served, 0);
    assert!(a.connected_peers().is_empty());
}

#[tokio::test]
async fn requests_in_flight_survive_a_connection_replacement() {
    let ca = generate_ca("cluster").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;
    let to_b = peer(&b);

    let asking = tokio::spawn(a.request(&to_b, Class::State, Bytes::from_static(b"1"), LONG));
    let (_, responder) = next_request(&mut b_rx).await;

    // a dials b again: by the one-connection rule (same dialer) the new connection
    // replaces the one carrying the request, on both sides.
    {
        let mut st = a.inner.lock();
        a.inner.start_dial(&mut st, &to_b);
    }
    eventually("both sides see the duplicate", || {
        a.stats().duplicate_connections == 1 && b.stats().duplicate_connections == 1
    })
    .await;
    // Past the grace, both would close the old connection, but a request is open on
    // it.
    eventually("both sides hold the old connection for the request", || {
        a.stats().duplicate_closes_delayed == 1 && b.stats().duplicate_closes_delayed == 1
    })
    .await;
    assert_eq!((a.open_connections(), b.open_connections()), (2, 2));

    responder
        .respond(Bytes::from_static(b"answer 1"))
        .expect("respond");
    let response = tokio::time::timeout(DEADLINE, asking)
        .await
        .expect("in time")
        .expect("task");
    assert_eq!(response, Ok(Bytes::from_static(b"answer 1")));

    // With the request done, the old connection goes; the new one carries on.
    eventually("one connection left on each side", || {
        a.open_connections() == 1 && b.open_connections() == 1
    })
    .await;
    let asking = tokio::spawn(a.request(&to_b, Class::State, Bytes::from_static(b"2"), LONG));
    let (payload, responder) = next_request(&mut b_rx).await;
    assert_eq!(payload, Bytes::from_static(b"2"));
    responder
        .respond(Bytes::from_static(b"answer 2"))
        .expect("respond");
    let response = tokio::time::timeout(DEADLINE, asking)
        .await
        .expect("in time")
        .expect("task");
    assert_eq!(response, Ok(Bytes::from_static(b"answer 2")));
    assert_eq!(a.stats().requests(RequestResult::ConnectionLost), 0);
    assert_eq!(a.connected_peers(), ["b"]);
}

#[test]
fn refusals_say_why_in_their_messages() {
    let e = RequestError::Refused {
        reason: Refusal::Busy,
    };
    assert_eq!(
        e.to_string(),
        "the peer refused the request: too many requests in flight"
    );
}

/// Issue 14: a second agent with a valid certificate for a live node's name pushed the
/// real one out (its connection replaced the real one's, so traffic for the name went
/// to it). Now the name stays bound to the first live connection: the newcomer is
/// refused and counted on both sides, traffic for the name still reaches the real
/// node, and once the real node is gone the newcomer gets in.
#[tokio::test]
async fn a_second_agent_with_a_live_nodes_name_is_refused_until_the_first_is_gone() {
    let ca = generate_ca("t").expect("ca");
    let (n1, mut n1_rx) = bind(&ca, "n1").await;
    let (real, mut real_rx) = bind(&ca, "n2").await;
    let (impostor, _impostor_rx) = bind(&ca, "n2").await;
    connected(&real, &n1, &mut n1_rx).await;

    // The impostor dials n1: refused, on both sides.
    impostor.send_datagram(&peer(&n1), Bytes::from_static(b"impostor"));
    eventually("n1 refuses the second n2", || {
        n1.stats()
            .handshake_failures(HandshakeFailure::NameConflict)
            >= 1
    })
    .await;
    eventually("the impostor learns it was refused", || {
        impostor
            .stats()
            .handshake_failures(HandshakeFailure::NameConflict)
            >= 1
    })
    .await;
    // n1 still talks to the real n2 on the real one's connection.
    n1.send_datagram(
        &PeerRef {
            name: Some("n2".into()),
            addr: real.local_addr(),
        },
        Bytes::from_static(b"to the real n2"),
    );
    let got = tokio::time::timeout(DEADLINE, async {
        loop {
            match real_rx.recv().await {
                Some(Inbound::Datagram { data, .. }) => break data,
                Some(_) => {}
                None => panic!("the real n2's transport closed"),
            }
        }
    })
    .await
    .expect("the real n2 still gets n1's traffic");
    assert_eq!(&got[..], b"to the real n2");
    {
        let st = n1.inner.lock();
        let in_use = &st.peers.get("n2").expect("n2 is connected").conn;
        assert_eq!(
            in_use.remote_address(),
            real.local_addr(),
            "bound to the real n2"
        );
    }
    // Nothing from the impostor was delivered.
    while let Ok(item) = n1_rx.try_recv() {
        if let Inbound::Datagram { data, .. } = item {
            assert_ne!(
                &data[..],
                b"impostor",
                "the impostor's datagram got through"
            );
        }
    }

    // The real n2 goes away: the name is free, and the impostor (after its backoff)
    // gets in.
    real.shutdown().await;
    eventually("n1 drops the real n2's connection", || {
        n1.inner.lock().peers.get("n2").is_none_or(|p| !p.is_open())
    })
    .await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        impostor.send_datagram(&peer(&n1), Bytes::from_static(b"second life"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut through = false;
        while let Ok(item) = n1_rx.try_recv() {
            if let Inbound::Datagram { data, .. } = item {
                through |= &data[..] == b"second life";
            }
        }
        if through {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second n2 never got in after the first left"
        );
    }
}

/// Issue 14: garbage at the QUIC port was counted nowhere. Every datagram the socket
/// receives is counted, and those that are not QUIC (no fixed bit) are counted as
/// dropped; a real peer's traffic is received and never counted as garbage.
#[tokio::test]
async fn garbage_at_the_quic_port_is_counted_and_quic_is_not_called_garbage() {
    let ca = generate_ca("t").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    let (b, _b_rx) = bind(&ca, "b").await;
    connected(&b, &a, &mut a_rx).await;
    let clean = a.stats();
    assert!(clean.udp_received > 0, "the handshake came in: {clean:?}");
    assert_eq!(clean.udp_not_quic, 0, "QUIC is not garbage: {clean:?}");

    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for i in 0..200u8 {
        // 100 without the fixed bit, 100 with it (quinn drops those itself).
        let first = if i % 2 == 0 { 0x00 } else { 0x40 };
        sender
            .send_to(&[first, i, 0xAB, 0xCD], a.local_addr())
            .expect("send");
    }
    eventually("the 200 garbage datagrams are counted", || {
        let s = a.stats();
        s.udp_received >= clean.udp_received + 200 && s.udp_not_quic >= 100
    })
    .await;
    let s = a.stats();
    assert_eq!(
        s.udp_not_quic, 100,
        "exactly the ones without the fixed bit: {s:?}"
    );
    assert_eq!(
        a.kernel_udp_drops(),
        Some(0),
        "loopback at this rate drops nothing"
    );
}

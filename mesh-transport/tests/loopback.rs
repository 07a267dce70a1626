//! Real QUIC on 127.0.0.1: two or three transports talking through the public API.
//! Every wait is on a condition with a deadline.

mod common;

use bytes::Bytes;
use common::{bind, eventually, identity, peer, recv_until, within};
use mesh_transport::certs::generate_ca;
use mesh_transport::frame::Class;
use mesh_transport::stats::{DatagramDrop, FrameDrop, HandshakeFailure};
use mesh_transport::{Inbound, PeerRef, Transport, TransportConfig, TransportError};

fn is_datagram(item: &Inbound, from_name: &str, payload: &[u8]) -> bool {
    matches!(item, Inbound::Datagram { from, data } if from == from_name && data[..] == *payload)
}

#[tokio::test]
async fn datagrams_flow_both_ways_and_carry_the_certificate_name() {
    let ca = generate_ca("test").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;

    // a knows b only by address, as a seed.
    let seed = PeerRef {
        name: None,
        addr: b.local_addr(),
    };
    a.send_datagram(&seed, Bytes::from_static(b"hello b"));
    let (_, before) = recv_until(&mut b_rx, "a's datagram at b", |i| {
        is_datagram(i, "a", b"hello b")
    })
    .await;
    assert!(
        before
            .iter()
            .any(|i| matches!(i, Inbound::Connected { name, .. } if name == "a")),
        "Connected precedes the first datagram: {before:?}"
    );

    b.send_datagram(&peer(&a), Bytes::from_static(b"hello a"));
    recv_until(&mut a_rx, "b's datagram at a", |i| {
        is_datagram(i, "b", b"hello a")
    })
    .await;

    assert_eq!(a.connected_peers(), ["b"]);
    assert_eq!(b.connected_peers(), ["a"]);
    let max = a.max_datagram_size("b").expect("datagrams enabled");
    assert!(max >= 1000, "max datagram {max}");
    assert_eq!(a.stats().datagrams_out, 1);
    assert_eq!(b.stats().datagrams_in, 1);

    // Larger than the path allows: dropped and counted, not sent.
    a.send_datagram(&peer(&b), Bytes::from(vec![0u8; max + 1]));
    assert_eq!(a.stats().datagrams_dropped(DatagramDrop::TooLarge), 1);
    assert_eq!(a.stats().datagrams_out, 1);
}

// Multi-threaded, so that frames spread over several streams would race each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_one_class_arrive_in_send_order() {
    let ca = generate_ca("test").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;
    let to_b = peer(&b);

    // Sent before any connection exists: the writers dial.
    for i in 0u32..1000 {
        a.send_frame(&to_b, Class::User, Bytes::copy_from_slice(&i.to_be_bytes()))
            .expect("queued");
        if i % 10 == 0 {
            a.send_frame(
                &to_b,
                Class::State,
                Bytes::copy_from_slice(&i.to_be_bytes()),
            )
            .expect("queued");
        }
    }

    let (mut user, mut state) = (Vec::new(), Vec::new());
    within("1000 user frames and 100 state frames", async {
        while user.len() < 1000 || state.len() < 100 {
            match b_rx.recv().await.expect("inbound open") {
                Inbound::Frame {
                    from,
                    class,
                    payload,
                } => {
                    assert_eq!(from, "a");
                    let n = u32::from_be_bytes(payload[..].try_into().expect("4 bytes"));
                    match class {
                        Class::User => user.push(n),
                        Class::State => state.push(n),
                        Class::Control => panic!("no control frames were sent"),
                    }
                }
                Inbound::Connected { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(user, (0..1000).collect::<Vec<_>>());
    assert_eq!(state, (0..1000).step_by(10).collect::<Vec<_>>());
    assert_eq!(a.stats().frames_out, 1100);
}

#[tokio::test]
async fn a_peer_with_a_certificate_from_another_ca_gets_nothing_through() {
    let ca = generate_ca("cluster").expect("ca");
    let other_ca = generate_ca("intruders").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    // The intruder even uses a name that exists in the cluster.
    let (rogue, mut rogue_rx) = bind(&other_ca, "b").await;

    rogue.send_datagram(&peer(&a), Bytes::from_static(b"let me in"));
    rogue
        .send_frame(&peer(&a), Class::User, Bytes::from_static(b"let me in"))
        .expect("queued");
    eventually("a counts an auth failure for the intruder's dial", || {
        a.stats().handshake_failures(HandshakeFailure::Auth) >= 1
    })
    .await;

    // The other direction: a dials the intruder and refuses its certificate.
    let rogue_ref = PeerRef {
        name: None,
        addr: rogue.local_addr(),
    };
    a.send_datagram(&rogue_ref, Bytes::from_static(b"hi?"));
    eventually("a counts an auth failure for its own dial", || {
        a.stats().handshake_failures(HandshakeFailure::Auth) >= 2
    })
    .await;
    eventually("the intruder counts a's refusal", || {
        rogue.stats().handshake_failures(HandshakeFailure::Auth) >= 1
    })
    .await;

    assert!(a.connected_peers().is_empty());
    assert!(rogue.connected_peers().is_empty());
    assert!(a_rx.try_recv().is_err(), "nothing may reach a");
    assert!(
        rogue_rx.try_recv().is_err(),
        "nothing may reach the intruder"
    );
    assert_eq!(a.stats().datagrams_in, 0);
    // a's datagram was held for the dial and dropped when it failed.
    assert_eq!(a.stats().datagrams_dropped(DatagramDrop::DialFailed), 1);
    // The address now backs off: another datagram is dropped without dialing.
    a.send_datagram(&rogue_ref, Bytes::from_static(b"again"));
    assert_eq!(a.stats().datagrams_dropped(DatagramDrop::Backoff), 1);
}

#[tokio::test]
async fn dialing_a_name_that_the_certificate_does_not_carry_is_an_auth_failure() {
    let ca = generate_ca("test").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    let (b, _b_rx) = bind(&ca, "b").await;

    let wrong = PeerRef {
        name: Some("c".to_owned()),
        addr: b.local_addr(),
    };
    a.send_datagram(&wrong, Bytes::from_static(b"for c"));
    eventually("a counts the name mismatch", || {
        a.stats().handshake_failures(HandshakeFailure::Auth) >= 1
    })
    .await;
    assert!(a.connected_peers().is_empty());
    assert!(
        a_rx.try_recv().is_err(),
        "no Connected for a mismatched name"
    );
}

// A current-thread runtime runs both dial tasks before either handshake can finish,
// so both connections really exist.
#[tokio::test(flavor = "current_thread")]
async fn simultaneous_dials_end_with_one_connection_both_sides_agree_on() {
    let ca = generate_ca("test").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;

    a.send_datagram(&peer(&b), Bytes::from_static(b"1 from a"));
    b.send_datagram(&peer(&a), Bytes::from_static(b"1 from b"));
    let (_, a_before) = recv_until(&mut a_rx, "b's first datagram", |i| {
        is_datagram(i, "b", b"1 from b")
    })
    .await;
    let (_, b_before) = recv_until(&mut b_rx, "a's first datagram", |i| {
        is_datagram(i, "a", b"1 from a")
    })
    .await;

    eventually("both sides see and close a duplicate", || {
        a.stats().duplicate_connections >= 1 && b.stats().duplicate_connections >= 1
    })
    .await;
    eventually("one QUIC connection left on each side", || {
        a.open_connections() == 1 && b.open_connections() == 1
    })
    .await;

    let a_view = a.connection_info("b").expect("a has a connection to b");
    let b_view = b.connection_info("a").expect("b has a connection to a");
    assert_eq!(a_view.dialer, "a", "the smaller name's dial is kept");
    assert_eq!(b_view.dialer, "a", "both sides keep the same connection");

    // The surviving connection carries traffic both ways.
    a.send_datagram(&peer(&b), Bytes::from_static(b"2 from a"));
    b.send_datagram(&peer(&a), Bytes::from_static(b"2 from b"));
    let (_, a_between) = recv_until(&mut a_rx, "b's second datagram", |i| {
        is_datagram(i, "b", b"2 from b")
    })
    .await;
    let (_, b_between) = recv_until(&mut b_rx, "a's second datagram", |i| {
        is_datagram(i, "a", b"2 from a")
    })
    .await;

    // Exactly one Connected per side and no Disconnected: the duplicate never showed.
    for (side, items) in [
        (
            "a",
            a_before.into_iter().chain(a_between).collect::<Vec<_>>(),
        ),
        (
            "b",
            b_before.into_iter().chain(b_between).collect::<Vec<_>>(),
        ),
    ] {
        let connected = items
            .iter()
            .filter(|i| matches!(i, Inbound::Connected { .. }))
            .count();
        let disconnected = items
            .iter()
            .filter(|i| matches!(i, Inbound::Disconnected { .. }))
            .count();
        assert_eq!((connected, disconnected), (1, 0), "{side}: {items:?}");
    }
    assert_eq!(a.connected_peers(), ["b"]);
    assert_eq!(b.connected_peers(), ["a"]);
}

#[tokio::test]
async fn disconnect_closes_both_ends_and_discards_queued_frames() {
    let ca = generate_ca("test").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;

    a.send_datagram(&peer(&b), Bytes::from_static(b"hi"));
    recv_until(&mut b_rx, "a's datagram", |i| is_datagram(i, "a", b"hi")).await;

    a.disconnect("b");
    recv_until(
        &mut a_rx,
        "Disconnected at a",
        |i| matches!(i, Inbound::Disconnected { name } if name == "b"),
    )
    .await;
    recv_until(
        &mut b_rx,
        "Disconnected at b",
        |i| matches!(i, Inbound::Disconnected { name } if name == "a"),
    )
    .await;
    assert!(a.connected_peers().is_empty());

    // A later send dials again.
    a.send_datagram(&peer(&b), Bytes::from_static(b"back"));
    recv_until(&mut b_rx, "a's datagram after redial", |i| {
        is_datagram(i, "a", b"back")
    })
    .await;
}

#[tokio::test]
async fn a_full_send_queue_refuses_frames_with_an_error() {
    let ca = generate_ca("test").expect("ca");
    // Nobody listens at this address; frames queue while the writer dials.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let nowhere = PeerRef {
        name: Some("ghost".to_owned()),
        addr: silent.local_addr().expect("addr"),
    };
    let mut cfg = common::config(&ca, "a");
    cfg.outbound_frames_per_class = 4;
    let (a, _rx) = Transport::bind(cfg).await.expect("bind");

    // The writer may already hold one frame while it waits for a connection.
    let results: Vec<_> = (0..10)
        .map(|_| a.send_frame(&nowhere, Class::User, Bytes::from_static(b"x")))
        .collect();
    let refused = results.iter().filter(|r| r.is_err()).count();
    assert!((5..=6).contains(&refused), "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| *e == mesh_transport::SendError::QueueFull { class: Class::User }));
    // Another class has its own queue.
    a.send_frame(&nowhere, Class::Control, Bytes::from_static(b"x"))
        .expect("control queue is separate");
    assert_eq!(
        a.stats().frames_dropped(FrameDrop::QueueFull),
        refused as u64
    );

    // Declaring the peer down discards what is queued for it, counted.
    let queued = (10 - refused + 1) as u64;
    a.disconnect("ghost");
    eventually("queued frames counted as disconnected", || {
        a.stats().frames_dropped(FrameDrop::Disconnected) == queued
    })
    .await;
}

#[tokio::test]
async fn binding_a_taken_address_says_so() {
    let ca = generate_ca("test").expect("ca");
    let (a, _rx) = bind(&ca, "a").await;
    let err = Transport::bind(TransportConfig::new(a.local_addr(), identity(&ca, "b")))
        .await
        .expect_err("address is taken");
    assert!(
        matches!(err, TransportError::AddrInUse { addr } if addr == a.local_addr()),
        "{err}"
    );
}

//! Requests over real QUIC on 127.0.0.1, through the public API: round trips, many at
//! once, large responses, size limits, timeouts, refusals, the in-flight limit,
//! authentication, and connections that close under a request.
//! Every wait is on a condition with a deadline.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{bind, config, eventually, peer, recv_until, within};
use mesh_transport::certs::generate_ca;
use mesh_transport::frame::Class;
use mesh_transport::stats::{HandshakeFailure, RequestResult, ServedResult};
use mesh_transport::{
    Inbound, Part, PeerRef, Refusal, RequestError, RespondError, Responder, Transport,
};
use tokio::sync::mpsc::Receiver;

/// A timeout long enough that reaching it means the test failed.
const LONG: Duration = Duration::from_secs(30);

/// One request as the server sees it.
struct Asked {
    from: String,
    class: Class,
    payload: Bytes,
    responder: Responder,
}

/// Receives the next request, skipping connection events.
async fn next_request(rx: &mut Receiver<Inbound>) -> Asked {
    let (item, _) = recv_until(rx, "a request", |i| matches!(i, Inbound::Request { .. })).await;
    match item {
        Inbound::Request {
            from,
            class,
            payload,
            responder,
        } => Asked {
            from,
            class,
            payload,
            responder,
        },
        other => panic!("not a request: {other:?}"),
    }
}

/// Answers every request with `answer(payload)` until the channel closes.
fn serve(mut rx: Receiver<Inbound>, answer: fn(&[u8]) -> Vec<u8>) {
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if let Inbound::Request {
                payload, responder, ..
            } = item
            {
                let _ = responder.respond(Bytes::from(answer(&payload)));
            }
        }
    });
}

fn served_total(t: &Transport) -> u64 {
    ServedResult::ALL
        .iter()
        .map(|r| t.stats().requests_served(*r))
        .sum()
}

#[tokio::test]
async fn requests_round_trip_in_both_directions() {
    let ca = generate_ca("test").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;

    // a knows b only by address, as a seed.
    let seed = PeerRef {
        name: None,
        addr: b.local_addr(),
    };
    let asking = tokio::spawn(a.request(&seed, Class::State, Bytes::from_static(b"ping"), LONG));
    let asked = next_request(&mut b_rx).await;
    assert_eq!(
        (asked.from.as_str(), asked.class, &asked.payload[..]),
        ("a", Class::State, &b"ping"[..])
    );
    assert_eq!(asked.responder.peer(), "a");
    asked
        .responder
        .respond(Bytes::from_static(b"pong"))
        .expect("respond");
    let response = within("a's response", asking).await.expect("task");
    assert_eq!(response, Ok(Bytes::from_static(b"pong")));

    // The other way, by name, over the same connection.
    let asking = tokio::spawn(b.request(
        &peer(&a),
        Class::Control,
        Bytes::from_static(b"hello a"),
        LONG,
    ));
    let asked = next_request(&mut a_rx).await;
    assert_eq!(
        (asked.from.as_str(), asked.class, &asked.payload[..]),
        ("b", Class::Control, &b"hello a"[..])
    );
    asked
        .responder
        .respond(Bytes::from_static(b"hello b"))
        .expect("respond");
    let response = within("b's response", asking).await.expect("task");
    assert_eq!(response, Ok(Bytes::from_static(b"hello b")));

    assert_eq!(a.stats().requests(RequestResult::Ok), 1);
    assert_eq!(b.stats().requests(RequestResult::Ok), 1);
    eventually("each side counts the request it answered", || {
        a.stats().requests_served(ServedResult::Answered) == 1
            && b.stats().requests_served(ServedResult::Answered) == 1
    })
    .await;
    assert_eq!(a.open_connections(), 1, "one connection carried both");
}

// Multi-threaded, so that the requests really run at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_are_each_answered_with_their_own_response() {
    const N: usize = 200;
    let ca = generate_ca("test").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let mut cfg = config(&ca, "b");
    cfg.max_inbound_requests_per_peer = 256;
    let (b, mut b_rx) = Transport::bind(cfg).await.expect("bind");

    let started = Instant::now();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let class = Class::ALL[i % 3];
            let payload = Bytes::from(format!("request {i}"));
            let asking = a.request(&peer(&b), class, payload, LONG);
            tokio::spawn(async move { (i, asking.await) })
        })
        .collect();

    // Hold every request, then answer in the reverse order of arrival: a response
    // that went to the wrong request would show.
    let mut held = Vec::new();
    while held.len() < N {
        held.push(next_request(&mut b_rx).await);
    }
    for asked in held.into_iter().rev() {
        let mut answer = b"answer to ".to_vec();
        answer.extend_from_slice(&asked.payload);
        asked
            .responder
            .respond(Bytes::from(answer))
            .expect("respond");
    }

    let mut answers = HashMap::new();
    for task in tasks {
        let (i, response) = within("a response", task).await.expect("task");
        answers.insert(i, response.expect("answered"));
    }
    println!(
        "{N} concurrent requests answered in {:?}",
        started.elapsed()
    );
    for (i, response) in &answers {
        assert_eq!(response, &Bytes::from(format!("answer to request {i}")));
    }
    assert_eq!(answers.len(), N);
    assert_eq!(a.stats().requests(RequestResult::Ok), N as u64);
    eventually("b counts every request answered", || {
        b.stats().requests_served(ServedResult::Answered) == N as u64
    })
    .await;
    assert_eq!(served_total(&b), N as u64, "nothing else was counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mib_response_arrives_intact() {
    let ca = generate_ca("test").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, b_rx) = bind(&ca, "b").await;
    serve(b_rx, |_| {
        (0..10usize << 20)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 11)) as u8)
            .collect()
    });

    let started = Instant::now();
    let response = a
        .request(
            &peer(&b),
            Class::State,
            Bytes::from_static(b"all of it"),
            LONG,
        )
        .await
        .expect("response");
    let elapsed = started.elapsed();
    let want: Vec<u8> = (0..10usize << 20)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 11)) as u8)
        .collect();
    assert_eq!(response.len(), want.len());
    assert!(response[..] == want[..], "the response differs");
    println!("10 MiB response in {elapsed:?}");
}

#[tokio::test]
async fn oversized_requests_and_responses_are_refused_with_too_large_and_counted() {
    let ca = generate_ca("test").expect("ca");
    let mut a_cfg = config(&ca, "a");
    a_cfg.max_request_bytes = 1024;
    a_cfg.max_response_bytes = 1024;
    let (a, _a_rx) = Transport::bind(a_cfg).await.expect("bind");
    let mut b_cfg = config(&ca, "b");
    b_cfg.max_request_bytes = 512;
    b_cfg.max_response_bytes = 2048;
    let (b, mut b_rx) = Transport::bind(b_cfg).await.expect("bind");
    let to_b = peer(&b);

    // Over our own limit: refused before anything is sent, not even a dial.
    let err = a
        .request(&to_b, Class::User, Bytes::from(vec![0; 2000]), LONG)
        .await;
    assert_eq!(
        err,
        Err(RequestError::TooLarge {
            part: Part::Request,
            len: 2002,
            max: 1024
        })
    );
    assert_eq!(a.open_connections(), 0, "no dial for a request never sent");

    // Within ours, over the peer's: the peer refuses it unread.
    let err = a
        .request(&to_b, Class::User, Bytes::from(vec![0; 800]), LONG)
        .await;
    assert_eq!(
        err,
        Err(RequestError::Refused {
            reason: Refusal::RequestTooLarge
        })
    );
    assert_eq!(b.stats().requests_served(ServedResult::TooLarge), 1);

    // A response over the responder's limit: refused where it is made.
    let asking = tokio::spawn(a.request(&to_b, Class::User, Bytes::from_static(b"big"), LONG));
    let asked = next_request(&mut b_rx).await;
    assert_eq!(
        &asked.payload[..],
        b"big",
        "the oversized request never arrived"
    );
    assert_eq!(
        asked.responder.respond(Bytes::from(vec![0; 4000])),
        Err(RespondError::TooLarge {
            len: 4002,
            max: 2048
        })
    );
    assert_eq!(
        within("a's refusal", asking).await.expect("task"),
        Err(RequestError::Refused {
            reason: Refusal::ResponseTooLarge
        })
    );

    // A response within the responder's limit but over ours: we refuse it.
    let asking = tokio::spawn(a.request(&to_b, Class::User, Bytes::from_static(b"big"), LONG));
    let asked = next_request(&mut b_rx).await;
    asked
        .responder
        .respond(Bytes::from(vec![0; 1500]))
        .expect("within b's limit");
    assert_eq!(
        within("a's refusal", asking).await.expect("task"),
        Err(RequestError::TooLarge {
            part: Part::Response,
            len: 1502,
            max: 1024
        })
    );

    assert_eq!(a.stats().requests(RequestResult::TooLarge), 2);
    assert_eq!(a.stats().requests(RequestResult::Refused), 2);
    eventually("b counts all three requests", || served_total(&b) == 3).await;
    let stats = b.stats();
    println!(
        "b: response_too_large {}, answered {}",
        stats.requests_served(ServedResult::ResponseTooLarge),
        stats.requests_served(ServedResult::Answered)
    );
    // The one b refused itself is response_too_large. The one a refused is too, if a's
    // stop arrived before a acknowledged the whole response; else b saw it delivered.
    assert!(stats.requests_served(ServedResult::ResponseTooLarge) >= 1);
    assert_eq!(
        stats.requests_served(ServedResult::ResponseTooLarge)
            + stats.requests_served(ServedResult::Answered),
        2
    );
}

#[tokio::test]
async fn a_peer_that_never_responds_times_out_at_the_deadline_and_its_responder_learns_it() {
    let ca = generate_ca("test").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;
    let timeout = Duration::from_millis(500);

    let started = Instant::now();
    let asking =
        tokio::spawn(a.request(&peer(&b), Class::State, Bytes::from_static(b"?"), timeout));
    let asked = next_request(&mut b_rx).await;
    let result = within("the timeout", asking).await.expect("task");
    let elapsed = started.elapsed();
    assert_eq!(result, Err(RequestError::Timeout));
    assert!(elapsed >= timeout, "ended early, after {elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_secs(1),
        "ended late, after {elapsed:?}"
    );
    assert_eq!(a.stats().requests(RequestResult::Timeout), 1);

    // a reset the stream: b lets go of the request, and answering is pointless.
    eventually("b counts the request cancelled", || {
        b.stats().requests_served(ServedResult::Cancelled) == 1
    })
    .await;
    assert_eq!(
        asked.responder.respond(Bytes::from_static(b"too late")),
        Err(RespondError::Gone)
    );
}

#[tokio::test]
async fn a_dropped_responder_refuses_the_request_well_before_the_timeout() {
    let ca = generate_ca("test").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;

    let started = Instant::now();
    let asking = tokio::spawn(a.request(&peer(&b), Class::User, Bytes::from_static(b"?"), LONG));
    drop(next_request(&mut b_rx).await.responder);
    let result = within("the refusal", asking).await.expect("task");
    assert_eq!(
        result,
        Err(RequestError::Refused {
            reason: Refusal::NoResponse
        })
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    eventually("b counts the request unanswered", || {
        b.stats().requests_served(ServedResult::NoResponse) == 1
    })
    .await;
}

#[tokio::test]
async fn the_per_peer_in_flight_limit_refuses_the_excess_and_counts_it() {
    const LIMIT: usize = 4;
    let ca = generate_ca("test").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let mut cfg = config(&ca, "b");
    cfg.max_inbound_requests_per_peer = LIMIT;
    let (b, mut b_rx) = Transport::bind(cfg).await.expect("bind");
    let to_b = peer(&b);

    let held_tasks: Vec<_> = (0..LIMIT)
        .map(|i| tokio::spawn(a.request(&to_b, Class::User, Bytes::from(vec![i as u8]), LONG)))
        .collect();
    let mut held = Vec::new();
    while held.len() < LIMIT {
        held.push(next_request(&mut b_rx).await);
    }

    // Every further request is refused at once, unread.
    for _ in 0..3 {
        let result = a
            .request(&to_b, Class::User, Bytes::from_static(b"one more"), LONG)
            .await;
        assert_eq!(
            result,
            Err(RequestError::Refused {
                reason: Refusal::Busy
            })
        );
    }
    assert_eq!(b.stats().requests_served(ServedResult::Busy), 3);
    assert!(
        !matches!(b_rx.try_recv(), Ok(Inbound::Request { .. })),
        "a refused request reached the application"
    );

    // The held ones are still answered; then there is room again.
    for asked in held {
        let answer = asked.payload.clone();
        asked.responder.respond(answer).expect("respond");
    }
    for (i, task) in held_tasks.into_iter().enumerate() {
        let response = within("a held response", task).await.expect("task");
        assert_eq!(response, Ok(Bytes::from(vec![i as u8])));
    }
    eventually("the slots are free again", || {
        b.stats().requests_served(ServedResult::Answered) == LIMIT as u64
    })
    .await;
    let asking = tokio::spawn(a.request(&to_b, Class::User, Bytes::from_static(b"now"), LONG));
    let asked = next_request(&mut b_rx).await;
    asked.responder.respond(Bytes::new()).expect("respond");
    assert_eq!(
        within("the response", asking).await.expect("task"),
        Ok(Bytes::new())
    );
}

#[tokio::test]
async fn a_request_to_a_peer_from_another_ca_fails_the_handshake_and_reaches_nobody() {
    let ca = generate_ca("cluster").expect("ca");
    let other_ca = generate_ca("intruders").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    // The intruder even uses a name that exists in the cluster.
    let (rogue, mut rogue_rx) = bind(&other_ca, "b").await;

    let to_rogue = PeerRef {
        name: Some("b".to_owned()),
        addr: rogue.local_addr(),
    };
    let result = a
        .request(&to_rogue, Class::User, Bytes::from_static(b"hi?"), LONG)
        .await;
    assert_eq!(
        result,
        Err(RequestError::Unreachable {
            addr: rogue.local_addr(),
            kind: HandshakeFailure::Auth
        })
    );
    // The address now backs off: the next request fails at once, without a dial.
    let failures = a.stats().handshake_failures(HandshakeFailure::Auth);
    let again = a
        .request(&to_rogue, Class::User, Bytes::from_static(b"hi?"), LONG)
        .await;
    assert!(
        matches!(
            again,
            Err(RequestError::Unreachable {
                kind: HandshakeFailure::Auth,
                ..
            })
        ),
        "{again:?}"
    );
    assert_eq!(
        a.stats().handshake_failures(HandshakeFailure::Auth),
        failures
    );

    // The other way: the intruder refuses a's certificate, so nothing reaches a.
    let result = rogue
        .request(
            &peer(&a),
            Class::User,
            Bytes::from_static(b"let me in"),
            LONG,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(RequestError::Unreachable {
                kind: HandshakeFailure::Auth,
                ..
            })
        ),
        "{result:?}"
    );

    assert!(a_rx.try_recv().is_err(), "nothing may reach a");
    assert!(
        rogue_rx.try_recv().is_err(),
        "nothing may reach the intruder"
    );
    assert_eq!((served_total(&a), served_total(&rogue)), (0, 0));
    assert_eq!(a.stats().requests(RequestResult::Unreachable), 2);
}

#[tokio::test]
async fn a_request_in_flight_when_the_connection_closes_fails_with_connection_lost() {
    let ca = generate_ca("test").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;

    let asking = tokio::spawn(a.request(&peer(&b), Class::State, Bytes::from_static(b"?"), LONG));
    let asked = next_request(&mut b_rx).await;
    b.disconnect("a");
    assert_eq!(
        within("the failure", asking).await.expect("task"),
        Err(RequestError::ConnectionLost)
    );
    assert_eq!(a.stats().requests(RequestResult::ConnectionLost), 1);
    eventually("b counts the request lost", || {
        b.stats().requests_served(ServedResult::ConnectionLost) == 1
    })
    .await;
    assert_eq!(
        asked.responder.respond(Bytes::from_static(b"late")),
        Err(RespondError::Gone)
    );
}

#[tokio::test]
async fn a_full_inbound_channel_refuses_requests_at_once() {
    let ca = generate_ca("test").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let mut cfg = config(&ca, "b");
    cfg.inbound_capacity = 1;
    // Never read: the `Connected` event fills it.
    let (b, _b_rx) = Transport::bind(cfg).await.expect("bind");

    let result = a
        .request(&peer(&b), Class::User, Bytes::from_static(b"?"), LONG)
        .await;
    assert_eq!(
        result,
        Err(RequestError::Refused {
            reason: Refusal::InboundFull
        })
    );
    assert_eq!(b.stats().requests_served(ServedResult::InboundFull), 1);
}

#[tokio::test]
async fn dropping_the_request_future_resets_the_stream_and_counts_it_cancelled() {
    let ca = generate_ca("test").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;

    let asking = tokio::spawn(a.request(&peer(&b), Class::User, Bytes::from_static(b"?"), LONG));
    let asked = next_request(&mut b_rx).await;
    asking.abort();
    assert!(asking.await.is_err_and(|e| e.is_cancelled()));
    assert_eq!(a.stats().requests(RequestResult::Cancelled), 1);
    eventually("b counts the request cancelled", || {
        b.stats().requests_served(ServedResult::Cancelled) == 1
    })
    .await;
    assert_eq!(
        asked.responder.respond(Bytes::new()),
        Err(RespondError::Gone)
    );
}

#[tokio::test]
async fn requests_fail_with_shutdown_during_and_after_a_shutdown() {
    let ca = generate_ca("test").expect("ca");
    let (a, _a_rx) = bind(&ca, "a").await;
    let (b, mut b_rx) = bind(&ca, "b").await;

    let asking = tokio::spawn(a.request(&peer(&b), Class::User, Bytes::from_static(b"?"), LONG));
    let _asked = next_request(&mut b_rx).await;
    a.shutdown().await;
    assert_eq!(
        within("the failure", asking).await.expect("task"),
        Err(RequestError::Shutdown)
    );
    assert_eq!(
        a.request(&peer(&b), Class::User, Bytes::new(), LONG).await,
        Err(RequestError::Shutdown)
    );
    assert_eq!(a.stats().requests(RequestResult::Shutdown), 2);
}

#[tokio::test]
async fn a_request_to_a_silent_address_fails_as_unreachable_then_backs_off() {
    let ca = generate_ca("test").expect("ca");
    let mut cfg = config(&ca, "a");
    cfg.handshake_timeout = Duration::from_millis(200);
    let (a, _a_rx) = Transport::bind(cfg).await.expect("bind");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let nowhere = PeerRef {
        name: None,
        addr: silent.local_addr().expect("addr"),
    };

    let started = Instant::now();
    let result = a.request(&nowhere, Class::User, Bytes::new(), LONG).await;
    assert_eq!(
        result,
        Err(RequestError::Unreachable {
            addr: nowhere.addr,
            kind: HandshakeFailure::Timeout
        })
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed with the dial, not the request timeout"
    );
    let again = a.request(&nowhere, Class::User, Bytes::new(), LONG).await;
    assert_eq!(again, result, "the backoff answers for the dial");
    assert_eq!(a.stats().handshake_failures(HandshakeFailure::Timeout), 1);
}

#[tokio::test]
async fn a_request_to_our_own_address_fails_as_self_address() {
    let ca = generate_ca("test").expect("ca");
    let (a, mut a_rx) = bind(&ca, "a").await;
    let me = PeerRef {
        name: None,
        addr: a.local_addr(),
    };
    assert_eq!(
        a.request(&me, Class::User, Bytes::new(), LONG).await,
        Err(RequestError::SelfAddress {
            addr: a.local_addr()
        })
    );
    assert!(a_rx.try_recv().is_err());
}

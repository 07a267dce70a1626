//! The admin API's JSON, pinned: every body, view and stream line against a literal
//! string, both ways. A change here is a change of the API's contract.

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use mesh_api::*;

/// `value` serializes to exactly `json`, and `json` reads back as `value`.
fn pin<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T, json: &str) {
    let written = serde_json::to_string(value).expect("serializes");
    assert_eq!(written, json, "the JSON of {value:?} changed");
    let read: T = serde_json::from_str(json).expect("parses");
    assert_eq!(&read, value, "{json} reads back as something else");
}

fn strong_view(session: Option<&str>) -> StrongNameView {
    StrongNameView {
        name: "leader".into(),
        pid: "n4/5/1".into(),
        node: "n4".into(),
        version: 6,
        ephemeral: session.is_some(),
        session: session.map(str::to_owned),
    }
}

#[test]
fn member_views_and_states_keep_their_json() {
    pin(
        &MemberView {
            name: "n1".into(),
            addr: "127.0.0.1:7946".parse().expect("addr"),
            incarnation: 3,
            state: MemberState::Suspect,
            age_seconds: 12.5,
            is_self: true,
            tags: Default::default(),
        },
        r#"{"name":"n1","addr":"127.0.0.1:7946","incarnation":3,"state":"suspect","age_seconds":12.5,"is_self":true}"#,
    );
    for (state, text) in [
        (MemberState::Alive, "alive"),
        (MemberState::Suspect, "suspect"),
        (MemberState::Down, "down"),
        (MemberState::Left, "left"),
    ] {
        pin(&state, &format!("\"{text}\""));
        assert_eq!(state.as_str(), text);
    }
    assert!(MemberState::Suspect.is_live() && !MemberState::Down.is_live());
    // `is_self` may be absent (older agents).
    let m: MemberView = serde_json::from_str(
        r#"{"name":"n2","addr":"[::1]:1","incarnation":1,"state":"left","age_seconds":0.0}"#,
    )
    .expect("parses");
    assert!(!m.is_self);
}

#[test]
fn group_and_name_views_keep_their_json() {
    pin(
        &GroupCount {
            group: "workers".into(),
            members: 2,
        },
        r#"{"group":"workers","members":2}"#,
    );
    pin(
        &GroupView {
            scope: "default".into(),
            group: "workers".into(),
            members: vec![
                GroupMember {
                    pid: "n1/7/1".into(),
                    node: "n1".into(),
                    count: 2,
                    meta: Some("m".into()),
                },
                GroupMember {
                    pid: "n2/7/3".into(),
                    node: "n2".into(),
                    count: 1,
                    meta: None,
                },
            ],
        },
        r#"{"scope":"default","group":"workers","members":[{"pid":"n1/7/1","node":"n1","count":2,"meta":"m"},{"pid":"n2/7/3","node":"n2","count":1}]}"#,
    );
    pin(
        &NameView {
            name: "leader".into(),
            pid: "n1/7/1".into(),
            node: "n1".into(),
            hlc: "1733070000000.2".into(),
            policy: Policy::UnregisterBoth,
            meta: None,
        },
        r#"{"name":"leader","pid":"n1/7/1","node":"n1","hlc":"1733070000000.2","policy":"unregister_both"}"#,
    );
    for (p, text) in [
        (Policy::Notify, "notify"),
        (Policy::Kill, "kill"),
        (Policy::UnregisterBoth, "unregister_both"),
    ] {
        pin(&p, &format!("\"{text}\""));
    }
    assert_eq!(Policy::default(), Policy::Notify);
    assert_eq!(DEFAULT_SCOPE, "default");
}

#[test]
fn send_bodies_and_answers_keep_their_json() {
    let body = SendBody {
        group: Some("workers".into()),
        scope: Some("s".into()),
        mode: Some(GroupMode::Nearest),
        payload: Some("hi".into()),
        ..SendBody::default()
    };
    let json = r#"{"group":"workers","scope":"s","mode":"nearest","name":null,"strong":null,"pid":null,"payload":"hi","payload_base64":null}"#;
    assert_eq!(serde_json::to_string(&body).expect("serializes"), json);
    // What meshctl sends, read as the agent reads it (SendBody has no PartialEq).
    let read: SendBody =
        serde_json::from_str(r#"{"pid":"n1/7/1","payload_base64":"AAE="}"#).expect("parses");
    assert_eq!(read.pid.as_deref(), Some("n1/7/1"));
    assert_eq!(read.payload_base64.as_deref(), Some("AAE="));
    assert!(read.group.is_none() && read.mode.is_none() && read.payload.is_none());
    let e = serde_json::from_str::<SendBody>(r#"{"pid":"a","to":"b"}"#).expect_err("unknown");
    assert!(e.to_string().contains("to"), "{e}");
    for (m, text) in [
        (GroupMode::All, "all"),
        (GroupMode::Local, "local"),
        (GroupMode::One, "one"),
        (GroupMode::Nearest, "nearest"),
    ] {
        pin(&m, &format!("\"{text}\""));
    }
    assert_eq!(GroupMode::default(), GroupMode::All);

    pin(
        &SendAnswer {
            delivered: 2,
            remote_nodes: 1,
            failed: vec![Failed {
                pid: "n2/7/3".into(),
                reason: "mailbox_full".into(),
            }],
            timed_out: vec!["n3".into()],
            backpressure: vec![],
        },
        r#"{"delivered":2,"remote_nodes":1,"failed":[{"pid":"n2/7/3","reason":"mailbox_full"}],"timed_out":["n3"]}"#,
    );
    pin(
        &SendAnswer {
            backpressure: vec!["n4".into()],
            ..SendAnswer::default()
        },
        r#"{"delivered":0,"remote_nodes":0,"failed":[],"timed_out":[],"backpressure":["n4"]}"#,
    );
}

#[test]
fn listen_bodies_and_lines_keep_their_json() {
    let body = ListenBody {
        groups: vec!["workers".into()],
        name: Some("leader".into()),
        policy: Some(Policy::Kill),
        mailbox: Some(16),
        ..ListenBody::default()
    };
    assert_eq!(
        serde_json::to_string(&body).expect("serializes"),
        r#"{"groups":["workers"],"scope":null,"name":"leader","policy":"kill","meta":null,"mailbox":16}"#
    );
    let read: ListenBody = serde_json::from_str(r#"{"name":"x"}"#).expect("defaults");
    assert!(read.groups.is_empty() && read.policy.is_none() && read.mailbox.is_none());

    pin(
        &ListenLine::Ready {
            pid: "n1/7/4".into(),
            groups: vec!["workers".into()],
            scope: "default".into(),
            name: None,
        },
        r#"{"event":"ready","pid":"n1/7/4","groups":["workers"],"scope":"default"}"#,
    );
    pin(
        &ListenLine::Message {
            from: Some("n2/7/1".into()),
            payload: Some("hello".into()),
            payload_base64: None,
        },
        r#"{"event":"message","from":"n2/7/1","payload":"hello"}"#,
    );
    pin(
        &ListenLine::Message {
            from: None,
            payload: None,
            payload_base64: Some("/w==".into()),
        },
        r#"{"event":"message","payload_base64":"/w=="}"#,
    );
    pin(
        &ListenLine::NameConflict {
            name: "leader".into(),
            winner: "n2/7/1".into(),
        },
        r#"{"event":"name_conflict","name":"leader","winner":"n2/7/1"}"#,
    );
    pin(&ListenLine::Heartbeat, r#"{"event":"heartbeat"}"#);
    pin(&ListenLine::Exited, r#"{"event":"exited"}"#);
}

#[test]
fn sync_bodies_keep_their_json_and_defaults() {
    let body = SyncBody {
        mode: SyncMode::All,
        timeout_ms: 250,
    };
    assert_eq!(
        serde_json::to_string(&body).expect("serializes"),
        r#"{"mode":"all","timeout_ms":250}"#
    );
    let read: SyncBody = serde_json::from_str("{}").expect("defaults");
    assert_eq!((read.mode, read.timeout_ms), (SyncMode::Quorum, 5000));
    let default = SyncBody::default();
    assert_eq!((default.mode, default.timeout_ms), (SyncMode::Quorum, 5000));
    pin(&SyncMode::Quorum, r#""quorum""#);
    pin(&SyncMode::All, r#""all""#);
}

#[test]
fn claim_bodies_answers_lines_and_tables_keep_their_json() {
    pin(
        &ClaimBody {
            task: "job-1".into(),
            ttl_ms: None,
        },
        r#"{"task":"job-1"}"#,
    );
    pin(
        &ClaimBody {
            task: "job-1".into(),
            ttl_ms: Some(10_000),
        },
        r#"{"task":"job-1","ttl_ms":10000}"#,
    );
    pin(
        &ClaimAnswer {
            task: "job-1".into(),
            token: 7,
            valid_for_ms: 9_990,
            node: "n2".into(),
        },
        r#"{"task":"job-1","token":7,"valid_for_ms":9990,"node":"n2"}"#,
    );
    pin(
        &ReleaseBody {
            task: "job-1".into(),
            token: 7,
        },
        r#"{"task":"job-1","token":7}"#,
    );
    pin(
        &HoldLine::Renewed {
            token: 7,
            valid_for_ms: 1850,
        },
        r#"{"event":"renewed","token":7,"valid_for_ms":1850}"#,
    );
    pin(
        &HoldLine::Lost {
            task: "job-1".into(),
            token: 7,
            reason: "expired".into(),
        },
        r#"{"event":"lost","task":"job-1","token":7,"reason":"expired"}"#,
    );
    pin(
        &ClaimsView {
            shards: vec![ShardView {
                shard: 3,
                next_token: 9,
                sessions: vec![SessionView {
                    session: "n4/5/2".into(),
                    holder: "n4".into(),
                    ttl_ms: 2000,
                    renew_seq: 8,
                }],
                claims: vec![ClaimView {
                    task: "job-1".into(),
                    token: 7,
                    holder: "n4".into(),
                    session: "n4/5/2".into(),
                }],
                names: vec![strong_view(Some("n4/5/2"))],
            }],
        },
        r#"{"shards":[{"shard":3,"next_token":9,"sessions":[{"session":"n4/5/2","holder":"n4","ttl_ms":2000,"renew_seq":8}],"claims":[{"task":"job-1","token":7,"holder":"n4","session":"n4/5/2"}],"names":[{"name":"leader","pid":"n4/5/1","node":"n4","version":6,"ephemeral":true,"session":"n4/5/2"}]}]}"#,
    );
    assert_eq!(CALL_DEADLINE.as_secs(), 20);
}

#[test]
fn strong_name_bodies_and_answers_keep_their_json() {
    pin(
        &StrongBody {
            name: "leader".into(),
            pid: None,
            ephemeral: false,
        },
        r#"{"name":"leader","ephemeral":false}"#,
    );
    pin(
        &StrongBody {
            name: "leader".into(),
            pid: Some("n1/7/1".into()),
            ephemeral: true,
        },
        r#"{"name":"leader","pid":"n1/7/1","ephemeral":true}"#,
    );
    pin(
        &StrongReleaseBody {
            name: "leader".into(),
            version: 6,
        },
        r#"{"name":"leader","version":6}"#,
    );
    pin(
        &StrongTransferBody {
            name: "leader".into(),
            version: 6,
            pid: "n2/7/1".into(),
        },
        r#"{"name":"leader","version":6,"pid":"n2/7/1"}"#,
    );
    pin(
        &WhereisAnswer {
            entry: strong_view(None),
            linearizable: false,
        },
        r#"{"name":"leader","pid":"n4/5/1","node":"n4","version":6,"ephemeral":false,"linearizable":false}"#,
    );
    let e = serde_json::from_str::<StrongTransferBody>(
        r#"{"name":"x","version":1,"pid":"a","force":true}"#,
    )
    .expect_err("unknown field");
    assert!(e.to_string().contains("force"), "{e}");
}

#[test]
fn the_quorum_view_keeps_its_json_and_reads_back_stalled_shards() {
    let status = QuorumStatus {
        voters: vec!["n1".into(), "n2".into(), "n3".into()],
        epoch: Some(1),
        state: "voter".into(),
        reason: None,
        reachable: vec!["n1".into(), "n2".into()],
        quorum: 2,
        acceptor: true,
        shards: 2,
        preferred: BTreeMap::from([("n1".into(), 1), ("n2".into(), 1)]),
        watched: vec![0],
        stalled: BTreeMap::from([(1, "timeouts".into())]),
        largest_slot: Some((0, 412)),
    };
    pin(
        &QuorumView {
            status,
            preferred_by_shard: vec![Some("n1".into()), None],
        },
        r#"{"voters":["n1","n2","n3"],"epoch":1,"state":"voter","reachable":["n1","n2"],"quorum":2,"acceptor":true,"shards":2,"preferred":{"n1":1,"n2":1},"watched":[0],"stalled":{"1":"timeouts"},"largest_slot":[0,412],"preferred_by_shard":["n1",null]}"#,
    );
    // The status alone reads the same keys, and a key that is no shard is refused.
    let plain: QuorumStatus = serde_json::from_str(
        r#"{"voters":[],"epoch":null,"state":"forming","reachable":[],"quorum":1,"acceptor":false,"shards":4,"preferred":{},"watched":[],"stalled":{"3":"oversized"}}"#,
    )
    .expect("parses");
    assert_eq!(plain.stalled, BTreeMap::from([(3, "oversized".into())]));
    assert_eq!((plain.largest_slot, plain.reason), (None, None));
    let e = serde_json::from_str::<QuorumView>(
        r#"{"voters":[],"epoch":null,"state":"forming","reachable":[],"quorum":1,"acceptor":false,"shards":4,"preferred":{},"watched":[],"stalled":{"x":"oversized"},"preferred_by_shard":[]}"#,
    )
    .expect_err("not a shard");
    assert!(e.to_string().contains("\"x\""), "{e}");
    assert_eq!(DEFAULT_ADMIN_PORT, 7947);
}

#[test]
fn info_rtt_and_leave_answers_keep_their_json() {
    let mut info = InfoView {
        version: "0.1.0".into(),
        commit: "abc123def456".into(),
        name: "n1".into(),
        incarnation: 3,
        addr: "127.0.0.1:7946".parse().expect("addr"),
        uptime_seconds: 5.5,
        profile: "lan".into(),
        voters: vec!["n1".into(), "n2".into(), "n3".into()],
        config: ConfigSummary {
            admin: "127.0.0.1:7947".parse().expect("addr"),
            seeds: vec!["127.0.0.1:7956".parse().expect("addr")],
            dns_seeds: vec!["dns+srv://_mesh._udp.example.org".into()],
            dns_server: Some("127.0.0.1:5353".parse().expect("addr")),
            packet_size: 1100,
            permdown_seconds: 300.0,
            mailbox_capacity: 1024,
            shards: Some(64),
            claims_ttl_seconds: Some(10.0),
        },
        features: vec!["dns-seeds".into(), "redb-store".into()],
        build: BuildInfo {
            profile: "release".into(),
            rustc: "rustc 1.90.0".into(),
            target: "x86_64-unknown-linux-gnu".into(),
        },
    };
    pin(
        &info,
        r#"{"version":"0.1.0","commit":"abc123def456","name":"n1","incarnation":3,"addr":"127.0.0.1:7946","uptime_seconds":5.5,"profile":"lan","voters":["n1","n2","n3"],"config":{"admin":"127.0.0.1:7947","seeds":["127.0.0.1:7956"],"dns_seeds":["dns+srv://_mesh._udp.example.org"],"dns_server":"127.0.0.1:5353","packet_size":1100,"permdown_seconds":300.0,"mailbox_capacity":1024,"shards":64,"claims_ttl_seconds":10.0},"features":["dns-seeds","redb-store"],"build":{"profile":"release","rustc":"rustc 1.90.0","target":"x86_64-unknown-linux-gnu"}}"#,
    );
    // An agent older than the DNS seeds, features and build fields still parses.
    let old: InfoView = serde_json::from_str(
        r#"{"version":"0.1.0","commit":"abc123def456","name":"n1","incarnation":3,"addr":"127.0.0.1:7946","uptime_seconds":5.5,"profile":"lan","voters":[],"config":{"admin":"127.0.0.1:7947","seeds":[],"packet_size":1100,"permdown_seconds":300.0,"mailbox_capacity":1024,"shards":null,"claims_ttl_seconds":null}}"#,
    )
    .expect("an older agent's info parses");
    assert!(old.features.is_empty() && old.config.dns_seeds.is_empty());
    assert_eq!(
        (old.build, old.config.dns_server),
        (BuildInfo::default(), None)
    );
    info.voters.clear();
    info.config.shards = None;
    info.config.claims_ttl_seconds = None;
    let json = serde_json::to_string(&info).expect("serializes");
    assert!(
        json.contains(r#""voters":[]"#)
            && json.contains(r#""shards":null,"claims_ttl_seconds":null"#),
        "claims off: {json}"
    );
    pin(
        &RttView {
            name: "n2".into(),
            rtt_ms: 1.25,
            state: MemberState::Suspect,
        },
        r#"{"name":"n2","rtt_ms":1.25,"state":"suspect"}"#,
    );
    pin(
        &LeaveAnswer {
            leaving: "n3".into(),
        },
        r#"{"leaving":"n3"}"#,
    );
    pin(
        &JoinBody {
            addrs: vec!["127.0.0.1:7946".parse().expect("addr")],
            timeout_ms: Some(2000),
        },
        r#"{"addrs":["127.0.0.1:7946"],"timeout_ms":2000}"#,
    );
    let body: JoinBody = serde_json::from_str(r#"{"addrs":["10.0.0.1:7946"]}"#).expect("parses");
    assert_eq!(body.timeout_ms, None, "the timeout is optional");
    pin(
        &JoinAnswer {
            joined: vec![Joined {
                addr: "127.0.0.1:7946".parse().expect("addr"),
                name: "n1".into(),
            }],
            failed: vec![JoinFailed {
                addr: "127.0.0.1:9".parse().expect("addr"),
                error: "no member at 127.0.0.1:9 came up within 1000 ms".into(),
            }],
        },
        r#"{"joined":[{"addr":"127.0.0.1:7946","name":"n1"}],"failed":[{"addr":"127.0.0.1:9","error":"no member at 127.0.0.1:9 came up within 1000 ms"}]}"#,
    );
}

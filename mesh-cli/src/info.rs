//! `meshctl info`, `meshctl rtt NAME`, `meshctl join ADDR...`, `meshctl leave` and
//! `meshctl force-leave NAME`: what an agent is, its measured round trip to a member,
//! asking it to join through other nodes, asking it to leave the cluster and exit, and
//! marking a dead member as left cluster-wide.

use anyhow::Result;
use clap::Args;
use mesh_api::{
    ForceLeaveAnswer, ForceLeaveBody, InfoView, JoinAnswer, JoinBody, LeaveAnswer, MemberState,
    RttView,
};

use crate::client::{AdminArgs, StatusHints};
use crate::error::failure;
use crate::members::human_age;
use crate::out::{print_stdout, table};

/// `meshctl info` options.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// `meshctl rtt` options.
#[derive(Debug, Args)]
pub(crate) struct RttArgs {
    /// The member to show the round trip to (a node name, see `meshctl members`).
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of a line.
    #[arg(long)]
    json: bool,
}

/// `meshctl join` options.
#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    /// Advertised addresses (`IP:PORT`, UDP) of nodes of the cluster to join through.
    #[arg(required = true, value_name = "ADDR")]
    addrs: Vec<std::net::SocketAddr>,
    /// Seconds to wait for a member at each address to come up (1 to 20).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=20))]
    timeout: u64,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of a line per address.
    #[arg(long)]
    json: bool,
}

/// Runs `meshctl join`: one line per address reached (`joined NAME at ADDR`) and one per
/// address not reached; fails (exit 1) if none was reached.
pub(crate) fn run_join(args: JoinArgs) -> Result<()> {
    let client = args.admin.client().for_quorum(&[(
        504,
        "check the addresses (the node's advertised UDP address, as `meshctl members` \
         shows it) and that nothing blocks UDP between the two",
    )]);
    let body = JoinBody {
        addrs: args.addrs,
        timeout_ms: Some(args.timeout * 1000),
    };
    let text = client.post("/v1/join", &body)?;
    let answer: JoinAnswer = client.parse(&text)?;
    if args.json {
        return print_stdout(&format!("{text}\n"));
    }
    let mut out = String::new();
    for j in &answer.joined {
        out.push_str(&format!("joined {} at {}\n", j.name, j.addr));
    }
    for f in &answer.failed {
        out.push_str(&format!("not joined at {}: {}\n", f.addr, f.error));
    }
    print_stdout(&out)
}

/// `meshctl leave` options.
#[derive(Debug, Args)]
pub(crate) struct LeaveArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of a line.
    #[arg(long)]
    json: bool,
}

/// `meshctl force-leave` options.
#[derive(Debug, Args)]
pub(crate) struct ForceLeaveArgs {
    /// The down member to mark as left.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the API's JSON instead of a line.
    #[arg(long)]
    json: bool,
}

/// Hints of `POST /v1/force-leave`'s refusals.
const FORCE_LEAVE_HINTS: StatusHints = &[
    (
        404,
        "check the name with `meshctl members` (names are case-sensitive)",
    ),
    (
        409,
        "only a member declared down can be force-left: wait until `meshctl members` \
         shows it down, or ask it to `meshctl leave` if it is running",
    ),
    (
        400,
        "ask the agent itself to `meshctl leave`, or another agent (--admin) to force it out",
    ),
];

/// Runs `meshctl force-leave`.
pub(crate) fn run_force_leave(args: ForceLeaveArgs) -> Result<()> {
    if let Err(e) = mesh_core::identity::validate_name(&args.name) {
        return Err(failure(
            format!("{:?} is not a node name: {e}", args.name),
            "pass a member's name as `meshctl members` shows it",
        ));
    }
    let client = args.admin.client().with_hints(FORCE_LEAVE_HINTS);
    let body = client.post(
        "/v1/force-leave",
        &ForceLeaveBody {
            name: args.name.clone(),
        },
    )?;
    let answer: ForceLeaveAnswer = client.parse(&body)?;
    if args.json {
        return print_stdout(&format!("{body}\n"));
    }
    let text = if answer.was == MemberState::Left {
        format!("{} had already left\n", answer.name)
    } else {
        format!(
            "{} (incarnation {}) marked left; the cluster hears it by gossip\n",
            answer.name, answer.incarnation
        )
    };
    print_stdout(&text)
}

/// Runs `meshctl info`.
pub(crate) fn run_info(args: InfoArgs) -> Result<()> {
    let (body, view) = args.admin.client().get_json::<InfoView>("/v1/info")?;
    if args.json {
        return print_stdout(&format!("{body}\n"));
    }
    print_stdout(&render_info(&view))
}

/// Hints of `GET /v1/rtt/{name}`'s refusals.
const RTT_HINTS: StatusHints = &[
    (
        404,
        "check the name with `meshctl members` (names are case-sensitive)",
    ),
    (
        503,
        "round trips are measured on anti-entropy exchanges within seconds of a member \
         joining: retry shortly; a down or left member is never measured",
    ),
    (
        400,
        "ask another agent (--admin) for its round trip to this one",
    ),
];

/// Runs `meshctl rtt`.
pub(crate) fn run_rtt(args: RttArgs) -> Result<()> {
    if let Err(e) = mesh_core::identity::validate_name(&args.name) {
        return Err(failure(
            format!("{:?} is not a node name: {e}", args.name),
            "pass a member's name as `meshctl members` shows it",
        ));
    }
    let client = args.admin.client().with_hints(RTT_HINTS);
    let (body, view) = client.get_json::<RttView>(&format!("/v1/rtt/{}", args.name))?;
    if args.json {
        return print_stdout(&format!("{body}\n"));
    }
    print_stdout(&render_rtt(&view))
}

/// Runs `meshctl leave`.
pub(crate) fn run_leave(args: LeaveArgs) -> Result<()> {
    let client = args.admin.client();
    let body = client.post("/v1/leave", &serde_json::json!({}))?;
    let answer: LeaveAnswer = client.parse(&body)?;
    if args.json {
        return print_stdout(&format!("{body}\n"));
    }
    print_stdout(&format!(
        "agent {} is leaving the cluster and will exit\n",
        answer.leaving
    ))
}

/// `NAME RTT`, and for a member that is not alive, that the value is its last.
fn render_rtt(view: &RttView) -> String {
    let rtt = human_rtt(view.rtt_ms);
    match view.state {
        MemberState::Alive => format!("{} {rtt}\n", view.name),
        state => format!(
            "{} {rtt} ({}: last measured while it answered)\n",
            view.name,
            state.as_str()
        ),
    }
}

/// A round trip for humans: `850µs`, `1.25ms`, `310ms`, `1.50s`.
fn human_rtt(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        "?".to_owned()
    } else if ms < 1.0 {
        format!("{:.0}µs", ms * 1000.0)
    } else if ms < 100.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// The summary as two aligned columns.
fn render_info(v: &InfoView) -> String {
    let c = &v.config;
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(",")
        }
    };
    let mut rows = vec![
        vec![
            "version".to_owned(),
            format!("{} ({})", v.version, v.commit),
        ],
        vec!["name".to_owned(), v.name.clone()],
        vec!["incarnation".to_owned(), v.incarnation.to_string()],
        vec!["address".to_owned(), v.addr.to_string()],
        vec!["uptime".to_owned(), human_age(v.uptime_seconds)],
        vec!["profile".to_owned(), v.profile.clone()],
        vec![
            "voters".to_owned(),
            if v.voters.is_empty() {
                "none (claims are off)".to_owned()
            } else {
                v.voters.join(",")
            },
        ],
        vec!["admin".to_owned(), c.admin.to_string()],
        vec![
            "seeds".to_owned(),
            list(
                c.seeds
                    .iter()
                    .map(ToString::to_string)
                    .chain(c.dns_seeds.iter().cloned())
                    .collect(),
            ),
        ],
        vec!["packet_size".to_owned(), c.packet_size.to_string()],
        vec!["permdown".to_owned(), human_age(c.permdown_seconds)],
        vec![
            "mailbox_capacity".to_owned(),
            c.mailbox_capacity.to_string(),
        ],
    ];
    if let Some(shards) = c.shards {
        rows.push(vec!["shards".to_owned(), shards.to_string()]);
    }
    if let Some(ttl) = c.claims_ttl_seconds {
        rows.push(vec!["claims_ttl".to_owned(), human_age(ttl)]);
    }
    if !c.dns_seeds.is_empty() {
        let server = c
            .dns_server
            .map_or_else(|| "system (/etc/resolv.conf)".to_owned(), |s| s.to_string());
        rows.push(vec!["dns_server".to_owned(), server]);
    }
    rows.push(vec!["features".to_owned(), list(v.features.clone())]);
    let b = &v.build;
    if !b.profile.is_empty() {
        rows.push(vec![
            "build".to_owned(),
            format!("{} {} ({})", b.profile, b.target, b.rustc),
        ]);
    }
    // Two columns without a header: drop the table's header line.
    let mut out = String::new();
    for line in table(&["", ""], &rows).lines().skip(1) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use mesh_api::ConfigSummary;

    use super::*;

    fn view(voters: &[&str]) -> InfoView {
        let claims = !voters.is_empty();
        InfoView {
            version: "0.1.0".into(),
            commit: "abc1234".into(),
            name: "n1".into(),
            incarnation: 7,
            addr: "127.0.0.1:7946".parse().expect("addr"),
            uptime_seconds: 130.0,
            profile: "local".into(),
            voters: voters.iter().map(|v| (*v).to_owned()).collect(),
            config: ConfigSummary {
                admin: "127.0.0.1:7947".parse().expect("addr"),
                seeds: vec!["127.0.0.1:8000".parse().expect("addr")],
                dns_seeds: vec!["dns://mesh.internal:7946".into()],
                dns_server: None,
                packet_size: 1100,
                permdown_seconds: 300.0,
                mailbox_capacity: 1024,
                shards: claims.then_some(64),
                claims_ttl_seconds: claims.then_some(10.0),
            },
            features: vec!["dns-seeds".into(), "redb-store".into()],
            build: mesh_api::BuildInfo {
                profile: "release".into(),
                rustc: "rustc 1.90.0 (1159e78c4 2025-09-14)".into(),
                target: "x86_64-unknown-linux-gnu".into(),
            },
        }
    }

    fn row<'a>(text: &'a str, key: &str) -> Option<Vec<&'a str>> {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.first() == Some(&key))
            .map(|w| w[1..].to_vec())
    }

    #[test]
    fn info_shows_version_with_commit_identity_and_config() {
        let text = render_info(&view(&["n1", "n2", "n3"]));
        assert_eq!(row(&text, "version"), Some(vec!["0.1.0", "(abc1234)"]));
        assert_eq!(row(&text, "incarnation"), Some(vec!["7"]));
        assert_eq!(row(&text, "uptime"), Some(vec!["2m10s"]));
        assert_eq!(row(&text, "profile"), Some(vec!["local"]));
        assert_eq!(row(&text, "voters"), Some(vec!["n1,n2,n3"]));
        assert_eq!(
            row(&text, "seeds"),
            Some(vec!["127.0.0.1:8000,dns://mesh.internal:7946"])
        );
        assert_eq!(
            row(&text, "dns_server"),
            Some(vec!["system", "(/etc/resolv.conf)"])
        );
        assert_eq!(row(&text, "features"), Some(vec!["dns-seeds,redb-store"]));
        assert_eq!(
            row(&text, "build"),
            Some(vec![
                "release",
                "x86_64-unknown-linux-gnu",
                "(rustc",
                "1.90.0",
                "(1159e78c4",
                "2025-09-14))"
            ])
        );
        assert_eq!(row(&text, "permdown"), Some(vec!["5m0s"]));
        assert_eq!(row(&text, "shards"), Some(vec!["64"]));
        assert_eq!(row(&text, "claims_ttl"), Some(vec!["10s"]));
    }

    #[test]
    fn without_voters_info_says_claims_are_off_and_hides_their_settings() {
        let text = render_info(&view(&[]));
        assert_eq!(
            row(&text, "voters"),
            Some(vec!["none", "(claims", "are", "off)"])
        );
        assert_eq!(row(&text, "shards"), None, "{text}");
        assert_eq!(row(&text, "claims_ttl"), None, "{text}");
    }

    #[test]
    fn an_agent_older_than_the_build_fields_shows_no_build_row_and_no_features() {
        let mut v = view(&[]);
        v.features.clear();
        v.build = mesh_api::BuildInfo::default();
        v.config.dns_seeds.clear();
        let text = render_info(&v);
        assert_eq!(row(&text, "build"), None, "{text}");
        assert_eq!(row(&text, "dns_server"), None, "{text}");
        assert_eq!(row(&text, "features"), Some(vec!["none"]));
        assert_eq!(row(&text, "seeds"), Some(vec!["127.0.0.1:8000"]));
    }

    #[test]
    fn the_round_trip_to_a_member_that_is_not_alive_is_said_to_be_its_last() {
        let mut v = RttView {
            name: "n2".into(),
            rtt_ms: 1.254,
            state: MemberState::Alive,
        };
        assert_eq!(render_rtt(&v), "n2 1.25ms\n");
        v.state = MemberState::Down;
        assert_eq!(
            render_rtt(&v),
            "n2 1.25ms (down: last measured while it answered)\n"
        );
    }

    #[test]
    fn round_trips_read_in_the_right_unit() {
        assert_eq!(human_rtt(0.85), "850µs");
        assert_eq!(human_rtt(1.254), "1.25ms");
        assert_eq!(human_rtt(310.2), "310ms");
        assert_eq!(human_rtt(1500.0), "1.50s");
        assert_eq!(human_rtt(f64::NAN), "?");
        assert_eq!(human_rtt(-1.0), "?");
    }
}

//! `meshctl` as a user runs it: exit codes, the `error:`/`hint:` lines, settings
//! precedence through real environment variables, and `members` against a served
//! admin API. Tests that need running agents live in `tests/tests/agents.rs`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc::{self, Receiver};

use mesh_agent::admin::{router, serve, AdminView};
use mesh_api::{MemberState, MemberView};

/// `meshctl` with `args`, none of the caller's `MESH_*` variables, plus `env`.
fn meshctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshctl"));
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MESH_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("meshctl runs")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts the failure shape: exit code 1, exactly an `error:` line and a `hint:`
/// line on stderr. Returns the two lines.
fn assert_failure(out: &Output) -> (String, String) {
    let stderr = stderr_of(out);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "one error line and one hint line: {stderr:?}"
    );
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[1].starts_with("hint: "), "{stderr}");
    (lines[0].to_owned(), lines[1].to_owned())
}

#[test]
fn members_names_an_unreachable_admin_api_and_says_what_to_do() {
    let out = meshctl(&["members", "--admin", "127.0.0.1:1"], &[]);
    let (error, hint) = assert_failure(&out);
    assert_eq!(
        error,
        "error: cannot reach the admin API at 127.0.0.1:1 (connection refused)"
    );
    assert!(
        hint.contains("is the agent running?") && hint.contains("--admin"),
        "{hint}"
    );
}

#[test]
fn members_reads_the_admin_address_from_the_environment() {
    let out = meshctl(&["members"], &[("MESH_ADMIN", "127.0.0.1:1")]);
    let (error, _) = assert_failure(&out);
    assert!(error.contains("127.0.0.1:1"), "{error}");
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let out = meshctl(&["members", "--nope"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).starts_with("error: unexpected argument '--nope'"));
}

#[test]
fn a_misspelt_config_key_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "name = \"n1\"\ndatadir = \"/tmp\"\n").expect("write");
    let out = meshctl(&["agent", "--config", path(&file)], &[]);
    let (error, _) = assert_failure(&out);
    assert!(error.contains(&format!("{}:2", file.display())), "{error}");
    assert!(error.contains("unknown field `datadir`"), "{error}");
}

#[test]
fn an_unreadable_certificate_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.crt"), "x").expect("write");
    let out = meshctl(
        &["agent", "--name", "n1", "--data-dir", path(dir.path())],
        &[],
    );
    let (error, hint) = assert_failure(&out);
    let cert = dir.path().join("n1.crt");
    assert!(error.contains(&cert.display().to_string()), "{error}");
    assert!(hint.contains("--cert"), "{hint}");
}

#[test]
fn settings_come_from_flag_then_env_then_file_then_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "name = \"file-name\"\nbind = \"127.0.0.1:3001\"\nadmin = \"127.0.0.1:3002\"\n\
         seeds = [\"127.0.0.1:3003\"]\ndata_dir = \"/srv/mesh\"\n",
    )
    .expect("write");
    let out = meshctl(
        &["agent", "--check-config", "--bind", "127.0.0.1:1001"],
        &[
            ("MESH_CONFIG", path(&file)),
            ("MESH_BIND", "127.0.0.1:2001"),
            ("MESH_ADMIN", "127.0.0.1:2002"),
            ("MESH_SEEDS", "127.0.0.1:2003,127.0.0.1:2004"),
            ("MESH_ADMIN_TOKEN", "hunter2-hunter2-hunter2"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let shown: toml::Table = stdout_of(&out).parse().expect("TOML config");
    let get = |key: &str| shown.get(key).map(ToString::to_string).unwrap_or_default();
    assert_eq!(get("bind"), "\"127.0.0.1:1001\"", "flag beats env and file");
    assert_eq!(get("admin"), "\"127.0.0.1:2002\"", "env beats file");
    assert_eq!(
        get("seeds"),
        "[\"127.0.0.1:2003\", \"127.0.0.1:2004\"]",
        "env list"
    );
    assert_eq!(get("name"), "\"file-name\"", "file beats default");
    assert_eq!(get("profile"), "\"lan\"", "default");
    assert_eq!(
        get("cert"),
        "\"/srv/mesh/file-name.crt\"",
        "derived default"
    );
    assert!(
        !stdout_of(&out).contains("hunter2-hunter2-hunter2"),
        "the token is redacted"
    );
}

#[test]
fn cert_commands_write_files_and_refuse_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    let node_dir = dir.path().join("n1");
    let ca = ["cert", "ca", "--out", path(&ca_dir), "--cluster", "t"];
    assert!(meshctl(&ca, &[]).status.success());
    let (error, hint) = assert_failure(&meshctl(&ca, &[]));
    assert!(error.contains("ca.crt already exists"), "{error}");
    assert!(hint.contains("--force"), "{hint}");
    let mut forced = ca.to_vec();
    forced.push("--force");
    assert!(meshctl(&forced, &[]).status.success());

    let issue = [
        "cert",
        "issue",
        "--ca-dir",
        path(&ca_dir),
        "--name",
        "n1",
        "--out",
        path(&node_dir),
    ];
    let out = meshctl(&issue, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(node_dir.join("n1.crt").is_file() && node_dir.join("n1.key").is_file());
    assert_failure(&meshctl(&issue, &[]));
}

/// A fixed two-member view for the admin API.
#[derive(Clone)]
struct TwoMembers;

impl AdminView for TwoMembers {
    fn members(&self) -> Vec<MemberView> {
        ["n1", "n2"]
            .iter()
            .enumerate()
            .map(|(i, name)| MemberView {
                name: (*name).to_owned(),
                addr: format!("127.0.0.1:{}", 7000 + i).parse().expect("addr"),
                incarnation: 5 + i as u64,
                state: if i == 0 {
                    MemberState::Alive
                } else {
                    MemberState::Suspect
                },
                age_seconds: 75.0,
                is_self: i == 0,
                tags: Default::default(),
            })
            .collect()
    }
    fn is_live(&self) -> bool {
        true
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn render_metrics(&self) -> String {
        String::new()
    }
}

#[test]
fn members_uses_the_token_and_prints_a_table_or_the_exact_json() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let admin = listener.local_addr().expect("addr").to_string();
    runtime.spawn(serve(
        listener,
        router(TwoMembers, Some("s3cret".into())),
        std::future::pending(),
    ));

    let (error, hint) = assert_failure(&meshctl(&["members", "--admin", &admin], &[]));
    assert!(error.contains("401"), "{error}");
    assert!(hint.contains("--token"), "{hint}");

    let out = meshctl(&["members", "--admin", &admin, "--token", "wrong"], &[]);
    assert!(assert_failure(&out).1.contains("--token"));

    let out = meshctl(
        &["members", "--admin", &admin],
        &[("MESH_ADMIN_TOKEN", "s3cret")],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let table = stdout_of(&out);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "ADDRESS", "INCARNATION", "STATE", "AGE", "TAGS"]
    );
    assert_eq!(
        rows[1],
        ["n1*", "127.0.0.1:7000", "5", "alive", "1m15s", "-"]
    );
    assert_eq!(
        rows[2],
        ["n2", "127.0.0.1:7001", "6", "suspect", "1m15s", "-"]
    );

    let out = meshctl(
        &["members", "--admin", &admin, "--token", "s3cret", "--json"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let expected = serde_json::to_string(&TwoMembers.members()).expect("json");
    assert_eq!(stdout_of(&out).trim_end(), expected);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A one-connection HTTP server that answers `status` with `body` and hands back the
/// request it got (request line, body). Enough to check what `meshctl` sends and how it
/// reports each answer, without agents.
fn answer_once(
    status: u16,
    content_type: &str,
    body: &str,
) -> (String, Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let mut request_line = String::new();
        let _ = reader.read_line(&mut request_line);
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let _ = conn.write_all(response.as_bytes());
        let _ = tx.send((
            request_line.trim_end().to_owned(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
    });
    (addr, rx)
}

fn json_error(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

#[test]
fn claim_sends_the_task_and_ttl_and_prints_the_token() {
    let answer = r#"{"task":"job-1","token":7,"valid_for_ms":1900,"node":"n4"}"#;
    let (admin, request) = answer_once(200, "application/json", answer);
    let out = meshctl(&["claim", "job-1", "--ttl", "2s", "--admin", &admin], &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (line, body) = request.recv().expect("a request");
    assert_eq!(line, "POST /v1/claims HTTP/1.1");
    let sent: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(sent, serde_json::json!({"task": "job-1", "ttl_ms": 2000}));
    let text = stdout_of(&out);
    assert!(
        text.starts_with("claimed job-1 with token 7 on n4 (valid for 1.9s"),
        "{text}"
    );
    assert!(text.contains("meshctl release job-1 --token 7"), "{text}");
}

#[test]
fn an_unavailable_quorum_is_an_error_that_points_to_quorum_status() {
    let message = "claims unavailable: only 1 of the 2 voters needed for a quorum are reachable";
    let (admin, _) = answer_once(503, "application/json", &json_error(message));
    let (error, hint) = assert_failure(&meshctl(&["claim", "job-1", "--admin", &admin], &[]));
    assert_eq!(error, format!("error: {message}"));
    assert!(hint.contains("meshctl quorum status"), "{hint}");
    assert!(hint.contains("--voters"), "{hint}");
}

#[test]
fn a_claim_without_a_decision_says_it_may_or_may_not_have_taken_effect() {
    let message =
        "task \"job-1\": no quorum answered in time; the change may or may not have taken effect";
    let (admin, _) = answer_once(504, "application/json", &json_error(message));
    let (error, hint) = assert_failure(&meshctl(&["claim", "job-1", "--admin", &admin], &[]));
    assert!(
        error.ends_with("may or may not have taken effect"),
        "{error}"
    );
    assert!(hint.contains("same token"), "retrying is safe: {hint}");
}

#[test]
fn a_held_task_and_a_stale_token_name_the_holder_and_the_current_token() {
    let held = "task \"job-1\" is held by node n4 (session n4/5/1) with token 7";
    let (admin, _) = answer_once(409, "application/json", &json_error(held));
    let (error, hint) = assert_failure(&meshctl(&["claim", "job-1", "--admin", &admin], &[]));
    assert_eq!(error, format!("error: {held}"));
    assert!(hint.contains("meshctl claims"), "{hint}");

    let stale = "task \"job-1\": stale token; the current one is 9";
    let (admin, request) = answer_once(409, "application/json", &json_error(stale));
    let out = meshctl(
        &["release", "job-1", "--token", "7", "--admin", &admin],
        &[],
    );
    let (error, hint) = assert_failure(&out);
    assert!(error.ends_with("the current one is 9"), "{error}");
    assert!(hint.contains("current token"), "{hint}");
    let (line, body) = request.recv().expect("a request");
    assert_eq!(line, "POST /v1/claims/release HTTP/1.1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON"),
        serde_json::json!({"task": "job-1", "token": 7})
    );
}

#[test]
fn a_strong_registration_that_lost_names_the_winner() {
    let taken = "strong name \"leader\" is taken by n5/9/3 (node n5) at version 12";
    let (admin, request) = answer_once(409, "application/json", &json_error(taken));
    let out = meshctl(
        &["names", "register", "--strong", "leader", "--admin", &admin],
        &[],
    );
    let (error, _) = assert_failure(&out);
    assert!(error.contains("taken by n5/9/3"), "{error}");
    let (line, body) = request.recv().expect("a request");
    assert_eq!(line, "POST /v1/names/strong HTTP/1.1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON"),
        serde_json::json!({"name": "leader", "ephemeral": false}),
        "no pid: the agent keeps a process for the name"
    );
}

#[test]
fn a_strong_whereis_never_falls_back_to_an_eventual_name() {
    let (admin, request) = answer_once(
        404,
        "application/json",
        &json_error("strong name \"x\" has no owner"),
    );
    let out = meshctl(
        &["names", "whereis", "x", "--linearizable", "--admin", &admin],
        &[],
    );
    let (error, hint) = assert_failure(&out);
    assert_eq!(error, "error: strong name \"x\" has no owner");
    assert!(hint.contains("without --strong"), "{hint}");
    let (line, _) = request.recv().expect("a request");
    assert_eq!(
        line, "GET /v1/names/strong/x?linearizable=true HTTP/1.1",
        "--linearizable implies --strong, and asks the quorum"
    );
}

#[test]
fn a_held_claim_that_is_lost_says_why_and_exits_1() {
    let lines = concat!(
        r#"{"event":"claimed","task":"job-1","token":7,"valid_for_ms":1900}"#,
        "\n",
        r#"{"event":"renewed","token":7,"valid_for_ms":1950}"#,
        "\n",
        r#"{"event":"heartbeat"}"#,
        "\n",
        r#"{"event":"lost","task":"job-1","token":7,"reason":"expired"}"#,
        "\n",
    );
    let (admin, request) = answer_once(200, "application/x-ndjson", lines);
    let out = meshctl(&["claim", "job-1", "--hold", "--admin", &admin], &[]);
    let (error, hint) = assert_failure(&out);
    assert_eq!(
        error,
        "error: lost the claim of \"job-1\" (token 7): expired"
    );
    assert!(hint.contains("stop using the token"), "{hint}");
    assert!(
        stdout_of(&out).starts_with("claimed job-1 with token 7"),
        "{}",
        stdout_of(&out)
    );
    assert_eq!(
        request.recv().expect("a request").0,
        "POST /v1/claims/hold HTTP/1.1"
    );
}

#[test]
fn claims_commands_refuse_bad_usage_before_asking_anyone() {
    for args in [
        &["claim"][..],
        &["claim", "job-1", "--ttl", "soon"],
        &["release", "job-1"],
        &["release", "job-1", "--token", "-3"],
        &["names", "register"],
        &["names", "register", "--strong"],
        &["names", "release", "--strong", "x"],
        &["names", "transfer", "--strong", "x", "--version", "3"],
        &["send", "--strong", "a", "--name", "b", "hi"],
        &["claims", "--shard", "x"],
        &["quorum"],
    ] {
        let out = meshctl(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
    }
    let err = stderr_of(&meshctl(&["claim", "job-1", "--ttl", "soon"], &[]));
    assert!(err.contains("not a duration"), "{err}");
}

/// `claims_reassign` is off by default and set by flag (bare or `=false`), env and file,
/// with flag > env > file; a value that is not a boolean is refused naming the flag.
#[test]
fn claims_reassign_is_a_flag_an_env_variable_and_a_file_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mesh.toml");
    std::fs::write(&file, "claims_reassign = true\n").expect("write");
    let file = file.to_string_lossy().into_owned();
    let base = [
        "agent",
        "--check-config",
        "--name",
        "n1",
        "--data-dir",
        "/srv/mesh",
    ];
    let shown = |extra: &[&str], env: &[(&str, &str)]| -> String {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = meshctl(&args, env);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", stderr_of(&out));
        let table: toml::Table = stdout_of(&out).parse().expect("TOML config");
        table["claims_reassign"].to_string()
    };
    assert_eq!(shown(&[], &[]), "false", "default");
    assert_eq!(shown(&["--claims-reassign"], &[]), "true", "bare flag");
    assert_eq!(
        shown(&[], &[("MESH_CLAIMS_REASSIGN", "true")]),
        "true",
        "env"
    );
    assert_eq!(shown(&["--config", &file], &[]), "true", "file");
    assert_eq!(
        shown(&["--config", &file], &[("MESH_CLAIMS_REASSIGN", "false")]),
        "false",
        "env over file"
    );
    assert_eq!(
        shown(
            &["--claims-reassign=false"],
            &[("MESH_CLAIMS_REASSIGN", "true")]
        ),
        "false",
        "flag over env"
    );
    let args: Vec<&str> = base
        .iter()
        .chain(&["--claims-reassign=maybe"])
        .copied()
        .collect();
    let out = meshctl(&args, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("--claims-reassign"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn voters_shards_and_claims_ttl_are_agent_settings_with_named_errors() {
    let out = meshctl(
        &[
            "agent",
            "--check-config",
            "--name",
            "n4",
            "--data-dir",
            "/srv/mesh",
            "--shards",
            "16",
        ],
        &[("MESH_VOTERS", "n1,n2,n3"), ("MESH_CLAIMS_TTL", "2s")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let shown: toml::Table = stdout_of(&out).parse().expect("TOML config");
    assert_eq!(shown["voters"].to_string(), "[\"n1\", \"n2\", \"n3\"]");
    assert_eq!(shown["shards"].to_string(), "16");
    assert_eq!(shown["claims_ttl"].to_string(), "2.0");

    let base = [
        "agent",
        "--check-config",
        "--name",
        "n1",
        "--data-dir",
        "/srv/mesh",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| (*s).to_owned()).collect()
    };
    for (extra, key) in [
        (&["--voters", "n1,n2"][..], "voters:"),
        (&["--voters", "n1,n1,n2"], "voters:"),
        (&["--claims-ttl", "50ms"], "claims_ttl:"),
        (&["--shards", "0"], "shards:"),
    ] {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (error, hint) = assert_failure(&meshctl(&args, &[]));
        assert!(
            error.starts_with(&format!("error: {key}")),
            "{extra:?}: {error}"
        );
        assert!(!hint.is_empty());
    }
    let out = meshctl(
        &with(&["--voters", "n 1,n2,n3"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed name is a usage error"
    );
}

/// A blank, short or padded admin token is refused before anything starts, whether
/// the admin API is public or loopback, and the error never echoes the token.
#[test]
fn a_blank_or_short_admin_token_is_refused_with_a_named_error() {
    for admin in ["0.0.0.0:7947", "127.0.0.1:7947"] {
        for token in [" ", "", "short-token", "  padded-token-value-long  "] {
            let out = meshctl(
                &[
                    "agent",
                    "--check-config",
                    "--name",
                    "n1",
                    "--data-dir",
                    "/srv/mesh",
                    "--admin",
                    admin,
                ],
                &[("MESH_ADMIN_TOKEN", token)],
            );
            let (error, hint) = assert_failure(&out);
            assert!(
                error.starts_with("error: admin_token:"),
                "{admin} {token:?}: {error}"
            );
            assert!(hint.contains("openssl rand"), "{hint}");
            assert!(
                token.trim().is_empty() || !error.contains(token.trim()),
                "the token is echoed: {error}"
            );
        }
    }
}

#[test]
fn info_asks_for_the_info_route_and_prints_the_exact_json() {
    let answer = r#"{"version":"0.1.0","commit":"abc1234","name":"n1","incarnation":3,"addr":"127.0.0.1:7946","uptime_seconds":5.5,"profile":"lan","voters":[],"config":{"admin":"127.0.0.1:7947","seeds":[],"packet_size":1100,"permdown_seconds":300.0,"mailbox_capacity":1024,"shards":null,"claims_ttl_seconds":null}}"#;
    let (admin, request) = answer_once(200, "application/json", answer);
    let out = meshctl(&["info", "--json", "--admin", &admin], &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        request.recv().expect("a request").0,
        "GET /v1/info HTTP/1.1"
    );
    assert_eq!(stdout_of(&out), format!("{answer}\n"));

    let (admin, _) = answer_once(200, "application/json", answer);
    let text = stdout_of(&meshctl(&["info", "--admin", &admin], &[]));
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["version", "0.1.0", "(abc1234)"]),
        "{text}"
    );
}

#[test]
fn info_from_an_agent_without_the_route_says_which_version_to_run() {
    let (admin, _) = answer_once(
        404,
        "application/json",
        &json_error("no route for GET /v1/info"),
    );
    let (error, hint) = assert_failure(&meshctl(&["info", "--admin", &admin], &[]));
    assert!(error.contains("has no /v1/info (404)"), "{error}");
    assert!(hint.contains("same version"), "{hint}");
    // An answer that is not the info JSON is not passed on, even with --json.
    let (admin, _) = answer_once(200, "application/json", r#"{"name":"n1"}"#);
    let (error, _) = assert_failure(&meshctl(&["info", "--json", "--admin", &admin], &[]));
    assert!(error.contains("unexpected answer"), "{error}");
}

#[test]
fn rtt_prints_the_round_trip_and_names_each_refusal_with_its_hint() {
    let (admin, request) = answer_once(
        200,
        "application/json",
        r#"{"name":"n2","rtt_ms":1.254,"state":"alive"}"#,
    );
    let out = meshctl(&["rtt", "n2", "--admin", &admin], &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        request.recv().expect("a request").0,
        "GET /v1/rtt/n2 HTTP/1.1"
    );
    assert_eq!(stdout_of(&out), "n2 1.25ms\n");

    let cases = [
        (
            404,
            "no member named \"zz\" is known to this agent",
            "meshctl members",
        ),
        (
            503,
            "no round trip to \"zz\" measured yet (it is alive; ...)",
            "retry shortly",
        ),
        (
            400,
            "\"zz\" is the agent asked: it has no round trip to itself",
            "ask another agent",
        ),
    ];
    for (status, message, hinted) in cases {
        let (admin, _) = answer_once(status, "application/json", &json_error(message));
        let (error, hint) = assert_failure(&meshctl(&["rtt", "zz", "--admin", &admin], &[]));
        assert_eq!(error, format!("error: {message}"), "{status}");
        assert!(hint.contains(hinted), "{status}: {hint}");
    }
}

#[test]
fn rtt_refuses_a_name_that_is_no_node_name_before_asking_anyone() {
    let (error, hint) = assert_failure(&meshctl(&["rtt", "a/b", "--admin", "127.0.0.1:1"], &[]));
    assert!(error.contains("is not a node name"), "{error}");
    assert!(hint.contains("meshctl members"), "{hint}");
    let out = meshctl(&["rtt"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing NAME is a usage error"
    );
}

#[test]
fn leave_posts_to_the_leave_route_and_says_the_agent_exits() {
    let (admin, request) = answer_once(202, "application/json", r#"{"leaving":"n3"}"#);
    let out = meshctl(&["leave", "--admin", &admin], &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        request.recv().expect("a request").0,
        "POST /v1/leave HTTP/1.1"
    );
    assert_eq!(
        stdout_of(&out),
        "agent n3 is leaving the cluster and will exit\n"
    );

    let (error, hint) = assert_failure(&meshctl(&["leave", "--admin", "127.0.0.1:1"], &[]));
    assert!(error.contains("cannot reach the admin API"), "{error}");
    assert!(hint.contains("is the agent running?"), "{hint}");
    let (admin, _) = answer_once(
        401,
        "application/json",
        &json_error("missing or wrong bearer token"),
    );
    let (_, hint) = assert_failure(&meshctl(&["leave", "--admin", &admin], &[]));
    assert!(hint.contains("--token"), "{hint}");
}

#[test]
fn completions_are_written_for_each_shell_and_an_unknown_shell_is_a_usage_error() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef meshctl"),
        ("fish", "complete -c meshctl"),
    ] {
        let out = meshctl(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", stderr_of(&out));
        let text = stdout_of(&out);
        assert!(text.contains(marker) && text.contains("rtt"), "{shell}");
    }
    let out = meshctl(&["completions", "powershell"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("[possible values: bash, zsh, fish]"),
        "{}",
        stderr_of(&out)
    );
}

/// `meshctl elect` usage errors (exit 2, nothing contacted): no command after `--`, a
/// bad `--grace`; and an unreachable agent is an `error:`/`hint:` pair (exit 1).
#[test]
fn meshctl_elect_usage_errors_and_an_unreachable_agent() {
    let out = meshctl(&["elect", "lead"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("CMD"), "{}", stderr_of(&out));
    let out = meshctl(&["elect", "lead", "--grace", "soon", "--", "true"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--grace"), "{}", stderr_of(&out));
    let out = meshctl(
        &["elect", "lead", "--admin", "127.0.0.1:9", "--", "true"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("error: ") && lines[1].starts_with("hint: "),
        "{err}"
    );
}

#[test]
fn dns_seeds_and_dns_server_come_from_flag_env_and_file_mixed_with_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "name = \"n1\"\ndata_dir = \"/srv/mesh\"\n\
         seeds = [\"127.0.0.1:3003\", \"dns+srv://_mesh._udp.mesh.internal\"]\n\
         dns_server = \"127.0.0.1:5353\"\n",
    )
    .expect("write");
    let shown = |args: &[&str], env: &[(&str, &str)]| -> toml::Table {
        let out = meshctl(args, env);
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        stdout_of(&out).parse().expect("TOML config")
    };
    let get = |t: &toml::Table, key: &str| t.get(key).map(ToString::to_string).unwrap_or_default();

    // File: addresses and DNS seeds split into their keys.
    let t = shown(
        &["agent", "--check-config"],
        &[("MESH_CONFIG", path(&file))],
    );
    assert_eq!(get(&t, "seeds"), "[\"127.0.0.1:3003\"]");
    assert_eq!(
        get(&t, "dns_seeds"),
        "[\"dns+srv://_mesh._udp.mesh.internal\"]"
    );
    assert_eq!(get(&t, "dns_server"), "\"127.0.0.1:5353\"");
    // Env beats the file.
    let t = shown(
        &["agent", "--check-config"],
        &[
            ("MESH_CONFIG", path(&file)),
            ("MESH_SEEDS", "dns://mesh.internal:7946,127.0.0.1:2003"),
            ("MESH_DNS_SERVER", "127.0.0.1:2053"),
        ],
    );
    assert_eq!(get(&t, "seeds"), "[\"127.0.0.1:2003\"]");
    assert_eq!(get(&t, "dns_seeds"), "[\"dns://mesh.internal:7946\"]");
    assert_eq!(get(&t, "dns_server"), "\"127.0.0.1:2053\"");
    // Flags beat env.
    let t = shown(
        &[
            "agent",
            "--check-config",
            "--seed",
            "dns://other.internal:1",
            "--dns-server",
            "127.0.0.1:1053",
        ],
        &[
            ("MESH_CONFIG", path(&file)),
            ("MESH_SEEDS", "dns://mesh.internal:7946"),
            ("MESH_DNS_SERVER", "127.0.0.1:2053"),
        ],
    );
    assert_eq!(get(&t, "seeds"), "[]");
    assert_eq!(get(&t, "dns_seeds"), "[\"dns://other.internal:1\"]");
    assert_eq!(get(&t, "dns_server"), "\"127.0.0.1:1053\"");
    // Without DNS seeds the output has no DNS keys (as before them).
    let t = shown(
        &[
            "agent",
            "--check-config",
            "--name",
            "n1",
            "--data-dir",
            "/d",
        ],
        &[],
    );
    assert!(
        !t.contains_key("dns_seeds") && !t.contains_key("dns_server"),
        "{t}"
    );

    // A DNS seed without a port is a usage error that says what to write.
    let out = meshctl(
        &[
            "agent",
            "--check-config",
            "--name",
            "n1",
            "--seed",
            "dns://mesh.internal",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("dns://NAME:PORT"),
        "{}",
        stderr_of(&out)
    );
    // In the file: the line and the form.
    std::fs::write(&file, "name = \"n1\"\nseeds = [\"dns+srv://bad name\"]\n").expect("write");
    let (error, hint) = assert_failure(&meshctl(
        &["agent", "--check-config", "--config", path(&file)],
        &[],
    ));
    assert!(
        error.contains(":2:") && error.contains("no valid DNS name"),
        "{error}"
    );
    assert!(hint.contains("dns_server"), "valid keys listed: {hint}");
    // A dns_server nobody can query is named.
    let (error, _) = assert_failure(&meshctl(
        &[
            "agent",
            "--check-config",
            "--name",
            "n1",
            "--data-dir",
            "/d",
            "--dns-server",
            "0.0.0.0:53",
        ],
        &[],
    ));
    assert!(error.starts_with("error: dns_server:"), "{error}");
}

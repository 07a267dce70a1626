//! `meshctl` as a user runs it: exit codes, the `error:`/`hint:` lines, settings
//! precedence through real environment variables, and `members` against a served
//! admin API. Tests that need running agents live in `tests/tests/agents.rs`.

use std::path::Path;
use std::process::{Command, Output};

use mesh_core::admin::{router, serve, AdminView};
use mesh_core::membership::MemberState;
use mesh_core::runtime::MemberView;

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
            ("MESH_ADMIN_TOKEN", "hunter2"),
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
        !stdout_of(&out).contains("hunter2"),
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
    assert_eq!(rows[0], ["NAME", "ADDRESS", "INCARNATION", "STATE", "AGE"]);
    assert_eq!(rows[1], ["n1*", "127.0.0.1:7000", "5", "alive", "1m15s"]);
    assert_eq!(rows[2], ["n2", "127.0.0.1:7001", "6", "suspect", "1m15s"]);

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

//! `meshctl agent`: run one mesh node until SIGTERM or Ctrl-C, then leave gracefully.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};
use mesh_agent::config::AgentConfig;
use mesh_agent::runtime::{Agent, StartError};
use mesh_core::membership::Profile;
use tokio::signal::unix::{signal, SignalKind};

use crate::config_file::{io_reason, parse_duration, Layer, SeedItem};
use crate::error::{failure, Hint};

/// How long a leaving agent waits for its goodbye to go out.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// `meshctl agent` options. None has a clap default: an unset option falls through
/// to the config file and then to the built-in default.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Node name; must match the name in the node certificate.
    #[arg(long, env = "MESH_NAME")]
    name: Option<String>,
    /// UDP address the QUIC endpoint binds [default: 127.0.0.1:7946].
    #[arg(long, env = "MESH_BIND", value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// Address peers dial to reach this node [default: the bind address].
    #[arg(long, env = "MESH_ADVERTISE", value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// A peer to join through: IP:PORT, dns://NAME:PORT (A/AAAA records) or
    /// dns+srv://_mesh._udp.NAME (SRV records), looked up while alone; repeat the
    /// flag, or comma-separate in MESH_SEEDS.
    #[arg(
        long = "seed",
        env = "MESH_SEEDS",
        value_name = "ADDR",
        value_delimiter = ',',
        value_parser = parse_seed
    )]
    seeds: Vec<Option<SeedItem>>,
    /// DNS server (IP:PORT) that DNS seeds are looked up at [default: the system's
    /// resolvers, /etc/resolv.conf].
    #[arg(long, env = "MESH_DNS_SERVER", value_name = "ADDR")]
    dns_server: Option<SocketAddr>,
    /// Directory for durable state; also where ca.crt, NAME.crt and NAME.key are
    /// looked for when --ca/--cert/--key are not given.
    #[arg(long, env = "MESH_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the admin HTTP API [default: 127.0.0.1:7947].
    #[arg(long, env = "MESH_ADMIN", value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Bearer token for the admin API; required when --admin is not loopback.
    #[arg(
        long,
        env = "MESH_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Cluster CA certificate (PEM) [default: DATA_DIR/ca.crt].
    #[arg(long, env = "MESH_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// This node's certificate (PEM) [default: DATA_DIR/NAME.crt].
    #[arg(long, env = "MESH_CERT", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// This node's private key (PEM) [default: DATA_DIR/NAME.key].
    #[arg(long, env = "MESH_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// SWIM timing profile: lan, wan or local [default: lan].
    #[arg(long, env = "MESH_PROFILE", value_name = "PROFILE")]
    profile: Option<Profile>,
    /// SWIM packet size in bytes [default: 1100].
    #[arg(long, env = "MESH_PACKET_SIZE", value_name = "BYTES")]
    packet_size: Option<usize>,
    /// How long a down node's groups and names stay hidden before they are purged,
    /// e.g. 300s or 5m [default: 5m].
    #[arg(long, env = "MESH_PERMDOWN", value_name = "DURATION", value_parser = parse_duration)]
    permdown: Option<Duration>,
    /// Capacity of a process mailbox in messages [default: 1024].
    #[arg(long, env = "MESH_MAILBOX_CAPACITY", value_name = "N")]
    mailbox_capacity: Option<usize>,
    /// Most live processes (`listen` streams, library spawns); one more is refused
    /// [default: 250000].
    #[arg(long, env = "MESH_MAX_PROCESSES", value_name = "N")]
    max_processes: Option<usize>,
    /// Most open group monitors (`monitor` streams); one more is refused
    /// [default: 10000].
    #[arg(long, env = "MESH_MAX_MONITORS", value_name = "N")]
    max_monitors: Option<usize>,
    /// The voters of the quorum plane (task claims, strong names): 3 or 5 node names,
    /// the same on every agent, e.g. n1,n2,n3 [default: none, claims are off].
    #[arg(
        long,
        env = "MESH_VOTERS",
        value_name = "NAMES",
        value_delimiter = ',',
        value_parser = parse_voter
    )]
    voters: Vec<Option<String>>,
    /// Number of claim shards, fixed when the cluster is created; the same on every
    /// agent [default: 64].
    #[arg(long, env = "MESH_SHARDS", value_name = "N")]
    shards: Option<u32>,
    /// Default lease TTL of task claims, e.g. 10s [default: 10s].
    #[arg(long, env = "MESH_CLAIMS_TTL", value_name = "DURATION", value_parser = parse_duration)]
    claims_ttl: Option<Duration>,
    /// Hand a dead holder's tasks to the preferred live worker (an agent with a session
    /// in the task's shard) instead of freeing them: `--claims-reassign` or
    /// `--claims-reassign=false` [default: false].
    #[arg(
        long,
        env = "MESH_CLAIMS_REASSIGN",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    claims_reassign: Option<bool>,
    /// A tag of this node, KEY=VALUE (e.g. region=eu); repeat the flag, or
    /// comma-separate in MESH_TAGS. Change them at run time with `meshctl tags`.
    #[arg(
        long = "tag",
        env = "MESH_TAGS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_tag
    )]
    tags: Vec<Option<(String, String)>>,
    /// TOML config file; keys are the long option names with underscores.
    #[arg(long, env = "MESH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr (filter with RUST_LOG, default info).
    #[arg(long, env = "MESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Print the effective configuration (token redacted) and exit without starting.
    #[arg(long)]
    check_config: bool,
}

/// One seed address; an empty item (`MESH_SEEDS=` or `a,,b`) is no seed, so a
/// deployment can leave the variable empty on the first node.
fn parse_seed(s: &str) -> Result<Option<SeedItem>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    SeedItem::parse(s).map(Some)
}

/// One voter name; an empty item (`MESH_VOTERS=`) is none, as for seeds.
fn parse_voter(s: &str) -> Result<Option<String>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    mesh_core::identity::validate_name(s)
        .map(|()| Some(s.to_owned()))
        .map_err(|e| format!("{s:?} is not a node name: {e}"))
}

/// One tag; an empty item (`MESH_TAGS=`) is none, as for seeds.
fn parse_tag(s: &str) -> Result<Option<(String, String)>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    mesh_types::tags::parse_pair(s)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl AgentArgs {
    /// The flag-and-environment layer.
    fn layer(&self) -> Layer {
        Layer {
            name: self.name.clone(),
            bind: self.bind,
            advertise: self.advertise,
            seeds: Some(self.seeds.iter().flatten().cloned().collect::<Vec<_>>())
                .filter(|seeds| !seeds.is_empty()),
            dns_server: self.dns_server,
            data_dir: self.data_dir.clone(),
            admin: self.admin,
            admin_token: self.admin_token.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            profile: self.profile,
            packet_size: self.packet_size,
            permdown: self.permdown,
            mailbox_capacity: self.mailbox_capacity,
            max_processes: self.max_processes,
            max_monitors: self.max_monitors,
            voters: Some(self.voters.iter().flatten().cloned().collect::<Vec<_>>())
                .filter(|voters| !voters.is_empty()),
            shards: self.shards,
            claims_ttl: self.claims_ttl,
            claims_reassign: self.claims_reassign,
            tags: Some(
                self.tags
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<mesh_types::tags::Tags>(),
            )
            .filter(|tags| !tags.is_empty()),
        }
    }

    /// Flags and env over the config file over defaults, validated.
    pub(crate) fn config(&self) -> Result<AgentConfig> {
        let mut seen = std::collections::BTreeSet::new();
        if let Some((k, _)) = self.tags.iter().flatten().find(|(k, _)| !seen.insert(k)) {
            return Err(failure(
                format!("tags: tag {k:?} given twice"),
                "give each tag key once (--tag KEY=VALUE or MESH_TAGS=k=v,k2=v2)",
            ));
        }
        let file = match &self.config {
            Some(path) => Layer::from_file(path)?,
            None => Layer::default(),
        };
        self.layer().over(file).resolve()
    }
}

/// Runs `meshctl agent`.
pub(crate) fn run(args: AgentArgs) -> Result<()> {
    let config = args.config()?;
    if args.check_config {
        return print_config(&config);
    }
    check_readable(&config.ca, "CA certificate", "ca")?;
    check_readable(&config.cert, "certificate", "cert")?;
    check_readable(&config.key, "private key", "key")?;
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .hint("the process may be out of threads or file descriptors")?;
    runtime.block_on(run_agent(config))
}

async fn run_agent(config: AgentConfig) -> Result<()> {
    // Listen for signals before starting, so a SIGTERM during start-up still
    // ends in a graceful leave rather than the default abrupt exit.
    let mut terminate = signal(SignalKind::terminate()).hint("cannot install a SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).hint("cannot install a SIGINT handler")?;

    let name = config.name.clone();
    let handle = Agent::start(config).await.map_err(|e| start_failure(&e))?;
    println!(
        "agent {name} listening on {}, admin http://{}",
        handle.identity().addr,
        handle.admin_addr()
    );
    let why = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "interrupt",
        () = handle.stopped() => {
            if handle.is_leaving() {
                // `meshctl leave` (POST /v1/leave): the agent left as asked.
                tracing::info!("left the cluster as asked by the admin API; stopped");
                return Ok(());
            }
            return Err(failure(
                format!("agent {name} stopped unexpectedly"),
                "see the log lines above for the cause",
            ));
        }
    };
    tracing::info!(signal = why, "leaving the cluster");
    handle.leave(LEAVE_GRACE).await;
    tracing::info!("stopped");
    Ok(())
}

/// Fails with the file's name if it cannot be opened, before anything starts.
fn check_readable(path: &Path, what: &str, flag: &str) -> Result<()> {
    match std::fs::File::open(path) {
        Ok(_) => Ok(()),
        Err(e) => Err(failure(
            format!(
                "cannot read the {what} file {}: {}",
                path.display(),
                io_reason(&e)
            ),
            format!(
                "point --{flag} at the right file, or create it with `meshctl cert ca` / \
                 `meshctl cert issue`"
            ),
        )),
    }
}

/// A start error with a hint chosen by the key its message starts with.
fn start_failure(err: &StartError) -> anyhow::Error {
    let what = err.to_string();
    let key = what.split(':').next().unwrap_or_default();
    let hint = match key {
        "bind" => "is another agent using that address? choose another --bind port",
        "admin" => "is another agent using that address? choose another --admin port",
        "tls" => "check --ca, --cert and --key (make them with `meshctl cert ca` and `meshctl cert issue`)",
        "cert" => "issue a certificate for this node name with `meshctl cert issue --name NAME`",
        "data_dir" => "check that --data-dir exists and is writable by this user",
        "name" | "advertise" | "packet_size" | "admin_token" | "seeds" | "permdown"
        | "mailbox_capacity" | "max_processes" | "max_monitors" | "voters" | "shards"
        | "claims_ttl" | "tags" => {
            "fix that setting: a flag, a MESH_* variable or a key in the config file"
        }
        "dns_server" => {
            "set --dns-server IP:PORT (MESH_DNS_SERVER, dns_server in the file), or fix /etc/resolv.conf"
        }
        _ => "see the log lines above for details",
    };
    failure(what, hint)
}

fn print_config(config: &AgentConfig) -> Result<()> {
    let mut shown = config.clone();
    if shown.admin_token.is_some() {
        shown.admin_token = Some("<redacted>".to_owned());
    }
    let text = toml::to_string(&shown).hint("this is a bug in meshctl; please report it")?;
    print!("{text}");
    Ok(())
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};

    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    // Colours only for a terminal: logs redirected to a file stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::Cli;

    fn parse(args: &[&str]) -> AgentArgs {
        let cli = Cli::try_parse_from(std::iter::once("meshctl").chain(args.iter().copied()))
            .expect("valid command line");
        match cli.command {
            crate::Command::Agent(args) => *args,
            _ => panic!("not the agent command"),
        }
    }

    #[test]
    fn a_flag_beats_the_config_file_which_beats_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("mesh.toml");
        std::fs::write(
            &file,
            "name = \"from-file\"\nbind = \"127.0.0.1:3001\"\nprofile = \"wan\"\n\
             data_dir = \"/d\"\nseeds = [\"127.0.0.1:3005\"]\n",
        )
        .expect("write");
        let path = file.to_str().expect("utf-8 path");
        let args = parse(&[
            "agent",
            "--config",
            path,
            "--name",
            "from-flag",
            "--seed",
            "127.0.0.1:1005",
            "--seed",
            "127.0.0.1:1006",
        ]);
        let config = args.config().expect("valid");
        assert_eq!(config.name, "from-flag");
        assert_eq!(
            config.seeds,
            vec![
                "127.0.0.1:1005".parse().expect("a"),
                "127.0.0.1:1006".parse().expect("a")
            ],
            "flags replace the file's seeds rather than adding to them"
        );
        assert_eq!(config.bind, "127.0.0.1:3001".parse().expect("addr"), "file");
        assert_eq!(config.profile, Profile::Wan, "file");
        assert_eq!(
            config.admin,
            "127.0.0.1:7947".parse().expect("addr"),
            "default"
        );
        assert_eq!(config.cert, Path::new("/d/from-flag.crt"));
    }

    #[test]
    fn empty_seed_items_are_ignored_and_bad_ones_are_usage_errors() {
        assert_eq!(parse_seed(""), Ok(None));
        assert_eq!(
            parse_seed(" 10.0.0.2:7946 "),
            Ok(Some(SeedItem::Addr("10.0.0.2:7946".parse().expect("a"))))
        );
        let args = parse(&["agent", "--seed", "127.0.0.1:1,,127.0.0.1:2", "--seed", ""]);
        assert_eq!(args.layer().seeds.map(|s| s.len()), Some(2));
        let err = Cli::try_parse_from(["meshctl", "agent", "--seed", "nohost"]).expect_err("bad");
        assert!(err.to_string().contains("not an IP:PORT"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_bad_profile_flag_is_a_usage_error() {
        let err = Cli::try_parse_from(["meshctl", "agent", "--profile", "fast"])
            .expect_err("bad profile");
        assert!(
            err.to_string().contains("expected lan, wan or local"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn start_errors_get_a_hint_by_key() {
        let err = start_failure(&StartError::Config(
            mesh_agent::config::ConfigError::PacketSize(1),
        ));
        let f = err
            .downcast_ref::<crate::error::Failure>()
            .expect("a Failure");
        assert!(f.to_string().starts_with("packet_size:"));
    }
}

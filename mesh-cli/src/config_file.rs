//! Agent settings in layers: flags and `MESH_*` variables (clap), a TOML file, and
//! defaults, merged with precedence flag > env > file > default.
//!
//! Each layer is a [`Layer`] of options; [`Layer::over`] merges two, and
//! [`Layer::resolve`] fills in defaults and produces a validated [`AgentConfig`].
//! clap itself gives flags precedence over environment variables, so the CLI layer
//! arrives already merged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use mesh_agent::config::{AgentConfig, ConfigError};
use mesh_core::discovery::{DnsSeed, DnsSeedError};
use mesh_core::identity::validate_name;
use mesh_core::membership::Profile;
use serde::Deserialize;

use crate::error::{failure, one_line};

/// Keys a config file may hold, for error messages.
pub(crate) const KEYS: &str = "name, bind, advertise, seeds, dns_server, data_dir, admin, \
                               admin_token, ca, cert, key, profile, packet_size, permdown, \
                               mailbox_capacity, max_processes, max_monitors, voters, shards, \
                               claims_ttl, claims_reassign, tags";

/// One `seeds` item: an address, or a DNS seed (`dns://NAME:PORT`,
/// `dns+srv://_mesh._udp.NAME`) looked up while the agent is alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SeedItem {
    /// `IP:PORT`.
    Addr(SocketAddr),
    /// A name to look up.
    Dns(DnsSeed),
}

impl SeedItem {
    /// Parses one item; the error says which forms are accepted.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if DnsSeed::is_dns_form(t) {
            return t
                .parse()
                .map(Self::Dns)
                .map_err(|e: DnsSeedError| e.to_string());
        }
        t.parse().map(Self::Addr).map_err(|_| {
            format!(
                "{t:?} is not an IP:PORT address or a DNS seed, e.g. 10.0.0.2:7946, \
                 dns://mesh.internal:7946 or dns+srv://_mesh._udp.mesh.internal"
            )
        })
    }
}

impl<'de> Deserialize<'de> for SeedItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One layer of agent settings; `None` means "not set here".
///
/// It is also the shape of the TOML file: keys are the field names, and an unknown
/// key is an error rather than a silently ignored typo.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Layer {
    pub(crate) name: Option<String>,
    pub(crate) bind: Option<SocketAddr>,
    pub(crate) advertise: Option<SocketAddr>,
    /// Addresses and DNS seeds, mixed.
    pub(crate) seeds: Option<Vec<SeedItem>>,
    /// The DNS server for DNS seeds; the system's resolvers when unset.
    pub(crate) dns_server: Option<SocketAddr>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) admin: Option<SocketAddr>,
    pub(crate) admin_token: Option<String>,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) profile: Option<Profile>,
    pub(crate) packet_size: Option<usize>,
    /// A duration such as `"300s"`, `"5m"` (see [`parse_duration`]).
    #[serde(default, deserialize_with = "duration_opt")]
    pub(crate) permdown: Option<Duration>,
    pub(crate) mailbox_capacity: Option<usize>,
    pub(crate) max_processes: Option<usize>,
    pub(crate) max_monitors: Option<usize>,
    /// Voter names (3 or 5), the same on every agent.
    pub(crate) voters: Option<Vec<String>>,
    pub(crate) shards: Option<u32>,
    /// A duration such as `"10s"`.
    #[serde(default, deserialize_with = "duration_opt")]
    pub(crate) claims_ttl: Option<Duration>,
    /// `true`: hand a dead holder's tasks to live sessions.
    pub(crate) claims_reassign: Option<bool>,
    /// A table of tags: `[tags]` then `region = "eu"` lines.
    pub(crate) tags: Option<mesh_types::tags::Tags>,
}

/// A duration in a config file: text (`"5m"`, see [`parse_duration`]) or a number of
/// seconds (`300`, `2.5`: what `meshctl agent --check-config` prints, so its output is
/// itself a valid config file).
fn duration_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Seconds(f64),
    }
    let written: Option<Written> = Option::deserialize(d)?;
    written
        .map(|w| match w {
            Written::Text(t) => parse_duration(&t),
            Written::Seconds(s) => Duration::try_from_secs_f64(s)
                .map_err(|_| format!("{s} is not a duration in seconds (negative or too large)")),
        })
        .transpose()
        .map_err(serde::de::Error::custom)
}

/// Parses a duration written `1500ms`, `30s`, `2.5s`, `5m` or `1h` (a bare number is
/// seconds).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: use e.g. 500ms, 30s, 5m or 1h"
            ))
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: use e.g. 500ms, 30s, 5m or 1h"))?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("{text:?} is not a duration (negative or too large)"))
}

impl Layer {
    /// Reads a TOML config file. Errors name the file, the line and the key.
    pub(crate) fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            failure(
                format!(
                    "cannot read config file {}: {}",
                    path.display(),
                    io_reason(&e)
                ),
                "check the --config path (or MESH_CONFIG)",
            )
        })?;
        Self::from_toml(&text).map_err(|(line, message)| {
            failure(
                format!("config file {}:{line}: {message}", path.display()),
                format!("fix that line; valid keys are {KEYS}"),
            )
        })
    }

    /// Parses TOML text; on error, the 1-based line and a one-line message.
    pub(crate) fn from_toml(text: &str) -> Result<Self, (usize, String)> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e.span().map_or(1, |span| {
                1 + text[..span.start.min(text.len())].matches('\n').count()
            });
            (line, one_line(e.message()))
        })
    }

    /// Every setting of `self`, and those of `lower` where `self` has none.
    pub(crate) fn over(self, lower: Self) -> Self {
        Self {
            name: self.name.or(lower.name),
            bind: self.bind.or(lower.bind),
            advertise: self.advertise.or(lower.advertise),
            seeds: self.seeds.or(lower.seeds),
            dns_server: self.dns_server.or(lower.dns_server),
            data_dir: self.data_dir.or(lower.data_dir),
            admin: self.admin.or(lower.admin),
            admin_token: self.admin_token.or(lower.admin_token),
            ca: self.ca.or(lower.ca),
            cert: self.cert.or(lower.cert),
            key: self.key.or(lower.key),
            profile: self.profile.or(lower.profile),
            packet_size: self.packet_size.or(lower.packet_size),
            permdown: self.permdown.or(lower.permdown),
            mailbox_capacity: self.mailbox_capacity.or(lower.mailbox_capacity),
            max_processes: self.max_processes.or(lower.max_processes),
            max_monitors: self.max_monitors.or(lower.max_monitors),
            voters: self.voters.or(lower.voters),
            shards: self.shards.or(lower.shards),
            claims_ttl: self.claims_ttl.or(lower.claims_ttl),
            claims_reassign: self.claims_reassign.or(lower.claims_reassign),
            tags: self.tags.or(lower.tags),
        }
    }

    /// Fills in defaults and validates. `ca`, `cert` and `key` default to
    /// `<data_dir>/ca.crt`, `<data_dir>/<name>.crt` and `<data_dir>/<name>.key`.
    pub(crate) fn resolve(self) -> Result<AgentConfig> {
        let Some(name) = self.name else {
            return Err(failure(
                "no node name given",
                "pass --name NAME (or set MESH_NAME, or name = \"...\" in the config file)",
            ));
        };
        validate_name(&name).map_err(|e| {
            failure(
                format!("name: {e}"),
                "node names are short DNS-like labels, e.g. n1 or web-3",
            )
        })?;
        let tls_file =
            |given: Option<PathBuf>, default: String, flag: &str| match (given, &self.data_dir) {
                (Some(path), _) => Ok(path),
                (None, Some(dir)) => Ok(dir.join(default)),
                (None, None) => Err(failure(
                    format!("no {flag} file given and no data directory to find it in"),
                    format!(
                        "pass --{flag} FILE, or --data-dir DIR holding ca.crt, {name}.crt and \
                     {name}.key (make them with `meshctl cert ca` and `meshctl cert issue`)"
                    ),
                )),
            };
        let ca = tls_file(self.ca, "ca.crt".to_owned(), "ca")?;
        let cert = tls_file(self.cert, format!("{name}.crt"), "cert")?;
        let key = tls_file(self.key, format!("{name}.key"), "key")?;

        let mut config = AgentConfig::new(name, ca, cert, key);
        if let Some(bind) = self.bind {
            config.bind = bind;
        }
        config.advertise = self.advertise;
        for item in self.seeds.unwrap_or_default() {
            match item {
                SeedItem::Addr(addr) => config.seeds.push(addr),
                SeedItem::Dns(seed) => config.dns_seeds.push(seed),
            }
        }
        config.dns_server = self.dns_server;
        config.data_dir = self.data_dir;
        if let Some(admin) = self.admin {
            config.admin = admin;
        }
        config.admin_token = self.admin_token;
        if let Some(profile) = self.profile {
            config.profile = profile;
        }
        if let Some(packet_size) = self.packet_size {
            config.packet_size = packet_size;
        }
        if let Some(permdown) = self.permdown {
            config.permdown = permdown;
        }
        if let Some(capacity) = self.mailbox_capacity {
            config.mailbox_capacity = capacity;
        }
        if let Some(max) = self.max_processes {
            config.max_processes = max;
        }
        if let Some(max) = self.max_monitors {
            config.max_monitors = max;
        }
        config.voters = self.voters.unwrap_or_default();
        if let Some(shards) = self.shards {
            config.shards = shards;
        }
        if let Some(ttl) = self.claims_ttl {
            config.claims_ttl = ttl;
        }
        if let Some(on) = self.claims_reassign {
            config.claims_reassign = on;
        }
        config.tags = self.tags.unwrap_or_default();
        config.validate().map_err(|e| {
            let hint = match e {
                ConfigError::ClaimsTtl(_) => {
                    "use a TTL from 200ms to 1 day, e.g. --claims-ttl 10s (renews go every TTL/3)"
                }
                ConfigError::AdminTokenWeak(_) | ConfigError::AdminNeedsToken(_) => {
                    "set MESH_ADMIN_TOKEN to a random value, e.g. $(openssl rand -hex 24)"
                }
                ConfigError::Tags(_) => {
                    "tags are KEY=VALUE, e.g. --tag region=eu; at most 64 tags and 512 bytes in all"
                }
                _ => "fix that setting: a flag, a MESH_* variable or a key in the config file",
            };
            failure(e.to_string(), hint)
        })?;
        Ok(config)
    }
}

/// An IO error as a short lower-case reason ("no such file or directory").
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    // Drop the "(os error N)" suffix: the kind says it in words already.
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Failure;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn named(name: &str) -> Layer {
        Layer {
            name: Some(name.into()),
            data_dir: Some("/var/lib/mesh".into()),
            ..Layer::default()
        }
    }

    fn message(err: &anyhow::Error) -> String {
        err.downcast_ref::<Failure>()
            .map_or_else(|| err.to_string(), ToString::to_string)
    }

    #[test]
    fn the_upper_layer_wins_and_gaps_fall_through() {
        let flags = Layer {
            bind: Some(addr("127.0.0.1:1001")),
            ..Layer::default()
        };
        let env = Layer {
            bind: Some(addr("127.0.0.1:2001")),
            admin: Some(addr("127.0.0.1:2002")),
            ..Layer::default()
        };
        let file = Layer {
            bind: Some(addr("127.0.0.1:3001")),
            admin: Some(addr("127.0.0.1:3002")),
            packet_size: Some(900),
            ..named("n1")
        };
        let config = flags.over(env).over(file).resolve().expect("valid");
        assert_eq!(
            config.bind,
            addr("127.0.0.1:1001"),
            "flag beats env and file"
        );
        assert_eq!(config.admin, addr("127.0.0.1:2002"), "env beats file");
        assert_eq!(config.packet_size, 900, "file beats default");
        assert_eq!(config.profile, Profile::Lan, "default");
        assert_eq!(config.name, "n1");
    }

    #[test]
    fn tls_files_default_to_the_data_dir() {
        let config = named("web-3").resolve().expect("valid");
        assert_eq!(config.ca, Path::new("/var/lib/mesh/ca.crt"));
        assert_eq!(config.cert, Path::new("/var/lib/mesh/web-3.crt"));
        assert_eq!(config.key, Path::new("/var/lib/mesh/web-3.key"));

        let explicit = Layer {
            cert: Some("/etc/mesh/me.pem".into()),
            ..named("web-3")
        };
        assert_eq!(
            explicit.resolve().expect("valid").cert,
            Path::new("/etc/mesh/me.pem")
        );
    }

    #[test]
    fn without_a_data_dir_the_tls_files_are_required() {
        let layer = Layer {
            name: Some("n1".into()),
            ..Layer::default()
        };
        let err = layer.resolve().expect_err("no ca");
        assert!(message(&err).contains("no ca file given"), "{err:#}");
    }

    #[test]
    fn a_missing_name_is_a_clear_error() {
        let err = Layer::default().resolve().expect_err("no name");
        assert_eq!(message(&err), "no node name given");
    }

    #[test]
    fn validation_errors_name_the_key() {
        let layer = Layer {
            packet_size: Some(10),
            ..named("n1")
        };
        let err = layer.resolve().expect_err("too small");
        assert!(message(&err).starts_with("packet_size:"), "{err:#}");
    }

    #[test]
    fn a_config_file_uses_the_field_names() {
        let text = r#"
            name = "n2"
            bind = "127.0.0.1:7000"
            seeds = ["127.0.0.1:7001", "127.0.0.1:7002"]
            data_dir = "/tmp/n2"
            profile = "local"
            packet_size = 1000
        "#;
        let layer = Layer::from_toml(text).expect("parses");
        assert_eq!(
            layer.seeds,
            Some(vec![
                SeedItem::Addr(addr("127.0.0.1:7001")),
                SeedItem::Addr(addr("127.0.0.1:7002"))
            ])
        );
        let config = layer.resolve().expect("valid");
        assert_eq!(config.profile, Profile::Local);
        assert_eq!(config.bind, addr("127.0.0.1:7000"));
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../config.example.toml");
        let layer = Layer::from_toml(text).expect("config.example.toml parses");
        let config = layer.resolve().expect("config.example.toml is valid");
        assert_eq!(config.name, "n1");
        assert_eq!(config.seeds.len(), 2);
        assert_eq!(config.voters, ["n1", "n2", "n3"]);
        assert_eq!(config.claims_ttl, Duration::from_secs(10));
    }

    #[test]
    fn a_misspelt_key_is_named_with_its_line() {
        let text = "name = \"n1\"\nnmae = \"n2\"\n";
        let (line, message) = Layer::from_toml(text).expect_err("unknown key");
        assert_eq!(line, 2);
        assert!(message.contains("nmae"), "{message}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn a_bad_value_is_named() {
        let (line, message) = Layer::from_toml("profile = \"fast\"\n").expect_err("bad profile");
        assert_eq!(line, 1);
        assert!(message.contains("fast"), "{message}");
    }

    #[test]
    fn a_config_file_error_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mesh.toml");
        std::fs::write(&path, "name = \"n1\"\nseed = [\"127.0.0.1:1\"]\n").expect("write");
        let err = Layer::from_file(&path).expect_err("unknown key");
        let text = message(&err);
        assert!(text.contains(&format!("{}:2", path.display())), "{text}");
        assert!(text.contains("seed"), "{text}");

        let missing = dir.path().join("nope.toml");
        let err = Layer::from_file(&missing).expect_err("missing");
        assert!(message(&err).contains("no such file"), "{err:#}");
    }

    #[test]
    fn durations_read_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        for bad in ["", "s", "5 weeks", "-3s", "1e400s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn voters_shards_and_claims_ttl_come_from_the_file_and_are_checked() {
        let layer = Layer::from_toml(
            "voters = [\"n1\", \"n2\", \"n3\"]\nshards = 16\nclaims_ttl = \"2s\"\n",
        )
        .expect("valid");
        let config = Layer {
            data_dir: Some("/d".into()),
            ..named("n2")
        }
        .over(layer)
        .resolve()
        .expect("valid");
        assert_eq!(config.voters, ["n1", "n2", "n3"]);
        assert_eq!(config.shards, 16);
        assert_eq!(config.claims_ttl, Duration::from_secs(2));

        let two = Layer {
            voters: Some(vec!["n1".into(), "n2".into()]),
            ..named("n1")
        };
        let err = two.resolve().expect_err("two voters");
        assert!(message(&err).starts_with("voters:"), "{err:#}");

        let short = Layer {
            claims_ttl: Some(Duration::from_millis(50)),
            ..named("n1")
        };
        let err = short.resolve().expect_err("too short");
        assert!(message(&err).starts_with("claims_ttl:"), "{err:#}");
        // 150 ms is below the 200 ms floor (where a renew at TTL/3 plus the 100 ms guard
        // would leave no time).
        let tight = Layer {
            claims_ttl: Some(Duration::from_millis(150)),
            ..named("n1")
        };
        assert!(message(&tight.resolve().expect_err("no time to renew")).starts_with("claims_ttl:"));

        let zero = Layer {
            shards: Some(0),
            ..named("n1")
        };
        assert!(message(&zero.resolve().expect_err("no shards")).starts_with("shards:"));
    }

    #[test]
    fn a_flag_layer_of_voters_replaces_the_files() {
        let flags = Layer {
            voters: Some(vec!["a1".into(), "a2".into(), "a3".into()]),
            ..Layer::default()
        };
        let file = Layer {
            voters: Some(vec!["n1".into(), "n2".into(), "n3".into()]),
            claims_ttl: Some(Duration::from_secs(4)),
            ..named("a1")
        };
        let config = flags.over(file).resolve().expect("valid");
        assert_eq!(config.voters, ["a1", "a2", "a3"], "not merged");
        assert_eq!(config.claims_ttl, Duration::from_secs(4), "file");
        assert!(
            named("n1").resolve().expect("valid").voters.is_empty(),
            "no voters by default: claims are off"
        );
    }

    #[test]
    fn permdown_and_mailbox_capacity_come_from_the_file_and_are_checked() {
        let layer = Layer::from_toml("name = \"n1\"\npermdown = \"90s\"\nmailbox_capacity = 64\n")
            .expect("valid");
        assert_eq!(layer.permdown, Some(Duration::from_secs(90)));
        assert_eq!(layer.mailbox_capacity, Some(64));
        let (line, why) = Layer::from_toml("permdown = \"soon\"\n").expect_err("bad");
        assert_eq!(line, 1);
        assert!(why.contains("soon"), "{why}");
        let short = Layer {
            name: Some("n1".into()),
            ca: Some("ca".into()),
            cert: Some("c".into()),
            key: Some("k".into()),
            permdown: Some(Duration::from_secs(1)),
            ..Layer::default()
        };
        let err = short.resolve().expect_err("too short");
        assert!(message(&err).starts_with("permdown:"), "{err:#}");
    }

    #[test]
    fn check_config_output_is_a_config_file_that_reads_back_the_same() {
        let text = "name = \"n1\"\nca = \"ca.crt\"\ncert = \"n1.crt\"\nkey = \"n1.key\"\n\
                    permdown = \"90s\"\nclaims_ttl = \"1500ms\"\nseeds = [\"10.0.0.2:7946\"]\n\
                    [tags]\nregion = \"eu\"\n";
        let first = Layer::from_toml(text)
            .expect("parses")
            .resolve()
            .expect("valid");
        let printed = toml::to_string(&first).expect("prints");
        let second = Layer::from_toml(&printed)
            .unwrap_or_else(|e| panic!("--check-config output does not parse: {e:?}\n{printed}"))
            .resolve()
            .expect("valid");
        assert_eq!(toml::to_string(&second).expect("prints"), printed);
        assert_eq!(second.permdown, Duration::from_secs(90));
        assert_eq!(second.claims_ttl, Duration::from_millis(1500));
        // Durations may be written as seconds, as --check-config prints them.
        let secs = Layer::from_toml("permdown = 120\nclaims_ttl = 2.5\n").expect("parses");
        assert_eq!(secs.permdown, Some(Duration::from_secs(120)));
        assert_eq!(secs.claims_ttl, Some(Duration::from_millis(2500)));
        assert!(Layer::from_toml("permdown = -1\n").is_err());
    }
}

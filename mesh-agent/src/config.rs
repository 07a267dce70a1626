//! Agent configuration and its validation.
//!
//! [`AgentConfig`] is what [`crate::runtime::Agent::start`] needs. `meshctl agent`
//! builds it from flags, `MESH_*` environment variables and a TOML file (precedence
//! flag > env > file > default); library users build it directly. Either way
//! [`AgentConfig::validate`] runs before anything binds, and every error names the key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use mesh_core::discovery::DnsSeed;
use mesh_core::identity::{validate_name, NameError};
use mesh_core::membership::{Profile, DEFAULT_PACKET_SIZE, MAX_PACKET_SIZE, MIN_PACKET_SIZE};

/// Default SWIM/QUIC port.
pub const DEFAULT_PORT: u16 = 7946;
/// Default admin API port (on loopback); defined with the API's wire types.
pub use mesh_api::DEFAULT_ADMIN_PORT;

/// Everything an agent needs to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    /// Node name; must equal the name in `cert`.
    pub name: String,
    /// UDP address the QUIC endpoint binds.
    pub bind: SocketAddr,
    /// Address peers dial to reach us; defaults to `bind`, required when `bind` is a
    /// wildcard address.
    pub advertise: Option<SocketAddr>,
    /// Peers to join through.
    pub seeds: Vec<SocketAddr>,
    /// Seeds given by DNS name (`dns://NAME:PORT`, `dns+srv://_mesh._udp.NAME`),
    /// looked up while the node is alone and mixed with `seeds`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_seeds: Vec<DnsSeed>,
    /// The DNS server DNS seeds are looked up at (IP:PORT); `None`: the system's
    /// resolvers (`/etc/resolv.conf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_server: Option<SocketAddr>,
    /// Where durable state lives (the boot counter that makes incarnations grow).
    pub data_dir: Option<PathBuf>,
    /// Admin HTTP API address.
    pub admin: SocketAddr,
    /// Bearer token for the admin API; required when `admin` is not loopback.
    pub admin_token: Option<String>,
    /// Cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
    /// SWIM timing profile.
    pub profile: Profile,
    /// SWIM packet size in bytes.
    pub packet_size: usize,
    /// How long a down node's group entries and names stay hidden (and come back
    /// without a transfer if it returns) before they are purged.
    #[serde(with = "crate::config::secs")]
    pub permdown: Duration,
    /// Capacity of a process mailbox, in messages.
    pub mailbox_capacity: usize,
    /// Most live processes this agent holds (`listen` streams, library spawns); one
    /// more is refused with a clear error (HTTP 507).
    #[serde(default = "default_max_processes")]
    pub max_processes: usize,
    /// Most open group monitors (`monitor` streams, library monitors); one more is
    /// refused the same way.
    #[serde(default = "default_max_monitors")]
    pub max_monitors: usize,
    /// The voters of the quorum plane (3 or 5 node names, the same on every node);
    /// empty: claims and strong names are off.
    #[serde(default)]
    pub voters: Vec<String>,
    /// Number of claim shards (fixed at cluster creation; the same on every node).
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// Default TTL of claims.
    #[serde(with = "crate::config::secs", default = "default_claims_ttl")]
    pub claims_ttl: Duration,
    /// Hand a dead holder's tasks to the HRW-preferred live session of each task when
    /// its session is evicted (the new holder's application gets `Assigned` with the
    /// token); off: they are freed for the next claim.
    #[serde(default)]
    pub claims_reassign: bool,
    /// This node's tags at boot (`key=value` labels, gossiped with membership; changed
    /// at run time with `meshctl tags`). Limits: [`mesh_types::tags`].
    #[serde(default)]
    pub tags: mesh_types::tags::Tags,
}

/// Default number of claim shards.
pub const DEFAULT_SHARDS: u32 = 64;
/// Most claim shards.
pub const MAX_SHARDS: u32 = 4096;
/// Default claims TTL.
pub const DEFAULT_CLAIMS_TTL: Duration = Duration::from_secs(10);

fn default_shards() -> u32 {
    DEFAULT_SHARDS
}

fn default_claims_ttl() -> Duration {
    DEFAULT_CLAIMS_TTL
}

/// Default permdown period.
pub const DEFAULT_PERMDOWN: Duration = Duration::from_secs(300);
/// Shortest permdown accepted: shorter than a few SWIM detection periods would purge
/// nodes that are merely slow.
pub const MIN_PERMDOWN: Duration = Duration::from_secs(5);
/// Largest mailbox capacity accepted.
pub const MAX_MAILBOX_CAPACITY: usize = 1 << 20;

/// Durations as (fractional) seconds in config files and `--check-config` output.
pub(crate) mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

impl AgentConfig {
    /// A config with defaults for everything but the name and the TLS files.
    pub fn new(name: impl Into<String>, ca: PathBuf, cert: PathBuf, key: PathBuf) -> Self {
        Self {
            name: name.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            advertise: None,
            seeds: Vec::new(),
            dns_seeds: Vec::new(),
            dns_server: None,
            data_dir: None,
            admin: SocketAddr::from(([127, 0, 0, 1], DEFAULT_ADMIN_PORT)),
            admin_token: None,
            ca,
            cert,
            key,
            profile: Profile::Lan,
            packet_size: DEFAULT_PACKET_SIZE,
            permdown: DEFAULT_PERMDOWN,
            mailbox_capacity: mesh_core::process::DEFAULT_MAILBOX_CAPACITY,
            max_processes: default_max_processes(),
            max_monitors: default_max_monitors(),
            voters: Vec::new(),
            shards: DEFAULT_SHARDS,
            claims_ttl: DEFAULT_CLAIMS_TTL,
            claims_reassign: false,
            tags: mesh_types::tags::Tags::new(),
        }
    }

    /// The address peers should dial.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.bind)
    }

    /// Checks the configuration (the node settings, then the admin settings); the
    /// error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_node()?;
        self.validate_admin()
    }

    /// Checks everything but the admin API settings (`admin`, `admin_token`): what an
    /// agent started without the admin API needs. The error names the offending key.
    pub fn validate_node(&self) -> Result<(), ConfigError> {
        validate_name(&self.name).map_err(ConfigError::Name)?;
        mesh_core::claims::check_ttl(self.claims_ttl).map_err(ConfigError::ClaimsTtl)?;
        if self.advertise.is_none() && self.bind.ip().is_unspecified() {
            return Err(ConfigError::NeedAdvertise(self.bind));
        }
        if let Some(adv) = self.advertise {
            if adv.ip().is_unspecified() || adv.port() == 0 {
                return Err(ConfigError::BadAdvertise(adv));
            }
        }
        if self.advertise.is_none() && self.bind.port() == 0 {
            return Err(ConfigError::NeedAdvertise(self.bind));
        }
        if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&self.packet_size) {
            return Err(ConfigError::PacketSize(self.packet_size));
        }
        if self.permdown < MIN_PERMDOWN {
            return Err(ConfigError::Permdown(self.permdown));
        }
        if !(1..=MAX_MAILBOX_CAPACITY).contains(&self.mailbox_capacity) {
            return Err(ConfigError::MailboxCapacity(self.mailbox_capacity));
        }
        if !(1..=MAX_LIMIT).contains(&self.max_processes) {
            return Err(ConfigError::Limit("max_processes", self.max_processes));
        }
        if !(1..=MAX_LIMIT).contains(&self.max_monitors) {
            return Err(ConfigError::Limit("max_monitors", self.max_monitors));
        }
        if !self.voters.is_empty() {
            mesh_core::quorum::VoterNames::new(self.voters.iter().cloned())
                .map_err(|e| ConfigError::Voters(e.to_string()))?;
            if self.voters.contains(&self.name) && self.data_dir.is_none() {
                return Err(ConfigError::VoterNeedsDataDir);
            }
        }
        if !(1..=MAX_SHARDS).contains(&self.shards) {
            return Err(ConfigError::Shards(self.shards));
        }
        mesh_types::tags::validate(&self.tags).map_err(ConfigError::Tags)?;
        if let Some(seed) = self
            .seeds
            .iter()
            .find(|s| s.ip().is_unspecified() || s.port() == 0)
        {
            return Err(ConfigError::BadSeed(*seed));
        }
        if let Some(server) = self.dns_server {
            if server.ip().is_unspecified() || server.port() == 0 {
                return Err(ConfigError::DnsServer(format!(
                    "{server} is not an address a query can be sent to"
                )));
            }
        }
        Ok(())
    }

    /// Checks the admin API settings: an `admin` address other hosts can reach needs
    /// an `admin_token`, and a token, wherever it is set, must be one a guess cannot
    /// find: at least [`MIN_ADMIN_TOKEN_LEN`] characters, none of them whitespace or a
    /// control character. A blank token (`MESH_ADMIN_TOKEN=' '`) is refused here, never
    /// taken as "no token". The error names the key, never the token.
    pub fn validate_admin(&self) -> Result<(), ConfigError> {
        match self.admin_token.as_deref() {
            Some(token) => check_admin_token(token)?,
            None if !self.admin.ip().is_loopback() => {
                return Err(ConfigError::AdminNeedsToken(self.admin))
            }
            None => {}
        }
        Ok(())
    }
}

/// The largest `max_processes` or `max_monitors` accepted.
pub const MAX_LIMIT: usize = 10_000_000;

fn default_max_processes() -> usize {
    mesh_core::node::DEFAULT_MAX_PROCESSES
}

fn default_max_monitors() -> usize {
    mesh_core::node::DEFAULT_MAX_MONITORS
}

/// The shortest admin token accepted: 16 characters, as `openssl rand -hex 8` prints.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Refuses a token that is short, or holds whitespace or control characters (which
/// an `Authorization: Bearer` header cannot carry intact, and which a blank or padded
/// value from a shell or a Secret usually means).
fn check_admin_token(token: &str) -> Result<(), ConfigError> {
    if let Some(bad) = token.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::AdminTokenWeak(format!(
            "contains {}, which a bearer token cannot hold (a blank or padded value?)",
            if bad.is_whitespace() {
                "whitespace"
            } else {
                "a control character"
            }
        )));
    }
    let len = token.chars().count();
    if len < MIN_ADMIN_TOKEN_LEN {
        return Err(ConfigError::AdminTokenWeak(format!(
            "is {len} characters; at least {MIN_ADMIN_TOKEN_LEN} are required \
             (for example `openssl rand -hex 24`)"
        )));
    }
    Ok(())
}

/// A configuration value that cannot work. Nothing has been started.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `name` is not a valid node name.
    #[error("name: {0}")]
    Name(NameError),
    /// `bind` is a wildcard or ephemeral address and no `advertise` was given.
    #[error("advertise: bind address {0} is a wildcard or port 0, so peers cannot dial it; set advertise to a reachable address")]
    NeedAdvertise(SocketAddr),
    /// `advertise` is not dialable.
    #[error("advertise: {0} is not an address peers can dial")]
    BadAdvertise(SocketAddr),
    /// `packet_size` is out of range.
    #[error("packet_size: {0} is outside {MIN_PACKET_SIZE}..={MAX_PACKET_SIZE} bytes (SWIM needs at least {MIN_PACKET_SIZE}; a first QUIC datagram carries at most {MAX_PACKET_SIZE})")]
    PacketSize(usize),
    /// `admin` is reachable from other hosts but no token protects it.
    #[error("admin_token: the admin API on {0} is not loopback, so a bearer token is required")]
    AdminNeedsToken(SocketAddr),
    /// `admin_token` is set but too weak to protect anything (blank, short, or holding
    /// whitespace).
    #[error("admin_token: the token {0}")]
    AdminTokenWeak(String),
    /// A seed is not dialable.
    #[error("seeds: {0} is not an address peers can dial")]
    BadSeed(SocketAddr),
    /// `dns_server` is not usable, or (with no `dns_server`) the system resolver
    /// configuration could not be read.
    #[error("dns_server: {0}")]
    DnsServer(String),
    /// `permdown` is too short.
    #[error("permdown: {0:?} is below the minimum of {MIN_PERMDOWN:?} (a slow node would lose its groups and names)")]
    Permdown(Duration),
    /// The dissemination settings are inconsistent (a bug in the defaults, not a user
    /// setting today).
    #[error("dissemination: {0}")]
    Dissemination(String),
    /// `voters` is not a list of 3 or 5 distinct node names.
    #[error("voters: {0}")]
    Voters(String),
    /// This node is a voter but has no data directory for its durable state.
    #[error("data_dir: this node is a voter, and a voter must keep its acceptor state in a data directory")]
    VoterNeedsDataDir,
    /// `shards` is out of range.
    #[error("shards: {0} is outside 1..={MAX_SHARDS}")]
    Shards(u32),
    /// `max_processes` or `max_monitors` (named) is out of range.
    #[error("{0}: {1} is outside 1..={MAX_LIMIT}")]
    Limit(&'static str, usize),
    /// `mailbox_capacity` is out of range.
    #[error("mailbox_capacity: {0} is outside 1..={MAX_MAILBOX_CAPACITY} messages")]
    MailboxCapacity(usize),
    /// `claims_ttl` is outside what claims accept (200 ms ..= 1 day).
    #[error("claims_ttl: {0}")]
    ClaimsTtl(mesh_core::claims::TtlError),
    /// `tags` break the tag rules or limits.
    #[error("tags: {0}")]
    Tags(mesh_types::tags::TagError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> AgentConfig {
        AgentConfig::new("n1", "ca.crt".into(), "n1.crt".into(), "n1.key".into())
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(base().validate(), Ok(()));
    }

    #[test]
    fn wildcard_bind_needs_advertise() {
        let mut c = base();
        c.bind = "0.0.0.0:7946".parse().expect("addr");
        assert!(matches!(c.validate(), Err(ConfigError::NeedAdvertise(_))));
        c.advertise = Some("10.0.0.1:7946".parse().expect("addr"));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn public_admin_needs_a_token() {
        let mut c = base();
        c.admin = "0.0.0.0:7947".parse().expect("addr");
        assert!(matches!(c.validate(), Err(ConfigError::AdminNeedsToken(_))));
        c.admin_token = Some("0123456789abcdef".into());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn resource_limits_are_bounded_and_named() {
        for key in ["max_processes", "max_monitors"] {
            for bad in [0, MAX_LIMIT + 1] {
                let mut c = base();
                match key {
                    "max_processes" => c.max_processes = bad,
                    _ => c.max_monitors = bad,
                }
                let err = c.validate().expect_err("out of range");
                assert!(err.to_string().starts_with(&format!("{key}:")), "{err}");
            }
        }
        let mut c = base();
        c.max_processes = 1;
        c.max_monitors = MAX_LIMIT;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn blank_short_or_padded_tokens_are_refused_wherever_the_admin_api_listens() {
        for admin in ["0.0.0.0:7947", "127.0.0.1:7947"] {
            let mut c = base();
            c.admin = admin.parse().expect("addr");
            for weak in [
                "",
                " ",
                "                ",
                "s3cret",
                "0123456789abcde",
                "0123456789abcdef\n",
                " 0123456789abcdef",
                "0123456789\tabcdef",
            ] {
                c.admin_token = Some(weak.into());
                let err = c.validate().expect_err(weak);
                assert!(
                    matches!(err, ConfigError::AdminTokenWeak(_)),
                    "{weak:?}: {err}"
                );
                let text = err.to_string();
                assert!(text.starts_with("admin_token:"), "{text}");
                assert!(
                    weak.trim().is_empty() || !text.contains(weak.trim()),
                    "the error shows the token: {text}"
                );
            }
            c.admin_token = Some("0123456789abcdef".into());
            assert_eq!(c.validate(), Ok(()), "{admin}");
        }
    }

    #[test]
    fn node_settings_are_checked_apart_from_admin_settings() {
        // A public admin address without a token: only the admin part refuses it, so an
        // agent started without the admin API is not refused for it.
        let mut c = base();
        c.admin = "0.0.0.0:7947".parse().expect("addr");
        assert_eq!(c.validate_node(), Ok(()));
        assert!(matches!(
            c.validate_admin(),
            Err(ConfigError::AdminNeedsToken(_))
        ));
        assert!(matches!(c.validate(), Err(ConfigError::AdminNeedsToken(_))));
        // A node setting is refused by the node part, naming its key, whatever admin is.
        c.packet_size = 100;
        let err = c.validate_node().expect_err("packet size");
        assert!(err.to_string().starts_with("packet_size:"), "{err}");
        c.packet_size = DEFAULT_PACKET_SIZE;
        c.seeds = vec!["0.0.0.0:7946".parse().expect("addr")];
        assert!(matches!(c.validate_node(), Err(ConfigError::BadSeed(_))));
        assert_eq!(base().validate_admin(), Ok(()));
    }

    #[test]
    fn packet_size_is_bounded_and_the_error_names_the_key() {
        let mut c = base();
        c.packet_size = 100;
        let err = c.validate().expect_err("too small");
        assert!(err.to_string().starts_with("packet_size:"));
        c.packet_size = 1400;
        assert!(matches!(c.validate(), Err(ConfigError::PacketSize(1400))));
    }

    #[test]
    fn permdown_and_mailbox_capacity_are_bounded() {
        let mut c = base();
        c.permdown = Duration::from_secs(1);
        assert!(c
            .validate()
            .expect_err("short")
            .to_string()
            .starts_with("permdown:"));
        c.permdown = DEFAULT_PERMDOWN;
        c.mailbox_capacity = 0;
        assert!(c
            .validate()
            .expect_err("zero")
            .to_string()
            .starts_with("mailbox_capacity:"));
    }

    #[test]
    fn voters_are_three_or_five_names_and_a_voter_needs_a_data_dir() {
        let mut c = base();
        c.voters = vec!["n1".into(), "n2".into()];
        assert!(c
            .validate()
            .expect_err("two")
            .to_string()
            .starts_with("voters:"));
        c.voters = vec!["n1".into(), "n2".into(), "n3".into()];
        assert_eq!(c.validate(), Err(ConfigError::VoterNeedsDataDir));
        c.data_dir = Some("/tmp/x".into());
        assert_eq!(c.validate(), Ok(()));
        c.shards = 0;
        assert_eq!(c.validate(), Err(ConfigError::Shards(0)));
    }

    #[test]
    fn a_claims_ttl_below_the_minimum_is_refused_naming_claims_ttl() {
        let mut c = base();
        c.claims_ttl = Duration::from_millis(199);
        let err = c.validate().expect_err("below 200 ms");
        assert_eq!(
            err,
            ConfigError::ClaimsTtl(mesh_core::claims::TtlError { ttl_ms: 199 })
        );
        assert_eq!(
            err.to_string(),
            "claims_ttl: claims ttl 199 ms is outside 200..=86400000 ms"
        );
        c.claims_ttl = Duration::from_secs(86_400) + Duration::from_millis(1);
        assert!(c
            .validate()
            .expect_err("above a day")
            .to_string()
            .starts_with("claims_ttl:"));
    }

    #[test]
    fn a_good_claims_ttl_is_accepted_and_the_holder_agrees() {
        for ttl in [
            Duration::from_millis(200),
            DEFAULT_CLAIMS_TTL,
            Duration::from_secs(86_400),
        ] {
            let mut c = base();
            c.claims_ttl = ttl;
            assert_eq!(c.validate(), Ok(()), "{ttl:?}");
            // What the agent builds from it (the quorum plane's default guard and
            // drift) accepts it too, so the agent cannot fail later at start.
            let mut holder = mesh_core::claims::HolderConfig::new("n1", 1, DEFAULT_SHARDS, 3);
            holder.ttl = ttl;
            assert_eq!(holder.validate(), Ok(()), "{ttl:?}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let mut c = base();
        c.name = "bad name".into();
        assert!(c
            .validate()
            .expect_err("bad")
            .to_string()
            .starts_with("name:"));
    }
}

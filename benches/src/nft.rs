//! Byte counters on loopback ports with nftables, to measure what agents really put on
//! the wire, for any system (mesh's own metric is cross-checked against this).
//!
//! The harness creates its own table `inet meshbench` with one chain on the `output`
//! hook — every packet sent on loopback passes it exactly once — and named counters:
//!
//! - `bytes_udp`: UDP packets whose source port, or else destination port, is an agent port
//!   (SWIM datagrams and QUIC for mesh; memberlist's UDP for serf);
//! - `bytes_tcp`: TCP segments from or to an agent port (serf's push-pull and fallback
//!   probes). Admin/RPC ports used for polling are not agent ports and are not counted.
//!
//! Byte counts are whole IP packets (IPv4 + UDP/TCP headers included). The table is
//! deleted when [`NftCounters`] is dropped, and by the Ctrl-C handler; no other table
//! is ever touched.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cleanup;

/// Address family of the table.
const FAMILY: &str = "inet";
/// The harness's own table.
pub const TABLE: &str = "meshbench";
/// Bytes of IPv4 + UDP headers on every UDP packet.
pub const UDP_IP_HEADERS: u64 = 28;

/// Packet and byte totals of one counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Packets.
    pub packets: u64,
    /// Bytes, whole IP packets.
    pub bytes: u64,
}

/// What [`NftCounters::read`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// UDP from/to agent ports.
    pub udp: Count,
    /// TCP from/to agent ports.
    pub tcp: Count,
}

impl Counts {
    /// All bytes, IP level.
    pub fn total_bytes(&self) -> u64 {
        self.udp.bytes + self.tcp.bytes
    }

    /// UDP payload bytes (IP and UDP headers removed), comparable to what an
    /// application counts per datagram.
    pub fn udp_payload_bytes(&self) -> u64 {
        self.udp
            .bytes
            .saturating_sub(UDP_IP_HEADERS * self.udp.packets)
    }
}

/// Why nft cannot be used here, or `None` if it can (`nft list tables` works).
pub fn unavailable_reason() -> Option<String> {
    match Command::new("nft").args(["list", "tables"]).output() {
        Err(e) => Some(format!(
            "nft not runnable ({e}); install Debian package nftables"
        )),
        Ok(out) if !out.status.success() => Some(format!(
            "nft list tables failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// The `meshbench` table while it exists; deleted on drop.
#[derive(Debug)]
pub struct NftCounters {
    /// Whether the table is still there.
    installed: bool,
}

impl NftCounters {
    /// Creates the table with counters for `ports` (counting starts now). Fails if a
    /// table of that name already exists (left by a killed run: delete it by hand with
    /// `nft delete table inet meshbench`).
    pub fn install(ports: &[u16]) -> Result<Self> {
        if ports.is_empty() {
            bail!("no ports to count");
        }
        let set = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let script = format!(
            "table {FAMILY} {TABLE} {{
  counter bytes_udp {{ }}
  counter bytes_tcp {{ }}
  set ports {{ type inet_service; elements = {{ {set} }} }}
  chain out {{
    type filter hook output priority 0; policy accept;
    udp sport @ports counter name \"bytes_udp\"
    udp sport != @ports udp dport @ports counter name \"bytes_udp\"
    tcp sport @ports counter name \"bytes_tcp\"
    tcp sport != @ports tcp dport @ports counter name \"bytes_tcp\"
  }}
}}
"
        );
        // `nft -f` adds to an existing table silently; refuse to share one.
        let exists = Command::new("nft")
            .args(["list", "table", FAMILY, TABLE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running nft")?;
        if exists.success() {
            bail!(
                "nft table {FAMILY} {TABLE} already exists (left by an interrupted run?): \
                 `nft delete table {FAMILY} {TABLE}` removes it"
            );
        }
        // Registered first so that a Ctrl-C during `nft -f` still deletes it. The
        // script is applied atomically: on failure there is nothing to delete.
        cleanup::register_nft_table(FAMILY, TABLE);
        if let Err(e) = run_nft_script(&script) {
            cleanup::deregister_nft_table(FAMILY, TABLE);
            return Err(e);
        }
        Ok(Self { installed: true })
    }

    /// Current totals.
    pub fn read(&self) -> Result<Counts> {
        let out = Command::new("nft")
            .args(["-j", "list", "counters", "table", FAMILY, TABLE])
            .output()
            .context("running nft")?;
        if !out.status.success() {
            bail!(
                "nft list counters: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        parse_counters(&String::from_utf8_lossy(&out.stdout))
    }

    /// Deletes the table now.
    pub fn remove(mut self) -> Result<()> {
        self.delete()
    }

    /// Deletes the table if it is still there.
    fn delete(&mut self) -> Result<()> {
        if !self.installed {
            return Ok(());
        }
        self.installed = false;
        cleanup::deregister_nft_table(FAMILY, TABLE);
        let out = Command::new("nft")
            .args(["delete", "table", FAMILY, TABLE])
            .output()
            .context("running nft")?;
        if !out.status.success() {
            bail!(
                "nft delete table {FAMILY} {TABLE}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for NftCounters {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Runs an nft script given on stdin.
fn run_nft_script(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft -f -")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft -f failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Reads the `udp` and `tcp` counters out of `nft -j list counters` output.
fn parse_counters(json: &str) -> Result<Counts> {
    let value: Value = serde_json::from_str(json).context("parsing nft -j output")?;
    let items = value["nftables"]
        .as_array()
        .context("nft -j output without an nftables array")?;
    let mut counts = Counts::default();
    for counter in items.iter().filter_map(|item| item.get("counter")) {
        let count = Count {
            packets: counter["packets"].as_u64().unwrap_or(0),
            bytes: counter["bytes"].as_u64().unwrap_or(0),
        };
        match counter["name"].as_str() {
            Some("bytes_udp") => counts.udp = count,
            Some("bytes_tcp") => counts.tcp = count,
            _ => {}
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_counters_from_nft_json() -> Result<()> {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "inet", "name": "bytes_tcp", "table": "meshbench", "handle": 2, "packets": 3, "bytes": 180}},
            {"counter": {"family": "inet", "name": "bytes_udp", "table": "meshbench", "handle": 1, "packets": 10, "bytes": 1280}}]}"#;
        let counts = parse_counters(json)?;
        assert_eq!(
            counts.udp,
            Count {
                packets: 10,
                bytes: 1280
            }
        );
        assert_eq!(
            counts.tcp,
            Count {
                packets: 3,
                bytes: 180
            }
        );
        assert_eq!(counts.total_bytes(), 1460);
        assert_eq!(counts.udp_payload_bytes(), 1000);
        Ok(())
    }
}

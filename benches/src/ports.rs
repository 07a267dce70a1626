//! Free loopback ports for agents.
//!
//! Ports are drawn from 20000..32000, below Linux's default ephemeral range
//! (32768..60999), so an outgoing connection of some agent can never be handed a port
//! that another agent is about to bind (which matters when a killed agent restarts on
//! its old port). Each port is checked free for both TCP and UDP, because serf listens
//! on both on its bind port, and held until the whole batch is chosen so no port is
//! handed out twice.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use anyhow::{bail, Result};

/// First port tried.
const LOW: u16 = 20_000;
/// One past the last port tried.
const HIGH: u16 = 32_000;

/// `count` distinct ports on 127.0.0.1 that were free for TCP and UDP just now.
///
/// `salt` varies the starting point so that consecutive runs do not reuse the same
/// ports (a socket of a just-killed agent may linger in `TIME_WAIT`).
pub fn free_ports(count: usize, salt: u64) -> Result<Vec<u16>> {
    let span = u64::from(HIGH - LOW);
    let mut held = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for step in 0..span {
        if ports.len() == count {
            break;
        }
        let offset = (salt.wrapping_mul(7919).wrapping_add(step)) % span;
        let port = LOW + u16::try_from(offset)?;
        let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) else {
            continue;
        };
        let Ok(udp) = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)) else {
            continue;
        };
        held.push((tcp, udp));
        ports.push(port);
    }
    if ports.len() < count {
        bail!(
            "found only {} free ports in {LOW}..{HIGH}, needed {count}",
            ports.len()
        );
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_distinct_ports_in_range() -> Result<()> {
        let ports = free_ports(20, 3)?;
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 20);
        assert!(ports.iter().all(|p| (LOW..HIGH).contains(p)));
        Ok(())
    }
}

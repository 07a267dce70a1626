//! A minimal client for serf's agent RPC (msgpack over TCP), enough to list members.
//!
//! Spawning `serf members -format json` for every poll would start a Go process per
//! agent every 50 ms on a 2-core machine and disturb the cluster being measured; one
//! long-lived RPC connection per agent costs about what mesh's HTTP polling costs.
//!
//! The protocol: every request is a msgpack map `{Command, Seq}` optionally followed
//! by a body map; every response is a map `{Seq, Error}` optionally followed by a body.
//! The first command on a connection must be `handshake` with body `{Version: 1}`.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Request header.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RequestHeader<'a> {
    /// Command name, e.g. `members`.
    command: &'a str,
    /// Sequence number echoed by the response.
    seq: u64,
}

/// Response header.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResponseHeader {
    /// Echo of the request's sequence number.
    seq: u64,
    /// Empty on success.
    error: String,
}

/// Body of `handshake`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Handshake {
    /// RPC protocol version; serf 0.8 speaks 1.
    version: u32,
}

/// Body of the `members` response.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MembersResponse {
    /// Every member this agent knows, itself included.
    members: Vec<SerfMember>,
}

/// One member as a serf agent sees it (fields we do not need are skipped).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SerfMember {
    /// Node name.
    pub name: String,
    /// `alive`, `leaving`, `left`, `failed` (or `none`).
    pub status: String,
}

/// One RPC connection to a serf agent.
#[derive(Debug)]
pub struct SerfRpc {
    /// Buffered read half.
    reader: BufReader<TcpStream>,
    /// Write half.
    writer: TcpStream,
    /// Next sequence number.
    seq: u64,
}

impl SerfRpc {
    /// Connects to the agent's `-rpc-addr` and performs the handshake. Every socket
    /// operation is bounded by `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to serf RPC at {addr}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut rpc = Self {
            reader: BufReader::new(stream),
            writer,
            seq: 0,
        };
        rpc.request("handshake", Some(&Handshake { version: 1 }))?;
        Ok(rpc)
    }

    /// The agent's member list.
    pub fn members(&mut self) -> Result<Vec<SerfMember>> {
        self.request::<()>("members", None)?;
        let body: MembersResponse = self.read()?;
        Ok(body.members)
    }

    /// Sends a request and reads its response header, failing on an RPC error.
    fn request<B: Serialize>(&mut self, command: &str, body: Option<&B>) -> Result<()> {
        let seq = self.seq;
        self.seq += 1;
        let mut buf = rmp_serde::to_vec_named(&RequestHeader { command, seq })?;
        if let Some(body) = body {
            buf.extend(rmp_serde::to_vec_named(body)?);
        }
        self.writer
            .write_all(&buf)
            .with_context(|| format!("sending serf RPC {command}"))?;
        let header: ResponseHeader = self.read()?;
        if header.seq != seq {
            bail!("serf RPC {command}: response seq {} != {seq}", header.seq);
        }
        if !header.error.is_empty() {
            bail!("serf RPC {command}: {}", header.error);
        }
        Ok(())
    }

    /// Reads one msgpack value.
    fn read<T: DeserializeOwned>(&mut self) -> Result<T> {
        rmp_serde::from_read(&mut self.reader).context("reading a serf RPC response")
    }
}

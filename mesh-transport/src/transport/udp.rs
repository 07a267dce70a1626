//! The endpoint's UDP socket, counted: quinn drops what is not QUIC before any
//! connection exists and counts none of it (issue 14: 20 million garbage datagrams at
//! the QUIC port showed in no metric). [`CountingSocket`] wraps quinn's own tokio socket
//! and counts, on the way in, every datagram received and those quinn is certain to
//! drop unparsed: a first byte without the QUIC fixed bit (RFC 9000 §17.2 and §17.3;
//! the endpoint turns greasing it off, RFC 9287, so peers always set it). [`kernel_drops`] reads what the
//! kernel dropped at this socket because its receive buffer was full, which no
//! userspace counter sees.
//!
//! Garbage that does carry the fixed bit (half of random bytes) still reaches quinn,
//! which drops it (an unknown connection id, a bad Initial) without a count; the
//! `received` total shows it as datagrams that made no connection traffic.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// The QUIC fixed bit: set in the first byte of every long- and short-header packet.
const FIXED_BIT: u8 = 0x40;

/// What [`CountingSocket`] counted.
#[derive(Debug, Default)]
pub(crate) struct UdpCounts {
    /// Datagrams received (each GRO segment counts once).
    pub(crate) received: AtomicU64,
    /// Datagrams whose first byte lacks the fixed bit: quinn drops them unparsed.
    pub(crate) not_quic: AtomicU64,
}

impl UdpCounts {
    /// The datagrams in `buf` (`len` bytes cut into `stride`-byte segments): how many,
    /// and how many of them are not QUIC.
    fn segments(buf: &[u8], len: usize, stride: usize) -> (u64, u64) {
        let len = len.min(buf.len());
        let stride = stride.max(1);
        let (mut received, mut not_quic) = (0, 0);
        let mut at = 0;
        while at < len {
            received += 1;
            if buf[at] & FIXED_BIT == 0 {
                not_quic += 1;
            }
            at += stride;
        }
        (received, not_quic)
    }

    /// Adds one receive batch's counts, to the atomics and to the metrics: one metric
    /// update per batch, not per datagram.
    fn add(&self, received: u64, not_quic: u64) {
        if received == 0 {
            return;
        }
        self.received.fetch_add(received, Ordering::Relaxed);
        metrics::counter!(crate::stats::UDP_RECEIVED).increment(received);
        if not_quic > 0 {
            self.not_quic.fetch_add(not_quic, Ordering::Relaxed);
            metrics::counter!(crate::stats::UDP_DROPPED, "reason" => "not_quic")
                .increment(not_quic);
        }
    }

    #[cfg(test)]
    fn count(&self, buf: &[u8], len: usize, stride: usize) {
        let (received, not_quic) = Self::segments(buf, len, stride);
        self.add(received, not_quic);
    }
}

/// quinn's socket with a count of what comes in; everything else is delegated.
pub(crate) struct CountingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    counts: Arc<UdpCounts>,
}

impl CountingSocket {
    pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>, counts: Arc<UdpCounts>) -> Self {
        Self { inner, counts }
    }
}

impl fmt::Debug for CountingSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingSocket")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for CountingSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let result = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &result {
            let (received, not_quic) = bufs
                .iter()
                .zip(meta.iter())
                .take(*n)
                .map(|(buf, m)| UdpCounts::segments(buf, m.len, m.stride))
                .fold((0, 0), |(r, q), (dr, dq)| (r + dr, q + dq));
            self.counts.add(received, not_quic);
        }
        result
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Datagrams the kernel dropped at the UDP socket bound to `local` because its
/// receive buffer was full: the `drops` column of `/proc/self/net/udp` (or `udp6`).
/// `None` where that file does not exist (not Linux) or has no such socket.
pub(crate) fn kernel_drops(local: SocketAddr) -> Option<u64> {
    let file = if local.is_ipv4() {
        "/proc/self/net/udp"
    } else {
        "/proc/self/net/udp6"
    };
    let text = std::fs::read_to_string(file).ok()?;
    parse_kernel_drops(&text, local.port())
}

/// The `drops` of the first socket bound to `port` in a `/proc/net/udp` table (the
/// header line names the columns; `drops` is the last).
fn parse_kernel_drops(table: &str, port: u16) -> Option<u64> {
    let want = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let local = cols.get(1)?;
        if !local.ends_with(&want) {
            return None;
        }
        cols.last()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_segment_is_counted_and_those_without_the_fixed_bit_are_not_quic() {
        let c = UdpCounts::default();
        // Three GRO segments of 4 bytes (the last short): QUIC, garbage, QUIC.
        let buf = [0xC3, 0, 0, 0, 0x01, 0, 0, 0, 0x40, 0];
        c.count(&buf, buf.len(), 4);
        assert_eq!(c.received.load(Ordering::Relaxed), 3);
        assert_eq!(c.not_quic.load(Ordering::Relaxed), 1);
        // One datagram, no GRO (stride = len); a zero stride never loops.
        c.count(&[0x00, 1, 2], 3, 3);
        c.count(&[0x00], 1, 0);
        assert_eq!(c.received.load(Ordering::Relaxed), 5);
        assert_eq!(c.not_quic.load(Ordering::Relaxed), 3);
        // A length past the buffer reads only the buffer.
        c.count(&[0x40], 100, 1);
        assert_eq!(c.received.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn kernel_drops_are_read_from_the_sockets_line() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             1: 0100007F:1F12 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1234 2 0000000000000000 0\n\
             2: 0100007F:1F0A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1235 2 0000000000000000 4711\n";
        assert_eq!(parse_kernel_drops(table, 0x1F0A), Some(4711));
        assert_eq!(parse_kernel_drops(table, 0x1F12), Some(0));
        assert_eq!(parse_kernel_drops(table, 7), None);
    }

    #[test]
    fn this_process_sockets_are_found() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        if std::path::Path::new("/proc/self/net/udp").exists() {
            assert_eq!(
                kernel_drops(addr),
                Some(0),
                "a fresh socket dropped nothing"
            );
        }
    }
}

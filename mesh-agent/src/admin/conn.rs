//! Admin connections, bounded: at most [`ConnLimits::max_connections`] open at once
//! (one more is closed at once and counted), and a connection that has been sent
//! nothing for [`ConnLimits::idle`] is closed (counted). Without these, a client that
//! opens connections and never finishes a request (slowloris) holds them for good:
//! hyper, as axum serves it, has no header timeout.
//!
//! "Sent nothing" is the rule because it needs no HTTP knowledge and fits every route:
//! an ordinary call answers within its own deadline (the quorum routes within 20 s,
//! `sync` and `join` within the at most 60 s they are given; the default is 90 s),
//! a stream (`listen`, `monitor`, `claims/hold`) writes a heartbeat every second, and
//! a keep-alive connection between requests is idle and may be closed (clients dial
//! again). A client that sends headers slowly, or never reads what it asked for (its
//! TCP window stays full), is cut off after `idle`.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The admin listener's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a connection may go without this side writing to it.
    pub idle: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            // Above the longest wait a route makes before answering (sync and join: at
            // most 60 s, the quorum routes 20 s).
            idle: Duration::from_secs(90),
        }
    }
}

/// A [`TcpListener`] that hands out at most `max_connections` [`GuardedIo`]s.
pub(crate) struct GuardedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limits: ConnLimits,
}

impl GuardedListener {
    pub(crate) fn new(inner: TcpListener, limits: ConnLimits) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                counter!("mesh_admin_connections_refused_total", "reason" => "limit").increment(1);
                drop(stream);
                continue;
            };
            gauge!("mesh_admin_connections").increment(1.0);
            return (GuardedIo::new(stream, permit, self.limits.idle), addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One admin connection: closed with `TimedOut` once nothing was written to it for
/// `idle`; frees its slot when dropped.
pub(crate) struct GuardedIo {
    stream: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    timed_out: bool,
    _permit: OwnedSemaphorePermit,
}

impl GuardedIo {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, idle: Duration) -> Self {
        Self {
            stream,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            timed_out: false,
            _permit: permit,
        }
    }

    /// `Err(TimedOut)` once the deadline passed (counted once); registers the waker.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.timed_out || self.deadline.as_mut().poll(cx).is_ready() {
            if !self.timed_out {
                self.timed_out = true;
                counter!("mesh_admin_connections_refused_total", "reason" => "idle_timeout")
                    .increment(1);
            }
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "admin connection idle: nothing sent to it within the limit",
            ));
        }
        Ok(())
    }
}

impl GuardedIo {
    /// One write through `write`, refused once the deadline passed; bytes that went out
    /// move the deadline.
    fn write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        let written = write(Pin::new(&mut self.stream), cx);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            let next = Instant::now() + self.idle;
            self.deadline.as_mut().reset(next);
        }
        written
    }
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        gauge!("mesh_admin_connections").decrement(1.0);
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

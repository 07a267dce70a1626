//! `run_while_holding`: run a singleton job only while its claim is valid.
//!
//! The job is raced against its cancel deadline — the claim's validity minus a margin
//! for the job's own stop latency. When the deadline comes, the deadline source is asked
//! again: if a renew extended it, the race goes on; otherwise the job's future is dropped
//! (cancelled) **before** the validity ends, and the call returns [`Cancelled`].
//!
//! Runtime-agnostic: the caller hands in how to sleep (`tokio::time::sleep_until` in the
//! shell, a simulated clock in tests) and how to read the current deadline (e.g. from a
//! watch channel the protocol task updates with [`Holder::validity`](super::Holder::validity)).
//! Cancellation happens when the future is polled, so the job must be cancel-safe at its
//! await points, and its effects must still carry the token to a
//! [`FencedResource`](super::FencedResource): a job stuck in a blocking call is not
//! stopped by dropping its future.
//!
//! ```no_run
//! use mesh_core::claims::{run_while_holding, Cancelled};
//! use std::time::{Duration, Instant};
//! use tokio::sync::watch;
//!
//! async fn job() -> u32 {
//!     // ... the singleton's work, writing through a FencedResource with its token ...
//!     42
//! }
//!
//! # async fn shell() -> Result<u32, Cancelled> {
//! // The protocol task publishes `holder.validity(task)` minus a stop margin here.
//! let (_tx, lease) = watch::channel(Some(Instant::now() + Duration::from_secs(5)));
//! run_while_holding(
//!     job(),
//!     || *lease.borrow(),
//!     |at| tokio::time::sleep_until(at.into()),
//! )
//! .await
//! # }
//! ```

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

/// The job was cancelled because its claim's validity was about to end (or was already
/// gone). The job's future was dropped; its claim should be treated as lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("cancelled: the claim's validity was about to end")]
pub struct Cancelled {
    /// The deadline that ran out (`None`: there was no valid claim to begin with).
    pub deadline: Option<Instant>,
}

/// Run `job` until it finishes or the claim stops being valid: `deadline()` is the
/// instant by which the job must be cancelled (validity minus margin; `None` when the
/// claim is not held); `sleep_until(t)` completes at `t`.
pub async fn run_while_holding<T, D, S, Z>(
    job: impl Future<Output = T>,
    mut deadline: D,
    mut sleep_until: S,
) -> Result<T, Cancelled>
where
    D: FnMut() -> Option<Instant>,
    S: FnMut(Instant) -> Z,
    Z: Future<Output = ()>,
{
    let mut job = pin!(job);
    let Some(mut until) = deadline() else {
        return Err(Cancelled { deadline: None });
    };
    loop {
        let mut sleep = pin!(sleep_until(until));
        let finished = std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = job.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        if let Some(out) = finished {
            return Ok(out);
        }
        match deadline() {
            Some(next) if next > until => until = next,
            _ => {
                return Err(Cancelled {
                    deadline: Some(until),
                })
            }
        }
    }
}

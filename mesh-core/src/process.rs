//! Processes and their mailboxes.
//!
//! A process is a bounded mailbox on one node, named by a [`Pid`]. The node pushes
//! what arrives for the process into its [`Mailbox`]; whoever owns the process (an
//! application task, or a `meshctl listen` connection) takes it out with
//! [`Mailbox::recv`] or [`Mailbox::try_recv`].
//!
//! The mailbox is a plain data structure shared between the node's loop and the
//! process's owner: a mutex-guarded queue and a waker slot. It needs no runtime, so the
//! deterministic simulator uses the same type and reads mailboxes directly.
//!
//! # Properties
//!
//! - **Bounded**: a mailbox never holds more than its capacity of messages. A push into
//!   a full mailbox fails with [`PushError::Full`] and changes nothing; the sender gets
//!   that error (counted as `mailbox_full`), never a silent drop.
//! - **FIFO**: messages come out in the order they were pushed, so the order between
//!   one sender and one receiver, which the transport keeps per stream, is kept to the
//!   end. System notices ([`Delivery::NameConflict`], pushed with
//!   [`Inbox::push_notice`]) bypass the capacity check (they are bounded by the number
//!   of names the process holds) but keep their place in the order.
//! - **Closed is final**: once the process exits, pushes fail with
//!   [`PushError::Closed`], and `recv` drains what was queued and then returns `None`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::pid::Pid;

/// Default mailbox capacity, in messages.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// Something delivered to a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Delivery {
    /// A message sent to the process (directly, through a name or through a group).
    Message {
        /// The sending process, if the sender was one (`meshctl send` is not).
        from: Option<Pid>,
        /// The payload, as sent.
        #[serde(with = "crate::node::wire::bytes_as_bin")]
        payload: Bytes,
    },
    /// The process lost an eventual name to a concurrent registration elsewhere; its
    /// claim was retracted (or, with policy `unregister_both`, both were).
    NameConflict {
        /// The name.
        name: String,
        /// The process that keeps it (or kept it, with `unregister_both`).
        winner: Pid,
    },
}

/// Why a push into a mailbox failed. The mailbox is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The mailbox holds its capacity of messages: the receiver is slower than its
    /// senders. The sender should back off or shed load.
    #[error("the mailbox is full")]
    Full,
    /// The process has exited.
    #[error("the process has exited")]
    Closed,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
    waker: Option<Waker>,
}

#[derive(Debug)]
struct Inner<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

/// A bounded queue shared between the node's loop (which pushes) and one consumer:
/// a process's [`Mailbox`], or a group monitor's event stream. Cheap to clone (every
/// clone is the same queue).
#[derive(Debug)]
pub struct Inbox<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// A process's mailbox.
pub type Mailbox = Inbox<Delivery>;

impl<T> Inbox<T> {
    /// An open, empty queue holding at most `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    closed: false,
                    waker: None,
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave the queue half-updated: every
        // critical section is a single VecDeque operation.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The capacity in messages.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True if nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the process has exited.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Queues an item, or fails (changing nothing) if the queue is full or closed.
    pub fn push(&self, item: T) -> Result<(), PushError> {
        self.push_inner(item, true)
    }

    /// Queues an item past the capacity (a system notice, bounded by other means), or
    /// fails if the queue is closed.
    pub fn push_notice(&self, item: T) -> Result<(), PushError> {
        self.push_inner(item, false)
    }

    fn push_inner(&self, item: T, bounded: bool) -> Result<(), PushError> {
        let mut s = self.lock();
        if s.closed {
            return Err(PushError::Closed);
        }
        if bounded && s.queue.len() >= self.inner.capacity {
            return Err(PushError::Full);
        }
        s.queue.push_back(item);
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues several messages for the same receiver, all or none: fails without
    /// queuing any if they do not all fit.
    pub fn push_all(&self, items: impl ExactSizeIterator<Item = T>) -> Result<(), PushError> {
        let mut s = self.lock();
        if s.closed {
            return Err(PushError::Closed);
        }
        if s.queue.len() + items.len() > self.inner.capacity {
            return Err(PushError::Full);
        }
        s.queue.extend(items);
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Takes the next item if one is waiting.
    pub fn try_recv(&self) -> Option<T> {
        self.lock().queue.pop_front()
    }

    /// Waits for the next message; `None` once the process exited and the queue is
    /// drained.
    pub fn recv(&self) -> Recv<'_, T> {
        Recv { mailbox: self }
    }

    /// Marks the process exited: later pushes fail, waiting receivers wake up.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The future of [`Inbox::recv`].
#[derive(Debug)]
pub struct Recv<'a, T> {
    mailbox: &'a Inbox<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.mailbox.lock();
        if let Some(d) = s.queue.pop_front() {
            return Poll::Ready(Some(d));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u8) -> Delivery {
        Delivery::Message {
            from: None,
            payload: Bytes::from(vec![n]),
        }
    }

    #[test]
    fn a_full_mailbox_refuses_and_keeps_what_it_holds() {
        let m = Mailbox::new(2);
        assert_eq!(m.push(msg(1)), Ok(()));
        assert_eq!(m.push(msg(2)), Ok(()));
        assert_eq!(m.push(msg(3)), Err(PushError::Full));
        assert_eq!(m.len(), 2);
        assert_eq!(m.try_recv(), Some(msg(1)));
        assert_eq!(m.push(msg(4)), Ok(()));
        assert_eq!(m.try_recv(), Some(msg(2)));
        assert_eq!(m.try_recv(), Some(msg(4)));
        assert_eq!(m.try_recv(), None);
    }

    #[test]
    fn push_all_is_all_or_nothing() {
        let m = Mailbox::new(3);
        m.push(msg(0)).ok();
        assert_eq!(
            m.push_all([msg(1), msg(2), msg(3)].into_iter()),
            Err(PushError::Full)
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m.push_all([msg(1), msg(2)].into_iter()), Ok(()));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn notices_get_through_a_full_mailbox_in_order() {
        let m = Mailbox::new(1);
        m.push(msg(1)).ok();
        let notice = Delivery::NameConflict {
            name: "x".into(),
            winner: Pid::new("n2", 1, 1),
        };
        assert_eq!(m.push(notice.clone()), Err(PushError::Full));
        assert_eq!(m.push_notice(notice.clone()), Ok(()));
        assert_eq!(m.try_recv(), Some(msg(1)));
        assert_eq!(m.try_recv(), Some(notice));
    }

    #[test]
    fn a_closed_mailbox_refuses_pushes_and_drains_then_ends() {
        let m = Mailbox::new(4);
        m.push(msg(1)).ok();
        m.close();
        assert_eq!(m.push(msg(2)), Err(PushError::Closed));
        let mut fut = Box::pin(m.recv());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Some(msg(1))));
        let mut fut = Box::pin(m.recv());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn recv_wakes_when_a_message_arrives() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let m = Mailbox::new(4);
        let mut fut = Box::pin(m.recv());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
        m.push(msg(7)).ok();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Some(msg(7))));
    }
}

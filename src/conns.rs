//! The open connections of one listener (a DNS TCP listener, or the HTTP listener), so that at the
//! connection cap the one idle the longest can be closed for a newcomer instead of the newcomer
//! being refused (RFC 7766 6.2.3 for DNS: under pressure idle connections go first; for HTTP the
//! same rule keeps a crowd of idle keep-alive or half-open sockets from locking clients out).
//!
//! Each listener has its own table: clients one listener refuses (a resolver's `allow` list) or
//! floods cannot take another listener's slots. The cap is passed in at each admission, so it
//! follows the snapshot serving at that moment (it reloads).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

pub struct ConnTable {
    epoch: Instant,
    open: Mutex<Vec<Arc<ConnSlot>>>,
    /// Signalled when a connection ends or goes idle: an accept loop waiting for a slot looks again.
    changed: Notify,
}

pub struct ConnSlot {
    /// Milliseconds since the table's epoch, plus one, at which the connection last went idle
    /// (nothing half-read, nothing being answered or written); 0 while it is busy.
    idle_since: AtomicU64,
    /// Notified when the table closes this connection to make room for a new one.
    close: Notify,
}

impl Default for ConnTable {
    fn default() -> Self {
        ConnTable {
            epoch: Instant::now(),
            open: Mutex::new(Vec::new()),
            changed: Notify::new(),
        }
    }
}

impl ConnTable {
    /// A slot for a new connection, starting idle or busy: a free one, or that of the connection
    /// idle the longest, which is told to close, if it has been idle at least `grace`. None when
    /// `cap` connections are open and none has. The grace gives a client that has just connected
    /// time to send its request: without it, clients reconnecting as fast as they are closed
    /// churn through every slot, closing newcomers before their first request is read.
    pub fn admit(&self, cap: usize, idle: bool, grace: Duration) -> Option<Arc<ConnSlot>> {
        let mut open = self.open.lock().expect("no panics under this lock");
        let before = self.now().saturating_sub(grace.as_millis() as u64);
        while open.len() >= cap.max(1) {
            let victim = open
                .iter()
                .enumerate()
                .filter_map(|(i, c)| match c.idle_since.load(Ordering::Relaxed) {
                    0 => None,
                    t if t > before => None,
                    t => Some((t, i)),
                })
                .min()?
                .1;
            open.swap_remove(victim).close.notify_one();
        }
        let slot = Arc::new(ConnSlot {
            idle_since: AtomicU64::new(if idle { self.now() } else { 0 }),
            close: Notify::new(),
        });
        open.push(slot.clone());
        Some(slot)
    }

    /// Admission that waits while every connection is busy (each busy state is bounded: an I/O
    /// deadline, a request timeout, a resolver walk's limits). Meanwhile the caller holds the one
    /// accepted socket and the next clients wait in the kernel's accept queue.
    pub async fn admit_wait(
        &self,
        cap: impl Fn() -> usize,
        idle: bool,
        grace: Duration,
    ) -> Arc<ConnSlot> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(slot) = self.admit(cap(), idle, grace) {
                return slot;
            }
            // The periodic look also covers a cap raised by a reload and a grace running out.
            let _ = tokio::time::timeout(Duration::from_millis(20), changed).await;
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open.lock().expect("no panics under this lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn release(&self, slot: &Arc<ConnSlot>) {
        let mut open = self.open.lock().expect("no panics under this lock");
        if let Some(i) = open.iter().position(|c| Arc::ptr_eq(c, slot)) {
            open.swap_remove(i);
        }
        drop(open);
        self.changed.notify_waiters();
    }
}

/// A connection's hold on its slot: given back when the connection's task ends, however it ends.
pub struct SlotGuard {
    table: Arc<ConnTable>,
    slot: Arc<ConnSlot>,
}

impl SlotGuard {
    pub fn new(table: Arc<ConnTable>, slot: Arc<ConnSlot>) -> SlotGuard {
        SlotGuard { table, slot }
    }

    /// Marks the connection idle (keeping the moment it first went idle) or busy.
    pub fn set_idle(&self, idle: bool) {
        let s = &self.slot.idle_since;
        if !idle {
            s.store(0, Ordering::Relaxed);
        } else if s.load(Ordering::Relaxed) == 0 {
            s.store(self.table.now(), Ordering::Relaxed);
            self.table.changed.notify_waiters();
        }
    }

    /// Resolves when the table has closed this connection for a newcomer.
    pub async fn closed(&self) {
        self.slot.close.notified().await
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.table.release(&self.slot);
    }
}

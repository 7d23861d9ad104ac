//! Reload bookkeeping: one build at a time, every request answered by a build that started after
//! it arrived, and the outcome kept for monitoring (`/metrics`, `/healthz`).
//!
//! SIGHUP and `POST /admin/reload` both end in `server::Handle::reload`, which runs its build
//! inside [`Reloads::run`]. Without this, two builds could race: the one that read the files first
//! could swap last, so an older configuration replaced a newer one after the newer reload had
//! been reported done. Here builds are serialized, and a request takes a ticket when it arrives: a
//! build records the newest ticket handed out before it started reading, and a request whose
//! ticket such a finished build covers takes that build's outcome instead of building again (so a
//! burst of requests costs at most two builds, and none can end on older files than it asked for).
//!
//! Failure modes: a build that never ends would hold the lock; `zone::reader::DiskFs` bounds every
//! file read (non-regular files refused, a deadline on each read), so a build always ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::snapshot::{BuildError, Snapshot};

/// What monitoring sees of reloads (`/metrics`, `/healthz`).
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    /// Snapshots swapped in since start: 1 after the initial load, +1 per successful reload.
    pub generation: u64,
    /// When the serving snapshot was swapped in (the initial load counts).
    pub last_success: SystemTime,
    /// Reloads refused since start.
    pub failures: u64,
    /// The problems of the latest reload when it failed; None once a later one succeeds.
    pub last_error: Option<String>,
    /// When the latest failed reload ended.
    pub last_failure: Option<SystemTime>,
}

impl ReloadStatus {
    /// Whether the latest reload failed (the process serves older data than its files say).
    pub fn degraded(&self) -> bool {
        self.last_error.is_some()
    }
}

/// Seconds since the Unix epoch, for the exposition format and JSON.
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

type Outcome = Result<Arc<Snapshot>, BuildError>;

struct Serial {
    /// The newest ticket a finished build covers, and that build's outcome.
    done: u64,
    last: Option<Outcome>,
}

/// Shared by every clone of a server's `Handle`.
pub struct Reloads {
    /// Tickets handed out; a request's ticket is the value after its increment.
    tickets: AtomicU64,
    /// Held for a whole build and swap: builds never overlap.
    serial: Mutex<Serial>,
    status: Mutex<ReloadStatus>,
}

impl Default for Reloads {
    fn default() -> Self {
        Reloads {
            tickets: AtomicU64::new(0),
            serial: Mutex::new(Serial {
                done: 0,
                last: None,
            }),
            status: Mutex::new(ReloadStatus {
                generation: 1,
                last_success: SystemTime::now(),
                failures: 0,
                last_error: None,
                last_failure: None,
            }),
        }
    }
}

impl Reloads {
    fn serial(&self) -> MutexGuard<'_, Serial> {
        // A panicking build leaves `done` and `last` as they were: still consistent.
        self.serial.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `build_and_swap` for this request unless a build that started after the request
    /// arrived has finished meanwhile, whose outcome is then this request's too. Blocking: call
    /// it off the async workers.
    pub fn run(&self, build_and_swap: impl FnOnce() -> Outcome) -> Outcome {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut serial = self.serial();
        if serial.done >= ticket
            && let Some(last) = &serial.last
        {
            return last.clone();
        }
        // Every request up to here is served by this build: it reads the files after all of them
        // arrived.
        let covers = self.tickets.load(Ordering::SeqCst);
        let outcome = build_and_swap();
        self.record(&outcome);
        serial.done = covers;
        serial.last = Some(outcome.clone());
        outcome
    }

    /// Runs `f` while no build runs (a secondary zone's swap), without counting it as one.
    pub fn exclusive<T>(&self, f: impl FnOnce() -> T) -> T {
        let _serial = self.serial();
        f()
    }

    fn record(&self, outcome: &Outcome) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(_) => {
                s.generation += 1;
                s.last_success = SystemTime::now();
                s.last_error = None;
                tracing::info!("configuration generation {} serving", s.generation);
            }
            Err(e) => {
                s.failures += 1;
                s.last_error = Some(e.to_string());
                s.last_failure = Some(SystemTime::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn fail(n: u64) -> Outcome {
        Err(BuildError {
            problems: vec![format!("build {n}")],
        })
    }

    #[test]
    fn status_follows_outcomes() {
        let r = Reloads::default();
        assert_eq!(r.status().generation, 1);
        assert!(!r.status().degraded());
        let _ = r.run(|| fail(1));
        let s = r.status();
        assert_eq!((s.generation, s.failures), (1, 1));
        assert_eq!(s.last_error.as_deref(), Some("build 1"));
        assert!(s.degraded());
    }

    #[test]
    fn requests_during_a_build_share_the_next_one() {
        // One build runs; while it runs, four more requests arrive. They must not reuse the
        // running build's outcome (it read the files before they asked), and need only one more.
        let r = Arc::new(Reloads::default());
        let builds = Arc::new(AtomicU64::new(0));
        let inside = Arc::new(Barrier::new(2));
        let release = Arc::new(Barrier::new(2));
        let first = {
            let (r, builds, inside, release) =
                (r.clone(), builds.clone(), inside.clone(), release.clone());
            std::thread::spawn(move || {
                r.run(|| {
                    inside.wait();
                    release.wait();
                    fail(builds.fetch_add(1, Ordering::SeqCst) + 1)
                })
            })
        };
        inside.wait();
        let later: Vec<_> = (0..4)
            .map(|_| {
                let (r, builds) = (r.clone(), builds.clone());
                std::thread::spawn(move || {
                    r.run(|| fail(builds.fetch_add(1, Ordering::SeqCst) + 1))
                })
            })
            .collect();
        // Let the four take their tickets before the first build ends.
        while r.tickets.load(Ordering::SeqCst) < 5 {
            std::thread::yield_now();
        }
        release.wait();
        assert_eq!(first.join().unwrap().unwrap_err().problems, ["build 1"]);
        for t in later {
            assert_eq!(t.join().unwrap().unwrap_err().problems, ["build 2"]);
        }
        assert_eq!(builds.load(Ordering::SeqCst), 2);
    }
}

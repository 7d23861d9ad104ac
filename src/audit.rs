//! The audit trail: an append-only JSON-lines file of every change an operator (or a check) made.
//!
//! ```toml
//! [admin]
//! audit_log = "audit.jsonl"    # relative to the config file's folder; default: no audit file
//! audit_max_bytes = 10485760   # rotate when the file would pass this (audit.jsonl.1, .2, ...)
//! audit_keep = 3               # rotated files kept
//! ```
//!
//! One line per event, each with `time` (Unix seconds) and `event`: `reload` (who: signal or API,
//! the configuration hash before and after, zones and rules added, removed or changed, the
//! result), `override` (add or remove: who, what, reason, expiry), `health` (a member's old and
//! new state and why). Each line is written with one `write` on a file opened with `O_APPEND`, so
//! lines from different writers do not interleave. The most recent events are also kept in memory
//! (`recent`), so the API answers without reading the file, and the trail exists even without one.
//! A failing write is logged and never fails the change it records.

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde_json::{Value, json};

use crate::health::State;
use crate::overrides::Override;

/// Events kept in memory for `/admin/audit`.
const RECENT: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub keep: u32,
}

/// What happened.
pub enum Event {
    Reload {
        who: String,
        before: String,
        after: String,
        changes: Value,
        result: Result<(), Vec<String>>,
    },
    Override {
        op: &'static str,
        who: String,
        item: Override,
        replaced: Option<u64>,
    },
    Health {
        addr: SocketAddr,
        check: &'static str,
        old: State,
        new: State,
        why: Option<String>,
    },
}

#[derive(Debug, Default)]
pub struct Audit {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    settings: Option<AuditSettings>,
    /// In a fleet: each line is also sent here (to etcd); dropped when the queue is full.
    mirror: Option<tokio::sync::mpsc::Sender<String>>,
    recent: VecDeque<Value>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: u64,
    #[serde(flatten)]
    body: &'a Value,
}

impl Audit {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Each critical section is a push or a write; a panic cannot leave the queue torn.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The file events go to from now on (None: memory only).
    pub fn configure(&self, settings: Option<AuditSettings>) {
        self.inner().settings = settings;
    }

    /// From now on every line is also sent to `tx` (a fleet's agent).
    pub fn set_mirror(&self, tx: tokio::sync::mpsc::Sender<String>) {
        self.inner().mirror = Some(tx);
    }

    pub fn record(&self, event: Event) {
        let body = match event {
            Event::Reload {
                who,
                before,
                after,
                changes,
                result,
            } => {
                let mut v = json!({
                    "event": "reload", "who": who, "config_before": before,
                    "config_after": after, "changes": changes,
                });
                match result {
                    Ok(()) => v["result"] = json!("ok"),
                    Err(problems) => {
                        v["result"] = json!("refused");
                        v["problems"] = json!(problems);
                    }
                }
                v
            }
            Event::Override {
                op,
                who,
                item,
                replaced,
            } => {
                let mut v = json!({
                    "event": "override", "op": op, "who": who,
                    "target": item.target_text(), "override": item,
                });
                if let Some(r) = replaced {
                    v["replaced"] = json!(r);
                }
                v
            }
            Event::Health {
                addr,
                check,
                old,
                new,
                why,
            } => json!({
                "event": "health", "who": "health check", "member": addr.to_string(),
                "check": check, "old": old, "new": new, "why": why,
            }),
        };
        let time = crate::overrides::now_secs();
        let line = serde_json::to_string(&Line { time, body: &body }).expect("events serialize");
        let mut inner = self.inner();
        if let Some(m) = &inner.mirror {
            let _ = m.try_send(line.clone());
        }
        if let Some(s) = inner.settings.clone()
            && let Err(e) = append(&s, &line)
        {
            tracing::error!("audit log {}: {e}", s.path.display());
        }
        let mut body = body;
        body["time"] = json!(time);
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(body);
    }

    /// The newest `n` events, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Value> {
        let inner = self.inner();
        let skip = inner.recent.len().saturating_sub(n);
        inner.recent.iter().skip(skip).cloned().collect()
    }
}

/// Appends one line, rotating first when it would pass `max_bytes` (file -> file.1 -> ... ->
/// file.keep, the oldest dropped).
fn append(s: &AuditSettings, line: &str) -> std::io::Result<()> {
    let len = std::fs::metadata(&s.path).map_or(0, |m| m.len());
    if len > 0 && len + line.len() as u64 + 1 > s.max_bytes {
        let numbered = |i: u32| {
            let mut p = s.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if s.keep == 0 {
            std::fs::remove_file(&s.path)?;
        } else {
            for i in (1..s.keep).rev() {
                let _ = std::fs::rename(numbered(i), numbered(i + 1));
            }
            std::fs::rename(&s.path, numbered(1))?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&s.path)?;
    f.write_all(format!("{line}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_recent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::default();
        audit.configure(Some(AuditSettings {
            path: path.clone(),
            max_bytes: 400,
            keep: 2,
        }));
        for i in 0..20 {
            audit.record(Event::Health {
                addr: format!("192.0.2.{i}:80").parse().unwrap(),
                check: "tcp",
                old: State::Up,
                new: State::Down,
                why: Some("tcp: connection refused".into()),
            });
        }
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        let main = read(&path);
        assert!(main.len() <= 400, "{}", main.len());
        let one = read(&dir.path().join("audit.jsonl.1"));
        assert!(!one.is_empty());
        assert!(!dir.path().join("audit.jsonl.3").exists());
        // Every line is a whole JSON object, the newest in the main file.
        let last: Value = serde_json::from_str(main.lines().last().unwrap()).unwrap();
        assert_eq!(last["member"], "192.0.2.19:80");
        assert_eq!(last["event"], "health");
        assert_eq!(audit.recent(3).len(), 3);
        assert_eq!(audit.recent(3)[2]["member"], "192.0.2.19:80");
    }
}

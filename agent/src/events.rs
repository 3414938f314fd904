//! The `watch` stream: every change the executor commits, as one JSON line per event, to every
//! connection that asked for it. The executor emits ([`Events::emit`]) in commit order and never
//! waits: each watcher has a bounded buffer of [`WATCH_BUFFER`] events, and one that falls that
//! far behind is dropped (its connection then gets a last `{"event":"overflow"}` line and is
//! closed), so a watcher that does not read slows nobody.

use crate::model::{labels, Labels, Namespace};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc::{self, error::TrySendError};

/// Events one watcher may have waiting (encoded lines, ~0.5 KB each) before it is cut off.
pub const WATCH_BUFFER: usize = 4096;

/// What happened to a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Created,
    Updated,
    Deleted,
    /// Someone else removed it (its netns file or its veth); the agent let it go.
    RemovedExternally,
    /// Found whole in the kernel at start-up and taken back.
    Adopted,
    /// A check found it different from what it should be and put it back.
    Repaired,
}

/// One event line, as a watcher receives it (newline included).
pub type Line = Arc<[u8]>;

#[derive(Serialize)]
struct EventRef<'a> {
    event: Event,
    namespace: &'a Namespace,
    time: String,
}

/// The line a watcher gets last when it fell [`WATCH_BUFFER`] events behind.
pub const OVERFLOW_LINE: &[u8] = b"{\"event\":\"overflow\"}\n";

struct Watcher {
    selector: Labels,
    tx: mpsc::Sender<Line>,
    overflowed: Arc<AtomicBool>,
}

/// The watchers, shared by the executor (which emits) and the connections (which subscribe).
#[derive(Clone, Default)]
pub struct Events {
    watchers: Arc<Mutex<Vec<Watcher>>>,
    /// How many watchers there are, read without the lock: no watcher, no encoding.
    count: Arc<AtomicUsize>,
}

/// One watcher's end: its events, and whether it was cut off for falling behind (once `rx`
/// has ended).
pub struct Subscription {
    pub rx: mpsc::Receiver<Line>,
    pub overflowed: Arc<AtomicBool>,
}

impl Events {
    /// A new watcher of the namespaces `selector` selects; it gets every event emitted after
    /// this returns.
    pub fn subscribe(&self, selector: Labels) -> Subscription {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let overflowed = Arc::new(AtomicBool::new(false));
        let mut w = self.lock();
        w.push(Watcher {
            selector,
            tx,
            overflowed: overflowed.clone(),
        });
        self.count.store(w.len(), Ordering::Release);
        Subscription { rx, overflowed }
    }

    /// Hands `event` about `ns` to every watcher that selects it; drops the watchers that are
    /// gone or too far behind.
    pub fn emit(&self, event: Event, ns: &Namespace) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut line: Option<Line> = None;
        let mut w = self.lock();
        w.retain(|w| {
            if w.tx.is_closed() {
                return false;
            }
            if !labels::selects(&w.selector, &ns.conf.labels) {
                return true;
            }
            let line = line.get_or_insert_with(|| encode(event, ns));
            match w.tx.try_send(line.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    w.overflowed.store(true, Ordering::Release);
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        self.count.store(w.len(), Ordering::Release);
    }

    /// How many watchers there are.
    pub fn watchers(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watcher>> {
        // A panic while holding it leaves a list that is still a list.
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn encode(event: Event, ns: &Namespace) -> Line {
    let e = EventRef {
        event,
        namespace: ns,
        time: rfc3339(SystemTime::now()),
    };
    // A namespace always encodes (plain strings, numbers and maps of strings).
    let mut v = serde_json::to_vec(&e).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v.into()
}

/// `t` as RFC 3339 in UTC with milliseconds, e.g. `2026-12-07T02:19:46.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// (year, month, day) of the day `z` days after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |s: u64, ms: u64| {
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(s * 1000 + ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_796_611_186, 123), "2026-12-07T02:39:46.123Z");
    }
}

//! Refused agent registrations per source address, in memory: a flood of
//! them must cost neither an audit row each nor unbounded MetaDB writes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals a source may have in one window before it is turned away.
const MAX_PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Sources remembered at most; beyond, expired ones are dropped first.
const MAX_SOURCES: usize = 10_000;

#[derive(Default)]
pub struct Refusals {
    by_source: Mutex<HashMap<IpAddr, Window>>,
}

struct Window {
    started: Instant,
    count: u32,
}

impl Refusals {
    /// Counts a refusal; true for the first in the source's window (the one
    /// worth an audit row).
    pub fn refused(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SOURCES {
            map.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if map.len() >= MAX_SOURCES {
                map.clear();
            }
        }
        let w = map.entry(ip).or_insert(Window { started: now, count: 0 });
        if now.duration_since(w.started) >= WINDOW {
            *w = Window { started: now, count: 0 };
        }
        w.count += 1;
        w.count == 1
    }

    /// How long the source must wait, when it has used up its refusals.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let map = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        let w = map.get(&ip)?;
        let age = w.started.elapsed();
        (w.count >= MAX_PER_WINDOW && age < WINDOW).then(|| WINDOW - age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_refusal_is_audited_and_the_tenth_blocks() {
        let r = Refusals::default();
        let a: IpAddr = [127, 0, 0, 9].into();
        let b: IpAddr = [127, 0, 0, 10].into();
        assert!(r.refused(a));
        assert!(!r.refused(a));
        assert!(r.blocked(a).is_none());
        for _ in 2..MAX_PER_WINDOW {
            r.refused(a);
        }
        assert!(r.blocked(a).is_some_and(|d| d <= WINDOW));
        assert!(r.blocked(b).is_none(), "other sources are not affected");
        assert!(r.refused(b));
    }
}

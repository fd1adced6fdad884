//! A client that asks one path over and over while a test or a benchmark
//! breaks things: how many requests it made, how many failed, and the
//! longest run of failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use atoll_client::Client;

pub struct Prober {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Tally>,
}

/// What a prober saw.
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    pub asked: u32,
    pub failed: u32,
    pub longest_outage: Duration,
}

impl Prober {
    /// GETs `path` through `client` every `every` until [`Prober::stop`];
    /// each failure is printed with its error.
    pub fn start(client: Client, path: &str, every: Duration) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, path) = (stop.clone(), path.to_string());
        let handle = tokio::spawn(async move {
            let mut t = Tally { asked: 0, failed: 0, longest_outage: Duration::ZERO };
            let mut down_since: Option<Instant> = None;
            while !flag.load(Ordering::Relaxed) {
                t.asked += 1;
                match client.get::<serde_json::Value>(&path).await {
                    Ok(_) => down_since = None,
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        t.failed += 1;
                        let since = *down_since.get_or_insert_with(Instant::now);
                        t.longest_outage = t.longest_outage.max(since.elapsed());
                    }
                }
                tokio::time::sleep(every).await;
            }
            t
        });
        Prober { stop, handle }
    }

    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.unwrap_or(Tally { asked: 0, failed: 0, longest_outage: Duration::ZERO })
    }
}

//! Remote write: every sample the scraper takes, also sent to a Prometheus
//! or VictoriaMetrics that already runs (`remote_write_url`), in the
//! Prometheus remote-write protocol (protobuf `WriteRequest` in a snappy
//! block). The scraper never waits: samples go through a bounded queue, and
//! what does not fit, or cannot be delivered after the retries, is counted
//! as dropped, never kept in memory without bound.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use atoll_monitor::{SeriesKey, SeriesRef};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Samples of one scrape.
struct Batch {
    at_ms: i64,
    samples: Vec<(SeriesRef, f64)>,
}

/// Scrapes queued at most; a remote that is down for long loses the oldest
/// part of the outage, not the server's memory.
const QUEUE: usize = 4096;
/// A request carries at most this many samples…
const MAX_SAMPLES: usize = 20_000;
/// …and leaves at least this often.
const SEND_EVERY: Duration = Duration::from_secs(5);
const RETRIES_MS: [u64; 4] = [500, 2_000, 5_000, 10_000];

pub struct RemoteWrite {
    url: String,
    tx: mpsc::Sender<Batch>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Batch>>>,
    /// A series' labels (`__name__` first, then sorted), as the protocol
    /// wants them; learnt when the scraper first meets the series.
    labels: RwLock<HashMap<SeriesRef, Vec<Label>>>,
}

impl RemoteWrite {
    pub fn new(url: String) -> RemoteWrite {
        let (tx, rx) = mpsc::channel(QUEUE);
        RemoteWrite { url, tx, rx: std::sync::Mutex::new(Some(rx)), labels: RwLock::new(HashMap::new()) }
    }

    /// Remembers what `r` is called.
    pub fn learn(&self, r: SeriesRef, key: &SeriesKey) {
        let mut labels = vec![Label { name: "__name__".into(), value: key.metric.clone() }];
        labels.extend(key.labels.iter().map(|(k, v)| Label { name: k.clone(), value: v.clone() }));
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        if let Ok(mut all) = self.labels.write() {
            all.insert(r, labels);
        }
    }

    /// Queues one scrape's samples without waiting.
    pub fn push(&self, at_ms: i64, samples: &[(SeriesRef, f64)]) {
        if samples.is_empty() {
            return;
        }
        if self.tx.try_send(Batch { at_ms, samples: samples.to_vec() }).is_err() {
            metrics::counter!("atoll_remote_write_samples_dropped_total").increment(samples.len() as u64);
        }
    }

    /// Sends batches until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else { return };
        let http = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the remote-write HTTP client; nothing will be sent");
                return;
            }
        };
        tracing::info!(url = %self.url, "remote write on");
        let mut pending: Vec<Batch> = Vec::new();
        let mut count = 0;
        let mut tick = tokio::time::interval(SEND_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                b = rx.recv() => match b {
                    Some(b) => {
                        count += b.samples.len();
                        pending.push(b);
                        if count < MAX_SAMPLES {
                            continue;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {}
            }
            if !pending.is_empty() {
                let n = count;
                let body = self.encode(std::mem::take(&mut pending));
                count = 0;
                self.send(&http, body, n).await;
            }
        }
    }

    fn encode(&self, batches: Vec<Batch>) -> Vec<u8> {
        use prost::Message;
        let mut series: HashMap<SeriesRef, TimeSeries> = HashMap::new();
        if let Ok(names) = self.labels.read() {
            for b in batches {
                for (r, v) in b.samples {
                    let Some(labels) = names.get(&r) else { continue };
                    let ts = series.entry(r).or_insert_with(|| TimeSeries { labels: labels.clone(), samples: Vec::new() });
                    ts.samples.push(Sample { value: v, timestamp: b.at_ms });
                }
            }
        }
        let req = WriteRequest { timeseries: series.into_values().collect() };
        snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap_or_default()
    }

    async fn send(&self, http: &reqwest::Client, body: Vec<u8>, samples: usize) {
        let mut delays = RETRIES_MS.iter();
        loop {
            let r = http
                .post(&self.url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body.clone())
                .send()
                .await;
            let error = match r {
                Ok(resp) if resp.status().is_success() => {
                    metrics::counter!("atoll_remote_write_samples_sent_total").increment(samples as u64);
                    return;
                }
                // The remote refuses the data itself: sending it again will not help.
                Ok(resp) if resp.status().is_client_error() => {
                    let status = resp.status();
                    let text: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
                    tracing::warn!(url = %self.url, %status, answer = %text.trim(), samples, "remote write refused; samples dropped");
                    break;
                }
                Ok(resp) => format!("{} answered {}", self.url, resp.status()),
                Err(e) => format!("{}: {}", self.url, atoll_client::describe(&e)),
            };
            match delays.next() {
                Some(ms) => {
                    tracing::debug!(error = %error, retry_in_ms = ms, "remote write failed; will retry");
                    tokio::time::sleep(Duration::from_millis(*ms)).await;
                }
                None => {
                    tracing::warn!(error = %error, samples, "remote write failed after every retry; samples dropped");
                    break;
                }
            }
        }
        metrics::counter!("atoll_remote_write_samples_dropped_total").increment(samples as u64);
    }
}

// The remote-write protocol's messages (prometheus/prompb/types.proto and
// remote.proto), only the fields Atoll sends.

#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

//! The load itself: simulated agents registering and heartbeating, and API
//! clients listing hosts. Raw `reqwest` rather than `atoll_client::Client`,
//! so the client decodes nothing it does not need and its own CPU use (it
//! shares the machine with the server) stays small.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atoll_api::agent::{HeartbeatRequest, RegisterRequest, RegisterResponse};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::facts::SimHost;
use crate::stats::Samples;

/// One connection pool for all simulated agents: the server sees many
/// keep-alive connections, as it would from many agents.
pub fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?)
}

/// Registers every host with `concurrency` requests in flight, keeping
/// each returned agent token; any failure aborts, since the later phases
/// need every host.
pub async fn register_all(
    http: &reqwest::Client,
    url: &str,
    join_token: &str,
    hosts: Vec<SimHost>,
    concurrency: usize,
) -> Result<Vec<SimHost>> {
    let endpoint = format!("{url}/agent/v1/register");
    futures::stream::iter(hosts).map(|h| register_one(http, &endpoint, join_token, h)).buffer_unordered(concurrency).try_collect().await
}

async fn register_one(http: &reqwest::Client, endpoint: &str, join_token: &str, mut host: SimHost) -> Result<SimHost> {
    let req = RegisterRequest {
        host_id: host.id,
        join_token: Some(join_token.to_string()),
        agent_token: None,
        name: None,
        zone: None,
        region: None,
        address: host.address.clone(),
        agent_url: host.agent_url.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        facts: host.facts.clone(),
        public_key: None,
    };
    let resp = http.post(endpoint).json(&req).send().await?;
    let status = resp.status();
    if !status.is_success() {
        bail!("registering {} failed: HTTP {status}: {}", host.address, resp.text().await.unwrap_or_default());
    }
    let body: RegisterResponse = resp.json().await.with_context(|| format!("registering {}", host.address))?;
    host.agent_token = body.agent_token;
    Ok(host)
}

/// Sends one heartbeat; `Err` carries a description for the report.
async fn heartbeat(http: &reqwest::Client, endpoint: &str, host: &SimHost, with_facts: bool) -> Result<(), String> {
    let req = HeartbeatRequest {
        host_id: host.id,
        address: host.address.clone(),
        agent_url: host.agent_url.clone(),
        facts: with_facts.then(|| host.facts.clone()),
        db: Vec::new(),
        proxies: Vec::new(),
        trusted_cas: Vec::new(),
    };
    let resp = http.post(endpoint).bearer_auth(&host.agent_token).json(&req).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    // Read the body so the connection goes back to the pool.
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() { Ok(()) } else { Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)).chars().take(300).collect()) }
}

/// Heartbeats as fast as `workers` concurrent senders can, round-robin over
/// `hosts`, for `duration`. With `facts_every = Some(n)`, every n-th beat
/// carries the host's facts, as real agents do periodically.
pub async fn heartbeat_flood(
    http: &reqwest::Client,
    url: &str,
    hosts: Arc<Vec<SimHost>>,
    workers: usize,
    duration: Duration,
    facts_every: Option<u64>,
) -> (Samples, Duration) {
    let endpoint = Arc::new(format!("{url}/agent/v1/heartbeat"));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<JoinHandle<Samples>> = (0..workers)
        .map(|_| {
            let (http, endpoint, hosts, next) = (http.clone(), endpoint.clone(), hosts.clone(), next.clone());
            tokio::spawn(async move {
                let mut samples = Samples::default();
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let host = &hosts[(n % hosts.len() as u64) as usize];
                    let with_facts = facts_every.is_some_and(|every| n % every == every - 1);
                    let t = Instant::now();
                    match heartbeat(&http, &endpoint, host, with_facts).await {
                        Ok(()) => samples.record(t.elapsed()),
                        Err(e) => samples.fail(e),
                    }
                }
                samples
            })
        })
        .collect();
    (join_samples(tasks).await, start.elapsed())
}

async fn join_samples(tasks: Vec<JoinHandle<Samples>>) -> Samples {
    let mut all = Samples::default();
    for t in tasks {
        match t.await {
            Ok(s) => all.merge(s),
            Err(e) => all.fail(format!("worker panicked: {e}")),
        }
    }
    all
}

/// Background heartbeats at the rate real agents produce (each host once
/// per `interval`), so hosts stay online and the server carries its normal
/// load while the API is measured.
pub struct Keeper {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    started: Instant,
}

impl Keeper {
    pub fn start(http: &reqwest::Client, url: &str, hosts: Arc<Vec<SimHost>>, interval: Duration) -> Keeper {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let endpoint = Arc::new(format!("{url}/agent/v1/heartbeat"));
        let (http, stop2, sent2, failed2) = (http.clone(), stop.clone(), sent.clone(), failed.clone());
        let task = tokio::spawn(async move {
            // Bounded, so an overloaded server slows the keeper down (and the
            // reported rate shows it) instead of piling up requests.
            let in_flight = Arc::new(Semaphore::new(64));
            let mut tick = tokio::time::interval(interval / u32::try_from(hosts.len().max(1)).unwrap_or(u32::MAX));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for i in (0..hosts.len()).cycle() {
                tick.tick().await;
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
                let (http, endpoint, hosts, sent, failed) = (http.clone(), endpoint.clone(), hosts.clone(), sent2.clone(), failed2.clone());
                tokio::spawn(async move {
                    let ok = heartbeat(&http, &endpoint, &hosts[i], false).await.is_ok();
                    (if ok { sent } else { failed }).fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
        });
        Keeper { stop, sent, failed, task, started: Instant::now() }
    }

    /// Stops sending; returns the achieved rate (beats/s) and the failures.
    pub async fn stop(self) -> (f64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let rate = self.sent.load(Ordering::Relaxed) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        (rate, self.failed.load(Ordering::Relaxed))
    }
}

/// `GET path` `requests` times in total, split over `clients` sequential
/// clients, each with its own keep-alive connection. Returns the latencies
/// (to the last body byte, nothing decoded), the wall time and the size of
/// the last response.
pub async fn get_loop(url: &str, path: &str, token: &str, requests: usize, clients: usize) -> Result<(Samples, Duration, usize)> {
    let target = Arc::new(format!("{url}{path}"));
    let size = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        // Its own client: one connection, reused for every request.
        let http = http_client()?;
        let count = requests / clients + usize::from(c < requests % clients);
        let (target, token, size) = (target.clone(), token.to_string(), size.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            for _ in 0..count {
                let t = Instant::now();
                match get_once(&http, &target, &token).await {
                    Ok(n) => {
                        samples.record(t.elapsed());
                        size.store(n, Ordering::Relaxed);
                    }
                    Err(e) => samples.fail(e),
                }
            }
            samples
        }));
    }
    let samples = join_samples(tasks).await;
    Ok((samples, start.elapsed(), size.load(Ordering::Relaxed)))
}

async fn get_once(http: &reqwest::Client, target: &str, token: &str) -> Result<usize, String> {
    let resp = http.get(target).bearer_auth(token).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body.len())
    } else {
        Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)).chars().take(300).collect())
    }
}

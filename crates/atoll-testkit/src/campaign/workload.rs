//! The workload: writers that record every acknowledged write, through the
//! cluster's proxies, while faults happen.
//!
//! - id writers insert unique ids (their own range each) with autocommit;
//! - transfer writers move money between accounts in one transaction that
//!   also inserts a ledger row, so the total stays constant and every
//!   account's balance is its opening balance plus its ledger rows.
//!
//! A write counts as acknowledged only when its commit returned OK. An
//! error or a timeout makes its outcome unknown: it may or may not be
//! there, and is never counted as lost. Each writer has a home proxy (its
//! zone's) and moves to the next one only when it cannot connect, as an
//! application given every proxy's address would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::{Connection, Executor, MySqlConnection};

pub const DB: &str = "campaign";
pub const ACCOUNTS: i64 = 10;
pub const OPENING_BALANCE: i64 = 1_000_000;
/// A statement (or a whole transfer) that takes longer is abandoned: its
/// outcome is unknown and the writer reconnects.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Between a writer's operations: about 25 a second each, so six writers
/// leave the two cores to the cluster and measure outages to ~40 ms.
const PACE: Duration = Duration::from_millis(40);

/// A money transfer: `amount` from `src` to `dst`, ledger row `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub id: i64,
    pub src: i64,
    pub dst: i64,
    pub amount: i64,
}

/// What the writers were told.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub acked_ids: Vec<i64>,
    pub acked_transfers: Vec<Transfer>,
    /// Writes whose outcome is unknown (error or timeout before the OK).
    pub unknown: u64,
    /// Connection attempts that failed.
    pub failed_connects: u64,
    /// Every successful commit: (ms since the workload started, writer).
    pub commits: Vec<(u64, u16)>,
}

/// Where a writer connects: the proxies' read-write ports, its home first.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

pub fn connect_options(ep: &Endpoint, user: &str, password: &str, db: Option<&str>) -> MySqlConnectOptions {
    let o = MySqlConnectOptions::new().host(&ep.host).port(ep.port).username(user).password(password).ssl_mode(MySqlSslMode::Disabled);
    match db {
        Some(d) => o.database(d),
        None => o,
    }
}

/// A connection within `CONNECT_TIMEOUT`, or `None`.
pub async fn connect(opts: &MySqlConnectOptions) -> Option<MySqlConnection> {
    tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(opts)).await.ok()?.ok()
}

/// The schema, made once through a proxy before the writers start.
pub async fn create_schema(ep: &Endpoint, user: &str, password: &str) -> anyhow::Result<()> {
    let mut c = MySqlConnection::connect_with(&connect_options(ep, user, password, None)).await?;
    c.execute(
        "CREATE DATABASE IF NOT EXISTS campaign;
         CREATE TABLE IF NOT EXISTS campaign.acks (id BIGINT PRIMARY KEY, writer INT NOT NULL);
         CREATE TABLE IF NOT EXISTS campaign.accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS campaign.transfers (id BIGINT PRIMARY KEY, src BIGINT NOT NULL, dst BIGINT NOT NULL, amount BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS campaign.beat (proxy INT PRIMARY KEY, n BIGINT NOT NULL)",
    )
    .await?;
    for id in 1..=ACCOUNTS {
        sqlx::query("INSERT INTO campaign.accounts VALUES (?, ?)").bind(id).bind(OPENING_BALANCE).execute(&mut c).await?;
    }
    for p in 0..3 {
        sqlx::query("INSERT INTO campaign.beat VALUES (?, 0)").bind(p).execute(&mut c).await?;
    }
    Ok(())
}

pub struct Workload {
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    started: Instant,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

struct Writer {
    id: u16,
    targets: Vec<MySqlConnectOptions>,
    home: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    started: Instant,
}

fn lock(l: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

impl Writer {
    /// Home proxy first, then the others in turn.
    async fn connect(&self) -> Option<MySqlConnection> {
        for k in 0..self.targets.len() {
            if let Some(c) = connect(&self.targets[(self.home + k) % self.targets.len()]).await {
                return Some(c);
            }
            lock(&self.ledger).failed_connects += 1;
        }
        None
    }

    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn range_start(&self) -> i64 {
        (i64::from(self.id) + 1) * 1_000_000_000_000
    }

    async fn run_ids(self) {
        let writer = i32::from(self.id);
        self.write_until_stopped(|c, id| {
            Box::pin(
                async move { c.execute(sqlx::query("INSERT INTO acks VALUES (?, ?)").bind(id).bind(writer)).await.map(|_| Acked::Id(id)) },
            )
        })
        .await;
    }

    async fn run_transfers(self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        self.write_until_stopped(|c, id| {
            let src = rng.random_range(1..=ACCOUNTS);
            let dst = (src + rng.random_range(1..ACCOUNTS) - 1) % ACCOUNTS + 1;
            let t = Transfer { id, src, dst, amount: rng.random_range(1..=1000) };
            Box::pin(async move { transfer(c, t).await.map(|()| Acked::Transfer(t)) })
        })
        .await;
    }

    /// Writes until stopped, as an application would: one statement or
    /// transaction at a time through the first target that connects, each
    /// acknowledgement recorded, a new connection after any error or
    /// timeout (whose outcome is unknown).
    async fn write_until_stopped(&self, mut write: impl FnMut(&mut MySqlConnection, i64) -> Write<'_>) {
        let mut conn = None;
        let mut id = self.range_start();
        while !self.stop.load(Ordering::Relaxed) {
            let Some(c) = conn.as_mut() else {
                conn = self.connect().await;
                if conn.is_none() {
                    tokio::time::sleep(PACE).await;
                }
                continue;
            };
            id += 1;
            match tokio::time::timeout(STATEMENT_TIMEOUT, write(c, id)).await {
                Ok(Ok(acked)) => {
                    let mut l = lock(&self.ledger);
                    match acked {
                        Acked::Id(id) => l.acked_ids.push(id),
                        Acked::Transfer(t) => l.acked_transfers.push(t),
                    }
                    let at = self.ms();
                    l.commits.push((at, self.id));
                }
                _ => {
                    lock(&self.ledger).unknown += 1;
                    conn = None;
                }
            }
            tokio::time::sleep(PACE).await;
        }
    }
}

/// One write in flight on a borrowed connection.
type Write<'c> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Acked, sqlx::Error>> + Send + 'c>>;

/// What a writer had acknowledged.
enum Acked {
    Id(i64),
    Transfer(Transfer),
}

/// One transfer in one transaction; rows updated in id order, so two
/// transfers never wait for each other in a cycle.
async fn transfer(c: &mut MySqlConnection, t: Transfer) -> Result<(), sqlx::Error> {
    let mut tx = c.begin().await?;
    let mut moves = [(t.src, -t.amount), (t.dst, t.amount)];
    moves.sort();
    for (account, delta) in moves {
        sqlx::query("UPDATE accounts SET balance = balance + ? WHERE id = ?").bind(delta).bind(account).execute(&mut *tx).await?;
    }
    sqlx::query("INSERT INTO transfers VALUES (?, ?, ?, ?)").bind(t.id).bind(t.src).bind(t.dst).bind(t.amount).execute(&mut *tx).await?;
    tx.commit().await
}

impl Workload {
    /// Starts `id_writers` + `transfer_writers` writers over `proxies`.
    pub fn start(proxies: &[Endpoint], user: &str, password: &str, id_writers: u16, transfer_writers: u16, seed: u64) -> Workload {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let targets: Vec<MySqlConnectOptions> = proxies.iter().map(|p| connect_options(p, user, password, Some(DB))).collect();
        let mut handles = Vec::new();
        for w in 0..id_writers + transfer_writers {
            let writer = Writer {
                id: w,
                targets: targets.clone(),
                home: usize::from(w) % targets.len().max(1),
                ledger: ledger.clone(),
                stop: stop.clone(),
                started,
            };
            handles.push(if w < id_writers {
                tokio::spawn(writer.run_ids())
            } else {
                tokio::spawn(writer.run_transfers(seed.wrapping_add(u64::from(w))))
            });
        }
        Workload { ledger, stop, started, handles }
    }

    /// Milliseconds since the workload started: the clock of every fault's
    /// timings, so they compare with the commits'.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn snapshot(&self) -> Ledger {
        lock(&self.ledger).clone()
    }

    /// The commit times from `from_ms` on (cheaper than a whole snapshot).
    pub fn commits_since(&self, from_ms: u64) -> Vec<u64> {
        let l = lock(&self.ledger);
        let start = l.commits.partition_point(|(t, _)| *t < from_ms);
        l.commits[start..].iter().map(|(t, _)| *t).collect()
    }

    /// Per writer, the commit times from `from_ms` on.
    pub fn commits_by_writer_since(&self, from_ms: u64) -> Vec<Vec<u64>> {
        let l = lock(&self.ledger);
        let start = l.commits.partition_point(|(t, _)| *t < from_ms);
        let mut by: Vec<Vec<u64>> = Vec::new();
        for (t, w) in &l.commits[start..] {
            let w = usize::from(*w);
            if by.len() <= w {
                by.resize(w + 1, Vec::new());
            }
            by[w].push(*t);
        }
        by
    }

    /// The last commit before `ms`, if any.
    pub fn last_commit_before(&self, ms: u64) -> Option<u64> {
        let l = lock(&self.ledger);
        let i = l.commits.partition_point(|(t, _)| *t < ms);
        i.checked_sub(1).map(|i| l.commits[i].0)
    }

    /// Stops every writer and waits for them.
    pub async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            let _ = h.await;
        }
        lock(&self.ledger).clone()
    }
}

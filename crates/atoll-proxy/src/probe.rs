//! The proxy's own view of each backend: a persistent MySQL connection
//! with the table's monitor account, asked every `--probe-interval-ms`
//! for its replication state (the engine's status query and mapping) and
//! `read_only`. The platform's table says what should be; the probe says
//! what is, right now, from where the proxy stands.
//!
//! A failed probe is confirmed before it counts (`--down-after-probes`,
//! see [`crate::router`]): after one, the prober looks again at a quarter
//! of the interval, and at once (no more often than that) when a client
//! could not connect, so a dead node is still found in well under a
//! second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use atoll_engine::sql;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Row};
use tokio::time::Instant;

use crate::router::{ProberSpec, Shared};
use crate::select::Probe;

pub fn spawn(shared: &Arc<Shared>, specs: Vec<ProberSpec>) {
    for spec in specs {
        tokio::spawn(run(shared.clone(), spec));
    }
}

/// How soon after a failed probe (or a client's failed connect) the
/// prober looks again.
pub fn recheck_interval(interval: Duration) -> Duration {
    (interval / 4).max(Duration::from_millis(20))
}

async fn run(shared: Arc<Shared>, spec: ProberSpec) {
    let ProberSpec { name, generation, backend, user, password, stop, nudge } = spec;
    let interval = shared.cfg.probe_interval;
    let recheck = recheck_interval(interval);
    let timeout = shared.cfg.probe_timeout();
    let opts = MySqlConnectOptions::new()
        .host(&backend.address)
        .port(backend.port)
        .username(&user)
        .password(&password)
        // Only the handshake: no SET statements a non-primary node refuses.
        .pipes_as_concat(false)
        .no_engine_substitution(false)
        .timezone(None)
        .statement_cache_capacity(0);
    let mut conn: Option<MySqlConnection> = None;
    let mut next = Instant::now();
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            _ = nudge.notified() => {
                // A client could not connect: look now, but not more often
                // than a recheck, however many clients fail.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until((last + recheck).min(next)) => {}
                }
            }
        }
        last = Instant::now();
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(timeout, probe_once(&mut conn, &opts)) => r,
        };
        let probe = match outcome {
            Ok(Ok(p)) => p,
            Ok(Err(reason)) => {
                conn = None;
                Probe::Down { reason }
            }
            Err(_) => {
                conn = None;
                Probe::Down { reason: format!("probe got no answer in {} ms", timeout.as_millis()) }
            }
        };
        // Quick looks only to confirm a failure; a node found down is
        // probed at the usual pace.
        let failed_in_a_row = shared.report(&name, generation, probe);
        let confirming = (1..shared.cfg.down_after_probes).contains(&failed_in_a_row);
        next = last + if confirming { recheck } else { interval };
    }
}

async fn probe_once(conn: &mut Option<MySqlConnection>, opts: &MySqlConnectOptions) -> Result<Probe, String> {
    if conn.is_none() {
        *conn = Some(opts.connect().await.map_err(|e| format!("probe cannot connect: {e}"))?);
    }
    let Some(c) = conn.as_mut() else { return Err("no probe connection".into()) };
    let wsrep = sql::wsrep_from_rows(&rows(c, sql::ROUTING_STATUS).await?);
    let read_only = sql::read_only_from_rows(&rows(c, sql::READ_ONLY).await?);
    Ok(Probe::Up { state: atoll_engine::state::server_state(Some(&wsrep), true), ready: wsrep.ready, read_only })
}

async fn rows(conn: &mut MySqlConnection, sql: &'static str) -> Result<HashMap<String, String>, String> {
    let rows = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(conn).await.map_err(|e| format!("probe query failed: {e}"))?;
    rows.iter().map(|r| Ok((text(r, 0)?, text(r, 1)?))).collect()
}

/// A column as text, whether the server typed it as a string or bytes.
fn text(row: &sqlx::mysql::MySqlRow, i: usize) -> Result<String, String> {
    row.try_get::<String, _>(i)
        .or_else(|_| row.try_get::<Vec<u8>, _>(i).map(|b| String::from_utf8_lossy(&b).into_owned()))
        .map_err(|e| format!("unreadable probe column {i}: {e}"))
}

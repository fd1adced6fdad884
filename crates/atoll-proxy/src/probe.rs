//! The proxy's own view of each backend: a persistent MySQL connection
//! with the table's monitor account, asked every `--probe-interval-ms`
//! for its replication state (the engine's status query and mapping) and
//! `read_only`. The platform's table says what should be; the probe says
//! what is, right now, from where the proxy stands.

use std::collections::HashMap;
use std::sync::Arc;

use atoll_api::routing::Backend;
use atoll_engine::sql;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Row};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::router::{ProberSpec, Shared};
use crate::select::Probe;

pub fn spawn(shared: &Arc<Shared>, specs: Vec<ProberSpec>) {
    for (name, generation, backend, user, password, stop) in specs {
        tokio::spawn(run(shared.clone(), name, generation, backend, user, password, stop));
    }
}

async fn run(
    shared: Arc<Shared>,
    name: String,
    generation: u64,
    backend: Backend,
    user: String,
    password: String,
    stop: CancellationToken,
) {
    let interval = shared.cfg.probe_interval;
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
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
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
        shared.report(&name, Some(generation), probe);
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

//! The prober: once a second, each running server is asked how it is
//! (`wsrep_%` status, `read_only`) over its socket; the answer becomes the
//! server's state in heartbeats.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use atoll_engine::sql;
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Server;
use super::dropout::Verdict;
use super::sql::connect_socket;
use crate::process::{Signal, signal};

const PROBE_EVERY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn name_value_rows(conn: &mut MySqlConnection, sql: &'static str) -> Result<HashMap<String, String>, String> {
    let rows = tokio::time::timeout(QUERY_TIMEOUT, sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(conn))
        .await
        .map_err(|_| format!("no answer to {sql:?} in {} ms", QUERY_TIMEOUT.as_millis()))?
        .map_err(|e| format!("{sql:?} failed: {e}"))?;
    rows.iter().map(|r| Ok((text(r, 0)?, text(r, 1)?))).collect()
}

/// A column as text, whether the server typed it as a string or as bytes.
fn text(row: &sqlx::mysql::MySqlRow, i: usize) -> Result<String, String> {
    row.try_get::<String, _>(i)
        .or_else(|_| row.try_get::<Vec<u8>, _>(i).map(|b| String::from_utf8_lossy(&b).into_owned()))
        .map_err(|e| format!("unreadable column {i}: {e}"))
}

/// One probe on an open connection. Variables come from `SHOW` rather
/// than `SELECT @@global.…`: a node outside the primary component refuses
/// SELECT but still answers SHOW.
async fn read_status(conn: &mut MySqlConnection) -> Result<super::Probe, String> {
    let wsrep = sql::wsrep_from_rows(&name_value_rows(conn, sql::WSREP_STATUS).await?);
    let vars = name_value_rows(conn, sql::NODE_VARIABLES).await?;
    let slave = match vars.get("log_bin").is_some_and(|v| v.eq_ignore_ascii_case("ON")) {
        true => slave_status(conn).await?,
        false => None,
    };
    Ok(super::Probe { wsrep, read_only: sql::read_only_from_rows(&vars), replication: sql::replication_from_rows(&vars, slave.as_ref()) })
}

/// The one row of `SHOW SLAVE STATUS` by column name, if there is one.
async fn slave_status(conn: &mut MySqlConnection) -> Result<Option<HashMap<String, String>>, String> {
    let rows = tokio::time::timeout(QUERY_TIMEOUT, sqlx::raw_sql(AssertSqlSafe(sql::SLAVE_STATUS)).fetch_all(conn))
        .await
        .map_err(|_| format!("no answer to {:?} in {} ms", sql::SLAVE_STATUS, QUERY_TIMEOUT.as_millis()))?
        .map_err(|e| format!("{:?} failed: {e}", sql::SLAVE_STATUS))?;
    let Some(row) = rows.first() else { return Ok(None) };
    use sqlx::Column;
    // Numbers (ports, Seconds_Behind_Master) as text too; NULL (the lag
    // while not applying) reads as empty.
    let value = |i: usize| {
        text(row, i)
            .ok()
            .or_else(|| row.try_get::<Option<u64>, _>(i).ok().map(|v| v.map(|v| v.to_string()).unwrap_or_default()))
            .or_else(|| row.try_get::<Option<i64>, _>(i).ok().map(|v| v.map(|v| v.to_string()).unwrap_or_default()))
            .unwrap_or_default()
    };
    Ok(Some((0..row.columns().len()).map(|i| (row.columns()[i].name().to_string(), value(i))).collect()))
}

/// Probes `server` every second while its supervision runs. One
/// connection is kept per process and reopened after any error.
pub(crate) async fn probe_loop(server: Arc<Server>, stop: CancellationToken) {
    let mut conn: Option<(u32, MySqlConnection)> = None;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (pid, socket) = server.probe_target();
        let Some(pid) = pid else {
            conn = None;
            continue;
        };
        let data = server.layout().data;
        if let Some(left) = super::diskfull::full(&data) {
            if server.mark_disk_full(pid) {
                tracing::warn!(
                    server = %server.id(),
                    pid,
                    left,
                    data = %data.display(),
                    "data directory full: stopping the server so the rest of its cluster keeps committing; it starts again once there is room"
                );
                let _ = signal(pid, Signal::Kill);
            }
            continue;
        }
        if conn.as_ref().is_some_and(|(p, _)| *p != pid) {
            conn = None;
        }
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = probe_once(&mut conn, pid, &socket) => r,
        };
        if outcome.is_err() {
            conn = None;
        }
        match server.record_probe(pid, outcome) {
            Verdict::Keep => {}
            Verdict::Terminate => {
                tracing::warn!(
                    server = %server.id(),
                    pid,
                    "out of its group for {} s (Galera voted it inconsistent, or evicted it); restarting it so it rejoins with a state transfer",
                    super::dropout::GRACE.as_secs()
                );
                let _ = signal(pid, Signal::Term);
            }
            Verdict::Kill => {
                tracing::warn!(server = %server.id(), pid, "did not shut down after leaving its group; killing it");
                let _ = signal(pid, Signal::Kill);
            }
        }
    }
}

async fn probe_once(conn: &mut Option<(u32, MySqlConnection)>, pid: u32, socket: &Path) -> Result<super::Probe, String> {
    if conn.is_none() {
        *conn = Some((pid, connect_socket(socket, CONNECT_TIMEOUT).await?));
    }
    match conn {
        Some((_, c)) => read_status(c).await,
        None => Err("no connection".into()),
    }
}

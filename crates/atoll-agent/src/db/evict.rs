//! Eviction of a dead node. Until every survivor gives up on a node that
//! vanished, each commit in the cluster waits (≈3.5 s here with the tuned
//! `evs` timeouts). The agent knows the instant its `mariadbd` exited, so
//! it tells the survivors at once (`evs.evict`): the stall drops to ≈1 s.
//! Only ever for a process known to have exited: evicting a node that is
//! merely slow would throw a healthy member out.
//!
//! Then, once a survivor's view no longer counts the dead node, its evict
//! list is cleared again (`evs.evict=` with no value). Measured here: an
//! evicted entry left in place makes the restarted node's join wait for
//! the install timeout on every survivor (3–9 s of stalled commits, once
//! the loss of the primary component); cleared, the join stalls ≈0.5 s.
//! The restart therefore waits for this to finish.

use std::time::{Duration, Instant};

use atoll_api::db::DbCredentials;
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::task::JoinSet;

use super::sql::connect_tcp;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for a survivor to install a view without the dead
/// node before clearing its evict list anyway (by then the ordinary
/// failure detection has taken over).
const VIEW_WAIT: Duration = Duration::from_secs(5);
const VIEW_POLL: Duration = Duration::from_millis(100);

/// Whether `uuid` looks like a gcomm UUID: it goes into a statement.
fn plausible_uuid(uuid: &str) -> bool {
    uuid.len() == 36 && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// The dead node as the prober last saw it.
#[derive(Debug, Clone)]
pub(crate) struct DeadNode {
    pub server_id: atoll_core::DbId,
    pub gcomm_uuid: String,
    /// The cluster's size while it was a member; a survivor whose view is
    /// smaller has dropped it.
    pub cluster_size: u32,
}

/// Asks every peer, in parallel, to evict the dead node, then to forget
/// the eviction once its view has dropped the node. Logs each outcome;
/// returns how many peers evicted it.
pub(crate) async fn evict_everywhere(dead: &DeadNode, peers: &[String], admin: &DbCredentials) -> usize {
    if !plausible_uuid(&dead.gcomm_uuid) {
        tracing::warn!(server = %dead.server_id, uuid = %dead.gcomm_uuid, "not evicting: the recorded gcomm uuid is malformed");
        return 0;
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for peer in peers {
        let (peer, admin, dead) = (peer.clone(), admin.clone(), dead.clone());
        set.spawn(async move {
            let r = on_peer(&peer, &admin, &dead, started).await;
            (peer, r)
        });
    }
    let mut evicted = 0;
    while let Some(joined) = set.join_next().await {
        let Ok((peer, result)) = joined else { continue };
        let ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => evicted += 1,
            Err(e) => tracing::warn!(server = %dead.server_id, peer, uuid = %dead.gcomm_uuid, ms, error = %e, "eviction on peer failed"),
        }
    }
    evicted
}

async fn on_peer(peer: &str, admin: &DbCredentials, dead: &DeadNode, started: Instant) -> Result<(), String> {
    let mut conn = connect_tcp(peer, admin, CONNECT_TIMEOUT).await?;
    statement(&mut conn, &atoll_engine::sql::evict(&dead.gcomm_uuid)).await?;
    tracing::info!(server = %dead.server_id, peer, uuid = %dead.gcomm_uuid, ms = started.elapsed().as_millis() as u64, "peer evicted the dead node");
    let deadline = Instant::now() + VIEW_WAIT;
    let view = loop {
        match cluster_size(&mut conn).await {
            Ok(n) if n < dead.cluster_size => break Some(n),
            Ok(_) | Err(_) if Instant::now() >= deadline => break None,
            Ok(_) => {}
            Err(_) => conn = connect_tcp(peer, admin, CONNECT_TIMEOUT).await?,
        }
        tokio::time::sleep(VIEW_POLL).await;
    };
    statement(&mut conn, atoll_engine::sql::CLEAR_EVICTIONS).await?;
    tracing::info!(
        server = %dead.server_id,
        peer,
        cluster_size = view,
        ms = started.elapsed().as_millis() as u64,
        "peer dropped the dead node from its view; its evict list is cleared for the rejoin"
    );
    let _ = conn.close().await;
    Ok(())
}

async fn statement(conn: &mut MySqlConnection, sql: &str) -> Result<(), String> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(conn)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{sql}: {e}")),
        Err(_) => Err(format!("{sql}: no answer in {} ms", STATEMENT_TIMEOUT.as_millis())),
    }
}

async fn cluster_size(conn: &mut MySqlConnection) -> Result<u32, String> {
    let q = sqlx::raw_sql(atoll_engine::sql::CLUSTER_SIZE).fetch_optional(conn);
    let row = tokio::time::timeout(STATEMENT_TIMEOUT, q).await.map_err(|_| "no answer".to_string())?.map_err(|e| e.to_string())?;
    let value = row
        .and_then(|r| {
            r.try_get::<String, _>(1).or_else(|_| r.try_get::<Vec<u8>, _>(1).map(|b| String::from_utf8_lossy(&b).into_owned())).ok()
        })
        .ok_or("no cluster size")?;
    value.trim().parse().map_err(|_| format!("cluster size {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuids_reach_sql() {
        assert!(plausible_uuid("6b4f2d7e-0a1b-11ef-8c5e-2b0c6a1d9e01"));
        assert!(!plausible_uuid("x'; DROP TABLE t; --"));
        assert!(!plausible_uuid(""));
    }
}

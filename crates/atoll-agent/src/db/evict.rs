//! Eviction of a dead node. Until every survivor gives up on a node that
//! vanished, each commit in the cluster waits (about 5 s with the tuned
//! `evs` timeouts). The agent knows the instant its `mariadbd` exited, so
//! it tells the survivors at once (`evs.evict`), which cuts the stall to
//! about 2 s. Only ever for a process known to have exited: evicting a node
//! that is merely slow would throw a healthy member out.

use std::time::{Duration, Instant};

use atoll_api::db::DbCredentials;
use sqlx::{AssertSqlSafe, Connection};
use tokio::task::JoinSet;

use super::sql::connect_tcp;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `uuid` looks like a gcomm UUID: it goes into a statement.
fn plausible_uuid(uuid: &str) -> bool {
    uuid.len() == 36 && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Asks every peer, in parallel, to evict `uuid`; logs each outcome and
/// returns how many peers accepted.
pub(crate) async fn evict_everywhere(server_id: &str, uuid: &str, peers: &[String], admin: &DbCredentials) -> usize {
    if !plausible_uuid(uuid) {
        tracing::warn!(server = server_id, uuid, "not evicting: the recorded gcomm uuid is malformed");
        return 0;
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for peer in peers {
        let (peer, admin, uuid) = (peer.clone(), admin.clone(), uuid.to_string());
        set.spawn(async move {
            let r = evict_on(&peer, &admin, &uuid).await;
            (peer, r)
        });
    }
    let mut accepted = 0;
    while let Some(joined) = set.join_next().await {
        let Ok((peer, result)) = joined else { continue };
        let ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                accepted += 1;
                tracing::info!(server = server_id, peer, uuid, ms, "peer evicted the dead node");
            }
            Err(e) => tracing::warn!(server = server_id, peer, uuid, ms, error = %e, "peer did not evict the dead node"),
        }
    }
    accepted
}

async fn evict_on(peer: &str, admin: &DbCredentials, uuid: &str) -> Result<(), String> {
    let mut conn = connect_tcp(peer, admin, CONNECT_TIMEOUT).await?;
    let sql = format!("SET GLOBAL wsrep_provider_options='evs.evict={uuid}'");
    let r = tokio::time::timeout(STATEMENT_TIMEOUT, sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn)).await;
    match r {
        Ok(Ok(_)) => {
            // Only a connection with no statement in flight is closed
            // politely; the others are dropped.
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {} ms", STATEMENT_TIMEOUT.as_millis())),
    }
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

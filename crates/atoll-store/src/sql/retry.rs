//! Repeating a write that lost a race with another writer.
//!
//! Galera certifies a transaction only at COMMIT; when another node wrote the
//! same rows first it fails with error 1213 (SQLSTATE 40001) and the whole
//! transaction must be run again, after a short random pause so the two
//! writers do not collide again. A local InnoDB deadlock looks the same.
//! SQLite can report `SQLITE_BUSY` when `busy_timeout` ran out under load.
//! Every write in this module is a whole transaction or a single statement,
//! so running it again from the start is safe.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use crate::{Result, StoreError};

const ATTEMPTS: u32 = 5;

/// Runs `op` until it succeeds, fails for a reason other than a write
/// conflict, or has failed [`ATTEMPTS`] times.
pub(super) async fn retry<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < ATTEMPTS && is_write_conflict(&e) => {
                tracing::debug!(attempt, error = %e, "metadata store write conflict, retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// 10 ms, 20 ms, 40 ms ... each plus up to as much again at random.
fn backoff(attempt: u32) -> Duration {
    let base = 10u64 << attempt.min(6);
    // A fresh `RandomState` is randomly keyed: enough jitter, no extra crate.
    let jitter = RandomState::new().hash_one(attempt) % base;
    Duration::from_millis(base + jitter)
}

/// Whether `e` means "another writer got there first, try again".
pub(super) fn is_write_conflict(e: &StoreError) -> bool {
    let StoreError::Db(sqlx::Error::Database(d)) = e else {
        return false;
    };
    if let Some(my) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // 1213 deadlock / Galera certification failure, 1205 lock wait timeout.
        return matches!(my.number(), 1213 | 1205);
    }
    // SQLite extended result codes: BUSY, BUSY_RECOVERY, BUSY_SNAPSHOT, LOCKED.
    matches!(d.code().as_deref(), Some("5" | "261" | "517" | "6"))
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..10 {
            let d = backoff(attempt).as_millis() as u64;
            let base = 10u64 << attempt.min(6);
            assert!(d >= base && d < 2 * base, "attempt {attempt}: {d} ms");
        }
    }
}

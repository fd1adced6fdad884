use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the message names the field.
    #[error("{0}")]
    Conflict(String),
    #[error("metadata store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata store holds an unreadable value in {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("metadata store migration {version} failed: {source}")]
    Migration { version: i64, source: sqlx::Error },
    /// A write made under a lease that moved to another server or lapsed.
    #[error("lease {lease} (generation {generation}) is no longer held by this server: another server took over this work")]
    Fenced { lease: String, generation: i64 },
    #[error("unsupported metadata store URL {0:?}: use sqlite://PATH or mysql://USER:PASS@HOST:PORT/DB")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// MetaDB could not be reached, or its node is not part of a primary
    /// component: nothing was written, and the same request may succeed
    /// soon or through another server.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Db(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => true,
            Self::Db(sqlx::Error::Io(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
            // 1047: "WSREP has not yet prepared node for application use"
            // (a Galera node outside the primary component); 9001: the
            // platform's proxy has no writer to send the connection to;
            // 1040: too many connections. None ran a statement. (1180, a
            // COMMIT that failed as the node left the primary component, is
            // not here: its write set may already be with the others, who
            // apply it; see `is_connection_lost`.)
            Self::Db(sqlx::Error::Database(d)) => {
                d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().is_some_and(|m| matches!(m.number(), 1047 | 9001 | 1040))
            }
            _ => false,
        }
    }

    /// MetaDB answers but takes no write: its disk is full, or it is read
    /// only. Nothing was written; reads still work.
    pub fn is_write_refused(&self) -> bool {
        let Self::Db(sqlx::Error::Database(d)) = self else { return false };
        if let Some(m) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            // 1290/1836: read-only; 1021: disk full; 1114: table full;
            // 1030 with errno 28 and 3: the engine could not write.
            return matches!(m.number(), 1290 | 1836 | 1021 | 1114 | 3) || (m.number() == 1030 && m.message().contains("28"));
        }
        // SQLite's primary result codes (extended ones carry them in the
        // low byte): SQLITE_READONLY 8, SQLITE_IOERR 10, SQLITE_FULL 13.
        d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 8 | 10 | 13))
    }

    /// The connection to MetaDB broke while a statement ran: if that was a
    /// commit, it may or may not have been applied.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Self::Db(sqlx::Error::Io(e)) => e.kind() != std::io::ErrorKind::ConnectionRefused,
            Self::Db(sqlx::Error::Protocol(m)) => m.contains("closed") || m.contains("EOF"),
            // 2006 "server has gone away", 2013 "lost connection during
            // query", 1927 "connection was killed" (MariaDB); 1180, an error
            // during COMMIT (Galera: the node left the primary component
            // while replicating it, and a rejoined group may apply it: seen
            // in the HA test, a user "refused" with 503 appeared later).
            Self::Db(sqlx::Error::Database(d)) => {
                d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().is_some_and(|m| matches!(m.number(), 2006 | 2013 | 1927 | 1180))
            }
            _ => false,
        }
    }
}

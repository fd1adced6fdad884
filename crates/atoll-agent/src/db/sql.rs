//! SQL connections to a server: as root over its unix socket (socket
//! authentication: the agent runs as root, no password exists), or with
//! the admin account over TCP to a peer.

use std::path::Path;
use std::time::Duration;

use atoll_api::db::DbCredentials;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::DbError;

/// Long enough for DDL on a small table, short enough that a hung server
/// does not hold the operation journal forever.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Options that send nothing but the handshake and `SET NAMES`: a node
/// outside the primary component refuses most statements (1047), and a
/// probe must still get through to ask it why.
fn minimal(o: MySqlConnectOptions) -> MySqlConnectOptions {
    o.pipes_as_concat(false).no_engine_substitution(false).timezone(None).statement_cache_capacity(0)
}

pub(crate) async fn connect_socket(socket: &Path, timeout: Duration) -> Result<MySqlConnection, String> {
    let opts = minimal(MySqlConnectOptions::new().socket(socket).username("root"));
    match tokio::time::timeout(timeout, opts.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("cannot connect to {}: {e}", socket.display())),
        Err(_) => Err(format!("cannot connect to {}: no answer in {} ms", socket.display(), timeout.as_millis())),
    }
}

pub(crate) async fn connect_tcp(addr: &str, creds: &DbCredentials, timeout: Duration) -> Result<MySqlConnection, String> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("{addr:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("{addr:?} has no valid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let opts = minimal(MySqlConnectOptions::new().host(host).port(port).username(&creds.user).password(&creds.password));
    match tokio::time::timeout(timeout, opts.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
        Err(_) => Err(format!("cannot connect to {addr}: no answer in {} ms", timeout.as_millis())),
    }
}

/// MariaDB errors a retry can cure: not in the primary component (1047),
/// deadlock or certification conflict (1213), lock wait timeout (1205).
fn transient(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|m| m.number()));
    matches!(code, Some(1047 | 1213 | 1205)) || !matches!(e, sqlx::Error::Database(_))
}

/// The server's own words (`error 1064: You have an error ...`).
fn server_message(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => match d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            Some(m) => format!("error {}: {}", m.number(), m.message()),
            None => d.message().to_string(),
        },
        None => e.to_string(),
    }
}

/// Runs `statements` in order as root over the socket; the rows each one
/// affected. A failure names the statement's index; those before it have
/// taken effect, so a retried batch must be idempotent (`IF NOT EXISTS`).
pub(crate) async fn run_statements(socket: &Path, statements: &[String]) -> Result<Vec<u64>, DbError> {
    let mut conn = connect_socket(socket, Duration::from_secs(5)).await.map_err(DbError::Io)?;
    let mut affected = Vec::with_capacity(statements.len());
    for (i, s) in statements.iter().enumerate() {
        let run = sqlx::raw_sql(AssertSqlSafe(s.as_str())).execute(&mut conn);
        match tokio::time::timeout(STATEMENT_TIMEOUT, run).await {
            Ok(Ok(r)) => affected.push(r.rows_affected()),
            Ok(Err(e)) => {
                let msg = format!("statement {i} (counting from 0) failed: {}", server_message(&e));
                return Err(if transient(&e) { DbError::Io(msg) } else { DbError::Refused(msg) });
            }
            Err(_) => return Err(DbError::Io(format!("statement {i} did not finish in {} s", STATEMENT_TIMEOUT.as_secs()))),
        }
    }
    let _ = conn.close().await;
    Ok(affected)
}

//! The SQL the platform sends to a server: accounts, online parameter
//! changes, a causal read, eviction of a dead peer, and the status
//! queries agents and proxies probe with. Statements are built from values
//! that were validated first (names, catalog-checked parameter values,
//! generated passwords), so they never carry a quote of their own.

use std::collections::{BTreeMap, HashMap};

use atoll_core::{GtidPos, ReplicaChannel, ReplicationStatus, WsrepStatus};

use crate::params;

/// Every `wsrep_%` status variable, for the agent's prober. SHOW rather
/// than SELECT: a node outside the primary component refuses SELECT (1047)
/// but still answers SHOW, and that answer is what we need.
pub const WSREP_STATUS: &str = "SHOW GLOBAL STATUS LIKE 'wsrep\\_%'";

/// Every status counter, for the agent's metrics scrape (a node outside the
/// primary component answers it too).
pub const GLOBAL_STATUS: &str = "SHOW GLOBAL STATUS";

/// Statement latency as MariaDB's `query_response_time` plugin counts it
/// (loaded by every server's config): per bucket's upper bound, "count total".
pub const QUERY_RESPONSE_TIME: &str = "SELECT TRIM(TIME), CONCAT(COUNT, ' ', TRIM(TOTAL)) FROM information_schema.QUERY_RESPONSE_TIME";

/// Only what routing needs, for a proxy probing every few milliseconds.
pub const ROUTING_STATUS: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_ready', 'wsrep_cluster_status')";

/// `read_only` through SHOW, for the same reason as [`WSREP_STATUS`].
pub const READ_ONLY: &str = "SHOW GLOBAL VARIABLES LIKE 'read\\_only'";

/// What the agent's prober reads besides `wsrep_%`: `read_only`, and the
/// binary log position replication between clusters compares.
pub const NODE_VARIABLES: &str = "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'log_bin', 'gtid_binlog_pos')";

/// The replica channel of a node that applies one (no row when none).
pub const SLAVE_STATUS: &str = "SHOW SLAVE STATUS";

/// The cluster size a survivor reports, to see an eviction take effect.
pub const CLUSTER_SIZE: &str = "SHOW GLOBAL STATUS LIKE 'wsrep\\_cluster\\_size'";

/// Name/value rows of [`WSREP_STATUS`] or [`ROUTING_STATUS`] as a status;
/// a variable the query did not ask for keeps its default.
pub fn wsrep_from_rows(rows: &HashMap<String, String>) -> WsrepStatus {
    let s = |k: &str| rows.get(&format!("wsrep_{k}")).cloned().unwrap_or_default();
    WsrepStatus {
        ready: s("ready").eq_ignore_ascii_case("ON"),
        cluster_status: s("cluster_status"),
        local_state: s("local_state").parse().unwrap_or(0),
        local_state_comment: s("local_state_comment"),
        cluster_size: s("cluster_size").parse().unwrap_or(0),
        flow_control_paused: s("flow_control_paused").parse().unwrap_or(0.0),
        gcomm_uuid: s("gcomm_uuid"),
        cluster_state_uuid: s("cluster_state_uuid"),
        last_committed: s("last_committed").parse().unwrap_or(-1),
    }
}

/// Whether the rows of [`READ_ONLY`] say the server refuses writes.
pub fn read_only_from_rows(rows: &HashMap<String, String>) -> bool {
    rows.get("read_only").is_some_and(|v| v.eq_ignore_ascii_case("ON") || v == "1")
}

/// Replication status from the rows of [`NODE_VARIABLES`] and of
/// [`SLAVE_STATUS`] (column name to value); `None` without a binary log.
pub fn replication_from_rows(vars: &HashMap<String, String>, slave: Option<&HashMap<String, String>>) -> Option<ReplicationStatus> {
    if !vars.get("log_bin").is_some_and(|v| v.eq_ignore_ascii_case("ON")) {
        return None;
    }
    let channel = slave.filter(|r| r.get("Master_Host").is_some_and(|h| !h.is_empty())).map(|r| {
        let get = |k: &str| r.get(k).cloned().unwrap_or_default();
        let error = [get("Last_SQL_Error"), get("Last_IO_Error")].into_iter().find(|e| !e.is_empty());
        ReplicaChannel {
            source: crate::config::host_port(&get("Master_Host"), get("Master_Port").parse().unwrap_or(0)),
            io_running: get("Slave_IO_Running"),
            sql_running: get("Slave_SQL_Running").eq_ignore_ascii_case("Yes"),
            seconds_behind: get("Seconds_Behind_Master").parse().ok(),
            received: get("Gtid_IO_Pos"),
            last_error: error,
        }
    });
    Some(ReplicationStatus { gtid_binlog_pos: vars.get("gtid_binlog_pos").cloned().unwrap_or_default(), channel })
}

/// The account a standby's applier logs in to its source with: binary log
/// events only. Both sides of a pair have it (it replicates), so the pair
/// can turn round. See [`account_with_password`] for the password.
pub fn replication_account(user: &str, password: &str, require_tls: bool) -> Vec<String> {
    let mut statements = account_with_password(user, password);
    statements.push(format!("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'%'"));
    statements.push(format!("ALTER USER '{user}'@'%' REQUIRE {}", if require_tls { "SSL" } else { "NONE" }));
    statements
}

/// Where an applier reads from, and how it logs in.
#[derive(Debug, Clone)]
pub struct ChannelSource<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    /// The CA that signed the source's certificate: TLS, verified.
    pub ca_file: Option<&'a str>,
}

/// Makes this node the applier of a channel from `source`, starting after
/// `from`: set explicitly, because Galera does not replicate
/// `gtid_slave_pos` and a node that becomes the applier may not know what
/// another applied before it.
pub fn start_channel(source: &ChannelSource<'_>, from: &GtidPos) -> Vec<String> {
    let tls = match source.ca_file {
        Some(ca) => format!(", MASTER_SSL=1, MASTER_SSL_CA='{ca}', MASTER_SSL_VERIFY_SERVER_CERT=1"),
        None => String::new(),
    };
    let mut statements = stop_channel();
    statements.push(format!("SET GLOBAL gtid_slave_pos = '{from}'"));
    statements.push(format!(
        "CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT={}, MASTER_USER='{}', MASTER_PASSWORD='{}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1{tls}",
        source.host, source.port, source.user, source.password
    ));
    statements.push("START SLAVE".into());
    statements
}

/// Stops and forgets this node's channel (a no-op without one).
pub fn stop_channel() -> Vec<String> {
    vec!["STOP SLAVE".into(), "RESET SLAVE ALL".into()]
}

/// The platform's accounts on a new cluster: the admin (all privileges,
/// also handed to admins) and the read-only monitor the proxies and
/// probes use. First drops the anonymous accounts `mariadb-install-db`
/// makes, which shadow real accounts on loopback; DROP USER replicates,
/// where editing `mysql.global_priv` (Aria) would not. `hostname` is the
/// host's name as the install script saw it. Idempotent: a rerun resets
/// the passwords to the same values.
pub fn create_accounts(admin: (&str, &str), monitor: (&str, &str), hostname: &str) -> Vec<String> {
    let hostname = if hostname.is_empty() || hostname.contains('\'') { "localhost" } else { hostname };
    let ((admin_user, admin_password), (monitor_user, monitor_password)) = (admin, monitor);
    let mut statements = vec![format!("DROP USER IF EXISTS ''@'localhost', ''@'{hostname}'")];
    statements.extend(account_with_password(admin_user, admin_password));
    statements.push(format!("GRANT ALL PRIVILEGES ON *.* TO '{admin_user}'@'%' WITH GRANT OPTION"));
    statements.push(admin_obeys_read_only(admin_user));
    statements.extend(account_with_password(monitor_user, monitor_password));
    statements.push(format!("GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO '{monitor_user}'@'%'"));
    statements
}

/// `ALL` includes `READ_ONLY ADMIN` (10.11), which writes through
/// `read_only`: without it the admin account, handed to people and
/// applications, cannot write to a standby or a fenced primary. The
/// replica applier and the agent (root over the socket) still can.
pub fn admin_obeys_read_only(user: &str) -> String {
    format!("REVOKE READ_ONLY ADMIN ON *.* FROM '{user}'@'%'")
}

/// `user`@'%' made, or reset, with `password`, in statements run in order
/// on one connection, so that the password is in none that replicates:
/// Galera replicates account statements as their text and keeps that text
/// in every node's write-set cache (`galera.cache`), where `IDENTIFIED BY
/// 'clear'` stayed readable. The node hashes the password into a session
/// variable (setting one is not replicated) and the statements that
/// replicate carry the hash only.
fn account_with_password(user: &str, password: &str) -> Vec<String> {
    let with_hash =
        |statement: &str| format!("EXECUTE IMMEDIATE CONCAT('{statement} IDENTIFIED BY PASSWORD ''', @atoll_password_hash, '''')");
    vec![
        format!("SET @atoll_password_hash = PASSWORD('{password}')"),
        with_hash(&format!("CREATE USER IF NOT EXISTS ''{user}''@''%''")),
        with_hash(&format!("ALTER USER ''{user}''@''%''")),
    ]
}

/// A running server takes its TLS files again: for new client
/// connections (`FLUSH SSL`) and for new Galera links and state transfers
/// (`socket.ssl_reload`); connections already open keep their session.
pub fn reload_tls() -> Vec<String> {
    vec!["FLUSH SSL".into(), "SET GLOBAL wsrep_provider_options = 'socket.ssl_reload=1'".into()]
}

/// Drops a database and everything in it.
pub fn drop_database(database: &str) -> String {
    format!("DROP DATABASE IF EXISTS `{database}`")
}

/// The platform's own database on its MetaDB cluster, and the one account
/// its servers use, allowed that database only (from anywhere: each server
/// reaches it through its own node's proxy). Idempotent (a resumed
/// deploy runs it again); `password` must be free of quotes, and
/// replicates as a hash only (see [`account_with_password`]). With
/// `require_tls` the account cannot log in over a plain connection.
pub fn metadb_database(database: &str, user: &str, password: &str, require_tls: bool) -> Vec<String> {
    let mut statements = vec![
        // An anonymous account matches local connections before ours does.
        "DROP USER IF EXISTS ''@'localhost'".to_string(),
        format!("CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
    ];
    statements.extend(account_with_password(user, password));
    statements.push(format!("GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'%'"));
    statements.push(format!("ALTER USER '{user}'@'%' REQUIRE {}", if require_tls { "SSL" } else { "NONE" }));
    statements
}

/// MonitorDB's database beside MetaDB's, for the same account; kept
/// across redeploys (metric history is not rebuilt from anywhere).
pub fn monitordb_database(database: &str, user: &str) -> Vec<String> {
    vec![
        format!("CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
        format!("GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'%'"),
    ]
}

/// Applies catalog-checked parameters to a running server.
pub fn set_global(changed: &BTreeMap<String, String>) -> Vec<String> {
    changed.iter().map(|(k, v)| format!("SET GLOBAL {} = {}", params::normalize_key(k), sql_value(v))).collect()
}

/// Numbers and ON/OFF go as they are, sizes (`128M`) as bytes, anything
/// else as a quoted string (validated values never contain quotes).
fn sql_value(v: &str) -> String {
    let bare = v.chars().all(|c| c.is_ascii_digit()) || matches!(v.to_ascii_uppercase().as_str(), "ON" | "OFF");
    match params::parse_size(v) {
        Some(n) if !bare => n.to_string(),
        _ if bare => v.to_string(),
        _ => format!("'{v}'"),
    }
}

/// A read that returns only once this node has applied every write
/// committed anywhere in the cluster before it began: what a new writer
/// runs before it takes the writes.
pub fn causal_read() -> Vec<String> {
    vec!["SET SESSION wsrep_sync_wait = 15".to_string(), "SELECT 1".to_string()]
}

/// Asks a survivor to drop a dead node (its gcomm UUID) from the group at
/// once instead of waiting out the failure-detection timeouts.
pub fn evict(gcomm_uuid: &str) -> String {
    format!("SET GLOBAL wsrep_provider_options='evs.evict={gcomm_uuid}'")
}

/// Clears a survivor's evict list, so the evicted node, restarted, can
/// join again without waiting for `install_timeout`.
pub const CLEAR_EVICTIONS: &str = "SET GLOBAL wsrep_provider_options='evs.evict='";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_values() {
        assert_eq!(sql_value("500"), "500");
        assert_eq!(sql_value("ON"), "ON");
        assert_eq!(sql_value("128M"), "134217728");
        assert_eq!(sql_value("STRICT_TRANS_TABLES"), "'STRICT_TRANS_TABLES'");
        let changed = BTreeMap::from([("max-connections".to_string(), "500".to_string())]);
        assert_eq!(set_global(&changed), ["SET GLOBAL max_connections = 500"]);
    }

    #[test]
    fn status_rows() {
        let rows: HashMap<String, String> = [
            ("wsrep_ready", "ON"),
            ("wsrep_cluster_status", "Primary"),
            ("wsrep_local_state", "4"),
            ("wsrep_local_state_comment", "Synced"),
            ("wsrep_cluster_size", "3"),
            ("wsrep_flow_control_paused", "0.25"),
            ("wsrep_gcomm_uuid", "a1"),
            ("wsrep_last_committed", "17"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = wsrep_from_rows(&rows);
        assert!(s.ready);
        assert_eq!((s.local_state, s.cluster_size, s.last_committed), (4, 3, 17));
        assert_eq!(s.flow_control_paused, 0.25);
        assert_eq!(crate::state::server_state(Some(&s), true), atoll_core::ServerState::Synced);
        let ro = HashMap::from([("read_only".to_string(), "ON".to_string())]);
        assert!(read_only_from_rows(&ro));
        assert!(!read_only_from_rows(&HashMap::new()));
    }

    #[test]
    fn replication_status_and_channel_statements() {
        let vars: HashMap<String, String> =
            [("log_bin", "ON"), ("gtid_binlog_pos", "7-7-12"), ("read_only", "ON")].map(|(k, v)| (k.into(), v.into())).into();
        let slave: HashMap<String, String> = [
            ("Master_Host", "127.0.0.21"),
            ("Master_Port", "3306"),
            ("Slave_IO_Running", "Connecting"),
            ("Slave_SQL_Running", "Yes"),
            ("Seconds_Behind_Master", ""),
            ("Gtid_IO_Pos", "7-7-12"),
            ("Last_IO_Error", "error connecting to master"),
            ("Last_SQL_Error", ""),
        ]
        .map(|(k, v)| (k.into(), v.into()))
        .into();
        let r = replication_from_rows(&vars, Some(&slave)).unwrap();
        let c = r.channel.unwrap();
        assert_eq!((c.source.as_str(), c.seconds_behind, c.running()), ("127.0.0.21:3306", None, true));
        assert_eq!(c.last_error.as_deref(), Some("error connecting to master"));
        assert_eq!(r.gtid_binlog_pos, "7-7-12");
        assert!(replication_from_rows(&HashMap::new(), None).is_none());

        let src = ChannelSource { host: "127.0.0.21", port: 3306, user: "r", password: "pw", ca_file: Some("/d/ca.pem") };
        let s = start_channel(&src, &"7-7-12".parse().unwrap());
        assert_eq!(&s[..3], ["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL gtid_slave_pos = '7-7-12'"]);
        assert!(s[3].contains("MASTER_USE_GTID=slave_pos") && s[3].ends_with("MASTER_SSL_VERIFY_SERVER_CERT=1"), "{}", s[3]);
        assert_eq!(s[4], "START SLAVE");
    }

    #[test]
    fn accounts_fall_back_to_localhost_for_an_unusable_hostname() {
        let s = create_accounts(("a", "pa"), ("m", "pm"), "it's");
        assert_eq!(s[0], "DROP USER IF EXISTS ''@'localhost', ''@'localhost'");
        assert!(s.iter().any(|x| x == "GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO 'm'@'%'"));
    }

    #[test]
    fn account_passwords_are_only_in_statements_that_do_not_replicate() {
        let mut s = create_accounts(("a", "secret-a"), ("m", "secret-m"), "h");
        s.extend(metadb_database("atoll", "atoll", "secret-x", true));
        assert!(s.iter().any(|x| x == "ALTER USER 'atoll'@'%' REQUIRE SSL"), "{s:#?}");
        for x in &s {
            assert_eq!(x.contains("secret-"), x.starts_with("SET @atoll_password_hash = PASSWORD('secret-"), "{x}");
        }
        let made =
            "EXECUTE IMMEDIATE CONCAT('CREATE USER IF NOT EXISTS ''m''@''%'' IDENTIFIED BY PASSWORD ''', @atoll_password_hash, '''')";
        assert!(s.iter().any(|x| x == made), "{s:#?}");
    }
}

//! Where routing tables come from: the platform, long-polled, one server
//! after another when one fails; and the state file, so a proxy that
//! starts while the platform is down still routes with the last table it
//! had.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_api::routing::{RoutingQuery, RoutingTable};
use atoll_core::UnixMs;
use atoll_core::time::now_ms;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::probe;
use crate::router::{Shared, TableSource};

/// How long the platform may hold a poll (it caps this at 30 s).
const WAIT_MS: u64 = 20_000;
/// Failure logs repeat at most this often while the platform stays away.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// The state file's content.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    saved_unix_ms: UnixMs,
    table: RoutingTable,
}

/// Loads the state file, if any, and routes with it until the platform
/// answers.
pub fn load_saved(shared: &Arc<Shared>) {
    let Some(path) = shared.cfg.state_file() else { return };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the saved routing table; waiting for the platform");
            return;
        }
    };
    let saved: Saved = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the saved routing table is unreadable; waiting for the platform");
            return;
        }
    };
    if saved.table.cluster != shared.cfg.cluster {
        tracing::warn!(path = %path.display(), found = %saved.table.cluster, "the saved routing table is for another cluster; ignoring it");
        return;
    }
    let age_s = now_ms().saturating_sub(saved.saved_unix_ms).max(0) / 1000;
    tracing::info!(
        path = %path.display(),
        version = %saved.table.version,
        age_s,
        "serving from the saved routing table ({age_s} s old) until the platform answers"
    );
    let (_, probers) = shared.apply_table(saved.table, TableSource::StateFile, saved.saved_unix_ms);
    probe::spawn(shared, probers);
}

fn save(path: &Path, table: &RoutingTable) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let body = serde_json::to_vec_pretty(&Saved { saved_unix_ms: now_ms(), table: table.clone() }).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    // It holds the monitor password: owner only.
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Polls the platform until `stop`.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let cfg = &shared.cfg;
    let mut identity_seen = identity_mtime(cfg);
    let mut http = match http_client(cfg) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; routing stays with the saved table");
            return;
        }
    };
    // The servers to ask: the ones we were started with, then the ones
    // each table names (the platform's servers that are up).
    let mut servers: Vec<String> = cfg.servers.clone();
    let mut server = 0usize;
    let mut failures = 0u32;
    let mut last_log: Option<Instant> = None;
    // The first answer in this process is asked for at once, even when a
    // saved table has the current version, so the table is confirmed.
    let mut confirmed = false;
    loop {
        let mtime = identity_mtime(cfg);
        if mtime != identity_seen {
            match http_client(cfg) {
                Ok(h) => {
                    tracing::info!("using the renewed certificate or CA bundle");
                    http = h;
                    identity_seen = mtime;
                }
                Err(e) => tracing::warn!(error = %e, "cannot use the renewed certificate or CA bundle; keeping the current ones"),
            }
        }
        let base = servers[server % servers.len()].trim_end_matches('/').to_string();
        let base = base.as_str();
        let url = format!("{base}/api/v1/clusters/{}/routing", cfg.cluster);
        let since = if confirmed { shared.table_version() } else { None };
        let query = RoutingQuery { since, wait_ms: Some(WAIT_MS) };
        let request = http.get(&url).bearer_auth(&cfg.token).query(&query).send();
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = fetch(request) => r,
        };
        match outcome {
            Ok(table) if table.cluster == cfg.cluster => {
                if failures > 0 {
                    tracing::info!(server = %base, "platform answers again");
                }
                failures = 0;
                last_log = None;
                let first = !confirmed;
                confirmed = true;
                learn_servers(&mut servers, &mut server, &table.servers, &cfg.servers);
                let (changed, probers) = shared.apply_table(table.clone(), TableSource::Platform, now_ms());
                probe::spawn(&shared, probers);
                if (changed || first)
                    && let Some(path) = cfg.state_file()
                {
                    let r = tokio::task::spawn_blocking(move || save(&path, &table)).await;
                    if let Ok(Err(e)) | Err(e) = r.map_err(std::io::Error::other) {
                        tracing::warn!(error = %e, "cannot save the routing table; a restart without the platform would not route");
                    }
                }
                continue;
            }
            Ok(table) => {
                let msg = format!("answered with the table of cluster '{}'", table.cluster);
                note_failure(&mut last_log, base, &msg);
            }
            Err(msg) => note_failure(&mut last_log, base, &msg),
        }
        failures = failures.saturating_add(1);
        server += 1;
        // Next server at once after one failure; once every server
        // failed, back off up to 2 s so a dead platform costs nothing.
        let rounds = failures / servers.len() as u32;
        let pause = Duration::from_millis(100 * u64::from(rounds.min(20)).max(1));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The client for the platform: the platform's CA and, given, the
/// certificate to present (read from its files now).
fn http_client(cfg: &crate::ProxyConfig) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_millis(WAIT_MS) + Duration::from_secs(10));
    let Some(ca_file) = &cfg.ca_file else { return builder.build().map_err(|e| e.to_string()) };
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let ca = read(ca_file)?;
    let own = match &cfg.identity_files {
        Some((cert, key)) => Some(atoll_pki::CertKey { cert_pem: read(cert)?, key_pem: read(key)? }),
        None => None,
    };
    let tls = atoll_pki::client_config(&[&ca], own.as_ref()).map_err(|e| e.to_string())?;
    builder.tls_backend_preconfigured(tls).build().map_err(|e| e.to_string())
}

/// When the certificate file and the CA file last changed (the agent
/// replaces them in place: renewal, CA rotation).
fn identity_mtime(cfg: &crate::ProxyConfig) -> [Option<std::time::SystemTime>; 2] {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [cfg.identity_files.as_ref().and_then(|(cert, _)| mtime(cert)), cfg.ca_file.as_deref().and_then(mtime)]
}

/// Takes the table's list of servers (keeping the configured ones after
/// it), staying on the server that answered.
fn learn_servers(servers: &mut Vec<String>, at: &mut usize, named: &[String], configured: &[String]) {
    if named.is_empty() {
        return;
    }
    let current = servers[*at % servers.len()].trim_end_matches('/').to_string();
    let fresh = atoll_core::merge_urls(named, configured);
    if fresh != *servers {
        tracing::info!(servers = ?fresh, "platform servers changed");
        *at = fresh.iter().position(|u| *u == current).unwrap_or(0);
        *servers = fresh;
    }
}

fn note_failure(last_log: &mut Option<Instant>, base: &str, msg: &str) {
    if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
        tracing::warn!(server = %base, error = %msg, "cannot get the routing table; routing with the last one");
        *last_log = Some(Instant::now());
    }
}

async fn fetch(request: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>) -> Result<RoutingTable, String> {
    let resp = request.await.map_err(|e| describe(&e))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| describe(&e))?;
    if !status.is_success() {
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(format!("HTTP {status}: {}", text.trim()));
    }
    serde_json::from_slice(&body).map_err(|e| format!("not a routing table: {e}"))
}

/// The innermost cause ("connection refused"), not reqwest's wrapper.
fn describe(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    if e.is_timeout() { format!("timed out ({source})") } else { source.to_string() }
}

#[cfg(test)]
mod tests {
    use super::learn_servers;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn adopts_the_tables_servers_and_stays_on_the_one_that_answered() {
        let configured = v(&["http://a:8080/"]);
        let mut servers = v(&["http://a:8080"]);
        let mut at = 0;
        learn_servers(&mut servers, &mut at, &v(&["http://b:8080", "http://a:8080", "http://c:8080"]), &configured);
        assert_eq!(servers, v(&["http://b:8080", "http://a:8080", "http://c:8080"]));
        assert_eq!(servers[at], "http://a:8080");
        // A table without servers (an older platform) changes nothing.
        learn_servers(&mut servers, &mut at, &[], &configured);
        assert_eq!(servers.len(), 3);
        // A configured server the platform no longer lists is kept last.
        learn_servers(&mut servers, &mut at, &v(&["http://b:8080"]), &configured);
        assert_eq!(servers, v(&["http://b:8080", "http://a:8080"]));
        assert_eq!(servers[at], "http://a:8080");
    }
}

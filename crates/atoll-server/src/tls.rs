//! TLS for the API and console: the platform's CA (one per platform, in
//! MetaDB with its key sealed, made by the first server) and this server's
//! certificates (the listener is atoll_pki's).

use std::net::{IpAddr, SocketAddr};

use atoll_pki::{Ca, CertKey, LeafRequest, Usage};

use crate::ServerConfig;
use tokio_util::sync::CancellationToken;

/// Whether the caller presented a certificate of the platform's CA (the
/// TLS layer verified it; plain HTTP: never).
pub fn client_cert(parts: &axum::http::request::Parts) -> bool {
    parts.extensions.get::<axum::extract::ConnectInfo<atoll_pki::TlsPeer>>().is_some_and(|c| c.0.client_cert)
}

/// The certificate this server presents: the operator's, or one the
/// platform's CA issues for the addresses clients use.
fn server_cert(ca: &Ca, config: &ServerConfig, addr: SocketAddr) -> anyhow::Result<CertKey> {
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        let read = |p: &std::path::Path| std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()));
        return Ok(CertKey { cert_pem: read(cert)?, key_pem: read(key)? });
    }
    let mut ips = vec![addr.ip()];
    if addr.ip().is_unspecified() {
        ips = vec![IpAddr::from([127, 0, 0, 1])];
    }
    let mut dns = vec!["localhost".to_string()];
    if let Some(host) =
        config.public_url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()).and_then(|u| u.host_str().map(str::to_string))
    {
        match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(host),
        }
    }
    let req = LeafRequest { dns, ..LeafRequest::new(format!("atoll server {addr}"), ips, Usage::Both) };
    Ok(ca.issue(&req)?)
}

/// What this server presents when it calls agents and other servers
/// (mutual TLS): a client certificate of the platform's CA, even when the
/// API serves the operator's own certificate.
fn peer_cert(ca: &Ca, addr: SocketAddr) -> anyhow::Result<CertKey> {
    Ok(ca.issue(&LeafRequest::new(format!("atoll server {addr} (client)"), vec![addr.ip()], Usage::Client))?)
}

/// Issues (or reads) this server's certificates and puts them to use: the
/// API's into `api` when it serves TLS, the agent-facing one into every
/// client made from now on. At start and at each renewal.
pub fn use_own_certs(ca: &Ca, config: &ServerConfig, addr: SocketAddr, api: &atoll_pki::LiveCert) -> anyhow::Result<()> {
    if config.tls {
        api.set(&server_cert(ca, config, addr)?)?;
    }
    atoll_client::present_certificate(&peer_cert(ca, addr)?)?;
    Ok(())
}

/// An agent's certificate for the key it holds: valid for its address,
/// for serving the platform and for calling it.
pub fn agent_cert(ca: &Ca, host: atoll_core::HostId, address: IpAddr, public_key_hex: &str) -> Result<String, atoll_pki::PkiError> {
    ca.issue_for(&LeafRequest::new(format!("atoll agent {host}"), vec![address], Usage::Both), public_key_hex)
}

/// A database server's TLS material: a certificate of the platform's CA
/// for its address, with a fresh key, for clients, Galera and state
/// transfers (it is both a server and a client to its peers). The key
/// travels to the agent inside the define operation, over the agents'
/// mutual TLS on a TLS platform.
pub fn db_server_tls(pki: &crate::pki::Loaded, cluster: &str, server: &str, address: &str) -> Result<atoll_api::db::DbTls, String> {
    let issued = pki.issuer.issue(&db_server_request(cluster, server, address)?).map_err(|e| e.to_string())?;
    Ok(atoll_api::db::DbTls { ca_pem: pki.bundle.clone(), cert_pem: issued.cert_pem, key_pem: issued.key_pem })
}

/// What a database server's certificate says, at define and at renewal.
pub fn db_server_request(cluster: &str, server: &str, address: &str) -> Result<LeafRequest, String> {
    let ip: IpAddr = address.parse().map_err(|_| format!("server {server} has no IP address ({address:?}) to certify"))?;
    // No spaces or slashes in the name: the rsync state transfer sends the
    // joiner's common name in an address (`CN:secret@host`), and the donor
    // refuses one it cannot parse.
    Ok(LeafRequest::new(format!("{server}.{cluster}.atoll-db"), vec![ip], Usage::Both))
}

/// Keeps this server's certificates fresh while it runs: the API's (a
/// platform certificate renewed half-way through its life, or the
/// operator's files read again when they change) and the one presented to
/// agents. A server restarted now and then never gets here; one that runs
/// for a year must not lose its agents or its clients.
pub async fn renew(state: crate::state::AppState, addr: SocketAddr, stop: CancellationToken) {
    const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
    let mut issued = std::time::Instant::now();
    let mut files_changed = operator_files_mtime(&state.config);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
        let mtime = operator_files_mtime(&state.config);
        let due = issued.elapsed() >= atoll_pki::RENEW_AFTER;
        if !due && mtime == files_changed {
            continue;
        }
        match use_own_certs(&state.pki.now().issuer, &state.config, addr, &state.pki.api_cert) {
            Ok(()) => {
                tracing::info!("TLS certificates renewed");
                issued = std::time::Instant::now();
                files_changed = mtime;
            }
            Err(e) => tracing::error!(error = %e, "cannot renew this server's TLS certificates; trying again in an hour"),
        }
    }
}

/// When the operator's certificate or key file last changed, if given.
fn operator_files_mtime(config: &ServerConfig) -> Option<std::time::SystemTime> {
    [&config.tls_cert_file, &config.tls_key_file]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

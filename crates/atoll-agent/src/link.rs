//! The agent's side of the conversation with the platform: registration,
//! then heartbeats carrying facts and the measured clock offset.

use std::sync::Arc;
use std::time::Duration;

use atoll_api::agent::{
    DbCertificateRequest, DbCertificateResponse, HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse,
};
use atoll_client::{Client, ClientError};
use atoll_core::time::now_ms;
use tokio_util::sync::CancellationToken;

use atoll_client::Servers;

use crate::AgentConfig;
use crate::http::AgentState;
use crate::identity::{Identity, sha256_hex};
use crate::tls::AgentTls;

/// Facts are sent at least this often for their volatile readings (free
/// memory and disk), as the server writes them.
const FACTS_REFRESH: Duration = Duration::from_secs(300);
/// How often the database servers' certificates are looked at.
const DB_RENEWAL_LOOK: Duration = Duration::from_secs(10);

pub(crate) struct Link {
    config: AgentConfig,
    servers: Servers,
    identity: Identity,
    state: AgentState,
    interval: Duration,
    clock_offset_ms: Option<i64>,
    tls: Option<Arc<AgentTls>>,
}

impl Link {
    pub(crate) fn new(config: AgentConfig, servers: Servers, identity: Identity, state: AgentState, tls: Option<Arc<AgentTls>>) -> Self {
        Self { config, servers, identity, state, interval: Duration::from_secs(2), clock_offset_ms: None, tls }
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.config.listen)
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.register_until_done(&shutdown).await?;
        // Facts are read every `facts_every` but sent only when what the
        // platform judges by changed (their stable signature), when the
        // server asks, and every `FACTS_REFRESH` for the volatile readings:
        // parsing them is most of a heartbeat's cost on the server.
        let mut last_sent = tokio::time::Instant::now();
        let mut sent_signature: Option<String> = None;
        let mut last_read = tokio::time::Instant::now();
        let mut send_facts = true;
        let mut unreachable_logged = false;
        let mut offset_reported = false;
        let mut next_renewal_try = tokio::time::Instant::now();
        let mut next_db_renewal_try = tokio::time::Instant::now();
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let facts = if send_facts || last_read.elapsed() >= self.config.facts_every {
                last_read = tokio::time::Instant::now();
                let mut f = self.state.collect_facts().await.unwrap_or_default();
                f.clock_offset_ms = self.clock_offset_ms;
                f.tls = self.tls_facts();
                (send_facts || sent_signature.as_deref() != Some(f.stable_signature().as_str())).then_some(f)
            } else {
                None
            };
            // Whether a certificate changed: the facts that name their
            // issuers go out with the next beat.
            let mut renewed = false;
            if tokio::time::Instant::now() >= next_renewal_try && self.tls.as_ref().is_some_and(|t| t.due_for_renewal()) {
                // Registering again renews the certificate (and the tokens);
                // at most once a minute, whatever the outcome.
                next_renewal_try = tokio::time::Instant::now() + Duration::from_secs(60);
                match self.register().await {
                    Ok(()) => {
                        tracing::info!("certificate renewed");
                        renewed = true;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the certificate yet; trying again in a minute"),
                }
            }
            if self.tls.is_some() && tokio::time::Instant::now() >= next_db_renewal_try {
                // A stat() per server; failures are tried again at the next
                // look, successes are not due again for half a year.
                next_db_renewal_try = tokio::time::Instant::now() + DB_RENEWAL_LOOK;
                renewed |= self.renew_db_certificates().await;
            }
            let signature = facts.as_ref().map(|f| f.stable_signature());
            match self.heartbeat(facts).await {
                Ok((reported_offset, want_facts, tls_changed)) => {
                    if tls_changed {
                        // A CA rotation moved on: act and report at once.
                        next_renewal_try = tokio::time::Instant::now();
                        next_db_renewal_try = tokio::time::Instant::now();
                    }
                    if unreachable_logged {
                        tracing::info!(server = %self.servers.current(), "server reachable again");
                        unreachable_logged = false;
                    }
                    if signature.is_some() {
                        last_sent = tokio::time::Instant::now();
                        sent_signature = signature;
                    }
                    // The first exchange only measures the clock offset:
                    // keep sending facts until they carry it.
                    offset_reported |= reported_offset;
                    send_facts = last_sent.elapsed() >= FACTS_REFRESH
                        || !offset_reported
                        || self.state.facts_changed()
                        || want_facts
                        || tls_changed
                        || renewed;
                }
                Err(ClientError::Api { status: 404, .. }) => {
                    anyhow::bail!(
                        "the platform no longer knows this host (it was removed); start the agent with a join token (ATOLL_JOIN_TOKEN) to join again"
                    );
                }
                Err(ClientError::Api { status: 401, message, .. }) => {
                    tracing::warn!(%message, "server refused our token; registering again");
                    self.register_until_done(&shutdown).await?;
                    send_facts = true;
                }
                Err(e) => {
                    if !unreachable_logged {
                        tracing::warn!(error = %e, "heartbeat failed; will keep trying");
                        unreachable_logged = true;
                    }
                    send_facts = true;
                }
            }
            // Beat early when a database or proxy changes state, so the
            // platform (and the writer it names) learns of a crash at once.
            let seen = self.signature();
            let next = tokio::time::Instant::now() + self.interval;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(next.min(tokio::time::Instant::now() + Duration::from_millis(100))) => {}
                }
                if tokio::time::Instant::now() >= next || self.signature() != seen {
                    break;
                }
            }
        }
    }

    /// Takes the platform's list of servers that are up, and keeps it for
    /// the next start when it changed.
    fn learn_servers(&self, urls: &[String]) {
        if urls.is_empty() {
            return;
        }
        let before = sorted(self.servers.all());
        // The servers we were started with stay known after the platform's
        // own: while a platform moves onto new servers (deploy's
        // bootstrap), the old one lists only itself.
        self.servers.replace(&atoll_core::merge_urls(urls, &self.config.servers));
        let after = sorted(self.servers.all());
        if before != after {
            tracing::info!(servers = ?after, "platform servers changed");
            let saved = serde_json::to_vec(&after)
                .map_err(|e| e.to_string())
                .and_then(|bytes| crate::files::write_atomic(&servers_file(&self.config), &bytes, 0o600, crate::files::Owner::default()));
            if let Err(e) = saved {
                tracing::warn!(error = %e, "cannot save the list of platform servers");
            }
        }
    }

    /// What the platform must hear about as soon as it changes.
    fn signature(&self) -> Vec<(atoll_core::DbId, String)> {
        let db = self.state.db().statuses().into_iter().map(|s| (s.id, s.state.to_string()));
        let proxies = self.state.proxies().reports().into_iter().map(|p| (p.id, format!("{:?}", p.state)));
        db.chain(proxies).collect()
    }

    /// New certificates for the database servers whose certificate is
    /// half-way through its life or from a CA that no longer issues, each
    /// for a key made here; the servers take them without a restart.
    async fn renew_db_certificates(&self) -> bool {
        let Some(tls) = &self.tls else { return false };
        let due = self.state.db().tls_due(|path| tls.stale(path));
        if due.is_empty() {
            return false;
        }
        let client = Client::over(&self.servers, self.identity.agent_token.clone(), Duration::from_secs(10));
        for id in due {
            let renewed = async {
                let key_pem = atoll_pki::new_key_pem().map_err(|e| e.to_string())?;
                let public_key = atoll_pki::public_key_hex(&key_pem).map_err(|e| e.to_string())?;
                let req = DbCertificateRequest { host_id: self.identity.host_id, database: id.clone(), public_key };
                let resp: DbCertificateResponse = client.post("/agent/v1/db-certificates", &req).await.map_err(|e| e.to_string())?;
                let tls = atoll_api::db::DbTls { ca_pem: resp.ca_pem, cert_pem: resp.certificate_pem, key_pem };
                self.state.db().install_tls(&id, &tls).await.map_err(|e| e.to_string())
            };
            match renewed.await {
                Ok(true) => tracing::info!(database = %id, "database certificate renewed and reloaded"),
                Ok(false) => tracing::info!(database = %id, "database certificate renewed; the server uses it at its next start"),
                Err(e) => tracing::warn!(database = %id, error = %e, "cannot renew the database certificate yet; trying again later"),
            }
        }
        true
    }

    /// The host's TLS facts, on a TLS platform.
    fn tls_facts(&self) -> Option<atoll_core::TlsFacts> {
        let tls = self.tls.as_ref()?;
        let db = self.state.db().tls_certificates().into_iter().map(|(id, path)| (id.to_string(), path)).collect();
        Some(tls.facts(db))
    }

    /// Takes what the platform says of TLS: the CA that issues now, and a
    /// new bundle to trust (for the agent, its proxies, which read the same
    /// `ca.pem`, and its database servers); whether anything changed.
    async fn follow_tls(&self, directive: Option<atoll_api::agent::TlsDirective>) -> bool {
        let (Some(tls), Some(directive)) = (&self.tls, directive) else { return false };
        let mut changed = tls.issuer().as_deref() != Some(directive.issuer.as_str());
        tls.set_issuer(&directive.issuer);
        if let Some(bundle) = directive.bundle_pem {
            match tls.trust(&bundle) {
                Ok(true) => {
                    changed = true;
                    for (id, r) in self.state.db().install_ca(&bundle).await {
                        match r {
                            Ok(()) => tracing::info!(database = %id, "database server trusts the new CA bundle"),
                            Err(e) => tracing::warn!(database = %id, error = %e, "cannot give the database server the new CA bundle"),
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "cannot take the platform's CA bundle"),
            }
        }
        changed
    }

    /// One heartbeat: whether it carried facts with a measured clock
    /// offset, whether the server asks for facts, and whether TLS changed.
    async fn heartbeat(&mut self, facts: Option<atoll_core::HostFacts>) -> Result<(bool, bool, bool), ClientError> {
        let reports_offset = facts.as_ref().is_some_and(|f| f.clock_offset_ms.is_some());
        let client = Client::over(&self.servers, self.identity.agent_token.clone(), Duration::from_secs(5));
        let req = HeartbeatRequest {
            host_id: self.identity.host_id,
            address: self.config.listen.ip().to_string(),
            agent_url: self.url(),
            facts,
            db: self.state.db().statuses(),
            proxies: self.state.proxies().reports(),
            trusted_cas: self.tls.as_ref().map(|t| t.trusted().fingerprints).unwrap_or_default(),
        };
        let t0 = now_ms();
        let resp: HeartbeatResponse = client.post("/agent/v1/heartbeat", &req).await?;
        let t1 = now_ms();
        // NTP-style: the server read its clock half-way through the exchange.
        let offset = (t0 + t1) / 2 - resp.server_time_ms;
        self.clock_offset_ms = Some(offset);
        self.state.set_clock_offset(offset);
        self.interval = Duration::from_millis(resp.heartbeat_interval_ms.max(100));
        self.learn_servers(&resp.servers);
        let tls_changed = self.follow_tls(resp.tls).await;
        Ok((reports_offset, resp.want_facts, tls_changed))
    }

    async fn register_until_done(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut wait = Duration::from_millis(200);
        loop {
            match self.register().await {
                Ok(()) => return Ok(()),
                Err(ClientError::Api { status: 401 | 403 | 409 | 422, message, .. }) => {
                    anyhow::bail!("registration refused: {message}");
                }
                Err(e) => tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot register yet"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => anyhow::bail!("stopped before registering"),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    async fn register(&mut self) -> Result<(), ClientError> {
        let facts = self.state.collect_facts().await.unwrap_or_default();
        let req = RegisterRequest {
            host_id: self.identity.host_id,
            join_token: self.config.join_token.clone(),
            agent_token: self.identity.agent_token.clone(),
            name: self.config.name.clone(),
            zone: self.config.zone.clone(),
            region: self.config.region.clone(),
            address: self.config.listen.ip().to_string(),
            agent_url: self.url(),
            agent_version: crate::VERSION.into(),
            facts,
            public_key: self
                .tls
                .as_ref()
                .and_then(|t| t.public_key_hex().inspect_err(|e| tracing::error!(error = %e, "cannot read the agent's key")).ok()),
        };
        let client = Client::over(&self.servers, None, Duration::from_secs(10));
        let resp: RegisterResponse = client.post("/agent/v1/register", &req).await?;
        match (&self.tls, resp.certificate_pem) {
            (Some(tls), Some(cert)) => {
                if let Err(e) = tls.accept(cert) {
                    tracing::error!(error = %e, "cannot use the certificate the platform issued; the platform cannot reach this agent");
                }
            }
            (Some(_), None) => tracing::error!("the platform issued no certificate for this agent; its API stays closed"),
            _ => {}
        }
        self.identity.agent_token = Some(resp.agent_token);
        self.identity.server_token_hash = Some(sha256_hex(&resp.server_token));
        if let Err(e) = self.identity.save(&self.config.data_dir) {
            tracing::error!(error = %e, "registered, but could not save credentials; the next start will need a join token and the host removed first");
        }
        self.state.set_identity(self.identity.clone());
        self.interval = Duration::from_millis(resp.heartbeat_interval_ms.max(100));
        self.learn_servers(&resp.servers);
        tracing::info!(host_id = %resp.host_id, name = %resp.name, "registered with the platform");
        Ok(())
    }
}

fn servers_file(config: &AgentConfig) -> std::path::PathBuf {
    config.data_dir.join("servers.json")
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The servers given on the command line first, then the ones learned
/// from the platform before the last stop.
pub(crate) fn known_servers(config: &AgentConfig) -> Servers {
    let saved: Vec<String> = std::fs::read(servers_file(config)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    Servers::new(&atoll_core::merge_urls(&config.servers, &saved))
}

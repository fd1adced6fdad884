//! What to scrape: every registered agent, every proxy, every live server,
//! read from MetaDB on each round so new hosts and clusters are picked up.

use std::collections::BTreeMap;

use atoll_core::time::now_ms;

use crate::platform::is_live;
use crate::state::AppState;

/// One scrape target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `job/instance`: unique, stable across rounds.
    pub id: String,
    pub url: String,
    /// Sent as a bearer token (agents want the platform's token).
    pub token: Option<String>,
    /// Added to every series: `job`, `instance` and where it runs.
    pub labels: BTreeMap<String, String>,
}

impl Target {
    fn new(job: &str, instance: &str, url: String, token: Option<String>, extra: &[(&str, &str)]) -> Target {
        let mut labels: BTreeMap<String, String> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        labels.insert("job".into(), job.into());
        labels.insert("instance".into(), instance.into());
        Target { id: format!("{job}/{instance}"), url, token, labels }
    }

    pub fn job(&self) -> &str {
        self.labels.get("job").map_or("", String::as_str)
    }

    pub fn instance(&self) -> &str {
        self.labels.get("instance").map_or("", String::as_str)
    }
}

/// Every target, from MetaDB now.
pub async fn current(state: &AppState) -> Result<Vec<Target>, atoll_store::StoreError> {
    let mut out = Vec::new();
    let hosts = state.store.list_hosts().await?;
    let names: BTreeMap<String, String> = hosts.iter().map(|h| (h.host.id.to_string(), h.host.name.clone())).collect();
    for h in &hosts {
        if let (Some(url), Some(token)) = (&h.host.agent_url, h.server_token.as_deref().and_then(|t| state.secrets.open_stored(t).ok())) {
            let name = h.host.name.as_str();
            out.push(Target::new(
                "agent",
                name,
                format!("{}/agent/v1/metrics", url.trim_end_matches('/')),
                Some(token),
                &[("host", name), ("zone", h.host.zone.as_deref().unwrap_or(""))],
            ));
        }
    }
    for cluster in state.store.list_clusters().await? {
        for p in state.store.cluster_proxies(&cluster.name).await? {
            let host = names.get(&p.host_id.to_string()).map_or("", String::as_str);
            let instance = format!("{}/{}", p.cluster, p.name);
            let url = match p.address.parse::<std::net::IpAddr>() {
                Ok(ip) => format!("http://{}/metrics", std::net::SocketAddr::new(ip, p.admin_port)),
                Err(_) => format!("http://{}:{}/metrics", p.address, p.admin_port),
            };
            out.push(Target::new("proxy", &instance, url, None, &[("host", host), ("proxy", p.name.as_str()), ("zone", p.zone.as_str())]));
        }
    }
    let now = now_ms();
    for s in state.store.list_platform_servers().await? {
        if is_live(state, &s, now) {
            let instance = s.url.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/').to_string();
            out.push(Target::new("server", &instance, format!("{}/metrics", s.url.trim_end_matches('/')), None, &[]));
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

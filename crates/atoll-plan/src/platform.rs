//! The seed's post-deployment check of the platform itself (`atoll check`):
//! what was observed comes in, pass / warn / fail per item comes out, each
//! with the fix. Works for one server on an embedded MetaDB as for a
//! three-node platform on a Galera MetaDB.

use crate::check::{CheckResult, CheckStatus, check_clock_skew};
use crate::profile::Profile;

/// One platform server as announced, and what asking it directly gave.
#[derive(Debug, Clone)]
pub struct ServerSeen {
    pub url: String,
    pub version: String,
    /// Announced itself recently.
    pub live: bool,
    /// `/readyz` answered ready (MetaDB reachable from it).
    pub ready: bool,
    /// The console's login page rendered.
    pub console: bool,
    pub errors_logged: i64,
}

/// A host of the platform's nodes (or any host, on a one-server platform).
#[derive(Debug, Clone)]
pub struct HostSeen {
    pub name: String,
    pub online: bool,
    pub clock_offset_ms: Option<i64>,
}

/// MetaDB as seen from the answering server.
#[derive(Debug, Clone)]
pub enum MetaDbSeen {
    /// Not a cluster of the platform's: the embedded file of one server,
    /// or a database the user runs (`sqlite`, `mysql`).
    Unmanaged { backend: String },
    /// A cluster the platform manages.
    Cluster {
        name: String,
        /// `healthy`, `degraded`, …
        status: String,
        /// (server, host, state), state as the engine names it.
        servers: Vec<(String, String, String)>,
        /// (proxy, host, state): `running` when its agent reports it so.
        proxies: Vec<(String, String, String)>,
    },
}

#[derive(Debug, Clone)]
pub struct PlatformSeen {
    /// The version of the server that ran the check.
    pub version: String,
    pub servers: Vec<ServerSeen>,
    pub hosts: Vec<HostSeen>,
    pub metadb: MetaDbSeen,
    /// The holder of the controllers' lease, if any.
    pub leader: Option<String>,
}

fn item(id: String, status: CheckStatus, measured: String, required: &str, fix: impl Into<String>) -> CheckResult {
    CheckResult { item: id, status, measured, required: required.into(), fix: (status != CheckStatus::Pass).then(|| fix.into()) }
}

fn pass_if(ok: bool) -> CheckStatus {
    if ok { CheckStatus::Pass } else { CheckStatus::Fail }
}

pub fn check_platform(seen: &PlatformSeen, profile: &Profile) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for s in &seen.servers {
        let up = s.live && s.ready;
        let measured = match (s.live, s.ready) {
            (true, true) => "answers, MetaDB reachable".to_string(),
            (true, false) => "announced, but /readyz is not ready".to_string(),
            (false, _) => "not announced recently".to_string(),
        };
        out.push(item(
            format!("server.api {}", s.url),
            pass_if(up),
            measured,
            "answers with MetaDB reachable",
            format!("start the server at {} (its service, or `atoll server --config …`) and read its log", s.url),
        ));
        out.push(item(
            format!("server.console {}", s.url),
            pass_if(s.console),
            if s.console { "renders" } else { "does not render" }.into(),
            "the login page renders",
            format!("open {}/login and read the server's log", s.url),
        ));
        out.push(item(
            format!("server.version {}", s.url),
            pass_if(s.version == seen.version),
            s.version.clone(),
            &format!("{} (as the others)", seen.version),
            "run the same atoll version on every node: upgrade the older ones",
        ));
        out.push(item(
            format!("server.log {}", s.url),
            if s.errors_logged == 0 { CheckStatus::Pass } else { CheckStatus::Warn },
            format!("{} error(s) logged since start", s.errors_logged),
            "no errors",
            format!("read the log of the server at {} for lines at ERROR", s.url),
        ));
    }
    out.push(item(
        "controllers.leader".into(),
        pass_if(seen.leader.is_some()),
        seen.leader.clone().unwrap_or_else(|| "no server holds the lease".into()),
        "one server runs the controllers",
        "no server can renew the lease: check that the servers reach MetaDB (`atoll platform`)",
    ));
    for h in &seen.hosts {
        out.push(item(
            format!("agent.online {}", h.name),
            pass_if(h.online),
            if h.online { "online" } else { "offline" }.into(),
            "online",
            format!("start the agent on {} and check that it reaches a server", h.name),
        ));
    }
    let offsets: Vec<(String, Option<i64>)> = seen.hosts.iter().map(|h| (h.name.clone(), h.clock_offset_ms)).collect();
    out.extend(check_clock_skew(&offsets, profile));
    match &seen.metadb {
        MetaDbSeen::Unmanaged { backend } => out.push(item(
            "metadb".into(),
            CheckStatus::Pass,
            if backend == "sqlite" { "embedded (one server)".to_string() } else { format!("{backend}, not managed by the platform") },
            "reachable",
            "",
        )),
        MetaDbSeen::Cluster { name, status, servers, proxies } => {
            out.push(item(
                format!("metadb.cluster {name}"),
                pass_if(status == "healthy"),
                status.clone(),
                "healthy",
                format!("`atoll cluster show {name}` names the server that is not synced; start its host's agent or `atoll cluster start {name} SERVER`"),
            ));
            for (server, host, state) in servers {
                out.push(item(
                    format!("metadb.node {server}"),
                    pass_if(state == "synced"),
                    format!("{state} on {host}"),
                    "synced",
                    format!("bring {host} back (its agent restarts the node), or `atoll cluster start {name} {server}`"),
                ));
            }
            for (proxy, host, state) in proxies {
                out.push(item(
                    format!("metadb.proxy {proxy}"),
                    pass_if(state == "running"),
                    format!("{state} on {host}"),
                    "running",
                    format!("the agent on {host} runs it: start the agent, or read {host}'s proxy log"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::check::worst;

    fn server(url: &str, version: &str) -> ServerSeen {
        ServerSeen { url: url.into(), version: version.into(), live: true, ready: true, console: true, errors_logged: 0 }
    }

    fn host(name: &str) -> HostSeen {
        HostSeen { name: name.into(), online: true, clock_offset_ms: Some(3) }
    }

    fn three_nodes() -> PlatformSeen {
        PlatformSeen {
            version: "0.2.0".into(),
            servers: ["a", "b", "c"].iter().map(|n| server(&format!("http://{n}:8080"), "0.2.0")).collect(),
            hosts: ["n1", "n2", "n3"].iter().map(|n| host(n)).collect(),
            metadb: MetaDbSeen::Cluster {
                name: "atoll-meta".into(),
                status: "healthy".into(),
                servers: (1..=3).map(|i| (format!("atoll-meta-{i}"), format!("n{i}"), "synced".into())).collect(),
                proxies: (1..=3).map(|i| (format!("atoll-meta-proxy-z{i}"), format!("n{i}"), "running".into())).collect(),
            },
            leader: Some("http://a:8080".into()),
        }
    }

    fn profile() -> Profile {
        crate::profile::ProfileName::Sandbox.profile()
    }

    #[test]
    fn a_healthy_three_node_platform_passes() {
        let r = check_platform(&three_nodes(), &profile());
        assert_eq!(worst(&r), CheckStatus::Pass, "{r:#?}");
        assert!(r.iter().any(|c| c.item == "metadb.node atoll-meta-2"));
    }

    #[test]
    fn each_failure_names_the_node_and_the_fix() {
        let mut seen = three_nodes();
        seen.servers[1].live = false;
        seen.servers[2].version = "0.1.0".into();
        seen.servers[0].errors_logged = 4;
        seen.hosts[1].online = false;
        if let MetaDbSeen::Cluster { status, servers, .. } = &mut seen.metadb {
            *status = "degraded".into();
            servers[1].2 = "unknown".into();
        }
        let r = check_platform(&seen, &profile());
        let status = |id: &str| r.iter().find(|c| c.item == id).unwrap_or_else(|| panic!("{id}: {r:#?}")).status;
        assert_eq!(status("server.api http://b:8080"), CheckStatus::Fail);
        assert_eq!(status("server.version http://c:8080"), CheckStatus::Fail);
        assert_eq!(status("server.log http://a:8080"), CheckStatus::Warn);
        assert_eq!(status("agent.online n2"), CheckStatus::Fail);
        assert_eq!(status("metadb.cluster atoll-meta"), CheckStatus::Fail);
        assert_eq!(status("metadb.node atoll-meta-2"), CheckStatus::Fail);
        let fix = r.iter().find(|c| c.item == "metadb.node atoll-meta-2").unwrap().fix.clone().unwrap();
        assert!(fix.contains("n2"), "{fix}");
        assert_eq!(worst(&r), CheckStatus::Fail);
    }

    #[test]
    fn one_server_on_an_embedded_metadb_passes_without_a_cluster() {
        let seen = PlatformSeen {
            version: "0.2.0".into(),
            servers: vec![server("http://127.0.0.1:8080", "0.2.0")],
            hosts: vec![],
            metadb: MetaDbSeen::Unmanaged { backend: "sqlite".into() },
            leader: Some("http://127.0.0.1:8080".into()),
        };
        assert_eq!(worst(&check_platform(&seen, &profile())), CheckStatus::Pass);
    }
}

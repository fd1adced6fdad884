//! A real server and three real agents on 127.0.0.11–13: registration,
//! facts, liveness, identity across address changes.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::time::Duration;

use atoll_api::v1::{HostListItem, HostView};
use atoll_core::HostStatus;
use atoll_testkit::{Platform, ServerOpts, wait_for};

async fn hosts(p: &Platform) -> Vec<HostListItem> {
    p.client().get("/api/v1/hosts").await.unwrap_or_default()
}

async fn host_status(p: &Platform, address: &str) -> Option<HostStatus> {
    hosts(p).await.into_iter().find(|h| h.address == address).map(|h| h.status)
}

fn proc_value(file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn three_agents_register_report_facts_and_go_offline_and_back() {
    let mut p = Platform::start(ServerOpts::default()).await.unwrap();
    p.login_admin().await.unwrap();
    let join = p.join_token().await.unwrap();
    let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let mut agents: Vec<_> =
        ips.iter().enumerate().map(|(i, ip)| p.start_agent(&format!("a{i}"), ip, Some(&format!("z{}", i + 1)), &join).unwrap()).collect();

    let all = wait_for("three hosts online", Duration::from_secs(20), || async {
        let hs = hosts(&p).await;
        (hs.len() == 3 && hs.iter().all(|h| h.status == HostStatus::Online && h.cpu_cores.is_some())).then_some(hs)
    })
    .await
    .unwrap();

    // Facts match what /proc says on this machine; the listing summarises
    // them and leaves them out.
    let listing: serde_json::Value = p.client().get("/api/v1/hosts").await.unwrap();
    assert!(listing[0].get("facts").is_none() && listing[0].get("cpu_cores").is_some(), "{listing}");
    let mem_total = proc_value("/proc/meminfo", "MemTotal:") * 1024;
    let cores = std::thread::available_parallelism().unwrap().get() as u32;
    for item in &all {
        let h: HostView = p.client().get(&format!("/api/v1/hosts/{}", item.id)).await.unwrap();
        let f = h.host.facts.as_ref().unwrap();
        assert_eq!((item.cpu_cores, item.memory_bytes), (Some(f.cpu.cores), Some(f.memory_bytes)), "summary of {}", h.host.name);
        assert_eq!(f.memory_bytes, mem_total, "memory of {}", h.host.name);
        assert_eq!(f.cpu.cores, cores, "cores of {}", h.host.name);
        assert!(f.mounts.iter().any(|m| m.path == "/" && m.total_bytes > 0), "root mount of {}", h.host.name);
        assert_eq!(f.os.kernel, std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim());
        assert!(f.nofile.soft > 0);
        assert!(f.sysctls.contains_key("fs.aio-max-nr"));
        assert!(h.host.zone.as_deref().unwrap().starts_with('z'));
    }
    // The clock offset gets measured on loopback, where it must be tiny.
    let offsets = wait_for("clock offsets", Duration::from_secs(10), || async {
        let offsets: Vec<Option<i64>> = hosts(&p).await.iter().map(|h| h.clock_offset_ms).collect();
        offsets.iter().all(Option::is_some).then_some(offsets)
    })
    .await
    .unwrap();
    assert!(offsets.iter().flatten().all(|o| o.abs() < 100), "offsets on loopback: {offsets:?}");

    // Each host's metrics, read through the platform from its agent, agree
    // with /proc and move between two reads.
    let token = p.token.clone().unwrap();
    let scrape = |ip: &'static str| {
        let (url, token) = (p.url.clone(), token.clone());
        async move {
            let r = reqwest::Client::new().get(format!("{url}/api/v1/hosts/{ip}/metrics")).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
            r.text().await.unwrap()
        }
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} in {text}"))
    };
    let first = scrape("127.0.0.12").await;
    assert_eq!(value(&first, "atoll_host_memory_total_bytes") as u64, mem_total);
    let root_size = first
        .lines()
        .find(|l| l.starts_with("atoll_host_filesystem_size_bytes{mount=\"/\","))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(root_size.is_some_and(|v| v > 0.0), "{first}");
    assert!(value(&first, "atoll_host_clock_offset_seconds").abs() < 0.1, "{first}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = scrape("127.0.0.12").await;
    let busy =
        |t: &str| value(t, "atoll_host_cpu_seconds_total{mode=\"user\"}") + value(t, "atoll_host_cpu_seconds_total{mode=\"system\"}");
    assert!(busy(&second) > busy(&first), "CPU time moves between two reads");
    assert!(
        value(&second, "atoll_host_network_receive_bytes_total{device=\"lo\"}")
            > value(&first, "atoll_host_network_receive_bytes_total{device=\"lo\"}")
    );
    let unknown = reqwest::Client::new().get(format!("{}/api/v1/hosts/nope/metrics", p.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(unknown.status().as_u16(), 404);

    // The agent serves only the server that registered it.
    let facts_url = format!("http://127.0.0.11:{}/agent/v1/facts", agents[0].port);
    let http = reqwest::Client::new();
    let missing = http.get(&facts_url).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    let wrong = http.get(&facts_url).bearer_auth("not-the-server").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.text().await.unwrap().contains("wrong token"));

    // A killed agent turns its host offline; restarted, online again, as
    // the same host.
    let id_before = all.iter().find(|h| h.address == "127.0.0.12").unwrap().id;
    agents[1].proc.kill();
    wait_for("host offline", Duration::from_secs(10), || async {
        (host_status(&p, "127.0.0.12").await == Some(HostStatus::Offline)).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(host_status(&p, "127.0.0.11").await, Some(HostStatus::Online));
    agents[1] = p.start_agent("a1", "127.0.0.12", Some("z2"), &join).unwrap();
    wait_for("host online again", Duration::from_secs(10), || async {
        (host_status(&p, "127.0.0.12").await == Some(HostStatus::Online)).then_some(())
    })
    .await
    .unwrap();

    // Same identity on a new address: an update, not a new host.
    agents[1].proc.stop();
    agents[1] = p.start_agent("a1", "127.0.0.14", Some("z2"), &join).unwrap();
    let moved = wait_for("host moved", Duration::from_secs(10), || async {
        hosts(&p).await.into_iter().find(|h| h.address == "127.0.0.14" && h.status == HostStatus::Online)
    })
    .await
    .unwrap();
    assert_eq!(moved.id, id_before);
    assert_eq!(hosts(&p).await.len(), 3, "an address change must not add a host");

    // The audit log saw the registrations and the offline/online changes.
    let audit: Vec<atoll_api::v1::AuditView> = p.client().get("/api/v1/audit?limit=200").await.unwrap();
    for action in ["host.register", "host.offline", "host.online"] {
        assert!(audit.iter().any(|a| a.action == action), "audit lacks {action}");
    }
    drop(agents);
    p.server.stop();
}

#[tokio::test]
async fn agent_with_wrong_join_token_is_refused_and_says_why() {
    let mut p = Platform::start(ServerOpts::default()).await.unwrap();
    p.login_admin().await.unwrap();
    let mut a = p.start_agent("bad", "127.0.0.15", None, "not-the-token").unwrap();
    let out = wait_for("agent to exit", Duration::from_secs(10), || {
        let done = a.proc.exited();
        let out = a.proc.output();
        async move { done.then_some(out) }
    })
    .await
    .unwrap();
    assert!(out.contains("unknown, used or revoked join token") && out.contains("atoll host join-token"), "agent output: {out}");
    assert!(hosts(&p).await.is_empty());
}

/// A registration as an agent would send it, from `address`.
fn registration(id: atoll_core::HostId, address: &str, join: Option<&str>, agent_token: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "host_id": id, "join_token": join, "agent_token": agent_token, "name": null, "zone": null,
        "address": address, "agent_url": format!("http://{address}:7070"), "agent_version": "test",
        "facts": serde_json::to_value(atoll_core::HostFacts::default()).unwrap(),
    })
}

async fn register(p: &Platform, body: &serde_json::Value) -> (u16, String) {
    let r = reqwest::Client::new().post(format!("{}/agent/v1/register", p.url)).json(body).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Review finding 1: a join token admits new hosts only. A registered host
/// is not taken over with one; tokens expire, are single-use for a declared
/// host, are revoked by rotation, never sit in an agent's argv, and a flood
/// of refusals is throttled and audited once.
#[tokio::test]
async fn join_tokens_admit_new_hosts_only_and_expire() {
    let mut p = Platform::start(ServerOpts::default()).await.unwrap();
    p.login_admin().await.unwrap();
    let join = p.join_token().await.unwrap();
    let mut agent = p.start_agent("j1", "127.0.0.16", None, &join).unwrap();
    let host = wait_for("host online", Duration::from_secs(20), || async {
        hosts(&p).await.into_iter().find(|h| h.address == "127.0.0.16" && h.status == HostStatus::Online)
    })
    .await
    .unwrap();
    // The token is in no argv: neither the agent's nor any of its children's.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", agent.proc.pid().unwrap())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&join), "the join token is on the agent's command line");

    // Take-over attempt: the registered host's id with a valid join token
    // from another address is refused, and the host stays where it was.
    let (code, body) = register(&p, &registration(host.id, "127.0.0.17", Some(&join), None)).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("registered already") && body.contains("atoll host remove"), "{body}");
    let (code, body) = register(&p, &registration(host.id, "127.0.0.17", Some(&join), Some("guessed"))).await;
    assert_eq!(code, 401, "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = hosts(&p).await.into_iter().find(|h| h.id == host.id).unwrap();
    assert_eq!((after.address.as_str(), after.status), ("127.0.0.16", HostStatus::Online), "the host was taken over");
    // Its own agent still re-registers (restart with its identity file).
    agent.proc.stop();
    let agent = p.start_agent("j1", "127.0.0.16", None, "").unwrap();
    wait_for("host back", Duration::from_secs(20), || async {
        (host_status(&p, "127.0.0.16").await == Some(HostStatus::Online)).then_some(())
    })
    .await
    .unwrap();

    // A declared host's token: for that host and address only, once.
    let added: atoll_api::v1::AddedHost =
        p.client().post("/api/v1/hosts", &serde_json::json!({ "address": "127.0.0.18", "name": "declared" })).await.unwrap();
    let per_host = added.agent_command.split_whitespace().find_map(|w| w.strip_prefix("ATOLL_JOIN_TOKEN=")).unwrap().to_string();
    assert!(added.agent_command.contains("atoll agent --server"), "{}", added.agent_command);
    let (code, body) = register(&p, &registration(atoll_core::HostId::new(), "127.0.0.19", Some(&per_host), None)).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("for host declared at 127.0.0.18"), "{body}");
    let (code, body) = register(&p, &registration(atoll_core::HostId::new(), "127.0.0.18", Some(&per_host), None)).await;
    assert_eq!(code, 200, "the declared host joins with its token: {body}");
    let (code, body) = register(&p, &registration(atoll_core::HostId::new(), "127.0.0.20", Some(&per_host), None)).await;
    assert_eq!((code, body.contains("unknown, used or revoked")), (401, true), "a single-use token works once: {body}");

    // Expiry and rotation.
    let short: atoll_api::v1::JoinTokenView = p.client().post("/api/v1/join-tokens", &serde_json::json!({ "ttl_s": 1 })).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (code, body) = register(&p, &registration(atoll_core::HostId::new(), "127.0.0.21", Some(&short.token), None)).await;
    assert_eq!((code, body.contains("expired join token")), (401, true), "{body}");
    let revoked: atoll_api::v1::JoinTokensRevoked = p.client().delete("/api/v1/join-tokens").await.unwrap();
    assert!(revoked.revoked >= 1);
    let (code, body) = register(&p, &registration(atoll_core::HostId::new(), "127.0.0.21", Some(&join), None)).await;
    assert_eq!(code, 401, "a revoked token still admits: {body}");
    let listed: Vec<atoll_api::v1::JoinTokenInfo> = p.client().get("/api/v1/join-tokens").await.unwrap();
    assert!(listed.iter().all(|t| t.host.is_some()), "only tokens of declared hosts outlive a revocation: {listed:?}");

    // A flood of refusals is throttled and audited once per source.
    let mut last = 0;
    for _ in 0..12 {
        (last, _) = register(&p, &registration(atoll_core::HostId::new(), "127.0.0.22", Some("guess"), None)).await;
    }
    assert_eq!(last, 429, "refusals are rate-limited");
    let audit: Vec<atoll_api::v1::AuditView> = p.client().get("/api/v1/audit?limit=500").await.unwrap();
    let refused = audit.iter().filter(|a| a.action == "host.register" && a.outcome.starts_with("refused")).count();
    assert!(refused <= 2, "{refused} audit rows for refused registrations from one source in a minute");
    drop(agent);
    p.server.stop();
}

//! The platform as several servers on one MetaDB: any server answers,
//! agents learn every server and move when theirs dies, one server at a
//! time runs the controllers, and a dead server's task step is resumed by
//! another.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::time::{Duration, Instant};

use atoll_api::v1::{LoginRequest, LoginResponse, PlatformView, TaskView};
use atoll_client::{Client, Servers};
use atoll_core::{HostStatus, StepStatus, TaskStatus};
use atoll_testkit::metadb::MariaDb;
use atoll_testkit::prober::{Prober, Tally};
use atoll_testkit::{Platform, ServerOpts, wait_for};
use serde_json::json;

fn ha_opts(metadb: &str) -> ServerOpts {
    let mut o = ServerOpts::default();
    o.extra_args.extend(["--metadb-url", metadb, "--leader-lease-ms", "1500", "--profile", "sandbox"].map(String::from));
    o
}

async fn platform_view(c: &Client) -> PlatformView {
    c.get("/api/v1/platform").await.unwrap()
}

fn leader_url(v: &PlatformView) -> Option<String> {
    v.servers.iter().find(|s| s.leader).map(|s| s.url.clone())
}

/// The URLs an agent saved after learning them from the platform.
fn saved_servers(agent: &atoll_testkit::Agent) -> Vec<String> {
    std::fs::read(agent.data_dir.join("servers.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

#[tokio::test]
async fn three_servers_share_metadb_and_survive_the_leaders_death() {
    let metadb = MariaDb::start().await.unwrap();

    // Server 1 alone first, holding every finished step for 6 s, so the
    // task below is mid-step on it when it dies.
    let mut first = ha_opts(&metadb.url);
    first.env.push(("FAILPOINTS".into(), "tasks::after_run=return(6000)".into()));
    let mut p = Platform::start(first).await.unwrap();
    p.login_admin().await.unwrap();
    let join = p.join_token().await.unwrap();
    let agents = [("a1", "127.0.0.31"), ("a2", "127.0.0.32")].map(|(n, ip)| p.start_agent(n, ip, None, &join).unwrap());
    p.wait_hosts_online(2).await.unwrap();
    let data_dir = p.host_data_dir().display().to_string();
    let task: TaskView = p
        .client()
        .post("/api/v1/hosts/prepare", &json!({ "hosts": ["127.0.0.31", "127.0.0.32"], "profile": "sandbox", "data_dir": data_dir }))
        .await
        .unwrap();
    wait_for("a step in flight on server 1", Duration::from_secs(15), || async {
        let t: TaskView = p.client().get(&format!("/api/v1/tasks/{}", task.id)).await.ok()?;
        t.steps.iter().any(|s| s.kind == "host.dirs" && s.status == StepStatus::Running).then_some(())
    })
    .await
    .unwrap();

    // Two more servers join the same MetaDB.
    let peers = [("server2", "127.0.0.2"), ("server3", "127.0.0.3")];
    let mut others = Vec::new();
    for (name, ip) in peers {
        others.push(p.start_peer(name, ip, &ha_opts(&metadb.url)).await.unwrap());
    }
    let urls: Vec<String> = std::iter::once(p.url.clone()).chain(others.iter().map(|o| o.url.clone())).collect();
    let all = Client::over(&Servers::new(&urls), p.token.clone(), Duration::from_secs(5));

    // Every server sees the three, and exactly one runs the controllers:
    // the first, which was alone when the lease was free.
    let v = wait_for("three live servers", Duration::from_secs(15), || async {
        let v = platform_view(&all).await;
        (v.servers.iter().filter(|s| s.live).count() == 3).then_some(v)
    })
    .await
    .unwrap();
    assert_eq!(v.servers.iter().filter(|s| s.leader).count(), 1, "{v:#?}");
    assert_eq!(leader_url(&v).as_deref(), Some(p.url.as_str()));
    assert_eq!(v.metadb, "mysql");

    // A console login made on server 1 is good on server 3, and the API
    // token on server 2.
    let login: LoginResponse = Client::new(&p.url, None)
        .post("/api/v1/auth/login", &LoginRequest { username: "admin".into(), password: p.admin_password.clone() })
        .await
        .unwrap();
    let on3: PlatformView = Client::new(&others[1].url, Some(login.token)).get("/api/v1/platform").await.unwrap();
    assert_eq!(on3.answered_by.split('-').next(), Some(others[1].url.trim_start_matches("http://")));
    let _: PlatformView = Client::new(&others[0].url, p.token.clone()).get("/api/v1/platform").await.unwrap();

    // Agents were started knowing only server 1; they learn the others.
    for a in &agents {
        wait_for("the agent to learn every server", Duration::from_secs(10), || async {
            let mut saved = saved_servers(a);
            saved.sort();
            let mut want = urls.clone();
            want.sort();
            (saved == want).then_some(())
        })
        .await
        .unwrap();
    }

    // A client that knows all three keeps asking while server 1 dies.
    let prober = Prober::start(all.clone(), "/api/v1/platform", Duration::from_millis(50));

    // SIGKILL server 1: the controllers' holder and the step's executor.
    let killed = Instant::now();
    p.server.kill();
    let new_leader = wait_for("another server to take the controllers", Duration::from_secs(10), || async {
        leader_url(&platform_view(&all).await).filter(|u| *u != p.url)
    })
    .await
    .unwrap();
    let takeover = killed.elapsed();
    assert!(others.iter().any(|o| o.url == new_leader));
    let after = platform_view(&all).await;
    assert!(after.leader.as_ref().unwrap().generation >= 2, "a new holder means a new fencing generation: {after:#?}");

    // The step server 1 was running is resumed by another server, and the
    // task completes.
    let done = wait_for("the task to settle", Duration::from_secs(60), || async {
        let t: TaskView = all.get(&format!("/api/v1/tasks/{}", task.id)).await.ok()?;
        t.status.is_settled().then_some(t)
    })
    .await
    .unwrap();
    let resumed = killed.elapsed();
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    assert!(done.steps.iter().filter(|s| s.kind == "host.dirs").all(|s| s.attempts == 2), "resumed, not restarted: {:#?}", done.steps);

    // The servers the agents moved to had none of their facts and asked:
    // they arrive within beats, not at the next 5-minute refresh.
    let killed_ms = atoll_core::time::now_ms() - killed.elapsed().as_millis() as i64;
    for ip in ["127.0.0.31", "127.0.0.32"] {
        wait_for("facts sent to the new server", Duration::from_secs(10), || async {
            let h: atoll_api::v1::HostView = all.get(&format!("/api/v1/hosts/{ip}")).await.ok()?;
            (h.host.facts?.collected_at_ms > killed_ms).then_some(())
        })
        .await
        .unwrap();
    }

    // Agents moved to a live server: their hosts never go offline.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hosts: Vec<atoll_api::v1::HostListItem> = all.get("/api/v1/hosts").await.unwrap();
    assert!(hosts.iter().all(|h| h.status == HostStatus::Online), "{hosts:#?}");

    // The new leader runs offline detection: stop one agent.
    let mut agents = agents;
    agents[1].proc.kill();
    wait_for("the stopped agent's host offline", Duration::from_secs(10), || async {
        let hosts: Vec<atoll_api::v1::HostListItem> = all.get("/api/v1/hosts").await.ok()?;
        hosts.iter().any(|h| h.address == "127.0.0.32" && h.status == HostStatus::Offline).then_some(())
    })
    .await
    .unwrap();

    // Server 1 is shown gone; the client saw no failed request.
    let v = wait_for("server 1 shown gone", Duration::from_secs(10), || async {
        let v = platform_view(&all).await;
        v.servers.iter().any(|s| s.url == p.url && !s.live).then_some(v)
    })
    .await
    .unwrap();
    assert_eq!(v.servers.iter().filter(|s| s.live).count(), 2);
    let Tally { asked, failed, .. } = prober.stop().await;
    assert!(asked > 20, "{asked}");
    assert_eq!(failed, 0, "requests failed during the failover ({asked} asked)");
    eprintln!("controllers taken over {takeover:?} after the kill; task done {resumed:?} after; {asked} requests, none failed");
}

//! A whole platform node cut off the network, not killed: its server,
//! agent, MetaDB node and proxy run on in a network namespace whose
//! traffic nftables drops (all but its API port, so the test can still ask
//! it what it thinks). It held the controllers. The isolated server must
//! stop acting as leader and refuse changes while still answering reads
//! (stale, from its own MetaDB node); the other two nodes carry on; when
//! the link returns, its MetaDB node rejoins and its server catches up.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::time::{Duration, Instant};

use atoll_api::v1::{ClusterView, CreateTokenRequest, CreatedToken, PlatformView};
use atoll_client::{Client, ClientError, Servers};
use atoll_core::ClusterStatus;
use atoll_deploy::bootstrap::{Options, bring_up};
use atoll_deploy::launch::{LocalLauncher, Role};
use atoll_deploy::layout::{Layout, METADB_CLUSTER, Node};
use atoll_testkit::netns::Netns;
use atoll_testkit::prober::Prober;
use atoll_testkit::{KillUnder, atoll_bin, wait_for};

/// SIGSTOP / SIGCONT: a process that is there but does not answer.
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -{sig} {pid}");
}

async fn view(c: &Client) -> Option<PlatformView> {
    c.get("/api/v1/platform").await.ok()
}

fn leader(v: &PlatformView) -> Option<&str> {
    v.servers.iter().find(|s| s.leader).map(|s| s.url.as_str())
}

fn generation(v: &PlatformView) -> i64 {
    v.leader.as_ref().map_or(0, |l| l.generation)
}

async fn leader_gauge(url: &str) -> Option<f64> {
    let text = atoll_testkit::http().get(format!("{url}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix("atoll_leader ")).and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_node_cut_off_the_network_stops_leading_refuses_changes_and_rejoins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ns = Netns::create("part", 214).unwrap();
    let _cleanup = KillUnder(dir.clone());
    let (b_ip, c_ip) = (ns.host_ip.clone(), ns.add_host_ip(3).unwrap());
    let nodes = [("node-a", ns.ns_ip.as_str(), "z1"), ("node-b", b_ip.as_str(), "z2"), ("node-c", c_ip.as_str(), "z3")];
    let layout =
        Layout::new(nodes.iter().map(|(n, ip, z)| Node { name: (*n).into(), address: ip.parse().unwrap(), zone: (*z).into() }).collect());
    let opts = Options {
        work_dir: dir.clone(),
        // Reachable from inside the namespace too.
        bootstrap_listen: format!("{b_ip}:0").parse().unwrap(),
        profile: "sandbox".into(),
        host_data_dir: dir.join("db").display().to_string(),
        heartbeat_interval_ms: 500,
        offline_after_ms: 3_000,
        leader_lease_ms: 2_000,
        task_lease_ms: 3_000,
        scrape_interval_ms: 10_000,
        monitordb_flush_s: 60,
    };
    let mut launcher = LocalLauncher::new(&dir, atoll_bin());
    launcher.in_netns("node-a", &ns.name);
    let deployed = bring_up(&layout, &mut launcher, &opts, &|line| eprintln!("deploy: {line}")).await.unwrap();
    let token = Some(deployed.token.clone());
    let [a_url, b_url, c_url] = [0, 1, 2].map(|i| deployed.servers[i].clone());
    let others = Client::over(&Servers::new(&[&b_url, &c_url]), token.clone(), Duration::from_secs(5));
    let on_a = Client::new(&a_url, token.clone());
    // node-a's server is to hold the controllers: freeze the other two
    // servers until it takes them.
    let frozen = ["node-b", "node-c"].map(|n| launcher.pid(n, Role::Server).unwrap());
    for pid in frozen {
        signal(pid, "STOP");
    }
    wait_for("node-a's server leading", Duration::from_secs(20), || async {
        let v = view(&on_a).await?;
        (leader(&v) == Some(a_url.as_str())).then_some(())
    })
    .await
    .unwrap();
    for pid in frozen {
        signal(pid, "CONT");
    }
    let before = wait_for("three live servers, node-a's leading", Duration::from_secs(20), || async {
        let v = view(&others).await?;
        (leader(&v) == Some(a_url.as_str()) && v.servers.iter().filter(|s| s.live).count() == 3).then_some(v)
    })
    .await
    .unwrap();

    let prober = Prober::start(others.clone(), "/api/v1/clusters", Duration::from_millis(100));
    ns.isolate_except(layout.server_port).unwrap();
    let cut_at = Instant::now();

    // The other two take the controllers under a new generation, and the
    // isolated server has stopped acting by then.
    let after = wait_for("node-b or node-c runs the controllers", Duration::from_secs(30), || async {
        let v = view(&others).await?;
        (leader(&v).is_some_and(|l| l != a_url) && generation(&v) > generation(&before)).then_some(v)
    })
    .await
    .unwrap();
    eprintln!("controllers moved {:?} after the cut", cut_at.elapsed());
    assert_eq!(leader_gauge(&a_url).await, Some(0.0), "the isolated server still says it leads");

    // The isolated server refuses changes, in bounded time, and still
    // answers reads from its own MetaDB node, marked stale.
    let t = Instant::now();
    let refused =
        on_a.post::<_, CreatedToken>("/api/v1/tokens", &CreateTokenRequest { name: "isolated".into(), ttl_days: None }).await.unwrap_err();
    assert!(matches!(&refused, ClientError::Api { status: 503 | 504, .. }), "{refused:?}");
    assert!(t.elapsed() < Duration::from_secs(13), "a refused change took {:?}", t.elapsed());
    let stale = wait_for("a stale read on the isolated server", Duration::from_secs(20), || async {
        let r = atoll_testkit::http().get(format!("{a_url}/api/v1/clusters")).bearer_auth(&deployed.token).send().await.ok()?;
        (r.status().is_success() && r.headers().contains_key("atoll-stale")).then_some(())
    })
    .await;
    assert!(stale.is_ok(), "reads on the isolated server are answered, marked stale");

    // The other two take changes and see MetaDB degraded, not down.
    let _: CreatedToken = others.post("/api/v1/tokens", &CreateTokenRequest { name: "majority".into(), ttl_days: None }).await.unwrap();
    wait_for("MetaDB degraded on the majority side", Duration::from_secs(60), || async {
        let c: ClusterView = others.get(&format!("/api/v1/clusters/{METADB_CLUSTER}")).await.ok()?;
        (c.status == ClusterStatus::Degraded).then_some(())
    })
    .await
    .unwrap();

    // The link returns: node-a's MetaDB node rejoins, its server catches
    // up and follows the new leader.
    ns.heal().unwrap();
    let healed = Instant::now();
    wait_for("MetaDB healthy again", Duration::from_secs(90), || async {
        let c: ClusterView = others.get(&format!("/api/v1/clusters/{METADB_CLUSTER}")).await.ok()?;
        (c.status == ClusterStatus::Healthy).then_some(())
    })
    .await
    .unwrap();
    let v = wait_for("node-a's server follows the new leader", Duration::from_secs(30), || async {
        let v = view(&on_a).await?;
        (leader(&v).is_some_and(|l| l != a_url) && v.servers.iter().filter(|s| s.live).count() == 3).then_some(v)
    })
    .await
    .unwrap();
    eprintln!("rejoined {:?} after the link came back", healed.elapsed());
    assert_eq!(generation(&v), generation(&after), "leadership stayed where it moved");
    let _: CreatedToken = on_a.post("/api/v1/tokens", &CreateTokenRequest { name: "rejoined".into(), ttl_days: None }).await.unwrap();

    let tally = prober.stop().await;
    eprintln!("the majority's client: {} asked, {} failed", tally.asked, tally.failed);
    assert_eq!(tally.failed, 0, "a client of the two connected nodes saw failures");
    launcher.stop_all(Role::Server, Duration::from_secs(5)).await;
    launcher.stop_all(Role::Agent, Duration::from_secs(5)).await;
    drop(ns);
}

//! The platform highly available on three nodes, as `atoll playground
//! --nodes 3` brings it up: MetaDB a Galera cluster the platform manages,
//! a server, an agent and a proxy on every node. One node loses every
//! Atoll process and its MetaDB node in the middle of a cluster create.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::time::{Duration, Instant};

use atoll_api::routing::RoutingTable;
use atoll_api::v1::{ClusterView, PlatformView, TaskView};
use atoll_client::{Client, Servers};
use atoll_core::{ClusterStatus, HostStatus, StepStatus, TaskStatus};
use atoll_deploy::bootstrap::{Options, bring_up};
use atoll_deploy::launch::{LocalLauncher, Role};
use atoll_deploy::layout::{Layout, METADB_CLUSTER, Node};
use atoll_testkit::prober::{Prober, Tally};
use atoll_testkit::{KillUnder, atoll_bin, wait_for};
use serde_json::json;

const NODES: [(&str, &str, &str); 3] = [("node1", "127.0.0.41", "z1"), ("node2", "127.0.0.42", "z2"), ("node3", "127.0.0.43", "z3")];

/// SIGSTOP / SIGCONT: a process that is there but does not answer.
fn nix_signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -{sig} {pid}");
}

/// `atoll check` as a user runs it: its exit code and output.
fn check(servers: &[String], token: &str, ca_file: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(atoll_bin())
        .arg("check")
        .env("ATOLL_SERVER", servers.join(","))
        .env("ATOLL_TOKEN", token)
        .env("ATOLL_CA_FILE", ca_file)
        .env("ATOLL_CONFIG_DIR", "/nonexistent")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), atoll_testkit::output_text(&out))
}

async fn cluster(c: &Client, name: &str) -> Option<ClusterView> {
    c.get(&format!("/api/v1/clusters/{name}")).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_platform_survives_losing_a_node_mid_task() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let _cleanup = KillUnder(dir.clone());
    let layout =
        Layout::new(NODES.iter().map(|(n, ip, z)| Node { name: (*n).into(), address: ip.parse().unwrap(), zone: (*z).into() }).collect());
    let opts = Options {
        work_dir: dir.clone(),
        bootstrap_listen: "127.0.0.1:0".parse().unwrap(),
        profile: "sandbox".into(),
        host_data_dir: dir.join("db").display().to_string(),
        heartbeat_interval_ms: 300,
        offline_after_ms: 1_500,
        leader_lease_ms: 1_500,
        task_lease_ms: 2_000,
        scrape_interval_ms: 1_000,
        monitordb_flush_s: 1,
    };
    let mut launcher = LocalLauncher::new(&dir, atoll_bin());
    let started = Instant::now();
    let deployed = bring_up(&layout, &mut launcher, &opts, &|line| eprintln!("deploy: {line}")).await.unwrap();
    eprintln!("three-node platform up in {:.1} s: {:?}", started.elapsed().as_secs_f64(), deployed.steps);
    let all = Client::over(&Servers::new(&deployed.servers), Some(deployed.token.clone()), Duration::from_secs(5));
    // TLS by default: every server over HTTPS with the platform's CA, which
    // the CLI is given as a file.
    assert!(deployed.servers.iter().all(|u| u.starts_with("https://")), "{:?}", deployed.servers);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, deployed.ca_pem.as_deref().expect("a TLS platform's CA")).unwrap();

    // Every node's URL answers the API and renders the console.
    for url in &deployed.servers {
        let c = Client::new(url, Some(deployed.token.clone()));
        let v: PlatformView = c.get("/api/v1/platform").await.unwrap();
        assert_eq!(v.metadb, "mysql");
        assert_eq!(v.servers.iter().filter(|s| s.live).count(), 3, "{v:#?}");
        let page = atoll_testkit::http().get(format!("{url}/login")).send().await.unwrap();
        assert!(page.status().is_success());
        assert!(page.text().await.unwrap().contains("<form"), "the console's login page renders on {url}");
    }
    // The post-deployment check passes, from the CLI as a user runs it.
    let (code, out) = check(&deployed.servers, &deployed.token, &ca_file);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("metadb.node atoll-meta-3") && out.contains("platform check: pass"), "{out}");

    // MonitorDB lives on the platform's Galera: what the leader scraped
    // (every server up) is read back through each server.
    for url in &deployed.servers {
        let c = Client::new(url, Some(deployed.token.clone()));
        let instances = wait_for("the servers' `up` series through every server", Duration::from_secs(30), || async {
            let a: atoll_api::metrics::QueryAnswer =
                c.get("/api/v1/metrics/query?metric=up&match=job%3Dserver&range=5m&step=1s").await.ok()?;
            let up: Vec<String> =
                a.series.iter().filter(|s| s.values.iter().flatten().any(|v| *v == 1.0)).map(|s| s.labels["instance"].clone()).collect();
            (up.len() == 3).then_some(up)
        })
        .await
        .unwrap();
        assert!(instances.iter().all(|i| deployed.servers.iter().any(|u| u.ends_with(i.as_str()))), "{instances:?}");
    }

    // MetaDB's cluster is managed like any other, and protected.
    let meta = cluster(&all, METADB_CLUSTER).await.unwrap();
    assert_eq!(meta.status, ClusterStatus::Healthy);
    let refused = all.delete::<TaskView>(&format!("/api/v1/clusters/{METADB_CLUSTER}")).await.unwrap_err();
    assert_eq!(refused.status(), Some(409));
    assert!(refused.to_string().contains("platform's own metadata"), "{refused}");
    let refused = all.post::<_, TaskView>(&format!("/api/v1/clusters/{METADB_CLUSTER}/stop"), &json!({})).await.unwrap_err();
    assert!(refused.to_string().contains("stopping it would stop the platform"), "{refused}");

    // A user cluster is being created when node2 loses everything.
    let servers: Vec<_> = NODES
        .iter()
        .enumerate()
        .map(|(i, (host, _, zone))| json!({ "name": format!("orders-{}", i + 1), "zone": zone, "host": host }))
        .collect();
    let task: TaskView = all.post("/api/v1/clusters", &json!({ "name": "orders", "servers": servers })).await.unwrap();
    wait_for("the create task mid-way", Duration::from_secs(60), || async {
        let t: TaskView = all.get(&format!("/api/v1/tasks/{}", task.id)).await.ok()?;
        (t.steps.iter().any(|s| s.status == StepStatus::Succeeded) && t.status == TaskStatus::Running).then_some(())
    })
    .await
    .unwrap();

    // A client that knows the three URLs asks all along.
    let prober = Prober::start(all.clone(), "/api/v1/clusters", Duration::from_millis(100));

    // SIGKILL every Atoll process on node2 (server, agent, its proxies)
    // and its MetaDB node.
    let node2 = dir.join("node2");
    let meta2 = atoll_agent::processes_under(&dir.join("db").join(METADB_CLUSTER).join("atoll-meta-2"));
    assert_eq!(meta2.len(), 1, "node2's MetaDB node runs: {meta2:?}");
    let proxies2 = atoll_agent::processes_under(&node2.join("agent").join("proxies"));
    assert!(!proxies2.is_empty(), "node2 runs proxies");
    let killed = Instant::now();
    launcher.kill("node2", Role::Server).await;
    launcher.kill("node2", Role::Agent).await;
    for pid in meta2.iter().chain(&proxies2) {
        atoll_agent::process::signal(*pid, atoll_agent::process::Signal::Kill).unwrap();
    }

    // The other two carry on: a leader among them, node2's host offline,
    // MetaDB's routing table served with a writer that is alive.
    let v = wait_for("a leader on a surviving node", Duration::from_secs(10), || async {
        let v: PlatformView = all.get("/api/v1/platform").await.ok()?;
        let leader = v.servers.iter().find(|s| s.leader && s.live)?;
        (!leader.url.contains("127.0.0.42")).then_some(v)
    })
    .await
    .unwrap();
    let leader_after = killed.elapsed();
    wait_for("node2 offline", Duration::from_secs(10), || async {
        let hosts: Vec<atoll_api::v1::HostListItem> = all.get("/api/v1/hosts").await.ok()?;
        hosts.iter().any(|h| h.name == "node2" && h.status == HostStatus::Offline).then_some(())
    })
    .await
    .unwrap();
    // Proxies are told the two servers that are up.
    let table: RoutingTable = wait_for("MetaDB's writer off the dead node", Duration::from_secs(10), || async {
        let t: RoutingTable = all.get(&format!("/api/v1/clusters/{METADB_CLUSTER}/routing")).await.ok()?;
        (t.writer.is_some() && t.writer.as_deref() != Some("atoll-meta-2") && t.servers.len() == 2).then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", launcher.last_words("node3", Role::Server)));
    assert!(!table.servers.iter().any(|u| u.contains("127.0.0.42")), "{:?}", table.servers);
    eprintln!("after the kill: leader {:?} in {leader_after:?}, MetaDB writer {:?}", v.leader, table.writer);
    // The check fails, naming node2's parts (its reports go stale within
    // the offline timeout).
    let wanted = ["agent.online node2", "metadb.node atoll-meta-2", "server.api https://127.0.0.42:8080"];
    let names_node2 = |out: &str| wanted.iter().all(|w| out.lines().any(|l| l.contains(w) && l.contains("fail")));
    let named = wait_for("the check to name node2", Duration::from_secs(10), || async {
        let (code, out) = check(&deployed.servers, &deployed.token, &ca_file);
        (code == 3 && names_node2(&out)).then_some(())
    })
    .await;
    assert!(named.is_ok(), "{}", check(&deployed.servers, &deployed.token, &ca_file).1);

    // Node2 comes back (as its service manager would restart it): no
    // operator action, the task completes and both clusters heal.
    launcher.restart("node2", Role::Agent).unwrap();
    launcher.restart("node2", Role::Server).unwrap();
    let done = wait_for("the create task to settle", Duration::from_secs(180), || async {
        let t: TaskView = all.get(&format!("/api/v1/tasks/{}", task.id)).await.ok()?;
        t.status.is_settled().then_some(t)
    })
    .await
    .unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    for name in [METADB_CLUSTER, "orders"] {
        wait_for("the cluster healthy again", Duration::from_secs(60), || async {
            (cluster(&all, name).await?.status == ClusterStatus::Healthy).then_some(())
        })
        .await
        .unwrap();
    }
    wait_for("three live servers again", Duration::from_secs(20), || async {
        let v: PlatformView = all.get("/api/v1/platform").await.ok()?;
        (v.servers.iter().filter(|s| s.live).count() == 3 && v.servers.len() == 3).then_some(())
    })
    .await
    .unwrap();
    let healed = wait_for("the check to pass again", Duration::from_secs(30), || async {
        let (code, out) = check(&deployed.servers, &deployed.token, &ca_file);
        (code == 0).then_some(out)
    })
    .await;
    assert!(healed.is_ok(), "{}", check(&deployed.servers, &deployed.token, &ca_file).1);
    let Tally { asked, failed, .. } = prober.stop().await;
    eprintln!("{asked} requests through the node loss and return, {failed} failed; healed {:?} after the kill", killed.elapsed());
    assert_eq!(failed, 0, "a client knowing every server saw failures");

    // MetaDB loses quorum (two of its nodes frozen): servers turn not
    // ready and refuse writes with a retryable error naming the cause;
    // nothing is lost when the nodes come back.
    let before: serde_json::Value =
        all.post("/api/v1/users", &json!({ "name": "kept", "password": "kept-password-1", "role": "viewer" })).await.unwrap();
    assert_eq!(before["name"], "kept");
    let frozen: Vec<u32> = ["atoll-meta-2", "atoll-meta-3"]
        .iter()
        .flat_map(|n| atoll_agent::processes_under(&dir.join("db").join(METADB_CLUSTER).join(n)))
        .collect();
    assert_eq!(frozen.len(), 2);
    for pid in &frozen {
        nix_signal(*pid, "STOP");
    }
    let lost = Instant::now();
    // Not ready even for reads: its MetaDB node has left the primary
    // component (a failed write alone makes it not ready sooner, while a
    // write may still be in flight).
    wait_for("/readyz not ready without MetaDB's quorum", Duration::from_secs(30), || async {
        let r = atoll_testkit::http().get(format!("{}/readyz?for=reads", deployed.servers[0])).send().await.ok()?;
        (r.status().as_u16() == 503).then_some(())
    })
    .await
    .unwrap();
    let node1 = Client::new(&deployed.servers[0], Some(deployed.token.clone()));
    let refusal = node1
        .post::<_, serde_json::Value>("/api/v1/users", &json!({ "name": "refused", "password": "refused-password-1", "role": "viewer" }))
        .await
        .unwrap_err();
    assert_eq!(refusal.status(), Some(503), "{refusal}");
    let refusal = refusal.to_string();
    assert!(refusal.contains("metadata store is unavailable") && refusal.contains("nothing was changed"), "{refusal}");
    eprintln!("quorum lost: not ready and writes refused after {:?}", lost.elapsed());
    // Reads are still answered, from the node's own MetaDB replica, and
    // say they may be stale.
    let users: Vec<serde_json::Value> = node1.get("/api/v1/users").await.unwrap();
    assert!(users.iter().any(|u| u["name"] == "kept"), "{users:?}");
    let r = atoll_testkit::http()
        .get(format!("{}/api/v1/clusters/{METADB_CLUSTER}", deployed.servers[0]))
        .bearer_auth(&deployed.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get("atoll-stale").and_then(|v| v.to_str().ok()), Some("metadb-without-quorum"));
    for pid in &frozen {
        nix_signal(*pid, "CONT");
    }
    wait_for("MetaDB back", Duration::from_secs(60), || async {
        let r = atoll_testkit::http().get(format!("{}/readyz", deployed.servers[0])).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await
    .unwrap();
    let users: Vec<serde_json::Value> =
        wait_for("the API again", Duration::from_secs(30), || async { all.get("/api/v1/users").await.ok() }).await.unwrap();
    assert!(users.iter().any(|u| u["name"] == "kept"), "the write made before the loss is kept: {users:?}");
    assert!(!users.iter().any(|u| u["name"] == "refused"), "the refused write was not applied: {users:?}");
    wait_for("MetaDB healthy again", Duration::from_secs(60), || async {
        (cluster(&all, METADB_CLUSTER).await?.status == ClusterStatus::Healthy).then_some(())
    })
    .await
    .unwrap();

    // The CA rotates on the HA platform too: MetaDB's own nodes get
    // certificates of the new CA, the servers' MetaDB connections verify
    // them with it (each server keeps its metadb-ca.pem in step), and a
    // server started afterwards reaches MetaDB trusting the new CA alone.
    let old_fp = atoll_pki::fingerprint(deployed.ca_pem.as_deref().unwrap()).unwrap();
    let t: TaskView = all.post("/api/v1/platform/ca/rotate", &json!({})).await.unwrap();
    let rotated = Instant::now();
    let done = wait_for("the CA rotation to settle", Duration::from_secs(180), || async {
        // This process follows the bundle as the CLI does.
        let pem = atoll_testkit::http().get(format!("{}/ca.pem", deployed.servers[0])).send().await.ok()?.text().await.ok()?;
        atoll_client::trust_platform_ca(&pem).ok()?;
        let t: TaskView = match all.get(&format!("/api/v1/tasks/{}", t.id)).await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("rotation: {e}");
                return None;
            }
        };
        t.status.is_settled().then_some(t)
    })
    .await
    .unwrap_or_else(|e| {
        for log in walk(&dir).into_iter().filter(|p| p.ends_with("server.log") || p.ends_with("agent.log")) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("CA")).collect();
            eprintln!("{}:\n{}", log.display(), lines[lines.len().saturating_sub(15)..].join("\n"));
        }
        panic!("{e}")
    });
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    eprintln!("CA rotated on the three-node platform in {:.1} s", rotated.elapsed().as_secs_f64());
    let ca: atoll_api::v1::CaView = all.get("/api/v1/platform/ca").await.unwrap();
    assert_ne!(ca.issuer, old_fp);
    assert_eq!((ca.trusted.as_slice(), ca.phase.as_str()), (std::slice::from_ref(&ca.issuer), "steady"));
    let metadb_cas: Vec<std::path::PathBuf> = walk(&dir).into_iter().filter(|p| p.ends_with("metadb-ca.pem")).collect();
    assert_eq!(metadb_cas.len(), 3, "{metadb_cas:?}");
    for f in &metadb_cas {
        let pem = std::fs::read_to_string(f).unwrap();
        assert_eq!(atoll_pki::fingerprints(&pem).unwrap(), vec![ca.issuer.clone()], "{}", f.display());
    }
    launcher.kill("node3", Role::Server).await;
    launcher.restart("node3", Role::Server).unwrap();
    let node3 = Client::new(&deployed.servers[2], Some(deployed.token.clone()));
    wait_for("node3's server back on MetaDB", Duration::from_secs(60), || async {
        let v: PlatformView = node3.get("/api/v1/platform").await.ok()?;
        (v.servers.iter().filter(|s| s.live).count() == 3).then_some(())
    })
    .await
    .unwrap();

    launcher.stop_all(Role::Server, Duration::from_secs(5)).await;
    launcher.stop_all(Role::Agent, Duration::from_secs(5)).await;
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => files.extend(walk(&path)),
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
    files
}

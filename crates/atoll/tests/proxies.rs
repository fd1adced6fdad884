//! Proxies as users meet them: a cluster created by the platform comes with
//! one `atoll proxy` per zone, run by the agents; applications connect
//! there, and traffic follows the writer through a planned move, a killed
//! writer, and a platform that is down.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::process::Command;
use std::time::{Duration, Instant};

use atoll_api::v1::{ClusterCredentials, ClusterView, TaskView};
use atoll_core::{ServerState, TaskStatus};
use atoll_testkit::browser::{browser, text_of, until};
use atoll_testkit::{Agent, Platform, wait_for};
use serde_json::json;
use sqlx::{Connection, Executor, MySqlConnection, Row};
use thirtyfour::prelude::*;
use tokio_util::sync::CancellationToken;

const IPS: [&str; 3] = ["127.0.0.101", "127.0.0.102", "127.0.0.103"];

async fn platform() -> (Platform, Vec<Agent>) {
    Platform::with_prepared_hosts(&IPS).await.unwrap()
}

fn url(cr: &ClusterCredentials, host: &str, port: u16) -> String {
    format!("mysql://{}:{}@{host}:{port}/", cr.user, cr.password)
}

/// The node a connection landed on.
async fn node_behind(cr: &ClusterCredentials, host: &str, port: u16) -> String {
    let mut c = MySqlConnection::connect(&url(cr, host, port)).await.unwrap();
    let r = sqlx::query("SELECT @@wsrep_node_name AS n").fetch_one(&mut c).await.unwrap();
    r.get::<String, _>("n")
}

fn mariadb_cli(cr: &ClusterCredentials, host: &str, port: u16, sql: &str) -> std::process::Output {
    atoll_testkit::mariadb(cr, host, port, sql).unwrap()
}

/// Runs a short sysbench workload through `host:port` (tables prepared on
/// first use) and returns its transactions per second; panics on errors.
fn sysbench(cr: &ClusterCredentials, host: &str, port: u16, workload: &str) -> f64 {
    let args = |cmd: &str| {
        let mut a: Vec<String> = [
            workload,
            "--db-driver=mysql",
            "--mysql-db=sbtest",
            "--tables=1",
            "--table-size=1000",
            "--threads=4",
            "--time=3",
            // Deadlocks between sysbench's own threads are part of the workload.
            "--mysql-ignore-errors=1213,1205",
        ]
        .map(String::from)
        .to_vec();
        a.extend([format!("--mysql-host={host}"), format!("--mysql-port={port}"), format!("--mysql-user={}", cr.user)]);
        a.push(format!("--mysql-password={}", cr.password));
        a.push(cmd.to_string());
        a
    };
    if workload == "oltp_read_write" {
        let out = mariadb_cli(cr, host, port, "CREATE DATABASE IF NOT EXISTS sbtest");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new("sysbench").args(args("prepare")).output().unwrap();
        assert!(out.status.success(), "sysbench prepare: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = Command::new("sysbench").args(args("run")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sysbench run: {text}{}", String::from_utf8_lossy(&out.stderr));
    // "    transactions:                        1234   (411.23 per sec.)"
    let line = text.lines().find(|l| l.trim_start().starts_with("transactions:")).unwrap_or_else(|| panic!("no transactions line: {text}"));
    line.split('(').nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap()
}

/// A client that writes ids through one endpoint, reconnecting after any
/// error, as an application behind the proxy would. Returns acknowledged
/// ids, failed statements and the longest time without a success.
async fn write_loop(target: String, first_id: i64, stop: CancellationToken) -> (Vec<i64>, usize, Duration) {
    let (mut acked, mut failed, mut longest) = (Vec::new(), 0, Duration::ZERO);
    let mut last_ok = Instant::now();
    let mut conn: Option<MySqlConnection> = None;
    let mut id = first_id;
    while !stop.is_cancelled() {
        if conn.is_none() {
            conn = match tokio::time::timeout(Duration::from_secs(5), MySqlConnection::connect(&target)).await {
                Ok(Ok(c)) => Some(c),
                _ => {
                    failed += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
        }
        id += 1;
        let Some(c) = conn.as_mut() else { continue };
        match tokio::time::timeout(Duration::from_secs(5), c.execute(sqlx::query("INSERT INTO app.w VALUES (?)").bind(id))).await {
            Ok(Ok(_)) => {
                acked.push(id);
                longest = longest.max(last_ok.elapsed());
                last_ok = Instant::now();
            }
            _ => {
                failed += 1;
                conn = None;
            }
        }
    }
    (acked, failed, longest)
}

async fn view(p: &Platform) -> ClusterView {
    p.client().get("/api/v1/clusters/shop").await.unwrap()
}

/// Waits until the z3 proxy's agent reports it restarted, as a process
/// other than `killed`.
async fn restarted_since(p: &Platform, killed: u32, what: &str) {
    wait_for(what, Duration::from_secs(20), || async {
        let v = view(p).await;
        let px = &v.proxies[2];
        (px.restarts >= Some(1) && px.pid.is_some_and(|pid| pid != killed)).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_follow_the_writer_through_a_move_a_crash_and_a_platform_outage() {
    let (mut p, mut agents) = platform().await;
    let c = p.client();
    let spec = json!({
        "name": "shop",
        "servers": IPS.iter().enumerate().map(|(i, ip)| json!({ "name": format!("shop-{}", i + 1), "zone": format!("z{}", i + 1), "host": ip })).collect::<Vec<_>>(),
    });
    let t: TaskView = c.post("/api/v1/clusters", &spec).await.unwrap();
    let done = p.wait_task(&t.id, Duration::from_secs(240)).await.unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);

    // One proxy per zone, running; the first server writes.
    let v = view(&p).await;
    assert_eq!(v.writer.as_deref(), Some("shop-1"));
    assert_eq!(v.proxies.iter().map(|x| x.zone.as_str()).collect::<Vec<_>>(), ["z1", "z2", "z3"]);
    let cr: ClusterCredentials = c.get("/api/v1/clusters/shop/credentials").await.unwrap();
    assert_eq!((cr.host.as_str(), cr.port), (IPS[0], 6033), "applications are pointed at a proxy");
    // The routing table an operator reads names the monitoring account but
    // not its password: only the proxies (their token) get that.
    let table: atoll_api::routing::RoutingTable = c.get("/api/v1/clusters/shop/routing").await.unwrap();
    assert_eq!((table.monitor_user.is_empty(), table.monitor_password.as_str()), (false, ""));

    // A real client through every proxy: writes reach the writer, reads
    // stay in the proxy's own zone.
    let out = mariadb_cli(&cr, IPS[1], 6033, "CREATE DATABASE app; CREATE TABLE app.w (id BIGINT PRIMARY KEY); SELECT @@wsrep_node_name");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "shop-1");
    for (i, ip) in IPS.iter().enumerate() {
        assert_eq!(node_behind(&cr, ip, 6033).await, "shop-1", "read-write through the z{} proxy", i + 1);
        assert_eq!(node_behind(&cr, ip, 6034).await, format!("shop-{}", i + 1), "read-only through the z{} proxy", i + 1);
    }

    // sysbench through both ports: a real workload, not just one client.
    for (port, workload) in [(6033, "oltp_read_write"), (6034, "oltp_read_only")] {
        let tps = sysbench(&cr, IPS[1], port, workload);
        eprintln!("sysbench {workload} through the z2 proxy port {port}: {tps:.0} transactions/s");
        assert!(tps > 10.0, "{workload} through {port}: {tps} tps");
    }

    // The console's connection counts come from the proxies themselves.
    let held = MySqlConnection::connect(&url(&cr, IPS[2], 6033)).await.unwrap();
    wait_for("the z3 proxy reports the open connection", Duration::from_secs(10), || async {
        let v = view(&p).await;
        (v.proxies[2].rw_connections >= Some(1)).then_some(())
    })
    .await
    .unwrap();
    drop(held);

    // The console shows the writer and the proxies, and follows a move live.
    let (_chromedriver, d) = browser(p.dir.path()).await.unwrap();
    d.goto(format!("{}/login", p.url)).await.unwrap();
    d.find(By::Id("username")).await.unwrap().send_keys("admin").await.unwrap();
    d.find(By::Id("password")).await.unwrap().send_keys(&p.admin_password).await.unwrap();
    d.find(By::Id("login-submit")).await.unwrap().click().await.unwrap();
    until("logged in", || async { d.current_url().await.ok().filter(|u| u.path() != "/login") }).await;
    d.goto(format!("{}/clusters/shop", p.url)).await.unwrap();
    let writer_badge = |server: &'static str| {
        let d = d.clone();
        async move {
            let card = d.find(By::Css(format!("[data-server=\"{server}\"] .server-role"))).await.ok()?;
            card.text().await.ok().filter(|t| t == "writer")
        }
    };
    until("shop-1 marked as the writer", || writer_badge("shop-1")).await;
    let proxies = until("three running proxies", || async {
        let rows = d.find_all(By::Css("#proxies tr[data-proxy]")).await.ok()?;
        let mut running = 0;
        for r in &rows {
            if r.find(By::Css(".state")).await.ok()?.text().await.ok()? == "running" {
                running += 1;
            }
        }
        (running == 3).then_some(rows.len())
    })
    .await;
    assert_eq!(proxies, 3);
    assert!(text_of(&d, By::Id("proxies")).await.unwrap().contains("127.0.0.101:6033"));

    // Prometheus metrics on each proxy's admin port.
    let metrics = reqwest::get(format!("http://{}:6035/metrics", IPS[2])).await.unwrap().text().await.unwrap();
    for name in [
        "atoll_proxy_connections",
        "atoll_proxy_connections_total",
        "atoll_proxy_connections_refused_total",
        "atoll_proxy_bytes_in_total",
        "atoll_proxy_writer_switches_total",
        "atoll_proxy_routing_table_age_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    // The z3 agent restarts: its proxy registry has no token in it (the
    // proxy's token file is the one copy), and it supervises its proxy
    // again with the token read back.
    let proxies_dir = agents[2].data_dir.join("proxies");
    let token_file =
        std::fs::read_dir(&proxies_dir).unwrap().filter_map(|e| Some(e.ok()?.path().join("token"))).find(|t| t.exists()).unwrap();
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(token.trim().len() >= 32, "{token:?}");
    assert!(!std::fs::read_to_string(proxies_dir.join("proxies.json")).unwrap().contains(token.trim()), "proxies.json keeps no token");
    agents[2].proc.kill();
    agents[2] = p.start_agent("host3", IPS[2], Some("z3"), "").unwrap();
    p.wait_hosts_online(3).await.unwrap();

    // A proxy dies: the others serve on, and its agent brings it back.
    let z3 = view(&p).await.proxies[2].pid.unwrap();
    assert!(Command::new("kill").args(["-KILL", &z3.to_string()]).status().unwrap().success());
    assert_eq!(node_behind(&cr, IPS[0], 6033).await, "shop-1", "the z1 proxy is not affected");
    restarted_since(&p, z3, "the z3 proxy restarted by its agent").await;
    let back = wait_for("the z3 proxy serves again", Duration::from_secs(10), || async {
        tokio::time::timeout(Duration::from_secs(2), MySqlConnection::connect(&url(&cr, IPS[2], 6034))).await.ok()?.ok()
    })
    .await;
    assert!(back.is_ok());
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token, "respawned by the restarted agent with the same token");

    // The proxy dies while its agent is away: the agent, back, starts it
    // again and counts the restart (counts are the running agent's).
    let z3 = view(&p).await.proxies[2].pid.unwrap();
    agents[2].proc.kill();
    assert!(Command::new("kill").args(["-KILL", &z3.to_string()]).status().unwrap().success());
    agents[2] = p.start_agent("host3", IPS[2], Some("z3"), "").unwrap();
    restarted_since(&p, z3, "the z3 proxy started again by its returning agent").await;

    // Planned move under a write loop: not one statement fails.
    let stop = CancellationToken::new();
    let writer = tokio::spawn(write_loop(url(&cr, IPS[0], 6033), 1_000_000, stop.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let t: TaskView = c.post("/api/v1/clusters/shop/writer", &json!({ "server": "shop-2" })).await.unwrap();
    let done = p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.cancel();
    let (acked, failed, longest) = writer.await.unwrap();
    eprintln!("planned move: {} writes, {failed} failed, longest wait {:.2} s", acked.len(), longest.as_secs_f64());
    assert_eq!(failed, 0, "no statement may fail during a planned move");
    assert!(acked.len() > 10);
    assert_eq!(node_behind(&cr, IPS[0], 6033).await, "shop-2");
    assert_eq!(view(&p).await.writer.as_deref(), Some("shop-2"));
    until("the open page moves the writer badge", || writer_badge("shop-2")).await;
    d.quit().await.unwrap();
    // Bad moves are refused, naming what is wrong.
    let err = c.post::<_, TaskView>("/api/v1/clusters/shop/writer", &json!({ "server": "shop-9" })).await.unwrap_err();
    assert!(err.to_string().contains("shop-1, shop-2, shop-3"), "{err}");

    // SIGKILL the writer while writing through the proxy: writes resume on
    // the next server within 3 s and every acknowledged one is kept.
    let pid = view(&p).await.zones[1].servers[0].status.as_ref().and_then(|s| s.pid).unwrap();
    let stop = CancellationToken::new();
    let writer = tokio::spawn(write_loop(url(&cr, IPS[0], 6033), 2_000_000, stop.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.cancel();
    let (acked2, failed, longest) = writer.await.unwrap();
    eprintln!("writer killed: {} writes, {failed} failed, longest wait {:.2} s", acked2.len(), longest.as_secs_f64());
    assert!(longest < Duration::from_secs(3), "writes stalled {longest:?}");
    // The next synced server in order takes over (shop-3, or shop-1 while
    // shop-3 serves as the rejoining node's donor), and the platform and
    // the proxies agree on it.
    let new_writer = wait_for("the platform and the proxies agree on a new writer", Duration::from_secs(15), || async {
        let w = view(&p).await.writer?;
        (w != "shop-2" && node_behind(&cr, IPS[0], 6033).await == w).then_some(w)
    })
    .await
    .unwrap();
    eprintln!("new writer: {new_writer}");
    let all: Vec<String> = acked.iter().chain(&acked2).map(|i| i.to_string()).collect();
    let mut check = MySqlConnection::connect(&url(&cr, IPS[0], 6033)).await.unwrap();
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM app.w WHERE id IN ({})", all.join(","))))
        .fetch_one(&mut check)
        .await
        .unwrap()
        .get("n");
    assert_eq!(n as usize, all.len(), "every acknowledged write is there");
    wait_for("the killed node rejoins", Duration::from_secs(60), || async {
        (view(&p).await.zones[1].servers[0].state == ServerState::Synced).then_some(())
    })
    .await
    .unwrap();
    assert_ne!(node_behind(&cr, IPS[0], 6033).await, "shop-2", "a recovered former writer does not take writes back");
    let writer_now = view(&p).await.writer.unwrap();

    // The platform goes away: proxies keep routing with their last table.
    p.server.kill();
    for ip in IPS {
        assert_eq!(node_behind(&cr, ip, 6033).await, writer_now);
    }
    let out = mariadb_cli(&cr, IPS[1], 6034, "SELECT COUNT(*) FROM app.w");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Back again, changes reach them.
    let opts = p.opts.clone();
    p.restart_server(opts).await.unwrap();
    let t: TaskView = wait_for("the platform takes requests again", Duration::from_secs(30), || async {
        c.post::<_, TaskView>("/api/v1/clusters/shop/writer", &json!({ "server": "shop-2" })).await.ok()
    })
    .await
    .unwrap();
    assert_eq!(p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap().status, TaskStatus::Succeeded);
    wait_for("every proxy follows the move", Duration::from_secs(10), || async {
        for ip in IPS {
            if node_behind(&cr, ip, 6033).await != "shop-2" {
                return None;
            }
        }
        Some(())
    })
    .await
    .unwrap();

    // Deleting the cluster takes its proxies away.
    let t: TaskView = c.delete("/api/v1/clusters/shop?purge=true").await.unwrap();
    assert_eq!(p.wait_task(&t.id, Duration::from_secs(120)).await.unwrap().status, TaskStatus::Succeeded);
    for ip in IPS {
        assert!(std::net::TcpStream::connect((ip, 6033)).is_err(), "proxy on {ip} still listens");
    }
}

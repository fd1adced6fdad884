//! Real MariaDB Galera clusters made by the platform through real agents:
//! creation across three zones, reads and writes with a real MySQL client,
//! a node killed under a write load, and requests refused whole.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::process::Command;
use std::time::{Duration, Instant};

use atoll_alert::Alarm;
use atoll_api::alerts::{AlarmView, ChannelView};
use atoll_api::v1::{ClusterCredentials, ClusterView, TaskView};
use atoll_core::{ClusterStatus, ServerState, TaskStatus};
use atoll_testkit::browser::{text_of, until};
use atoll_testkit::webhook::Webhook;
use atoll_testkit::{Agent, Platform, wait_for};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, MySqlConnection};
use thirtyfour::prelude::*;

const IPS: [&str; 3] = ["127.0.0.71", "127.0.0.72", "127.0.0.73"];
const IPS2: [&str; 3] = ["127.0.0.81", "127.0.0.82", "127.0.0.83"];

async fn platform() -> (Platform, Vec<Agent>) {
    platform_on(IPS).await
}

async fn platform_on(ips: [&str; 3]) -> (Platform, Vec<Agent>) {
    Platform::with_prepared_hosts(&ips).await.unwrap()
}

fn spec(name: &str) -> Value {
    spec_on(name, IPS)
}

fn spec_on(name: &str, ips: [&str; 3]) -> Value {
    json!({
        "name": name,
        "servers": ips.iter().enumerate().map(|(i, ip)| json!({ "name": format!("{name}-{}", i + 1), "zone": format!("z{}", i + 1), "host": ip })).collect::<Vec<_>>(),
    })
}

async fn settled(p: &Platform, id: &str, timeout: Duration) -> TaskView {
    p.wait_task(id, timeout).await.unwrap()
}

/// The `mariadb` command-line client, as a user would run it, on one node.
fn mariadb(cr: &ClusterCredentials, host: &str, sql: &str) -> String {
    let out = atoll_testkit::mariadb(cr, host, cr.direct_port, sql).unwrap();
    assert!(out.status.success(), "mariadb on {host}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn connect(cr: &ClusterCredentials, host: &str) -> MySqlConnection {
    let url = format!("mysql://{}:{}@{host}:{}/", cr.user, cr.password, cr.direct_port);
    MySqlConnection::connect(&url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_a_three_zone_cluster_survive_a_killed_node_and_refuse_bad_requests() {
    let (p, _agents) = platform().await;
    let c = p.client();

    // Refused whole, every problem named, nothing recorded.
    let bad = json!({
        "name": "bad",
        "servers": [
            { "name": "bad-1", "zone": "z1", "host": IPS[0] },
            { "name": "bad-2", "zone": "z1", "host": "no-such-host" },
        ],
        "params": { "max_conections": "100", "innodb_flush_log_at_trx_commit": "2" },
    });
    let err = c.post::<_, TaskView>("/api/v1/clusters", &bad).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    let msg = err.to_string();
    for needle in ["at least 3 zones", "no-such-host", "did you mean max_connections", "fast", "odd number"] {
        assert!(msg.contains(needle), "missing {needle:?} in: {msg}");
    }
    assert!(c.get::<Vec<ClusterView>>("/api/v1/clusters").await.unwrap().is_empty());
    assert_eq!(c.get::<Vec<TaskView>>("/api/v1/tasks").await.unwrap().len(), 1, "only the prepare task");

    // Create: a task that bootstraps, joins and waits for every node.
    let started = Instant::now();
    let t: TaskView = c.post("/api/v1/clusters", &spec("orders")).await.unwrap();
    let done = settled(&p, &t.id, Duration::from_secs(240)).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    eprintln!("cluster created in {:.1} s", started.elapsed().as_secs_f64());
    // Agents report on every heartbeat: the view catches up within moments.
    let view = wait_for("every server reported synced", Duration::from_secs(10), || async {
        let v: ClusterView = c.get("/api/v1/clusters/orders").await.ok()?;
        v.zones.iter().all(|z| z.servers[0].state == ServerState::Synced).then_some(v)
    })
    .await
    .unwrap();
    assert_eq!(view.status, ClusterStatus::Healthy);
    assert_eq!(view.zones.len(), 3);
    for z in &view.zones {
        let s = &z.servers[0];
        let w = s.status.as_ref().and_then(|st| st.wsrep.as_ref());
        assert_eq!(s.state, ServerState::Synced, "{s:?}");
        assert_eq!(w.map(|w| w.cluster_size), Some(3));
    }
    // The same name again is refused.
    let err = c.post::<_, TaskView>("/api/v1/clusters", &spec("orders")).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    // A real client: write through one node, read on all three.
    let cr: ClusterCredentials = c.get("/api/v1/clusters/orders/credentials").await.unwrap();
    mariadb(
        &cr,
        IPS[0],
        "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v TEXT); INSERT INTO shop.t VALUES (1,'a'),(2,'b'),(3,'c')",
    );
    for ip in IPS {
        assert_eq!(mariadb(&cr, ip, "SELECT COUNT(*) FROM shop.t"), "3", "rows on {ip}");
        assert_eq!(mariadb(&cr, ip, "SELECT @@innodb_flush_log_at_trx_commit"), "1", "durable by default on {ip}");
    }

    // The hosts' metrics carry each server's counters: the INSERT ran on
    // orders-1 (node 1), and every node sees a Galera cluster of three.
    let metrics = |ip: &'static str| {
        let (url, token) = (p.url.clone(), p.token.clone().unwrap());
        async move {
            let r = reqwest::Client::new().get(format!("{url}/api/v1/hosts/{ip}/metrics")).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.text().await.unwrap()
        }
    };
    let sample = |text: &str, series: &str| -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' '))).and_then(|v| v.parse().ok())
    };
    let node1 = metrics(IPS[0]).await;
    assert_eq!(sample(&node1, "atoll_db_up{cluster=\"orders\",server=\"orders-1\"}"), Some(1.0), "{node1}");
    assert!(
        sample(&node1, "atoll_db_statements_total{cluster=\"orders\",server=\"orders-1\",kind=\"insert\"}").is_some_and(|n| n >= 1.0),
        "{node1}"
    );
    // Statement latency from the query_response_time plugin every server loads.
    assert!(
        sample(&node1, "atoll_db_query_duration_seconds_count{cluster=\"orders\",server=\"orders-1\"}").is_some_and(|n| n >= 1.0),
        "{node1}"
    );
    for (i, ip) in IPS.iter().enumerate() {
        let text = metrics(ip).await;
        let size = format!("atoll_db_galera_cluster_size{{cluster=\"orders\",server=\"orders-{}\"}}", i + 1);
        assert_eq!(sample(&text, &size), Some(3.0), "{text}");
    }

    // MonitorDB's TPS agrees with the nodes' own counters: a paced write
    // load through node 1, compared with wsrep_local_commits read directly.
    tps_series_matches_the_nodes(&p, &cr).await;
    let (_chromedriver, browser) = atoll_testkit::browser::browser(p.dir.path()).await.unwrap();
    atoll_testkit::browser::sign_in(&browser, &p.url, "admin", &p.admin_password).await.unwrap();
    the_cluster_page_draws_its_charts(&browser, &p.url).await;

    // Alerting: nothing about the cluster is active on a healthy platform;
    // a webhook that refuses its first request will hear of the kill below.
    let hook = Webhook::start("127.0.0.1", 1).await.unwrap();
    let cluster_alarms = || async {
        let all: Vec<AlarmView> = c.get("/api/v1/alerts/alarms?state=all&limit=1000").await.unwrap();
        all.into_iter().map(|v| v.alarm).filter(|a| a.labels.get("cluster").map(String::as_str) == Some("orders")).collect::<Vec<_>>()
    };
    let active = cluster_alarms().await.into_iter().filter(|a| a.state.is_active()).collect::<Vec<_>>();
    assert!(active.is_empty(), "a healthy cluster has no active alarm: {active:#?}");
    let channel = json!({ "name": "hook", "type": "webhook", "url": hook.url, "min_severity": "warning" });
    let _: Value = c.post("/api/v1/alerts/channels", &channel).await.unwrap();
    let err =
        c.post::<_, Value>("/api/v1/alerts/channels", &json!({ "name": "bad", "type": "webhook", "url": "ftp://x" })).await.unwrap_err();
    assert!(err.to_string().contains("give an http:// or https:// URL"), "{err}");

    // SIGKILL node 3 while a client writes through node 1.
    let victim = view.zones[2].servers[0].status.as_ref().and_then(|s| s.pid).unwrap();
    let mut killed_ms = 0;
    let mut conn = connect(&cr, IPS[0]).await;
    conn.execute("CREATE TABLE shop.w (id INT PRIMARY KEY)").await.unwrap();
    let mut acked = Vec::new();
    let mut longest = Duration::ZERO;
    let killed_at = Instant::now() + Duration::from_millis(500);
    let mut killed = false;
    let mut id = 0;
    while Instant::now() < killed_at + Duration::from_secs(8) {
        if !killed && Instant::now() >= killed_at {
            assert_eq!(unsafe_free_kill(victim), 0, "kill {victim}");
            killed_ms = atoll_core::time::now_ms();
            killed = true;
        }
        id += 1;
        let t0 = Instant::now();
        let r = conn.execute(sqlx::query("INSERT INTO shop.w VALUES (?)").bind(id)).await;
        longest = longest.max(t0.elapsed());
        if r.is_ok() {
            acked.push(id);
        }
    }
    eprintln!("longest wait for an acknowledged write after SIGKILL of a node: {:.2} s ({} writes)", longest.as_secs_f64(), acked.len());
    assert!(longest < Duration::from_secs(3), "commit stall {longest:?}");

    // The agent restarts the node; it catches up and holds every row.
    let back = wait_for("node 3 synced again", Duration::from_secs(60), || async {
        let v: ClusterView = c.get("/api/v1/clusters/orders").await.ok()?;
        let s = v.zones[2].servers[0].clone();
        (s.state == ServerState::Synced && s.status.as_ref().is_some_and(|st| st.restarts >= 1 && st.pid != Some(victim))).then_some(s)
    })
    .await
    .unwrap();
    assert!(back.status.unwrap().last_exit.unwrap_or_default().contains("signal 9"));
    // A causal read: Synced means caught up with the cluster's order, not
    // that every write set is applied yet on this node.
    let want = acked.len().to_string();
    assert_eq!(
        mariadb(&cr, IPS[2], "SET SESSION wsrep_sync_wait = 1; SELECT COUNT(*) FROM shop.w"),
        want,
        "every acknowledged row on the restarted node"
    );
    let missing = mariadb(
        &cr,
        IPS[2],
        &format!(
            "SET SESSION wsrep_sync_wait = 1; SELECT COUNT(*) FROM shop.w WHERE id IN ({})",
            acked.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        ),
    );
    assert_eq!(missing, want);
    // The status follows the servers' reports within a health pass.
    wait_for("healthy again", Duration::from_secs(10), || async {
        (c.get::<ClusterView>("/api/v1/clusters/orders").await.ok()?.status == ClusterStatus::Healthy).then_some(())
    })
    .await
    .unwrap();
    alarms_follow_the_kill(&hook, killed_ms, cluster_alarms).await;
    the_alerts_page_shows_them_and_changes_rules(&browser, &p).await;
    let channels: Vec<ChannelView> = c.get("/api/v1/alerts/channels").await.unwrap();
    let h = channels.iter().find(|v| v.channel.name == "hook").unwrap();
    assert!(h.status.last_error.as_deref().is_some_and(|e| e.contains("500")), "{h:#?}");
    assert_eq!((h.status.delivered as usize, h.status.failed), (hook.received().len(), 0), "{h:#?}");

    // Lose quorum: kill two nodes within a second while writing, then the
    // third. Guided recovery brings back every acknowledged write.
    let pids: Vec<u32> = {
        let v: ClusterView = c.get("/api/v1/clusters/orders").await.unwrap();
        v.zones.iter().map(|z| z.servers[0].status.as_ref().and_then(|s| s.pid).unwrap()).collect()
    };
    let mut conn = connect(&cr, IPS[0]).await;
    let mut acked2 = Vec::new();
    let plan = [(Duration::from_millis(300), pids[1]), (Duration::from_millis(900), pids[2]), (Duration::from_millis(1500), pids[0])];
    let t0 = Instant::now();
    let mut next = 0;
    let mut id = 1_000_000;
    while t0.elapsed() < Duration::from_secs(3) {
        while next < plan.len() && t0.elapsed() >= plan[next].0 {
            unsafe_free_kill(plan[next].1);
            next += 1;
        }
        id += 1;
        let r = tokio::time::timeout(Duration::from_millis(500), conn.execute(sqlx::query("INSERT INTO shop.w VALUES (?)").bind(id))).await;
        match r {
            Ok(Ok(_)) => acked2.push(id),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    drop(conn);
    eprintln!("{} writes acknowledged before quorum was lost", acked2.len());
    let t: TaskView = c.post("/api/v1/clusters/orders/recover", &json!({})).await.unwrap();
    let done = settled(&p, &t.id, Duration::from_secs(240)).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    let chosen = done.steps.iter().find(|s| s.key == "choose").and_then(|s| s.output.clone()).unwrap();
    eprintln!("recovery bootstrapped from {}", chosen["bootstrap"]);
    wait_for("healthy with every node synced after recovery", Duration::from_secs(30), || async {
        let v: ClusterView = c.get("/api/v1/clusters/orders").await.ok()?;
        (v.status == ClusterStatus::Healthy && v.zones.iter().all(|z| z.servers[0].state == ServerState::Synced)).then_some(())
    })
    .await
    .unwrap();
    let all_acked: Vec<String> = acked.iter().chain(&acked2).map(|i| i.to_string()).collect();
    for ip in IPS {
        let present = mariadb(&cr, ip, &format!("SELECT COUNT(*) FROM shop.w WHERE id IN ({})", all_acked.join(",")));
        assert_eq!(present, all_acked.len().to_string(), "acknowledged writes on {ip} after recovery");
    }

    // A host that runs a server is not removed unless forced (finding 12).
    let refused = c.delete::<TaskView>(&format!("/api/v1/hosts/{}", IPS[0])).await.unwrap_err();
    assert_eq!(refused.status(), Some(409), "{refused}");
    assert!(refused.to_string().contains("server orders/orders-1") && refused.to_string().contains("--force"), "{refused}");

    // Two servers stopped at once: each request alone passes the majority
    // check, but MetaDB lets only one change run on a cluster at a time.
    let empty = json!({});
    let (a, b) = tokio::join!(
        c.post::<_, TaskView>("/api/v1/clusters/orders/servers/orders-1/stop", &empty),
        c.post::<_, TaskView>("/api/v1/clusters/orders/servers/orders-2/stop", &empty),
    );
    let accepted: Vec<TaskView> = [a, b]
        .into_iter()
        .filter_map(|r| match r {
            Ok(t) => Some(t),
            Err(e) => {
                assert_eq!(e.status(), Some(409), "{e}");
                assert!(e.to_string().contains("busy"), "{e}");
                None
            }
        })
        .collect();
    assert_eq!(accepted.len(), 1, "both stops were accepted: quorum would be lost");
    assert_eq!(settled(&p, &accepted[0].id, Duration::from_secs(120)).await.status, TaskStatus::Succeeded);
    let stopped = if accepted[0].title.contains("orders-1") { "orders-1" } else { "orders-2" };
    let t: TaskView = c.post(&format!("/api/v1/clusters/orders/servers/{stopped}/start"), &json!({})).await.unwrap();
    assert_eq!(settled(&p, &t.id, Duration::from_secs(120)).await.status, TaskStatus::Succeeded);

    // A clean stop and start keep everything too.
    let t: TaskView = c.post("/api/v1/clusters/orders/stop", &json!({})).await.unwrap();
    assert_eq!(settled(&p, &t.id, Duration::from_secs(120)).await.status, TaskStatus::Succeeded);
    let v: ClusterView = c.get("/api/v1/clusters/orders").await.unwrap();
    assert_eq!(v.status, ClusterStatus::Stopped);
    let err = c.post::<_, TaskView>("/api/v1/clusters/orders/recover", &json!({})).await;
    assert!(err.is_ok(), "a stopped cluster may also be recovered");
    let t = err.unwrap();
    assert_eq!(settled(&p, &t.id, Duration::from_secs(240)).await.status, TaskStatus::Succeeded);
    assert_eq!(mariadb(&cr, IPS[1], "SELECT COUNT(*) FROM shop.t"), "3");

    // Deleted without purge, the data stays; a new cluster of the same name
    // is refused on it, and rolling that back leaves it alone (finding 11).
    let t: TaskView = c.delete("/api/v1/clusters/orders").await.unwrap();
    assert_eq!(settled(&p, &t.id, Duration::from_secs(120)).await.status, TaskStatus::Succeeded);
    let kept = p.host_data_dir().join("orders").join("orders-1").join("data").join("shop");
    assert!(kept.is_dir(), "deleting without purge keeps the data");
    let t: TaskView = c.post("/api/v1/clusters", &spec("orders")).await.unwrap();
    let done = settled(&p, &t.id, Duration::from_secs(120)).await;
    assert_ne!(done.status, TaskStatus::Succeeded);
    let why: Vec<String> = done.steps.iter().filter_map(|s| s.error.clone()).collect();
    assert!(why.iter().any(|e| e.contains("holds the data of an earlier server")), "{why:?}");
    if done.status == TaskStatus::Failed {
        let rolled: TaskView = c.post(&format!("/api/v1/tasks/{}/rollback", t.id), &json!({})).await.unwrap();
        settled(&p, &rolled.id, Duration::from_secs(120)).await;
    }
    assert!(kept.is_dir(), "a rolled-back create deleted data it did not make");

    let audit: Vec<atoll_api::v1::AuditView> = c.get("/api/v1/audit?limit=500").await.unwrap();
    assert!(audit.iter().any(|a| a.action == "cluster.create" && a.outcome == "ok"));
    assert!(audit.iter().any(|a| a.action == "cluster.create" && a.outcome.starts_with("refused")));
}

/// The cluster page's charts, in Chromium, after a paced write load: lines
/// drawn, values in the legend, the range picker.
async fn the_cluster_page_draws_its_charts(d: &WebDriver, base: &str) {
    d.goto(format!("{base}/clusters/orders?range=15m")).await.unwrap();
    let tps = until("the TPS chart with a line per server", || async {
        let lines = d.find_all(By::Css("#chart-tps svg path.line")).await.ok()?;
        let mut drawn = 0;
        for l in &lines {
            let path = l.attr("d").await.ok()??;
            if path.matches('L').count() >= 3 {
                drawn += 1;
            }
        }
        (drawn == 3).then_some(drawn)
    })
    .await;
    assert_eq!(tps, 3);
    // The write load went through node 1: its legend row has the largest last value.
    let legend = text_of(d, By::Css("#chart-tps table.legend")).await.unwrap();
    assert!(legend.contains("orders-1") && legend.contains("/s"), "{legend}");
    let latency = text_of(d, By::Css("#chart-latency table.legend")).await.unwrap();
    assert!(latency.contains("orders-1") && latency.contains(" ms"), "{latency}");
    let mut last_synced = Vec::new();
    for cell in d.find_all(By::Css("#chart-synced table.legend td.last")).await.unwrap() {
        last_synced.push(cell.text().await.unwrap());
    }
    assert_eq!(last_synced, ["yes", "yes", "yes"], "every server Synced now");
    let current = text_of(d, By::Css("#range-picker a.current")).await.unwrap();
    assert_eq!(current, "15m");
    d.find(By::Css("#range-picker a[data-range='1h']")).await.unwrap().click().await.unwrap();
    until("the 1h range", || async { text_of(d, By::Css("#range-picker a.current")).await.filter(|t| t == "1h") }).await;
    // A custom range that ends before it starts is named, not drawn.
    d.goto(format!("{base}/clusters/orders?from=2026-12-04+10:00&to=2026-12-04+09:00")).await.unwrap();
    let err = until("the range error", || async { text_of(d, By::Id("range-error")).await }).await;
    assert!(err.contains("`to` must be after `from`"), "{err}");
}

/// The alarms of the kill on the alerts page; a rule disabled from there.
async fn the_alerts_page_shows_them_and_changes_rules(d: &WebDriver, p: &Platform) {
    d.goto(format!("{}/alerts", p.url)).await.unwrap();
    let history = until("the alarm history", || async { text_of(d, By::Id("history")).await }).await;
    assert!(history.contains("server-not-synced") && history.contains("orders-3"), "{history}");
    assert!(history.contains("cluster-degraded"), "{history}");
    let channels = text_of(d, By::Id("channels")).await.unwrap();
    assert!(channels.contains("hook") && channels.contains("500"), "{channels}");
    d.find(By::Css("button.rule-toggle[data-rule='clock-skew']")).await.unwrap().click().await.unwrap();
    until("the rule disabled", || async {
        let row = d.find(By::Css("#rules tr[data-rule='clock-skew'] .enabled")).await.ok()?;
        row.text().await.ok().filter(|t| t == "no")
    })
    .await;
    let rule: atoll_alert::Rule = p.client().get("/api/v1/alerts/rules/clock-skew").await.unwrap();
    assert!(!rule.enabled && rule.builtin);
}

/// After node 3 was killed and came back: "server not Synced" and
/// "cluster degraded" fired within two scrape intervals (the test server
/// scrapes every 2 s) and resolved; the webhook heard each state of each
/// once, although it refused the first delivery.
async fn alarms_follow_the_kill<F: std::future::Future<Output = Vec<Alarm>>>(hook: &Webhook, killed_ms: i64, alarms: impl Fn() -> F) {
    const SCRAPE_MS: i64 = 2_000;
    // Alarms as the webhook heard them: notifications are grouped by rule.
    let notified = |rule: &str, state: &str| {
        hook.received()
            .iter()
            .filter(|(_, n)| n["rule"] == rule)
            .flat_map(|(_, n)| n["alarms"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["state"] == state && a["labels"]["cluster"] == "orders")
            .filter(|a| rule != "server-not-synced" || a["labels"]["server"] == "orders-3")
            .count()
    };
    wait_for("both resolutions notified", Duration::from_secs(30), || async {
        (notified("server-not-synced", "resolved") >= 1 && notified("cluster-degraded", "resolved") >= 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: received {:#?}", hook.received()));
    let alarms = alarms().await;
    for rule in ["server-not-synced", "cluster-degraded"] {
        // The node that donates to the restarted one is briefly not Synced
        // either (Donor); that alarm is right, and not the one looked at.
        let killed = |a: &&Alarm| rule != "server-not-synced" || a.labels.get("server").map(String::as_str) == Some("orders-3");
        let mine: Vec<&Alarm> = alarms.iter().filter(|a| a.rule == rule && a.started_ms >= killed_ms).filter(killed).collect();
        assert_eq!(mine.len(), 1, "one {rule} alarm: {alarms:#?}");
        let a = mine[0];
        let fired = a.fired_ms.unwrap() - killed_ms;
        eprintln!(
            "{rule}: fired {:.1} s after the kill, resolved after {:.1} s",
            fired as f64 / 1e3,
            (a.ended_ms.unwrap_or(0) - killed_ms) as f64 / 1e3
        );
        assert!(fired <= 2 * SCRAPE_MS, "{rule} fired {fired} ms after the kill: more than two scrape intervals");
        assert_eq!(a.state, atoll_alert::AlarmState::Resolved, "{a:#?}");
        // The values seen: not Synced is 0, degraded is 1 (its status gauge).
        let expected = if rule == "cluster-degraded" { 1.0 } else { 0.0 };
        assert!(!a.values.is_empty() && a.min == expected && a.max == expected, "{a:#?}");
        assert_eq!((notified(rule, "firing"), notified(rule, "resolved")), (1, 1), "{rule} notified once each: {:#?}", hook.received());
    }
    assert_eq!(hook.refused(), 1);
}

/// SIGKILL by pid through the `kill` command (no unsafe code in tests).
fn unsafe_free_kill(pid: u32) -> i32 {
    Command::new("kill").args(["-KILL", &pid.to_string()]).status().map(|s| s.code().unwrap_or(1)).unwrap_or(1)
}

/// Writes ids in a loop through one node, moving to the next node when a
/// write fails (as a client behind a load balancer would), until stopped.
/// Returns the acknowledged ids and the longest time without a success.
async fn write_loop(cr: ClusterCredentials, ips: [&'static str; 3], stop: tokio_util::sync::CancellationToken) -> (Vec<i64>, Duration) {
    let mut acked = Vec::new();
    let mut node = 0;
    let mut conn: Option<MySqlConnection> = None;
    let mut last_ok = Instant::now();
    let mut longest = Duration::ZERO;
    let mut id = 0i64;
    while !stop.is_cancelled() {
        if conn.is_none() {
            let url = format!("mysql://{}:{}@{}:{}/", cr.user, cr.password, ips[node], cr.direct_port);
            conn = tokio::time::timeout(Duration::from_secs(2), MySqlConnection::connect(&url)).await.ok().and_then(Result::ok);
            if conn.is_none() {
                node = (node + 1) % 3;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        id += 1;
        let Some(c) = conn.as_mut() else { continue };
        let r = tokio::time::timeout(Duration::from_secs(2), c.execute(sqlx::query("INSERT INTO shop.roll VALUES (?)").bind(id))).await;
        if let Ok(Ok(_)) = r {
            acked.push(id);
            longest = longest.max(last_ok.elapsed());
            last_ok = Instant::now();
        } else {
            conn = None;
            node = (node + 1) % 3;
        }
    }
    (acked, longest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_and_parameter_changes_keep_writes_going() {
    let (p, _agents) = platform_on(IPS2).await;
    let c = p.client();
    let t: TaskView = c.post("/api/v1/clusters", &spec_on("roll", IPS2)).await.unwrap();
    assert_eq!(settled(&p, &t.id, Duration::from_secs(240)).await.status, TaskStatus::Succeeded);
    let cr: ClusterCredentials = c.get("/api/v1/clusters/roll/credentials").await.unwrap();
    mariadb(&cr, IPS2[0], "CREATE DATABASE shop; CREATE TABLE shop.roll (id BIGINT PRIMARY KEY)");

    // Bad parameters are refused before anything moves.
    let err = c
        .post::<_, TaskView>("/api/v1/clusters/roll/params", &json!({ "params": { "max_connections": "-5", "wsrep_cluster_name": "x" } }))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    assert!(err.to_string().contains("max_connections") && err.to_string().contains("wsrep_cluster_name"), "{err}");

    let stop = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn(write_loop(cr.clone(), IPS2, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A rolling restart, an online change and a change needing restarts.
    let t: TaskView = c.post("/api/v1/clusters/roll/restart", &json!({})).await.unwrap();
    // While a task works on the cluster, other changes are refused, naming it.
    let busy = c.delete::<TaskView>("/api/v1/clusters/roll?purge=true").await.unwrap_err();
    assert_eq!(busy.status(), Some(409), "{busy}");
    assert!(busy.to_string().contains(&t.id), "{busy}");
    let busy = c.post::<_, TaskView>("/api/v1/clusters/roll/params", &json!({ "params": { "max_connections": "400" } })).await.unwrap_err();
    assert_eq!(busy.status(), Some(409), "{busy}");
    let done = settled(&p, &t.id, Duration::from_secs(300)).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    wait_for("healthy", Duration::from_secs(30), || async {
        (c.get::<ClusterView>("/api/v1/clusters/roll").await.ok()?.status == ClusterStatus::Healthy).then_some(())
    })
    .await
    .unwrap();
    let t: TaskView = c.post("/api/v1/clusters/roll/params", &json!({ "params": { "max_connections": "321" } })).await.unwrap();
    let done = settled(&p, &t.id, Duration::from_secs(120)).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    assert!(done.title.contains("online"), "{}", done.title);
    wait_for("healthy", Duration::from_secs(30), || async {
        (c.get::<ClusterView>("/api/v1/clusters/roll").await.ok()?.status == ClusterStatus::Healthy).then_some(())
    })
    .await
    .unwrap();
    let t: TaskView = c.post("/api/v1/clusters/roll/params", &json!({ "params": { "log_bin": "mysql-bin" } })).await.unwrap();
    let done = settled(&p, &t.id, Duration::from_secs(300)).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    assert!(done.title.contains("rolling"), "{}", done.title);

    stop.cancel();
    let (acked, longest) = writer.await.unwrap();
    eprintln!("{} writes acknowledged; longest gap between successful writes {:.2} s", acked.len(), longest.as_secs_f64());
    assert!(acked.len() > 100, "writes kept succeeding");
    assert!(longest < Duration::from_secs(5), "writes stalled for {longest:?}");
    for ip in IPS2 {
        assert_eq!(mariadb(&cr, ip, "SELECT @@max_connections"), "321", "online change on {ip}");
        assert_eq!(mariadb(&cr, ip, "SELECT @@log_bin, @@sync_binlog"), "1\t1", "restart-needing change on {ip}");
        let mut conn = connect(&cr, ip).await;
        let ids: std::collections::HashSet<i64> =
            sqlx::query_scalar("SELECT id FROM shop.roll").fetch_all(&mut conn).await.unwrap().into_iter().collect();
        let lost = acked.iter().filter(|i| !ids.contains(i)).count();
        assert_eq!(lost, 0, "acknowledged writes missing on {ip}");
    }

    // Delete with purge: servers stopped, directories gone, name free.
    let t: TaskView = c.delete("/api/v1/clusters/roll?purge=true").await.unwrap();
    assert_eq!(settled(&p, &t.id, Duration::from_secs(120)).await.status, TaskStatus::Succeeded);
    assert!(c.get::<Vec<ClusterView>>("/api/v1/clusters").await.unwrap().is_empty());
    assert!(!p.host_data_dir().join("roll").join("roll-1").exists(), "purged");
    let out = Command::new("mariadb").args(["--no-defaults", "-h", IPS2[0], "-u", "x", "-e", "SELECT 1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("Can't connect"), "the server is stopped");
}

const IPS3: [&str; 3] = ["127.0.0.121", "127.0.0.122", "127.0.0.123"];

/// The step `key` of task `id` is running.
async fn step_running(p: &Platform, id: &str, key: &str) {
    wait_for(&format!("step {key} running"), Duration::from_secs(120), || async {
        let t: TaskView = p.client().get(&format!("/api/v1/tasks/{id}")).await.ok()?;
        t.steps.iter().any(|s| s.key == key && s.status == atoll_core::StepStatus::Running).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_finishes_through_a_server_restart_an_agent_restart_and_a_killed_node() {
    let (mut p, mut agents) = platform_on(IPS3).await;
    let t: TaskView = p.client().post("/api/v1/clusters", &spec_on("faults", IPS3)).await.unwrap();

    // The platform server dies while the second node joins; a new one
    // resumes the task from its leases.
    step_running(&p, &t.id, "join@faults-2").await;
    let opts = p.opts.clone();
    p.restart_server(opts).await.unwrap();

    // The third host's agent dies mid-step and comes back.
    step_running(&p, &t.id, "join@faults-3").await;
    agents[2].proc.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let join = p.join_token().await.unwrap();
    agents[2] = p.start_agent("host3", IPS3[2], Some("z3"), &join).unwrap();

    // A node that already joined is SIGKILLed while the task goes on.
    step_running(&p, &t.id, "wait@faults-3").await;
    let v: ClusterView = p.client().get("/api/v1/clusters/faults").await.unwrap();
    if let Some(pid) = v.zones[1].servers[0].status.as_ref().and_then(|s| s.pid) {
        assert_eq!(unsafe_free_kill(pid), 0);
    }

    let done = settled(&p, &t.id, Duration::from_secs(300)).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    let v = wait_for("every server synced", Duration::from_secs(60), || async {
        let v: ClusterView = p.client().get("/api/v1/clusters/faults").await.ok()?;
        (v.status == ClusterStatus::Healthy).then_some(v)
    })
    .await
    .unwrap();
    assert_eq!(v.zones.iter().map(|z| z.servers[0].state).collect::<Vec<_>>(), [ServerState::Synced; 3]);
    // A working cluster: every node has the row and sees all three.
    let cr: ClusterCredentials = p.client().get("/api/v1/clusters/faults/credentials").await.unwrap();
    mariadb(&cr, IPS3[0], "CREATE DATABASE f; CREATE TABLE f.t (id INT PRIMARY KEY); INSERT INTO f.t VALUES (1)");
    for ip in IPS3 {
        assert_eq!(mariadb(&cr, ip, "SELECT COUNT(*) FROM f.t"), "1", "on {ip}");
        assert_eq!(
            mariadb(&cr, ip, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='wsrep_cluster_size'"),
            "3"
        );
    }
}

/// Commits on every node, read directly.
async fn local_commits(cr: &ClusterCredentials) -> f64 {
    let mut total = 0.0;
    for ip in IPS {
        let v = mariadb(cr, ip, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_LOCAL_COMMITS'");
        total += v.parse::<f64>().unwrap();
    }
    total
}

async fn tps_series_matches_the_nodes(p: &Platform, cr: &ClusterCredentials) {
    let c = p.client();
    let mut conn = connect(cr, IPS[0]).await;
    conn.execute("CREATE TABLE shop.load (id INT PRIMARY KEY)").await.unwrap();
    let (before, t0) = (local_commits(cr).await, atoll_core::time::now_ms());
    let mut ticks = tokio::time::interval(Duration::from_millis(25));
    for id in 0..480 {
        ticks.tick().await;
        conn.execute(sqlx::query("INSERT INTO shop.load VALUES (?)").bind(id)).await.unwrap();
    }
    let (after, t1) = (local_commits(cr).await, atoll_core::time::now_ms());
    let direct = (after - before) / ((t1 - t0) as f64 / 1000.0);
    assert!(direct > 20.0, "the load ran: {direct} commits/s");
    // Two scrape intervals (2 s in tests) after the load, then read the
    // cluster's TPS per 2 s step, per server.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let path = format!(
        "/api/v1/metrics/query?metric=atoll_db_galera_local_commits_total&match=cluster%3Dorders&fn=rate&agg=sum&by=server&start={}&end={}&step=2s",
        t0 - 4_000,
        t1 + 4_000
    );
    let answer: atoll_api::metrics::QueryAnswer = c.get(&path).await.unwrap();
    assert_eq!(answer.resolution, "raw");
    let series =
        |server: &str| answer.series.iter().find(|s| s.labels["server"] == server).unwrap_or_else(|| panic!("{server} in {answer:?}"));
    // Steps whose whole window lies inside the load.
    let inside: Vec<f64> = answer
        .timestamps
        .iter()
        .zip(&series("orders-1").values)
        .filter(|(t, _)| **t - 2_000 >= t0 + 1_000 && **t <= t1 - 1_000)
        .filter_map(|(_, v)| *v)
        .collect();
    assert!(inside.len() >= 4, "steps inside the load: {answer:?}");
    let mut sorted = inside.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    eprintln!("write TPS: direct {direct:.1}/s, MonitorDB median {median:.1}/s over {} steps {inside:?}", inside.len());
    assert!((median - direct).abs() <= 0.2 * direct, "MonitorDB says {median:.1}/s, the nodes {direct:.1}/s");
    for other in ["orders-2", "orders-3"] {
        assert!(series(other).values.iter().flatten().all(|v| *v < 1.0), "{other} took no writes: {:?}", series(other).values);
    }
    // Every agent and the server itself are scraped and up.
    let targets: atoll_api::metrics::TargetsView = c.get("/api/v1/metrics/targets").await.unwrap();
    assert!(targets.scraping);
    for ip in IPS {
        assert!(targets.targets.iter().any(|t| t.job == "agent" && t.url.contains(ip) && t.up == Some(true)), "{ip}: {targets:?}");
    }
    assert!(targets.targets.iter().any(|t| t.job == "server" && t.up == Some(true)), "{targets:?}");
    // A query for something that does not exist is refused, named.
    let err = c.get::<Value>("/api/v1/metrics/query?metric=atoll_db_nonsense").await.unwrap_err().to_string();
    assert!(err.contains("unknown metric `atoll_db_nonsense`"), "{err}");
}

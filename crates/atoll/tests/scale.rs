//! Operating single servers and the size of a running cluster, as a user
//! would with the CLI: stop one server (and be refused a second), start it
//! again, restart the writer under a write load through a proxy, add a
//! server in a new zone and remove it again.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::process::Output;
use std::time::{Duration, Instant};

use atoll_api::v1::{ClusterCredentials, ClusterView, TaskView};
use atoll_core::{ClusterStatus, ServerState, TaskStatus};
use atoll_testkit::{Agent, Platform, output_text, wait_for};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, Executor, MySqlConnection, Row};
use tokio_util::sync::CancellationToken;

const IPS: [&str; 4] = ["127.0.0.111", "127.0.0.112", "127.0.0.113", "127.0.0.114"];

async fn platform() -> (Platform, Vec<Agent>) {
    Platform::with_prepared_hosts(&IPS).await.unwrap()
}

/// The CLI, logged in through the environment; waits for the task.
fn atoll(p: &Platform, args: &[&str]) -> Output {
    p.cli(args).unwrap()
}

fn text(o: &Output) -> String {
    output_text(o)
}

fn url(cr: &ClusterCredentials, host: &str, port: u16) -> String {
    format!("mysql://{}:{}@{host}:{port}/", cr.user, cr.password)
}

async fn query_one(cr: &ClusterCredentials, host: &str, port: u16, sql: &str) -> i64 {
    let mut c = MySqlConnection::connect(&url(cr, host, port)).await.unwrap();
    sqlx::query(AssertSqlSafe(sql.to_string())).fetch_one(&mut c).await.unwrap().get::<i64, _>(0)
}

async fn view(p: &Platform) -> ClusterView {
    p.client().get("/api/v1/clusters/sc").await.unwrap()
}

fn state_of(v: &ClusterView, server: &str) -> Option<ServerState> {
    v.zones.iter().flat_map(|z| &z.servers).find(|s| s.name == server).map(|s| s.state)
}

/// Writes ids from `first` on through one endpoint, reconnecting after any
/// error as an application would. Returns the acknowledged ids, failed
/// attempts and the longest time between two acknowledged writes.
async fn write_loop(target: String, first: i64, stop: CancellationToken) -> (Vec<i64>, usize, Duration) {
    let (mut acked, mut failed, mut longest) = (Vec::new(), 0, Duration::ZERO);
    let mut last_ok = Instant::now();
    let mut conn: Option<MySqlConnection> = None;
    let mut id = first;
    while !stop.is_cancelled() {
        let Some(c) = conn.as_mut() else {
            match tokio::time::timeout(Duration::from_secs(5), MySqlConnection::connect(&target)).await {
                Ok(Ok(c)) => conn = Some(c),
                _ => {
                    failed += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(5), c.execute(sqlx::query("INSERT INTO app.w VALUES (?)").bind(id))).await {
            Ok(Ok(_)) => {
                acked.push(id);
                id += 1;
                longest = longest.max(last_ok.elapsed());
                last_ok = Instant::now();
            }
            _ => {
                // Unknown outcome: the next attempt uses a fresh id.
                id += 1;
                failed += 1;
                conn = None;
            }
        }
    }
    (acked, failed, longest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_restart_one_server_and_scale_out_and_in() {
    let started = Instant::now();
    let (p, _agents) = platform().await;
    let c = p.client();
    let spec = json!({
        "name": "sc",
        "servers": IPS[..3].iter().enumerate().map(|(i, ip)| json!({ "name": format!("sc-{}", i + 1), "zone": format!("z{}", i + 1), "host": ip })).collect::<Vec<_>>(),
    });
    let t: TaskView = c.post("/api/v1/clusters", &spec).await.unwrap();
    let done = p.wait_task(&t.id, Duration::from_secs(180)).await.unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    let cr: ClusterCredentials = c.get("/api/v1/clusters/sc/credentials").await.unwrap();
    let mut w = MySqlConnection::connect(&url(&cr, IPS[1], 6033)).await.unwrap();
    w.execute("CREATE DATABASE app").await.unwrap();
    w.execute("CREATE TABLE app.w (id BIGINT PRIMARY KEY)").await.unwrap();
    w.execute("INSERT INTO app.w VALUES (1), (2), (3)").await.unwrap();
    drop(w);
    eprintln!("[{:5.1} s] cluster created", started.elapsed().as_secs_f64());

    // Stop one server: the cluster is degraded and still takes writes.
    let o = atoll(&p, &["cluster", "stop", "sc", "sc-3"]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for("sc-3 stopped, sc degraded", Duration::from_secs(10), || async {
        let v = view(&p).await;
        (state_of(&v, "sc-3") == Some(ServerState::Stopped) && v.status == ClusterStatus::Degraded).then_some(())
    })
    .await
    .unwrap();
    let mut w = MySqlConnection::connect(&url(&cr, IPS[1], 6033)).await.unwrap();
    w.execute("INSERT INTO app.w VALUES (4), (5)").await.unwrap();
    drop(w);
    // A second one would leave no majority: refused, nothing happens.
    let o = atoll(&p, &["cluster", "stop", "sc", "sc-2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no majority") && text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(state_of(&view(&p).await, "sc-2"), Some(ServerState::Synced));
    // Start it again: it catches up with what was written meanwhile.
    let o = atoll(&p, &["cluster", "start", "sc", "sc-3"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(query_one(&cr, IPS[2], cr.direct_port, "SELECT COUNT(*) FROM app.w").await, 5);
    eprintln!("[{:5.1} s] stopped and started sc-3", started.elapsed().as_secs_f64());

    // Restart the writer while a client writes through the z2 proxy: the
    // writer moves first, so writes keep succeeding.
    let v = view(&p).await;
    assert_eq!(v.writer.as_deref(), Some("sc-1"));
    let stop = CancellationToken::new();
    let writer = tokio::spawn(write_loop(url(&cr, IPS[1], 6033), 100, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t: TaskView = c.post("/api/v1/clusters/sc/servers/sc-1/restart", &json!({})).await.unwrap();
    let done = p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    assert_eq!(done.steps[0].key, "move-writer");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let (acked, failed, longest) = writer.await.unwrap();
    eprintln!(
        "[{:5.1} s] writer restarted: {} writes acknowledged, {failed} failed attempts, longest gap {:.2} s",
        started.elapsed().as_secs_f64(),
        acked.len(),
        longest.as_secs_f64()
    );
    assert!(acked.len() > 20, "{} writes", acked.len());
    // Measured ≈2 s (the old writer's connections end when it stops; the
    // client reconnects through the proxy to the new writer).
    assert!(longest < Duration::from_secs(4), "writes stalled for {longest:?}");
    assert_eq!(view(&p).await.writer.as_deref(), Some("sc-2"));
    let ids: Vec<String> = acked.iter().map(i64::to_string).collect();
    let sql = format!("SELECT COUNT(*) FROM app.w WHERE id IN ({})", ids.join(","));
    assert_eq!(query_one(&cr, IPS[0], cr.direct_port, &sql).await, acked.len() as i64, "every acknowledged write is on sc-1");
    let total = query_one(&cr, IPS[1], cr.direct_port, "SELECT COUNT(*) FROM app.w").await;

    // Bad input changes nothing.
    let err = c.post::<_, TaskView>("/api/v1/clusters/sc/servers", &json!({ "servers": [{ "zone": "z4", "host": "no-such-host" }] })).await;
    let err = err.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    assert!(err.to_string().contains("no-such-host"), "{err}");
    assert_eq!(view(&p).await.zones.len(), 3);

    // Add a server in a new zone: it takes a full copy and gets a proxy.
    let o = atoll(&p, &["cluster", "scale", "sc", "--add", &format!("z4={}", IPS[3])]);
    assert!(o.status.success(), "{}", text(&o));
    let v = view(&p).await;
    assert_eq!(state_of(&v, "sc-4"), Some(ServerState::Synced));
    assert!(v.proxies.iter().any(|p| p.zone == "z4" && p.address == IPS[3]), "{:?}", v.proxies);
    let rows = |host: &'static str, port: u16| {
        let cr = cr.clone();
        async move { query_one(&cr, host, port, "SELECT COUNT(*) FROM app.w").await }
    };
    assert_eq!(rows(IPS[3], cr.direct_port).await, total, "sc-4 has every row");
    assert_eq!(rows(IPS[3], 6033).await, total, "the z4 proxy serves");
    // Old members' configs know the new one (no restart needed for that).
    let cnf = std::fs::read_to_string(p.host_data_dir().join("sc/sc-1/my.cnf")).unwrap();
    assert!(cnf.contains(&format!("{}:4567", IPS[3])), "{cnf}");
    eprintln!("[{:5.1} s] added sc-4 in z4", started.elapsed().as_secs_f64());

    // Remove it again: gone from the view, proxy closed, data kept.
    let o = atoll(&p, &["cluster", "scale", "sc", "--remove", "sc-4"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = view(&p).await;
    assert!(state_of(&v, "sc-4").is_none(), "{v:?}");
    assert!(!v.proxies.iter().any(|p| p.zone == "z4"), "{:?}", v.proxies);
    assert!(std::net::TcpStream::connect((IPS[3], 6033)).is_err(), "the z4 proxy still listens");
    assert!(p.host_data_dir().join("sc/sc-4").is_dir(), "data kept");
    let cnf = std::fs::read_to_string(p.host_data_dir().join("sc/sc-1/my.cnf")).unwrap();
    assert!(!cnf.contains(&format!("{}:4567", IPS[3])), "{cnf}");
    wait_for("sc healthy with three servers", Duration::from_secs(10), || async {
        let v = view(&p).await;
        (v.status == ClusterStatus::Healthy && v.zones.iter().flat_map(|z| &z.servers).count() == 3).then_some(())
    })
    .await
    .unwrap();
    eprintln!("[{:5.1} s] removed sc-4", started.elapsed().as_secs_f64());
}

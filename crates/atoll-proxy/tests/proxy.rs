//! `atoll proxy` against real MariaDB Galera nodes (loopback
//! 127.0.0.91–99) and a stand-in for the platform's routing endpoint.
//! Listed in the nextest `galera` group: these tests run one at a time.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use atoll_core::time::now_ms;
use atoll_proxy::{ProxyConfig, ProxyStatus};
use atoll_testkit::wait_for;
use common::*;
use sqlx::{AssertSqlSafe, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn config(cluster: &str, servers: Vec<String>) -> ProxyConfig {
    let any: SocketAddr = "127.0.0.99:0".parse().unwrap();
    let mut c = ProxyConfig::new(servers, TOKEN.into(), cluster.into(), any, any);
    c.admin_listen = Some(any);
    c.connect_timeout = Duration::from_millis(1000);
    c
}

async fn wait_behind(addr: SocketAddr, node: &str, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    wait_for(&format!("connections through {addr} to land on {node}"), timeout, || async {
        (node_behind(addr).await.ok().as_deref() == Some(node)).then_some(())
    })
    .await?;
    Ok(start.elapsed())
}

#[derive(Default)]
struct WriteLog {
    /// (id, started (connect included), acknowledged)
    acked: Vec<(i64, Instant, Instant)>,
    failures: Vec<(Instant, String)>,
}

/// Inserts ids from `first` through `addr` until `stop`: a new connection
/// after every error (or for every statement when `per_statement`).
async fn write_loop(addr: SocketAddr, first: i64, per_statement: bool, stop: CancellationToken, log: Arc<Mutex<WriteLog>>) {
    let mut conn = None;
    let mut id = first;
    while !stop.is_cancelled() {
        // A statement's time includes its connect, where holds happen.
        let sent = Instant::now();
        if conn.is_none() {
            match app_conn(addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    log.lock().unwrap().failures.push((Instant::now(), format!("connect: {e}")));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        let sql = format!("INSERT INTO w VALUES ({id}, @@wsrep_node_name)");
        match tokio::time::timeout(Duration::from_secs(15), sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *c)).await {
            Ok(Ok(_)) => log.lock().unwrap().acked.push((id, sent, Instant::now())),
            Ok(Err(e)) => {
                log.lock().unwrap().failures.push((Instant::now(), format!("insert {id}: {e}")));
                conn = None;
            }
            Err(_) => {
                log.lock().unwrap().failures.push((Instant::now(), format!("insert {id}: no answer in 15 s")));
                conn = None;
            }
        }
        id += 1;
        if per_statement && let Some(c) = conn.take() {
            let _ = c.close().await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn admin_status(addr: SocketAddr) -> Result<ProxyStatus> {
    Ok(reqwest::get(format!("http://{addr}/status")).await?.error_for_status()?.json().await?)
}

/// Issue 5, tests 1 and 5: the `mariadb` CLI through both ports; bad
/// clients and a backend that never answers leave others undisturbed;
/// `--max-connections`; the error a client sees when nothing is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bad_clients_and_error_packets() -> Result<()> {
    init_logs();
    let mut g = Galera::new()?;
    g.start_cluster("pxa", &["a1"], &["127.0.0.96"]).await?;
    // Accepts TCP (the kernel does) and never says a word.
    let blackhole = std::net::TcpListener::bind("127.0.0.98:0")?;
    let bh_port = blackhole.local_addr()?.port();
    let mut bh = g.node("a1").backend("z2");
    bh.name = "blackhole".into();
    bh.address = "127.0.0.98".into();
    bh.port = bh_port;
    let ts = TableServer::start("127.0.0.99", table("pxa", "1", Some("a1"), None, vec![g.node("a1").backend("z1"), bh])).await?;
    let mut cfg = config("pxa", vec![ts.url()]);
    // Our zone holds only the blackhole: reads must fall back to z1.
    cfg.zone = Some("z2".into());
    let stop = CancellationToken::new();
    let p = atoll_proxy::start(cfg, stop.clone()).await?;
    wait_behind(p.rw_addr, "a1", Duration::from_secs(10)).await?;

    let (ok, out, err) = mariadb_cli(p.rw_addr, "SELECT @@wsrep_node_name; INSERT INTO t.w VALUES (1, 'cli')").await?;
    assert!(ok, "rw: {err}");
    assert_eq!(out, "a1");
    let (ok, out, err) = mariadb_cli(p.ro_addr, "SELECT node FROM t.w WHERE id = 1").await?;
    assert!(ok, "ro: {err}");
    assert_eq!(out, "cli");

    // Bad clients, all at once, while a good one keeps working.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(p.rw_addr).await?);
    }
    let mut bad = Vec::new();
    for i in 0..6 {
        let addr = if i % 2 == 0 { p.rw_addr } else { p.ro_addr };
        bad.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            if i < 3 {
                // Garbage instead of a handshake reply.
                s.write_all(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x13, 0x37].repeat(40)).await?;
                let mut sink = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
            } else {
                // Read the greeting, then leave mid-handshake.
                let mut buf = [0u8; 16];
                let _ = s.read(&mut buf).await?;
            }
            anyhow::Ok(())
        }));
    }
    let (ok, out, err) = mariadb_cli(p.rw_addr, "SELECT COUNT(*) FROM t.w").await?;
    assert!(ok && out == "1", "good client disturbed: {out} {err}");
    for b in bad {
        b.await??;
    }
    // A backend that accepts and never greets is given up on in time.
    let t = Instant::now();
    let r = atoll_proxy::forward::connect(&format!("127.0.0.98:{bh_port}"), Duration::from_millis(500)).await;
    assert!(r.as_ref().is_err_and(|e| e.contains("did not greet")), "{:?}", r.map(|_| ()));
    assert!(t.elapsed() < Duration::from_secs(2));
    let status = admin_status(p.admin_addr.unwrap()).await?;
    let bh_status = status.backends.iter().find(|b| b.name == "blackhole").unwrap();
    assert!(!bh_status.readable, "the blackhole passed a probe: {bh_status:?}");
    drop(silent);
    wait_for("client connections to close", Duration::from_secs(10), || async {
        let s = admin_status(p.admin_addr.unwrap()).await.ok()?;
        (s.rw_connections + s.ro_connections == 0).then_some(())
    })
    .await?;
    let (ok, _, err) = mariadb_cli(p.ro_addr, "SELECT 1").await?;
    assert!(ok, "after bad clients: {err}");
    let metrics = reqwest::get(format!("http://{}/metrics", p.admin_addr.unwrap())).await?.text().await?;
    assert!(metrics.contains("atoll_proxy_connections_total{cluster=\"pxa\",port=\"rw\"}"), "{metrics}");
    assert!(metrics.contains("atoll_proxy_backend_up{cluster=\"pxa\",backend=\"a1\"} 1"), "{metrics}");
    assert!(metrics.contains("atoll_proxy_writer_healthy{cluster=\"pxa\"} 1"), "{metrics}");
    assert!(metrics.contains("atoll_proxy_backend_connect_failures_total{cluster=\"pxa\",backend=\"a1\"} 0"), "{metrics}");

    // --max-connections: one held, the next refused with 1040.
    let mut small = config("pxa", vec![ts.url()]);
    small.max_connections = 1;
    let p2 = atoll_proxy::start(small, stop.clone()).await?;
    let held =
        wait_for("a connection through the small proxy", Duration::from_secs(10), || async { app_conn(p2.rw_addr).await.ok() }).await?;
    let (ok, _, err) = mariadb_cli(p2.rw_addr, "SELECT 1").await?;
    assert!(!ok && err.contains("1040") && err.contains("Too many connections"), "{err}");
    println!("max-connections refusal as the mariadb client prints it: {err}");
    drop(held);

    // Stopping: the ports close at once, a connection in use gets the
    // grace period, then it is closed and the proxy (its relay threads
    // included) is gone.
    let mut graceful = config("pxa", vec![ts.url()]);
    graceful.grace = Duration::from_millis(1500);
    graceful.relay_threads = 2;
    let stop3 = CancellationToken::new();
    let p3 = atoll_proxy::start(graceful, stop3.clone()).await?;
    let mut conns = Vec::new();
    for _ in 0..2 {
        conns.push(
            wait_for("a connection to the stopping proxy", Duration::from_secs(10), || async { app_conn(p3.rw_addr).await.ok() }).await?,
        );
    }
    let stopped_at = Instant::now();
    stop3.cancel();
    wait_for("the read-write port to close", Duration::from_secs(2), || async {
        tokio::net::TcpStream::connect(p3.rw_addr).await.is_err().then_some(())
    })
    .await?;
    for c in &mut conns {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t.w").fetch_one(&mut *c).await?;
        assert_eq!(n, 1, "a connection still works during the grace period");
    }
    p3.wait().await;
    let took = stopped_at.elapsed();
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5), "stopped after {took:?}");
    for c in &mut conns {
        assert!(sqlx::query("SELECT 1").execute(&mut *c).await.is_err(), "a connection outlived the grace period");
    }

    // Nothing healthy: the client prints our reason.
    g.node_mut("a1").kill();
    wait_for("a1 marked down", Duration::from_secs(5), || async { (!p.status().backends.iter().any(|b| b.readable)).then_some(()) })
        .await?;
    let (ok, _, err) = mariadb_cli(p.rw_addr, "SELECT 1").await?;
    assert!(!ok && err.contains("cluster 'pxa' has no healthy writer") && err.contains("a1 down"), "{err}");
    println!("no writer, as the mariadb client prints it: {err}");
    let metrics = reqwest::get(format!("http://{}/metrics", p.admin_addr.unwrap())).await?.text().await?;
    assert!(metrics.contains("atoll_proxy_writer_healthy{cluster=\"pxa\"} 0"), "what the proxy-without-writer alarm reads: {metrics}");
    let (ok, _, err) = mariadb_cli(p.ro_addr, "SELECT 1").await?;
    assert!(!ok && err.contains("cluster 'pxa' has no healthy reader"), "{err}");
    stop.cancel();
    p.wait().await;
    p2.wait().await;
    Ok(())
}

/// Issue 5, tests 3 and 2: a planned writer move loses no statement; then
/// SIGKILL of the writer under a write loop: writes resume within 3 s on
/// the next node in table order, and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_move_then_writer_kill() -> Result<()> {
    init_logs();
    let mut g = Galera::new()?;
    g.start_cluster("pxb", &["b1", "b2", "b3"], &["127.0.0.91", "127.0.0.92", "127.0.0.93"]).await?;
    let order = |names: &[&str]| names.iter().enumerate().map(|(i, n)| g.node(n).backend(&format!("z{}", i + 1))).collect::<Vec<_>>();
    let ts = TableServer::start("127.0.0.99", table("pxb", "1", Some("b1"), None, order(&["b1", "b2", "b3"]))).await?;
    let stop = CancellationToken::new();
    let p = atoll_proxy::start(config("pxb", vec![ts.url()]), stop.clone()).await?;
    wait_behind(p.rw_addr, "b1", Duration::from_secs(10)).await?;

    // Planned move b1 -> b2: new connections are held, none fails.
    let log = Arc::new(Mutex::new(WriteLog::default()));
    let writes = CancellationToken::new();
    let w = tokio::spawn(write_loop(p.rw_addr, 1, true, writes.clone(), log.clone()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    ts.publish(table("pxb", "2", Some("b1"), Some("b2"), order(&["b1", "b2", "b3"])));
    tokio::time::sleep(Duration::from_millis(700)).await;
    ts.publish(table("pxb", "3", Some("b2"), None, order(&["b2", "b3", "b1"])));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    writes.cancel();
    w.await?;
    let (acked_move, longest_wait) = {
        let l = log.lock().unwrap();
        assert!(l.failures.is_empty(), "failed statements during a planned move: {:?}", l.failures);
        let longest = l.acked.iter().map(|(_, s, a)| *a - *s).max().unwrap_or_default();
        (l.acked.iter().map(|a| a.0).collect::<BTreeSet<_>>(), longest)
    };
    assert!(acked_move.len() > 20, "only {} writes", acked_move.len());
    assert!(longest_wait >= Duration::from_millis(400), "no connection was held during the move (longest {longest_wait:?})");
    let last = g.node("b1").query_strings("SELECT node FROM t.w ORDER BY id DESC LIMIT 5").await?;
    assert!(last.iter().all(|n| n == "b2"), "writes after the move went to {last:?}");
    println!("planned move: {} writes, 0 failed, longest statement (held) {longest_wait:?}", acked_move.len());

    // SIGKILL the writer (b2) under a write loop with one connection.
    let uuid = g.node("b2").status("wsrep_gcomm_uuid").await.unwrap();
    let log = Arc::new(Mutex::new(WriteLog::default()));
    let writes = CancellationToken::new();
    let w = tokio::spawn(write_loop(p.rw_addr, 1_000_000, false, writes.clone(), log.clone()));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (t0, t0_ms) = (Instant::now(), now_ms());
    g.node_mut("b2").kill();
    // What the agent's supervisor does when it sees the process exit.
    for n in ["b1", "b3"] {
        let _ = g.node(n).exec(&format!("SET GLOBAL wsrep_provider_options='evs.evict={uuid}'")).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    writes.cancel();
    w.await?;
    let (resume, acked_kill, failures) = {
        let l = log.lock().unwrap();
        let resume = l.acked.iter().find(|(_, sent, _)| *sent >= t0).map(|(_, _, a)| *a - t0);
        (resume, l.acked.iter().map(|a| a.0).collect::<BTreeSet<_>>(), l.failures.len())
    };
    let resume = resume.expect("writes never resumed");
    let s = p.status();
    let b2 = s.backends.iter().find(|b| b.name == "b2").unwrap();
    let marked_down = b2.since_unix_ms.saturating_sub(t0_ms);
    let writer_switch = s.writer_since_unix_ms.saturating_sub(t0_ms);
    println!(
        "writer kill: proxy marked b2 down after {marked_down} ms, switched writer to {:?} after {writer_switch} ms; \
         writes resumed after {resume:?} ({failures} failed statements/connects)",
        s.writer_in_use
    );
    assert_eq!(s.writer_in_use.as_deref(), Some("b3"), "the next in table order");
    assert!(resume < Duration::from_secs(3), "writes resumed only after {resume:?}");
    // Every acknowledged write is on both survivors.
    for n in ["b1", "b3"] {
        let node = g.node(n);
        let present = wait_for(&format!("acknowledged writes on {n}"), Duration::from_secs(10), || async {
            let ids = ids_on(node).await.ok()?;
            (acked_move.is_subset(&ids) && acked_kill.is_subset(&ids)).then_some(ids)
        })
        .await;
        assert!(present.is_ok(), "acknowledged writes missing on {n}");
    }
    stop.cancel();
    p.wait().await;
    Ok(())
}

/// Issue 5, test 4: the platform goes away: the proxy routes on with its
/// last table, a proxy started meanwhile routes from the state file, and
/// when the platform is back its changes arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_outage_and_state_file() -> Result<()> {
    init_logs();
    let mut g = Galera::new()?;
    // Two one-node clusters: which one a connection reaches shows the route.
    g.start_cluster("pxc1", &["c1"], &["127.0.0.94"]).await?;
    g.start_cluster("pxc2", &["c2"], &["127.0.0.95"]).await?;
    let backends = vec![g.node("c1").backend("z1"), g.node("c2").backend("z2")];
    let mut ts = TableServer::start("127.0.0.99", table("pxc", "1", Some("c1"), None, backends.clone())).await?;
    let state = tempfile::tempdir()?;
    // A dead platform server first: the proxy must move on to the next.
    let servers = vec!["http://127.0.0.97:9".to_string(), ts.url()];
    let mut cfg = config("pxc", servers.clone());
    cfg.state_dir = Some(state.path().to_path_buf());
    let stop = CancellationToken::new();
    let p1 = atoll_proxy::start(cfg.clone(), stop.clone()).await?;
    wait_behind(p1.rw_addr, "c1", Duration::from_secs(10)).await?;

    // A change while the platform is up arrives within a second.
    ts.publish(table("pxc", "2", Some("c2"), None, backends.clone()));
    let took = wait_behind(p1.rw_addr, "c2", Duration::from_secs(5)).await?;
    println!("table change to first connection on the new writer: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    ts.down();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..5 {
        assert_eq!(node_behind(p1.rw_addr).await?, "c2");
    }
    let (ok, _, err) = mariadb_cli(p1.ro_addr, "SELECT 1").await?;
    assert!(ok, "{err}");
    assert!(p1.status().table_age_s.unwrap() >= 1.0);

    // Started while the platform is down: routes from the state file.
    let p2 = atoll_proxy::start(cfg, stop.clone()).await?;
    wait_behind(p2.rw_addr, "c2", Duration::from_secs(10)).await?;
    let s2 = p2.status();
    assert_eq!((s2.table_source.as_str(), s2.table_version.as_deref()), ("state_file", Some("2")));

    // The platform returns with a new writer: both proxies follow.
    ts.publish(table("pxc", "3", Some("c1"), None, backends));
    ts.up().await?;
    let t = Instant::now();
    wait_behind(p1.rw_addr, "c1", Duration::from_secs(10)).await?;
    wait_behind(p2.rw_addr, "c1", Duration::from_secs(10)).await?;
    println!("platform back: both proxies on the new writer after {:?}", t.elapsed());
    assert_eq!(p2.status().table_source, "platform");
    stop.cancel();
    p1.wait().await;
    p2.wait().await;
    Ok(())
}

//! Rotating the platform's CA (issue 12): a new CA replaces the old one
//! while a cluster takes writes through its proxies, with real agents,
//! proxies and mariadbd over TLS. A host that cannot follow stops the
//! rotation, named; run again, the rotation carries on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use atoll_api::v1::{CaView, ClusterCredentials, TaskView};
use atoll_core::TaskStatus;
use atoll_testkit::{Platform, ServerOpts, output_text, wait_for};
use sqlx::{Connection, MySqlConnection};

const IPS: [&str; 3] = ["127.0.8.1", "127.0.8.2", "127.0.8.3"];

fn url(cr: &ClusterCredentials, host: &str) -> String {
    format!("mysql://{}:{}@{host}:6033/", cr.user, cr.password)
}

/// Inserts rows through the z2 proxy, a new connection per row (what
/// clients that connect per transaction see), until `stop`; the ids
/// acknowledged and the failures, with their errors.
async fn write_loop(cr: ClusterCredentials, stop: Arc<AtomicBool>, next: Arc<AtomicU64>) -> (Vec<u64>, Vec<String>) {
    let (mut acked, mut failed) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let id = next.fetch_add(1, Ordering::Relaxed);
        let r = async {
            let mut c = MySqlConnection::connect(&url(&cr, IPS[1])).await?;
            sqlx::query("INSERT INTO rot.w (id) VALUES (?)").bind(id as i64).execute(&mut c).await?;
            c.close().await
        }
        .await;
        match r {
            Ok(()) => acked.push(id),
            Err(e) => failed.push(format!("row {id}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (acked, failed)
}

/// Whether an HTTPS handshake with `url` succeeds trusting `ca_pem` alone.
async fn handshake_trusting(url: &str, ca_pem: &str) -> Result<(), String> {
    let tls = atoll_pki::client_config(&[ca_pem], None).unwrap();
    let http = reqwest::Client::builder().tls_backend_preconfigured(tls).timeout(Duration::from_secs(5)).build().unwrap();
    http.get(format!("{url}/healthz")).send().await.map(|_| ()).map_err(|e| atoll_client::describe(&e))
}

/// The mariadb client straight to a node, verifying its certificate by
/// the CAs in `ca_file`.
fn verified_query(cr: &ClusterCredentials, ip: &str, ca_file: &std::path::Path) -> std::process::Output {
    std::process::Command::new("mariadb")
        .args(["--no-defaults", "-h", ip, "-P", "3306", "-u", &cr.user, &format!("-p{}", cr.password)])
        .arg(format!("--ssl-ca={}", ca_file.display()))
        .args(["--ssl-verify-server-cert", "-N", "-B", "-e", "SELECT @@wsrep_node_name"])
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_platform_ca_rotates_without_downtime_and_resumes_after_a_host_that_lagged() {
    let (p, agents) = Platform::with_prepared_hosts_using(ServerOpts::tls(), &IPS).await.unwrap();
    let c = p.client();
    let spec = serde_json::json!({
        "name": "rot",
        "servers": IPS.iter().enumerate().map(|(i, ip)| serde_json::json!({ "name": format!("rot-{}", i + 1), "zone": format!("z{}", i + 1), "host": ip })).collect::<Vec<_>>(),
    });
    let t: TaskView = c.post("/api/v1/clusters", &spec).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(240)).await.unwrap_or_else(|e| {
        let tail = |s: String| s.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        panic!("{e}\nserver:\n{}\nagent1:\n{}", tail(p.server.output()), tail(agents[0].proc.output()))
    });
    assert_eq!(t.status, TaskStatus::Succeeded, "{:#?}", t.steps);
    let cr: ClusterCredentials = c.get("/api/v1/clusters/rot/credentials").await.unwrap();
    let out = atoll_testkit::mariadb(&cr, IPS[0], 6033, "CREATE DATABASE rot; CREATE TABLE rot.w (id BIGINT PRIMARY KEY)").unwrap();
    assert!(out.status.success(), "{}", output_text(&out));

    let dir = p.dir.path().to_path_buf();
    let old_ca = std::fs::read_to_string(dir.join("server/ca.pem")).unwrap();
    let old_fp = atoll_pki::fingerprint(&old_ca).unwrap();
    let old_ca_file = dir.join("old-ca.pem");
    std::fs::write(&old_ca_file, &old_ca).unwrap();
    // A CLI logged in the usual way: its login keeps the CA.
    let cli_dir = dir.join("cli");
    std::fs::create_dir_all(&cli_dir).unwrap();
    std::fs::write(cli_dir.join("credentials.toml"), toml::to_string(&serde_json::json!({ "ca_pem": old_ca })).unwrap()).unwrap();

    // Writes flow through the proxy the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_loop(cr.clone(), Arc::clone(&stop), Arc::new(AtomicU64::new(1))));

    // The third host's agent cannot follow (stopped): the rotation stages a new CA,
    // then fails at the trust step naming host3; nothing is switched.
    let agent3 = agents[2].proc.pid().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &agent3]).status().unwrap().success());
    let out = p.cli(&["platform", "rotate-ca", "--wait", "10"]).unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("host host-127-0-8-3") && text.contains("rotate-ca` again"), "the step names the host and what to do: {text}");
    let v: CaView = c.get("/api/v1/platform/ca").await.unwrap();
    assert_eq!((v.phase.as_str(), v.issuer.as_str(), v.trusted.len()), ("trusting", old_fp.as_str(), 2), "{v:?}");
    assert!(v.waiting_for.iter().any(|w| w.starts_with("host host-127-0-8-3")), "{v:?}");
    // One rotation at a time.
    let busy = c.post::<_, TaskView>("/api/v1/platform/ca/rotate", &serde_json::json!({})).await;
    assert!(busy.is_ok(), "a failed rotation does not hold the lock: {busy:?}");
    let again = c.post::<_, TaskView>("/api/v1/platform/ca/rotate", &serde_json::json!({})).await.unwrap_err().to_string();
    assert!(again.contains("busy"), "{again}");
    let first = busy.unwrap();

    // The agent back: the running rotation carries on and finishes.
    assert!(std::process::Command::new("kill").args(["-CONT", &agent3]).status().unwrap().success());
    let resumed = std::time::Instant::now();
    let done = p.wait_task(&first.id, Duration::from_secs(200)).await.unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    eprintln!("rotation finished {:.1} s after the lagging agent came back", resumed.elapsed().as_secs_f64());

    let v: CaView = c.get("/api/v1/platform/ca").await.unwrap();
    assert_eq!((v.phase.as_str(), v.trusted.len()), ("steady", 1), "{v:?}");
    assert!(v.waiting_for.is_empty(), "{v:?}");
    let new_fp = v.issuer.clone();
    assert_ne!(new_fp, old_fp);
    let new_ca = std::fs::read_to_string(dir.join("server/ca.pem")).unwrap();
    assert_eq!(atoll_pki::fingerprints(&new_ca).unwrap(), vec![new_fp.clone()], "the server's ca.pem holds the new CA alone");

    // The server and every agent present new-CA certificates only.
    assert!(handshake_trusting(&p.url, &new_ca).await.is_ok());
    assert!(handshake_trusting(&p.url, &old_ca).await.is_err(), "the server still presents an old-CA certificate");
    for a in &agents {
        let agent_url = format!("https://{}:{}", a.ip, a.port);
        assert!(handshake_trusting(&agent_url, &new_ca).await.is_ok(), "{agent_url}");
        assert!(handshake_trusting(&agent_url, &old_ca).await.is_err(), "{agent_url} still presents an old-CA certificate");
        let trusted = std::fs::read_to_string(a.data_dir.join("ca.pem")).unwrap();
        assert_eq!(atoll_pki::fingerprints(&trusted).unwrap(), vec![new_fp.clone()], "{} trusts the new CA alone", a.ip);
    }
    // Every database server: a new-CA certificate, verified by a client
    // that trusts the new CA; one that trusts only the old CA is refused.
    let new_ca_file = dir.join("new-ca.pem");
    std::fs::write(&new_ca_file, &new_ca).unwrap();
    for (i, ip) in IPS.iter().enumerate() {
        let out = verified_query(&cr, ip, &new_ca_file);
        assert!(out.status.success(), "{ip}: {}", output_text(&out));
        assert!(!verified_query(&cr, ip, &old_ca_file).status.success(), "{ip} still presents an old-CA certificate");
        let db_ca = std::fs::read_to_string(dir.join(format!("hosts-db/rot/rot-{}/ca.pem", i + 1))).unwrap();
        assert_eq!(atoll_pki::fingerprints(&db_ca).unwrap(), vec![new_fp.clone()]);
    }

    // Nothing was interrupted: every write went through, every one is there.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} writes failed during the rotation: {:?}",
        failed.len(),
        acked.len() + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(acked.len() > 20, "the writer ran: {}", acked.len());
    let out = atoll_testkit::mariadb(&cr, IPS[0], 6033, "SELECT COUNT(*) FROM rot.w").unwrap();
    assert_eq!(output_text(&out).trim(), acked.len().to_string());
    eprintln!("rotation: {} writes through the z2 proxy, none failed", acked.len());

    // Everything still works on the new CA alone: the agents (a restart
    // ordered over mutual TLS), Galera (the node rejoins with its new
    // certificate), the proxies (they follow a writer move).
    let t: TaskView = c.post("/api/v1/clusters/rot/servers/rot-3/restart", &serde_json::json!({})).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(t.status, TaskStatus::Succeeded, "{:#?}", t.steps);
    let size = atoll_testkit::mariadb(
        &cr,
        IPS[2],
        3306,
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'",
    )
    .unwrap();
    assert_eq!(output_text(&size).trim(), "3", "rot-3 rejoined the group over TLS");
    let t: TaskView = c.post("/api/v1/clusters/rot/writer", &serde_json::json!({ "server": "rot-2" })).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(t.status, TaskStatus::Succeeded, "{:#?}", t.steps);
    for ip in IPS {
        wait_for("the proxy follows the writer move", Duration::from_secs(15), || async {
            let out = atoll_testkit::mariadb(&cr, ip, 6033, "SELECT @@wsrep_node_name").ok()?;
            (output_text(&out).trim() == "rot-2").then_some(())
        })
        .await
        .unwrap();
    }

    // A client still trusting the old CA alone is told what happened.
    let out = p.cli(&["platform", "--ca-file", old_ca_file.to_str().unwrap()]).unwrap();
    let text = output_text(&out);
    assert!(!out.status.success() && text.contains("CA was rotated") && text.contains("--ca-fingerprint"), "{text}");

    // The CLI that logged in before the rotation (and ran its first try)
    // still works, and keeps the new CA alone with its login.
    let out = p.cli(&["platform", "ca"]).unwrap();
    assert!(out.status.success() && output_text(&out).contains(&new_fp), "{}", output_text(&out));
    let saved = std::fs::read_to_string(cli_dir.join("credentials.toml")).unwrap();
    let saved: toml::Value = toml::from_str(&saved).unwrap();
    let saved_pem = saved["ca_pem"].as_str().unwrap();
    assert_eq!(atoll_pki::fingerprints(saved_pem).unwrap(), vec![new_fp.clone()]);
}

//! The environment precheck against real agents: a good host passes, a
//! host whose data directory is not writable or whose port is taken fails,
//! with the measured value, the requirement and the fix; the CLI's exit
//! code says which.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::process::Command;
use std::time::Duration;

use atoll_api::v1::{CheckResponse, HostListItem, HostView};
use atoll_core::HostStatus;
use atoll_plan::check::CheckStatus;
use atoll_testkit::{Platform, ServerOpts, atoll_bin, free_port, wait_for};
use serde_json::json;

#[tokio::test]
async fn precheck_passes_a_good_host_and_fails_bad_ones() {
    let mut p = Platform::start(ServerOpts::default()).await.unwrap();
    p.login_admin().await.unwrap();
    let join = p.join_token().await.unwrap();
    let _a = p.start_agent("good", "127.0.0.31", Some("z1"), &join).unwrap();
    wait_for("host online", Duration::from_secs(20), || async {
        let hs: Vec<HostListItem> = p.client().get("/api/v1/hosts").await.ok()?;
        hs.iter().any(|h| h.status == HostStatus::Online).then_some(())
    })
    .await
    .unwrap();
    let c = p.client();
    let good_dir = p.dir.path().display().to_string();
    let port = free_port("127.0.0.31");

    // Good: sandbox profile, a writable directory, free ports, binaries present.
    let r: CheckResponse =
        c.post("/api/v1/hosts/check", &json!({ "profile": "sandbox", "data_dir": good_dir, "ports": [port] })).await.unwrap();
    let h = &r.hosts[0];
    let fails: Vec<_> = h.results.iter().filter(|r| r.status == CheckStatus::Fail).collect();
    assert!(fails.is_empty(), "a good host fails: {fails:?}");
    assert!(h.results.iter().any(|r| r.item == "data_dir.writable" && r.status == CheckStatus::Pass));
    assert!(h.results.iter().any(|r| r.item == format!("port.{port}") && r.status == CheckStatus::Pass));
    assert!(h.results.iter().any(|r| r.item == "binary.mariadbd" && r.status == CheckStatus::Pass), "{:?}", h.results);

    // Not writable: a path below a regular file.
    let file = p.dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let bad_dir = file.join("db").display().to_string();
    let r: CheckResponse =
        c.post("/api/v1/hosts/check", &json!({ "profile": "sandbox", "data_dir": bad_dir, "ports": [port] })).await.unwrap();
    let item = r.hosts[0].results.iter().find(|r| r.item == "data_dir.writable").unwrap();
    assert_eq!(item.status, CheckStatus::Fail);
    assert!(item.fix.is_some() && !item.measured.is_empty(), "{item:?}");
    assert_eq!(r.worst, CheckStatus::Fail);

    // A taken port.
    let _holder = std::net::TcpListener::bind(("127.0.0.31", port)).unwrap();
    let r: CheckResponse =
        c.post("/api/v1/hosts/check", &json!({ "profile": "sandbox", "data_dir": good_dir, "ports": [port] })).await.unwrap();
    let item = r.hosts[0].results.iter().find(|r| r.item == format!("port.{port}")).unwrap();
    assert_eq!(item.status, CheckStatus::Fail, "{item:?}");
    assert!(item.fix.as_deref().unwrap().contains(&port.to_string()));

    // The results are kept with the host.
    let shown: HostView = c.get("/api/v1/hosts/127.0.0.31").await.unwrap();
    let shown = shown.checks.unwrap();
    assert_eq!(shown.worst, CheckStatus::Fail);
    // ... and summarised in the listing.
    let listed: Vec<HostListItem> = c.get("/api/v1/hosts").await.unwrap();
    let summary = listed[0].checks.as_ref().unwrap();
    assert_eq!((summary.worst, summary.profile.as_str(), summary.checked_at_ms), (CheckStatus::Fail, "sandbox", shown.checked_at_ms));

    // The CLI: exit 3 while the port is taken, 0 once it is free.
    let cli = |dir: &str| {
        Command::new(atoll_bin())
            .args(["host", "check", "127.0.0.31", "--profile", "sandbox", "--data-dir", dir, "--ports", &port.to_string()])
            .env("ATOLL_SERVER", &p.url)
            .env("ATOLL_TOKEN", p.token.as_deref().unwrap())
            .env("ATOLL_CONFIG_DIR", p.dir.path())
            .output()
            .unwrap()
    };
    let out = cli(&good_dir);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("port.{port}")));
    drop(_holder);
    let out = cli(&good_dir);
    assert_eq!(out.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The production profile fails this small machine on its sizing table.
    let r: CheckResponse =
        c.post("/api/v1/hosts/check", &json!({ "profile": "production", "data_dir": good_dir, "ports": [port] })).await.unwrap();
    let cores = r.hosts[0].results.iter().find(|r| r.item == "cpu.cores").unwrap();
    if std::thread::available_parallelism().unwrap().get() < 4 {
        assert_eq!(cores.status, CheckStatus::Fail, "{cores:?}");
        assert!(cores.required.contains('4'), "{cores:?}");
    }
}

#[test]
fn plan_prints_the_seed_table() {
    let out = Command::new(atoll_bin()).args(["plan", "--mode", "single-node", "--json"]).output().unwrap();
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = plan["rows"].as_array().unwrap();
    let db = rows.iter().find(|r| r["server_type"] == "database").unwrap();
    assert_eq!(db["quantity"], 3);
    assert_eq!(db["functional"]["cores"], 4);
    assert_eq!(db["functional"]["memory_gib"], 16);
    let out = Command::new(atoll_bin()).args(["plan", "--mode", "galaxy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("single-node, multi-node, multi-cluster, multi-zone"));
}

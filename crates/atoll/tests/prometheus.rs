//! Atoll beside an existing Prometheus (Debian's `prometheus`, run as test
//! processes): the generated scrape configuration passes `promtool`, is
//! loaded, and scrapes agents, proxies' and servers' targets from the
//! file_sd files `atoll metrics sd` writes (and picks up a new host when
//! they are rewritten); a second Prometheus receives Atoll's own samples
//! by remote write.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use atoll_testkit::{Platform, Proc, ServerOpts, free_port, wait_for};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

fn start_prometheus(dir: &Path, name: &str, config: &str, port: u16, extra: &[&str]) -> Proc {
    let conf = dir.join(format!("{name}.yml"));
    std::fs::write(&conf, config).unwrap();
    let mut cmd = Command::new(PROMETHEUS);
    cmd.arg(format!("--config.file={}", conf.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join(format!("{name}-data")).display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra);
    Proc::spawn(name, cmd, dir.join(format!("{name}.log"))).unwrap()
}

/// The values of an instant query, by their `instance` label.
async fn query(port: u16, q: &str) -> Vec<(String, f64)> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    let Ok(r) = reqwest::Client::new().get(url).query(&[("query", q)]).send().await else { return Vec::new() };
    let v: Value = r.json().await.unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| {
                    let instance = r["metric"]["instance"].as_str().unwrap_or("").to_string();
                    let value = r["value"][1].as_str()?.parse().ok()?;
                    Some((instance, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_from_generated_discovery_and_receives_remote_write() {
    assert!(
        Path::new(PROMETHEUS).exists() && Path::new(PROMTOOL).exists(),
        "this test needs Debian's prometheus package: run scripts/test.sh, which installs it"
    );
    let receiver_port = free_port("127.0.0.1");
    let mut opts = ServerOpts::default();
    opts.extra_args.extend(["--remote-write-url".to_string(), format!("http://127.0.0.1:{receiver_port}/api/v1/write")]);
    let mut p = Platform::start(opts).await.unwrap();
    p.login_admin().await.unwrap();
    let join = p.join_token().await.unwrap();
    let _a1 = p.start_agent("p1", "127.0.0.61", Some("z1"), &join).unwrap();
    let hosts = p.wait_hosts_online(1).await.unwrap();
    let first = hosts[0].name.clone();

    // Files and configuration as a user makes them.
    let dir = p.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("atoll.token");
    std::fs::write(&token_file, p.token.clone().unwrap()).unwrap();
    let sd = dir.join("sd");
    let out = p.cli(&["metrics", "sd", "--dir", sd.to_str().unwrap()]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let agents: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(sd.join("atoll-agent.json")).unwrap()).unwrap();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["labels"]["__metrics_path__"], format!("/api/v1/hosts/{first}/metrics"));
    assert_eq!(agents[0]["labels"]["instance"], first.as_str());
    let servers: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(sd.join("atoll-server.json")).unwrap()).unwrap();
    assert_eq!(servers.len(), 1, "{servers:?}");
    let out = p
        .cli(&[
            "metrics",
            "prometheus-config",
            "--dir",
            sd.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
            "--interval",
            "1s",
        ])
        .unwrap();
    assert!(out.status.success());
    let config = format!("global:\n  scrape_interval: 1s\n{}", String::from_utf8(out.stdout).unwrap());
    std::fs::write(dir.join("check.yml"), &config).unwrap();
    let check = Command::new(PROMTOOL).args(["check", "config"]).arg(dir.join("check.yml")).output().unwrap();
    assert!(check.status.success(), "promtool: {}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));

    // The scraper Prometheus, and the receiver of Atoll's remote write.
    let scraper_port = free_port("127.0.0.1");
    let _scraper = start_prometheus(&dir, "scraper", &config, scraper_port, &[]);
    let _receiver =
        start_prometheus(&dir, "receiver", "global:\n  scrape_interval: 15s\n", receiver_port, &["--web.enable-remote-write-receiver"]);

    // Prometheus scrapes the agent (through the server, with the token) and the server.
    let up = wait_for("Prometheus scraping the agent and the server", Duration::from_secs(40), || async {
        let agent = query(scraper_port, "up{job=\"agent\"}").await;
        let server = query(scraper_port, "up{job=\"server\"}").await;
        (agent == [(first.clone(), 1.0)] && server.len() == 1 && server[0].1 == 1.0).then_some(())
    })
    .await;
    up.unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(dir.join("scraper.log")).unwrap_or_default()));
    let memory = query(scraper_port, &format!("atoll_host_memory_total_bytes{{host=\"{first}\"}}")).await;
    assert!(memory.len() == 1 && memory[0].1 > 0.0, "{memory:?}");

    // A new host: the rewritten file brings it to Prometheus.
    let _a2 = p.start_agent("p2", "127.0.0.62", Some("z2"), &join).unwrap();
    let hosts = p.wait_hosts_online(2).await.unwrap();
    let second = hosts.iter().map(|h| h.name.clone()).find(|n| *n != first).unwrap();
    let out = p.cli(&["metrics", "sd", "--dir", sd.to_str().unwrap()]).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("atoll-agent.json"), "only the changed file is rewritten");
    wait_for("the second agent scraped", Duration::from_secs(40), || async {
        query(scraper_port, "up{job=\"agent\"}").await.iter().any(|(i, v)| *i == second && *v == 1.0).then_some(())
    })
    .await
    .unwrap();

    // Atoll's own samples arrive at the receiver by remote write: its
    // scraper's `up` per target and the agents' host metrics.
    wait_for("remote-written samples", Duration::from_secs(40), || async {
        let up = query(receiver_port, "up{job=\"agent\"}").await;
        let mem = query(receiver_port, &format!("atoll_host_memory_total_bytes{{host=\"{first}\"}}")).await;
        (up.iter().any(|(i, v)| *i == first && *v == 1.0) && mem.len() == 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(dir.join("receiver.log")).unwrap_or_default()));

    // Bad input is named.
    let out = p.cli(&["metrics", "query", "no_such_metric"]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown metric `no_such_metric`"));
    let targets = String::from_utf8(p.cli(&["metrics", "targets"]).unwrap().stdout).unwrap();
    assert!(targets.contains("agent") && targets.contains(&second), "{targets}");
}

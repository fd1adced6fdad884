//! `platform-ha-bench`: the three-node platform on this machine (as
//! `atoll playground --nodes 3` makes it), then the loss of the node that
//! runs the controllers. Measures the time to deploy, each node's
//! footprint at rest, how long the controllers take to move, and what two
//! clients see while the node is gone: one that knows all three URLs, one
//! pinned to the dead node. Appends a section to RESULTS.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atoll_api::v1::{ClusterView, PlatformView};
use atoll_client::{Client, Servers};
use atoll_deploy::bootstrap::{Options, bring_up};
use atoll_deploy::launch::{LocalLauncher, Role};
use atoll_deploy::layout::{Layout, METADB_CLUSTER, Node};
use atoll_testkit::KillUnder;
use atoll_testkit::prober::Prober;

const NODES: [(&str, &str, &str); 3] = [("node1", "127.0.0.51", "z1"), ("node2", "127.0.0.52", "z2"), ("node3", "127.0.0.53", "z3")];
/// Production defaults for every interval, so the numbers are what a user gets.
const HEARTBEAT_MS: u64 = 2_000;
const OFFLINE_MS: u64 = 6_000;
const LEADER_LEASE_MS: u64 = 5_000;
const TASK_LEASE_MS: u64 = 6_000;
const IDLE_SECS: u64 = 20;
const OUTAGE_SECS: u64 = 20;

/// (RSS bytes, CPU ticks) of a process.
fn sample(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((rss_kib * 1024, ticks))
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut out: Option<PathBuf> = None;
    let mut atoll = PathBuf::from("target/release/atoll");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--out" => out = Some(it.next().context("--out needs a path")?.into()),
            "--atoll" => atoll = it.next().context("--atoll needs a path")?.into(),
            other => bail!("unknown argument {other}; usage: platform-ha-bench [--atoll PATH] [--out RESULTS.md]"),
        }
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let _cleanup = KillUnder(dir.clone());
    let layout = Layout::new(
        NODES
            .iter()
            .map(|(n, ip, z)| Node {
                name: (*n).into(),
                address: ip.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                zone: (*z).into(),
            })
            .collect(),
    );
    let opts = Options {
        work_dir: dir.clone(),
        bootstrap_listen: "127.0.0.1:0".parse()?,
        profile: "sandbox".into(),
        host_data_dir: dir.join("db").display().to_string(),
        heartbeat_interval_ms: HEARTBEAT_MS,
        offline_after_ms: OFFLINE_MS,
        leader_lease_ms: LEADER_LEASE_MS,
        task_lease_ms: TASK_LEASE_MS,
        scrape_interval_ms: 10_000,
        monitordb_flush_s: 60,
    };
    let mut launcher =
        LocalLauncher::new(&dir, std::fs::canonicalize(&atoll).with_context(|| format!("{} (build it first)", atoll.display()))?);
    let t = Instant::now();
    let d = bring_up(&layout, &mut launcher, &opts, &|line| eprintln!("deploy: {line}")).await?;
    let deploy_s = t.elapsed().as_secs_f64();
    let all = Client::over(&Servers::new(&d.servers), Some(d.token.clone()), Duration::from_secs(5));

    // Footprint at rest: every process of node1, sampled over IDLE_SECS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let node_dir = dir.join("node1");
    let procs = [
        ("server", launcher.pid("node1", Role::Server).into_iter().collect::<Vec<_>>()),
        ("agent", launcher.pid("node1", Role::Agent).into_iter().collect()),
        ("MetaDB node (mariadbd)", atoll_agent::processes_under(&dir.join("db").join(METADB_CLUSTER).join("atoll-meta-1"))),
        ("MetaDB proxy", atoll_agent::processes_under(&node_dir.join("agent").join("proxies"))),
    ];
    let before: Vec<Option<(u64, u64)>> = procs.iter().map(|(_, p)| p.first().and_then(|p| sample(*p))).collect();
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    let after: Vec<Option<(u64, u64)>> = procs.iter().map(|(_, p)| p.first().and_then(|p| sample(*p))).collect();
    let tick = 100.0; // USER_HZ
    let mut footprint = Vec::new();
    for (((name, _), b), a) in procs.iter().zip(&before).zip(&after) {
        if let (Some((_, t0)), Some((rss, t1))) = (b, a) {
            footprint.push((name.to_string(), *rss as f64 / 1048576.0, (t1 - t0) as f64 / tick / IDLE_SECS as f64 * 100.0));
        }
    }

    // The leader's node loses every process.
    let v: PlatformView = all.get("/api/v1/platform").await?;
    let leader_url = v.servers.iter().find(|s| s.leader).map(|s| s.url.clone()).context("no leader")?;
    let (idx, (victim, ip, _)) = NODES.iter().enumerate().find(|(_, (_, ip, _))| leader_url.contains(ip)).context("leader not a node")?;
    let every = Duration::from_millis(50);
    let knows_all = Prober::start(all.clone(), "/api/v1/clusters", every);
    let pinned =
        Prober::start(Client::with_timeout(&d.servers[idx], Some(d.token.clone()), Duration::from_secs(5)), "/api/v1/clusters", every);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim_dir = dir.join(victim);
    let meta = atoll_agent::processes_under(&dir.join("db").join(METADB_CLUSTER).join(format!("atoll-meta-{}", idx + 1)));
    let proxies = atoll_agent::processes_under(&victim_dir.join("agent").join("proxies"));
    let killed = Instant::now();
    launcher.kill(victim, Role::Server).await;
    launcher.kill(victim, Role::Agent).await;
    for pid in meta.iter().chain(&proxies) {
        let _ = atoll_agent::process::signal(*pid, atoll_agent::process::Signal::Kill);
    }
    let mut takeover = None;
    while killed.elapsed() < Duration::from_secs(OUTAGE_SECS) {
        if takeover.is_none()
            && let Ok(v) = all.get::<PlatformView>("/api/v1/platform").await
            && v.servers.iter().any(|s| s.leader && !s.url.contains(ip))
        {
            takeover = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    launcher.restart(victim, Role::Agent)?;
    launcher.restart(victim, Role::Server)?;
    let restarted = Instant::now();
    let mut back = None;
    while restarted.elapsed() < Duration::from_secs(60) {
        if let Ok(c) = all.get::<ClusterView>(&format!("/api/v1/clusters/{METADB_CLUSTER}")).await
            && c.status == atoll_core::ClusterStatus::Healthy
            && Client::with_timeout(&d.servers[idx], Some(d.token.clone()), Duration::from_secs(2))
                .get::<PlatformView>("/api/v1/platform")
                .await
                .is_ok()
        {
            back = Some(restarted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (knows_all, pinned) = (knows_all.stop().await, pinned.stop().await);
    launcher.stop_all(Role::Server, Duration::from_secs(5)).await;
    launcher.stop_all(Role::Agent, Duration::from_secs(5)).await;

    let mut md = String::new();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    md.push_str(&format!("\n## Three-node platform: deploy, footprint, node loss ({date})\n\n"));
    md.push_str("Command: `bash bench/ha.sh` (release build; `platform-ha-bench`). Three nodes on 127.0.0.51-53 of this machine, production intervals (heartbeat 2 s, offline after 6 s, controllers' lease 5 s, step lease 6 s). The node running the controllers loses its server, agent, MetaDB node and proxies by SIGKILL for 20 s, then its agent and server are restarted (as a service manager would).\n\n");
    md.push_str(&format!(
        "- Deploy (bootstrap server, agents, prepare, MetaDB cluster, copy, servers): **{deploy_s:.1} s**; steps: {}\n",
        d.steps.iter().map(|(n, s)| format!("{n} {s:.1} s")).collect::<Vec<_>>().join(", ")
    ));
    md.push_str(&format!(
        "- Controllers moved to a surviving server after **{}**\n",
        takeover.map_or("(not within 20 s)".into(), |t| format!("{:.1} s", t.as_secs_f64()))
    ));
    md.push_str(&format!("- Client knowing all three URLs: {} requests, **{} failed**\n", knows_all.asked, knows_all.failed));
    md.push_str(&format!(
        "- Client pinned to the dead node: {} requests, {} failed, longest outage {:.1} s (until its server was back)\n",
        pinned.asked,
        pinned.failed,
        pinned.longest_outage.as_secs_f64()
    ));
    md.push_str(&format!(
        "- After the restart, MetaDB healthy and the node's server answering in {}\n\n",
        back.map_or("(not within 60 s)".into(), |t| format!("{:.1} s", t.as_secs_f64()))
    ));
    md.push_str(&format!("Per-node footprint at rest (node1, over {IDLE_SECS} s; the seed's OCP-Server minimum is 8 cores and 32 GB):\n\n| process | RSS MiB | CPU % of one core |\n|---|--:|--:|\n"));
    let (mut rss_sum, mut cpu_sum) = (0.0, 0.0);
    for (name, rss, cpu) in &footprint {
        md.push_str(&format!("| {name} | {rss:.1} | {cpu:.2} |\n"));
        rss_sum += rss;
        cpu_sum += cpu;
    }
    md.push_str(&format!("| **node total** | **{rss_sum:.1}** | **{cpu_sum:.2}** |\n"));
    print!("{md}");
    if let Some(path) = out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&path)?;
        f.write_all(md.as_bytes())?;
    }
    Ok(())
}

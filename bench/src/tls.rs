//! `tls-bench`: what TLS costs, side by side in one run.
//!
//! 1. The API: the same authenticated GET against a plain (`--no-tls`) and a TLS
//!    server, over one kept-alive connection and over a new connection per
//!    request (a full handshake each), interleaved rounds; medians, p95 and
//!    the server's CPU per request.
//! 2. The database path on a TLS platform's cluster: sysbench
//!    `oltp_point_select` direct to the writer and through `atoll proxy`,
//!    each with and without client TLS (the proxy relays TLS end to end),
//!    interleaved rounds; TPS, p95 and the proxy's CPU per query.
//!
//! Appends a dated section to RESULTS.md with `--out`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atoll_api::v1::{ClusterCredentials, TaskView};
use atoll_testkit::{Platform, ServerOpts};

const IPS: [&str; 3] = ["127.0.7.1", "127.0.7.2", "127.0.7.3"];

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn ticks_per_s() -> f64 {
    // SAFETY-free: sysconf is a plain query.
    #[allow(unsafe_code)]
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn p95(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[(v.len() * 95 / 100).min(v.len() - 1)] }
}

/// A client of `p` that trusts its CA; `fresh`: no connection reuse.
fn http(p: &Platform, fresh: bool) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if fresh {
        b = b.pool_max_idle_per_host(0);
    }
    if p.url.starts_with("https://") {
        let ca = std::fs::read_to_string(p.dir.path().join("server/ca.pem"))?;
        b = b.tls_backend_preconfigured(atoll_pki::client_config(&[&ca], None)?);
    }
    Ok(b.build()?)
}

/// `n` sequential GETs: latencies (ms) and the server's CPU ms per request.
async fn api_round(p: &Platform, client: &reqwest::Client, n: usize) -> Result<(Vec<f64>, f64)> {
    let url = format!("{}/api/v1/hosts", p.url);
    let token = p.token.clone().context("not logged in")?;
    let pid = p.server.pid().context("server not running")?;
    let before = cpu_ticks(pid);
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.get(&url).bearer_auth(&token).send().await?;
        if !r.status().is_success() {
            bail!("GET {url}: HTTP {}", r.status());
        }
        r.bytes().await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu_ms = (cpu_ticks(pid) - before) as f64 / ticks_per_s() * 1000.0 / n as f64;
    Ok((lat, cpu_ms))
}

/// One kind of sysbench run, over the rounds.
#[derive(Default)]
struct Runs {
    label: String,
    tps: Vec<f64>,
    p95_ms: Vec<f64>,
    proxy_cpu_us: Vec<f64>,
}

struct Sb {
    tps: f64,
    p95_ms: f64,
}

/// sysbench 1.0 reads its TLS files by fixed names from its working
/// directory (`cacert.pem`, `client-cert.pem`, `client-key.pem`); `dir`
/// holds them (the platform's CA and a certificate of it).
fn sysbench(dir: &std::path::Path, cr: &ClusterCredentials, host: &str, port: u16, tls: bool, seconds: u32, cmd: &str) -> Result<Sb> {
    let out = Command::new("sysbench")
        .current_dir(dir)
        .args(["oltp_point_select", "--db-driver=mysql", "--mysql-db=sbtest", "--tables=1", "--table-size=10000", "--threads=4"])
        .args([format!("--time={seconds}"), format!("--mysql-host={host}"), format!("--mysql-port={port}")])
        .args([format!("--mysql-user={}", cr.user), format!("--mysql-password={}", cr.password)])
        .arg(format!("--mysql-ssl={}", if tls { "on" } else { "off" }))
        .arg(cmd)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("sysbench {cmd} on {host}:{port}: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let grab = |key: &str| -> f64 {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let tps = text
        .lines()
        .find(|l| l.trim_start().starts_with("transactions:"))
        .and_then(|l| l.split('(').nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    Ok(Sb { tps, p95_ms: grab("95th percentile:") })
}

fn ssl_accepts(cr: &ClusterCredentials, host: &str) -> Result<u64> {
    let o = atoll_testkit::mariadb(cr, host, 3306, "SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")?;
    Ok(String::from_utf8_lossy(&o.stdout).split_whitespace().last().and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// The pid of the cluster's proxy in zone z1 (the one on the first host).
fn proxy_pid(cluster: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        cmd.contains(" proxy ") && cmd.contains(&format!("--cluster {cluster} ")) && cmd.contains("--zone z1")
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    atoll_pki::install_provider();
    let mut out: Option<PathBuf> = None;
    let (mut rounds, mut requests, mut seconds) = (5usize, 300usize, 10u32);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => out = Some(value()?.into()),
            "--rounds" => rounds = value()?.parse()?,
            "--requests" => requests = value()?.parse()?,
            "--time" => seconds = value()?.parse()?,
            other => bail!("unknown argument {other}; usage: tls-bench [--rounds N] [--requests N] [--time S] [--out RESULTS.md]"),
        }
    }
    let started = Instant::now();
    let mut report = String::new();

    // 1. The API.
    let mut plain = Platform::start(ServerOpts::default()).await?;
    plain.login_admin().await?;
    let mut tls = Platform::start(ServerOpts::tls()).await?;
    tls.login_admin().await?;
    let mut rows = Vec::new();
    for fresh in [false, true] {
        let (cp, ct) = (http(&plain, fresh)?, http(&tls, fresh)?);
        let (mut lp, mut lt, mut cpu_p, mut cpu_t) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (l, c) = api_round(&plain, &cp, requests).await?;
            lp.extend(l);
            cpu_p.push(c);
            let (l, c) = api_round(&tls, &ct, requests).await?;
            lt.extend(l);
            cpu_t.push(c);
        }
        let (mp, mt) = (median(&mut lp), median(&mut lt));
        let (pp, pt) = (p95(&mut lp), p95(&mut lt));
        let (c_p, c_t) = (median(&mut cpu_p), median(&mut cpu_t));
        let how = if fresh { "new connection per request" } else { "kept-alive connection" };
        rows.push(format!(
            "| GET /api/v1/hosts, {how} | {mp:.2} / {pp:.2} ms | {mt:.2} / {pt:.2} ms | {:.2}x | {c_p:.3} ms | {c_t:.3} ms | {:.2}x |",
            mt / mp,
            c_t / c_p
        ));
    }
    drop(plain);
    drop(tls);
    report.push_str(&format!(
        "### The API: plain vs `--tls` ({rounds} interleaved rounds of {requests} sequential requests)\n\n\
         | Request | plain median / p95 | TLS median / p95 | latency ratio | server CPU per request, plain | TLS | CPU ratio |\n|---|---|---|---|---|---|---|\n{}\n\n",
        rows.join("\n")
    ));

    // 2. The database path of a TLS platform's cluster.
    let (p, _agents) = Platform::with_prepared_hosts_using(ServerOpts::tls(), &IPS).await?;
    let spec = serde_json::json!({
        "name": "tlsb",
        "servers": IPS.iter().enumerate().map(|(i, ip)| serde_json::json!({ "name": format!("tlsb-{}", i + 1), "zone": format!("z{}", i + 1), "host": ip })).collect::<Vec<_>>(),
    });
    let t: TaskView = p.client().post("/api/v1/clusters", &spec).await?;
    let t = p.wait_task(&t.id, Duration::from_secs(300)).await?;
    if t.status != atoll_core::TaskStatus::Succeeded {
        bail!("creating the cluster ended {}", t.status);
    }
    let cr: ClusterCredentials = p.client().get("/api/v1/clusters/tlsb/credentials").await?;
    atoll_testkit::mariadb(&cr, IPS[0], 3306, "CREATE DATABASE IF NOT EXISTS sbtest")?;
    // The files sysbench wants: the CA, and a node's certificate (of the
    // platform's CA, usable by clients) as the client's.
    let sb_dir = p.dir.path().join("sysbench");
    std::fs::create_dir_all(&sb_dir)?;
    let node = p.host_data_dir().join("tlsb/tlsb-1");
    for (from, to) in [("ca.pem", "cacert.pem"), ("server.crt", "client-cert.pem"), ("server.key", "client-key.pem")] {
        std::fs::copy(node.join(from), sb_dir.join(to)).with_context(|| format!("copying {from}"))?;
    }
    sysbench(&sb_dir, &cr, IPS[0], 3306, false, 0, "prepare")?;
    let proxy = proxy_pid("tlsb").context("no proxy process of cluster tlsb in zone z1")?;
    let paths = [("direct to the writer", IPS[0], 3306u16), ("through atoll proxy", IPS[0], cr.port)];
    let mut results: Vec<Runs> = Vec::new();
    for (label, _, _) in &paths {
        for tls in [false, true] {
            results.push(Runs { label: format!("{label}, {}", if tls { "TLS" } else { "plain" }), ..Runs::default() });
        }
    }
    // TLS sessions the writer accepted, per path: proof the TLS runs were.
    let mut sessions = [0u64; 4];
    for _ in 0..rounds {
        for (i, (_, host, port)) in paths.iter().enumerate() {
            for (j, tls) in [false, true].into_iter().enumerate() {
                let before = cpu_ticks(proxy);
                let accepts = ssl_accepts(&cr, IPS[0])?;
                let r = sysbench(&sb_dir, &cr, host, *port, tls, seconds, "run")?;
                // Less one: the `mariadb` client reading the counter uses TLS too.
                sessions[i * 2 + j] += ssl_accepts(&cr, IPS[0])?.saturating_sub(accepts + 1);
                let queries = r.tps * f64::from(seconds);
                let cpu_us = (cpu_ticks(proxy) - before) as f64 / ticks_per_s() * 1e6 / queries.max(1.0);
                let slot = &mut results[i * 2 + j];
                slot.tps.push(r.tps);
                slot.p95_ms.push(r.p95_ms);
                slot.proxy_cpu_us.push(cpu_us);
            }
        }
    }
    if sessions[1] == 0 || sessions[3] == 0 || sessions[0] + sessions[2] > 0 {
        bail!("TLS sessions at the writer per run kind (plain, TLS; direct, proxy) were {sessions:?}: the runs were not what they claim");
    }
    let mut table = String::new();
    let mut base = [f64::NAN; 2];
    for (k, runs) in results.iter_mut().enumerate() {
        let (label, tps, p95v, cpu) = (&runs.label, median(&mut runs.tps), median(&mut runs.p95_ms), median(&mut runs.proxy_cpu_us));
        if k % 2 == 0 {
            base = [tps, cpu];
        }
        let proxy_cpu = if k >= 2 { format!("{cpu:.1} µs") } else { "-".into() };
        let ratio = if k % 2 == 1 { format!("{:.2}x", tps / base[0]) } else { "1".into() };
        table.push_str(&format!("| {label} | {tps:.0} | {p95v:.2} ms | {ratio} | {proxy_cpu} |\n"));
    }
    report.push_str(&format!(
        "### The database path: sysbench oltp_point_select, 4 threads, {seconds} s, {rounds} interleaved rounds (medians)\n\n\
         | Path | TPS | p95 | TPS vs plain on the same path | proxy CPU per query |\n|---|---|---|---|---|\n{table}\n\
         TLS sessions the writer accepted (`Ssl_accepts`): {} in the direct TLS runs, {} through the proxy, none in the \
         plain runs. Galera's group traffic runs over TLS in every run (a TLS platform's cluster).\n\n",
        sessions[1], sessions[3]
    ));

    let section = format!(
        "## TLS cost (`bench/tls.sh`), {}\n\nCommand: `bench/tls.sh --rounds {rounds} --requests {requests} --time {seconds}`; took {:.0} s.\n\n{report}",
        atoll_core::time::utc(atoll_core::time::now_ms()),
        started.elapsed().as_secs_f64()
    );
    println!("{section}");
    if let Some(path) = out {
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push('\n');
        text.push_str(&section);
        std::fs::write(&path, text)?;
    }
    Ok(())
}

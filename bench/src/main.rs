//! `platform-bench`: starts a real `atoll server`, registers simulated
//! agents on loopback addresses, drives heartbeats and host listings at it,
//! and reports memory, throughput and latency against the platform's
//! targets. The numbers are for ratios and orders of magnitude: the server
//! and this load generator share the machine.

mod facts;
mod load;
mod report;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atoll_api::v1::{HostListItem, HostSummary};
use atoll_testkit::{Platform, ServerOpts};

use crate::facts::SimHost;
use crate::report::{Report, Row, Verdict};
use crate::stats::{ProcSnapshot, Summary};

/// The server's defaults, so liveness behaves as in production and does not
/// flap while the benchmark loads the server.
const HEARTBEAT_INTERVAL_MS: u64 = 2_000;
const OFFLINE_AFTER_MS: u64 = 6_000;
const REGISTER_CONCURRENCY: usize = 16;
const HEARTBEAT_WORKERS: usize = 32;
/// Real agents send facts when they change, when a server asks (it has
/// none), and every 5 minutes: at a 2 s interval, 1 beat in 150 in the
/// steady state this measures.
const FACTS_EVERY: u64 = 150;
const GET_CLIENTS: usize = 4;
/// `127.1.X.Y` gives 256 × 250 distinct loopback addresses.
const MAX_HOSTS: usize = 256 * 250;

const IDLE_RSS_TARGET_MIB: f64 = 30.0;
const LOADED_RSS_TARGET_MIB: f64 = 100.0;
const GET_P99_TARGET_MS: f64 = 20.0;
/// Issue 10: a page of a listing, with 10,000 hosts on the platform.
const PAGE_P99_TARGET_MS: f64 = 50.0;
const PAGE: usize = 100;

const USAGE: &str = "usage: platform-bench [--atoll PATH] [--out RESULTS.md] [--hosts N (1000)] [--requests N (2000)] [--heartbeat-secs N (10)] [--metadb-url mysql://…]";

#[derive(Debug)]
struct Args {
    atoll: Option<PathBuf>,
    out: Option<PathBuf>,
    hosts: usize,
    requests: usize,
    heartbeat_secs: u64,
    /// Extra environment for the server, to compare allocator or runtime
    /// settings without rebuilding (e.g. `MALLOC_ARENA_MAX=2`).
    server_env: Vec<(String, String)>,
    /// MetaDB for the server (default: its own SQLite file), e.g. a
    /// database on the three-node playground's Galera MetaDB.
    metadb_url: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args { atoll: None, out: None, hosts: 1000, requests: 2000, heartbeat_secs: 10, server_env: Vec::new(), metadb_url: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--atoll" => a.atoll = Some(value()?.into()),
            "--out" => a.out = Some(value()?.into()),
            "--hosts" => a.hosts = value()?.parse().context("--hosts")?,
            "--requests" => a.requests = value()?.parse().context("--requests")?,
            "--heartbeat-secs" => a.heartbeat_secs = value()?.parse().context("--heartbeat-secs")?,
            "--metadb-url" => a.metadb_url = Some(value()?),
            "--server-env" => {
                let kv = value()?;
                let (k, v) = kv.split_once('=').with_context(|| format!("--server-env wants KEY=VALUE, not {kv:?}"))?;
                a.server_env.push((k.to_string(), v.to_string()));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if a.hosts == 0 || a.hosts > MAX_HOSTS {
        bail!("--hosts must be between 1 and {MAX_HOSTS}");
    }
    if a.requests == 0 || a.heartbeat_secs == 0 {
        bail!("--requests and --heartbeat-secs must be positive");
    }
    Ok(a)
}

/// The testkit finds the binary through `CARGO_BIN_EXE_atoll` (setting an
/// environment variable in-process is `unsafe` in edition 2024, which the
/// workspace denies), so `--atoll` must agree with it: a silent mismatch
/// would benchmark some other build.
fn check_binary(atoll: Option<&PathBuf>) -> Result<PathBuf> {
    let found = atoll_testkit::atoll_bin();
    let found =
        found.canonicalize().with_context(|| format!("no atoll binary at {}: build it, or set CARGO_BIN_EXE_atoll", found.display()))?;
    if let Some(wanted) = atoll {
        let wanted = wanted.canonicalize().with_context(|| format!("--atoll {}", wanted.display()))?;
        if wanted != found {
            bail!(
                "--atoll is {} but the harness would start {}: export CARGO_BIN_EXE_atoll={} (bench/run.sh does)",
                wanted.display(),
                found.display(),
                wanted.display()
            );
        }
    }
    Ok(found)
}

#[tokio::main]
async fn main() -> Result<()> {
    atoll_pki::install_provider();
    let args = parse_args()?;
    let binary = check_binary(args.atoll.as_ref())?;
    eprintln!("platform-bench: {} hosts, {} requests, server {}", args.hosts, args.requests, binary.display());
    let report = run(&args).await?;
    println!("\n{}\n{}", report.table(), report.verdict_lines());
    for n in &report.notes {
        println!("note: {n}");
    }
    if let Some(out) = &args.out {
        report::write_section(out, &report.section())?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// Everything measured, in the order it was measured.
async fn run(args: &Args) -> Result<Report> {
    let mut opts = ServerOpts {
        extra_args: vec![
            // Simulated agents speak plain HTTP (bench/tls.sh measures TLS).
            "--no-tls".into(),
            "--heartbeat-interval-ms".into(),
            HEARTBEAT_INTERVAL_MS.to_string(),
            "--offline-after-ms".into(),
            OFFLINE_AFTER_MS.to_string(),
        ],
        env: args.server_env.clone(),
        ..Default::default()
    };
    if let Some(url) = &args.metadb_url {
        opts.extra_args.extend(["--metadb-url".to_string(), url.clone()]);
    }
    let load_before = loadavg();
    // Dropping the platform kills the server, on every exit path.
    let mut platform = Platform::start(opts).await?;
    let admin = platform.login_admin().await?;
    let mut b = Bench {
        pid: platform.server.pid().context("server has no pid")?,
        token: platform.token.clone().context("no admin API token")?,
        url: platform.url.clone(),
        http: load::http_client()?,
        admin,
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let idle = b.idle().await?;
    let hosts = b.register(args.hosts, &platform.join_token().await?).await?;
    let mut failures = b.heartbeats(&hosts, Duration::from_secs(args.heartbeat_secs)).await?;
    let loaded = b.loaded(args.hosts).await?;
    let (live, paged, more) = b.listing_live(&hosts, args.requests).await?;
    failures.extend(more);
    failures.extend(b.listing_quiet(args.hosts, args.requests).await?);
    let end = ProcSnapshot::read(b.pid)?;
    b.rows.push(Row::new("server peak RSS over the whole run (VmHWM)", mib(end.hwm_mib())));
    b.rows.push(Row::new("server RSS at the end", mib(end.rss_mib())));

    let mut verdicts = verdicts(args.hosts, &idle, &loaded, &live, &end);
    verdicts.push(verdict(
        format!("p99 GET one page of {PAGE} hosts (of {}) < {PAGE_P99_TARGET_MS} ms (1 client, live heartbeats)", args.hosts),
        paged.summary.p99_ms,
        PAGE_P99_TARGET_MS,
        "ms",
    ));
    let mut notes = b.notes;
    notes.extend(failures);
    notes.extend(context_notes(args, &load_before));
    Ok(Report { date: date_utc(), command: command_line(), machine: machine(), rows: b.rows, verdicts, notes })
}

/// The server under test, the clients that load it, and what was found.
struct Bench {
    pid: u32,
    url: String,
    /// Admin API token, for the listings.
    token: String,
    /// Shared by all simulated agents.
    http: reqwest::Client,
    admin: atoll_client::Client,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Bench {
    /// RSS after start and admin login, once the server has settled.
    async fn idle(&mut self) -> Result<ProcSnapshot> {
        step("idle RSS");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = ProcSnapshot::read(self.pid)?;
        self.rows.push(
            Row::new("server idle RSS (after start + admin login)", mib(idle.rss_mib())).target(format!("< {IDLE_RSS_TARGET_MIB} MiB")),
        );
        self.rows.push(Row::new("server threads, idle", idle.threads.to_string()));
        Ok(idle)
    }

    async fn register(&mut self, count: usize, join_token: &str) -> Result<Arc<Vec<SimHost>>> {
        step("registering hosts");
        let now = now_ms();
        let fresh: Vec<SimHost> = (0..count).map(|i| SimHost::new(i, now)).collect();
        let facts_bytes = fresh.first().map(|h| serde_json::to_vec(&h.facts)).transpose()?.map_or(0, |v| v.len());
        let before = ProcSnapshot::read(self.pid)?;
        let t = Instant::now();
        let hosts = load::register_all(&self.http, &self.url, join_token, fresh, REGISTER_CONCURRENCY).await?;
        let took = t.elapsed();
        let cpu_s = ProcSnapshot::read(self.pid)?.cpu_s_since(&before);
        self.rows.push(Row::new(
            format!("register {count} hosts, {REGISTER_CONCURRENCY} concurrent"),
            format!("{:.0} hosts/s", count as f64 / took.as_secs_f64()),
        ));
        self.rows.push(Row::new("  server CPU per registration", format!("{:.2} ms", cpu_s * 1000.0 / count as f64)));
        self.rows.push(Row::new("facts JSON per host", format!("{facts_bytes} B")));
        Ok(Arc::new(hosts))
    }

    /// Saturating heartbeat load, without and then with periodic facts;
    /// returns notes on failed requests.
    async fn heartbeats(&mut self, hosts: &Arc<Vec<SimHost>>, duration: Duration) -> Result<Vec<String>> {
        step("heartbeats without facts");
        let plain = heartbeat_phase(&self.http, &self.url, hosts, self.pid, duration, None).await?;
        push_heartbeat_rows(&mut self.rows, "heartbeats, no facts", &plain);
        step(&format!("heartbeats, every {FACTS_EVERY}th with facts"));
        let with_facts = heartbeat_phase(&self.http, &self.url, hosts, self.pid, duration / 2, Some(FACTS_EVERY)).await?;
        push_heartbeat_rows(&mut self.rows, &format!("heartbeats, 1 in {FACTS_EVERY} with facts"), &with_facts);
        let sustainable = plain.summary.per_s * HEARTBEAT_INTERVAL_MS as f64 / 1000.0;
        self.rows.push(Row::new(format!("hosts sustainable at a {HEARTBEAT_INTERVAL_MS} ms interval"), format!("~{sustainable:.0}")));
        Ok(failure_notes(&[("heartbeats", &plain), ("heartbeats with facts", &with_facts)]))
    }

    /// RSS right after the heartbeat load, while every host is online.
    async fn loaded(&mut self, count: usize) -> Result<ProcSnapshot> {
        step("RSS with hosts registered");
        let listing: Vec<HostListItem> = self.admin.get(HOSTS).await?;
        let online = HostSummary::of(listing.iter().map(|h| h.status)).online;
        let loaded = ProcSnapshot::read(self.pid)?;
        self.rows.push(
            Row::new(format!("server RSS, {count} hosts ({online} online)"), mib(loaded.rss_mib()))
                .target(format!("< {LOADED_RSS_TARGET_MIB} MiB (1000 hosts)")),
        );
        self.rows.push(Row::new("  server peak RSS so far (VmHWM)", mib(loaded.hwm_mib())));
        self.rows.push(Row::new("  server threads", loaded.threads.to_string()));
        if online < count {
            self.notes.push(format!(
                "only {online} of {count} hosts were online when RSS was read: the heartbeat load did not reach every host within {OFFLINE_AFTER_MS} ms"
            ));
        }
        Ok(loaded)
    }

    /// The listing while agents heartbeat at their real rate, as a server
    /// with this many hosts always has; returns the 1-client phase (the
    /// target's) and notes on failures.
    async fn listing_live(&mut self, hosts: &Arc<Vec<SimHost>>, requests: usize) -> Result<(Phase, Phase, Vec<String>)> {
        step("GET /api/v1/hosts with live heartbeats");
        let keeper = load::Keeper::start(&self.http, &self.url, hosts.clone(), Duration::from_millis(HEARTBEAT_INTERVAL_MS));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let seq = get_phase(&self.url, HOSTS, &self.token, self.pid, requests, 1).await?;
        let conc = get_phase(&self.url, HOSTS, &self.token, self.pid, requests, GET_CLIENTS).await?;
        // A page from the middle of the fleet, as a console or a script
        // paging through it asks.
        // Registered without a name: the server names them by address.
        let middle = hosts.get(hosts.len() / 2).map(|h| format!("host-{}", h.address.replace('.', "-"))).unwrap_or_default();
        let page_path = format!("{HOSTS}?limit={PAGE}&after={middle}");
        let paged = get_phase(&self.url, &page_path, &self.token, self.pid, requests, 1).await?;
        let (rate, failed) = keeper.stop().await;
        let wanted = hosts.len() as f64 * 1000.0 / HEARTBEAT_INTERVAL_MS as f64;
        self.rows
            .push(Row::new(format!("background heartbeats during GET (wanted {wanted:.0}/s)"), format!("{rate:.0}/s, {failed} failed")));
        push_get_rows(&mut self.rows, "GET /api/v1/hosts, 1 client, live heartbeats", &seq, true);
        push_get_rows(&mut self.rows, &format!("GET /api/v1/hosts, {GET_CLIENTS} clients, live heartbeats"), &conc, false);
        push_get_rows(
            &mut self.rows,
            &format!("GET /api/v1/hosts?limit={PAGE} (a page from the middle), 1 client, live heartbeats"),
            &paged,
            false,
        );
        if rate < wanted * 0.9 {
            self.notes.push(format!(
                "the server could not absorb real agents' heartbeat rate ({rate:.0}/s of {wanted:.0}/s) while serving GETs, so some hosts may have gone offline"
            ));
        }
        let failures = failure_notes(&[("GET 1 client", &seq), ("GET 4 clients", &conc), ("GET one page", &paged)]);
        Ok((seq, paged, failures))
    }

    /// The listing alone, then authentication alone: what the listing costs
    /// without background load, and how much of it is authentication.
    async fn listing_quiet(&mut self, count: usize, requests: usize) -> Result<Vec<String>> {
        step("GET /api/v1/hosts, quiet (waiting for hosts to go offline first)");
        wait_all_offline(&self.admin, count).await?;
        let quiet = get_phase(&self.url, HOSTS, &self.token, self.pid, requests, 1).await?;
        push_get_rows(&mut self.rows, "GET /api/v1/hosts, 1 client, no other load (hosts offline)", &quiet, false);
        let me = get_phase(&self.url, ME, &self.token, self.pid, requests, 1).await?;
        push_get_rows(&mut self.rows, "GET /api/v1/auth/me (authentication only), 1 client, no other load", &me, false);
        Ok(failure_notes(&[("GET quiet", &quiet), ("GET /auth/me", &me)]))
    }
}

fn verdicts(hosts: usize, idle: &ProcSnapshot, loaded: &ProcSnapshot, live: &Phase, end: &ProcSnapshot) -> Vec<Verdict> {
    vec![
        verdict(format!("idle RSS < {IDLE_RSS_TARGET_MIB} MiB"), idle.rss_mib(), IDLE_RSS_TARGET_MIB, "MiB"),
        verdict(format!("RSS with {hosts} hosts < {LOADED_RSS_TARGET_MIB} MiB"), loaded.rss_mib(), LOADED_RSS_TARGET_MIB, "MiB"),
        verdict(
            format!("p99 GET /api/v1/hosts with {hosts} hosts < {GET_P99_TARGET_MS} ms (1 client, live heartbeats)"),
            live.summary.p99_ms,
            GET_P99_TARGET_MS,
            "ms",
        ),
        // The target names no moment; listing load is what drives memory
        // up, so the peak is held to it too.
        verdict(
            format!("stricter: peak RSS over the whole run (incl. the GET load) < {LOADED_RSS_TARGET_MIB} MiB"),
            end.hwm_mib(),
            LOADED_RSS_TARGET_MIB,
            "MiB",
        ),
    ]
}

/// A note for each phase that had failed requests (at most 1 %, or the
/// phase would have aborted the run).
fn failure_notes(phases: &[(&str, &Phase)]) -> Vec<String> {
    phases
        .iter()
        .filter_map(|(what, p)| p.summary.first_error.as_ref().map(|e| format!("{what}: {} failed requests, first: {e}", p.summary.errors)))
        .collect()
}

/// What a reader needs to judge the numbers.
fn context_notes(args: &Args, load_before: &str) -> Vec<String> {
    let mut notes = Vec::new();
    if args.hosts != 1000 {
        notes.push(format!("the targets are stated for 1000 hosts; this run had {}", args.hosts));
    }
    if !args.server_env.is_empty() {
        let env: Vec<String> = args.server_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        notes.push(format!("the server ran with extra environment {}", env.join(" ")));
    }
    let metadb = match &args.metadb_url {
        // The password is not for the results file.
        Some(url) => format!("MetaDB at {}", url.rsplit_once('@').map_or("a MySQL URL", |(_, at)| at)),
        None => "SQLite MetaDB in a temporary directory".to_string(),
    };
    notes.push(format!(
        "server: heartbeat interval {HEARTBEAT_INTERVAL_MS} ms, offline after {OFFLINE_AFTER_MS} ms, {metadb}; \
         the load generator runs on the same cores, so server CPU per request is the steadier number"
    ));
    notes.push(format!(
        "load average (1/5/15 min) before the run {load_before}, after {}: other work on this machine shows up in every number",
        loadavg()
    ));
    notes
}

fn step(what: &str) {
    eprintln!("platform-bench: {what}…");
}

/// A load phase's latencies plus the server CPU it cost.
struct Phase {
    summary: Summary,
    /// Server CPU milliseconds per successful request.
    cpu_ms_per_req: f64,
    bytes: usize,
}

async fn heartbeat_phase(
    http: &reqwest::Client,
    url: &str,
    hosts: &Arc<Vec<SimHost>>,
    pid: u32,
    duration: Duration,
    facts_every: Option<u64>,
) -> Result<Phase> {
    let before = ProcSnapshot::read(pid)?;
    let (samples, wall) = load::heartbeat_flood(http, url, hosts.clone(), HEARTBEAT_WORKERS, duration, facts_every).await;
    phase(samples.summary(wall), pid, &before, 0)
}

const HOSTS: &str = "/api/v1/hosts";
/// The cheapest authenticated call: what every API request pays for
/// authentication, apart from its own work.
const ME: &str = "/api/v1/auth/me";

async fn get_phase(url: &str, path: &str, token: &str, pid: u32, requests: usize, clients: usize) -> Result<Phase> {
    let before = ProcSnapshot::read(pid)?;
    let (samples, wall, bytes) = load::get_loop(url, path, token, requests, clients).await?;
    phase(samples.summary(wall), pid, &before, bytes)
}

/// Refuses a phase that mostly failed: its latencies would describe error
/// responses, not the work under test.
fn phase(summary: Summary, pid: u32, before: &ProcSnapshot, bytes: usize) -> Result<Phase> {
    if summary.errors * 100 > (summary.ok + summary.errors) {
        bail!("{} of {} requests failed; first: {}", summary.errors, summary.ok + summary.errors, summary.first_error.unwrap_or_default());
    }
    let cpu_ms_per_req = ProcSnapshot::read(pid)?.cpu_s_since(before) * 1000.0 / summary.ok.max(1) as f64;
    Ok(Phase { summary, cpu_ms_per_req, bytes })
}

fn push_heartbeat_rows(rows: &mut Vec<Row>, label: &str, p: &Phase) {
    let s = &p.summary;
    rows.push(Row::new(format!("{label}, {HEARTBEAT_WORKERS} workers"), format!("{:.0}/s", s.per_s)));
    rows.push(Row::new("  latency p50 / p99", format!("{:.2} / {:.2} ms", s.p50_ms, s.p99_ms)));
    rows.push(Row::new("  server CPU per heartbeat", format!("{:.2} ms", p.cpu_ms_per_req)));
}

fn push_get_rows(rows: &mut Vec<Row>, label: &str, p: &Phase, has_target: bool) {
    let s = &p.summary;
    rows.push(Row::new(label, format!("{:.1} req/s", s.per_s)));
    rows.push(Row::new("  latency p50 / p95", format!("{:.2} / {:.2} ms", s.p50_ms, s.p95_ms)));
    let p99 = Row::new("  latency p99", format!("{:.2} ms", s.p99_ms));
    rows.push(if has_target { p99.target(format!("< {GET_P99_TARGET_MS} ms")) } else { p99 });
    rows.push(Row::new("  latency max", format!("{:.2} ms", s.max_ms)));
    rows.push(Row::new("  server CPU per request", format!("{:.2} ms", p.cpu_ms_per_req)));
    rows.push(Row::new("  response size", format!("{:.0} KiB", p.bytes as f64 / 1024.0)));
}

fn verdict(target: String, value: f64, limit: f64, unit: &str) -> Verdict {
    Verdict { target, measured: format!("measured {value:.2} {unit}"), met: value < limit }
}

/// Lets the liveness sweep mark every host offline before the quiet
/// measurement, so its one-off burst of writes does not land inside it.
async fn wait_all_offline(admin: &atoll_client::Client, hosts: usize) -> Result<()> {
    let timeout = Duration::from_millis(OFFLINE_AFTER_MS * 5);
    atoll_testkit::wait_for("every host to go offline", timeout, || async {
        let listing: Vec<HostListItem> = admin.get(HOSTS).await.ok()?;
        (HostSummary::of(listing.iter().map(|h| h.status)).offline == hosts).then_some(())
    })
    .await?;
    // The sweep's audit writes trail its status updates slightly.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

fn mib(v: f64) -> String {
    format!("{v:.1} MiB")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn date_utc() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("unix {}", now_ms() / 1000))
}

/// The machine's load, which says how much the numbers were disturbed.
fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    if fields.is_empty() { "unknown".into() } else { fields.join(" ") }
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// `nproc 2, AMD EPYC, 23.5 GiB RAM, x86_64`: what the numbers were measured on.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(|| "?".into(), |kib| format!("{:.1}", kib / 1024.0 / 1024.0));
    format!("nproc {cores}, {model}, {mem_gib} GiB RAM, {}", std::env::consts::ARCH)
}

//! The fault campaign (issue 12, suite 1): a real platform, a real
//! three-zone Galera cluster and its proxies, a workload that records
//! every acknowledged write, and a scheduler that injects faults at random
//! moments. After each fault: wait for health (bounded), then check that
//! nothing acknowledged is lost, the bank's invariant holds on every node,
//! and platform tasks finished or resume. The CI profile is
//! `crates/atoll/tests/fault_campaign.rs`, the long one
//! `bench/src/campaign.rs`.
//!
//! A fault that does not recover in time, a lost write, a broken invariant
//! or a stuck task ends the campaign; the report says which fault it was
//! and the run's logs are copied out before cleanup.

pub mod checker;
pub mod clock;
pub mod disk;
pub mod faults;
pub mod health;
pub mod netcut;
pub mod report;
pub mod rig;
pub mod tasks;
pub mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use atoll_api::v1::ClusterView;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use faults::{Kind, Scheduler};
use report::{FaultRecord, Report, longest_gap};
use rig::{CLUSTER, Rig};
use workload::{Endpoint, Workload};

/// What a campaign runs.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub seed: u64,
    /// Faults to inject (fewer if `max_wall` runs out first).
    pub faults: usize,
    /// Stop injecting after this long (setup not counted).
    pub max_wall: Option<Duration>,
    /// The three hosts' loopback addresses.
    pub ips: [String; 3],
    /// A fault whose system is not healthy again by then has failed.
    pub recovery_timeout: Duration,
    /// The quiet time between one fault's checks and the next injection,
    /// drawn uniformly (ms).
    pub gap_ms: (u64, u64),
    /// The chance that a planned writer move is started just before a
    /// fault of one process.
    pub task_chance: f64,
    pub id_writers: u16,
    pub transfer_writers: u16,
    /// Where logs are copied when the campaign fails.
    pub logs_dir: PathBuf,
}

impl Profile {
    /// The seed from `ATOLL_CAMPAIGN_SEED`, else a new one (printed by [`run`]).
    pub fn seed_from_env() -> u64 {
        std::env::var("ATOLL_CAMPAIGN_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            t.as_nanos() as u64 ^ u64::from(std::process::id())
        })
    }

    /// The short profile CI runs: 100 faults on 127.0.5.1-3.
    pub fn ci(seed: u64) -> Profile {
        Profile {
            name: "ci".into(),
            seed,
            faults: 100,
            max_wall: None,
            ips: ["127.0.5.1", "127.0.5.2", "127.0.5.3"].map(String::from),
            recovery_timeout: Duration::from_secs(120),
            gap_ms: (100, 700),
            task_chance: 0.25,
            id_writers: 4,
            transfer_writers: 2,
            logs_dir: std::env::temp_dir().join(format!("atoll-campaign-{seed}")),
        }
    }
}

fn log(line: &str) {
    eprintln!("campaign: {line}");
}

/// Runs the campaign. `Err` only when the system could not be set up;
/// everything found while faults ran is in the report.
pub async fn run(profile: &Profile) -> Result<Report> {
    log(&format!("seed {} (replay the schedule with ATOLL_CAMPAIGN_SEED={})", profile.seed, profile.seed));
    let mut rng = StdRng::seed_from_u64(profile.seed);
    let ips: Vec<&str> = profile.ips.iter().map(String::as_str).collect();
    let mut rig = Rig::start(&ips, &|l| log(l)).await.context("setting up the platform and cluster")?;
    let mut report = Report { profile: profile.name.clone(), seed: profile.seed, ..Report::default() };
    let started = Instant::now();
    let result = campaign(profile, &mut rng, &mut rig, &mut report).await;
    report.wall_s = started.elapsed().as_secs_f64();
    if let Err(e) = result {
        report.failure = Some(format!("{e:#}"));
    }
    if !report.passed() {
        match rig.save_logs(&profile.logs_dir) {
            Ok(n) => report.logs = Some(format!("{} ({n} files)", profile.logs_dir.display())),
            Err(e) => log(&format!("could not keep the logs: {e:#}")),
        }
    }
    Ok(report)
}

async fn campaign(profile: &Profile, rng: &mut StdRng, rig: &mut Rig, report: &mut Report) -> Result<()> {
    let view: ClusterView = rig.platform.client().get(&format!("/api/v1/clusters/{CLUSTER}")).await?;
    let proxies: Vec<Endpoint> = view.proxies.iter().map(|p| Endpoint { host: p.address.clone(), port: p.rw_port }).collect();
    anyhow::ensure!(proxies.len() == 3, "the cluster has {} proxies, not one per zone", proxies.len());
    workload::create_schema(&proxies[0], &rig.cr.user, &rig.cr.password).await.context("creating the schema")?;
    let wl = Workload::start(&proxies, &rig.cr.user, &rig.cr.password, profile.id_writers, profile.transfer_writers, profile.seed);
    let outcome = inject_all(profile, rng, rig, report, &wl).await;
    let ledger = wl.stop().await;
    report.acked_ids = ledger.acked_ids.len();
    report.acked_transfers = ledger.acked_transfers.len();
    report.unknown = ledger.unknown;
    outcome?;
    // The final word: healthy, and every acknowledged write on every node.
    health::wait(rig, atoll_core::time::now_ms(), Instant::now() + profile.recovery_timeout, health::Allowed::default())
        .await
        .map_err(|why| anyhow::anyhow!("not healthy at the end: {why}"))?;
    let nodes: Vec<(String, Endpoint)> = (0..rig.hosts.len()).map(|i| (rig.hosts[i].server.clone(), health::direct(rig, i))).collect();
    let found = checker::check_nodes(&ledger, &nodes, &rig.cr.user, &rig.cr.password).await?;
    report.lost = found.iter().map(|(_, f)| f.lost()).max().unwrap_or(0);
    report.final_check = found.iter().map(|(n, f)| format!("{n}: {}", f.describe())).collect::<Vec<_>>().join(", ");
    if let Some((n, f)) = found.iter().find(|(_, f)| !f.ok()) {
        anyhow::bail!("final check on {n}: {}", f.describe());
    }
    tasks::none_running(rig, Duration::from_secs(60)).await.map_err(anyhow::Error::msg)?;
    Ok(())
}

/// The kinds this machine can inject, and why the others cannot.
fn available_kinds(rig: &Rig) -> (Vec<Kind>, Vec<(Kind, String)>) {
    let mut kinds = Vec::new();
    let mut skipped = Vec::new();
    for k in Kind::ALL {
        let missing = match k {
            Kind::NetCut => rig.missing.netcut.clone(),
            Kind::DiskFull => rig.missing.disk.clone(),
            Kind::ClockJump => rig.missing.clock.clone(),
            _ => None,
        };
        match missing {
            Some(why) => {
                log(&format!("skipping {}: {why}", k.label()));
                skipped.push((k, why));
            }
            None => kinds.push(k),
        }
    }
    (kinds, skipped)
}

async fn inject_all(profile: &Profile, rng: &mut StdRng, rig: &mut Rig, report: &mut Report, wl: &Workload) -> Result<()> {
    let (kinds, skipped) = available_kinds(rig);
    report.skipped = skipped;
    let mut scheduler = Scheduler::new(kinds, rig.hosts.len(), rig.clock_host);
    health::wait(rig, atoll_core::time::now_ms(), Instant::now() + profile.recovery_timeout, health::Allowed::default())
        .await
        .map_err(|why| anyhow::anyhow!("not healthy before the first fault: {why}"))?;
    // Some acknowledged writes first, so the self-test has data to read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    report.self_test = checker::planted_losses_are_caught(&wl.snapshot(), &health::direct(rig, 0), &rig.cr.user, &rig.cr.password).await?;
    log(&report.self_test);
    let begun = Instant::now();
    for n in 1..=profile.faults {
        if profile.max_wall.is_some_and(|m| begun.elapsed() > m) {
            log(&format!("wall-time limit reached after {} faults", n - 1));
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(profile.gap_ms.0..=profile.gap_ms.1))).await;
        let fault = scheduler.next(rng);
        let what = fault.describe(rig);
        let task = if fault.single() && rng.random_bool(profile.task_chance) { tasks::start_move(rig, rng).await } else { None };
        let before: Vec<Option<u32>> = (0..rig.hosts.len()).map(|i| rig.mariadbd_pid(i)).collect();
        let injected_ms = wl.now_ms();
        let injected = Instant::now();
        let mut rec = FaultRecord {
            n,
            kind: fault.kind,
            what: what.clone(),
            at_s: begun.elapsed().as_secs_f64(),
            outage_ms: 0,
            client_gap_ms: 0,
            recovery_ms: 0,
            operator: None,
            task: None,
            acked: 0,
            lost: 0,
            error: None,
        };
        let outcome = one_fault(profile, rig, wl, &fault, task.as_deref(), injected, injected_ms, &mut rec).await;
        // Exits the scheduler did not cause (a full disk, a cut) count too.
        for (i, pid) in before.iter().enumerate() {
            if pid.is_some() && rig.mariadbd_pid(i) != *pid && !fault.mariadbd_kills().any(|h| h == i) {
                scheduler.record_exit(i);
            }
        }
        let line = format!(
            "#{n} {what}: outage {:.2} s, worst client gap {:.2} s, recovered in {:.1} s, {} acks checked{}{}",
            rec.outage_ms as f64 / 1000.0,
            rec.client_gap_ms as f64 / 1000.0,
            rec.recovery_ms as f64 / 1000.0,
            rec.acked,
            rec.operator.as_ref().map(|o| format!(", {o}")).unwrap_or_default(),
            rec.task.as_ref().map(|t| format!(", task {t}")).unwrap_or_default(),
        );
        if let Err(e) = outcome {
            let msg = format!("fault #{n} ({what}): {e:#}");
            rec.error = Some(msg.clone());
            report.faults.push(rec);
            log(&format!("FAILED {msg}"));
            anyhow::bail!(msg);
        }
        log(&line);
        report.faults.push(rec);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn one_fault(
    profile: &Profile,
    rig: &mut Rig,
    wl: &Workload,
    fault: &faults::Fault,
    task: Option<&str>,
    injected: Instant,
    injected_ms: u64,
    rec: &mut FaultRecord,
) -> Result<()> {
    let healed = faults::inject(rig, fault).await.context("injecting")?;
    let allowed = health::Allowed { recover_quorum: fault.may_lose_quorum() };
    let recovered = health::wait(rig, healed.healed_at_ms, injected + profile.recovery_timeout, allowed)
        .await
        .map_err(|why| anyhow::anyhow!("not healthy {} s after the injection: {why}", profile.recovery_timeout.as_secs()))?;
    rec.recovery_ms = injected.elapsed().as_millis() as u64;
    rec.operator = recovered.operator;
    let recovered_ms = wl.now_ms();
    // Writes must resume; the outage is only known once they have.
    let deadline = Instant::now() + Duration::from_secs(15);
    let outage = loop {
        if let Some(g) = longest_gap(injected_ms, recovered_ms, &wl.commits_since(injected_ms)) {
            break g;
        }
        anyhow::ensure!(Instant::now() < deadline, "the workload committed nothing for 15 s after recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    rec.outage_ms = outage;
    rec.client_gap_ms = wl
        .commits_by_writer_since(injected_ms)
        .iter()
        .filter_map(|c| longest_gap(injected_ms, recovered_ms, c))
        .max()
        .unwrap_or(outage)
        .max(outage);
    if let Some(id) = task {
        let how = tasks::settle(rig, id, Duration::from_secs(90)).await.map_err(anyhow::Error::msg)?;
        rec.task = Some(format!("writer move {how}"));
    }
    tasks::none_running(rig, Duration::from_secs(60)).await.map_err(anyhow::Error::msg)?;
    let acked = wl.snapshot();
    let nodes: Vec<(String, Endpoint)> = (0..rig.hosts.len()).map(|i| (rig.hosts[i].server.clone(), health::direct(rig, i))).collect();
    let found = checker::check_nodes(&acked, &nodes, &rig.cr.user, &rig.cr.password).await.context("checking")?;
    rec.acked = acked.acked_ids.len() + acked.acked_transfers.len();
    rec.lost = found.iter().map(|(_, f)| f.lost()).max().unwrap_or(0);
    if let Some((node, f)) = found.iter().find(|(_, f)| !f.ok()) {
        anyhow::bail!("on {node}: {}", f.describe());
    }
    Ok(())
}

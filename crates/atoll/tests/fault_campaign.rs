//! The fault campaign's CI profile (issue 12, suite 1): a real platform
//! and three-zone cluster on 127.0.5.1-3, a workload through the proxies
//! recording every acknowledged write, and 100 faults at random moments
//! (SIGKILL and SIGSTOP of mariadbd, agent, server and proxy, crash
//! bursts, a host's network cut, a full data disk, a clock jump). After
//! each: healthy again within the bound, nothing acknowledged lost, the
//! bank's invariant intact on every node, tasks finished or resumed.
//!
//! Replay a schedule with `ATOLL_CAMPAIGN_SEED=N`; change the count with
//! `ATOLL_CAMPAIGN_FAULTS=N`. The long profile is `bash bench/campaign.sh`.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use atoll_testkit::campaign::{Profile, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_faults_lose_no_acknowledged_write_and_every_one_recovers() {
    let mut profile = Profile::ci(Profile::seed_from_env());
    if let Some(n) = std::env::var("ATOLL_CAMPAIGN_FAULTS").ok().and_then(|s| s.parse().ok()) {
        profile.faults = n;
    }
    let report = run(&profile).await.unwrap();
    eprintln!("\n{}", report.markdown());
    assert!(report.passed(), "the fault campaign failed (seed {}): {}", report.seed, report.failure.as_deref().unwrap_or("see the report"));
    assert!(report.faults.len() >= profile.faults, "only {} of {} faults were injected", report.faults.len(), profile.faults);
    assert_eq!(report.lost, 0);
    assert!(report.acked_ids > 1000, "too few acknowledged writes to mean anything: {}", report.acked_ids);
}

//! `fault-campaign`: the fault campaign's long profile (issue 12, suite 1).
//! The same campaign as CI's (`crates/atoll/tests/fault_campaign.rs`),
//! with more faults and a wall-time limit, on a release build. Prints the
//! report and appends it to RESULTS.md with `--out`. The `atoll` it runs
//! is the one beside this binary (or `CARGO_BIN_EXE_atoll`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use atoll_testkit::campaign::{Profile, run};

const USAGE: &str = "usage: fault-campaign [--seed N] [--faults N] [--duration-s S] [--out RESULTS.md]";

#[tokio::main]
async fn main() -> Result<()> {
    let mut profile = Profile::ci(Profile::seed_from_env());
    profile.name = "long".into();
    profile.faults = 300;
    // Not CI's addresses: the two may run on one machine.
    profile.ips = ["127.0.5.11", "127.0.5.12", "127.0.5.13"].map(String::from);
    let mut out: Option<PathBuf> = None;
    let mut it = std::env::args().skip(1);
    // What the user passed to bench/campaign.sh (which adds `--out`).
    let mut passed = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--out" {
            args.next();
        } else {
            passed.push(a);
        }
    }
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--seed" => {
                profile.seed = value()?.parse().context("--seed")?;
                profile.logs_dir = std::env::temp_dir().join(format!("atoll-campaign-{}", profile.seed));
            }
            "--faults" => profile.faults = value()?.parse().context("--faults")?,
            "--duration-s" => profile.max_wall = Some(Duration::from_secs(value()?.parse().context("--duration-s")?)),
            "--out" => out = Some(value()?.into()),
            other => bail!("unknown argument {other}; {USAGE}"),
        }
    }
    let report = run(&profile).await?;
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut md = format!("\n## Fault campaign, long profile ({date})\n\n");
    md.push_str(&format!(
        "Command: `bash bench/campaign.sh{}` (release build). One `atoll server` (SQLite MetaDB), three agents on 127.0.5.11-13 (zones z1-z3), the three-node Galera cluster `bank` made by the platform's create task, one platform proxy per zone. Six writers through the proxies (four inserting unique ids, two moving money between ten accounts with a ledger row in the same transaction), each about 25 operations a second. Faults at random moments, one at a time: SIGKILL and SIGSTOP/SIGCONT of mariadbd, agent, server and proxy; bursts of 2-3 SIGKILLs within a second; a host cut off by nftables (its processes' sockets, by cgroup, and its address); a node's tmpfs data directory filled; a host's wall clock stepped (libfaketime). The campaign restarts a killed server or agent after 0.2-1.5 s, as a service manager would; the agents restart mariadbd and proxies. Outage: the longest time after the injection with no commit by any writer, until commits resume after recovery; client gap: the same per writer; recovery: injection until healthy (platform reports the cluster healthy, every server Synced and every proxy running from reports after the heal, hosts online, each mariadbd Synced in a Primary component of 3, a write and a read through every proxy). After each fault every acknowledged write is looked up on every node directly (causal reads) and the bank's total and per-account ledger are checked.\n\n",
        passed.iter().map(|a| format!(" {a}")).collect::<String>()
    ));
    md.push_str(&report.markdown());
    print!("{md}");
    if let Some(path) = out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&path)?;
        f.write_all(md.as_bytes())?;
    }
    if !report.passed() {
        bail!("the campaign failed: {}", report.failure.as_deref().unwrap_or("see the report"));
    }
    Ok(())
}

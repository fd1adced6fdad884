//! `atoll host`: add, list, show, check, prepare and remove hosts.

use atoll_api::v1::{
    AddHostRequest, AddedHost, CheckRequest, CheckResponse, HostListItem, HostSummary, HostView, JoinTokenInfo, JoinTokenRequest,
    JoinTokenView, JoinTokensRevoked, PrepareRequest, TaskView,
};
use atoll_plan::check::CheckStatus;
use clap::Subcommand;

use crate::cli::{Conn, Res, client};
use crate::output::{self, Exit};
use crate::tasks::follow_new;

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// Declare a host; prints the command that starts its agent.
    Add {
        address: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        zone: Option<String>,
        /// The host's region (an IDC or a site: a group of zones); default:
        /// the `default` region. A cluster lives in one region.
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// In name order; filters narrow it, `--limit` shows one page.
    List {
        /// online, offline or pending.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        zone: Option<String>,
        /// Names starting with this.
        #[arg(long)]
        name: Option<String>,
        /// At most this many (one page); default: all, read a page at a time.
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this name (the last of the previous page).
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    Show {
        host: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run the environment precheck (exit 3 when an item fails).
    Check {
        /// Hosts to check; all when none are named.
        hosts: Vec<String>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        data_dir: Option<String>,
        /// Ports that must be free (comma-separated); default 3306,4567,4568,4444.
        #[arg(long, value_delimiter = ',')]
        ports: Option<Vec<u16>>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create directories and run the precheck, as a task.
    Prepare {
        #[arg(required = true)]
        hosts: Vec<String>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        data_dir: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        /// Return at once instead of following the task.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a host from the platform, as a task.
    Remove {
        host: String,
        /// Also delete the directories `prepare` created.
        #[arg(long)]
        purge: bool,
        /// Remove it even though database servers or proxies run there
        /// (the machine is gone for good).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Mint a join token (admin) and print the agent command that uses it;
    /// it admits new hosts only, until it expires.
    JoinToken {
        /// How long it admits new hosts (e.g. 30m, 1h, 7d; at most 30d).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Admit one host, then expire.
        #[arg(long)]
        single_use: bool,
        /// List the live tokens (without their secrets) instead.
        #[arg(long, conflicts_with_all = ["single_use", "revoke_all"])]
        list: bool,
        /// Revoke every platform join token (rotation: mint a new one after).
        #[arg(long, conflicts_with = "single_use")]
        revoke_all: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn run(cmd: HostCmd) -> Res {
    match cmd {
        HostCmd::Add { address, name, zone, region, conn } => {
            let c = client(&conn)?;
            let added: AddedHost = c.post("/api/v1/hosts", &AddHostRequest { address, name, zone, region }).await?;
            if conn.json {
                output::print_json(&added)?;
            } else {
                println!(
                    "added host {} ({}), pending until its agent registers; start it there with:\n  {}",
                    added.host.host.name, added.host.host.address, added.agent_command
                );
            }
            Ok(Exit::Ok)
        }
        HostCmd::List { status, zone, name, limit, after, conn } => {
            let c = client(&conn)?;
            let mut filters = String::new();
            for (k, v) in [("status", status), ("zone", zone), ("name", name)] {
                if let Some(v) = v {
                    filters.push_str(&format!("&{k}={}", output::encode(&v)));
                }
            }
            // Pages of 500 until the last (or the one page asked for).
            let page = limit.unwrap_or(500).min(1000);
            let mut hosts: Vec<HostListItem> = Vec::new();
            let mut cursor = after;
            loop {
                let at = cursor.as_ref().map(|a| format!("&after={}", output::encode(a))).unwrap_or_default();
                let batch: Vec<HostListItem> = c.get(&format!("/api/v1/hosts?limit={page}{at}{filters}")).await?;
                let full = batch.len() == page as usize;
                cursor = batch.last().map(|h| h.name.clone());
                hosts.extend(batch);
                if limit.is_some() || !full {
                    break;
                }
            }
            if conn.json {
                output::print_json(&hosts)?;
                return Ok(Exit::Ok);
            }
            let now = atoll_core::time::now_ms();
            let mut t = output::table(&["name", "address", "region", "zone", "status", "cores", "memory", "heartbeat", "precheck"]);
            for h in &hosts {
                t.add_row(vec![
                    h.name.clone(),
                    h.address.clone(),
                    h.region.clone().unwrap_or_else(|| atoll_core::DEFAULT_REGION.into()),
                    h.zone.clone().unwrap_or_else(|| "-".into()),
                    h.status.to_string(),
                    h.cpu_cores.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    h.memory_bytes.map(output::gib).unwrap_or_else(|| "-".into()),
                    output::ago(h.last_heartbeat_ms, now),
                    h.checks.as_ref().map(|c| format!("{} ({})", c.worst, c.profile)).unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
            let s = HostSummary::of(hosts.iter().map(|h| h.status));
            println!("{} hosts: {} online, {} offline, {} pending", s.total, s.online, s.offline, s.pending);
            Ok(Exit::Ok)
        }
        HostCmd::Show { host, conn } => {
            let h: HostView = client(&conn)?.get(&format!("/api/v1/hosts/{host}")).await?;
            if conn.json {
                output::print_json(&h)?;
            } else {
                print_host(&h);
            }
            Ok(Exit::Ok)
        }
        HostCmd::Check { hosts, profile, data_dir, ports, conn } => {
            let r: CheckResponse = client(&conn)?.post("/api/v1/hosts/check", &CheckRequest { hosts, profile, data_dir, ports }).await?;
            if conn.json {
                output::print_json(&r)?;
            } else {
                for h in &r.hosts {
                    println!("{} ({} profile, data dir {}): {}", h.host, h.profile, h.data_dir, h.worst);
                    print_checks(&h.results);
                }
                if !r.across_hosts.is_empty() {
                    println!("across hosts:");
                    print_checks(&r.across_hosts);
                }
                println!("overall: {}", r.worst);
            }
            Ok(if r.worst == CheckStatus::Fail { Exit::Failed } else { Exit::Ok })
        }
        HostCmd::Prepare { hosts, profile, data_dir, owner, no_wait, conn } => {
            let c = client(&conn)?;
            let t: TaskView = c.post("/api/v1/hosts/prepare", &PrepareRequest { hosts, profile, data_dir, owner }).await?;
            follow_new(&c, t, no_wait, conn.json).await
        }
        HostCmd::Remove { host, purge, force, no_wait, conn } => {
            let c = client(&conn)?;
            let t: TaskView = c.delete(&format!("/api/v1/hosts/{host}?purge={purge}&force={force}")).await?;
            follow_new(&c, t, no_wait, conn.json).await
        }
        HostCmd::JoinToken { ttl, single_use, list, revoke_all, conn } => {
            let c = client(&conn)?;
            if list {
                let tokens: Vec<JoinTokenInfo> = c.get("/api/v1/join-tokens").await?;
                if conn.json {
                    output::print_json(&tokens)?;
                } else {
                    let mut t = output::table(&["created", "by", "expires", "uses", "admits"]);
                    for j in &tokens {
                        t.add_row(vec![
                            output::time(Some(j.created_ms)),
                            j.created_by.clone(),
                            output::time(Some(j.expires_ms)),
                            if j.single_use { "once".into() } else { "until expiry".into() },
                            j.host.clone().unwrap_or_else(|| "any new host".into()),
                        ]);
                    }
                    println!("{t}");
                }
                return Ok(Exit::Ok);
            }
            if revoke_all {
                let r: JoinTokensRevoked = c.delete("/api/v1/join-tokens").await?;
                if conn.json {
                    output::print_json(&r)?;
                } else {
                    println!("revoked {} join token(s); hosts that joined keep working", r.revoked);
                }
                return Ok(Exit::Ok);
            }
            let ms = atoll_core::time::parse_duration_ms(&ttl).map_err(|e| output::fail(Exit::Error, format!("--ttl: {e}")))?;
            let req = JoinTokenRequest { ttl_s: Some((ms / 1000).max(1) as u64), single_use };
            let j: JoinTokenView = c.post("/api/v1/join-tokens", &req).await?;
            if conn.json {
                output::print_json(&j)?;
            } else {
                println!(
                    "{}

valid until {}{}; start an agent on each new host with:\n  {}",
                    j.token,
                    output::time(Some(j.expires_ms)),
                    if j.single_use { " for one host" } else { "" },
                    j.agent_command
                );
            }
            Ok(Exit::Ok)
        }
    }
}

fn print_host(h: &HostView) {
    let host = &h.host;
    println!("{} ({})  {}  region {}  zone {}", host.name, host.id, host.status, host.region_name(), host.zone.as_deref().unwrap_or("-"));
    println!(
        "address {}  agent {}  version {}",
        host.address,
        host.agent_url.as_deref().unwrap_or("-"),
        host.agent_version.as_deref().unwrap_or("-")
    );
    if let Some(f) = &host.facts {
        println!("cpu     {} × {}", f.cpu.cores, f.cpu.model);
        println!("memory  {} total, {} available", output::gib(f.memory_bytes), output::gib(f.memory_available_bytes));
        println!("os      {} (kernel {}, {})", f.os.name, f.os.kernel, f.os.arch);
        println!("nofile  {} soft / {} hard", f.nofile.soft, f.nofile.hard);
        println!("clock   {}", f.clock_offset_ms.map(|o| format!("{o:+} ms from the server")).unwrap_or_else(|| "not measured yet".into()));
        let mut t = output::table(&["mount", "device", "fs", "size", "free", "ssd"]);
        for m in &f.mounts {
            let ssd = match m.ssd {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown",
            };
            t.add_row(vec![
                m.path.clone(),
                m.device.clone(),
                m.fs_type.clone(),
                output::gib(m.total_bytes),
                output::gib(m.free_bytes),
                ssd.into(),
            ]);
        }
        println!("{t}");
        for n in &f.nics {
            println!(
                "nic     {}  {}  mtu {}",
                n.name,
                n.speed_mbps.map(|s| format!("{s} Mbit/s")).unwrap_or_else(|| "speed unknown".into()),
                n.mtu.map(|m| m.to_string()).unwrap_or_else(|| "-".into())
            );
        }
        for (k, v) in &f.sysctls {
            println!("sysctl  {k} = {v}");
        }
        if f.engines.is_empty() {
            println!("engine  none: install mariadb-server galera-4 or `atoll package push NAME --host {}`", host.name);
        }
        for e in &f.engines {
            println!(
                "engine  {}  {}  {}",
                e.name,
                e.version.as_deref().unwrap_or("version unknown"),
                e.basedir.as_deref().unwrap_or(&e.mariadbd)
            );
        }
    }
    if let Some(c) = &h.checks {
        println!("last precheck ({} profile, {}): {}", c.profile, output::time(Some(c.checked_at_ms)), c.worst);
        print_checks(&c.results);
    }
}

pub(crate) fn print_checks(results: &[atoll_plan::check::CheckResult]) {
    let mut t = output::table(&["item", "result", "measured", "required", "fix"]);
    for r in results {
        t.add_row(vec![r.item.clone(), r.status.to_string(), r.measured.clone(), r.required.clone(), r.fix.clone().unwrap_or_default()]);
    }
    println!("{t}");
}

//! `atoll cluster …`: database clusters from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use atoll_api::v1::{ClusterCredentials, ClusterView, TaskView};
use atoll_core::{ClusterSpec, Durability, Ports, ServerSpec};
use clap::Subcommand;

use crate::cli::{Conn, Res, client};
use crate::output::{self, Exit, fail};
use crate::tasks::follow_new;

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Create a cluster from flags or a TOML topology file.
    ///
    /// `atoll cluster create orders --host z1=host1 --host z2=host2
    /// --host z3=host3` places one server per zone; servers are named
    /// NAME-1, NAME-2, … in the order given.
    Create {
        /// Cluster name (or taken from --file).
        name: Option<String>,
        /// ZONE=HOST, once per server (`--server` is the platform's URL).
        #[arg(long = "host", value_name = "ZONE=HOST")]
        servers: Vec<String>,
        /// A TOML topology file (see the README); flags cannot be mixed in.
        #[arg(long, conflicts_with = "servers")]
        file: Option<PathBuf>,
        /// `durable` (default: flush before acknowledging) or `fast`.
        #[arg(long)]
        durability: Option<String>,
        /// KEY=VALUE MariaDB parameter, repeatable.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// SQL port of every server (others follow Galera's defaults).
        #[arg(long, default_value_t = 3306)]
        port: u16,
        /// Accept fewer than three zones (the cluster cannot survive a zone loss).
        #[arg(long)]
        allow_single_zone: bool,
        /// Engine build to run: a package pushed to every host (`atoll
        /// package push`); default: the hosts' system MariaDB.
        #[arg(long)]
        engine: Option<String>,
        /// The region the cluster lives in; default: its hosts' region
        /// (they must all be in one).
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create a standby of a cluster in another region: a copy of one of
    /// its nodes, then asynchronous GTID replication from it.
    ///
    /// `atoll cluster create-standby orders-dr --of orders --region r2
    /// --host z1=host4 --host z2=host5 --host z3=host6`; the standby reads
    /// only, and takes the primary's durability and parameters unless given.
    CreateStandby {
        /// The standby's name.
        name: String,
        /// The primary it follows.
        #[arg(long = "of", value_name = "PRIMARY")]
        primary: String,
        /// ZONE=HOST, once per server.
        #[arg(long = "host", value_name = "ZONE=HOST", required = true)]
        servers: Vec<String>,
        /// KEY=VALUE MariaDB parameter, repeatable (default: the primary's).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        #[arg(long, default_value_t = 3306)]
        port: u16,
        #[arg(long)]
        allow_single_zone: bool,
        /// The standby's region (not the primary's); default: its hosts'.
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    List {
        #[command(flatten)]
        conn: Conn,
    },
    Show {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop every server cleanly, one after another; given a SERVER, only
    /// that one (the writer moves away first).
    Stop {
        name: String,
        /// Only this server; refused when the rest would not be a majority.
        /// (Positional: `--server` is the platform's URL.)
        #[arg(id = "one_server", value_name = "SERVER")]
        server: Option<String>,
        /// With SERVER: stop it even without a majority left running.
        #[arg(long, requires = "one_server")]
        force: bool,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Start a stopped cluster from its most advanced node; given a SERVER,
    /// start that stopped server, which rejoins and catches up.
    Start {
        name: String,
        /// Only this (stopped) server.
        #[arg(id = "one_server", value_name = "SERVER")]
        server: Option<String>,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Recover a cluster that lost quorum: find the most advanced node,
    /// bootstrap from it, rejoin the rest.
    Recover {
        name: String,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Restart every server, one at a time, keeping the cluster available;
    /// given a SERVER, only that one (the writer moves away first).
    Restart {
        name: String,
        /// Only this server.
        #[arg(id = "one_server", value_name = "SERVER")]
        server: Option<String>,
        /// With SERVER: restart it even without a majority left running.
        #[arg(long, requires = "one_server")]
        force: bool,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Add servers (`--add ZONE=HOST`, repeatable; named NAME-N) or remove
    /// one (`--remove SERVER`). A new server joins with a full state
    /// transfer; a new zone gets its own proxy.
    Scale {
        name: String,
        /// ZONE=HOST of a server to add, repeatable.
        #[arg(long = "add", value_name = "ZONE=HOST", required_unless_present = "remove", conflicts_with = "remove")]
        add: Vec<String>,
        /// The server to remove.
        #[arg(long, value_name = "SERVER")]
        remove: Option<String>,
        /// With --remove: also delete its data directory.
        #[arg(long, requires = "remove")]
        purge: bool,
        /// With --remove: go below three servers or three zones.
        #[arg(long, requires = "remove")]
        force: bool,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change MariaDB parameters: online where possible, else rolling.
    SetParam {
        name: String,
        /// KEY=VALUE, repeatable.
        #[arg(required = true, value_name = "KEY=VALUE")]
        params: Vec<String>,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Move read-write traffic to another synced server. Proxies hold new
    /// read-write connections during the move instead of refusing them.
    SetWriter {
        name: String,
        /// The id keeps clap from confusing it with the global `--server`.
        #[arg(id = "one_server", value_name = "SERVER")]
        server: String,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop the servers and forget the cluster (data kept unless --purge).
    Delete {
        name: String,
        /// Also delete the data directories.
        #[arg(long)]
        purge: bool,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// The administrator account and a `mariadb` command line (admin only).
    Credentials {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn run(cmd: ClusterCmd) -> Res {
    match cmd {
        ClusterCmd::Create { name, servers, file, durability, params, port, allow_single_zone, engine, region, no_wait, conn } => {
            let spec = match file {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(&path).map_err(|e| fail(Exit::Error, format!("cannot read {}: {e}", path.display())))?;
                    let mut spec: ClusterSpec = toml::from_str(&text).map_err(|e| fail(Exit::Error, format!("{}: {e}", path.display())))?;
                    if let Some(n) = name {
                        spec.name = n;
                    }
                    if engine.is_some() {
                        spec.engine = engine;
                    }
                    if region.is_some() {
                        spec.region = region;
                    }
                    spec
                }
                None => {
                    ClusterSpec { region, ..from_flags(name, &servers, durability.as_deref(), &params, port, allow_single_zone, engine)? }
                }
            };
            let c = client(&conn)?;
            let t: TaskView = c.post("/api/v1/clusters", &spec).await?;
            follow_new(&c, t, no_wait, conn.json).await
        }
        ClusterCmd::CreateStandby { name, primary, servers, params, port, allow_single_zone, region, no_wait, conn } => {
            let spec = ClusterSpec { region, ..from_flags(Some(name), &servers, None, &params, port, allow_single_zone, None)? };
            let c = client(&conn)?;
            let t: TaskView = c.post(&format!("/api/v1/clusters/{primary}/standbys"), &spec).await?;
            follow_new(&c, t, no_wait, conn.json).await
        }
        ClusterCmd::List { conn } => {
            let clusters: Vec<ClusterView> = client(&conn)?.get("/api/v1/clusters").await?;
            if conn.json {
                output::print_json(&clusters)?;
                return Ok(Exit::Ok);
            }
            let mut t = output::table(&["name", "region", "status", "durability", "zones", "servers", "synced"]);
            for c in &clusters {
                let servers: Vec<_> = c.zones.iter().flat_map(|z| &z.servers).collect();
                let synced = servers.iter().filter(|s| s.state == atoll_core::ServerState::Synced).count();
                t.add_row(vec![
                    c.name.clone(),
                    c.region.clone(),
                    c.status.to_string(),
                    c.durability.to_string(),
                    c.zones.len().to_string(),
                    servers.len().to_string(),
                    format!("{synced}/{}", servers.len()),
                ]);
            }
            println!("{t}");
            Ok(Exit::Ok)
        }
        ClusterCmd::Show { name, conn } => {
            let c: ClusterView = client(&conn)?.get(&format!("/api/v1/clusters/{name}")).await?;
            if conn.json {
                output::print_json(&c)?;
                return Ok(Exit::Ok);
            }
            println!("{}  {}  {} ({} durability profile), region {}", c.name, c.status, c.engine, c.durability, c.region);
            let mut t = output::table(&["zone", "server", "host", "address", "state", "cluster size", "restarts"]);
            for z in &c.zones {
                for s in &z.servers {
                    let w = s.status.as_ref().and_then(|st| st.wsrep.as_ref());
                    let role = if c.moving_to.as_deref() == Some(s.name.as_str()) {
                        " (becoming writer)"
                    } else if c.writer.as_deref() == Some(s.name.as_str()) {
                        " (writer)"
                    } else {
                        ""
                    };
                    t.add_row(vec![
                        format!("{} (segment {})", z.name, z.segment),
                        format!("{}{role}", s.name),
                        s.host.clone(),
                        format!("{}:{}", s.address, s.port),
                        s.state.to_string(),
                        w.map(|w| w.cluster_size.to_string()).unwrap_or_else(|| "-".into()),
                        s.status.as_ref().map(|st| st.restarts.to_string()).unwrap_or_else(|| "-".into()),
                    ]);
                }
            }
            println!("{t}");
            if let Some(r) = &c.replication {
                println!("{}", replication_line(r));
            }
            if !c.proxies.is_empty() {
                let mut t = output::table(&["proxy", "zone", "read-write", "read-only", "state", "rw conns", "ro conns", "restarts"]);
                let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                for p in &c.proxies {
                    t.add_row(vec![
                        p.name.clone(),
                        p.zone.clone(),
                        format!("{}:{}", p.address, p.rw_port),
                        format!("{}:{}", p.address, p.ro_port),
                        p.state.map(|s| format!("{s:?}").to_lowercase()).unwrap_or_else(|| "unknown".into()),
                        n(p.rw_connections),
                        n(p.ro_connections),
                        p.restarts.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                    ]);
                }
                println!("{t}");
            }
            for (k, v) in &c.params {
                println!("param   {k} = {v}");
            }
            Ok(Exit::Ok)
        }
        ClusterCmd::Stop { name, server: Some(server), force, no_wait, conn } => {
            act_on(&name, &server, "stop", force, no_wait, &conn).await
        }
        ClusterCmd::Stop { name, server: None, no_wait, conn, .. } => act(&name, "stop", no_wait, &conn).await,
        ClusterCmd::Start { name, server: Some(server), no_wait, conn } => act_on(&name, &server, "start", false, no_wait, &conn).await,
        ClusterCmd::Start { name, server: None, no_wait, conn } => act(&name, "start", no_wait, &conn).await,
        ClusterCmd::Recover { name, no_wait, conn } => act(&name, "recover", no_wait, &conn).await,
        ClusterCmd::Restart { name, server: Some(server), force, no_wait, conn } => {
            act_on(&name, &server, "restart", force, no_wait, &conn).await
        }
        ClusterCmd::Restart { name, server: None, no_wait, conn, .. } => act(&name, "restart", no_wait, &conn).await,
        ClusterCmd::Scale { name, add, remove, purge, force, no_wait, conn } => {
            let c = client(&conn)?;
            let t: TaskView = match remove {
                Some(server) => c.delete(&format!("/api/v1/clusters/{name}/servers/{server}?purge={purge}&force={force}")).await?,
                None => {
                    let mut servers = Vec::new();
                    for a in &add {
                        let (zone, host) = a
                            .split_once('=')
                            .ok_or_else(|| fail(Exit::Error, format!("--add {a:?}: write it as ZONE=HOST, e.g. z4=host4")))?;
                        servers.push(serde_json::json!({ "zone": zone, "host": host }));
                    }
                    c.post(&format!("/api/v1/clusters/{name}/servers"), &serde_json::json!({ "servers": servers })).await?
                }
            };
            follow_new(&c, t, no_wait, conn.json).await
        }
        ClusterCmd::SetParam { name, params, no_wait, conn } => {
            let params = parse_params(&params)?;
            let c = client(&conn)?;
            let t: TaskView = c.post(&format!("/api/v1/clusters/{name}/params"), &serde_json::json!({ "params": params })).await?;
            follow_new(&c, t, no_wait, conn.json).await
        }
        ClusterCmd::SetWriter { name, server, no_wait, conn } => {
            let c = client(&conn)?;
            let t: TaskView = c.post(&format!("/api/v1/clusters/{name}/writer"), &serde_json::json!({ "server": server })).await?;
            follow_new(&c, t, no_wait, conn.json).await
        }
        ClusterCmd::Delete { name, purge, no_wait, conn } => {
            let c = client(&conn)?;
            let t: TaskView = c.delete(&format!("/api/v1/clusters/{name}?purge={purge}")).await?;
            follow_new(&c, t, no_wait, conn.json).await
        }
        ClusterCmd::Credentials { name, conn } => {
            let cr: ClusterCredentials = client(&conn)?.get(&format!("/api/v1/clusters/{name}/credentials")).await?;
            if conn.json {
                output::print_json(&cr)?;
            } else {
                println!("user {}  password {}  at {}:{}\n{}", cr.user, cr.password, cr.host, cr.port, cr.mysql_command);
            }
            Ok(Exit::Ok)
        }
    }
}

async fn act(name: &str, verb: &str, no_wait: bool, conn: &Conn) -> Res {
    let c = client(conn)?;
    let t: TaskView = c.post(&format!("/api/v1/clusters/{name}/{verb}"), &serde_json::json!({})).await?;
    follow_new(&c, t, no_wait, conn.json).await
}

/// One server's stop, start or restart.
async fn act_on(name: &str, server: &str, verb: &str, force: bool, no_wait: bool, conn: &Conn) -> Res {
    let c = client(conn)?;
    let t: TaskView = c.post(&format!("/api/v1/clusters/{name}/servers/{server}/{verb}?force={force}"), &serde_json::json!({})).await?;
    follow_new(&c, t, no_wait, conn.json).await
}

/// The pair in one line: a primary's standbys, or a standby's channel
/// (source, applier, lag, last error).
fn replication_line(r: &atoll_api::v1::ReplicationView) -> String {
    let Some(primary) = &r.primary else {
        let standbys = if r.standbys.is_empty() { "none".to_string() } else { r.standbys.join(", ") };
        return format!("replication: primary (domain {}), standbys: {standbys}", r.domain);
    };
    let channel = match &r.channel {
        None => "no node applies the channel".to_string(),
        Some(ch) => {
            let n = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            format!(
                "{} from {} on {}, {} s and {} transactions behind{}",
                if ch.running { "replicating" } else { "STOPPED" },
                ch.source,
                ch.applier,
                n(ch.seconds_behind),
                n(ch.transactions_behind),
                ch.last_error.as_ref().map(|e| format!(", last error: {e}")).unwrap_or_default()
            )
        }
    };
    format!("replication: standby of {primary} (domain {}, read only), {channel}", r.domain)
}

/// Builds a topology from `--host ZONE=HOST` flags.
fn from_flags(
    name: Option<String>,
    servers: &[String],
    durability: Option<&str>,
    params: &[String],
    port: u16,
    allow_single_zone: bool,
    engine: Option<String>,
) -> Result<ClusterSpec, crate::output::CliError> {
    let name = name.ok_or_else(|| fail(Exit::Error, "name the cluster: `atoll cluster create NAME --host ZONE=HOST …` or use --file"))?;
    if servers.is_empty() {
        return Err(fail(Exit::Error, "give one --host ZONE=HOST per server (at least three zones for HA), or use --file"));
    }
    let mut specs = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let (zone, host) =
            s.split_once('=').ok_or_else(|| fail(Exit::Error, format!("--host {s:?}: write it as ZONE=HOST, e.g. z1=host1")))?;
        specs.push(ServerSpec {
            name: format!("{name}-{}", i + 1),
            zone: zone.to_string(),
            host: host.to_string(),
            ports: Ports { sql: port, ..Ports::default() },
        });
    }
    let map = parse_params(params)?;
    let durability: Durability = durability.map(str::parse).transpose().map_err(|e: String| fail(Exit::Error, e))?.unwrap_or_default();
    Ok(ClusterSpec {
        name,
        durability,
        servers: specs,
        params: map,
        allow_single_zone,
        engine,
        proxy: Default::default(),
        region: None,
        replication: None,
    })
}

fn parse_params(params: &[String]) -> Result<BTreeMap<String, String>, crate::output::CliError> {
    let mut map = BTreeMap::new();
    for p in params {
        let (k, v) = p.split_once('=').ok_or_else(|| fail(Exit::Error, format!("{p:?}: write parameters as KEY=VALUE")))?;
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

//! `atoll platform`: the platform's own servers and which one runs the
//! controllers (offline detection, cluster health).

use atoll_api::v1::{CaView, PlatformCheckView, PlatformView, RotateCaRequest, TaskView};
use atoll_plan::check::CheckStatus;
use clap::{Args, Subcommand};

use crate::cli::{Conn, Res, client};
use crate::output::{self, Exit};

#[derive(Debug, Args)]
pub struct PlatformArgs {
    #[command(subcommand)]
    cmd: Option<PlatformCmd>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum PlatformCmd {
    /// The platform's CA: which issues, which are trusted, where a
    /// rotation stands and what it waits for.
    Ca,
    /// Replace the platform's CA without downtime (admin): trust the new
    /// CA everywhere, reissue every certificate from it, drop the old one.
    /// Run again after a failure, it carries on where it stopped.
    RotateCa {
        /// How long each step waits for every server and host to follow
        /// before it fails naming them.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        wait: u64,
        /// Start the task and return.
        #[arg(long)]
        no_wait: bool,
    },
}

pub async fn run(a: PlatformArgs) -> Res {
    match a.cmd {
        None => servers(a.conn).await,
        Some(PlatformCmd::Ca) => ca(a.conn).await,
        Some(PlatformCmd::RotateCa { wait, no_wait }) => rotate_ca(a.conn, wait, no_wait).await,
    }
}

async fn ca(conn: Conn) -> Res {
    let c = client(&conn)?;
    let v: CaView = c.get("/api/v1/platform/ca").await?;
    // Keeps the login's CA in step after a rotation run from elsewhere.
    follow_bundle(&c).await;
    if conn.json {
        output::print_json(&v)?;
        return Ok(Exit::Ok);
    }
    println!("issuing CA  {}", v.issuer);
    for f in v.trusted.iter().filter(|f| **f != v.issuer) {
        println!("also trusts {f}");
    }
    println!("phase       {}", v.phase);
    for w in &v.waiting_for {
        println!("waiting for {w}");
    }
    Ok(Exit::Ok)
}

/// Starts the rotation and follows it. While it runs, this CLI keeps
/// trusting what the platform trusts (its `/ca.pem`, read over TLS it
/// already verifies) so it can follow the task past the switch, and saves
/// the final bundle with the login.
async fn rotate_ca(conn: Conn, wait: u64, no_wait: bool) -> Res {
    let c = client(&conn)?;
    let t: TaskView = c.post("/api/v1/platform/ca/rotate", &RotateCaRequest { wait_s: Some(wait) }).await?;
    let refresh = tokio::spawn({
        let c = c.clone();
        async move {
            loop {
                follow_bundle(&c).await;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    });
    let outcome = crate::tasks::follow_new(&c, t, no_wait, conn.json).await;
    refresh.abort();
    let bundle = follow_bundle(&c).await;
    if let (Some(bundle), false, Ok(Exit::Ok)) = (bundle, conn.json, &outcome) {
        let issuer = atoll_pki::fingerprint(&bundle).unwrap_or_default();
        match conn.ca_file_given() {
            true => println!(
                "the platform's CA is now {issuer}: replace the file given with --ca-file/ATOLL_CA_FILE by a server's DATA_DIR/ca.pem"
            ),
            false => {
                println!("the platform's CA is now {issuer} (saved with your login; other CLIs: `atoll login --ca-fingerprint {issuer}`)")
            }
        }
    }
    outcome
}

/// Trusts the platform's current bundle and keeps it with the login; the
/// bundle, when it could be read.
async fn follow_bundle(c: &atoll_client::Client) -> Option<String> {
    let pem = c.get_streaming("/ca.pem").await.ok()?.text().await.ok()?;
    atoll_client::trust_platform_ca(&pem).ok()?;
    let mut saved = crate::session::load();
    if saved.ca_pem.is_some() && saved.ca_pem.as_deref() != Some(pem.as_str()) {
        saved.ca_pem = Some(pem.clone());
        if let Err(e) = crate::session::save(&saved) {
            eprintln!("warning: cannot save the platform's new CA with your login: {e}");
        }
    }
    Some(pem)
}

async fn servers(conn: Conn) -> Res {
    let a = PlatformArgs { cmd: None, conn };
    let c = client(&a.conn)?;
    let p: PlatformView = c.get("/api/v1/platform").await?;
    if a.conn.json {
        output::print_json(&p)?;
        return Ok(Exit::Ok);
    }
    let now = atoll_core::time::now_ms();
    let mut t = output::table(&["server", "version", "state", "controllers", "started", "seen"]);
    for s in &p.servers {
        t.add_row(vec![
            s.url.clone(),
            s.version.clone(),
            if s.live { "up" } else { "gone" }.to_string(),
            if s.leader { "leader" } else { "" }.to_string(),
            output::time(Some(s.started_at_ms)),
            output::ago(Some(s.seen_at_ms), now),
        ]);
    }
    println!("{t}");
    match &p.leader {
        Some(l) => {
            let url = p.servers.iter().find(|s| s.id == l.holder).map_or(l.holder.as_str(), |s| s.url.as_str());
            println!("controllers run on {url} (lease generation {}, since {})", l.generation, output::time(Some(l.acquired_at_ms)));
        }
        None => println!("no server holds the controllers' lease: offline detection and cluster health are paused"),
    }
    println!("metadata store: {}; answered by {}", p.metadb, c.base());
    Ok(Exit::Ok)
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    conn: Conn,
}

/// `atoll check`: the post-deployment check of the platform; exit 3 when
/// an item fails.
pub async fn check(a: CheckArgs) -> Res {
    let c = client(&a.conn)?;
    let v: PlatformCheckView = c.get("/api/v1/platform/check").await?;
    if a.conn.json {
        output::print_json(&v)?;
    } else {
        crate::hosts::print_checks(&v.results);
        let failed = v.results.iter().filter(|r| r.status == CheckStatus::Fail).count();
        let warned = v.results.iter().filter(|r| r.status == CheckStatus::Warn).count();
        println!("platform check: {} ({} item(s), {failed} failed, {warned} warned; run by {})", v.worst, v.results.len(), v.answered_by);
    }
    Ok(if v.worst == CheckStatus::Fail { Exit::Failed } else { Exit::Ok })
}

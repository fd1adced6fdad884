//! `atoll platform`: the platform's own servers and which one runs the
//! controllers (offline detection, cluster health).

use atoll_api::v1::{PlatformCheckView, PlatformView};
use atoll_plan::check::CheckStatus;
use clap::Args;

use crate::cli::{Conn, Res, client};
use crate::output::{self, Exit};

#[derive(Debug, Args)]
pub struct PlatformArgs {
    #[command(flatten)]
    conn: Conn,
}

pub async fn run(a: PlatformArgs) -> Res {
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

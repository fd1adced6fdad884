//! `atoll plan`: the servers a deployment mode needs, from the seed's
//! sizing tables.

use clap::Args;

use crate::cli::Res;
use crate::output::{self, Exit};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// single-node, multi-node, multi-cluster or multi-zone.
    #[arg(long)]
    mode: String,
    /// Managed hosts, to size the platform server, MetaDB and MonitorDB.
    #[arg(long)]
    hosts: Option<u32>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: PlanArgs) -> Res {
    let mode: atoll_plan::sizing::Mode = a.mode.parse()?;
    let p = atoll_plan::sizing::plan(mode, a.hosts)?;
    if a.json {
        output::print_json(&p)?;
        return Ok(Exit::Ok);
    }
    println!("{} deployment: {}\n", p.mode, p.summary);
    let mut t = output::table(&["server", "count", "minimum functional", "minimum performance", "notes"]);
    for r in &p.rows {
        let mut notes = r.purpose.clone();
        if let Some(s) = &r.shares_with {
            notes = format!("{notes}; {s}");
        }
        let count = if r.optional { format!("{} (optional)", r.quantity) } else { r.quantity.to_string() };
        t.add_row(vec![
            r.server_type.title().to_string(),
            count,
            r.functional.to_string(),
            r.performance.as_ref().map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            notes,
        ]);
    }
    println!("{t}");
    if let Some(s) = &p.platform {
        println!(
            "\nfor {} managed hosts: platform server {} GiB memory; MetaDB {}; MonitorDB {}",
            s.managed_hosts, s.server_memory_gib, s.metadb, s.monitordb
        );
    }
    for n in &p.notes {
        println!("- {n}");
    }
    Ok(Exit::Ok)
}

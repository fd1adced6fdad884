//! `atoll metrics`: what MonitorDB holds, queries, scrape targets, and
//! service discovery files for an existing Prometheus or VictoriaMetrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_api::metrics::{MetricView, QueryAnswer, SdGroup, TargetsView};
use atoll_core::time::now_ms;
use clap::Subcommand;

use crate::cli::{Conn, Res, client};
use crate::output::{self, Exit, encode, fail};

/// The jobs, each written to its own file so that only the agents' job
/// carries the API token.
const JOBS: [&str; 3] = ["agent", "proxy", "server"];

#[derive(Debug, Subcommand)]
pub enum MetricsCmd {
    /// Every metric with its kind, labels and help.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// One metric over a time range, per series or aggregated, e.g.
    /// `atoll metrics query atoll_db_questions_total --rate --agg sum --by server --range 1h`.
    Query {
        metric: String,
        /// Label matcher (repeat): name=value, name!=value, name=~re, name!~re.
        #[arg(long = "match")]
        matchers: Vec<String>,
        #[arg(long, default_value = "1h")]
        range: String,
        #[arg(long)]
        step: Option<String>,
        #[arg(long)]
        rate: bool,
        /// sum, avg, max or min.
        #[arg(long)]
        agg: Option<String>,
        #[arg(long, value_delimiter = ',')]
        by: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Scrape targets and how each one's last scrape went.
    Targets {
        #[command(flatten)]
        conn: Conn,
    },
    /// Write Prometheus file_sd files (atoll-agent.json, atoll-proxy.json,
    /// atoll-server.json) into DIR; with --every, keep them current.
    Sd {
        #[arg(long)]
        dir: PathBuf,
        /// Rewrite the files this often (e.g. 30s) until stopped.
        #[arg(long)]
        every: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print scrape_configs for prometheus.yml that read the files of
    /// `atoll metrics sd --dir DIR`.
    PrometheusConfig {
        #[arg(long)]
        dir: PathBuf,
        /// A file holding an API token (a viewer's is enough): agents'
        /// metrics are read through the platform server.
        #[arg(long)]
        token_file: PathBuf,
        /// Scrape interval (default 10s, Atoll's own).
        #[arg(long, default_value = "10s")]
        interval: String,
    },
}

pub async fn run(cmd: MetricsCmd) -> Res {
    match cmd {
        MetricsCmd::List { conn } => {
            let all: Vec<MetricView> = client(&conn)?.get("/api/v1/metrics").await?;
            if conn.json {
                output::print_json(&all)?;
                return Ok(Exit::Ok);
            }
            let mut t = output::table(&["metric", "kind", "series", "labels", "help"]);
            for m in &all {
                t.add_row(vec![m.name.clone(), m.kind.clone(), m.series.to_string(), m.labels.join(","), m.help.clone()]);
            }
            println!("{t}");
            Ok(Exit::Ok)
        }
        MetricsCmd::Query { metric, matchers, range, step, rate, agg, by, conn } => {
            let mut path = format!("/api/v1/metrics/query?metric={}&range={}", encode(&metric), encode(&range));
            for m in &matchers {
                path.push_str(&format!("&match={}", encode(m)));
            }
            if let Some(s) = step {
                path.push_str(&format!("&step={}", encode(&s)));
            }
            if rate {
                path.push_str("&fn=rate");
            }
            if let Some(a) = agg {
                path.push_str(&format!("&agg={}", encode(&a)));
            }
            if !by.is_empty() {
                path.push_str(&format!("&by={}", encode(&by.join(","))));
            }
            let a: QueryAnswer = client(&conn)?.get(&path).await?;
            if conn.json {
                output::print_json(&a)?;
                return Ok(Exit::Ok);
            }
            println!("{} over {} points, step {} s, {} data", a.metric, a.timestamps.len(), a.step_ms / 1000, a.resolution);
            let mut t = output::table(&["series", "last", "min", "avg", "max"]);
            for s in &a.series {
                let vals: Vec<f64> = s.values.iter().flatten().copied().collect();
                let last = s.values.iter().rev().find_map(|v| *v);
                let f = |v: Option<f64>| v.map_or_else(|| "-".into(), atoll_alert::rule::format_value);
                let (min, max) = vals.iter().fold((None::<f64>, None::<f64>), |(lo, hi), v| {
                    (Some(lo.map_or(*v, |l| l.min(*v))), Some(hi.map_or(*v, |h| h.max(*v))))
                });
                let avg = (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64);
                let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                t.add_row(vec![if labels.is_empty() { "all".into() } else { labels.join(",") }, f(last), f(min), f(avg), f(max)]);
            }
            println!("{t}");
            Ok(Exit::Ok)
        }
        MetricsCmd::Targets { conn } => {
            let v: TargetsView = client(&conn)?.get("/api/v1/metrics/targets").await?;
            if conn.json {
                output::print_json(&v)?;
                return Ok(Exit::Ok);
            }
            if !v.scraping {
                println!("this server does not scrape now (the controllers' leader does): `atoll platform` names it");
            }
            let now = now_ms();
            let mut t = output::table(&["job", "instance", "up", "last scrape", "took", "samples", "error"]);
            for x in &v.targets {
                t.add_row(vec![
                    x.job.clone(),
                    x.instance.clone(),
                    match x.up {
                        Some(true) => "yes".into(),
                        Some(false) => "DOWN".into(),
                        None => "-".into(),
                    },
                    output::ago(x.last_scrape_ms, now),
                    x.duration_ms.map_or_else(|| "-".into(), |d| format!("{d} ms")),
                    x.samples.to_string(),
                    x.error.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
            Ok(Exit::Ok)
        }
        MetricsCmd::Sd { dir, every, conn } => {
            let every = every
                .map(|e| atoll_core::time::parse_duration_ms(&e).map_err(|e| fail(Exit::Error, format!("--every: {e}"))))
                .transpose()?;
            let c = client(&conn)?;
            loop {
                match c.get::<Vec<SdGroup>>("/api/v1/metrics/sd").await {
                    Ok(groups) => {
                        let changed = write_sd(&dir, &groups)?;
                        if !changed.is_empty() || every.is_none() {
                            eprintln!(
                                "{} targets in {} (changed: {})",
                                groups.len(),
                                dir.display(),
                                if changed.is_empty() { "none".into() } else { changed.join(", ") }
                            );
                        }
                    }
                    // Keep the last files: Prometheus goes on scraping what it knows.
                    Err(e) if every.is_some() => eprintln!("cannot refresh the targets, keeping the files as they are: {e}"),
                    Err(e) => return Err(e.into()),
                }
                let Some(ms) = every else { return Ok(Exit::Ok) };
                tokio::time::sleep(Duration::from_millis(u64::try_from(ms).unwrap_or(30_000))).await;
            }
        }
        MetricsCmd::PrometheusConfig { dir, token_file, interval } => {
            print!("{}", prometheus_config(&dir, &token_file, &interval));
            Ok(Exit::Ok)
        }
    }
}

/// Writes one file per job, atomically (a temporary file renamed over the
/// old one, as Prometheus expects), and only when its content changed.
/// Returns the files written.
fn write_sd(dir: &Path, groups: &[SdGroup]) -> Result<Vec<String>, crate::output::CliError> {
    std::fs::create_dir_all(dir).map_err(|e| fail(Exit::Error, format!("cannot create {}: {e}", dir.display())))?;
    let mut by_job: BTreeMap<&str, Vec<&SdGroup>> = JOBS.iter().map(|j| (*j, Vec::new())).collect();
    for g in groups {
        if let Some(list) = g.labels.get("job").and_then(|j| by_job.get_mut(j.as_str())) {
            list.push(g);
        }
    }
    let mut changed = Vec::new();
    for (job, list) in by_job {
        let name = format!("atoll-{job}.json");
        let path = dir.join(&name);
        let text = serde_json::to_string_pretty(&list)? + "\n";
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| fail(Exit::Error, format!("cannot write {}: {e}", path.display())))?;
        changed.push(name);
    }
    Ok(changed)
}

/// `scrape_configs` reading the files of [`write_sd`]: one job per file,
/// the token only where it is needed, the exporters' labels kept
/// (`honor_labels`, as Atoll's own scraper does).
fn prometheus_config(dir: &Path, token_file: &Path, interval: &str) -> String {
    let mut out = String::from("# Generated by `atoll metrics prometheus-config`; keep the files current with\n");
    out.push_str(&format!("# `atoll metrics sd --dir {} --every 30s`.\nscrape_configs:\n", dir.display()));
    for job in JOBS {
        out.push_str(&format!("  - job_name: atoll-{job}\n    scrape_interval: {interval}\n    honor_labels: true\n"));
        if job == "agent" {
            out.push_str(&format!("    authorization:\n      credentials_file: {}\n", token_file.display()));
        }
        out.push_str(&format!("    file_sd_configs:\n      - files: ['{}']\n", dir.join(format!("atoll-{job}.json")).display()));
    }
    out
}

//! `/hosts` and `/hosts/{key}`.

use askama::Template;
use atoll_api::v1::{HostCheckReport, HostSummary};
use atoll_core::HostFacts;
use atoll_core::time::now_ms;
use atoll_store::{HostRecord, HostSummaryRecord};
use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::{Chrome, FragmentQuery, Session, error_page, fmt, page};
use crate::error::ApiError;
use crate::state::AppState;

/// One row of the hosts table, already formatted.
pub(crate) struct HostRow {
    name: String,
    address: String,
    region: String,
    zone: String,
    status: &'static str,
    cores: String,
    memory: String,
    heartbeat: String,
    heartbeat_at: String,
    agent_version: String,
    /// Worst result of the last precheck, if one ran.
    check: Option<&'static str>,
}

fn report(r: &HostRecord) -> Option<HostCheckReport> {
    r.checks.clone().and_then(|c| serde_json::from_value(c).ok())
}

/// From the summary columns: the table never needs the facts themselves.
fn row(h: &HostSummaryRecord, now: i64) -> HostRow {
    HostRow {
        name: h.name.clone(),
        address: h.address.clone(),
        region: h.region.clone().unwrap_or_else(|| atoll_core::DEFAULT_REGION.into()),
        zone: h.zone.clone().unwrap_or_else(|| "—".into()),
        status: h.status.as_str(),
        cores: h.cpu_cores.map_or_else(|| "—".into(), |c| c.to_string()),
        memory: h.memory_bytes.map_or_else(|| "—".into(), fmt::bytes),
        heartbeat: h.last_heartbeat_ms.map_or_else(|| "never".into(), |t| fmt::ago(now, t)),
        heartbeat_at: h.last_heartbeat_ms.map(|t| format!("{} UTC", fmt::utc(t))).unwrap_or_default(),
        agent_version: h.agent_version.clone().unwrap_or_else(|| "—".into()),
        check: crate::hostops::check_summary(h).map(|c| c.worst.as_str()),
    }
}

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage {
    chrome: Chrome,
    rows: Vec<HostRow>,
    summary: HostSummary,
    next: Option<String>,
}

/// The live part of `/hosts`: summary line and table.
#[derive(Template)]
#[template(path = "hosts_table.html")]
struct HostsFragment {
    rows: Vec<HostRow>,
    summary: HostSummary,
    /// The link to the next page, when there is one.
    next: Option<String>,
}

/// Hosts per page: a fleet of thousands is read a page at a time.
const PAGE: u32 = 200;

#[derive(Debug, Default, serde::Deserialize)]
pub struct HostsQuery {
    fragment: Option<String>,
    /// The last name of the previous page.
    after: Option<String>,
}

pub async fn list(State(state): State<AppState>, Session(caller): Session, Query(q): Query<HostsQuery>) -> Response {
    let filter = atoll_store::HostFilter { after: q.after.clone(), limit: Some(PAGE + 1), ..Default::default() };
    let (mut hosts, counts) = match tokio::try_join!(state.store.list_host_summaries(&filter), state.store.count_hosts_by_status()) {
        Ok(r) => r,
        Err(e) => return error_page(Some(&caller), e.into()),
    };
    let next = (hosts.len() > PAGE as usize).then(|| {
        hosts.truncate(PAGE as usize);
        format!("/hosts?after={}", hosts.last().map(|h| h.name.as_str()).unwrap_or_default())
    });
    let summary = HostSummary::from_counts(&counts);
    let now = now_ms();
    let rows = hosts.iter().map(|h| row(h, now)).collect();
    if (FragmentQuery { fragment: q.fragment }).wanted() {
        page(&HostsFragment { rows, summary, next })
    } else {
        page(&HostsPage { chrome: Chrome::for_caller(&caller, "hosts"), rows, summary, next })
    }
}

/// Facts, formatted for the detail page.
pub(crate) struct FactsView {
    hostname: String,
    cpu_model: String,
    cores: u32,
    memory_total: String,
    memory_available: String,
    os: String,
    kernel: String,
    arch: String,
    nofile_soft: u64,
    nofile_hard: u64,
    sysctls: Vec<(String, String)>,
    clock_offset: String,
    collected_at: String,
    mounts: Vec<MountView>,
    nics: Vec<NicView>,
    /// Engine builds: name, version, where it lives.
    engines: Vec<(String, String, String)>,
}

pub(crate) struct MountView {
    path: String,
    device: String,
    fs_type: String,
    total: String,
    free: String,
    ssd: &'static str,
}

pub(crate) struct NicView {
    name: String,
    speed: String,
    mtu: String,
}

fn facts_view(f: &HostFacts) -> FactsView {
    FactsView {
        hostname: f.hostname.clone(),
        cpu_model: f.cpu.model.clone(),
        cores: f.cpu.cores,
        memory_total: fmt::bytes(f.memory_bytes),
        memory_available: fmt::bytes(f.memory_available_bytes),
        os: f.os.name.clone(),
        kernel: f.os.kernel.clone(),
        arch: f.os.arch.clone(),
        nofile_soft: f.nofile.soft,
        nofile_hard: f.nofile.hard,
        sysctls: f.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        engines: f
            .engines
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    e.version.clone().unwrap_or_else(|| "unknown".into()),
                    e.basedir.clone().unwrap_or_else(|| e.mariadbd.clone()),
                )
            })
            .collect(),
        clock_offset: f.clock_offset_ms.map_or_else(|| "not measured yet".into(), |ms| format!("{ms} ms")),
        collected_at: fmt::utc(f.collected_at_ms),
        mounts: f
            .mounts
            .iter()
            .map(|m| MountView {
                path: m.path.clone(),
                device: m.device.clone(),
                fs_type: m.fs_type.clone(),
                total: fmt::bytes(m.total_bytes),
                free: fmt::bytes(m.free_bytes),
                ssd: match m.ssd {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "unknown",
                },
            })
            .collect(),
        nics: f
            .nics
            .iter()
            .map(|n| NicView {
                name: n.name.clone(),
                speed: n.speed_mbps.map_or_else(|| "unknown".into(), |s| format!("{s} Mbit/s")),
                mtu: n.mtu.map_or_else(|| "unknown".into(), |m| m.to_string()),
            })
            .collect(),
    }
}

pub(crate) struct CheckRow {
    item: String,
    status: &'static str,
    measured: String,
    required: String,
    fix: String,
}

pub(crate) struct ChecksView {
    profile: String,
    data_dir: String,
    worst: &'static str,
    checked_at: String,
    checked_ago: String,
    rows: Vec<CheckRow>,
}

#[derive(Template)]
#[template(path = "host.html")]
struct HostPage {
    chrome: Chrome,
    name: String,
    id: String,
    address: String,
    region: String,
    zone: String,
    status: &'static str,
    agent_url: String,
    agent_version: String,
    created_at: String,
    heartbeat: String,
    heartbeat_at: String,
    facts: Option<FactsView>,
    checks: Option<ChecksView>,
    /// Precheck profiles to offer, the server's default first.
    profiles: Vec<&'static str>,
    alarms: Vec<super::alerts::AlarmLine>,
    charts: super::charts::Charts,
}

pub async fn detail(
    State(state): State<AppState>,
    Session(caller): Session,
    Path(key): Path<String>,
    Query(q): Query<super::charts::PageQuery>,
) -> Response {
    let record = match state.store.find_host(&key).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error_page(Some(&caller), ApiError::NotFound(format!("no host {key:?}: the hosts page lists the hosts there are")));
        }
        Err(e) => return error_page(Some(&caller), e.into()),
    };
    let now = now_ms();
    let checks = report(&record).map(|c| ChecksView {
        profile: c.profile,
        data_dir: c.data_dir,
        worst: c.worst.as_str(),
        checked_at: fmt::utc(c.checked_at_ms),
        checked_ago: fmt::ago(now, c.checked_at_ms),
        rows: c
            .results
            .into_iter()
            .map(|r| CheckRow {
                item: r.item,
                status: r.status.as_str(),
                measured: r.measured,
                required: r.required,
                fix: r.fix.unwrap_or_default(),
            })
            .collect(),
    });
    let h = record.host;
    let charts = super::charts::draw(&state, super::charts::for_host(&h.name), &q, now).await;
    if q.fragment() == Some("charts") {
        return page(&super::charts::ChartsFragment { charts });
    }
    let alarms = super::alerts::active_for(&state, "host", &h.name, now).await;
    // Offer the profile of the last check first, else the server's default.
    let preferred = checks.as_ref().map_or(state.config.profile.as_str(), |c| c.profile.as_str());
    let profiles = if preferred == "sandbox" { vec!["sandbox", "production"] } else { vec!["production", "sandbox"] };
    page(&HostPage {
        chrome: Chrome::for_caller(&caller, "hosts"),
        id: h.id.to_string(),
        address: h.address,
        region: h.region.clone().unwrap_or_else(|| atoll_core::DEFAULT_REGION.into()),
        zone: h.zone.unwrap_or_else(|| "—".into()),
        status: h.status.as_str(),
        agent_url: h.agent_url.unwrap_or_else(|| "—".into()),
        agent_version: h.agent_version.unwrap_or_else(|| "—".into()),
        created_at: fmt::utc(h.created_at_ms),
        heartbeat: h.last_heartbeat_ms.map_or_else(|| "never".into(), |t| fmt::ago(now, t)),
        heartbeat_at: h.last_heartbeat_ms.map(|t| format!("{} UTC", fmt::utc(t))).unwrap_or_default(),
        facts: h.facts.as_ref().map(facts_view),
        checks,
        profiles,
        alarms,
        charts,
        name: h.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::{Host, HostId, HostStatus};

    fn record(name: &str, status: HostStatus) -> HostRecord {
        HostRecord {
            host: Host {
                id: HostId::new(),
                name: name.into(),
                address: "10.0.0.1".into(),
                agent_url: None,
                zone: None,
                region: None,
                status,
                facts: Some(HostFacts { memory_bytes: 8 << 30, ..HostFacts::default() }),
                agent_version: Some("0.1.0".into()),
                created_at_ms: 0,
                last_heartbeat_ms: Some(1_000),
            },
            agent_token_hash: None,
            server_token: None,
            checks: None,
            checked_at_ms: None,
        }
    }

    #[test]
    fn fragment_escapes_and_marks_rows() {
        let hosts = [record("db-1", HostStatus::Online), record("<b>x</b>", HostStatus::Pending)].map(|r| HostSummaryRecord::of(&r));
        let summary = HostSummary::of(hosts.iter().map(|h| h.status));
        let rows = hosts.iter().map(|h| row(h, 4_000)).collect();
        let html = HostsFragment { rows, summary, next: Some("/hosts?after=db-1".into()) }.render().expect("renders");
        assert!(html.contains(r#"<a id="hosts-next" href="/hosts?after=db-1">"#), "{html}");
        assert!(html.contains(r#"<tr data-host="db-1""#), "{html}");
        assert!(html.contains(r#"<td class="status"><span class="badge s-online">online</span></td>"#), "{html}");
        assert!(html.contains("2 hosts: "), "{html}");
        assert!(html.contains("8.0 GiB") && html.contains("3 s ago"), "{html}");
        assert!(!html.contains("<b>x</b>"), "{html}");
        assert!(html.contains("&#60;b&#62;x") || html.contains("&lt;b&gt;x"), "{html}");
    }
}

//! `/clusters` and `/clusters/{name}`: every cluster's health at a glance,
//! and one cluster's zones and servers as their agents report them. Both
//! stay live by re-fetching their fragment.

use askama::Template;
use atoll_api::v1::{ClusterView, ServerView};
use atoll_core::time::now_ms;
use atoll_core::{ClusterStatus, Durability, ServerState, StepStatus, TaskStatus, UnixMs};
use atoll_store::{TaskFilter, TaskRecord};
use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::charts::{self, Charts, ChartsFragment, PageQuery};
use super::{Chrome, FragmentQuery, Session, error_page, fmt, page};
use crate::error::ApiError;
use crate::state::AppState;

/// Tasks shown on a cluster's page.
const TASKS: usize = 20;

/// What each durability profile means, in one sentence.
pub fn durability_note(d: Durability) -> &'static str {
    match d {
        Durability::Durable => "flushes every commit to disk before acknowledging it",
        Durability::Fast => "acknowledges commits before they reach disk: a crash of several nodes can lose acknowledged writes",
    }
}

/// How a server's state reads at a glance (the colour of its card's edge;
/// its badge has the same colour through `.s-{state}`): `ok` green, `busy`
/// amber (on its way somewhere), `bad` red, `idle` grey.
pub fn server_tone(s: ServerState) -> &'static str {
    match s {
        ServerState::Synced => "ok",
        ServerState::Joining | ServerState::Donor | ServerState::Starting => "busy",
        ServerState::Crashed | ServerState::CrashLoop | ServerState::NonPrimary | ServerState::Unknown => "bad",
        ServerState::Stopped => "idle",
    }
}

/// The same for a cluster's status.
pub fn cluster_tone(s: ClusterStatus) -> &'static str {
    match s {
        ClusterStatus::Healthy => "ok",
        ClusterStatus::Degraded | ClusterStatus::Creating => "busy",
        ClusterStatus::Unavailable => "bad",
        ClusterStatus::Stopped => "idle",
    }
}

/// A fraction (`wsrep_flow_control_paused`, 0.0–1.0) as a percentage with
/// one decimal; a little above nothing reads "<0.1 %" so it does not look
/// like zero, and garbage reads as a dash.
pub fn percent(fraction: f64) -> String {
    if !fraction.is_finite() {
        return "—".into();
    }
    let p = fraction.clamp(0.0, 1.0) * 100.0;
    if p > 0.0 && p < 0.05 { "<0.1 %".into() } else { format!("{p:.1} %") }
}

/// Flow control above this fraction of the time means a node holds the
/// cluster's writes back: worth a colour.
const FLOW_CONTROL_HIGH: f64 = 0.1;

/// A Galera seqno; -1 (and below) means none yet.
pub fn seqno(n: i64) -> String {
    if n < 0 { "—".into() } else { n.to_string() }
}

/// One row of the clusters table, already formatted.
pub(crate) struct ClusterRow {
    name: String,
    status: &'static str,
    tone: &'static str,
    durability: &'static str,
    engine: String,
    zones: usize,
    synced: usize,
    total: usize,
    created_at: String,
}

fn count_servers(v: &ClusterView) -> (usize, usize) {
    let all = v.zones.iter().flat_map(|z| &z.servers);
    let (mut synced, mut total) = (0, 0);
    for s in all {
        total += 1;
        synced += usize::from(s.state == ServerState::Synced);
    }
    (synced, total)
}

fn row(v: &ClusterView) -> ClusterRow {
    let (synced, total) = count_servers(v);
    ClusterRow {
        name: v.name.clone(),
        status: v.status.as_str(),
        tone: cluster_tone(v.status),
        durability: v.durability.as_str(),
        engine: v.engine.clone(),
        zones: v.zones.len(),
        synced,
        total,
        created_at: fmt::utc(v.created_at_ms),
    }
}

/// Counts for the line above the table.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ClusterSummary {
    total: usize,
    healthy: usize,
    degraded: usize,
    unavailable: usize,
    /// Creating or stopped.
    other: usize,
}

impl ClusterSummary {
    fn of(views: &[ClusterView]) -> Self {
        let mut s = Self { total: views.len(), ..Self::default() };
        for v in views {
            match v.status {
                ClusterStatus::Healthy => s.healthy += 1,
                ClusterStatus::Degraded => s.degraded += 1,
                ClusterStatus::Unavailable => s.unavailable += 1,
                ClusterStatus::Creating | ClusterStatus::Stopped => s.other += 1,
            }
        }
        s
    }
}

#[derive(Template)]
#[template(path = "clusters.html")]
struct ClustersPage {
    chrome: Chrome,
    rows: Vec<ClusterRow>,
    summary: ClusterSummary,
}

/// The live part of `/clusters`: summary line and table.
#[derive(Template)]
#[template(path = "clusters_table.html")]
struct ClustersFragment {
    rows: Vec<ClusterRow>,
    summary: ClusterSummary,
}

async fn views(state: &AppState) -> Result<Vec<ClusterView>, ApiError> {
    let hosts = crate::clusters::view::host_names(state).await?;
    let mut clusters = state.store.list_clusters().await?;
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(clusters.len());
    for c in clusters {
        out.push(crate::clusters::view::view_of(state, &c, &hosts).await?);
    }
    Ok(out)
}

pub async fn list(State(state): State<AppState>, Session(caller): Session, Query(q): Query<FragmentQuery>) -> Response {
    let views = match views(&state).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(&caller), e),
    };
    let summary = ClusterSummary::of(&views);
    let rows = views.iter().map(row).collect();
    if q.wanted() {
        page(&ClustersFragment { rows, summary })
    } else {
        page(&ClustersPage { chrome: Chrome::for_caller(&caller, "clusters"), rows, summary })
    }
}

/// What Galera says about one node.
pub(crate) struct WsrepCard {
    comment: String,
    /// `Primary`, `non-Primary`, `Disconnected`.
    component: String,
    primary: bool,
    cluster_size: u32,
    /// Fewer nodes in its component than the cluster has servers.
    size_short: bool,
    flow_control: String,
    flow_control_high: bool,
    last_committed: String,
}

/// The agent's last report about one server.
pub(crate) struct ReportCard {
    wsrep: Option<WsrepCard>,
    pid: String,
    restarts: u32,
    last_exit: Option<String>,
    read_only: bool,
    probe_error: Option<String>,
    /// "2 s ago", and the UTC time for the tooltip.
    age: String,
    at: String,
}

pub(crate) struct ServerCard {
    name: String,
    /// Takes the read-write connections (`moving` while a move to it runs).
    role: &'static str,
    state: &'static str,
    tone: &'static str,
    host: String,
    endpoint: String,
    report: Option<ReportCard>,
}

pub(crate) struct ZoneCard {
    name: String,
    segment: u8,
    synced: usize,
    servers: Vec<ServerCard>,
}

fn server_card(v: &ClusterView, s: &ServerView, cluster_servers: usize, now: UnixMs) -> ServerCard {
    let report = s.status.as_ref().map(|st| {
        let at_ms = s.status_at_ms.unwrap_or(st.probed_at_ms);
        ReportCard {
            wsrep: st.wsrep.as_ref().map(|w| WsrepCard {
                comment: if w.local_state_comment.is_empty() { "—".into() } else { w.local_state_comment.clone() },
                primary: w.cluster_status == "Primary",
                component: w.cluster_status.clone(),
                cluster_size: w.cluster_size,
                size_short: (w.cluster_size as usize) < cluster_servers,
                flow_control: percent(w.flow_control_paused),
                flow_control_high: w.flow_control_paused >= FLOW_CONTROL_HIGH,
                last_committed: seqno(w.last_committed),
            }),
            pid: st.pid.map_or_else(|| "—".into(), |p| p.to_string()),
            restarts: st.restarts,
            last_exit: st.last_exit.clone(),
            read_only: st.read_only == Some(true),
            probe_error: st.probe_error.clone(),
            age: fmt::ago(now, at_ms),
            at: format!("{} UTC", fmt::utc(at_ms)),
        }
    });
    let role = if v.moving_to.as_deref() == Some(s.name.as_str()) {
        "becoming writer"
    } else if v.writer.as_deref() == Some(s.name.as_str()) {
        "writer"
    } else {
        ""
    };
    ServerCard {
        name: s.name.clone(),
        role,
        state: s.state.as_str(),
        tone: server_tone(s.state),
        host: s.host.clone(),
        endpoint: format!("{}:{}", s.address, s.port),
        report,
    }
}

fn zone_cards(v: &ClusterView, now: UnixMs) -> Vec<ZoneCard> {
    let (_, total) = count_servers(v);
    v.zones
        .iter()
        .map(|z| ZoneCard {
            name: z.name.clone(),
            segment: z.segment,
            synced: z.servers.iter().filter(|s| s.state == ServerState::Synced).count(),
            servers: z.servers.iter().map(|s| server_card(v, s, total, now)).collect(),
        })
        .collect()
}

pub(crate) struct TaskLine {
    id: String,
    short_id: String,
    title: String,
    kind: String,
    status: &'static str,
    /// Running, cancelling or rolling back.
    active: bool,
    done: usize,
    total: usize,
    created_at: String,
    /// Titles of the steps running now.
    running_steps: Vec<String>,
}

/// Whether a task is still moving (an executor has work in it).
fn is_active(s: TaskStatus) -> bool {
    matches!(s, TaskStatus::Running | TaskStatus::Cancelling | TaskStatus::RollingBack)
}

pub(crate) struct ProxyLine {
    name: String,
    zone: String,
    host: String,
    rw: String,
    ro: String,
    state: &'static str,
    rw_connections: String,
    ro_connections: String,
    restarts: u32,
}

fn proxy_line(p: &atoll_api::v1::ProxyView) -> ProxyLine {
    let count = |n: Option<u64>| n.map_or_else(|| "—".into(), |n| n.to_string());
    ProxyLine {
        name: p.name.clone(),
        zone: p.zone.clone(),
        host: p.host.clone(),
        rw: format!("{}:{}", p.address, p.rw_port),
        ro: format!("{}:{}", p.address, p.ro_port),
        state: match p.state {
            Some(atoll_api::proxy::ProxyState::Running) => "running",
            Some(atoll_api::proxy::ProxyState::Starting) => "starting",
            Some(atoll_api::proxy::ProxyState::Crashed) => "crashed",
            Some(atoll_api::proxy::ProxyState::Stopped) => "stopped",
            None => "unknown",
        },
        rw_connections: count(p.rw_connections),
        ro_connections: count(p.ro_connections),
        restarts: p.restarts.unwrap_or(0),
    }
}

/// Everything on the cluster's page that changes while one looks at it.
pub(crate) struct Live {
    /// The cluster's name.
    name: String,
    status: &'static str,
    zones: Vec<ZoneCard>,
    proxies: Vec<ProxyLine>,
    tasks: Vec<TaskLine>,
    /// Its part in a primary/standby pair.
    replication: Option<ReplicationLine>,
    /// Index into `tasks` of the newest active task.
    running: Option<usize>,
    /// Index into `tasks` of the newest task, when it failed and waits for
    /// an operator (and nothing is running).
    failed: Option<usize>,
}

/// The pair as the cluster page shows it.
pub(crate) struct ReplicationLine {
    role: String,
    domain: u32,
    /// The other side: a standby's primary, a primary's standbys.
    peers: Vec<String>,
    /// A standby's channel: source → applier, lag, error.
    channel: Option<ChannelLine>,
}

pub(crate) struct ChannelLine {
    source: String,
    applier: String,
    running: bool,
    seconds_behind: String,
    transactions_behind: String,
    last_error: String,
}

fn replication_line(r: &atoll_api::v1::ReplicationView) -> ReplicationLine {
    let n = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    ReplicationLine {
        role: r.role.clone(),
        domain: r.domain,
        peers: r.primary.iter().cloned().chain(r.standbys.iter().cloned()).collect(),
        channel: r.channel.as_ref().map(|c| ChannelLine {
            source: c.source.clone(),
            applier: c.applier.clone(),
            running: c.running,
            seconds_behind: n(c.seconds_behind),
            transactions_behind: n(c.transactions_behind),
            last_error: c.last_error.clone().unwrap_or_default(),
        }),
    }
}

impl Live {
    fn new(v: &ClusterView, tasks: Vec<TaskLine>, now: UnixMs) -> Self {
        let running = tasks.iter().position(|t| t.active);
        let failed = match (running, tasks.first()) {
            (None, Some(t)) if t.status == TaskStatus::Failed.as_str() => Some(0),
            _ => None,
        };
        Self {
            name: v.name.clone(),
            status: v.status.as_str(),
            zones: zone_cards(v, now),
            proxies: v.proxies.iter().map(proxy_line).collect(),
            tasks,
            replication: v.replication.as_ref().map(replication_line),
            running,
            failed,
        }
    }

    fn running_task(&self) -> Option<&TaskLine> {
        self.running.and_then(|i| self.tasks.get(i))
    }

    fn failed_task(&self) -> Option<&TaskLine> {
        self.failed.and_then(|i| self.tasks.get(i))
    }
}

#[derive(Template)]
#[template(path = "cluster.html")]
struct ClusterPage {
    chrome: Chrome,
    name: String,
    engine: String,
    durability: &'static str,
    durability_note: &'static str,
    created_by: String,
    created_at: String,
    params: Vec<(String, String)>,
    live: Live,
    alarms: Vec<super::alerts::AlarmLine>,
    charts: Charts,
}

/// The live part of `/clusters/{name}`.
#[derive(Template)]
#[template(path = "cluster_live.html")]
struct ClusterFragment {
    live: Live,
}

fn cluster_page(
    chrome: Chrome,
    v: &ClusterView,
    tasks: Vec<TaskLine>,
    now: UnixMs,
    alarms: Vec<super::alerts::AlarmLine>,
    charts: Charts,
) -> ClusterPage {
    ClusterPage {
        chrome,
        name: v.name.clone(),
        engine: v.engine.clone(),
        durability: v.durability.as_str(),
        durability_note: durability_note(v.durability),
        created_by: v.created_by.clone(),
        created_at: fmt::utc(v.created_at_ms),
        params: v.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        live: Live::new(v, tasks, now),
        alarms,
        charts,
    }
}

async fn task_lines(state: &AppState, cluster: &str) -> Result<Vec<TaskLine>, ApiError> {
    // A host may share the cluster's name: keep only cluster tasks.
    let filter = TaskFilter { target: Some(cluster.to_string()), limit: TASKS as u32 * 2, ..TaskFilter::default() };
    let tasks: Vec<TaskRecord> =
        state.store.list_tasks(&filter).await?.into_iter().filter(|t| t.kind.starts_with("cluster.")).take(TASKS).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let steps = state.store.task_steps(&t.id).await?;
        out.push(TaskLine {
            short_id: fmt::short_id(&t.id).to_string(),
            title: t.title,
            kind: t.kind,
            status: t.status.as_str(),
            active: is_active(t.status),
            done: steps.iter().filter(|s| s.status.is_done()).count(),
            total: steps.len(),
            created_at: fmt::utc(t.created_at_ms),
            running_steps: if is_active(t.status) {
                steps.into_iter().filter(|s| matches!(s.status, StepStatus::Running | StepStatus::RollingBack)).map(|s| s.title).collect()
            } else {
                Vec::new()
            },
            id: t.id,
        });
    }
    Ok(out)
}

async fn load(state: &AppState, name: &str) -> Result<(ClusterView, Vec<TaskLine>), ApiError> {
    let c = state
        .store
        .get_cluster(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster {name:?}: the clusters page lists the clusters there are")))?;
    let view = crate::clusters::view::view_of(state, &c, &crate::clusters::view::host_names(state).await?).await?;
    let tasks = task_lines(state, name).await?;
    Ok((view, tasks))
}

pub async fn detail(
    State(state): State<AppState>,
    Session(caller): Session,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let now = now_ms();
    if q.fragment() == Some("charts") {
        if let Err(e) = state.store.get_cluster(&name).await {
            return error_page(Some(&caller), e.into());
        }
        return page(&ChartsFragment { charts: charts::draw(&state, charts::for_cluster(&name), &q, now).await });
    }
    let (view, tasks) = match load(&state, &name).await {
        Ok(l) => l,
        Err(e) => return error_page(Some(&caller), e),
    };
    if q.fragment().is_some() {
        return page(&ClusterFragment { live: Live::new(&view, tasks, now) });
    }
    let alarms = super::alerts::active_for(&state, "cluster", &name, now).await;
    let charts = charts::draw(&state, charts::for_cluster(&name), &q, now).await;
    page(&cluster_page(Chrome::for_caller(&caller, "clusters"), &view, tasks, now, alarms, charts))
}

/// A proxy's page: where it runs, and its charts.
#[derive(Template)]
#[template(path = "proxy.html")]
struct ProxyPage {
    chrome: Chrome,
    cluster: String,
    name: String,
    zone: String,
    host: String,
    charts: Charts,
}

pub async fn proxy(
    State(state): State<AppState>,
    Session(caller): Session,
    Path((cluster, name)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let now = now_ms();
    let found = async {
        let proxies = state.store.cluster_proxies(&cluster).await?;
        let p = proxies.into_iter().find(|p| p.name == name);
        p.ok_or_else(|| ApiError::NotFound(format!("cluster {cluster:?} has no proxy {name:?}: its page lists its proxies")))
    }
    .await;
    let p = match found {
        Ok(p) => p,
        Err(e) => return error_page(Some(&caller), e),
    };
    let charts = charts::draw(&state, charts::for_proxy(&cluster, &name), &q, now).await;
    if q.fragment() == Some("charts") {
        return page(&ChartsFragment { charts });
    }
    let hosts = crate::clusters::view::host_names(&state).await.unwrap_or_default();
    let host = hosts.get(&p.host_id).cloned().unwrap_or_else(|| p.host_id.to_string());
    page(&ProxyPage { chrome: Chrome::for_caller(&caller, "clusters"), cluster, name, zone: p.zone, host, charts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_api::db::{DbServerStatus, WsrepStatus};
    use atoll_api::v1::ZoneView;

    const NOW: UnixMs = 1_700_000_010_000;

    fn caller() -> crate::auth::Caller {
        crate::auth::Caller {
            user: "ann".into(),
            role: atoll_core::Role::Viewer,
            must_change_password: false,
            kind: crate::auth::AuthKind::Session,
            credential_hash: String::new(),
            source: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        }
    }

    fn server(name: &str, state: ServerState, report: bool) -> ServerView {
        ServerView {
            name: name.into(),
            host: format!("host-{name}"),
            address: "127.0.0.11".into(),
            port: 3306,
            state,
            status: report.then(|| DbServerStatus {
                id: atoll_core::DbId::new("orders", name),
                state,
                desired_running: true,
                pid: Some(4242),
                restarts: if state == ServerState::Crashed { 2 } else { 0 },
                last_exit: (state == ServerState::Crashed).then(|| "killed by signal 9 <SIGKILL>".to_string()),
                wsrep: Some(WsrepStatus {
                    ready: true,
                    cluster_status: "Primary".into(),
                    local_state: 4,
                    local_state_comment: "Synced".into(),
                    cluster_size: 2,
                    flow_control_paused: 0.125,
                    gcomm_uuid: String::new(),
                    cluster_state_uuid: String::new(),
                    last_committed: 1234,
                }),
                read_only: Some(false),
                replication: None,
                probed_at_ms: NOW - 2_000,
                probe_error: None,
            }),
            status_at_ms: report.then_some(NOW - 2_000),
        }
    }

    fn view(durability: Durability) -> ClusterView {
        ClusterView {
            name: "orders".into(),
            region: atoll_core::DEFAULT_REGION.into(),
            engine: "mariadb-galera".into(),
            durability,
            status: ClusterStatus::Degraded,
            zones: vec![
                ZoneView { name: "z1".into(), segment: 0, servers: vec![server("orders-1", ServerState::Synced, true)] },
                ZoneView { name: "z2".into(), segment: 1, servers: vec![server("orders-2", ServerState::Crashed, true)] },
                ZoneView { name: "z<3>".into(), segment: 2, servers: vec![server("orders-3", ServerState::Unknown, false)] },
            ],
            writer: Some("orders-1".into()),
            moving_to: None,
            proxies: vec![atoll_api::v1::ProxyView {
                name: "orders-proxy-z1".into(),
                zone: "z1".into(),
                host: "db1".into(),
                address: "10.0.0.1".into(),
                rw_port: 6033,
                ro_port: 6034,
                admin_port: 6035,
                state: Some(atoll_api::proxy::ProxyState::Running),
                pid: Some(777),
                rw_connections: Some(7),
                ro_connections: Some(2),
                restarts: Some(0),
                status_at_ms: Some(NOW - 1_000),
            }],
            params: [("max_connections".to_string(), "500".to_string())].into(),
            replication: None,
            created_by: "ann".into(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn task(id: &str, status: TaskStatus) -> TaskLine {
        TaskLine {
            id: id.into(),
            short_id: fmt::short_id(id).into(),
            title: "create orders".into(),
            kind: "cluster.create".into(),
            status: status.as_str(),
            active: is_active(status),
            done: 3,
            total: 9,
            created_at: fmt::utc(0),
            running_steps: if status == TaskStatus::Running { vec!["start orders-2 & join".into()] } else { Vec::new() },
        }
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(0.0), "0.0 %");
        assert_eq!(percent(0.125), "12.5 %");
        assert_eq!(percent(1.0), "100.0 %");
        assert_eq!(percent(0.0001), "<0.1 %");
        assert_eq!(percent(0.0005), "0.1 %");
        assert_eq!(percent(-0.5), "0.0 %");
        assert_eq!(percent(3.0), "100.0 %");
        assert_eq!(percent(f64::NAN), "—");
        assert_eq!(percent(f64::INFINITY), "—");
    }

    #[test]
    fn seqnos() {
        assert_eq!(seqno(-1), "—");
        assert_eq!(seqno(0), "0");
        assert_eq!(seqno(98_765), "98765");
    }

    #[test]
    fn tones() {
        assert_eq!(server_tone(ServerState::Synced), "ok");
        for s in [ServerState::Joining, ServerState::Donor, ServerState::Starting] {
            assert_eq!(server_tone(s), "busy", "{s}");
        }
        for s in [ServerState::Crashed, ServerState::CrashLoop, ServerState::NonPrimary, ServerState::Unknown] {
            assert_eq!(server_tone(s), "bad", "{s}");
        }
        assert_eq!(server_tone(ServerState::Stopped), "idle");
        assert_eq!(cluster_tone(ClusterStatus::Healthy), "ok");
        assert_eq!(cluster_tone(ClusterStatus::Degraded), "busy");
        assert_eq!(cluster_tone(ClusterStatus::Creating), "busy");
        assert_eq!(cluster_tone(ClusterStatus::Unavailable), "bad");
        assert_eq!(cluster_tone(ClusterStatus::Stopped), "idle");
    }

    /// Every status a badge can show has a colour in the stylesheet that
    /// matches its tone (grey is the default, so `idle` needs none).
    #[test]
    fn stylesheet_colours_every_state() {
        let css = include_str!("../../assets/console.css");
        let colour = |tone: &str| match tone {
            "ok" => "--green",
            "busy" => "--amber",
            "bad" => "--red",
            _ => "",
        };
        let states = [
            ServerState::Stopped,
            ServerState::Starting,
            ServerState::Joining,
            ServerState::Donor,
            ServerState::Synced,
            ServerState::NonPrimary,
            ServerState::Crashed,
            ServerState::CrashLoop,
            ServerState::Unknown,
        ];
        let statuses =
            [ClusterStatus::Creating, ClusterStatus::Healthy, ClusterStatus::Degraded, ClusterStatus::Unavailable, ClusterStatus::Stopped];
        let pairs = states.iter().map(|s| (s.as_str(), server_tone(*s))).chain(statuses.iter().map(|s| (s.as_str(), cluster_tone(*s))));
        for (name, tone) in pairs {
            let class = format!(".s-{name}");
            let rule = css.lines().find(|l| l.split([',', '{']).any(|sel| sel.trim() == class));
            match colour(tone) {
                "" => assert!(rule.is_none(), "{class} should stay grey"),
                c => {
                    let rule = rule.unwrap_or_else(|| panic!("no colour for {class}"));
                    assert!(rule.contains(c), "{class} should be {c}: {rule}");
                }
            }
        }
    }

    #[test]
    fn durability_notes() {
        assert_eq!(durability_note(Durability::Durable), "flushes every commit to disk before acknowledging it");
        assert!(durability_note(Durability::Fast).starts_with("acknowledges commits before they reach disk"));
    }

    #[test]
    fn list_rows_and_summary() {
        let mut healthy = view(Durability::Durable);
        healthy.name = "<i>x</i>".into();
        healthy.status = ClusterStatus::Healthy;
        let views = vec![view(Durability::Fast), healthy];
        let summary = ClusterSummary::of(&views);
        assert_eq!(summary, ClusterSummary { total: 2, healthy: 1, degraded: 1, unavailable: 0, other: 0 });
        let html = ClustersFragment { rows: views.iter().map(row).collect(), summary }.render().expect("renders");
        assert!(html.contains(r#"<tr data-cluster="orders" data-href="/clusters/orders" class="tone-busy">"#), "{html}");
        assert!(html.contains(r#"<td class="status"><span class="badge s-degraded">degraded</span></td>"#), "{html}");
        assert!(html.contains(r#"<span class="durability d-fast""#), "{html}");
        assert!(html.contains(r#"<td class="num server-count">1/3</td>"#), "{html}");
        assert!(html.contains(r#"<td class="num zone-count">3</td>"#), "{html}");
        assert!(html.contains("2 clusters: "), "{html}");
        assert!(!html.contains("<i>x</i>"), "{html}");
        assert!(html.contains("&#60;i&#62;x") || html.contains("&lt;i&gt;x"), "{html}");
        assert!(html.contains("/clusters/%3Ci%3Ex%3C%2Fi%3E"), "{html}");

        let empty = ClustersFragment { rows: Vec::new(), summary: ClusterSummary::default() }.render().expect("renders");
        assert!(empty.contains("atoll cluster create NAME --host z1=HOST --host z2=HOST --host z3=HOST"), "{empty}");
    }

    #[test]
    fn a_standby_page_shows_its_primary_channel_and_lag() {
        let mut v = view(Durability::Durable);
        assert!(
            !cluster_page(Chrome::for_caller(&caller(), "clusters"), &v, Vec::new(), NOW, Vec::new(), Charts::none())
                .render()
                .expect("renders")
                .contains(r#"id="replication""#)
        );
        v.replication = Some(atoll_api::v1::ReplicationView {
            role: "standby".into(),
            domain: 4,
            primary: Some("shop".into()),
            standbys: Vec::new(),
            channel: Some(atoll_api::v1::ReplicaChannelView {
                applier: "orders-2".into(),
                source: "shop-1".into(),
                running: false,
                seconds_behind: None,
                transactions_behind: Some(17),
                last_error: Some("Duplicate entry '5' <for key>".into()),
            }),
        });
        let html = cluster_page(Chrome::for_caller(&caller(), "clusters"), &v, Vec::new(), NOW, Vec::new(), Charts::none())
            .render()
            .expect("renders");
        assert!(html.contains(r#"<table class="kv" id="replication" data-role="standby">"#), "{html}");
        assert!(html.contains("standby (read only) · domain 4") && html.contains(r#"<a href="/clusters/shop">shop</a>"#), "{html}");
        assert!(
            html.contains(
                r#"<td class="repl-channel bad">stopped from <span class="mono">shop-1</span> on <span class="mono">orders-2</span>"#
            ),
            "{html}"
        );
        assert!(html.contains("- s · 17 transactions"), "{html}");
        assert!(html.contains("&#60;for key&#62;") || html.contains("&lt;for key&gt;"), "{html}");
    }

    #[test]
    fn cluster_page_renders_zones_servers_and_tasks() {
        let v = view(Durability::Fast);
        let tasks = vec![task("0123456789-running", TaskStatus::Running), task("abcdefgh-old", TaskStatus::Succeeded)];
        let html =
            cluster_page(Chrome::for_caller(&caller(), "clusters"), &v, tasks, NOW, Vec::new(), Charts::none()).render().expect("renders");
        // Header and chrome.
        assert!(html.contains(r#"<span id="cluster-name">orders</span>"#), "{html}");
        assert!(html.contains(r#"<span id="cluster-status" class="badge s-degraded">degraded</span>"#), "{html}");
        assert!(html.contains(r#"<a href="/clusters" class="current" aria-current="page">Clusters</a>"#), "{html}");
        assert!(html.contains(r#"id="durability""#) && html.contains("d-fast"), "{html}");
        assert!(html.contains("a crash of several nodes can lose acknowledged writes"), "{html}");
        assert!(html.contains("atoll cluster credentials orders"), "{html}");
        assert!(!html.contains("password\":") && !html.contains("-p'"), "{html}");
        // Zones side by side, servers inside.
        assert!(html.contains(r#"<div class="zone" data-zone="z1">"#), "{html}");
        assert!(html.contains("segment 1"), "{html}");
        assert!(html.contains(r#"data-zone="z&#60;3&#62;""#) || html.contains(r#"data-zone="z&lt;3&gt;""#), "{html}");
        assert!(html.contains(r#"<div class="server tone-ok" data-server="orders-1">"#), "{html}");
        assert!(html.contains(r#"<span class="server-state badge s-synced">synced</span>"#), "{html}");
        assert!(html.contains(r#"<span class="server-state badge s-crashed">crashed</span>"#), "{html}");
        assert!(html.contains(r#"<span class="server-state badge s-unknown">unknown</span>"#), "{html}");
        assert!(html.contains(r#"<a href="/hosts/host-orders-1">host-orders-1</a>"#), "{html}");
        assert!(html.contains("127.0.0.11:3306"), "{html}");
        assert!(html.contains(r#"<td class="wsrep-state">Synced</td>"#), "{html}");
        assert!(html.contains(r#"<td class="flow-control warn">12.5 %</td>"#), "{html}");
        assert!(html.contains(r#"<td class="last-committed mono">1234</td>"#), "{html}");
        assert!(html.contains(r#"class="cluster-size warn">2</td>"#), "{html}");
        assert!(html.contains(r#"<td class="pid mono">4242</td>"#), "{html}");
        assert!(html.contains("2 s ago"), "{html}");
        // The crash, escaped.
        assert!(html.contains(r#"<td class="restarts warn">2</td>"#), "{html}");
        assert!(html.contains("killed by signal 9 &#60;SIGKILL&#62;") || html.contains("killed by signal 9 &lt;SIGKILL&gt;"), "{html}");
        assert!(!html.contains("<SIGKILL>"), "{html}");
        assert!(html.contains("no report from its agent yet"), "{html}");
        // Tasks: the running one on top, and the list.
        assert!(html.contains(r#"id="running-task""#), "{html}");
        assert!(html.contains(r#"href="/tasks/0123456789-running""#), "{html}");
        assert!(html.contains("start orders-2 &#38; join") || html.contains("start orders-2 &amp; join"), "{html}");
        assert!(html.contains(r#"<tr data-task="abcdefgh-old" data-href="/tasks/abcdefgh-old">"#), "{html}");
        assert!(html.contains(r#"<span class="badge s-succeeded">succeeded</span>"#), "{html}");
        assert!(!html.contains(r#"id="failed-task""#), "{html}");
        // The writer, and where applications connect.
        assert!(
            html.contains(r#"<span class="server-name">orders-1</span><span class="server-role badge s-writer">writer</span>"#),
            "{html}"
        );
        assert!(html.contains(r#"<tr data-proxy="orders-proxy-z1">"#), "{html}");
        assert!(html.contains(r#"<td class="mono rw-endpoint">10.0.0.1:6033</td>"#), "{html}");
        assert!(html.contains(r#"<td class="num rw-connections">7</td>"#), "{html}");
        // Parameters.
        assert!(html.contains(r#"id="params""#) && html.contains("max_connections"), "{html}");
        // Live part refreshes.
        assert!(html.contains(r#"<div id="cluster-live" data-refresh="2000">"#), "{html}");

        // The fragment is the live part alone, with the status to mirror.
        let frag = ClusterFragment { live: Live::new(&v, vec![task("f-1", TaskStatus::Failed)], NOW) }.render().expect("renders");
        assert!(!frag.contains("<html") && !frag.contains("id=\"cluster-live\""), "{frag}");
        assert!(frag.contains(r#"data-mirror="cluster-status""#), "{frag}");
        assert!(frag.contains(r#"id="failed-task""#) && !frag.contains(r#"id="running-task""#), "{frag}");
        assert!(frag.contains(r#"data-server="orders-2""#), "{frag}");
    }

    #[test]
    fn durable_page_has_no_warning_and_no_params_table() {
        let mut v = view(Durability::Durable);
        v.params.clear();
        let html = cluster_page(Chrome::for_caller(&caller(), "clusters"), &v, Vec::new(), NOW, Vec::new(), Charts::none())
            .render()
            .expect("renders");
        assert!(html.contains("flushes every commit to disk before acknowledging it"), "{html}");
        assert!(!html.contains("d-fast") && !html.contains(r#"id="params""#), "{html}");
        assert!(!html.contains(r#"id="running-task""#), "{html}");
        assert!(html.contains(r#"id="no-tasks""#), "{html}");
    }

    /// The routes end to end: a real server (MetaDB on disk), a cluster and
    /// an agent's report in the store, pages fetched through the router.
    #[tokio::test]
    async fn routes_serve_clusters_from_metadb() {
        use atoll_core::{Host, HostId, HostStatus, Ports};
        use atoll_store::{ClusterRecord, DbServerRecord, HostRecord};
        use axum::body::Body;
        use axum::http::{Request, StatusCode, header};
        use tower::ServiceExt;

        let dir = tempfile::tempdir().expect("temp dir");
        let config = crate::ServerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.path().join("server"),
            ..crate::ServerConfig::default()
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = crate::start(config, shutdown.clone()).await.expect("server starts");
        let token = running.issue_token("watcher", atoll_core::Role::Viewer, "console test").await.expect("token");
        let state = running.state.clone();
        let now = now_ms();

        let host = HostId::new();
        let record = HostRecord {
            host: Host {
                id: host,
                name: "host1".into(),
                address: "127.0.0.11".into(),
                agent_url: None,
                zone: Some("z1".into()),
                region: None,
                status: HostStatus::Online,
                facts: None,
                agent_version: None,
                created_at_ms: now,
                last_heartbeat_ms: Some(now),
            },
            agent_token_hash: None,
            server_token: None,
            checks: None,
            checked_at_ms: None,
        };
        state.store.insert_host(&record).await.expect("host");
        let cluster = ClusterRecord {
            name: "orders".into(),
            engine: "mariadb-galera".into(),
            durability: Durability::Fast,
            status: ClusterStatus::Creating,
            spec: atoll_core::ClusterSpec {
                name: "orders".into(),
                durability: Durability::Fast,
                servers: Vec::new(),
                params: Default::default(),
                allow_single_zone: false,
                engine: None,
                proxy: Default::default(),
                region: None,
                replication: None,
            },
            secrets: serde_json::json!({}),
            created_by: "ann".into(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        let servers: Vec<DbServerRecord> = ["orders-1", "orders-2"]
            .iter()
            .enumerate()
            .map(|(i, n)| DbServerRecord {
                cluster: "orders".into(),
                name: (*n).into(),
                host_id: host,
                zone: format!("z{}", i + 1),
                segment: i as u8,
                address: "127.0.0.11".into(),
                ports: Ports { sql: 3306 + i as u16 * 10, ..Ports::default() },
                dir: format!("/tmp/{n}"),
                status: None,
                status_at_ms: None,
            })
            .collect();
        state.store.create_cluster(&cluster, &servers).await.expect("cluster");
        let report = server("orders-1", ServerState::Synced, true).status.expect("a report");
        let report = serde_json::to_value(DbServerStatus { probed_at_ms: now, ..report }).expect("json");
        state.store.record_server_statuses(host, &[(atoll_core::DbId::new("orders", "orders-1"), report)], now).await.expect("status");

        let app = crate::router(state.clone(), None);
        let get = |uri: &str, auth: bool| {
            let mut req = Request::get(uri);
            if auth {
                req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            app.clone().oneshot(req.body(Body::empty()).expect("request"))
        };
        let body = |res: axum::response::Response| async move {
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body");
            String::from_utf8(bytes.to_vec()).expect("utf-8")
        };

        // No session: to the login page.
        let res = get("/clusters", false).await.expect("answers");
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()[header::LOCATION], "/login");

        let res = get("/clusters", true).await.expect("answers");
        assert_eq!(res.status(), StatusCode::OK);
        let html = body(res).await;
        assert!(html.contains(r#"<tr data-cluster="orders""#), "{html}");
        assert!(html.contains(r#"<td class="num server-count">1/2</td>"#), "{html}");
        assert!(html.contains(r#"<div id="clusters-live" data-refresh="3000">"#), "{html}");

        let frag = body(get("/clusters?fragment=1", true).await.expect("answers")).await;
        assert!(frag.contains(r#"<table id="clusters""#) && !frag.contains("<html"), "{frag}");

        let html = body(get("/clusters/orders", true).await.expect("answers")).await;
        assert!(html.contains(r#"<div class="zone" data-zone="z2">"#), "{html}");
        assert!(html.contains(r#"<span class="server-state badge s-synced">synced</span>"#), "{html}");
        assert!(html.contains(r#"<a href="/hosts/host1">host1</a>"#), "{html}");
        assert!(html.contains("127.0.0.11:3316"), "{html}");
        assert!(html.contains(r#"id="no-tasks""#), "{html}");

        let frag = body(get("/clusters/orders?fragment=1", true).await.expect("answers")).await;
        assert!(frag.contains(r#"data-server="orders-2""#) && !frag.contains("<html"), "{frag}");

        let res = get("/clusters/nope", true).await.expect("answers");
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let html = body(res).await;
        assert!(html.contains(r#"id="error-message">no cluster"#), "{html}");

        shutdown.cancel();
        running.wait().await.expect("stops");
    }
}

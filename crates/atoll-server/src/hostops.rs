//! Talking to hosts through their agents: shared by the API handlers and
//! the task steps.

use std::time::Duration;

use atoll_api::v1::{CheckResponse, HostCheckReport, HostCheckSummary};
use atoll_client::{Client, ClientError};
use atoll_core::HostStatus;
use atoll_core::time::now_ms;
use atoll_plan::ProbeRequest;
use atoll_plan::check::{self, CheckResult, CheckStatus};
use atoll_plan::profile::{Profile, ProfileName};
use atoll_store::{HostRecord, HostSummaryRecord};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Ports a database server takes by default (SQL, group communication,
/// IST, SST): what a precheck without a cluster in mind looks at.
pub fn default_db_ports() -> Vec<u16> {
    atoll_core::Ports::default().all().to_vec()
}

/// The outcome of a listed host's last precheck, from its summary columns;
/// `None` when none ran or the stored report is not one we recognise.
pub fn check_summary(h: &HostSummaryRecord) -> Option<HostCheckSummary> {
    let stored = h.check_worst.as_deref()?;
    let worst = [CheckStatus::Pass, CheckStatus::Warn, CheckStatus::Fail].into_iter().find(|s| s.as_str() == stored)?;
    Some(HostCheckSummary { worst, profile: h.check_profile.clone()?, checked_at_ms: h.checked_at_ms? })
}

/// A client for a host's agent, authenticated as this platform.
pub fn agent(state: &AppState, host: &HostRecord) -> ApiResult<Client> {
    agent_with_timeout(state, host, Duration::from_secs(15))
}

pub fn agent_with_timeout(state: &AppState, host: &HostRecord, timeout: Duration) -> ApiResult<Client> {
    client(host, &server_token(state, host)?, timeout)
}

/// The token this platform presents to a host's agent. MetaDB holds it
/// sealed, so a copy of MetaDB alone does not command the hosts.
pub fn server_token(state: &AppState, host: &HostRecord) -> ApiResult<String> {
    let name = &host.host.name;
    let Some(stored) = &host.server_token else {
        return Err(ApiError::Conflict(format!(
            "host {name} has not registered yet: start its agent (`atoll host add` printed the command)"
        )));
    };
    state.secrets.open_stored(stored).map_err(|e| {
        ApiError::Internal(format!(
            "host {name}: the platform's token for its agent cannot be opened ({e}); restart the agent to register it again"
        ))
    })
}

/// A client for a host's agent with a token already opened.
pub fn client(host: &HostRecord, token: &str, timeout: Duration) -> ApiResult<Client> {
    match &host.host.agent_url {
        Some(url) => Ok(Client::with_timeout(url, Some(token.to_string()), timeout)),
        None => Err(ApiError::Conflict(format!(
            "host {} has not registered yet: start its agent (`atoll host add` printed the command)",
            host.host.name
        ))),
    }
}

/// Maps an agent call failure to an error that names the host.
pub fn unreachable(host: &HostRecord, e: ClientError) -> ApiError {
    let h = &host.host;
    match e {
        ClientError::Api { status, message, .. } if status < 500 => ApiError::Conflict(format!("host {}: {message}", h.name)),
        e => ApiError::BadGateway(format!("host {} ({}) does not answer: {e}; is its agent running?", h.name, h.address)),
    }
}

pub fn profile(name: Option<&str>, state: &AppState) -> ApiResult<Profile> {
    let name = name.unwrap_or(&state.config.profile);
    name.parse::<ProfileName>().map(ProfileName::profile).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Checks one host: fresh facts and probes from its agent, judged by the
/// profile. An offline or unreachable host fails the check with the reason.
pub async fn check_host(state: &AppState, host: &HostRecord, profile: &Profile, data_dir: &str, ports: &[u16]) -> HostCheckReport {
    let results = match measure(state, host, data_dir, ports).await {
        Ok((facts, probe)) => check::check_host(profile, &facts, data_dir, Some(&probe)),
        Err(e) => vec![CheckResult {
            item: "agent.reachable".into(),
            status: CheckStatus::Fail,
            measured: e.to_string(),
            required: "the host's agent answers".into(),
            fix: Some(format!("start the agent on {} and wait until `atoll host list` shows it online", host.host.address)),
        }],
    };
    let report = HostCheckReport {
        host: host.host.name.clone(),
        profile: profile.name.to_string(),
        data_dir: data_dir.to_string(),
        worst: check::worst(&results),
        results,
        checked_at_ms: now_ms(),
    };
    match serde_json::to_value(&report) {
        Ok(v) => {
            if let Err(e) = state.store.set_host_checks(host.host.id, &v, report.checked_at_ms).await {
                tracing::warn!(host = %host.host.name, error = %e, "could not store check results");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not encode check results"),
    }
    report
}

async fn measure(
    state: &AppState,
    host: &HostRecord,
    data_dir: &str,
    ports: &[u16],
) -> ApiResult<(atoll_core::HostFacts, atoll_plan::ProbeReport)> {
    if host.host.status != HostStatus::Online {
        return Err(ApiError::BadGateway(format!("host {} is {}", host.host.name, host.host.status)));
    }
    let client = agent(state, host)?;
    let req = ProbeRequest {
        data_dir: data_dir.to_string(),
        ports: ports.to_vec(),
        binaries: atoll_engine::BINARIES.iter().map(|s| s.to_string()).collect(),
    };
    let (facts, probe) = tokio::join!(client.get::<atoll_core::HostFacts>("/agent/v1/facts"), client.post("/agent/v1/probe", &req));
    let mut facts = facts.map_err(|e| unreachable(host, e))?;
    // The offset is measured on heartbeats; fresh facts do not carry it.
    facts.clock_offset_ms = host.host.facts.as_ref().and_then(|f| f.clock_offset_ms);
    Ok((facts, probe.map_err(|e| unreachable(host, e))?))
}

/// Checks several hosts at once, plus what spans hosts (clock skew).
pub async fn check_hosts(state: &AppState, hosts: &[HostRecord], profile: &Profile, data_dir: &str, ports: &[u16]) -> CheckResponse {
    let reports = futures::future::join_all(hosts.iter().map(|h| check_host(state, h, profile, data_dir, ports))).await;
    let offsets: Vec<(String, Option<i64>)> =
        hosts.iter().map(|h| (h.host.name.clone(), h.host.facts.as_ref().and_then(|f| f.clock_offset_ms))).collect();
    let across_hosts = if hosts.len() > 1 { check::check_clock_skew(&offsets, profile) } else { Vec::new() };
    let worst = reports.iter().map(|r| r.worst).chain(across_hosts.iter().map(|r| r.status)).max().unwrap_or(CheckStatus::Pass);
    CheckResponse { profile: profile.name.to_string(), worst, hosts: reports, across_hosts }
}

/// Resolves host keys (id, name or address), naming every unknown one.
pub async fn resolve_hosts(state: &AppState, keys: &[String]) -> ApiResult<Vec<HostRecord>> {
    if keys.is_empty() {
        return Ok(state.store.list_hosts().await?);
    }
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for k in keys {
        match state.store.find_host(k).await? {
            Some(h) => found.push(h),
            None => missing.push(k.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::NotFound(format!("no host {}: `atoll host list` shows the hosts there are", missing.join(", "))));
    }
    Ok(found)
}

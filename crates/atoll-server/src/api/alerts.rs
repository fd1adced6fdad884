//! Alerting: rules and silences (operators change them), channels (admins:
//! they decide where the platform's data goes), and alarms (everyone reads).

use atoll_alert::{AlarmState, Channel, Notification, NotifiedAlarm, Rule, Severity, Silence};
use atoll_api::ErrorBody;
use atoll_api::alerts::{AlarmView, ChannelTest, ChannelView, CreateSilence};
use atoll_core::time::{now_ms, parse_duration_ms};
use atoll_store::{AlarmFilter, DocKind, StoreError};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::alerting::docs;
use crate::auth::{Admin, Caller, Operator};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_alarms))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, put_rule, delete_rule))
        .routes(routes!(list_silences, create_silence))
        .routes(routes!(expire_silence))
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(put_channel, delete_channel))
        .routes(routes!(test_channel))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlarmQuery {
    /// `active` (pending and firing; the default), `firing`, `pending`,
    /// `resolved` or `all`.
    pub state: Option<String>,
    pub rule: Option<String>,
    /// Only alarms that started before this (unix ms; paging).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// Alarms, newest first, with the silence covering each.
#[utoipa::path(get, path = "/api/v1/alerts/alarms", tag = "alerts", security(("bearer" = ["viewer"])), params(AlarmQuery),
    responses((status = 200, body = Vec<AlarmView>), (status = 400, body = ErrorBody)))]
async fn list_alarms(State(state): State<AppState>, _: Caller, Query(q): Query<AlarmQuery>) -> ApiResult<Json<Vec<AlarmView>>> {
    let wanted = q.state.as_deref().unwrap_or("active");
    let only: Option<AlarmState> = match wanted {
        "active" | "all" => None,
        "firing" => Some(AlarmState::Firing),
        "pending" => Some(AlarmState::Pending),
        "resolved" => Some(AlarmState::Resolved),
        other => return Err(ApiError::BadRequest(format!("unknown state {other:?}; use active, firing, pending, resolved or all"))),
    };
    let active = matches!(wanted, "active" | "firing" | "pending");
    let limit = q.limit.unwrap_or(100).min(1000);
    let filter = AlarmFilter { active, rule: q.rule, before_ms: q.before, limit: if only.is_some() { 1000 } else { limit } };
    let records = state.store.list_alarms(&filter).await?;
    let silences = docs::silences(&state).await.map_err(internal)?;
    let now = now_ms();
    Ok(Json(
        records
            .iter()
            .filter_map(docs::alarm)
            .filter(|a| only.is_none_or(|s| a.state == s))
            .take(limit as usize)
            .map(|alarm| {
                let silenced_by = atoll_alert::silence::silenced_by(&silences, &alarm, now).map(|s| s.id.clone());
                AlarmView { alarm, silenced_by }
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/alerts/rules", tag = "alerts", security(("bearer" = ["viewer"])), responses((status = 200, body = Vec<Rule>)))]
async fn list_rules(State(state): State<AppState>, _: Caller) -> ApiResult<Json<Vec<Rule>>> {
    Ok(Json(docs::rules(&state).await.map_err(internal)?))
}

#[utoipa::path(get, path = "/api/v1/alerts/rules/{name}", tag = "alerts", security(("bearer" = ["viewer"])), params(("name" = String, Path)),
    responses((status = 200, body = Rule), (status = 404, body = ErrorBody)))]
async fn get_rule(State(state): State<AppState>, _: Caller, Path(name): Path<String>) -> ApiResult<Json<Rule>> {
    Ok(Json(find_rule(&state, &name).await?))
}

async fn find_rule(state: &AppState, name: &str) -> ApiResult<Rule> {
    let doc = state.store.get_doc(DocKind::AlertRule, name).await?;
    doc.and_then(|d| docs::parse(&d)).ok_or_else(|| ApiError::NotFound(format!("no alert rule {name:?}; `atoll alert rules` lists them")))
}

fn check_rule(rule: &Rule) -> ApiResult<()> {
    rule.validate().map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Adds a rule; it is evaluated from the next round (one scrape interval).
#[utoipa::path(post, path = "/api/v1/alerts/rules", tag = "alerts", security(("bearer" = ["operator"])), request_body = Rule,
    responses((status = 201, body = Rule), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_rule(
    State(state): State<AppState>,
    Operator(caller): Operator,
    JsonBody(mut rule): JsonBody<Rule>,
) -> ApiResult<(StatusCode, Json<Rule>)> {
    rule.builtin = false;
    check_rule(&rule)?;
    state.store.insert_doc(&docs::record(DocKind::AlertRule, &rule.name, &rule).map_err(internal)?).await?;
    state.audit_ok(&caller, "alert.rule.create", &rule.name, json!(rule)).await;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// Replaces a rule (its name stays); built-in rules may be changed and
/// disabled, and stay built-in.
#[utoipa::path(put, path = "/api/v1/alerts/rules/{name}", tag = "alerts", security(("bearer" = ["operator"])), params(("name" = String, Path)), request_body = Rule,
    responses((status = 200, body = Rule), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn put_rule(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
    JsonBody(mut rule): JsonBody<Rule>,
) -> ApiResult<Json<Rule>> {
    if rule.name != name {
        return Err(ApiError::BadRequest(format!("the body names rule {:?} but the path {name:?}; a rule cannot be renamed", rule.name)));
    }
    let old = find_rule(&state, &name).await?;
    rule.builtin = old.builtin;
    check_rule(&rule)?;
    state.store.put_doc(&docs::record(DocKind::AlertRule, &name, &rule).map_err(internal)?).await?;
    state.audit_ok(&caller, "alert.rule.update", &name, json!({ "from": old, "to": rule })).await;
    Ok(Json(rule))
}

/// Deletes a rule; its alarms resolve at the next round.
#[utoipa::path(delete, path = "/api/v1/alerts/rules/{name}", tag = "alerts", security(("bearer" = ["operator"])), params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "a built-in rule")))]
async fn delete_rule(State(state): State<AppState>, Operator(caller): Operator, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let rule = find_rule(&state, &name).await?;
    if rule.builtin {
        return Err(ApiError::Conflict(format!(
            "{name} is a built-in rule and would come back; disable it instead (`atoll alert rules disable {name}`)"
        )));
    }
    state.store.delete_doc(DocKind::AlertRule, &name).await?;
    state.audit_ok(&caller, "alert.rule.delete", &name, json!(rule)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Silences, the active ones first, then those that ended (newest first).
#[utoipa::path(get, path = "/api/v1/alerts/silences", tag = "alerts", security(("bearer" = ["viewer"])), responses((status = 200, body = Vec<Silence>)))]
async fn list_silences(State(state): State<AppState>, _: Caller) -> ApiResult<Json<Vec<Silence>>> {
    let mut all = docs::silences(&state).await.map_err(internal)?;
    let now = now_ms();
    all.sort_by_key(|s| (!s.is_active(now), std::cmp::Reverse(s.ends_ms)));
    Ok(Json(all))
}

#[utoipa::path(post, path = "/api/v1/alerts/silences", tag = "alerts", security(("bearer" = ["operator"])), request_body = CreateSilence,
    responses((status = 201, body = Silence), (status = 400, body = ErrorBody)))]
async fn create_silence(
    State(state): State<AppState>,
    Operator(caller): Operator,
    JsonBody(req): JsonBody<CreateSilence>,
) -> ApiResult<(StatusCode, Json<Silence>)> {
    let now = now_ms();
    let ends_ms = match (&req.duration, req.ends_ms) {
        (Some(d), None) => now + parse_duration_ms(d).map_err(|e| ApiError::BadRequest(format!("duration: {e}")))?,
        (None, Some(end)) => end,
        _ => return Err(ApiError::BadRequest("give either duration (e.g. 2h) or ends_ms, not both".into())),
    };
    let silence = Silence {
        id: uuid::Uuid::new_v4().to_string(),
        matchers: req.matchers,
        starts_ms: now,
        ends_ms,
        comment: req.comment.trim().to_string(),
        created_by: caller.user.clone(),
    };
    silence.validate().map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state.store.insert_doc(&docs::record(DocKind::Silence, &silence.id, &silence).map_err(internal)?).await?;
    state.audit_ok(&caller, "alert.silence.create", &silence.id, json!(silence)).await;
    Ok((StatusCode::CREATED, Json(silence)))
}

/// Ends a silence now; it stays listed as history for a week.
#[utoipa::path(delete, path = "/api/v1/alerts/silences/{id}", tag = "alerts", security(("bearer" = ["operator"])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn expire_silence(State(state): State<AppState>, Operator(caller): Operator, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let doc = state.store.get_doc(DocKind::Silence, &id).await?;
    let Some(mut silence) = doc.and_then(|d| docs::parse::<Silence>(&d)) else {
        return Err(ApiError::NotFound(format!("no silence {id}")));
    };
    let now = now_ms();
    if silence.ends_ms > now {
        silence.ends_ms = now.max(silence.starts_ms + 1);
        state.store.put_doc(&docs::record(DocKind::Silence, &id, &silence).map_err(internal)?).await?;
    }
    state.audit_ok(&caller, "alert.silence.expire", &id, json!({ "match": silence.matchers })).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/alerts/channels", tag = "alerts", security(("bearer" = ["viewer"])), responses((status = 200, body = Vec<ChannelView>)))]
async fn list_channels(State(state): State<AppState>, _: Caller) -> ApiResult<Json<Vec<ChannelView>>> {
    let mut out = Vec::new();
    for channel in docs::channels(&state).await.map_err(internal)? {
        let status = docs::channel_status(&state, &channel.name).await.map_err(internal)?;
        out.push(ChannelView { channel, status });
    }
    Ok(Json(out))
}

fn check_channel(c: &Channel) -> ApiResult<()> {
    c.validate().map_err(|e| ApiError::BadRequest(e.to_string()))
}

#[utoipa::path(post, path = "/api/v1/alerts/channels", tag = "alerts", security(("bearer" = ["admin"])), request_body = Channel,
    responses((status = 201, body = Channel), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_channel(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(c): JsonBody<Channel>,
) -> ApiResult<(StatusCode, Json<Channel>)> {
    check_channel(&c)?;
    state.store.insert_doc(&docs::record(DocKind::Channel, &c.name, &c).map_err(internal)?).await?;
    state.audit_ok(&caller, "alert.channel.create", &c.name, json!(c)).await;
    Ok((StatusCode::CREATED, Json(c)))
}

#[utoipa::path(put, path = "/api/v1/alerts/channels/{name}", tag = "alerts", security(("bearer" = ["admin"])), params(("name" = String, Path)), request_body = Channel,
    responses((status = 200, body = Channel), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn put_channel(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
    JsonBody(c): JsonBody<Channel>,
) -> ApiResult<Json<Channel>> {
    if c.name != name {
        return Err(ApiError::BadRequest(format!(
            "the body names channel {:?} but the path {name:?}; a channel cannot be renamed",
            c.name
        )));
    }
    check_channel(&c)?;
    if state.store.get_doc(DocKind::Channel, &name).await?.is_none() {
        return Err(ApiError::NotFound(format!("no channel {name:?}")));
    }
    state.store.put_doc(&docs::record(DocKind::Channel, &name, &c).map_err(internal)?).await?;
    state.audit_ok(&caller, "alert.channel.update", &name, json!(c)).await;
    Ok(Json(c))
}

#[utoipa::path(delete, path = "/api/v1/alerts/channels/{name}", tag = "alerts", security(("bearer" = ["admin"])), params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_channel(State(state): State<AppState>, Admin(caller): Admin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    if !state.store.delete_doc(DocKind::Channel, &name).await? {
        return Err(ApiError::NotFound(format!("no channel {name:?}")));
    }
    match state.store.delete_doc(DocKind::ChannelStatus, &name).await {
        Ok(_) | Err(StoreError::Conflict(_)) => {}
        Err(e) => tracing::warn!(channel = %name, error = %e, "channel deleted, its delivery status left behind"),
    }
    state.audit_ok(&caller, "alert.channel.delete", &name, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a test notification through the channel now, once, and says how
/// it went (also recorded in the channel's status).
#[utoipa::path(post, path = "/api/v1/alerts/channels/{name}/test", tag = "alerts", security(("bearer" = ["operator"])), params(("name" = String, Path)),
    responses((status = 200, body = ChannelTest), (status = 404, body = ErrorBody)))]
async fn test_channel(State(state): State<AppState>, Operator(caller): Operator, Path(name): Path<String>) -> ApiResult<Json<ChannelTest>> {
    let doc = state.store.get_doc(DocKind::Channel, &name).await?;
    let Some(channel) = doc.and_then(|d| docs::parse::<Channel>(&d)) else {
        return Err(ApiError::NotFound(format!("no channel {name:?}")));
    };
    let now = now_ms();
    let n = Notification {
        rule: "test".into(),
        severity: Severity::Info,
        status: AlarmState::Firing,
        title: format!("[TEST] a test notification from Atoll, sent by {}", caller.user),
        alarms: vec![NotifiedAlarm {
            id: "test".into(),
            state: AlarmState::Firing,
            summary: "a test notification; nothing is wrong".into(),
            labels: [("channel".to_string(), name.clone())].into(),
            value: 0.0,
            started_ms: now,
            fired_ms: Some(now),
            ended_ms: None,
        }],
        sent_at_ms: now,
    };
    let outcome = state.deliveries.test(&state, &channel, &n).await;
    state.audit_ok(&caller, "alert.channel.test", &name, json!({ "error": outcome.as_ref().err() })).await;
    Ok(Json(ChannelTest { delivered: outcome.is_ok(), error: outcome.err() }))
}

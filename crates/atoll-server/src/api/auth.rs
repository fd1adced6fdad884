//! Logging in and out, and changing one's password.

use atoll_api::v1::{ChangePasswordRequest, LoginRequest, LoginResponse, Me};
use atoll_api::{ErrorBody, SESSION_COOKIE};
use atoll_core::time::now_ms;
use atoll_store::{LockoutPolicy, SessionRecord};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::SocketAddr;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{AuthKind, PendingCaller, check_new_password, hash_password, random_token, sha256_hex, verify_password};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login)).routes(routes!(logout)).routes(routes!(change_password)).routes(routes!(me))
}

fn policy(state: &AppState) -> LockoutPolicy {
    LockoutPolicy {
        max_failures: state.config.login_max_failures,
        window_ms: state.config.login_window_s as i64 * 1000,
        lock_ms: state.config.login_lock_s as i64 * 1000,
    }
}

/// The lockout keys a login counts against, each with how a refusal names
/// it: its source address (whatever account it tries) and the account
/// (from whatever address), so guessing one account while logging in to
/// another locks all the same. The account's comes second.
fn lock_keys(source: &str, user: &str) -> [(String, String); 2] {
    [(format!("ip:{source}"), format!("from {source}")), (format!("user:{user}"), format!("for user {user}"))]
}

/// Starts a session. Repeated failures lock the source address and the
/// account for a while; a success clears the account's count only.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, security(()),
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Response> {
    let source = peer.ip().to_string();
    let now = now_ms();
    let keys = lock_keys(&source, &req.username);
    for (key, what) in &keys {
        if let Some(until) = state.store.login_locked_until(key, now).await? {
            metrics::counter!("atoll_logins_total", "outcome" => "locked").increment(1);
            return Err(ApiError::TooManyRequests(format!("too many failed logins {what}; try again in {} s", (until - now + 999) / 1000)));
        }
    }
    // One password check at a time per source: a flood from one address
    // queues behind itself, not in front of everyone else's logins.
    let _turn = crate::auth::login_turn(peer.ip())?;
    let user = state.store.get_user(&req.username).await?;
    let ok = match &user {
        Some(u) => verify_password(&req.password, &u.password_hash).await,
        // Hash anyway so a missing user takes as long as a wrong password.
        None => {
            let _ = hash_password(&req.password).await;
            false
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        let mut locked = None;
        for (key, what) in &keys {
            if let Some(until) = state.store.record_login_failure(key, now, &policy(&state)).await? {
                locked = Some((until, what));
            }
        }
        state.audit(&req.username, peer, "auth.login", &req.username, json!({}), "refused: wrong username or password").await;
        metrics::counter!("atoll_logins_total", "outcome" => "failed").increment(1);
        return Err(match locked {
            Some((until, what)) => {
                ApiError::TooManyRequests(format!("too many failed logins {what}; try again in {} s", (until - now + 999) / 1000))
            }
            None => ApiError::Unauthorized("wrong username or password".into()),
        });
    };
    state.store.clear_login_failures(&keys[1].0).await?;
    let token = random_token();
    state
        .store
        .create_session(&SessionRecord {
            token_hash: sha256_hex(&token),
            user: user.name.clone(),
            source: source.clone(),
            created_at_ms: now,
            last_seen_ms: now,
        })
        .await?;
    state.audit(&user.name, peer, "auth.login", &user.name, json!({}), "ok").await;
    metrics::counter!("atoll_logins_total", "outcome" => "ok").increment(1);
    let body = LoginResponse {
        user: user.name,
        role: user.role,
        must_change_password: user.must_change_password,
        token: token.clone(),
        idle_timeout_s: state.config.session_idle_s,
    };
    let mut headers = HeaderMap::new();
    // Over HTTPS the browser must never send it in clear.
    let secure = if state.config.tls { "; Secure" } else { "" };
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    headers.insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.to_string()))?);
    Ok((headers, Json(body)).into_response())
}

/// Ends the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(State(state): State<AppState>, PendingCaller(caller): PendingCaller) -> ApiResult<Response> {
    if caller.kind == AuthKind::Session {
        state.store.delete_session(&caller.credential_hash).await?;
    }
    state.audit_ok(&caller, "auth.logout", &caller.user, json!({})).await;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, HeaderValue::from_static("atoll_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"));
    Ok((axum::http::StatusCode::NO_CONTENT, headers).into_response())
}

/// Sets a new password; required after the first login with a generated one.
///
/// Ends the account's other sessions and revokes its API tokens, all but
/// the one making this call.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    PendingCaller(caller): PendingCaller,
    JsonBody(req): JsonBody<ChangePasswordRequest>,
) -> ApiResult<axum::http::StatusCode> {
    let user = state.store.get_user(&caller.user).await?.ok_or_else(|| ApiError::Unauthorized("user no longer exists".into()))?;
    if !verify_password(&req.current_password, &user.password_hash).await {
        state.audit(&caller.user, caller.source, "auth.password", &caller.user, json!({}), "refused: wrong current password").await;
        return Err(ApiError::BadRequest("the current password is wrong".into()));
    }
    check_new_password(&req.new_password)?;
    if req.new_password == req.current_password {
        return Err(ApiError::BadRequest("the new password must differ from the current one".into()));
    }
    state.store.set_password(&caller.user, &hash_password(&req.new_password).await?, false).await?;
    // Whoever else holds a session or token of this account got it with the
    // old password: end them all but the caller's own.
    let keep = Some(caller.credential_hash.as_str());
    let sessions = state.store.delete_sessions_of(&caller.user, keep).await?;
    let tokens = state.store.delete_api_tokens_of(&caller.user, keep).await?;
    state.audit_ok(&caller, "auth.password", &caller.user, json!({ "sessions_ended": sessions, "tokens_revoked": tokens })).await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Who the caller is.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(PendingCaller(caller): PendingCaller) -> Json<Me> {
    Json(Me {
        user: caller.user,
        role: caller.role,
        must_change_password: caller.must_change_password,
        auth: if caller.kind == AuthKind::Session { "session".into() } else { "token".into() },
    })
}

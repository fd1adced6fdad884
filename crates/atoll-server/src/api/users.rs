//! Users (admin only) and API tokens.

use atoll_api::ErrorBody;
use atoll_api::v1::{CreateTokenRequest, CreateUserRequest, CreatedToken, TokenView, UserView};
use atoll_core::Role;
use atoll_core::time::now_ms;
use atoll_store::UserRecord;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Admin, Caller, MAX_TOKEN_TTL_DAYS, TOKEN_TTL_DAYS, check_new_password, hash_password, new_api_token};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(delete_user))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(delete_token))
}

fn view(u: UserRecord) -> UserView {
    UserView { name: u.name, role: u.role, must_change_password: u.must_change_password, created_at_ms: u.created_at_ms }
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = ["admin"])), responses((status = 200, body = Vec<UserView>), (status = 403, body = ErrorBody)))]
async fn list_users(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(state.store.list_users().await?.into_iter().map(view).collect()))
}

/// Creates a user, who must choose a new password at first login.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = ["admin"])), request_body = CreateUserRequest,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    if !atoll_core::valid_name(&req.name) {
        return Err(ApiError::BadRequest(format!(
            "invalid user name {:?}: use a lowercase letter, then letters, digits or dashes",
            req.name
        )));
    }
    check_new_password(&req.password)?;
    let user = UserRecord {
        name: req.name.clone(),
        password_hash: hash_password(&req.password).await?,
        role: req.role,
        must_change_password: true,
        created_at_ms: now_ms(),
    };
    state.store.create_user(&user).await?;
    state.audit_ok(&caller, "user.create", &req.name, json!({ "role": req.role })).await;
    Ok((StatusCode::CREATED, Json(view(user))))
}

#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users", security(("bearer" = ["admin"])), params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_user(State(state): State<AppState>, Admin(caller): Admin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    if name == caller.user {
        return Err(ApiError::Conflict("you cannot delete yourself; log in as another admin".into()));
    }
    if !state.store.delete_user(&name).await? {
        return Err(ApiError::NotFound(format!("no user {name}")));
    }
    state.audit_ok(&caller, "user.delete", &name, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's tokens (an admin sees everyone's).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = ["viewer"])), responses((status = 200, body = Vec<TokenView>)))]
async fn list_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<TokenView>>> {
    let user = (caller.role != Role::Admin).then_some(caller.user.as_str());
    let tokens = state.store.list_api_tokens(user).await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| TokenView {
                id: t.id,
                name: t.name,
                user: t.user,
                created_at_ms: t.created_at_ms,
                last_used_ms: t.last_used_ms,
                expires_at_ms: t.expires_at_ms,
            })
            .collect(),
    ))
}

/// Creates an API token for scripts and the CLI; shown once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = ["viewer"])), request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::BadRequest("a token needs a name of 1 to 100 characters saying what it is for".into()));
    }
    let ttl_days = req.ttl_days.unwrap_or(TOKEN_TTL_DAYS);
    if !(1..=MAX_TOKEN_TTL_DAYS).contains(&ttl_days) {
        return Err(ApiError::BadRequest(format!("ttl_days {ttl_days} is out of range: give 1 to {MAX_TOKEN_TTL_DAYS} days")));
    }
    let (token, record) = new_api_token(&caller.user, name, ttl_days);
    state.store.create_api_token(&record).await?;
    state.audit_ok(&caller, "token.create", &record.id, json!({ "name": name, "ttl_days": ttl_days })).await;
    let expires_at_ms = record.expires_at_ms.unwrap_or_default();
    Ok((StatusCode::CREATED, Json(CreatedToken { id: record.id, name: record.name, token, expires_at_ms })))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", security(("bearer" = ["viewer"])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_token(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let mine = state.store.list_api_tokens(Some(&caller.user)).await?.iter().any(|t| t.id == id);
    if !mine {
        caller.require(Role::Admin).map_err(|_| ApiError::NotFound(format!("you have no token {id}")))?;
    }
    if !state.store.delete_api_token(&id).await? {
        return Err(ApiError::NotFound(format!("no token {id}")));
    }
    state.audit_ok(&caller, "token.delete", &id, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

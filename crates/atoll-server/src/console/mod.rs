//! The web console: server-rendered pages (askama templates compiled into
//! the binary), a stylesheet and one small script of our own, served from
//! the binary too. Pages read MetaDB directly; every change goes through the
//! JSON API from `console.js`, so the API stays the one place that checks
//! roles and writes the audit log.
//!
//! Live parts of a page fetch the same URL with `?fragment=1` and get only
//! the part that changes (Kanidm-style partials), or poll the JSON API.

mod alerts;
mod assets;
mod audit;
mod charts;
mod clusters;
mod fmt;
mod hosts;
mod tasks;

use askama::Template;
use atoll_core::Role;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::auth::{Caller, PendingCaller};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/hosts") }))
        .route("/login", get(login_page))
        .route("/password", get(password_page))
        .route("/hosts", get(hosts::list))
        .route("/hosts/{key}", get(hosts::detail))
        .route("/clusters", get(clusters::list))
        .route("/clusters/{name}", get(clusters::detail))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::detail))
        .route("/audit", get(audit::list))
        .route("/alerts", get(alerts::page_handler))
        .route("/clusters/{name}/proxies/{proxy}", get(clusters::proxy))
        .route("/assets/{file}", get(assets::serve))
}

/// A signed-in person who may use the console (password already changed).
pub(crate) struct Session(pub Caller);

/// A signed-in person who may still have to change their password.
pub(crate) struct PendingSession(pub Caller);

/// Authenticates like the API, but answers a browser: no session sends it
/// to the login page instead of a JSON error.
async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Caller, Response> {
    match PendingCaller::from_request_parts(parts, state).await {
        Ok(PendingCaller(caller)) => Ok(caller),
        Err(ApiError::Unauthorized(_)) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(error_page(None, e)),
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state).await?;
        if caller.must_change_password {
            return Err(Redirect::to("/password").into_response());
        }
        Ok(Session(caller))
    }
}

impl FromRequestParts<AppState> for PendingSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(PendingSession(authenticate(parts, state).await?))
    }
}

/// What the base template needs on every page: who is signed in, which nav
/// entry is current, and the content-hashed asset URLs.
pub(crate) struct Chrome {
    pub signed_in: bool,
    pub user: String,
    pub role: &'static str,
    /// `hosts`, `clusters`, `tasks`, `audit`, or empty.
    pub nav: &'static str,
    pub can_operate: bool,
    pub css: &'static str,
    pub js: &'static str,
}

impl Chrome {
    pub fn for_caller(caller: &Caller, nav: &'static str) -> Self {
        Self {
            signed_in: true,
            user: caller.user.clone(),
            role: caller.role.as_str(),
            nav,
            can_operate: caller.role.allows(Role::Operator),
            css: assets::url("console.css"),
            js: assets::url("console.js"),
        }
    }

    pub fn anonymous() -> Self {
        Self {
            signed_in: false,
            user: String::new(),
            role: "",
            nav: "",
            can_operate: false,
            css: assets::url("console.css"),
            js: assets::url("console.js"),
        }
    }
}

/// `?fragment=1`: only the live part of the page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FragmentQuery {
    pub(crate) fragment: Option<String>,
}

impl FragmentQuery {
    pub fn wanted(&self) -> bool {
        self.fragment.as_deref().is_some_and(|v| !v.is_empty() && v != "0")
    }
}

/// Renders a template as an HTML response that no cache keeps (pages show
/// private, changing data).
pub(crate) fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(body) => (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a console page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering the page failed; see the server log").into_response()
        }
    }
}

pub(crate) fn page<T: Template>(t: &T) -> Response {
    render(StatusCode::OK, t)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    title: String,
    message: String,
}

/// An API error as a page, with the status the API would give it.
pub(crate) fn error_page(caller: Option<&Caller>, e: ApiError) -> Response {
    let message = e.to_string();
    // The API's own mapping (which also logs server errors).
    let status = e.into_response().status();
    let chrome = caller.map_or_else(Chrome::anonymous, |c| Chrome::for_caller(c, ""));
    let title = status.canonical_reason().unwrap_or("Error").to_string();
    render(status, &ErrorPage { chrome, title, message })
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
}

async fn login_page() -> Response {
    page(&LoginPage { chrome: Chrome::anonymous() })
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    chrome: Chrome,
    must_change: bool,
    min_len: usize,
}

async fn password_page(PendingSession(caller): PendingSession) -> Response {
    page(&PasswordPage {
        chrome: Chrome::for_caller(&caller, ""),
        must_change: caller.must_change_password,
        min_len: crate::auth::MIN_PASSWORD_LEN,
    })
}

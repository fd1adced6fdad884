//! `/audit`: who changed what, newest first, 100 a page.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{Chrome, Session, error_page, fmt, page};
use crate::state::AppState;

const PAGE: u32 = 100;

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    before: Option<i64>,
}

pub(crate) struct AuditRow {
    id: i64,
    at: String,
    actor: String,
    source: String,
    action: String,
    target: String,
    outcome: String,
    ok: bool,
    detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    rows: Vec<AuditRow>,
    paged: bool,
    /// The `before` id of the next (older) page, when there may be one.
    older: Option<i64>,
}

pub async fn list(State(state): State<AppState>, Session(caller): Session, Query(q): Query<AuditQuery>) -> Response {
    let records = match state.store.list_audit(q.before, PAGE).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&caller), e.into()),
    };
    let older = (records.len() == PAGE as usize).then(|| records.last().map(|r| r.id)).flatten();
    let rows = records
        .into_iter()
        .map(|a| AuditRow {
            id: a.id,
            at: fmt::utc(a.at_ms),
            ok: a.outcome == "ok",
            detail: compact(&a.detail),
            actor: a.actor,
            source: a.source,
            action: a.action,
            target: a.target,
            outcome: a.outcome,
        })
        .collect();
    page(&AuditPage { chrome: Chrome::for_caller(&caller, "audit"), rows, paged: q.before.is_some(), older })
}

/// JSON on one line; an empty object shows as nothing.
fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn compact_detail() {
        assert_eq!(super::compact(&serde_json::json!({})), "");
        assert_eq!(super::compact(&serde_json::json!({"task": "t1"})), r#"{"task":"t1"}"#);
        assert_eq!(super::compact(&serde_json::Value::Null), "");
    }
}

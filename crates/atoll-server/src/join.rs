//! Join tokens: what an agent presents the first time its host registers.
//!
//! A token only ever admits a *new* host: a known host proves itself with
//! its own agent token (see `agents::register`). Tokens are kept in MetaDB
//! by their SHA-256 only, expire, and come in two kinds: one for a declared
//! host (`POST /api/v1/hosts`, single use, that host only) and platform
//! tokens an admin mints for any new host (`atoll host join-token`), which
//! an admin revokes all at once to rotate them.

use atoll_core::Host;
use atoll_core::time::now_ms;
use atoll_store::{DocKind, DocRecord};
use serde::{Deserialize, Serialize};

use crate::auth::{random_token, sha256_hex};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A declared host's token lasts a day: long enough to install the agent.
pub const HOST_TTL_S: u64 = 24 * 3600;
/// A platform token lasts an hour unless the admin asks otherwise.
pub const DEFAULT_TTL_S: u64 = 3600;
/// Longest life an admin may give a token.
pub const MAX_TTL_S: u64 = 30 * 24 * 3600;

/// What a token admits, stored under the token's hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub expires_ms: i64,
    /// Deleted on its first use.
    pub single_use: bool,
    /// Only this declared (pending) host may join with it.
    pub host: Option<String>,
    pub created_by: String,
    pub created_ms: i64,
}

/// Mints a token; the caller shows it once, MetaDB keeps only its hash.
pub async fn mint(state: &AppState, ttl_s: u64, single_use: bool, host: Option<&Host>, by: &str) -> ApiResult<(String, Grant)> {
    if ttl_s == 0 || ttl_s > MAX_TTL_S {
        return Err(ApiError::BadRequest(format!("ttl_s {ttl_s} is out of range: give 1 to {MAX_TTL_S} seconds (30 days)")));
    }
    let token = random_token();
    let now = now_ms();
    let grant = Grant {
        expires_ms: now + (ttl_s as i64) * 1000,
        single_use,
        host: host.map(|h| h.name.clone()),
        created_by: by.to_string(),
        created_ms: now,
    };
    let body = serde_json::to_string(&grant).map_err(|e| ApiError::Internal(e.to_string()))?;
    state.store.insert_doc(&DocRecord { kind: DocKind::JoinToken, name: sha256_hex(&token), body, updated_ms: now }).await?;
    Ok((token, grant))
}

/// Why a presented token admits nothing; the agent prints it.
pub const UNKNOWN: &str = "unknown, used or revoked join token";

/// Takes the grant a token admits: a single-use one is deleted here, so two
/// agents racing with it cannot both join. `Err` names why not.
pub async fn redeem(state: &AppState, token: &str) -> ApiResult<Result<Grant, String>> {
    let key = sha256_hex(token);
    let Some(doc) = state.store.get_doc(DocKind::JoinToken, &key).await? else {
        return Ok(Err(UNKNOWN.into()));
    };
    let Ok(grant) = serde_json::from_str::<Grant>(&doc.body) else {
        return Ok(Err(UNKNOWN.into()));
    };
    if grant.expires_ms <= now_ms() {
        state.store.delete_doc(DocKind::JoinToken, &key).await?;
        return Ok(Err("expired join token".into()));
    }
    if grant.single_use && !state.store.delete_doc(DocKind::JoinToken, &key).await? {
        return Ok(Err(UNKNOWN.into()));
    }
    Ok(Ok(grant))
}

/// Gives a single-use grant back when the registration it was taken for
/// failed (the agent retries with the same token).
pub async fn give_back(state: &AppState, token: &str, grant: &Grant) {
    if !grant.single_use {
        return;
    }
    let Ok(body) = serde_json::to_string(grant) else { return };
    let doc = DocRecord { kind: DocKind::JoinToken, name: sha256_hex(token), body, updated_ms: now_ms() };
    if let Err(e) = state.store.insert_doc(&doc).await {
        tracing::warn!(error = %e, "could not restore a join token after a failed registration; mint another");
    }
}

/// The platform's tokens (not those of declared hosts), newest first.
pub async fn list(state: &AppState) -> ApiResult<Vec<Grant>> {
    let mut out: Vec<Grant> = state
        .store
        .list_docs(DocKind::JoinToken)
        .await?
        .iter()
        .filter_map(|d| serde_json::from_str::<Grant>(&d.body).ok())
        .filter(|g| g.expires_ms > now_ms())
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.created_ms));
    Ok(out)
}

/// Revokes every platform token (those of declared hosts stay); returns how
/// many. Expired tokens of any kind go too.
pub async fn revoke_all(state: &AppState) -> ApiResult<usize> {
    let now = now_ms();
    let mut n = 0;
    for d in state.store.list_docs(DocKind::JoinToken).await? {
        // An unreadable grant admits nothing: it goes, uncounted.
        let live = serde_json::from_str::<Grant>(&d.body).ok().filter(|g| g.expires_ms > now);
        if live.as_ref().is_some_and(|g| g.host.is_some()) {
            continue;
        }
        if state.store.delete_doc(DocKind::JoinToken, &d.name).await? && live.is_some() {
            n += 1;
        }
    }
    Ok(n)
}

/// The shell command that starts an agent with `token`: the token goes in
/// the environment, never in argv where `ps` shows it.
pub fn agent_command(state: &AppState, token: &str, host: Option<&Host>) -> String {
    let server = state.platform.peers().join(",");
    let (address, rest) = match host {
        Some(h) => {
            let zone = h.zone.as_ref().map(|z| format!(" --zone {z}")).unwrap_or_default();
            let region = h.region.as_ref().map(|r| format!(" --region {r}")).unwrap_or_default();
            (h.address.clone(), format!(" --name {}{zone}{region}", h.name))
        }
        None => ("ADDRESS".into(), String::new()),
    };
    // Over HTTPS the agent pins the platform's CA by its fingerprint.
    let pin = match atoll_pki::fingerprint(&state.pki.now().bundle) {
        Ok(f) if server.contains("https://") => format!(" --ca-fingerprint {f}"),
        _ => String::new(),
    };
    format!("ATOLL_JOIN_TOKEN={token} atoll agent --server {server}{pin} --listen {address}:7070{rest}")
}

//! The join token agents present the first time they register.

use atoll_core::Host;

use crate::auth::random_token;
use crate::error::ApiResult;
use crate::state::AppState;

const KEY: &str = "join_token";

/// The platform's join token, made on first use.
pub async fn token(state: &AppState) -> ApiResult<String> {
    if let Some(t) = state.store.get_setting(KEY).await? {
        return Ok(t);
    }
    let t = random_token();
    state.store.put_setting(KEY, &t).await?;
    // Two servers racing here both store a token; read back the winner.
    Ok(state.store.get_setting(KEY).await?.unwrap_or(t))
}

/// The `atoll agent` command line for a host (or a generic one).
pub async fn agent_command(state: &AppState, host: Option<&Host>) -> ApiResult<String> {
    let token = token(state).await?;
    let server = state.platform.peers().join(",");
    let (address, rest) = match host {
        Some(h) => {
            (h.address.clone(), format!(" --name {}{}", h.name, h.zone.as_ref().map(|z| format!(" --zone {z}")).unwrap_or_default()))
        }
        None => ("ADDRESS".into(), String::new()),
    };
    Ok(format!("atoll agent --server {server} --join-token {token} --listen {address}:7070{rest}"))
}

//! A cluster's accounts and the passwords Atoll keeps for them, sealed
//! with the platform key in MetaDB.

use atoll_store::ClusterRecord;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The platform's own account on every cluster; also handed to admins.
pub const ADMIN_USER: &str = "atoll_admin";
/// Read-only account for probes and monitoring.
pub const MONITOR_USER: &str = "atoll_monitor";
/// The account a standby's applier reads its primary's binary log with.
pub const REPLICATION_USER: &str = "atoll_repl";

/// The cluster's passwords, sealed with the platform key in MetaDB.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedSecrets {
    pub admin_password: String,
    pub monitor_password: String,
    /// The bearer token the cluster's proxies read its routing table
    /// with; absent on clusters made before proxies existed.
    #[serde(default)]
    pub proxy_token: Option<String>,
    /// The replication account's password, shared by the clusters of a
    /// pair; absent on clusters made before standbys existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_password: Option<String>,
}

impl SealedSecrets {
    /// New random secrets, sealed.
    pub fn generate(state: &AppState) -> SealedSecrets {
        SealedSecrets {
            admin_password: state.secrets.seal(&crate::auth::random_password()),
            monitor_password: state.secrets.seal(&crate::auth::random_password()),
            proxy_token: Some(state.secrets.seal(&crate::auth::random_token())),
            replication_password: Some(state.secrets.seal(&crate::auth::random_password())),
        }
    }

    /// A standby's: its primary's accounts (its data is a copy of the
    /// primary's, accounts included, and stays one), its own proxy token.
    pub fn for_standby(&self, state: &AppState) -> SealedSecrets {
        SealedSecrets { proxy_token: Some(state.secrets.seal(&crate::auth::random_token())), ..self.clone() }
    }

    /// The replication account's password in clear.
    pub fn replication(&self, state: &AppState, cluster: &str) -> ApiResult<String> {
        let sealed = self.replication_password.as_deref().ok_or_else(|| {
            ApiError::Conflict(format!("cluster {cluster} was made before standbys existed and has no replication account"))
        })?;
        open(state, sealed)
    }

    pub fn of(c: &ClusterRecord) -> ApiResult<SealedSecrets> {
        serde_json::from_value(c.secrets.clone()).map_err(|e| ApiError::Internal(format!("cluster {} secrets: {e}", c.name)))
    }

    /// The admin password in clear.
    pub fn admin(&self, state: &AppState) -> ApiResult<String> {
        open(state, &self.admin_password)
    }

    /// The monitor password in clear.
    pub fn monitor(&self, state: &AppState) -> ApiResult<String> {
        open(state, &self.monitor_password)
    }

    /// The proxies' routing token in clear.
    pub fn proxy_token(&self, state: &AppState, cluster: &str) -> ApiResult<String> {
        let sealed = self
            .proxy_token
            .as_deref()
            .ok_or_else(|| ApiError::Conflict(format!("cluster {cluster} was made before proxies existed and has no proxy token")))?;
        open(state, sealed)
    }
}

fn open(state: &AppState, sealed: &str) -> ApiResult<String> {
    state.secrets.open(sealed).map_err(|e| ApiError::Internal(e.to_string()))
}

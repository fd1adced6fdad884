//! The database engine behind one trait.
//!
//! Everything Atoll knows about MariaDB Galera as a database, rather than as
//! processes on a host, lives here: how a server's `my.cnf` looks, which
//! parameters a user may tune and which need a restart, what `wsrep_%` status
//! means for a server's state, and which node to bootstrap a stopped cluster
//! from. Pure: no I/O, no async. The agent runs what this crate renders; the
//! server validates and decides with it.
//!
//! Architecture invariant: the rest of Atoll reaches engine knowledge only
//! through [`Engine`] and the helpers re-exported here, so a second engine
//! would be a second implementation, not a search for `wsrep` across crates.

pub mod build;
pub mod config;
pub mod params;
pub mod recovery;
pub mod state;

use std::collections::BTreeMap;

use atoll_api::db::{RecoveredPosition, WsrepStatus};
use atoll_core::{Durability, ServerState};
use serde::{Deserialize, Serialize};

pub use config::{BuildPaths, ConfigInput, EVS_TIMEOUTS, PROVIDER};
pub use params::{Kind, ParamDef, ParamProblem};
pub use recovery::{NIL_UUID, parse_grastate, parse_recovered};
pub use state::cluster_status;

/// A database engine's pure knowledge. Object-safe, so the platform can hold
/// a `&dyn Engine` chosen by the cluster's engine name.
pub trait Engine: Send + Sync {
    /// The engine's stable name, as stored with a cluster.
    fn name(&self) -> &'static str;

    /// Programs and files a host needs (the agent probes for each).
    fn binaries(&self) -> &'static [&'static str];

    /// The complete configuration file of one server. Checks the input and
    /// its parameters again, since a config that fails here would otherwise
    /// fail on the host, at start-up.
    fn render_config(&self, c: &ConfigInput) -> Result<String, EngineError>;

    /// Every problem with user parameters at once; empty when they can be
    /// used. The durability profile is needed because the durable profile
    /// refuses settings that would acknowledge commits before they are on
    /// disk.
    fn check_params(&self, params: &BTreeMap<String, String>, durability: Durability) -> Vec<ParamProblem>;

    /// Whether changing `key` takes a restart (`Some(false)`: applied online);
    /// `None` for a key users may not set.
    fn param_change_needs_restart(&self, key: &str) -> Option<bool>;

    /// A server's state from its replication status (`None` when it could
    /// not be read) and whether its process runs.
    fn server_state(&self, wsrep: Option<&WsrepStatus>, process_running: bool) -> ServerState;

    /// The server to bootstrap a fully stopped cluster from, given each
    /// server's recovered position (`None`: could not be recovered).
    fn choose_bootstrap(&self, positions: &[(String, Option<RecoveredPosition>)]) -> Result<String, EngineError>;
}

/// MariaDB 10.11 with Galera 4, as the recipe measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MariaDbGalera;

impl MariaDbGalera {
    pub const NAME: &'static str = "mariadb-galera";
}

impl Engine for MariaDbGalera {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn binaries(&self) -> &'static [&'static str] {
        &["mariadbd", "mariadb-install-db", PROVIDER]
    }

    fn render_config(&self, c: &ConfigInput) -> Result<String, EngineError> {
        config::render(c)
    }

    fn check_params(&self, params: &BTreeMap<String, String>, durability: Durability) -> Vec<ParamProblem> {
        params::check(params, durability)
    }

    fn param_change_needs_restart(&self, key: &str) -> Option<bool> {
        params::needs_restart(key)
    }

    fn server_state(&self, wsrep: Option<&WsrepStatus>, process_running: bool) -> ServerState {
        state::server_state(wsrep, process_running)
    }

    fn choose_bootstrap(&self, positions: &[(String, Option<RecoveredPosition>)]) -> Result<String, EngineError> {
        recovery::choose_bootstrap(positions)
    }
}

/// One cluster history: the Galera cluster UUID and the servers that carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub uuid: String,
    pub servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("invalid server configuration: {}", .0.join("; "))]
    InvalidInput(Vec<String>),

    #[error("invalid parameters: {}", join(.0))]
    InvalidParams(Vec<ParamProblem>),

    #[error(
        "no server has a recoverable position ({}): run `mariadbd --wsrep-recover` on each, or bootstrap one by hand accepting the loss of commits only the others had",
        .servers.join(", ")
    )]
    NoRecoverablePosition { servers: Vec<String> },

    #[error(
        "the servers belong to different cluster histories (split-brain or a re-seeded node): {}; choose the history to keep, bootstrap one of its servers by hand and let the others rejoin by full state transfer",
        histories_words(.histories)
    )]
    DivergentHistories { histories: Vec<History> },
}

fn join(problems: &[ParamProblem]) -> String {
    problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ")
}

fn histories_words(histories: &[History]) -> String {
    histories.iter().map(|h| format!("{} ({})", h.uuid, h.servers.join(", "))).collect::<Vec<_>>().join(" vs ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn engine_is_object_safe_and_names_itself() {
        let engine: &dyn Engine = &MariaDbGalera;
        assert_eq!(engine.name(), "mariadb-galera");
        assert_eq!(engine.binaries(), ["mariadbd", "mariadb-install-db", "/usr/lib/galera/libgalera_smm.so"]);
        assert_eq!(engine.param_change_needs_restart("max-connections"), Some(false));
        assert_eq!(engine.param_change_needs_restart("datadir"), None);
        assert_eq!(engine.server_state(None, false), ServerState::Stopped);
        let boxed: Box<dyn Engine> = Box::new(MariaDbGalera);
        let params = BTreeMap::from([("max_conections".to_owned(), "10".to_owned())]);
        assert_eq!(boxed.check_params(&params, Durability::Durable).len(), 1);
    }

    #[test]
    fn invalid_params_error_lists_every_problem() {
        let err = EngineError::InvalidParams(vec![
            ParamProblem { key: "a".into(), message: "first".into() },
            ParamProblem { key: "b".into(), message: "second".into() },
        ]);
        assert_eq!(err.to_string(), "invalid parameters: first; second");
    }
}

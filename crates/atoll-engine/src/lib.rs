//! The database engine: MariaDB with Galera.
//!
//! Everything Atoll knows about MariaDB Galera as a database, rather than as
//! processes on a host, lives here: how a server's `my.cnf` looks, which
//! parameters a user may tune and which need a restart, what `wsrep_%` status
//! means for a server's state, and which node to bootstrap a stopped cluster
//! from. Pure: no I/O, no async. The agent runs what this crate renders; the
//! server validates and decides with it.
//!
//! Architecture invariant: no other crate spells a `wsrep` variable, a
//! Galera option or engine SQL; they call this crate. There is one engine,
//! so these are modules of functions, not a trait: a second engine would
//! turn them into one (see ARCHITECTURE.md).

pub mod build;
pub mod config;
pub mod metrics;
pub mod params;
pub mod recovery;
pub mod sql;
pub mod state;

use serde::{Deserialize, Serialize};

pub use config::{BuildPaths, ConfigInput, EVS_TIMEOUTS, PROVIDER};
pub use params::{Kind, ParamDef, ParamProblem};
pub use recovery::{NIL_UUID, parse_grastate, parse_recovered};
pub use state::cluster_status;

/// The engine's stable name, as stored with a cluster.
pub const NAME: &str = "mariadb-galera";

/// Programs and files a host needs to run a server (the agent probes for
/// each; the precheck names a missing one).
pub const BINARIES: [&str; 3] = ["mariadbd", "mariadb-install-db", PROVIDER];

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
    fn invalid_params_error_lists_every_problem() {
        let err = EngineError::InvalidParams(vec![
            ParamProblem { key: "a".into(), message: "first".into() },
            ParamProblem { key: "b".into(), message: "second".into() },
        ]);
        assert_eq!(err.to_string(), "invalid parameters: first; second");
    }
}

//! Brings Atoll up as a highly available platform on its own hosts (the
//! seed's OAT role): every node runs a server, an agent, a MetaDB node and
//! a proxy; MetaDB is a Galera cluster the platform manages like any other.
//!
//! The platform is started on itself in one pass ([`bootstrap`]): a
//! temporary server on an embedded MetaDB registers the agents and creates
//! MetaDB's cluster with the very tasks and agent operations every cluster
//! uses; its MetaDB is then copied into that cluster and the nodes' own
//! servers take over. How processes start on a node is a [`launch::Launcher`].

pub mod bootstrap;
pub mod deploy;
pub mod launch;
pub mod layout;
pub mod node;
pub mod remote;
pub mod ssh;
pub mod topology;

/// Why a deployment stopped: the step, the node when one is to blame, and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the topology has {} problem(s):\n- {}", .0.len(), .0.join("\n- "))]
    Invalid(Vec<String>),
    #[error("cannot reach {} node(s); nothing was changed:\n- {}", .0.len(), .0.join("\n- "))]
    Unreachable(Vec<String>),
    #[error("{} problem(s) found before changing anything:\n- {}", .0.len(), .0.join("\n- "))]
    Precheck(Vec<String>),
    #[error("{step}{}: {message}", .node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default())]
    Step { step: &'static str, node: Option<String>, message: String },
}

impl DeployError {
    pub fn step(step: &'static str, node: Option<&str>, message: impl Into<String>) -> Self {
        Self::Step { step, node: node.map(str::to_string), message: message.into() }
    }
}

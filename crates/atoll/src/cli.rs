//! Command-line parsing: the subcommands, the connection flags every
//! client command shares, and the dispatch to one module per resource.

use std::process::ExitCode;

use atoll_client::Client;
use clap::{Args, Parser, Subcommand};

use crate::output::{CliError, Exit, fail};
use crate::session;

#[derive(Debug, Parser)]
#[command(name = "atoll", version, about = "Plan, deploy and operate highly-available MariaDB Galera clusters on your own hosts")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Conn {
    /// Server URL (repeat, or separate with commas: each is tried in turn
    /// when one does not answer); default: the ones `atoll login` saved.
    #[arg(long = "server", id = "server_urls", env = "ATOLL_SERVER", global = true, value_delimiter = ',')]
    servers: Vec<String>,
    /// API token; default: the one `atoll login` saved.
    #[arg(long, env = "ATOLL_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// For an HTTPS platform: its CA certificate (a server's DATA_DIR/ca.pem);
    /// default: the one `atoll login` saved.
    #[arg(long = "ca-file", id = "conn_ca_file", env = "ATOLL_CA_FILE", global = true, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform server (API, console, task executor).
    Server(Box<crate::daemons::ServerArgs>),
    /// Run the agent of this host.
    Agent(crate::daemons::AgentArgs),
    /// A whole platform on this machine: server, three hosts, console.
    Playground(crate::playground::PlaygroundArgs),
    /// Log in and keep an API token for the next commands.
    Login(crate::session::LoginArgs),
    /// Delete the saved API token on the platform and forget it here.
    Logout,
    /// Print the servers a deployment mode needs (seed sizing tables).
    Plan(crate::plan::PlanArgs),
    /// Hosts: add, list, show, check, prepare, remove.
    #[command(subcommand)]
    Host(crate::hosts::HostCmd),
    /// Tasks: list, show, watch, retry, skip, cancel, roll back.
    #[command(subcommand)]
    Task(crate::tasks::TaskCmd),
    /// Database clusters: create, list, show, credentials.
    #[command(subcommand)]
    Cluster(crate::clusters::ClusterCmd),
    /// Engine builds: add a tarball, list, show, remove, push to hosts.
    #[command(subcommand)]
    Package(crate::packages::PackageCmd),
    /// Run the MySQL proxy of one cluster (read-write and read-only ports).
    Proxy(crate::proxy::ProxyArgs),
    /// The platform's own servers, and which one runs the controllers.
    Platform(crate::platform::PlatformArgs),
    /// Put the platform on three or more hosts over SSH (or remove it:
    /// --destroy); a re-run resumes or changes nothing.
    Deploy(crate::deploy::DeployArgs),
    /// What `atoll deploy` runs on a platform node.
    #[command(subcommand, hide = true)]
    Node(crate::deploy::NodeCmd),
    /// Metrics: list, query, scrape targets, Prometheus service discovery.
    #[command(subcommand)]
    Metrics(crate::metrics::MetricsCmd),
    /// Alarms, alert rules, silences and notification channels.
    #[command(subcommand)]
    Alert(crate::alerts::AlertCmd),
    /// Check the platform after deployment: every server, agent, MetaDB
    /// node and proxy, versions, clocks, logs (exit 3 when an item fails).
    Check(crate::platform::CheckArgs),
}

impl Cli {
    /// `atoll proxy` runs on a runtime of its own kind (see `main`).
    pub fn is_proxy(&self) -> bool {
        matches!(self.command, Command::Proxy(_))
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Server(a) => crate::daemons::serve(*a).await,
        Command::Agent(a) => crate::daemons::agent(a).await,
        Command::Playground(a) => crate::playground::run(a).await,
        Command::Login(a) => crate::session::login(a).await,
        Command::Logout => crate::session::logout().await,
        Command::Plan(a) => crate::plan::run(a),
        Command::Host(c) => crate::hosts::run(c).await,
        Command::Task(c) => crate::tasks::run(c).await,
        Command::Cluster(c) => crate::clusters::run(c).await,
        Command::Package(c) => crate::packages::run(c).await,
        Command::Proxy(a) => crate::proxy::run(a).await,
        Command::Platform(a) => crate::platform::run(a).await,
        Command::Check(a) => crate::platform::check(a).await,
        Command::Alert(c) => crate::alerts::run(c).await,
        Command::Metrics(c) => crate::metrics::run(c).await,
        Command::Deploy(a) => crate::deploy::run(a).await,
        Command::Node(c) => crate::deploy::node(c).await,
    };
    if atoll_client::stale_reads_seen() {
        eprintln!(
            "warning: the platform's metadata store has no quorum: what is shown is a server's last known state, and changes are refused until quorum returns"
        );
    }
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.exit.into()
        }
    }
}

pub type Res = Result<Exit, CliError>;

impl Conn {
    /// Whether the CA came from --ca-file / ATOLL_CA_FILE (not the login's).
    pub fn ca_file_given(&self) -> bool {
        self.ca_file.is_some()
    }
}

pub fn client(conn: &Conn) -> Result<Client, CliError> {
    let saved = session::load();
    let servers = if conn.servers.is_empty() { saved.servers() } else { conn.servers.clone() };
    if servers.is_empty() {
        return Err(fail(Exit::Error, "no server: pass --server URL or run `atoll login` first"));
    }
    if let Some(path) = &conn.ca_file {
        let pem = std::fs::read_to_string(path).map_err(|e| fail(Exit::Error, format!("--ca-file {}: {e}", path.display())))?;
        atoll_client::trust_platform_ca(&pem).map_err(|e| fail(Exit::Error, format!("--ca-file {}: {e}", path.display())))?;
    } else if let Some(ca) = &saved.ca_pem {
        atoll_client::trust_platform_ca(ca)
            .map_err(|e| fail(Exit::Error, format!("the CA saved by `atoll login` is unusable ({e}); log in again")))?;
    }
    let token = conn.token.clone().or(saved.token);
    if token.is_none() {
        return Err(fail(Exit::Error, "not logged in: run `atoll login --server URL` or set ATOLL_TOKEN"));
    }
    Ok(Client::over(&atoll_client::Servers::new(&servers), token, std::time::Duration::from_secs(30)))
}

#[cfg(test)]
mod tests {
    /// clap checks a command's flags (e.g. two arguments claiming one long
    /// name) only when it is built, and only in debug builds: build them
    /// all here, so a clash fails this test instead of a user's command.
    #[test]
    fn every_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

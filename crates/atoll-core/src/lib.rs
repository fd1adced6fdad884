//! Atoll's domain model. Pure data and rules: nothing here performs I/O, so
//! every rule can be unit-tested and reused by the server, the agent and the CLI.

pub mod cluster;
pub mod db;
pub mod facts;
pub mod host;
pub mod replication;
pub mod role;
pub mod routing;
pub mod secret;
pub mod task;
pub mod time;

pub use cluster::{ClusterSpec, ClusterStatus, Durability, Ports, ProxySpec, ServerSpec, ServerState};
pub use db::{DbId, RecoveredPosition, WsrepStatus};
pub use facts::{CpuFacts, EngineBuild, HostFacts, IssuedCert, Mount, Nic, NofileLimit, OsFacts, SYSTEM_BUILD, TlsFacts};
pub use host::{DEFAULT_REGION, Host, HostId, HostStatus};
pub use replication::{GtidPos, ReplicaChannel, ReplicationSpec, ReplicationStatus};
pub use role::Role;
pub use task::{Phase, Progress, StepState, StepStatus, TaskStatus};

/// Milliseconds since the Unix epoch: the one time representation stored and
/// sent everywhere (MetaDB keeps it as BIGINT on every back end).
pub type UnixMs = i64;

/// Platform server URLs: `first`, then those of `then` not already listed,
/// without trailing slashes or repeats. How every holder of a server list
/// (agents, proxies, the CLI, servers themselves) merges what it was given
/// with what it learns.
pub fn merge_urls<A: AsRef<str>, B: AsRef<str>>(first: &[A], then: &[B]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in first.iter().map(AsRef::as_ref).chain(then.iter().map(AsRef::as_ref)) {
        let u = u.trim_end_matches('/');
        if !out.iter().any(|o| o == u) {
            out.push(u.to_string());
        }
    }
    out
}

/// Whether `s` is a usable name for a host, zone or user: a lowercase letter,
/// then up to 62 lowercase letters, digits or dashes. Kept strict so names are
/// safe in paths, URLs and SQL identifiers alike.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z')) && s.len() <= 63 && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

/// Whether `s` is a usable engine package name: like [`valid_name`], but
/// dots and underscores are allowed too, since builds are named after
/// versions (`mariadb-11.8`); [`SYSTEM_BUILD`] is taken by the host's own
/// packages.
pub fn valid_package_name(s: &str) -> bool {
    let mut chars = s.chars();
    s != SYSTEM_BUILD
        && matches!(chars.next(), Some('a'..='z'))
        && s.len() <= 63
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '.' | '_'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn merged_urls_keep_order_and_drop_repeats() {
        let got = super::merge_urls(&["http://b:1/", "http://a:1"], &["http://a:1/", "http://c:1"]);
        assert_eq!(got, ["http://b:1", "http://a:1", "http://c:1"]);
        assert!(super::merge_urls::<&str, &str>(&[], &[]).is_empty());
    }

    #[test]
    fn package_names() {
        assert!(super::valid_package_name("mariadb-11.8"));
        assert!(super::valid_package_name("mariadb_11.8.3"));
        assert!(!super::valid_package_name("system"));
        assert!(!super::valid_package_name("11.8"));
        assert!(!super::valid_package_name("a/../b"));
        assert!(!super::valid_package_name("Maria"));
    }

    #[test]
    fn names() {
        assert!(super::valid_name("z1"));
        assert!(super::valid_name("host-a"));
        assert!(!super::valid_name("1z"));
        assert!(!super::valid_name("Zone"));
        assert!(!super::valid_name(""));
        assert!(!super::valid_name("a/b"));
    }
}

//! The tasks that prepare and remove hosts, and their steps.

use async_trait::async_trait;
use atoll_api::agent::HostOp;
use atoll_core::HostId;
use atoll_plan::check::CheckStatus;
use atoll_plan::profile::{Profile, ProfileName};
use atoll_store::HostRecord;
use atoll_tasks::{StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::hostops;
use crate::state::AppState;
use crate::step_kit::{StateRef, agent_op, host_by_id, store_err};

pub const DIRS: &str = "host.dirs";
pub const CHECK: &str = "host.check";
pub const FORGET: &str = "host.forget";

/// `host.dirs`: create directories, or (a purge) remove them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum DirsParams {
    Remove { host: HostId, remove: Vec<String> },
    Make { host: HostId, paths: Vec<String>, owner: Option<String>, mode: u32 },
}

impl DirsParams {
    fn host(&self) -> HostId {
        match self {
            DirsParams::Remove { host, .. } | DirsParams::Make { host, .. } => *host,
        }
    }
}

/// `host.check`.
#[derive(Debug, Serialize, Deserialize)]
struct CheckParams {
    host: HostId,
    profile: ProfileName,
    data_dir: String,
}

/// `host.forget`.
#[derive(Debug, Serialize, Deserialize)]
struct HostParams {
    host: HostId,
}

/// System trees no data directory may lie in; each agent also confines
/// directories to its own data root (`atoll agent --data-root`).
const SYSTEM_TREES: [&str; 14] =
    ["/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run", "/sbin", "/sys", "/usr"];
/// Shared directories no data directory may be (it is given to the
/// database user).
const SHARED_DIRS: [&str; 12] =
    ["/", "/home", "/media", "/mnt", "/opt", "/srv", "/tmp", "/var", "/var/lib", "/var/log", "/var/spool", "/var/tmp"];

/// What is wrong with `data_dir` as a directory to prepare, before any
/// agent is asked; the agent decides whether it lies below its data root.
pub fn check_data_dir(data_dir: &str) -> Vec<String> {
    let p = std::path::Path::new(data_dir);
    if !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
        return vec![format!("data_dir {data_dir:?} must be an absolute path without \"..\"")];
    }
    let p: std::path::PathBuf = p.components().collect();
    if SYSTEM_TREES.iter().any(|s| p.starts_with(s)) || SHARED_DIRS.iter().any(|s| p == std::path::Path::new(s)) {
        return vec![format!(
            "data_dir {data_dir} is a system directory; databases get a directory of their own below each agent's data root \
             (default /var/lib/atoll, e.g. /var/lib/atoll/db)"
        )];
    }
    Vec::new()
}

/// What is wrong with `owner` for a data directory: only the database user
/// (`mysql`, the default) or root.
pub fn check_owner(owner: Option<&str>) -> Vec<String> {
    match owner {
        None | Some("mysql" | "root") => Vec::new(),
        Some(o) => vec![format!("owner {o:?}: a data directory belongs to the database user mysql (the default) or to root, nothing else")],
    }
}

pub fn prepare_task(hosts: &[HostRecord], profile: &Profile, data_dir: &str, owner: Option<&str>) -> TaskSpec {
    let mut steps = Vec::new();
    for h in hosts {
        let (id, name) = (h.host.id, &h.host.name);
        let dirs = format!("dirs@{name}");
        let make = DirsParams::Make { host: id, paths: vec![data_dir.to_string()], owner: owner.map(String::from), mode: 0o750 };
        steps.push(StepSpec::typed(&dirs, DIRS, format!("create {data_dir} on {name}"), &make));
        let check = CheckParams { host: id, profile: profile.name, data_dir: data_dir.to_string() };
        steps.push(StepSpec::typed(format!("check@{name}"), CHECK, format!("precheck {name} ({})", profile.name), &check).after(dirs));
    }
    let names: Vec<&str> = hosts.iter().map(|h| h.host.name.as_str()).collect();
    TaskSpec {
        kind: "host.prepare".into(),
        title: format!("prepare {}", names.join(", ")),
        target: names.join(","),
        params: json!({ "data_dir": data_dir, "profile": profile.name, "owner": owner }),
        steps,
    }
}

pub fn remove_task(state: &AppState, host: &HostRecord, purge: bool) -> TaskSpec {
    let (id, name) = (host.host.id, &host.host.name);
    let mut steps = Vec::new();
    let mut forget = StepSpec::typed(format!("forget@{name}"), FORGET, format!("forget {name}"), &HostParams { host: id });
    if purge {
        let dir = &state.config.host_data_dir;
        let purge_key = format!("purge@{name}");
        let remove = DirsParams::Remove { host: id, remove: vec![dir.clone()] };
        steps.push(StepSpec::typed(&purge_key, DIRS, format!("remove {dir} from {name}"), &remove));
        forget = forget.after(purge_key);
    }
    steps.push(forget);
    TaskSpec { kind: "host.remove".into(), title: format!("remove {name}"), target: name.clone(), params: json!({ "purge": purge }), steps }
}

/// Creates directories (forward) or removes them (a purge step, or the
/// rollback of a creation, which removes only what it created).
pub(crate) struct Dirs(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Dirs {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let p: DirsParams = ctx.params()?;
        let host = host_by_id(state, p.host()).await?;
        let operation = match p {
            DirsParams::Remove { remove, .. } => HostOp::RemoveDirs { paths: remove },
            DirsParams::Make { paths, owner, mode, .. } => HostOp::MakeDirs { paths, owner, mode },
        };
        let r = agent_op(ctx, state, &host, operation).await?;
        ctx.info(format!("result: {}", r.detail)).await;
        Ok(r.detail)
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let p: DirsParams = ctx.params()?;
        if matches!(p, DirsParams::Remove { .. }) {
            ctx.info("removed directories cannot be restored; nothing to undo").await;
            return Ok(());
        }
        let state = self.0.get()?;
        let created: Vec<String> =
            ctx.output_of(&ctx.key).await.and_then(|o| serde_json::from_value(o["created"].clone()).ok()).unwrap_or_default();
        if created.is_empty() {
            ctx.info("created nothing; nothing to undo").await;
            return Ok(());
        }
        let host = host_by_id(state, p.host()).await?;
        let r = agent_op(ctx, state, &host, HostOp::RemoveDirs { paths: created.into_iter().rev().collect() }).await?;
        ctx.info(format!("result: {}", r.detail)).await;
        Ok(())
    }
}

/// The environment precheck; fails the step on any failing item.
pub(crate) struct Check(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Check {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let CheckParams { host, profile, data_dir } = ctx.params()?;
        let h = host_by_id(state, host).await?;
        let report = hostops::check_host(state, &h, &profile.profile(), &data_dir, &hostops::default_db_ports()).await;
        for r in &report.results {
            if r.status != CheckStatus::Pass {
                ctx.warn(format!(
                    "{} {}: measured {}, required {}; fix: {}",
                    r.status,
                    r.item,
                    r.measured,
                    r.required,
                    r.fix.as_deref().unwrap_or("-")
                ))
                .await;
            }
        }
        if report.worst == CheckStatus::Fail {
            let failed: Vec<&str> = report.results.iter().filter(|r| r.status == CheckStatus::Fail).map(|r| r.item.as_str()).collect();
            return Err(StepError::fatal(format!(
                "{} fails the {} precheck on {}; fix them and retry this step (`atoll host check {}` shows details)",
                h.host.name,
                profile,
                failed.join(", "),
                h.host.name
            )));
        }
        ctx.info(format!("{} passes the {} precheck ({})", h.host.name, profile, report.worst)).await;
        serde_json::to_value(&report).map_err(|e| StepError::fatal(e.to_string()))
    }
}

/// Deletes the host from MetaDB; its agent stops at the next heartbeat.
pub(crate) struct Forget(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Forget {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let HostParams { host } = ctx.params()?;
        let removed = state.store.delete_host(host).await.map_err(store_err)?;
        ctx.info(if removed { "host deleted from the platform" } else { "host was already gone" }).await;
        Ok(json!({ "removed": removed }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_directories_and_owners_are_checked() {
        assert!(check_data_dir("/var/lib/atoll/db").is_empty());
        for bad in ["db", "/etc", "/etc/atoll", "/usr/local/db", "/var/lib", "/", "/var/lib/atoll/../../../etc"] {
            assert_eq!(check_data_dir(bad).len(), 1, "{bad}");
        }
        assert!(check_owner(None).is_empty() && check_owner(Some("mysql")).is_empty() && check_owner(Some("root")).is_empty());
        assert!(check_owner(Some("nobody"))[0].contains("mysql"));
    }

    #[test]
    fn directory_steps_of_both_kinds_decode() {
        let id = HostId::new();
        let make: DirsParams = serde_json::from_value(json!({ "host": id, "paths": ["/d"], "owner": null, "mode": 0o750 })).expect("make");
        assert!(matches!(make, DirsParams::Make { ref paths, owner: None, mode: 0o750, .. } if paths == &["/d"]));
        let remove: DirsParams = serde_json::from_value(json!({ "host": id, "remove": ["/d"] })).expect("remove");
        assert!(matches!(remove, DirsParams::Remove { .. }));
        assert_eq!(remove.host(), id);
    }
}

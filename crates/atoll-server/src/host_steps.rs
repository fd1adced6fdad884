//! Task steps that act on hosts, and the tasks built from them. Effects go
//! through the agent's journaled operations, keyed by the step's
//! idempotency key, so a step resumed after a server died does not act twice.

use std::sync::Arc;

use async_trait::async_trait;
use atoll_api::agent::{HostOp, OpRequest, OpResult};
use atoll_core::HostId;
use atoll_plan::check::CheckStatus;
use atoll_plan::profile::{Profile, ProfileName};
use atoll_store::HostRecord;
use atoll_tasks::{Engine, StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde_json::{Value, json};

use crate::hostops;
use crate::state::AppState;

pub const DIRS: &str = "host.dirs";
pub const CHECK: &str = "host.check";
pub const FORGET: &str = "host.forget";

/// Registers this module's step kinds with the engine.
pub fn register(engine: &mut Engine, state: Arc<std::sync::OnceLock<AppState>>) {
    let state = StateRef(state);
    engine.register(DIRS, Arc::new(Dirs(state.clone())));
    engine.register(CHECK, Arc::new(Check(state.clone())));
    engine.register(FORGET, Arc::new(Forget(state.clone())));
    crate::packages::register(engine, state.clone());
    crate::clusters::steps::register(engine, state);
}

/// The engine is built before the state that holds it; handlers reach the
/// state through this once it is set.
#[derive(Clone)]
pub(crate) struct StateRef(Arc<std::sync::OnceLock<AppState>>);

impl StateRef {
    pub(crate) fn get(&self) -> Result<&AppState, StepError> {
        self.0.get().ok_or_else(|| StepError::retryable("server still starting"))
    }
}

pub fn prepare_task(hosts: &[HostRecord], profile: &Profile, data_dir: &str, owner: Option<&str>) -> TaskSpec {
    let mut steps = Vec::new();
    for h in hosts {
        let (id, name) = (h.host.id, &h.host.name);
        let dirs = format!("dirs@{name}");
        steps.push(StepSpec::new(
            &dirs,
            DIRS,
            format!("create {data_dir} on {name}"),
            json!({ "host": id, "paths": [data_dir], "owner": owner, "mode": 0o750 }),
        ));
        steps.push(
            StepSpec::new(
                format!("check@{name}"),
                CHECK,
                format!("precheck {name} ({})", profile.name),
                json!({ "host": id, "profile": profile.name, "data_dir": data_dir }),
            )
            .after(dirs),
        );
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
    let mut forget = StepSpec::new(format!("forget@{name}"), FORGET, format!("forget {name}"), json!({ "host": id }));
    if purge {
        let dir = &state.config.host_data_dir;
        let purge_key = format!("purge@{name}");
        steps.push(StepSpec::new(&purge_key, DIRS, format!("remove {dir} from {name}"), json!({ "host": id, "remove": [dir] })));
        forget = forget.after(purge_key);
    }
    steps.push(forget);
    TaskSpec { kind: "host.remove".into(), title: format!("remove {name}"), target: name.clone(), params: json!({ "purge": purge }), steps }
}

pub(crate) fn param<T: serde::de::DeserializeOwned>(ctx: &StepContext, key: &str) -> Result<T, StepError> {
    serde_json::from_value(ctx.params.get(key).cloned().unwrap_or(Value::Null))
        .map_err(|e| StepError::fatal(format!("step parameter {key}: {e}")))
}

async fn host(state: &AppState, ctx: &StepContext) -> Result<HostRecord, StepError> {
    host_by_id(state, param(ctx, "host")?).await
}

pub(crate) async fn host_by_id(state: &AppState, id: HostId) -> Result<HostRecord, StepError> {
    match state.store.get_host(id).await {
        Ok(Some(h)) => Ok(h),
        Ok(None) => Err(StepError::fatal(format!("host {id} no longer exists"))),
        Err(e) => Err(StepError::retryable(e.to_string())),
    }
}

/// Runs a journaled operation on the agent of the step's `host`.
async fn op(state: &AppState, ctx: &StepContext, op: HostOp) -> Result<OpResult, StepError> {
    agent_op(ctx, &host(state, ctx).await?, op).await
}

/// Runs a journaled operation on a host's agent, keyed by the step.
pub(crate) async fn agent_op(ctx: &StepContext, h: &HostRecord, op: HostOp) -> Result<OpResult, StepError> {
    // Operations may wait on a database (a clean shutdown flushes); the
    // step's own timeout bounds them.
    let client = hostops::agent_with_timeout(h, std::time::Duration::from_secs(600)).map_err(|e| StepError::fatal(e.to_string()))?;
    let req = OpRequest { key: ctx.idempotency_key(), op };
    let result: OpResult = client.post("/agent/v1/ops", &req).await.map_err(|e| match e.status() {
        Some(s) if (400..500).contains(&s) => StepError::fatal(format!("{}: {e}", h.host.name)),
        _ => StepError::retryable(format!("{} does not answer: {e}", h.host.name)),
    })?;
    if result.replayed {
        ctx.info(format!("{} had already done this (attempt after a restart); using its record", h.host.name)).await;
    }
    Ok(result)
}

/// Creates directories (forward) or removes them (a purge step, or the
/// rollback of a creation, which removes only what it created).
struct Dirs(StateRef);

#[async_trait]
impl StepHandler for Dirs {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let operation = match ctx.params.get("remove") {
            Some(_) => HostOp::RemoveDirs { paths: param(ctx, "remove")? },
            None => HostOp::MakeDirs { paths: param(ctx, "paths")?, owner: param(ctx, "owner")?, mode: param(ctx, "mode")? },
        };
        let r = op(state, ctx, operation).await?;
        ctx.info(format!("result: {}", r.detail)).await;
        Ok(r.detail)
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        if ctx.params.get("remove").is_some() {
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
        let r = op(state, ctx, HostOp::RemoveDirs { paths: created.into_iter().rev().collect() }).await?;
        ctx.info(format!("result: {}", r.detail)).await;
        Ok(())
    }
}

/// The environment precheck; fails the step on any failing item.
struct Check(StateRef);

#[async_trait]
impl StepHandler for Check {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let h = host(state, ctx).await?;
        let profile: ProfileName = param(ctx, "profile")?;
        let data_dir: String = param(ctx, "data_dir")?;
        let report = hostops::check_host(state, &h, &profile.profile(), &data_dir, &hostops::DB_PORTS).await;
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
struct Forget(StateRef);

#[async_trait]
impl StepHandler for Forget {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let id: HostId = param(ctx, "host")?;
        let removed = state.store.delete_host(id).await.map_err(|e| StepError::retryable(e.to_string()))?;
        ctx.info(if removed { "host deleted from the platform" } else { "host was already gone" }).await;
        Ok(json!({ "removed": removed }))
    }
}

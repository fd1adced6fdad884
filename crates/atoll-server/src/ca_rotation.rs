//! Rotating the platform's CA without downtime, as a task of four steps.
//! At every moment each connection's two ends trust the CA that issued
//! the other's certificate:
//!
//! 1. stage: a new CA, its key sealed in the CA document as `next`;
//! 2. trust: every server and agent trusts both (agents hand the bundle to
//!    their database servers, reloaded live, and to their proxies); wait
//!    until each reports it;
//! 3. switch: the new CA issues; servers reissue their own certificates,
//!    agents theirs and their database servers' (a certificate from a CA
//!    that no longer issues is renewed); wait until every one is new;
//! 4. retire: the old CA is trusted no more; wait until each reports it.
//!
//! Each step looks at the document first, so the task is safe to run
//! again after a failure: a new `atoll platform rotate-ca` carries on from
//! where the last one stopped (a host that was offline, say).

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use atoll_core::HostStatus;
use atoll_tasks::{StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::pki::{self, StoredCa};
use crate::state::AppState;
use crate::step_kit::StateRef;

pub const STAGE: &str = "ca.stage";
pub const TRUST: &str = "ca.trust";
pub const SWITCH: &str = "ca.switch";
pub const RETIRE: &str = "ca.retire";

/// How long a step waits for every server and host before it fails,
/// naming those that did not follow.
const WAIT_DEFAULT_S: u64 = 300;

#[derive(Debug, Serialize, Deserialize)]
struct Params {
    wait_s: u64,
}

pub fn task(wait_s: Option<u64>) -> TaskSpec {
    let wait_s = wait_s.unwrap_or(WAIT_DEFAULT_S);
    let p = Params { wait_s };
    let step = |key: &str, kind: &str, title: &str| {
        let mut s = StepSpec::typed(key, kind, title, &p);
        // Retried only after a passing error (MetaDB busy); a wait that
        // ran out fails at once, naming who did not follow.
        s.timeout = Duration::from_secs(wait_s + 60);
        s.max_attempts = 3;
        s
    };
    TaskSpec {
        kind: "platform.rotate_ca".into(),
        title: "rotate the platform CA".into(),
        target: "ca".into(),
        params: json!({ "wait_s": wait_s }),
        steps: vec![
            step("stage", STAGE, "make a new CA"),
            step("trust", TRUST, "trust the new CA everywhere").after("stage"),
            step("switch", SWITCH, "issue every certificate from the new CA").after("trust"),
            step("retire", RETIRE, "stop trusting the old CA").after("switch"),
        ],
    }
}

/// Where a rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Steady,
    /// A new CA is trusted everywhere before it issues.
    Trusting,
    /// The new CA issues; the old ones are trusted until replaced.
    Retiring,
}

impl Phase {
    fn of(stored: &StoredCa) -> Phase {
        match (&stored.next, stored.retiring.is_empty()) {
            (Some(_), _) => Phase::Trusting,
            (None, false) => Phase::Retiring,
            (None, true) => Phase::Steady,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Phase::Steady => "steady",
            Phase::Trusting => "trusting",
            Phase::Retiring => "retiring",
        }
    }
}

/// What every server and host must show.
#[derive(Debug)]
struct Expect {
    trusted: BTreeSet<String>,
    /// Every certificate issued by this CA.
    issuer: Option<String>,
}

impl Expect {
    fn of(stored: &StoredCa, with_issuer: bool) -> Result<Expect, String> {
        let trusted = atoll_pki::fingerprints(&stored.bundle()).map_err(|e| e.to_string())?.into_iter().collect();
        let issuer = atoll_pki::fingerprint(&stored.active.cert_pem).map_err(|e| e.to_string())?;
        Ok(Expect { trusted, issuer: with_issuer.then_some(issuer) })
    }
}

/// The servers and hosts that are not yet as `expect` wants, each with why.
async fn lagging(state: &AppState, expect: &Expect) -> Result<Vec<String>, String> {
    let mut behind = Vec::new();
    let now = atoll_core::time::now_ms();
    for server in state.store.list_platform_servers().await.map_err(|e| e.to_string())? {
        if !crate::platform::is_live(state, &server, now) {
            continue;
        }
        let doc = state.store.get_doc(atoll_store::DocKind::Pki, &pki::server_doc(&server.id)).await.map_err(|e| e.to_string())?;
        let Some(seen) = doc.and_then(|d| serde_json::from_str::<pki::ServerPki>(&d.body).ok()) else {
            behind.push(format!("server {} has not recorded its TLS state (an older version?)", server.url));
            continue;
        };
        let trusted: BTreeSet<String> = seen.trusted.into_iter().collect();
        if trusted != expect.trusted {
            behind.push(format!("server {} trusts {}", server.url, short_all(&trusted)));
        } else if expect.issuer.as_ref().is_some_and(|i| *i != seen.issuer) {
            behind.push(format!("server {} holds certificates of {}", server.url, short(&seen.issuer)));
        }
    }
    for h in state.store.list_hosts().await.map_err(|e| e.to_string())? {
        let host = &h.host;
        if host.status == HostStatus::Pending {
            continue;
        }
        let offline = if host.status == HostStatus::Offline { " (offline)" } else { "" };
        let Some(tls) = host.facts.as_ref().and_then(|f| f.tls.as_ref()) else {
            behind.push(format!("host {}{offline} has not reported its TLS state", host.name));
            continue;
        };
        let trusted: BTreeSet<String> = tls.trusts.iter().cloned().collect();
        if trusted != expect.trusted {
            behind.push(format!("host {}{offline} trusts {}", host.name, short_all(&trusted)));
            continue;
        }
        if let Some(issuer) = &expect.issuer {
            let old: Vec<&str> = tls.certificates.iter().filter(|c| c.issuer.as_ref() != Some(issuer)).map(|c| c.holder.as_str()).collect();
            if !old.is_empty() {
                behind.push(format!("host {}{offline}: certificates of {} not yet from the new CA", host.name, old.join(", ")));
            }
        }
    }
    Ok(behind)
}

fn short(fingerprint: &str) -> String {
    fingerprint.chars().take(19).collect()
}

fn short_all(fps: &BTreeSet<String>) -> String {
    if fps.is_empty() {
        return "nothing".into();
    }
    fps.iter().map(|f| short(f)).collect::<Vec<_>>().join(" and ")
}

/// Waits until nothing lags behind `expect`, logging who does as it
/// changes; fails after `wait_s` naming them.
async fn wait_all(ctx: &StepContext, state: &AppState, expect: &Expect, wait_s: u64, what: &str) -> Result<Value, StepError> {
    let started = std::time::Instant::now();
    let mut last: Option<Vec<String>> = None;
    loop {
        let behind = lagging(state, expect).await.map_err(StepError::retryable)?;
        if behind.is_empty() {
            let took_ms = started.elapsed().as_millis() as u64;
            ctx.info(format!("every server and host {what} ({:.1} s)", took_ms as f64 / 1000.0)).await;
            return Ok(json!({ "took_ms": took_ms }));
        }
        if last.as_ref() != Some(&behind) {
            ctx.info(format!("waiting: {}", behind.join("; "))).await;
            last = Some(behind.clone());
        }
        if started.elapsed() >= Duration::from_secs(wait_s) {
            return Err(StepError::fatal(format!(
                "not everyone {what} within {wait_s} s: {}. Bring them back (or remove hosts that are gone), then run \
                 `atoll platform rotate-ca` again: it carries on from here",
                behind.join("; ")
            )));
        }
        crate::step_kit::pause(ctx, Duration::from_secs(1)).await?;
    }
}

async fn stored(state: &AppState) -> Result<StoredCa, StepError> {
    Ok(pki::read(state.store.as_ref())
        .await
        .map_err(|e| StepError::retryable(e.to_string()))?
        .ok_or_else(|| StepError::fatal("no platform CA in MetaDB"))?
        .0)
}

async fn save(state: &AppState, stored: &StoredCa) -> Result<(), StepError> {
    pki::write(state.store.as_ref(), stored).await.map_err(|e| StepError::retryable(e.to_string()))?;
    // This server follows at once; the others within pki::FOLLOW_EVERY.
    state.pki.follow(state.store.as_ref(), &state.secrets, &state.config).await.map_err(|e| StepError::retryable(e.to_string()))
}

pub(crate) struct Step(pub(crate) StateRef, pub(crate) &'static str);

#[async_trait]
impl StepHandler for Step {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let Params { wait_s } = ctx.params()?;
        let mut ca = stored(state).await?;
        match self.1 {
            STAGE => {
                let phase = Phase::of(&ca);
                if phase != Phase::Steady {
                    ctx.info(format!("a rotation is under way ({}); carrying it on", phase.as_str())).await;
                    return Ok(json!({ "staged": false }));
                }
                let next = pki::new_ca(&state.secrets).map_err(|e| StepError::fatal(e.to_string()))?;
                let fingerprint = atoll_pki::fingerprint(&next.cert_pem).map_err(|e| StepError::fatal(e.to_string()))?;
                ca.next = Some(next);
                save(state, &ca).await?;
                ctx.info(format!("new CA {fingerprint}")).await;
                Ok(json!({ "staged": true, "fingerprint": fingerprint }))
            }
            TRUST => {
                if ca.next.is_none() {
                    return Ok(json!({ "skipped": "the new CA issues already" }));
                }
                wait_all(ctx, state, &Expect::of(&ca, false).map_err(StepError::fatal)?, wait_s, "trusts the new CA").await
            }
            SWITCH => {
                if let Some(next) = ca.next.take() {
                    let old = std::mem::replace(&mut ca.active, next);
                    ca.retiring.insert(0, old.cert_pem);
                    save(state, &ca).await?;
                    ctx.info("the new CA issues now").await;
                }
                if ca.retiring.is_empty() {
                    return Ok(json!({ "skipped": "no old CA left" }));
                }
                wait_all(ctx, state, &Expect::of(&ca, true).map_err(StepError::fatal)?, wait_s, "holds certificates of the new CA only")
                    .await
            }
            RETIRE => {
                if !ca.retiring.is_empty() {
                    ca.retiring.clear();
                    save(state, &ca).await?;
                }
                wait_all(ctx, state, &Expect::of(&ca, true).map_err(StepError::fatal)?, wait_s, "trusts the new CA alone").await
            }
            other => Err(StepError::fatal(format!("unknown CA step {other}"))),
        }
    }
}

/// The CA's state for the API: phase, trust, and who lags behind it.
pub async fn view(state: &AppState) -> Result<atoll_api::v1::CaView, crate::error::ApiError> {
    let ca = pki::read(state.store.as_ref())
        .await
        .map_err(|e| crate::error::ApiError::Internal(e.to_string()))?
        .ok_or_else(|| crate::error::ApiError::NotFound("no platform CA yet".into()))?
        .0;
    let phase = Phase::of(&ca);
    let expect = Expect::of(&ca, phase != Phase::Trusting).map_err(crate::error::ApiError::Internal)?;
    let waiting_for = if state.config.tls { lagging(state, &expect).await.map_err(crate::error::ApiError::Internal)? } else { Vec::new() };
    let trusted = atoll_pki::fingerprints(&ca.bundle()).map_err(|e| crate::error::ApiError::Internal(e.to_string()))?;
    Ok(atoll_api::v1::CaView { issuer: trusted.first().cloned().unwrap_or_default(), trusted, phase: phase.as_str().into(), waiting_for })
}

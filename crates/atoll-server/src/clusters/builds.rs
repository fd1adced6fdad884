//! Which engine build a cluster's servers run on each host.

use atoll_core::{ClusterSpec, EngineBuild, SYSTEM_BUILD};
use atoll_store::{HostRecord, PackageRecord};

/// The package a cluster runs; `None` for the hosts' system build.
pub fn package_name(spec: &ClusterSpec) -> Option<&str> {
    spec.engine.as_deref().filter(|e| *e != SYSTEM_BUILD)
}

/// The engine build a cluster's servers run on `host`, from its facts:
/// `Ok(None)` for the system build, the build otherwise. `Err` says what
/// the host lacks and how to fix it. `package` is the registered package
/// the spec names (unknown packages are reported by the caller).
pub fn engine_build(spec: &ClusterSpec, package: Option<&PackageRecord>, host: &HostRecord) -> Result<Option<EngineBuild>, String> {
    let h = &host.host.name;
    let facts = host.host.facts.as_ref();
    let Some(name) = package_name(spec) else {
        return match facts.and_then(|f| f.engine(SYSTEM_BUILD)) {
            Some(_) => Ok(None),
            None => Err(format!(
                "host {h} has no system engine build ({}); install mariadb-server galera-4 there, or push a package (`atoll package push NAME --host {h}`) and set engine = \"NAME\"",
                atoll_engine::BINARIES.join(", ")
            )),
        };
    };
    match facts.and_then(|f| f.engine(name)) {
        None => Err(format!("host {h} has no engine build {name}; push it with `atoll package push {name} --host {h}`")),
        Some(b) => match package {
            Some(p) if b.sha256.as_deref() != Some(p.sha256.as_str()) => Err(format!(
                "host {h} has another build named {name} (sha256 {}) than the registered package (sha256 {})",
                b.sha256.as_deref().unwrap_or("unknown"),
                p.sha256
            )),
            _ => Ok(Some(b.clone())),
        },
    }
}

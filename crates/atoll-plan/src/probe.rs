//! What the agent measures on request, beyond its standing facts: things that
//! depend on the planned deployment (ports, directories, binaries).

use serde::{Deserialize, Serialize};

/// Asked of an agent before a deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    /// Directory the databases will live under; checked for writability.
    pub data_dir: String,
    /// TCP ports that must be free on the host's address.
    pub ports: Vec<u16>,
    /// Programs or files that must exist (names are looked up on PATH and
    /// in the usual sbin directories; absolute paths are taken as they are).
    pub binaries: Vec<String>,
}

/// The agent's answer to a [`ProbeRequest`]: measurements, no verdicts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProbeReport {
    pub data_dir: String,
    /// `None` when a file could be created and removed there, else the error.
    pub data_dir_error: Option<String>,
    pub ports: Vec<PortProbe>,
    pub binaries: Vec<BinaryProbe>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PortProbe {
    pub port: u16,
    pub free: bool,
    /// Why it is not free (the bind error), when it is not.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BinaryProbe {
    pub name: String,
    /// Where it was found; `None` when it is missing.
    pub path: Option<String>,
}

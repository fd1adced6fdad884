//! `/api/v1/packages`: engine builds registered as tarballs, and pushing
//! them to hosts. The tarball itself goes up as the raw request body
//! (`application/gzip`) and down to agents from `/agent/v1/packages/{sha256}`.

use atoll_core::UnixMs;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/packages?name=…&version=…`; the body is the tarball.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AddPackageQuery {
    /// Name clusters refer to (`engine = "NAME"`); default: the file name
    /// without `.tar.gz`.
    pub name: Option<String>,
    /// Free text shown with the package; default: taken from the name when
    /// it carries one (`mariadb-11.8.3…`), else `unknown`.
    pub version: Option<String>,
    /// The uploaded file's name, for the defaults above.
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PackageView {
    pub name: String,
    pub version: String,
    /// SHA-256 of the tarball: agents verify it while downloading.
    pub sha256: String,
    pub size_bytes: u64,
    /// Where the build's essential files are inside the tarball.
    pub mariadbd: String,
    pub install_db: String,
    pub galera: String,
    pub created_by: String,
    pub created_at_ms: UnixMs,
    /// Hosts whose agents report this build installed (same checksum).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `POST /api/v1/packages/{name}/push`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushPackageRequest {
    /// Host ids, names or addresses.
    pub hosts: Vec<String>,
}

//! Database clusters: validating requests against everything the platform
//! knows, the tasks that make and operate clusters, routing and health.
//!
//! Files depend downwards only, so each can be read without the ones above
//! it:
//! - `servers` (one server, scaling, and the rules that guard them) →
//!   `operate` (whole-cluster tasks) → `writer` (planned moves) → `steps`
//!   (the steps that make servers, the create task);
//! - `standby` (standby clusters: pair rules, the create task, seeding and
//!   the replication channel) builds on `steps`; `channels` (the controller
//!   that moves a standby's channel) on `standby`;
//! - `validate` and `view` read what the others record;
//! - `health` → `routing` (writer failover, the proxies' table) →
//!   `status`, `secrets`, `builds`, `proxies`, `protect`: leaves that
//!   import nothing else of this module.
//!
//! Step kinds are registered in one place, `crate::registry`.

pub mod builds;
pub mod channels;
pub mod health;
pub mod operate;
pub mod protect;
pub mod proxies;
pub mod routing;
pub mod secrets;
pub mod servers;
pub mod standby;
pub mod status;
pub mod steps;
pub mod validate;
pub mod view;
pub mod writer;

//! Hosts: what operators added and what agents report about themselves.
//!
//! A host's id is the agent's own identity, but an operator may add a host
//! (status `pending`, a server-made id) before its agent ever ran; the first
//! registration from that address then *claims* the row, which takes the
//! agent's id. Addresses are unique, so the address is how the two meet.

use async_trait::async_trait;
use atoll_core::{Host, HostFacts, HostId, HostStatus, UnixMs};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::retry::retry;
use super::row::{self, conflict_on_unique};
use crate::model::check_summary;
use crate::{AgentAuth, Fence, HeartbeatRecord, HostFilter, HostRecord, HostStore, HostSummaryRecord, Registration, Result, StoreError};

// `sqlx::query` wants `&'static str`; these are assembled at compile time.
macro_rules! select_hosts {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, address, agent_url, zone, region, status, facts_json, agent_version, ",
            "created_at_ms, last_heartbeat_ms, agent_token_hash, server_token, checks_json, checked_at_ms ",
            "FROM hosts ",
            $tail
        )
    };
}

fn decode(r: &AnyRow) -> Result<HostRecord> {
    Ok(HostRecord {
        host: Host {
            id: row::parsed(r, "id")?,
            name: row::text(r, "name")?,
            address: row::text(r, "address")?,
            agent_url: row::opt_text(r, "agent_url")?,
            zone: row::opt_text(r, "zone")?,
            region: row::opt_text(r, "region")?,
            status: row::parsed(r, "status")?,
            facts: row::opt_json(r, "facts_json")?,
            agent_version: row::opt_text(r, "agent_version")?,
            created_at_ms: row::int(r, "created_at_ms")?,
            last_heartbeat_ms: row::opt_int(r, "last_heartbeat_ms")?,
        },
        agent_token_hash: row::opt_text(r, "agent_token_hash")?,
        server_token: row::opt_text(r, "server_token")?,
        checks: row::opt_json(r, "checks_json")?,
        checked_at_ms: row::opt_int(r, "checked_at_ms")?,
    })
}

/// The summary columns kept with `facts_json`: cores, memory, clock offset.
struct FactsSummary {
    cpu_cores: i64,
    memory_bytes: i64,
    clock_offset_ms: Option<i64>,
}

impl FactsSummary {
    fn of(f: &HostFacts) -> Self {
        Self {
            cpu_cores: i64::from(f.cpu.cores),
            memory_bytes: i64::try_from(f.memory_bytes).unwrap_or(i64::MAX),
            clock_offset_ms: f.clock_offset_ms,
        }
    }
}

fn decode_summary(r: &AnyRow) -> Result<HostSummaryRecord> {
    Ok(HostSummaryRecord {
        id: row::parsed(r, "id")?,
        name: row::text(r, "name")?,
        address: row::text(r, "address")?,
        agent_url: row::opt_text(r, "agent_url")?,
        zone: row::opt_text(r, "zone")?,
        region: row::opt_text(r, "region")?,
        status: row::parsed(r, "status")?,
        agent_version: row::opt_text(r, "agent_version")?,
        created_at_ms: row::int(r, "created_at_ms")?,
        last_heartbeat_ms: row::opt_int(r, "last_heartbeat_ms")?,
        cpu_cores: opt_unsigned(r, "cpu_cores")?,
        memory_bytes: opt_unsigned(r, "memory_bytes")?,
        clock_offset_ms: row::opt_int(r, "clock_offset_ms")?,
        check_worst: row::opt_text(r, "check_worst")?,
        check_profile: row::opt_text(r, "check_profile")?,
        checked_at_ms: row::opt_int(r, "checked_at_ms")?,
    })
}

/// A nullable column holding a non-negative number.
fn opt_unsigned<T: TryFrom<i64>>(r: &AnyRow, col: &'static str) -> Result<Option<T>> {
    row::opt_int(r, col)?
        .map(|v| T::try_from(v).map_err(|_| StoreError::Corrupt { what: col, detail: format!("{v} is out of range") }))
        .transpose()
}

async fn by_id(conn: &mut AnyConnection, id: HostId) -> Result<Option<HostRecord>> {
    sqlx::query(select_hosts!("WHERE id = ?")).bind(id.to_string()).fetch_optional(conn).await?.map(|r| decode(&r)).transpose()
}

async fn by_address(conn: &mut AnyConnection, address: &str) -> Result<Option<HostRecord>> {
    sqlx::query(select_hosts!("WHERE address = ?")).bind(address).fetch_optional(conn).await?.map(|r| decode(&r)).transpose()
}

fn address_taken(address: &str, holder: &HostRecord) -> StoreError {
    StoreError::Conflict(format!("address {address} is already used by host {}", holder.host.name))
}

/// What a registration does to the table; decided from what it finds.
enum Plan {
    Update,
    Claim(HostId),
    Insert,
}

impl SqlStore {
    async fn insert_host_once(&self, rec: &HostRecord) -> Result<()> {
        let h = &rec.host;
        let mut tx = self.begin_write().await?;
        let clash = sqlx::query(select_hosts!("WHERE id = ? OR name = ? OR address = ?"))
            .bind(h.id.to_string())
            .bind(&h.name)
            .bind(&h.address)
            .fetch_all(&mut *tx)
            .await?;
        let clash = clash.iter().map(decode).collect::<Result<Vec<_>>>()?;
        let field = if clash.iter().any(|o| o.host.id == h.id) {
            Some(format!("id {}", h.id))
        } else if clash.iter().any(|o| o.host.name == h.name) {
            Some(format!("name {}", h.name))
        } else if !clash.is_empty() {
            Some(format!("address {}", h.address))
        } else {
            None
        };
        if let Some(field) = field {
            return Err(StoreError::Conflict(format!("a host with {field} already exists")));
        }
        insert(&mut tx, rec).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One attempt at a registration; `None` when a concurrent writer changed
    /// the rows between our look and our write (then we look again).
    async fn register_once(&self, reg: &Registration) -> Result<Option<HostRecord>> {
        let mut tx = self.begin_write().await?;
        let mine = by_id(&mut tx, reg.id).await?;
        let at_address = by_address(&mut tx, &reg.address).await?;
        let plan = match (&mine, &at_address) {
            (_, Some(a)) if a.host.id == reg.id => Plan::Update,
            (None, Some(a)) if a.host.status == HostStatus::Pending => Plan::Claim(a.host.id),
            (_, Some(a)) => return Err(address_taken(&reg.address, a)),
            (Some(_), None) => Plan::Update,
            (None, None) => Plan::Insert,
        };
        let facts = row::to_json("facts_json", &reg.facts)?;
        let summary = FactsSummary::of(&reg.facts);
        let changed = match plan {
            Plan::Update => sqlx::query(
                "UPDATE hosts SET address = ?, agent_url = ?, zone = COALESCE(?, zone), region = COALESCE(?, region), facts_json = ?, \
                 cpu_cores = ?, memory_bytes = ?, clock_offset_ms = ?, \
                 agent_version = ?, agent_token_hash = ?, server_token = ?, status = ?, last_heartbeat_ms = ? \
                 WHERE id = ?",
            )
            .bind(&reg.address)
            .bind(&reg.agent_url)
            .bind(reg.zone.as_deref())
            .bind(reg.region.as_deref())
            .bind(facts)
            .bind(summary.cpu_cores)
            .bind(summary.memory_bytes)
            .bind(summary.clock_offset_ms)
            .bind(&reg.agent_version)
            .bind(&reg.agent_token_hash)
            .bind(&reg.server_token)
            .bind(HostStatus::Online.as_str())
            .bind(reg.now)
            .bind(reg.id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            // The pending host keeps its name, and its zone unless it had none.
            Plan::Claim(pending) => sqlx::query(
                "UPDATE hosts SET id = ?, agent_url = ?, zone = COALESCE(zone, ?), region = COALESCE(region, ?), facts_json = ?, \
                 cpu_cores = ?, memory_bytes = ?, clock_offset_ms = ?, \
                 agent_version = ?, agent_token_hash = ?, server_token = ?, status = ?, last_heartbeat_ms = ? \
                 WHERE id = ? AND status = ?",
            )
            .bind(reg.id.to_string())
            .bind(&reg.agent_url)
            .bind(reg.zone.as_deref())
            .bind(reg.region.as_deref())
            .bind(facts)
            .bind(summary.cpu_cores)
            .bind(summary.memory_bytes)
            .bind(summary.clock_offset_ms)
            .bind(&reg.agent_version)
            .bind(&reg.agent_token_hash)
            .bind(&reg.server_token)
            .bind(HostStatus::Online.as_str())
            .bind(reg.now)
            .bind(pending.to_string())
            .bind(HostStatus::Pending.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Plan::Insert => {
                let taken = sqlx::query("SELECT id FROM hosts WHERE name = ?").bind(&reg.name).fetch_optional(&mut *tx).await?;
                if taken.is_some() {
                    return Err(StoreError::Conflict(format!("a host with name {} already exists", reg.name)));
                }
                let rec = HostRecord {
                    host: Host {
                        id: reg.id,
                        name: reg.name.clone(),
                        address: reg.address.clone(),
                        agent_url: Some(reg.agent_url.clone()),
                        zone: reg.zone.clone(),
                        region: reg.region.clone(),
                        status: HostStatus::Online,
                        facts: Some(reg.facts.clone()),
                        agent_version: Some(reg.agent_version.clone()),
                        created_at_ms: reg.now,
                        last_heartbeat_ms: Some(reg.now),
                    },
                    agent_token_hash: Some(reg.agent_token_hash.clone()),
                    server_token: Some(reg.server_token.clone()),
                    checks: None,
                    checked_at_ms: None,
                };
                insert(&mut tx, &rec).await?;
                1
            }
        };
        if changed != 1 {
            return Ok(None);
        }
        let Some(rec) = by_id(&mut tx, reg.id).await? else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(rec))
    }

    async fn heartbeat_once(&self, hb: &HeartbeatRecord) -> Result<Option<HostStatus>> {
        let mut tx = self.begin_write().await?;
        // Only what the beat may change or report: not facts and checks.
        let Some(current) = sqlx::query("SELECT status, address FROM hosts WHERE id = ?")
            .bind(hb.id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| Ok::<_, StoreError>((row::parsed::<HostStatus>(&r, "status")?, row::text(&r, "address")?)))
            .transpose()?
        else {
            return Ok(None);
        };
        if current.1 != hb.address
            && let Some(holder) = by_address(&mut tx, &hb.address).await?
        {
            return Err(address_taken(&hb.address, &holder));
        }
        let update = match &hb.facts {
            None => sqlx::query("UPDATE hosts SET status = ?, last_heartbeat_ms = ?, address = ?, agent_url = ? WHERE id = ?")
                .bind(HostStatus::Online.as_str())
                .bind(hb.now)
                .bind(&hb.address)
                .bind(&hb.agent_url),
            // Fresh facts replace the summary columns too, including a clock
            // offset the agent no longer reports.
            Some(f) => {
                let summary = FactsSummary::of(f);
                sqlx::query(
                    "UPDATE hosts SET status = ?, last_heartbeat_ms = ?, address = ?, agent_url = ?, facts_json = ?, \
                     cpu_cores = ?, memory_bytes = ?, clock_offset_ms = ? WHERE id = ?",
                )
                .bind(HostStatus::Online.as_str())
                .bind(hb.now)
                .bind(&hb.address)
                .bind(&hb.agent_url)
                .bind(row::to_json("facts_json", f)?)
                .bind(summary.cpu_cores)
                .bind(summary.memory_bytes)
                .bind(summary.clock_offset_ms)
            }
        };
        update.bind(hb.id.to_string()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(current.0))
    }
}

async fn insert(conn: &mut AnyConnection, rec: &HostRecord) -> Result<()> {
    let h = &rec.host;
    let facts = h.facts.as_ref().map(|f| row::to_json("facts_json", f)).transpose()?;
    let checks = rec.checks.as_ref().map(|c| row::to_json("checks_json", c)).transpose()?;
    let summary = h.facts.as_ref().map(FactsSummary::of);
    let (check_worst, check_profile) = rec.checks.as_ref().map_or((None, None), check_summary);
    sqlx::query(
        "INSERT INTO hosts (id, name, address, agent_url, zone, region, status, facts_json, agent_version, \
         created_at_ms, last_heartbeat_ms, agent_token_hash, server_token, checks_json, checked_at_ms, \
         cpu_cores, memory_bytes, clock_offset_ms, check_worst, check_profile) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(h.id.to_string())
    .bind(&h.name)
    .bind(&h.address)
    .bind(h.agent_url.as_deref())
    .bind(h.zone.as_deref())
    .bind(h.region.as_deref())
    .bind(h.status.as_str())
    .bind(facts)
    .bind(h.agent_version.as_deref())
    .bind(h.created_at_ms)
    .bind(h.last_heartbeat_ms)
    .bind(rec.agent_token_hash.as_deref())
    .bind(rec.server_token.as_deref())
    .bind(checks)
    .bind(rec.checked_at_ms)
    .bind(summary.as_ref().map(|s| s.cpu_cores))
    .bind(summary.as_ref().map(|s| s.memory_bytes))
    .bind(summary.as_ref().and_then(|s| s.clock_offset_ms))
    .bind(check_worst)
    .bind(check_profile)
    .execute(conn)
    .await
    .map_err(|e| conflict_on_unique(e, || format!("a host with id {}, name {} or address {} already exists", h.id, h.name, h.address)))?;
    Ok(())
}

#[async_trait]
impl HostStore for SqlStore {
    async fn insert_host(&self, host: &HostRecord) -> Result<()> {
        retry(|| self.insert_host_once(host)).await
    }

    async fn get_host(&self, id: HostId) -> Result<Option<HostRecord>> {
        let mut conn = self.pool.acquire().await?;
        by_id(&mut conn, id).await
    }

    async fn agent_auth(&self, id: HostId) -> Result<Option<AgentAuth>> {
        let row =
            sqlx::query("SELECT name, agent_token_hash FROM hosts WHERE id = ?").bind(id.to_string()).fetch_optional(&self.pool).await?;
        row.map(|r| Ok(AgentAuth { name: row::text(&r, "name")?, token_hash: row::opt_text(&r, "agent_token_hash")? })).transpose()
    }

    async fn find_host(&self, key: &str) -> Result<Option<HostRecord>> {
        // One round trip; the precedence id > name > address is applied here.
        let hosts = sqlx::query(select_hosts!("WHERE id = ? OR name = ? OR address = ?"))
            .bind(key)
            .bind(key)
            .bind(key)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode)
            .collect::<Result<Vec<_>>>()?;
        let id = key.parse::<HostId>().ok();
        let pick = hosts
            .iter()
            .find(|h| Some(h.host.id) == id)
            .or_else(|| hosts.iter().find(|h| h.host.name == key))
            .or_else(|| hosts.iter().find(|h| h.host.address == key));
        Ok(pick.cloned())
    }

    async fn list_hosts(&self) -> Result<Vec<HostRecord>> {
        sqlx::query(select_hosts!("ORDER BY name")).fetch_all(&self.pool).await?.iter().map(decode).collect()
    }

    async fn list_host_summaries(&self, filter: &HostFilter) -> Result<Vec<HostSummaryRecord>> {
        let mut sql = String::from(
            "SELECT id, name, address, agent_url, zone, region, status, agent_version, created_at_ms, last_heartbeat_ms, \
             cpu_cores, memory_bytes, clock_offset_ms, check_worst, check_profile, checked_at_ms FROM hosts WHERE 1 = 1",
        );
        if filter.after.is_some() {
            sql.push_str(" AND name > ?");
        }
        if filter.status.is_some() {
            sql.push_str(" AND status = ?");
        }
        if filter.zone.is_some() {
            sql.push_str(" AND zone = ?");
        }
        // A prefix as a range on the unique name index (no LIKE escaping):
        // names are lowercase letters, digits and dashes, all below '~'.
        if filter.name_prefix.is_some() {
            sql.push_str(" AND name >= ? AND name < ?");
        }
        sql.push_str(" ORDER BY name");
        if filter.limit.is_some() {
            sql.push_str(" LIMIT ?");
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(a) = &filter.after {
            q = q.bind(a.clone());
        }
        if let Some(st) = filter.status {
            q = q.bind(st.as_str());
        }
        if let Some(z) = &filter.zone {
            q = q.bind(z.clone());
        }
        if let Some(p) = &filter.name_prefix {
            q = q.bind(p.clone()).bind(format!("{p}~"));
        }
        if let Some(l) = filter.limit {
            q = q.bind(i64::from(l));
        }
        q.fetch_all(&self.pool).await?.iter().map(decode_summary).collect()
    }

    async fn count_hosts_by_status(&self) -> Result<Vec<(HostStatus, i64)>> {
        sqlx::query("SELECT status, COUNT(*) AS n FROM hosts GROUP BY status ORDER BY status")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((row::parsed::<HostStatus>(r, "status")?, row::int(r, "n")?)))
            .collect()
    }

    async fn register_host(&self, reg: &Registration) -> Result<HostRecord> {
        for _ in 0..3 {
            if let Some(rec) = retry(|| self.register_once(reg)).await? {
                return Ok(rec);
            }
        }
        Err(StoreError::Conflict(format!("host {} kept changing while it registered from {}; try again", reg.id, reg.address)))
    }

    async fn record_heartbeat(&self, hb: &HeartbeatRecord) -> Result<Option<HostStatus>> {
        retry(|| self.heartbeat_once(hb)).await
    }

    async fn touch_heartbeats(&self, ids: &[HostId], at: UnixMs) -> Result<Vec<HostId>> {
        let mut not_online = Vec::new();
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let update = format!("UPDATE hosts SET last_heartbeat_ms = ? WHERE status = ? AND id IN ({marks})");
            let select = format!("SELECT id FROM hosts WHERE status = ? AND id IN ({marks})");
            let online: Vec<HostId> = retry(|| async {
                let mut tx = self.begin_write().await?;
                let mut q = sqlx::query(sqlx::AssertSqlSafe(update.clone())).bind(at).bind(HostStatus::Online.as_str());
                for id in chunk {
                    q = q.bind(id.to_string());
                }
                q.execute(&mut *tx).await?;
                let mut q = sqlx::query(sqlx::AssertSqlSafe(select.clone())).bind(HostStatus::Online.as_str());
                for id in chunk {
                    q = q.bind(id.to_string());
                }
                let rows = q.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows.iter().map(|r| row::parsed::<HostId>(r, "id")).collect()
            })
            .await?;
            not_online.extend(chunk.iter().filter(|id| !online.contains(id)));
        }
        Ok(not_online)
    }

    async fn mark_stale_offline(&self, before: UnixMs, fence: &Fence, now: UnixMs) -> Result<Vec<HostId>> {
        // In chunks, each one fenced transaction: a server's death can
        // leave thousands of hosts to mark, and one replicated commit per
        // host took minutes on Galera. The rows are locked while chosen
        // (`FOR UPDATE` on MySQL; SQLite's `BEGIN IMMEDIATE` serialises),
        // so a heartbeat that arrives meanwhile waits and then wins.
        let select = match self.backend {
            super::Backend::Sqlite => "SELECT id FROM hosts WHERE status = ? AND last_heartbeat_ms < ? ORDER BY id LIMIT 500",
            super::Backend::MySql => "SELECT id FROM hosts WHERE status = ? AND last_heartbeat_ms < ? ORDER BY id LIMIT 500 FOR UPDATE",
        };
        let online = HostStatus::Online.as_str();
        let mut changed = Vec::new();
        loop {
            let chunk: Vec<HostId> = retry(|| async move {
                let mut tx = self.begin_write().await?;
                super::platform::check_fence(&mut tx, fence, now).await?;
                let rows = sqlx::query(select).bind(online).bind(before).fetch_all(&mut *tx).await?;
                let ids: Vec<HostId> = rows.iter().map(|r| row::parsed::<HostId>(r, "id")).collect::<Result<_>>()?;
                if !ids.is_empty() {
                    let marks = vec!["?"; ids.len()].join(", ");
                    let update = format!("UPDATE hosts SET status = ? WHERE status = ? AND last_heartbeat_ms < ? AND id IN ({marks})");
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(update)).bind(HostStatus::Offline.as_str()).bind(online).bind(before);
                    for id in &ids {
                        q = q.bind(id.to_string());
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(ids)
            })
            .await?;
            let last = chunk.len() < 500;
            changed.extend(chunk);
            if last {
                return Ok(changed);
            }
        }
    }

    async fn set_host_checks(&self, id: HostId, checks: &serde_json::Value, at: UnixMs) -> Result<()> {
        let (worst, profile) = check_summary(checks);
        let checks = &row::to_json("checks_json", checks)?;
        retry(|| async move {
            sqlx::query("UPDATE hosts SET checks_json = ?, checked_at_ms = ?, check_worst = ?, check_profile = ? WHERE id = ?")
                .bind(checks)
                .bind(at)
                .bind(worst)
                .bind(profile)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn replace_server_token(&self, id: HostId, old: &str, new: &str) -> Result<bool> {
        retry(|| async move {
            let done = sqlx::query("UPDATE hosts SET server_token = ? WHERE id = ? AND server_token = ?")
                .bind(new)
                .bind(id.to_string())
                .bind(old)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn delete_host(&self, id: HostId) -> Result<bool> {
        retry(|| async move {
            let done = sqlx::query("DELETE FROM hosts WHERE id = ?").bind(id.to_string()).execute(&self.pool).await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }
}

//! Users, sessions, API tokens and login throttling.
//!
//! Sessions and tokens are stored by the hash of their secret only. Login
//! failures are counted per source in one row each, so the lock-out holds
//! across every server sharing this MetaDB.

use async_trait::async_trait;
use atoll_core::UnixMs;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::retry::retry;
use super::row::{self, conflict_on_unique, is_unique_violation};
use crate::{AccountStore, ApiTokenRecord, LockoutPolicy, Result, SessionRecord, StoreError, UserRecord};

macro_rules! select_users {
    ($tail:literal) => {
        concat!("SELECT name, password_hash, role, must_change_password, created_at_ms FROM users ", $tail)
    };
}

/// How stale a session's or token's "last used" may get before a request
/// writes it: the idle timeout and the token listing are coarser than this.
pub const TOUCH_EVERY_MS: UnixMs = 30_000;

macro_rules! select_sessions {
    ($tail:literal) => {
        concat!("SELECT token_hash, user_name, source, created_at_ms, last_seen_ms FROM sessions ", $tail)
    };
}

macro_rules! select_tokens {
    ($tail:literal) => {
        concat!("SELECT id, user_name, name, token_hash, created_at_ms, last_used_ms, expires_at_ms FROM api_tokens ", $tail)
    };
}

fn user(r: &AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        name: row::text(r, "name")?,
        password_hash: row::text(r, "password_hash")?,
        role: row::parsed(r, "role")?,
        must_change_password: row::flag(r, "must_change_password")?,
        created_at_ms: row::int(r, "created_at_ms")?,
    })
}

fn session(r: &AnyRow) -> Result<SessionRecord> {
    Ok(SessionRecord {
        token_hash: row::text(r, "token_hash")?,
        user: row::text(r, "user_name")?,
        source: row::text(r, "source")?,
        created_at_ms: row::int(r, "created_at_ms")?,
        last_seen_ms: row::int(r, "last_seen_ms")?,
    })
}

fn token(r: &AnyRow) -> Result<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: row::text(r, "id")?,
        user: row::text(r, "user_name")?,
        name: row::text(r, "name")?,
        token_hash: row::text(r, "token_hash")?,
        created_at_ms: row::int(r, "created_at_ms")?,
        last_used_ms: row::opt_int(r, "last_used_ms")?,
        expires_at_ms: row::opt_int(r, "expires_at_ms")?,
    })
}

impl SqlStore {
    async fn create_user_once(&self, u: &UserRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT name FROM users WHERE name = ?").bind(&u.name).fetch_optional(&mut *tx).await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!("user {:?} already exists", u.name)));
        }
        sqlx::query(
            "INSERT INTO users (name, password_hash, role, must_change_password, created_at_ms) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.role.as_str())
        .bind(i64::from(u.must_change_password))
        .bind(u.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("user {:?} already exists", u.name)))?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_user_once(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE user_name = ?").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM api_tokens WHERE user_name = ?").bind(name).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM users WHERE name = ?").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_api_token_once(&self, t: &ApiTokenRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let clash = sqlx::query("SELECT id, token_hash FROM api_tokens WHERE id = ? OR token_hash = ?")
            .bind(&t.id)
            .bind(&t.token_hash)
            .fetch_all(&mut *tx)
            .await?;
        for r in &clash {
            if row::text(r, "id")? == t.id {
                return Err(StoreError::Conflict(format!("an API token with id {:?} already exists", t.id)));
            }
        }
        if !clash.is_empty() {
            return Err(StoreError::Conflict("an API token with this token hash already exists".into()));
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, user_name, name, token_hash, created_at_ms, last_used_ms, expires_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.user)
        .bind(&t.name)
        .bind(&t.token_hash)
        .bind(t.created_at_ms)
        .bind(t.last_used_ms)
        .bind(t.expires_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("an API token with id {:?} or this hash already exists", t.id)))?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes `user`'s rows of `table` (sessions or API tokens) but the one
    /// with hash `keep`.
    async fn delete_credentials_of(&self, table: &'static str, user: &str, keep: Option<&str>) -> Result<u64> {
        let sql = format!("DELETE FROM {table} WHERE user_name = ? AND token_hash <> ?");
        let sql = &sql;
        retry(|| async move {
            let r = sqlx::query(AssertSqlSafe(sql.as_str())).bind(user).bind(keep.unwrap_or("")).execute(&self.pool).await?;
            Ok(r.rows_affected())
        })
        .await
    }

    async fn login_failure_once(&self, source: &str, now: UnixMs, policy: &LockoutPolicy) -> Result<Option<UnixMs>> {
        let mut tx = self.begin_write().await?;
        let current = sqlx::query("SELECT failures, first_failure_ms, locked_until_ms FROM login_failures WHERE source = ?")
            .bind(source)
            .fetch_optional(&mut *tx)
            .await?;
        let (failures, first, lock) = match &current {
            Some(r) => {
                (row::int(r, "failures")?, row::int(r, "first_failure_ms")?, row::opt_int(r, "locked_until_ms")?.filter(|&t| t > now))
            }
            None => (0, now, None),
        };
        // A failure outside the window starts a new count.
        let (failures, first) = if now.saturating_sub(first) > policy.window_ms { (1, now) } else { (failures + 1, first) };
        let lock = if failures >= i64::from(policy.max_failures) { Some(now.saturating_add(policy.lock_ms)) } else { lock };
        if current.is_some() {
            sqlx::query("UPDATE login_failures SET failures = ?, first_failure_ms = ?, locked_until_ms = ? WHERE source = ?")
                .bind(failures)
                .bind(first)
                .bind(lock)
                .bind(source)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("INSERT INTO login_failures (source, failures, first_failure_ms, locked_until_ms) VALUES (?, ?, ?, ?)")
                .bind(source)
                .bind(failures)
                .bind(first)
                .bind(lock)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(lock)
    }
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn count_users(&self) -> Result<i64> {
        let r = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.pool).await?;
        row::int(&r, "n")
    }

    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        retry(|| self.create_user_once(user)).await
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        let r = sqlx::query(select_users!("WHERE name = ?")).bind(name).fetch_optional(&self.pool).await?;
        r.as_ref().map(user).transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        sqlx::query(select_users!("ORDER BY name")).fetch_all(&self.pool).await?.iter().map(user).collect()
    }

    async fn set_password(&self, name: &str, hash: &str, must_change: bool) -> Result<bool> {
        retry(|| async move {
            let done = sqlx::query("UPDATE users SET password_hash = ?, must_change_password = ? WHERE name = ?")
                .bind(hash)
                .bind(i64::from(must_change))
                .bind(name)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        retry(|| self.delete_user_once(name)).await
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        retry(|| async move {
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_name, source, created_at_ms, last_seen_ms) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&s.token_hash)
            .bind(&s.user)
            .bind(&s.source)
            .bind(s.created_at_ms)
            .bind(s.last_seen_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict_on_unique(e, || "a session with this token hash already exists".into()))?;
            Ok(())
        })
        .await
    }

    async fn touch_session(&self, token_hash: &str, idle_after: UnixMs, now: UnixMs) -> Result<Option<SessionRecord>> {
        // Read first; write only to end an idle session or when the last
        // use is older than `TOUCH_EVERY_MS` (every statement is
        // conditional, so a concurrent touch never resurrects or loses a
        // session). A request is then a read, not a replicated write.
        let Some(mut current) = sqlx::query(select_sessions!("WHERE token_hash = ?"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(session)
            .transpose()?
        else {
            return Ok(None);
        };
        if current.last_seen_ms < idle_after {
            let deleted = retry(|| async move {
                sqlx::query("DELETE FROM sessions WHERE token_hash = ? AND last_seen_ms < ?")
                    .bind(token_hash)
                    .bind(idle_after)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            })
            .await;
            // Expired either way; the row goes on a later use.
            unless_read_only(deleted)?;
            return Ok(None);
        }
        // A quarter of the idle timeout when that is shorter, so a session
        // in use never lapses between two writes.
        let every = TOUCH_EVERY_MS.min((now - idle_after) / 4);
        if now - current.last_seen_ms >= every {
            let touched = retry(|| async move {
                sqlx::query("UPDATE sessions SET last_seen_ms = ? WHERE token_hash = ? AND last_seen_ms < ?")
                    .bind(now)
                    .bind(token_hash)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            })
            .await;
            unless_read_only(touched)?;
            current.last_seen_ms = now;
        }
        Ok(Some(current))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        retry(|| async move {
            sqlx::query("DELETE FROM sessions WHERE token_hash = ?").bind(token_hash).execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    async fn delete_sessions_of(&self, user: &str, keep: Option<&str>) -> Result<u64> {
        self.delete_credentials_of("sessions", user, keep).await
    }

    async fn delete_api_tokens_of(&self, user: &str, keep: Option<&str>) -> Result<u64> {
        self.delete_credentials_of("api_tokens", user, keep).await
    }

    async fn create_api_token(&self, t: &ApiTokenRecord) -> Result<()> {
        retry(|| self.create_api_token_once(t)).await
    }

    async fn touch_api_token(&self, token_hash: &str, now: UnixMs) -> Result<Option<ApiTokenRecord>> {
        let r = sqlx::query(select_tokens!("WHERE token_hash = ?")).bind(token_hash).fetch_optional(&self.pool).await?;
        let Some(mut t) = r.as_ref().map(token).transpose()? else {
            return Ok(None);
        };
        if t.last_used_ms.is_none_or(|used| now - used >= TOUCH_EVERY_MS) {
            let touched = retry(|| async move {
                sqlx::query("UPDATE api_tokens SET last_used_ms = ? WHERE token_hash = ? AND (last_used_ms IS NULL OR last_used_ms < ?)")
                    .bind(now)
                    .bind(token_hash)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            })
            .await;
            unless_read_only(touched)?;
            t.last_used_ms = Some(now);
        }
        Ok(Some(t))
    }

    async fn list_api_tokens(&self, user: Option<&str>) -> Result<Vec<ApiTokenRecord>> {
        let rows = match user {
            Some(u) => sqlx::query(select_tokens!("WHERE user_name = ? ORDER BY created_at_ms, id")).bind(u).fetch_all(&self.pool).await?,
            None => sqlx::query(select_tokens!("ORDER BY user_name, created_at_ms, id")).fetch_all(&self.pool).await?,
        };
        rows.iter().map(token).collect()
    }

    async fn delete_api_token(&self, id: &str) -> Result<bool> {
        retry(|| async move {
            let done = sqlx::query("DELETE FROM api_tokens WHERE id = ?").bind(id).execute(&self.pool).await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn record_login_failure(&self, source: &str, now: UnixMs, policy: &LockoutPolicy) -> Result<Option<UnixMs>> {
        // Two first failures from one source at once both insert: the loser's
        // unique violation means "the row exists now", so count again.
        for _ in 0..3 {
            match retry(|| self.login_failure_once(source, now, policy)).await {
                Err(e) if is_unique_violation(&e) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!("login failures from {source} kept changing; try again")))
    }

    async fn login_locked_until(&self, source: &str, now: UnixMs) -> Result<Option<UnixMs>> {
        let r = sqlx::query("SELECT locked_until_ms FROM login_failures WHERE source = ?").bind(source).fetch_optional(&self.pool).await?;
        let until = match r {
            Some(r) => row::opt_int(&r, "locked_until_ms")?,
            None => None,
        };
        Ok(until.filter(|&t| t > now))
    }

    async fn clear_login_failures(&self, source: &str) -> Result<()> {
        retry(|| async move {
            sqlx::query("DELETE FROM login_failures WHERE source = ?").bind(source).execute(&self.pool).await?;
            Ok(())
        })
        .await
    }
}

/// A "last used" write refused because MetaDB takes no writes (no quorum;
/// a read answered from a replica) does not fail the read it rides on.
fn unless_read_only(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.is_unavailable() || e.is_write_refused() => {
            tracing::debug!(error = %e, "last use not recorded: MetaDB takes no writes");
            Ok(())
        }
        other => other,
    }
}

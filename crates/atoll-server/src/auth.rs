//! Accounts: password hashing, tokens, who is calling, and what they may do.

use std::net::SocketAddr;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use atoll_api::SESSION_COOKIE;
use atoll_core::Role;
use atoll_core::time::now_ms;
use atoll_store::UserRecord;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use rand::RngCore;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const MIN_PASSWORD_LEN: usize = 10;

fn hash_now(password: &str) -> ApiResult<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing password: {e}")))
}

fn verify_now(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// One Argon2 computation at a time, off the async workers. Each needs
/// 19 MiB: a burst of logins must not multiply that, and the allocator is
/// asked to give the memory back afterwards (glibc keeps freed large
/// blocks otherwise, which tripled the idle server's RSS).
async fn argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let _permit = ONE_AT_A_TIME.acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let out = tokio::task::spawn_blocking(move || {
        let out = work();
        crate::sys::release_free_memory();
        out
    })
    .await
    .map_err(|e| ApiError::Internal(format!("password hashing: {e}")))?;
    Ok(out)
}

/// Sources with a login's password check under way.
static LOGINS_IN_FLIGHT: std::sync::Mutex<Vec<std::net::IpAddr>> = std::sync::Mutex::new(Vec::new());
/// Logins waiting for the one Argon2 slot; more are turned away at once.
const MAX_LOGINS_WAITING: usize = 16;

/// A login's turn at the password check, held until dropped.
pub struct LoginTurn(std::net::IpAddr);

impl Drop for LoginTurn {
    fn drop(&mut self) {
        let mut v = LOGINS_IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = v.iter().position(|ip| *ip == self.0) {
            v.swap_remove(i);
        }
    }
}

/// One login per source at a time, and a bounded queue overall: a flood
/// (from one address or many) is answered 429 at once instead of starving
/// the Argon2 slot that everyone's login needs.
pub fn login_turn(ip: std::net::IpAddr) -> ApiResult<LoginTurn> {
    let mut v = LOGINS_IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    if v.contains(&ip) {
        return Err(ApiError::TooManyRequests(format!("a login from {ip} is being checked; send the next when it is answered")));
    }
    if v.len() >= MAX_LOGINS_WAITING {
        return Err(ApiError::TooManyRequests("too many logins at once; try again in a second".into()));
    }
    v.push(ip);
    Ok(LoginTurn(ip))
}

pub async fn hash_password(password: &str) -> ApiResult<String> {
    let password = password.to_string();
    argon2(move || hash_now(&password)).await?
}

pub async fn verify_password(password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_string(), hash.to_string());
    argon2(move || verify_now(&password, &hash)).await.unwrap_or(false)
}

/// Refuses passwords a demanding admin would refuse.
pub fn check_new_password(password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::BadRequest(format!("the new password is too short: use at least {MIN_PASSWORD_LEN} characters")));
    }
    Ok(())
}

/// 32 random bytes, hex: session cookies, API tokens, agent secrets.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// How long an API token works when its maker does not say.
pub const TOKEN_TTL_DAYS: u32 = 90;
pub const MAX_TOKEN_TTL_DAYS: u32 = 3650;

/// A fresh API token for `user` and the record that keeps only its hash.
pub fn new_api_token(user: &str, name: &str, ttl_days: u32) -> (String, atoll_store::ApiTokenRecord) {
    let token = random_token();
    let now = atoll_core::time::now_ms();
    let record = atoll_store::ApiTokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        user: user.to_string(),
        name: name.to_string(),
        token_hash: sha256_hex(&token),
        created_at_ms: now,
        last_used_ms: None,
        expires_at_ms: Some(now + i64::from(ttl_days) * 86_400_000),
    };
    (token, record)
}

/// A password that is easy to type once: 20 characters from an unambiguous set.
pub fn random_password() -> String {
    const SET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20).map(|_| SET[(rng.next_u32() as usize) % SET.len()] as char).collect()
}

pub use atoll_core::secret::sha256_hex;

/// On the very first start: creates `admin` with a random password, which
/// the caller prints once. Must be changed at first login.
pub async fn bootstrap_admin(state: &AppState) -> anyhow::Result<Option<String>> {
    if state.store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = random_password();
    let user = UserRecord {
        name: "admin".into(),
        password_hash: hash_password(&password).await.map_err(|e| anyhow::anyhow!("{e}"))?,
        role: Role::Admin,
        must_change_password: true,
        created_at_ms: now_ms(),
    };
    match state.store.create_user(&user).await {
        Ok(()) => Ok(Some(password)),
        // Another server of this platform created it first.
        Err(atoll_store::StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    Session,
    Token,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub role: Role,
    pub must_change_password: bool,
    pub kind: AuthKind,
    /// The session or token hash that authenticated this call.
    pub credential_hash: String,
    pub source: SocketAddr,
}

impl Caller {
    /// Refuses callers whose role is below `needed`.
    pub fn require(&self, needed: Role) -> ApiResult<()> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("{} is a {}; this needs the {needed} role", self.user, self.role)))
        }
    }
}

/// Authenticates by bearer token (session or API token) or session cookie.
/// Callers who must change their password are refused here; the few routes
/// that let them do so extract [`PendingCaller`] instead.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = PendingCaller::from_request_parts(parts, state).await?.0;
        if caller.must_change_password {
            return Err(ApiError::PasswordChangeRequired(format!(
                "{} must set a new password first: POST /api/v1/auth/password (or `atoll login`)",
                caller.user
            )));
        }
        Ok(caller)
    }
}

/// A caller that may still have to change their password.
pub struct PendingCaller(pub Caller);

impl FromRequestParts<AppState> for PendingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let source = peer(parts);
        let presented = match (bearer(parts), cookie(parts, SESSION_COOKIE)) {
            (Some(token), _) => token,
            (None, Some(session)) => {
                same_origin(parts)?;
                session
            }
            (None, None) => {
                return Err(ApiError::Unauthorized("log in first: `atoll login`, or send `Authorization: Bearer TOKEN`".into()));
            }
        };
        let hash = sha256_hex(&presented);
        let now = now_ms();
        let idle_after = now - state.config.session_idle_s as i64 * 1000;
        let (user, kind) = if let Some(s) = state.store.touch_session(&hash, idle_after, now).await? {
            (s.user, AuthKind::Session)
        } else if let Some(t) = state.store.touch_api_token(&hash, now).await? {
            if let Some(end) = t.expires_at_ms.filter(|end| *end <= now) {
                let when = atoll_core::time::utc(end);
                return Err(ApiError::Unauthorized(format!(
                    "API token {:?} ({}) expired at {when}: log in again with `atoll login`, or create a new token",
                    t.name, t.id
                )));
            }
            (t.user, AuthKind::Token)
        } else {
            return Err(ApiError::Unauthorized("session expired or token unknown: log in again with `atoll login`".into()));
        };
        let Some(u) = state.store.get_user(&user).await? else {
            return Err(ApiError::Unauthorized(format!("user {user} no longer exists")));
        };
        Ok(PendingCaller(Caller {
            user: u.name,
            role: u.role,
            must_change_password: u.must_change_password,
            kind,
            credential_hash: hash,
            source,
        }))
    }
}

/// A change made with the session cookie must come from a page of this
/// server: its Origin (or, without one, its Referer) names this host. The
/// cookie is SameSite=Strict already; this holds where that is not honoured.
fn same_origin(parts: &Parts) -> ApiResult<()> {
    use axum::http::Method;
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let header = |name: axum::http::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let host = header(axum::http::header::HOST).unwrap_or_default();
    let from = header(axum::http::header::ORIGIN).or_else(|| header(axum::http::header::REFERER));
    // `host[:port]` as a Host header writes it (no port when it is the default).
    let from_host = from.as_deref().and_then(|o| reqwest::Url::parse(o).ok()).and_then(|u| {
        let host = u.host_str()?.to_string();
        Some(u.port().map_or(host.clone(), |p| format!("{host}:{p}")))
    });
    if !host.is_empty() && from_host.as_deref() == Some(host.as_str()) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "cross-site request refused: a change with the session cookie must come from this console (Origin {} is not {host}); \
         scripts send `Authorization: Bearer TOKEN` instead",
        from.as_deref().unwrap_or("missing")
    )))
}

/// The peer address; the router is served with connect info.
pub fn peer(parts: &Parts) -> SocketAddr {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

pub fn bearer(parts: &Parts) -> Option<String> {
    parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(|s| s.trim().to_string())
}

pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_now("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_now("correct horse battery", &h));
        assert!(!verify_now("wrong", &h));
        assert!(!verify_now("x", "not a hash"));
    }

    #[test]
    fn generated_secrets() {
        assert_eq!(random_token().len(), 64);
        assert_ne!(random_token(), random_token());
        assert_eq!(random_password().len(), 20);
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough pw").is_ok());
    }
}

/// Extractors that authorise before the body is even read, so a caller
/// without the role learns that first, whatever else is wrong.
macro_rules! role_extractor {
    ($(#[$m:meta])* $name:ident, $role:expr) => {
        $(#[$m])*
        pub struct $name(pub Caller);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require($role)?;
                Ok($name(caller))
            }
        }
    };
}

role_extractor!(
    /// A caller with at least the operator role.
    Operator,
    Role::Operator
);
role_extractor!(
    /// A caller with the admin role.
    Admin,
    Role::Admin
);

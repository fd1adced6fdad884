//! `atoll login`, and where the CLI keeps the server URL and its API
//! token between commands.

use std::io::BufRead;
use std::path::PathBuf;

use atoll_api::v1::{ChangePasswordRequest, CreateTokenRequest, CreatedToken, LoginRequest, LoginResponse, PlatformView, TokenView};
use atoll_client::Client;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::Res;
use crate::output::{CliError, Exit, fail};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saved {
    /// Every platform server, tried in order (saved by `atoll login`, which
    /// asks the platform for them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// One server, as files written before several were kept say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub token: Option<String>,
    /// The saved token's id, so the next `atoll login` or `atoll logout`
    /// deletes it instead of leaving it behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The platform's CA (PEM), pinned at login: the only authority the
    /// CLI trusts for `https://` servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl Saved {
    pub fn servers(&self) -> Vec<String> {
        if self.servers.is_empty() { self.server.iter().cloned().collect() } else { self.servers.clone() }
    }
}

/// `$ATOLL_CONFIG_DIR`, else `$XDG_CONFIG_HOME/atoll`, else `~/.config/atoll`.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ATOLL_CONFIG_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("atoll")
}

pub fn load() -> Saved {
    std::fs::read_to_string(dir().join("credentials.toml")).ok().and_then(|t| toml::from_str(&t).ok()).unwrap_or_default()
}

pub fn save(s: &Saved) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let d = dir();
    std::fs::create_dir_all(&d)?;
    let path = d.join("credentials.toml");
    std::fs::write(&path, toml::to_string(s)?)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// A platform server's URL (repeat, or separate with commas, to try
    /// several); the others are learned from the platform.
    #[arg(long = "server", env = "ATOLL_SERVER", value_delimiter = ',', required = true)]
    servers: Vec<String>,
    #[arg(long, default_value = "admin")]
    user: String,
    /// Read the password from stdin's first line (and, when a new one is
    /// required, the new password from its second line).
    #[arg(long)]
    password_stdin: bool,
    /// Days the saved token works (1 to 3650).
    #[arg(long, default_value_t = 90)]
    ttl_days: u32,
    /// For an HTTPS platform: its CA's fingerprint (`sha256:…`, printed by
    /// the server at start); the CA is fetched, checked and saved.
    #[arg(long, env = "ATOLL_CA_FINGERPRINT")]
    ca_fingerprint: Option<String>,
    /// For an HTTPS platform: its CA certificate (the server's DATA_DIR/ca.pem).
    #[arg(long, env = "ATOLL_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

/// The CA to trust for an HTTPS platform (see [`atoll_client::platform_ca`]),
/// with the one an earlier login saved as the fallback.
async fn platform_ca(a: &LoginArgs) -> Result<Option<String>, CliError> {
    if !a.servers.iter().any(|s| s.starts_with("https://")) {
        return Ok(None);
    }
    match atoll_client::platform_ca(&a.servers, a.ca_file.as_deref(), a.ca_fingerprint.as_deref(), load().ca_pem).await {
        Ok(Some(pem)) => Ok(Some(pem)),
        Ok(None) => Err(fail(
            Exit::Error,
            "the platform serves HTTPS with its own CA: pass --ca-fingerprint (the server prints it at start) or --ca-file DATA_DIR/ca.pem",
        )),
        Err(e) => Err(fail(Exit::Error, e)),
    }
}

fn read_secret(prompt: &str, lines: &mut Option<std::io::Lines<std::io::StdinLock<'static>>>) -> Result<String, CliError> {
    match lines {
        Some(l) => l.next().transpose()?.ok_or_else(|| fail(Exit::Error, format!("stdin ended before the {prompt}"))),
        None => Ok(rpassword::prompt_password(format!("{prompt}: "))?),
    }
}

pub async fn login(a: LoginArgs) -> Res {
    let mut lines = a.password_stdin.then(|| std::io::stdin().lock().lines());
    let password = read_secret("password", &mut lines)?;
    let ca_pem = platform_ca(&a).await?;
    if let Some(ca) = &ca_pem {
        atoll_client::trust_platform_ca(ca).map_err(|e| fail(Exit::Error, e.to_string()))?;
    }
    let servers = atoll_client::Servers::new(&a.servers);
    let mut c = Client::over(&servers, None, std::time::Duration::from_secs(30));
    let resp: LoginResponse = c.post("/api/v1/auth/login", &LoginRequest { username: a.user.clone(), password: password.clone() }).await?;
    c.set_token(Some(resp.token.clone()));
    if resp.must_change_password {
        eprintln!("{} must choose a new password now (at least 10 characters)", resp.user);
        let new_password = read_secret("new password", &mut lines)?;
        if lines.is_none() && rpassword::prompt_password("repeat it: ")? != new_password {
            return Err(fail(Exit::Error, "the two passwords differ; nothing was changed"));
        }
        let _: serde_json::Value =
            c.post("/api/v1/auth/password", &ChangePasswordRequest { current_password: password, new_password }).await?;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let req = CreateTokenRequest { name: format!("cli@{}", host.trim()), ttl_days: Some(a.ttl_days) };
    let token: CreatedToken = c.post("/api/v1/tokens", &req).await?;
    if let Some(old) = load().token_id {
        replace_previous(&c, &old, &resp.user).await;
    }
    // Every server that is up, so later commands fail over between them.
    let known = match c.get::<PlatformView>("/api/v1/platform").await {
        Ok(p) => {
            let live: Vec<String> = p.servers.into_iter().filter(|s| s.live).map(|s| s.url).collect();
            atoll_core::merge_urls(&[c.base()], &live)
        }
        Err(_) => servers.all(),
    };
    let _: serde_json::Value = c.post("/api/v1/auth/logout", &json!({})).await?;
    let path = save(&Saved { servers: known.clone(), server: None, token: Some(token.token), token_id: Some(token.id), ca_pem })?;
    println!(
        "logged in to {} as {} ({}); token saved in {}, valid until {}",
        known.join(", "),
        resp.user,
        resp.role,
        path.display(),
        atoll_core::time::utc(token.expires_at_ms)
    );
    Ok(Exit::Ok)
}

/// Deletes the token an earlier `atoll login` saved here when it is this
/// user's (one machine, one live CLI token); a failure only warns, since
/// the new token works either way.
async fn replace_previous(c: &Client, old_id: &str, user: &str) {
    let owned = match c.get::<Vec<TokenView>>("/api/v1/tokens").await {
        Ok(tokens) => tokens.iter().any(|t| t.id == old_id && t.user == user),
        Err(e) => {
            eprintln!("warning: could not list your tokens to delete the previous one ({e}); see `GET /api/v1/tokens`");
            return;
        }
    };
    if owned && let Err(e) = c.delete::<()>(&format!("/api/v1/tokens/{old_id}")).await {
        eprintln!("warning: the previous token {old_id} was not deleted: {e}");
    }
}

/// `atoll logout`: deletes the saved token on the platform and forgets it.
pub async fn logout() -> Res {
    let mut saved = load();
    let Some(token) = saved.token.take() else {
        println!("not logged in; nothing to do");
        return Ok(Exit::Ok);
    };
    if let Some(ca) = &saved.ca_pem {
        atoll_client::trust_platform_ca(ca).map_err(|e| fail(Exit::Error, e.to_string()))?;
    }
    let servers = atoll_client::Servers::new(&saved.servers());
    let c = Client::over(&servers, Some(token), std::time::Duration::from_secs(30));
    let deleted = match saved.token_id.take() {
        Some(id) => match c.delete::<()>(&format!("/api/v1/tokens/{id}")).await {
            Ok(()) => true,
            Err(e) => {
                return Err(fail(Exit::Error, format!("the platform did not delete the saved token ({e}); it is still saved: try again")));
            }
        },
        None => false,
    };
    let path = save(&saved)?;
    if deleted {
        println!("logged out: the token is deleted on the platform and removed from {}", path.display());
    } else {
        println!(
            "logged out: the token is removed from {} (it was saved by an older atoll without its id: delete it with DELETE /api/v1/tokens/ID)",
            path.display()
        );
    }
    Ok(Exit::Ok)
}

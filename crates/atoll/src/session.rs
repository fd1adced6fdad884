//! Where the CLI keeps the server URL and its API token between commands.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saved {
    pub server: Option<String>,
    pub token: Option<String>,
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

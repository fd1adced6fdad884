//! One SSH connection to a node (russh): the host key checked against a
//! known_hosts file, a key or a password, commands run with their output
//! and exit status, files streamed to their stdin. Every failure is worded
//! for the person running `atoll deploy`: which node, what went wrong,
//! what to change.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::io::AsyncRead;

use crate::DeployError;
use crate::topology::{SshAuth, SshTarget};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the host-key check decided, kept for the error message (russh only
/// reports "unknown key").
#[derive(Debug, Clone)]
enum HostKey {
    Known,
    Learned(String),
    Unknown(String),
    Changed { line: usize, fingerprint: String },
    Unreadable(String),
}

struct Checker {
    host: String,
    port: u16,
    known_hosts: std::path::PathBuf,
    accept_new: bool,
    seen: Arc<Mutex<Option<HostKey>>>,
}

impl Checker {
    fn decide(&self, key: &PublicKeyOrCertificate) -> HostKey {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return HostKey::Unreadable("the host offered a certificate; Atoll checks plain host keys against known_hosts".into());
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => HostKey::Known,
            Ok(false) if self.accept_new => {
                if let Some(dir) = self.known_hosts.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                match russh::keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
                    Ok(()) => HostKey::Learned(fingerprint),
                    Err(e) => HostKey::Unreadable(format!("cannot add the host key to {}: {e}", self.known_hosts.display())),
                }
            }
            Ok(false) => HostKey::Unknown(fingerprint),
            Err(russh::keys::Error::KeyChanged { line }) => HostKey::Changed { line, fingerprint },
            Err(e) => HostKey::Unreadable(format!("cannot read {}: {e}", self.known_hosts.display())),
        }
    }
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let decision = self.decide(key);
        let ok = matches!(decision, HostKey::Known | HostKey::Learned(_));
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(decision);
        }
        Ok(ok)
    }
}

/// A command's result.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }
    /// The last lines of stderr, for an error message.
    pub fn why(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
        if tail.is_empty() { format!("exit status {}", self.status) } else { tail }
    }
}

pub struct Session {
    node: String,
    target: SshTarget,
    handle: client::Handle<Checker>,
    /// The host key was added to known_hosts on this connection.
    pub learned: Option<String>,
}

impl Session {
    /// Connects and authenticates. `accept_new` adds an unknown host's key
    /// to known_hosts (OpenSSH's `accept-new`); a changed key is always
    /// refused.
    pub async fn connect(node: &str, target: &SshTarget, accept_new: bool) -> Result<Self, DeployError> {
        let fail = |m: String| DeployError::step("ssh", Some(node), format!("{}: {m}", target.describe()));
        let seen = Arc::new(Mutex::new(None));
        let checker = Checker {
            host: target.host.clone(),
            port: target.port,
            known_hosts: target.known_hosts.clone(),
            accept_new,
            seen: seen.clone(),
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(15)),
            inactivity_timeout: Some(Duration::from_secs(300)),
            ..Default::default()
        });
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, client::connect(config, (target.host.as_str(), target.port), checker)).await;
        let mut handle = match connected {
            Err(_) => return Err(fail(format!("no answer within {CONNECT_TIMEOUT:?}: check the address and any firewall between"))),
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let decision = seen.lock().ok().and_then(|s| s.clone());
                return Err(fail(match (e, decision) {
                    (_, Some(HostKey::Unknown(fp))) => format!(
                        "its host key ({fp}) is not in {}: check the fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then run again with --accept-new-host-keys",
                        target.known_hosts.display()
                    ),
                    (_, Some(HostKey::Changed { line, fingerprint })) => format!(
                        "its host key ({fingerprint}) differs from the one in {} line {line}: the host was reinstalled, or someone is in between; after checking, remove that line",
                        target.known_hosts.display()
                    ),
                    (_, Some(HostKey::Unreadable(why))) => why,
                    (russh::Error::IO(e), _) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        "connection refused: is sshd running there, and is the port right (ssh.port in the topology)?".into()
                    }
                    (e, _) => format!("cannot connect: {e}"),
                }));
            }
        };
        let learned = match seen.lock().ok().and_then(|s| s.clone()) {
            Some(HostKey::Learned(fp)) => Some(fp),
            _ => None,
        };
        match &target.auth {
            SshAuth::Key(path) => {
                let key = russh::keys::load_secret_key(path, None).map_err(|e| {
                    fail(match e {
                        russh::keys::Error::KeyIsEncrypted => {
                            format!("the key {} has a passphrase: give a key without one, or use ssh.password_file", path.display())
                        }
                        e => format!("cannot read the key {}: {e} (ssh.key in the topology)", path.display()),
                    })
                })?;
                let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
                let result = handle
                    .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                    .await
                    .map_err(|e| fail(format!("authentication failed: {e}")))?;
                if !result.success() {
                    return Err(fail(format!(
                        "the key {} was refused: add its public key to {}'s ~/.ssh/authorized_keys there",
                        path.display(),
                        target.user
                    )));
                }
            }
            SshAuth::PasswordFile(path) => {
                let password = read_password(path).map_err(fail)?;
                let result =
                    handle.authenticate_password(&target.user, password).await.map_err(|e| fail(format!("authentication failed: {e}")))?;
                if !result.success() {
                    return Err(fail(format!(
                        "the password in {} was refused (or sshd allows no password login for {}: PasswordAuthentication, PermitRootLogin)",
                        path.display(),
                        target.user
                    )));
                }
            }
        }
        Ok(Self { node: node.to_string(), target: target.clone(), handle, learned })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs `command` (a shell line) with `input` on its stdin.
    pub async fn run(&self, command: &str, input: Option<&mut (dyn AsyncRead + Unpin + Send)>) -> Result<Output, DeployError> {
        let fail = |e: russh::Error| DeployError::step("ssh", Some(&self.node), format!("{}: {e}", self.target.describe()));
        let mut channel = self.handle.channel_open_session().await.map_err(fail)?;
        channel.exec(true, command).await.map_err(fail)?;
        if let Some(input) = input {
            channel.data(input).await.map_err(fail)?;
        }
        channel.eof().await.map_err(fail)?;
        let mut out = Output { status: 255, stdout: Vec::new(), stderr: Vec::new() };
        let mut exited = false;
        while let Some(msg) = channel.wait().await {
            match msg {
                russh::ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                russh::ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                russh::ChannelMsg::ExitStatus { exit_status } => {
                    out.status = exit_status;
                    exited = true;
                }
                _ => {}
            }
        }
        if !exited {
            return Err(DeployError::step(
                "ssh",
                Some(&self.node),
                format!("{}: the connection ended before `{command}` did", self.target.describe()),
            ));
        }
        Ok(out)
    }

    /// Runs `command` and fails with its stderr unless it exits 0.
    pub async fn check(&self, step: &'static str, command: &str) -> Result<Output, DeployError> {
        let out = self.run(command, None).await?;
        if out.status != 0 {
            return Err(DeployError::step(step, Some(&self.node), out.why()));
        }
        Ok(out)
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

fn read_password(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// `s` as one word for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:,@+".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_keeps_words_whole() {
        assert_eq!(quote("/var/lib/atoll"), "/var/lib/atoll");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}

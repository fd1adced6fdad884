//! One OpenSSH server per loopback "host", so that `atoll deploy` reaches
//! each node as it would a remote machine: its own address, its own host
//! key, a client key made by the test. Each sshd runs in the foreground as
//! a [`Proc`], so it is stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Proc;

/// Makes an ed25519 key pair without a passphrase at `path` (and `.pub`).
pub fn keygen(path: &Path) -> Result<()> {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .context("running ssh-keygen (package openssh-client)")?
        .success();
    if !ok {
        bail!("ssh-keygen failed for {}", path.display());
    }
    Ok(())
}

pub struct Sshd {
    pub proc: Proc,
    pub address: String,
    pub port: u16,
    pub host_key: PathBuf,
}

impl Sshd {
    /// Starts sshd on `address:port` letting in the keys of
    /// `authorized_keys` as root; files under `dir`.
    pub async fn start(dir: &Path, address: &str, port: u16, authorized_keys: &Path) -> Result<Sshd> {
        // Privilege separation needs it; /run is a tmpfs on a fresh boot.
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        let host_key = dir.join(format!("host-{address}"));
        if !host_key.exists() {
            keygen(&host_key)?;
        }
        let config = dir.join(format!("sshd-{address}.conf"));
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {address}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n",
                host_key.display(),
                dir.join(format!("sshd-{address}.pid")).display(),
                authorized_keys.display()
            ),
        )?;
        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.arg("-D").arg("-e").arg("-f").arg(&config);
        let proc = Proc::spawn(&format!("sshd {address}"), cmd, dir.join(format!("sshd-{address}.log")))?;
        crate::wait_for(&format!("sshd on {address}:{port}"), std::time::Duration::from_secs(10), || async {
            std::net::TcpStream::connect((address, port)).ok().map(|_| ())
        })
        .await?;
        Ok(Sshd { proc, address: address.into(), port, host_key })
    }
}

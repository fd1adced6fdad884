//! A private MariaDB for tests that need MetaDB on MySQL (several servers
//! sharing one): its own data directory and port, stopped when dropped.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{Proc, free_port, wait_for};

pub struct MariaDb {
    pub proc: Proc,
    /// `mysql://atoll:…@IP:PORT/atoll`.
    pub url: String,
    pub port: u16,
    /// Dropped after `proc` (fields drop in order), so the data goes
    /// only once the server is dead.
    _dir: tempfile::TempDir,
}

impl MariaDb {
    /// Installs a data directory in a new temporary directory and starts
    /// `mariadbd` on a free loopback port, with an `atoll` account allowed
    /// everything.
    pub async fn start() -> Result<MariaDb> {
        Self::start_on("127.0.0.1").await
    }

    /// As [`MariaDb::start`], listening on `ip` (e.g. the host end of a
    /// [`crate::netns::Netns`] link, so a server inside can reach it).
    pub async fn start_on(ip: &str) -> Result<MariaDb> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        let data = dir.join("metadb");
        let install = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=socket"])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .context("running mariadb-install-db")?;
        if !install.status.success() {
            bail!("mariadb-install-db failed: {}", String::from_utf8_lossy(&install.stderr));
        }
        let init = dir.join("metadb-init.sql");
        let statements = atoll_engine::sql::metadb_database("atoll", "atoll", "atoll-test", false);
        std::fs::write(&init, statements.iter().map(|s| format!("{s};\n")).collect::<String>())?;
        let port = free_port(ip);
        let mut cmd = Command::new("mariadbd");
        cmd.args(["--no-defaults", "--user=root", "--innodb-buffer-pool-size=32M", "--skip-log-bin"])
            .arg(format!("--bind-address={ip}"))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("metadb.sock").display()))
            .arg(format!("--port={port}"))
            .arg(format!("--init-file={}", init.display()));
        let proc = Proc::spawn("metadb", cmd, dir.join("metadb.log"))?;
        let url = format!("mysql://atoll:atoll-test@{ip}:{port}/atoll");
        wait_for("MetaDB's MariaDB to accept connections", Duration::from_secs(30), || async move {
            std::net::TcpStream::connect((ip, port)).ok().map(|_| ())
        })
        .await?;
        Ok(MariaDb { proc, url, port, _dir: tmp })
    }
}

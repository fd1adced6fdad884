//! `atoll playground` as a user runs it: up, a working MySQL connection
//! string, and Ctrl-C stops everything it started, even when whoever read
//! its output is gone first (`atoll playground | tee log`, review finding 13).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

/// What runs under `dir` (databases, proxies, agents), with command lines.
fn processes_under(dir: &std::path::Path) -> Vec<String> {
    atoll_agent::processes_under(dir)
        .into_iter()
        .map(|pid| {
            format!(
                "{pid}: {}",
                String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ")
            )
        })
        .collect()
}

/// Kills what a failed run left under its directory, so a failure does not
/// leave databases and proxies behind.
struct Leftovers(std::path::PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        atoll_agent::kill_processes_under(&self.0);
    }
}

/// A running playground: its process, the banner it printed up to "Press
/// Ctrl-C" (the pipe then closed), its data and CLI config directories.
struct Running {
    child: std::process::Child,
    lines: Vec<String>,
    data: std::path::PathBuf,
    cli: std::path::PathBuf,
}

/// Starts `atoll playground` on `ips` with `extra` arguments and reads its
/// banner; the reader then goes away, as `| tee` does on Ctrl-C.
async fn start(dir: &std::path::Path, ips: [&str; 3], extra: &[&str]) -> Running {
    let data = dir.join("pg");
    let cli = dir.join("cli");
    let free = |ip: &str| std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port();
    let mut child = Command::new(atoll_testkit::atoll_bin())
        .args(["playground", "--dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{}", free("127.0.0.1"))])
        .args(["--agent-port", &free(ips[0]).to_string(), "--host-ips", &ips.join(",")])
        .args(extra)
        .env("ATOLL_CONFIG_DIR", &cli)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line.starts_with("Press Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines // the reader (the pipe's only read end) is dropped here
    });
    let started = Instant::now();
    while !banner.is_finished() {
        assert!(started.elapsed() < Duration::from_secs(240), "the playground did not come up in 240 s");
        assert!(child.try_wait().unwrap().is_none(), "the playground exited while starting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lines = banner.join().unwrap();
    Running { child, lines, data, cli }
}

impl Running {
    fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The printed `mysql …` command as a URL, checked with a real client.
    async fn check_mysql(&self) {
        let mysql = self.lines.iter().find_map(|l| l.trim_start().strip_prefix("mysql")).unwrap().trim().to_string();
        let words: Vec<&str> = mysql.split_whitespace().collect();
        let arg = |flag: &str| words.iter().position(|w| *w == flag).map(|i| words[i + 1].to_string()).unwrap();
        let password = words.iter().find_map(|w| w.strip_prefix("-p")).unwrap().trim_matches('\'');
        let url = format!("mysql://{}:{}@{}:{}/", arg("-u"), password, arg("-h"), arg("-P"));
        let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.unwrap();
        assert_eq!(one, 1);
        conn.close().await.unwrap();
        assert!(processes_under(&self.data).iter().any(|p| p.contains("mariadbd")), "no database runs under {}", self.data.display());
    }

    /// Ctrl-C with nobody reading stdout any more: everything stops and the
    /// data goes.
    async fn ctrl_c(mut self) {
        let pid = self.child.id();
        std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the playground did not stop within 120 s of Ctrl-C");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(status.success(), "the playground ended with {status} after Ctrl-C");
        let left = processes_under(&self.data);
        assert!(left.is_empty(), "left running after Ctrl-C:\n{}", left.join("\n"));
        assert!(!self.data.exists(), "the playground's data was not removed");
    }
}

#[tokio::test]
async fn ctrl_c_stops_everything_even_with_stdout_gone() {
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().join("pg"));
    let pg = start(dir.path(), ["127.0.0.94", "127.0.0.95", "127.0.0.96"], &["--no-tls"]).await;
    let text = pg.text();
    assert!(text.contains("Atoll playground is up") && text.contains("console   http://"), "{text}");
    let config = std::fs::read_to_string(pg.data.join("db/demo/demo-1/my.cnf")).unwrap();
    assert!(!config.contains("socket.ssl"), "--no-tls: replication in clear: {config}");
    pg.check_mysql().await;
    pg.ctrl_c().await;
}

/// `atoll playground` is TLS by default: HTTPS with the platform's CA (its
/// fingerprint printed), agents over mutual TLS, a cluster replicating over
/// TLS, and the CLI working at once with the CA the playground saved.
#[tokio::test]
async fn the_playground_is_tls_by_default_and_still_one_command() {
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = Leftovers(dir.path().join("pg"));
    let pg = start(dir.path(), ["127.0.0.151", "127.0.0.152", "127.0.0.153"], &[]).await;
    let text = pg.text();
    let ca = std::fs::read_to_string(pg.data.join("server/ca.pem")).unwrap();
    let fingerprint = atoll_pki::fingerprint(&ca).unwrap();
    assert!(text.contains("console   https://") && text.contains(&fingerprint), "{text}");
    pg.check_mysql().await;
    let out = Command::new(atoll_testkit::atoll_bin())
        .args(["cluster", "show", "demo"])
        .env("ATOLL_CONFIG_DIR", &pg.cli)
        .env_remove("ATOLL_SERVER")
        .env_remove("ATOLL_TOKEN")
        .output()
        .unwrap();
    let shown = atoll_testkit::output_text(&out);
    assert!(out.status.success() && shown.contains("demo-1"), "{shown}");
    let config = std::fs::read_to_string(pg.data.join("db/demo/demo-1/my.cnf")).unwrap();
    assert!(config.contains("socket.ssl=YES"), "the cluster replicates over TLS: {config}");
    pg.ctrl_c().await;
}

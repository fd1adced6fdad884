//! The agent as root among files the database user owns (security review,
//! issue 12, findings 2, 3 and 14), against a real `mariadbd` (one server,
//! no Galera) on 127.0.0.64: links that user plants where the agent writes,
//! opens or removes files leave root's files alone and are refused;
//! `mariadb-install-db`, `mariadbd` and a package's `mariadbd --version`
//! run as the database user even when the config does not ask for it;
//! directories stay below the data root; the journal keeps no password.
//!
//! Needs root and MariaDB; skipped (with a message) otherwise.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atoll_agent::confine::DataRoot;
use atoll_agent::db::Supervisor;
use atoll_agent::ops::{Journal, OpError};
use atoll_api::agent::{HostOp, OpResult};
use atoll_api::db::{DbCredentials, DbServerDef, StartMode};

const IP: &str = "127.0.0.64";
const ADMIN_PASSWORD: &str = "Admin-Secret-64";
const APP_PASSWORD: &str = "App-Secret-64";
const VICTIM: &[u8] = b"root's own file\n";

fn prerequisites() -> Result<(u32, u32), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")) {
        return Err("not running as root".into());
    }
    for p in ["/usr/sbin/mariadbd", "/usr/bin/mariadb-install-db"] {
        if !Path::new(p).exists() {
            return Err(format!("{p} is missing"));
        }
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == "mysql").then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?))).flatten()
        })
        .ok_or_else(|| "no mysql user".into())
}

/// A server without `user=mysql`: whatever runs it gets the rights it was
/// started with (before the fix, root: `mariadb-install-db` made root's
/// files, `mariadbd` refused to run as root).
fn def(dir: &Path, extra: &str) -> DbServerDef {
    let d = dir.display();
    DbServerDef {
        id: atoll_core::DbId::new("sec", "s1"),
        dir: d.to_string(),
        config: format!(
            "[mysqld]\ndatadir={d}/data\nsocket={d}/mariadbd.sock\npid-file={d}/mariadbd.pid\ntmpdir={d}/tmp\nlog-error={d}/error.log\n\
             bind-address={IP}\nport=3306\ninnodb_buffer_pool_size=16M\nperformance_schema=OFF\n{extra}"
        ),
        sql_addr: format!("{IP}:3306"),
        peers: vec![],
        admin: DbCredentials { user: "atoll".into(), password: ADMIN_PASSWORD.into() },
        basedir: None,
        tls: None,
    }
}

/// A link owned by the database user, as that user would plant it.
fn plant_link(target: &Path, at: &Path, mysql: (u32, u32)) {
    std::os::unix::fs::symlink(target, at).unwrap();
    std::os::unix::fs::lchown(at, Some(mysql.0), Some(mysql.1)).unwrap();
}

fn refused(r: Result<OpResult, OpError>) -> String {
    match r {
        Err(OpError::Refused(m)) | Err(OpError::Io(m)) => m,
        Ok(r) => panic!("not refused: {r:?}"),
    }
}

/// Real, effective, saved and filesystem uids of a process.
fn uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().skip(1).map(|u| u.parse().unwrap()).collect()
}

/// Kills what was started under the test's directory, however it ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        atoll_agent::kill_processes_under(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_user_cannot_steer_root() {
    let mysql = match prerequisites() {
        Ok(ids) => ids,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let _ = tracing_subscriber::fmt().with_env_filter("atoll_agent=info").with_test_writer().try_init();
    let tmp = tempfile::Builder::new().prefix("atoll-confine-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let _cleanup = Cleanup(root.clone());
    let agent_dir = root.join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    // Root's files outside the data root, which the links point at.
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, VICTIM).unwrap();
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let victim_dir = tmp.path().join("victim-dir");
    std::fs::create_dir_all(victim_dir.join("s1")).unwrap();
    std::fs::write(victim_dir.join("s1/keep"), VICTIM).unwrap();
    let untouched = |what: &str| {
        assert_eq!(std::fs::read(&victim).unwrap(), VICTIM, "{what}: the victim's content changed");
        let m = std::fs::metadata(&victim).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o644), "{what}: the victim's owner or mode changed");
        assert_eq!(std::fs::read(victim_dir.join("s1/keep")).unwrap(), VICTIM, "{what}: the victim directory changed");
    };

    let data_root = DataRoot::new(&root, &agent_dir).unwrap();
    let sup = Supervisor::open(&agent_dir, data_root.clone()).await.unwrap();
    let journal = Journal::open(&agent_dir, data_root.clone()).unwrap().with_db(sup.clone());

    // Directories: only below the root, only for mysql or root.
    let outside = tmp.path().join("outside").display().to_string();
    let m = refused(journal.execute("dirs-out", &HostOp::MakeDirs { paths: vec![outside.clone()], owner: None, mode: 0o750 }).await);
    assert!(m.contains(&format!("{outside} is outside this agent's data root {}", root.display())) && m.contains("--data-root"), "{m}");
    assert!(!Path::new(&outside).exists());
    let hosts_db = root.join("hosts-db");
    let make = HostOp::MakeDirs { paths: vec![hosts_db.display().to_string()], owner: Some("nobody".into()), mode: 0o750 };
    assert!(refused(journal.execute("dirs-nobody", &make).await).contains("owner \"nobody\" refused"));
    let make = HostOp::MakeDirs { paths: vec![hosts_db.display().to_string()], owner: None, mode: 0o750 };
    journal.execute("dirs", &make).await.unwrap();
    assert_eq!(std::fs::metadata(&hosts_db).unwrap().uid(), mysql.0);

    // A server whose directory runs through a link the database user put
    // in its own directory: refused, nothing made where the link points.
    plant_link(&victim_dir, &hosts_db.join("evil"), mysql);
    let evil = def(&hosts_db.join("evil/s1"), "");
    let m = refused(journal.execute("define-evil", &HostOp::DbDefine { server: evil }).await);
    assert!(m.contains("evil is a symbolic link"), "{m}");
    assert!(!victim_dir.join("s1/my.cnf").exists());
    untouched("define through a link");
    // A config naming a data directory outside the root: refused.
    let mut away = def(&hosts_db.join("sec/s1"), "");
    away.config = away.config.replace(&format!("datadir={}/data", away.dir), &format!("datadir={}", victim_dir.display()));
    let m = refused(journal.execute("define-away", &HostOp::DbDefine { server: away }).await);
    assert!(m.contains("outside this agent's data root"), "{m}");

    let dir = hosts_db.join("sec/s1");
    let server = def(&dir, "");
    journal.execute("define", &HostOp::DbDefine { server: server.clone() }).await.unwrap();
    let cnf = std::fs::symlink_metadata(dir.join("my.cnf")).unwrap();
    assert!(cnf.is_file() && cnf.mode() & 0o777 == 0o640 && cnf.gid() == mysql.1);

    // my.cnf (and its temporary name) replaced by links to root's file:
    // the new config is written beside them, the file they name untouched.
    std::fs::remove_file(dir.join("my.cnf")).unwrap();
    plant_link(&victim, &dir.join("my.cnf"), mysql);
    plant_link(&victim, &dir.join(".my.cnf.atoll-tmp"), mysql);
    let server = def(&dir, "# redefined\n");
    journal.execute("redefine", &HostOp::DbDefine { server: server.clone() }).await.unwrap();
    untouched("config written over links");
    let cnf = std::fs::symlink_metadata(dir.join("my.cnf")).unwrap();
    assert!(cnf.is_file() && cnf.uid() == 0, "my.cnf is a plain file again");
    assert!(std::fs::read_to_string(dir.join("my.cnf")).unwrap().contains("# redefined"));

    // mariadb-install-db runs as mysql (as root, without user= in the
    // config, it made the system tables root's).
    let init = journal.execute("init", &HostOp::DbInit { id: server.id.clone() }).await.unwrap();
    assert_eq!(init.detail["initialised"], true, "{init:?}");
    assert_eq!(std::fs::metadata(dir.join("data/mysql")).unwrap().uid(), mysql.0);

    // mariadbd.out: a link to root's file, then a second name of it.
    let start = |key: &str| {
        let key = key.to_string();
        let journal = &journal;
        let id = server.id.clone();
        async move { journal.execute(&key, &HostOp::DbStart { id, mode: StartMode::Join }).await }
    };
    plant_link(&victim, &dir.join("mariadbd.out"), mysql);
    let m = refused(start("start-link").await);
    assert!(m.contains("mariadbd.out is a symbolic link: refused"), "{m}");
    untouched("output file is a link");
    std::fs::remove_file(dir.join("mariadbd.out")).unwrap();
    std::fs::hard_link(&victim, dir.join("mariadbd.out")).unwrap();
    let m = refused(start("start-hardlink").await);
    assert!(m.contains("has other names (hard links)"), "{m}");
    untouched("output file is a hard link");
    std::fs::remove_file(dir.join("mariadbd.out")).unwrap();
    // A grastate.dat that is a link: a bootstrap start neither reads nor
    // replaces root's file through it.
    plant_link(&victim, &dir.join("data/grastate.dat"), mysql);
    let m = refused(journal.execute("bootstrap-link", &HostOp::DbStart { id: server.id.clone(), mode: StartMode::Bootstrap }).await);
    assert!(m.contains("grastate.dat is a symbolic link: refused"), "{m}");
    untouched("grastate.dat is a link");
    std::fs::remove_file(dir.join("data/grastate.dat")).unwrap();

    // Started for real: every uid of the process is mysql's.
    let started = start("start").await.unwrap();
    let pid = started.detail["pid"].as_u64().unwrap() as u32;
    assert!(uids(pid).iter().all(|u| *u == mysql.0), "mariadbd runs as {:?}", uids(pid));
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::UnixStream::connect(dir.join("mariadbd.sock")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "mariadbd did not open its socket: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Passwords go to the server, never into the journal on disk, nor into
    // what the journal serves; a repeat is still recognised.
    let sql = |pw: &str| HostOp::DbSql {
        id: server.id.clone(),
        statements: vec![format!("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY '{pw}'"), "FLUSH PRIVILEGES".into()],
    };
    journal.execute("accounts", &sql(APP_PASSWORD)).await.unwrap();
    assert!(journal.execute("accounts", &sql(APP_PASSWORD)).await.unwrap().replayed);
    assert!(refused(journal.execute("accounts", &sql("Another-64")).await).contains("different operation"));
    for f in std::fs::read_dir(agent_dir.join("ops")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains(APP_PASSWORD) && !text.contains(ADMIN_PASSWORD), "{text}");
    }
    let served = serde_json::to_string(&journal.entries()).unwrap();
    assert!(!served.contains(APP_PASSWORD) && !served.contains(ADMIN_PASSWORD) && served.contains("<redacted>"), "{served}");

    // Stopped; then the database user swaps the cluster directory for a
    // link to root's: the purge refuses instead of deleting there.
    journal.execute("stop", &HostOp::DbStop { id: server.id.clone() }).await.unwrap();
    std::fs::rename(hosts_db.join("sec"), hosts_db.join("sec.moved")).unwrap();
    plant_link(&victim_dir, &hosts_db.join("sec"), mysql);
    let m = refused(journal.execute("purge-link", &HostOp::DbRemove { id: server.id.clone(), purge: true }).await);
    assert!(m.contains("sec is a symbolic link"), "{m}");
    untouched("purge through a link");
    std::fs::remove_file(hosts_db.join("sec")).unwrap();
    std::fs::rename(hosts_db.join("sec.moved"), hosts_db.join("sec")).unwrap();
    let removed = journal.execute("purge", &HostOp::DbRemove { id: server.id.clone(), purge: true }).await.unwrap();
    assert_eq!(removed.detail["purged"], true, "{removed:?}");
    assert!(!dir.exists());

    // A package's `mariadbd --version` runs as mysql too.
    let build = agent_dir.join("engines/fake");
    for d in ["sbin", "bin", "lib/galera"] {
        std::fs::create_dir_all(build.join(d)).unwrap();
    }
    std::fs::write(build.join("sbin/mariadbd"), "#!/bin/sh\necho \"mariadbd  Ver uid-$(id -u) for linux\"\n").unwrap();
    std::fs::set_permissions(build.join("sbin/mariadbd"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(build.join("bin/mariadb-install-db"), "").unwrap();
    std::fs::write(build.join("lib/galera/libgalera_smm.so"), "").unwrap();
    let record = serde_json::json!({
        "name": "fake", "sha256": "a".repeat(64), "size": 1, "root": "",
        "mariadbd": "sbin/mariadbd", "install_db": "bin/mariadb-install-db", "galera": "lib/galera/libgalera_smm.so", "messages_dir": null,
    });
    std::fs::write(build.join(".atoll-build.json"), record.to_string()).unwrap();
    let packages = atoll_agent::packages::Packages::new(&agent_dir, atoll_client::Servers::new::<&str>(&[]));
    let facts = tokio::task::spawn_blocking(move || packages.collect_facts()).await.unwrap();
    let fake = facts.engines.iter().find(|e| e.name == "fake").unwrap();
    assert_eq!(fake.version.as_deref(), Some(format!("uid-{}", mysql.0).as_str()), "{fake:?}");
}

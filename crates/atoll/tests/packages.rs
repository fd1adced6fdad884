//! Installation media: an engine build made from this machine's MariaDB as
//! a tarball, registered with `atoll package add`, pushed to three hosts
//! with checksum verification, and run by a real three-node cluster; bad
//! tarballs and a damaged copy are refused without changing anything.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use atoll_api::packages::PackageView;
use atoll_api::v1::{ClusterCredentials, ClusterView, HostView, TaskView};
use atoll_core::{ServerState, StepStatus, TaskStatus};
use atoll_testkit::{Platform, ServerOpts, output_text, wait_for};
use serde_json::json;

/// This test's hosts; other tests use other addresses.
const IPS: [&str; 3] = ["127.0.0.51", "127.0.0.52", "127.0.0.53"];
const PACKAGE: &str = "mariadb-local";

/// `atoll ARGS` as a user runs it, against this platform.
fn atoll(p: &Platform, args: &[&str]) -> Output {
    p.cli(args).unwrap()
}

fn text(o: &Output) -> String {
    output_text(o)
}

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A basedir layout copied from the system MariaDB, as this Debian's
/// install-db script expects it with `--basedir`: `sbin/mariadbd`, helper
/// programs in `bin/`, SQL and messages in `share/mysql/`, and the Galera
/// library in `lib/galera/`.
fn build_layout(root: &Path) -> PathBuf {
    let b = root.join("build");
    for d in ["sbin", "bin", "share/mysql", "lib/galera"] {
        std::fs::create_dir_all(b.join(d)).unwrap();
    }
    let b_s = b.display();
    sh(&format!("cp /usr/sbin/mariadbd {b_s}/sbin/"));
    for bin in ["mariadb-install-db", "my_print_defaults", "resolveip", "wsrep_sst_rsync", "wsrep_sst_common"] {
        sh(&format!("cp /usr/bin/{bin} {b_s}/bin/"));
    }
    sh(&format!("cp -r /usr/share/mysql/. {b_s}/share/mysql/"));
    sh(&format!("cp -L /usr/lib/galera/libgalera_smm.so {b_s}/lib/galera/"));
    b
}

fn tarball(layout: &Path, out: &Path, members: &str) {
    sh(&format!("tar -I 'gzip -1' -cf {} -C {} {members}", out.display(), layout.display()));
}

async fn host_engines(p: &Platform, ip: &str) -> Vec<atoll_core::EngineBuild> {
    let h: HostView = p.client().get(&format!("/api/v1/hosts/{ip}")).await.unwrap();
    h.host.facts.map(|f| f.engines).unwrap_or_default()
}

/// Files the agent on `ip` has under its engines directory (leftovers of
/// a failed install would show here).
fn engines_dir_entries(p: &Platform, i: usize) -> Vec<String> {
    let dir = p.dir.path().join(format!("agent-db{}", i + 1)).join("engines");
    let mut v: Vec<String> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_add_push_and_run_a_cluster_from_it() {
    let mut opts = ServerOpts::default();
    opts.extra_args.extend(["--profile", "sandbox"].map(String::from));
    let mut p = Platform::start(opts).await.unwrap();
    p.login_admin().await.unwrap();
    let join = p.join_token().await.unwrap();
    let _agents: Vec<_> = IPS
        .iter()
        .enumerate()
        .map(|(i, ip)| p.start_agent(&format!("db{}", i + 1), ip, Some(&format!("z{}", i + 1)), &join).unwrap())
        .collect();
    p.wait_hosts_online(3).await.unwrap();
    let c = p.client();
    let t: TaskView = c.post("/api/v1/hosts/prepare", &json!({ "hosts": IPS, "profile": "sandbox" })).await.unwrap();
    assert_eq!(p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap().status, TaskStatus::Succeeded);

    // Facts: the system build, with its version.
    let engines = host_engines(&p, IPS[0]).await;
    let system = engines.iter().find(|e| e.name == "system").expect("system build in facts");
    assert!(system.version.as_deref().is_some_and(|v| v.contains("MariaDB")), "{system:?}");

    // Tarballs: a good one, one without mariadbd, and something else.
    let work = p.dir.path().join("media");
    std::fs::create_dir_all(&work).unwrap();
    let layout = build_layout(&work);
    let good = work.join("mariadb-10.11-local.tar.gz");
    tarball(&layout, &good, ".");
    let no_server = work.join("no-server.tar.gz");
    tarball(&layout, &no_server, "bin share lib");
    let garbage = work.join("garbage.tar.gz");
    std::fs::write(&garbage, vec![7u8; 4096]).unwrap();
    let server_packages = p.dir.path().join("server/packages");

    let o = atoll(&p, &["package", "add", no_server.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not an engine build: missing mariadbd (looked for bin/mariadbd, sbin/mariadbd"), "{}", text(&o));
    let o = atoll(&p, &["package", "add", garbage.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not a gzip-compressed tar archive"), "{}", text(&o));
    assert!(c.get::<Vec<PackageView>>("/api/v1/packages").await.unwrap().is_empty());
    assert_eq!(std::fs::read_dir(&server_packages).unwrap().count(), 0, "refused uploads leave no file");

    let o = atoll(&p, &["package", "add", good.to_str().unwrap(), "--name", PACKAGE, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let pkg: PackageView = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (pkg.version.as_str(), pkg.mariadbd.as_str(), pkg.galera.as_str()),
        ("10.11", "sbin/mariadbd", "lib/galera/libgalera_smm.so")
    );
    let o = atoll(&p, &["package", "add", good.to_str().unwrap(), "--name", "again"]);
    assert!(text(&o).contains(&format!("already registered as package {PACKAGE}")), "{}", text(&o));
    let o = atoll(&p, &["package", "add", garbage.to_str().unwrap(), "--name", PACKAGE]);
    assert!(text(&o).contains(&format!("a package named {PACKAGE} already exists")), "{}", text(&o));

    // A damaged copy on the server: the host's checksum check refuses it
    // and keeps nothing.
    let stored = server_packages.join(format!("{}.tar.gz", pkg.sha256));
    let original = std::fs::read(&stored).unwrap();
    let mut damaged = original.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    std::fs::write(&stored, &damaged).unwrap();
    let t: TaskView = c.post(&format!("/api/v1/packages/{PACKAGE}/push"), &json!({ "hosts": [IPS[0]] })).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(t.status, TaskStatus::Failed, "{:#?}", t.steps);
    let err = t.steps[0].error.clone().unwrap_or_default();
    assert!(err.contains(&format!("checksum mismatch: expected sha256 {}", pkg.sha256)) && err.contains("downloaded sha256"), "{err}");
    assert!(engines_dir_entries(&p, 0).is_empty(), "{:?}", engines_dir_entries(&p, 0));
    std::fs::write(&stored, &original).unwrap();

    // A cluster on a build the hosts lack is refused, naming each host.
    let spec = |engine: &str| {
        json!({
            "name": "media",
            "engine": engine,
            "servers": IPS.iter().enumerate().map(|(i, ip)| json!({ "name": format!("media-{}", i + 1), "zone": format!("z{}", i + 1), "host": ip })).collect::<Vec<_>>(),
        })
    };
    let err = c.post::<_, TaskView>("/api/v1/clusters", &spec(PACKAGE)).await.unwrap_err().to_string();
    for ip in IPS {
        let h = format!("host-{}", ip.replace('.', "-"));
        assert!(
            err.contains(&format!("host {h} has no engine build {PACKAGE}; push it with `atoll package push {PACKAGE} --host {h}`")),
            "{err}"
        );
    }
    let err = c.post::<_, TaskView>("/api/v1/clusters", &spec("nope")).await.unwrap_err().to_string();
    assert!(err.contains("engine nope: no such package"), "{err}");
    assert!(c.get::<Vec<ClusterView>>("/api/v1/clusters").await.unwrap().is_empty());

    // Push to every host; the build shows in each host's facts.
    let o = atoll(&p, &["package", "push", PACKAGE, "--host", IPS[0], "--host", IPS[1], "--host", IPS[2]]);
    assert!(o.status.success(), "{}", text(&o));
    for (i, ip) in IPS.iter().enumerate() {
        let engines = host_engines(&p, ip).await;
        let b = engines.iter().find(|e| e.name == PACKAGE).unwrap_or_else(|| panic!("{ip}: {engines:?}"));
        assert_eq!(b.sha256.as_deref(), Some(pkg.sha256.as_str()));
        assert!(b.version.as_deref().is_some_and(|v| v.contains("MariaDB")), "{b:?}");
        assert_eq!(engines_dir_entries(&p, i), [PACKAGE], "no temporary files left");
    }
    let shown: PackageView = c.get(&format!("/api/v1/packages/{PACKAGE}")).await.unwrap();
    assert_eq!(shown.hosts.len(), 3);
    let o = atoll(&p, &["host", "show", IPS[1]]);
    assert!(text(&o).contains(&format!("engine  {PACKAGE}")), "{}", text(&o));
    // Pushing again changes nothing.
    let t: TaskView = c.post(&format!("/api/v1/packages/{PACKAGE}/push"), &json!({ "hosts": IPS })).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(t.status, TaskStatus::Succeeded, "{:#?}", t.steps);
    assert!(t.steps.iter().all(|s| s.status == StepStatus::Succeeded && s.output.as_ref().unwrap()["already_installed"] == true));

    // The cluster runs the pushed build.
    let t: TaskView = c.post("/api/v1/clusters", &spec(PACKAGE)).await.unwrap();
    let t = p.wait_task(&t.id, Duration::from_secs(240)).await.unwrap();
    assert_eq!(t.status, TaskStatus::Succeeded, "{:#?}", t.steps);
    let view = wait_for("every server synced", Duration::from_secs(10), || async {
        let v: ClusterView = c.get("/api/v1/clusters/media").await.ok()?;
        v.zones.iter().all(|z| z.servers[0].state == ServerState::Synced).then_some(v)
    })
    .await
    .unwrap();
    for (i, z) in view.zones.iter().enumerate() {
        let pid = z.servers[0].status.as_ref().and_then(|s| s.pid).unwrap();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        let expected = p.dir.path().join(format!("agent-db{}", i + 1)).join("engines").join(PACKAGE).join("sbin/mariadbd");
        assert_eq!(exe, expected, "server {}", z.servers[0].name);
    }
    let cr: ClusterCredentials = c.get("/api/v1/clusters/media/credentials").await.unwrap();
    let sql = |host: &str, q: &str| {
        let out = atoll_testkit::mariadb(&cr, host, cr.direct_port, q).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    sql(IPS[0], "CREATE DATABASE m; CREATE TABLE m.t (id INT PRIMARY KEY); INSERT INTO m.t VALUES (1), (2)");
    let answer = sql(
        IPS[2],
        "SET SESSION wsrep_sync_wait = 1; SELECT (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
         WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'), @@basedir, (SELECT COUNT(*) FROM m.t)",
    );
    let basedir = p.dir.path().join("agent-db3/engines").join(PACKAGE);
    assert_eq!(answer, format!("3\t{}\t2", basedir.display()), "cluster size, basedir, rows");

    // A package a cluster runs cannot be removed.
    let o = atoll(&p, &["package", "remove", PACKAGE]);
    assert!(text(&o).contains("is the engine of cluster media"), "{}", text(&o));
}

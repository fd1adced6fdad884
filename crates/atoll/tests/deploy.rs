//! `atoll deploy` as an operator runs it: three "hosts", each an sshd of
//! its own on a loopback address, reached with a key the test made. Bad
//! input first (unknown host keys, a host that does not answer, a taken
//! port): refused, naming the node and the fix, with nothing installed.
//! Then a run cut off after MetaDB is made, the run that resumes it, a
//! re-run that changes nothing, a service killed and brought back by its
//! supervisor, and `--destroy`, which leaves nothing running or behind.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use atoll_api::v1::{ClusterView, HostListItem, PlatformCheckView, PlatformView, TaskView};
use atoll_client::{Client, Servers};
use atoll_core::{HostStatus, TaskStatus};
use atoll_plan::check::CheckStatus;
use atoll_testkit::sshd::{Sshd, keygen};
use atoll_testkit::{KillUnder, atoll_bin, output_text, wait_for};
use serde_json::json;

const NODES: [(&str, &str); 3] = [("n1", "127.0.0.131"), ("n2", "127.0.0.132"), ("n3", "127.0.0.133")];
const SSH_PORT: u16 = 2222;

struct Lab {
    dir: PathBuf,
    state: PathBuf,
}

impl Lab {
    fn base(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    /// A topology; `ssh_port_of` lets one node point at a port where no
    /// sshd listens.
    fn topology(&self, ssh_port_of: impl Fn(&str) -> u16) -> PathBuf {
        let mut t = format!(
            "name = \"lab\"\nprofile = \"sandbox\"\ndata_dir = \"{}\"\n[ssh]\nkey = \"id\"\nknown_hosts = \"known_hosts\"\n",
            self.dir.join("db").display()
        );
        for (name, ip) in NODES {
            t.push_str(&format!(
                "[[nodes]]\nname = \"{name}\"\naddress = \"{ip}\"\nbase_dir = \"{}\"\n[nodes.ssh]\nport = {}\n",
                self.base(name).display(),
                ssh_port_of(name)
            ));
        }
        let path = self.dir.join("topology.toml");
        std::fs::write(&path, t).unwrap();
        path
    }

    fn deploy(&self, topology: &Path, args: &[&str], failpoint: Option<&str>) -> Output {
        let mut cmd = std::process::Command::new(atoll_bin());
        cmd.arg("deploy").arg(topology).arg("--state-dir").arg(&self.state).args(args);
        cmd.env("ATOLL_CONFIG_DIR", self.dir.join("cli")).env_remove("FAILPOINTS");
        if let Some(fp) = failpoint {
            cmd.env("FAILPOINTS", fp);
        }
        cmd.output().unwrap()
    }

    /// The deploy token, from the local state.
    fn token(&self) -> String {
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(self.state.join("state.json")).unwrap()).unwrap();
        state["bootstrapped"]["token"].as_str().unwrap().to_string()
    }

    /// The platform's CA, from the local state; this process trusts it.
    fn trust_ca(&self) -> String {
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(self.state.join("state.json")).unwrap()).unwrap();
        let pem = state["bootstrapped"]["ca_pem"].as_str().expect("TLS by default: the state keeps the platform's CA").to_string();
        atoll_client::trust_platform_ca(&pem).unwrap();
        pem
    }

    fn client(&self) -> Client {
        self.trust_ca();
        let urls: Vec<String> = NODES.iter().map(|(_, ip)| format!("https://{ip}:8080")).collect();
        Client::over(&Servers::new(&urls), Some(self.token()), Duration::from_secs(5))
    }

    /// Every live process started from the deployment's directories.
    fn processes(&self) -> Vec<u32> {
        let mut pids = atoll_agent::processes_under(&self.dir.join("db"));
        for (name, _) in NODES {
            pids.extend(atoll_agent::processes_under(&self.base(name)));
        }
        pids
    }
}

async fn settle(client: &Client, id: &str) -> TaskView {
    wait_for("the task to settle", Duration::from_secs(120), || async {
        let t: TaskView = client.get(&format!("/api/v1/tasks/{id}")).await.ok()?;
        t.status.is_settled().then_some(t)
    })
    .await
    .unwrap()
}

/// The node's processes running `atoll ROLE` (not supervisors, proxies or
/// databases).
fn service_pids(base: &Path, role: &str) -> Vec<u32> {
    atoll_agent::processes_under(base)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).split('\0').nth(1) == Some(role)
        })
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|p| p.trim().parse().ok())
}

fn agent_pid(base: &Path) -> Option<u32> {
    service_pids(base, "agent").into_iter().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_over_ssh_refuses_bad_input_resumes_changes_nothing_twice_and_destroys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // Databases run as `mysql` and must reach their directories.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let lab = Lab { dir: dir.clone(), state: dir.join("state") };
    let _cleanup = KillUnder(dir.clone());
    keygen(&dir.join("id")).unwrap();
    std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
    let mut sshds = Vec::new();
    for (_, ip) in NODES {
        sshds.push(Sshd::start(&dir, ip, SSH_PORT, &dir.join("authorized_keys")).await.unwrap());
    }

    // 1. Host keys nobody has checked yet, and n3's sshd is not where the
    //    topology says: every node's problem at once, nothing changed.
    let wrong_port = lab.topology(|n| if n == "n3" { SSH_PORT + 1 } else { SSH_PORT });
    let out = lab.deploy(&wrong_port, &[], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("cannot reach 3 node(s); nothing was changed"), "{text}");
    assert!(text.contains("ssh on n1") && text.contains("--accept-new-host-keys"), "{text}");
    assert!(text.contains("ssh on n3") && text.contains("connection refused") && text.contains("ssh.port"), "{text}");

    // 2. Host keys accepted, but something holds n2's server port: the
    //    precheck names the node, the port and what it is for.
    let topology = lab.topology(|_| SSH_PORT);
    let squatter = std::net::TcpListener::bind(("127.0.0.132", 8080)).unwrap();
    let out = lab.deploy(&topology, &["--accept-new-host-keys"], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("found before changing anything") && text.contains("n2: port.8080 (server)"), "{text}");
    assert!(!text.contains("n1: port") && !text.contains("n3: port"), "{text}");
    for (name, _) in NODES {
        assert!(!lab.base(name).exists(), "{name}'s base directory was made by a refused run");
    }
    let known = std::fs::read_to_string(dir.join("known_hosts")).unwrap();
    assert_eq!(known.lines().filter(|l| l.starts_with("[127.0.0.13")).count(), 3, "{known}");
    drop(squatter);

    // A key sshd does not know: refused, naming the key and the fix.
    keygen(&dir.join("stranger")).unwrap();
    let wrong_key = std::fs::read_to_string(&topology).unwrap().replace("key = \"id\"", "key = \"stranger\"");
    std::fs::write(dir.join("wrong-key.toml"), wrong_key).unwrap();
    let out = lab.deploy(&dir.join("wrong-key.toml"), &[], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("cannot reach 3 node(s)") && text.contains("was refused: add its public key"), "{text}");

    // Hosts far too small for the platform asked for (400 managed hosts
    // need 64 cores and 384 GiB per node): refused before any change.
    let big = std::fs::read_to_string(&topology).unwrap().replace("profile = \"sandbox\"", "profile = \"production\"\nmanaged_hosts = 400");
    std::fs::write(dir.join("big.toml"), big).unwrap();
    let out = lab.deploy(&dir.join("big.toml"), &[], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    for (name, _) in NODES {
        let named =
            text.lines().any(|l| l.starts_with(&format!("- {name}: ")) && l.contains("below the plan's 64 cores and 384 GiB per node"));
        assert!(named, "{name}: {text}");
        assert!(!lab.base(name).exists(), "{name}'s base directory was made by a refused run");
    }

    // A password where sshd takes keys only: refused, saying where the
    // password came from and what sshd may not allow.
    std::fs::write(dir.join("password"), "not-root's\n").unwrap();
    let by_password =
        std::fs::read_to_string(&topology).unwrap().replacen("port = 2222\n", "port = 2222\npassword_file = \"password\"\n", 1);
    std::fs::write(dir.join("password.toml"), by_password).unwrap();
    let out = lab.deploy(&dir.join("password.toml"), &[], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("cannot reach 1 node(s)") && text.contains("ssh on n1"), "{text}");
    assert!(text.contains(&format!("the password in {} was refused", dir.join("password").display())), "{text}");

    // 3. A run cut off once MetaDB holds the platform, before any server
    //    started on it (as a lost connection would cut it).
    let out = lab.deploy(&topology, &[], Some("deploy::before_servers=return"));
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(75), "{text}");
    assert!(!lab.base("n1").join("services/server.json").exists(), "a server was started by the cut-off run");

    // 4. The next run resumes from the servers: MetaDB is not made again.
    let out = lab.deploy(&topology, &[], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("MetaDB already holds the platform"), "{text}");
    assert!(text.contains("plan: multi-node platform for 10 managed hosts: per node 4 cores and 16 GiB"), "{text}");
    assert!(!text.contains("cluster atoll-meta made"), "{text}");
    for (name, _) in NODES {
        assert!(text.contains(&format!("{name}: server started")), "{name}: {text}");
        assert!(text.contains(&format!("{name}: agent restarted")), "{name}: agents name only the platform's servers: {text}");
    }
    assert!(text.contains("supervised background processes"), "services without systemd: {text}");
    let client = lab.client();
    let platform: PlatformView = client.get("/api/v1/platform").await.unwrap();
    assert_eq!(platform.servers.iter().filter(|s| s.live).count(), 3, "{platform:?}");
    assert!(platform.leader.is_some(), "{platform:?}");
    let check: PlatformCheckView = client.get("/api/v1/platform/check").await.unwrap();
    assert_ne!(check.worst, CheckStatus::Fail, "{check:?}");
    // Each node's own URL answers the API and renders the console.
    for (_, ip) in NODES {
        let url = format!("https://{ip}:8080");
        let v: PlatformView = Client::new(&url, Some(lab.token())).get("/api/v1/platform").await.unwrap();
        assert!(v.answered_by.contains(ip), "{v:?}");
        let page = atoll_testkit::http().get(format!("{url}/login")).send().await.unwrap();
        assert!(page.status().is_success() && page.text().await.unwrap().contains("<form"), "the console on {url}");
    }
    let clusters: Vec<ClusterView> = client.get("/api/v1/clusters").await.unwrap();
    assert_eq!(clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["atoll-meta"]);
    // The join token and MetaDB's password stay out of every command line.
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(lab.state.join("state.json")).unwrap()).unwrap();
    // MetaDB's account logs in over TLS only (verifying the platform's CA),
    // and a plain login is refused.
    let metadb = |tls: bool| {
        let mut o = sqlx::mysql::MySqlConnectOptions::new()
            .host(NODES[0].1)
            .port(3307)
            .username("atoll")
            .password(state["bootstrapped"]["metadb_password"].as_str().unwrap())
            .database("atoll");
        o = match tls {
            true => o.ssl_mode(sqlx::mysql::MySqlSslMode::VerifyCa).ssl_ca_from_pem(lab.trust_ca().into_bytes()),
            false => o.ssl_mode(sqlx::mysql::MySqlSslMode::Disabled),
        };
        o
    };
    let mut conn = sqlx::ConnectOptions::connect(&metadb(true)).await.unwrap();
    let cipher: (String, String) = sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'").fetch_one(&mut conn).await.unwrap();
    assert!(!cipher.1.is_empty(), "{cipher:?}");
    let plain = sqlx::ConnectOptions::connect(&metadb(false)).await.map(drop).unwrap_err().to_string();
    assert!(plain.contains("Access denied"), "{plain}");
    assert!(text.contains("the platform's CA is sha256:"), "{text}");
    let secrets = [state["bootstrapped"]["join_token"].as_str().unwrap(), state["bootstrapped"]["metadb_password"].as_str().unwrap()];
    for pid in lab.processes() {
        let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).to_string();
        assert!(secrets.iter().all(|s| !cmdline.contains(s)), "a secret on the command line of {pid}: {cmdline}");
    }

    // 5. Again: nothing to do, and it says so.
    let out = lab.deploy(&topology, &[], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("nothing changed; the check passed"), "{text}");
    assert!(!text.contains("changed   "), "{text}");

    // Another build where a platform runs: refused, not half-upgraded.
    let installed = lab.base("n3").join("bin/atoll");
    let other = lab.base("n3").join("bin/atoll.other");
    std::fs::copy(&installed, &other).unwrap();
    std::fs::OpenOptions::new().append(true).open(&other).and_then(|mut f| std::io::Write::write_all(&mut f, b"\0")).unwrap();
    std::fs::rename(&other, &installed).unwrap();
    let out = lab.deploy(&topology, &[], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("n3: a platform runs there with another atoll build"), "{text}");
    assert!(!text.contains("n1: a platform") && !text.contains("n2: a platform"), "{text}");
    std::fs::copy(atoll_bin(), &other).unwrap();
    std::fs::rename(&other, &installed).unwrap();

    // 6. The supervisor brings a killed agent back.
    let before = agent_pid(&lab.base("n2")).unwrap();
    atoll_agent::process::signal(before, atoll_agent::process::Signal::Kill).unwrap();
    let after = wait_for("n2's agent restarted", Duration::from_secs(15), || async { agent_pid(&lab.base("n2")).filter(|p| *p != before) })
        .await
        .unwrap();
    assert_ne!(before, after);
    wait_for("n2 online again", Duration::from_secs(20), || async {
        let hosts: Vec<HostListItem> = client.get("/api/v1/hosts").await.ok()?;
        hosts.iter().any(|h| h.name == "n2" && h.status == HostStatus::Online).then_some(())
    })
    .await
    .unwrap();

    // A supervisor killed outright leaves its server running: the next run
    // starts a new supervisor, which ends the orphan first.
    let supervisor: u32 = std::fs::read_to_string(lab.base("n2").join("services/server.pid")).unwrap().trim().parse().unwrap();
    atoll_agent::process::signal(supervisor, atoll_agent::process::Signal::Kill).unwrap();
    let out = lab.deploy(&topology, &[], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("n2: server started"), "{text}");
    // One server, the new supervisor's own child, and it stays so (a
    // second one would crash-loop on the taken port beside the orphan).
    let supervisor: u32 = std::fs::read_to_string(lab.base("n2").join("services/server.pid")).unwrap().trim().parse().unwrap();
    for _ in 0..20 {
        let servers = service_pids(&lab.base("n2"), "server");
        assert_eq!(servers.len(), 1, "one server on n2: {servers:?}");
        assert_eq!(parent_of(servers[0]), Some(supervisor), "n2's server is supervised");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 7. A platform that manages a cluster of the user's is not removed by
    //    accident: refused, naming the cluster, nothing stopped.
    let spec = json!({
        "name": "orders",
        "servers": NODES.iter().enumerate().map(|(i, (n, _))| json!({ "name": format!("orders-{}", i + 1), "zone": format!("z{}", i + 1), "host": n })).collect::<Vec<_>>(),
    });
    let task: TaskView = client.post("/api/v1/clusters", &spec).await.unwrap();
    let done = settle(&client, &task.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:#?}", done.steps);
    let running = lab.processes().len();
    let out = lab.deploy(&topology, &["--destroy"], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("manages cluster(s) orders") && text.contains("--force"), "{text}");
    assert_eq!(lab.processes().len(), running, "a refused destroy stopped something");
    let task: TaskView = client.delete("/api/v1/clusters/orders").await.unwrap();
    assert_eq!(settle(&client, &task.id).await.status, TaskStatus::Succeeded);

    // 8. --destroy: no process left, no file of ours, no local state.
    let out = lab.deploy(&topology, &["--destroy"], None);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(lab.processes().is_empty(), "left running: {:?}", lab.processes());
    for (i, (name, _)) in NODES.iter().enumerate() {
        assert!(!lab.base(name).exists(), "{name}: {text}");
        assert!(!dir.join(format!("db/atoll-meta/atoll-meta-{}", i + 1)).exists(), "{text}");
    }
    assert!(!lab.state.exists(), "{text}");
    drop(sshds);
}
